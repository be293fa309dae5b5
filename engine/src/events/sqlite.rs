//! The embedded event sink: one SQLite file.
//!
//! # Schema (version 2)
//! - `schema_version (version)`: one row holding the schema version. A file
//!   with a newer version is refused, never changed; a version-1 file is
//!   migrated when opened (see below).
//! - `events (id TEXT PRIMARY KEY, station, at_unix_ms, kind, payload, ticks,
//!   seq)`: every event; `kind` is the [`EventType`] name, `payload` the JSON
//!   of the [`EventKind`], `ticks` and `seq` the id's timestamp and clock
//!   sequence, which order events as a CQL `timeuuid` orders them. Indexed on
//!   `(station, ticks, seq)`.
//! - `plays`: one row per play, keyed by the id of its `TrackStarted` event.
//!   The start fills the track's columns, the `TrackEnded` naming it (through
//!   `play_id`) the end's; either may come first. An end without `play_id`
//!   (stored before it existed) completes the latest open play of the same
//!   track on the same station that started no later than it ended.
//! - `sessions`: one row per listener session, keyed by the id of its
//!   `ListenerJoined` event, completed by the `ListenerLeft` naming it
//!   (through `joined_id`, or, in older events, the latest open session with
//!   the same session id on the station).
//!
//! Of two ends of the same play or session, the later event wins, as it does
//! in ScyllaDB, where every write carries its event's time.
//!
//! Version 1 had no `sessions`, no `listener_ms` and no `ticks`; opening a
//! version-1 file rebuilds the derived tables from `events` in one
//! transaction.
//!
//! The file runs in WAL mode with `synchronous=NORMAL`: a committed batch
//! survives a crash of the process, and the last batches before a power loss
//! may be lost. Readers in other processes (a backup, an operator's `sqlite3`)
//! do not block the writer; a writer that finds the file locked waits up to
//! [`SqliteOptions::busy_timeout`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Row, Transaction, TransactionBehavior, params,
};

use super::EventSink;
use super::calendar::{Day, Month};
use super::error::{DriverError, EventSinkError, SinkOperation};
use super::id::EventId;
use super::model::{
    ClientHash, EndReason, EventKind, EventType, Play, PlayEnd, PlayEvent, TrackSource, Transport,
};
use super::read::{
    DayStats, EventReader, ListenerSession, OPEN_SESSION_DAYS, PlayTotal, SessionEnd, SessionSpan,
    TrackPlays, session_listed_on_day,
};

/// The schema version this build writes and reads.
pub const SQLITE_SCHEMA_VERSION: i64 = 2;

const CREATE_VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);";

const CREATE_EVENTS: &str = "
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY NOT NULL,
    station TEXT NOT NULL,
    at_unix_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    ticks INTEGER,
    seq INTEGER
);
";

const CREATE_SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS events_by_station_order ON events (station, ticks, seq);
CREATE TABLE IF NOT EXISTS plays (
    id TEXT PRIMARY KEY NOT NULL,
    station TEXT NOT NULL,
    track_id TEXT NOT NULL,
    started_at_unix_ms INTEGER NOT NULL,
    started_ticks INTEGER NOT NULL,
    started_seq INTEGER NOT NULL,
    title TEXT,
    source TEXT,
    generator TEXT,
    duration_ms INTEGER,
    mastering TEXT,
    ended_id TEXT,
    ended_ticks INTEGER,
    ended_seq INTEGER,
    ended_at_unix_ms INTEGER,
    played_ms INTEGER,
    end_reason TEXT,
    listener_ms INTEGER
);
CREATE INDEX IF NOT EXISTS plays_by_station_order ON plays (station, started_ticks, started_seq);
CREATE INDEX IF NOT EXISTS plays_by_track_order ON plays (track_id, started_ticks);
CREATE INDEX IF NOT EXISTS plays_by_station_track ON plays (station, track_id);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY NOT NULL,
    station TEXT NOT NULL,
    joined_at_unix_ms INTEGER NOT NULL,
    joined_ticks INTEGER NOT NULL,
    joined_seq INTEGER NOT NULL,
    joined_day INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    client_hash TEXT,
    transport TEXT,
    rendition_kbps INTEGER,
    user_agent_family TEXT,
    left_id TEXT,
    left_ticks INTEGER,
    left_seq INTEGER,
    left_at_unix_ms INTEGER,
    listened_ms INTEGER,
    disconnect_reason TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_station_day ON sessions (station, joined_day);
CREATE INDEX IF NOT EXISTS sessions_by_station_left ON sessions (station, left_at_unix_ms);
CREATE INDEX IF NOT EXISTS sessions_by_client ON sessions (client_hash, joined_ticks);
CREATE INDEX IF NOT EXISTS sessions_by_station_session ON sessions (station, session_id);
";

/// Version 1 to 2: the old plays table is set aside, its indexes dropped, and
/// `events` gains its order columns; the derived tables are then rebuilt.
const MIGRATE_1_TO_2: &str = "
DROP INDEX IF EXISTS events_by_station_time;
DROP INDEX IF EXISTS plays_by_station_time;
DROP INDEX IF EXISTS plays_by_station_track;
ALTER TABLE plays RENAME TO plays_version_1;
ALTER TABLE events ADD COLUMN ticks INTEGER;
ALTER TABLE events ADD COLUMN seq INTEGER;
";

const INSERT_EVENT: &str =
    "INSERT OR IGNORE INTO events (id, station, at_unix_ms, kind, payload, ticks, seq)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

const START_PLAY: &str = "INSERT INTO plays
     (id, station, track_id, started_at_unix_ms, started_ticks, started_seq,
      title, source, generator, duration_ms, mastering)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
     ON CONFLICT (id) DO UPDATE SET
         track_id = excluded.track_id, title = excluded.title, source = excluded.source,
         generator = excluded.generator, duration_ms = excluded.duration_ms,
         mastering = excluded.mastering";

const END_PLAY: &str = "INSERT INTO plays
     (id, station, track_id, started_at_unix_ms, started_ticks, started_seq,
      ended_id, ended_ticks, ended_seq, ended_at_unix_ms, played_ms, end_reason, listener_ms)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
     ON CONFLICT (id) DO UPDATE SET
         ended_id = excluded.ended_id, ended_ticks = excluded.ended_ticks,
         ended_seq = excluded.ended_seq, ended_at_unix_ms = excluded.ended_at_unix_ms,
         played_ms = excluded.played_ms, end_reason = excluded.end_reason,
         listener_ms = excluded.listener_ms
     WHERE plays.ended_ticks IS NULL
        OR (excluded.ended_ticks, excluded.ended_seq) > (plays.ended_ticks, plays.ended_seq)";

const OPEN_PLAY_OF_TRACK: &str = "SELECT id FROM plays
     WHERE station = ?1 AND track_id = ?2 AND ended_id IS NULL AND title IS NOT NULL
       AND started_ticks <= ?3
     ORDER BY started_ticks DESC, started_seq DESC
     LIMIT 1";

const JOIN_SESSION: &str = "INSERT INTO sessions
     (id, station, joined_at_unix_ms, joined_ticks, joined_seq, joined_day,
      session_id, client_hash, transport, rendition_kbps, user_agent_family)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
     ON CONFLICT (id) DO UPDATE SET
         session_id = excluded.session_id, client_hash = excluded.client_hash,
         transport = excluded.transport, rendition_kbps = excluded.rendition_kbps,
         user_agent_family = excluded.user_agent_family";

const LEAVE_SESSION: &str = "INSERT INTO sessions
     (id, station, joined_at_unix_ms, joined_ticks, joined_seq, joined_day, session_id,
      client_hash, left_id, left_ticks, left_seq, left_at_unix_ms, listened_ms, disconnect_reason)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
     ON CONFLICT (id) DO UPDATE SET
         left_id = excluded.left_id, left_ticks = excluded.left_ticks,
         left_seq = excluded.left_seq, left_at_unix_ms = excluded.left_at_unix_ms,
         listened_ms = excluded.listened_ms, disconnect_reason = excluded.disconnect_reason
     WHERE sessions.left_ticks IS NULL
        OR (excluded.left_ticks, excluded.left_seq) > (sessions.left_ticks, sessions.left_seq)";

const OPEN_SESSION_OF_ID: &str = "SELECT id FROM sessions
     WHERE station = ?1 AND session_id = ?2 AND left_id IS NULL
       AND user_agent_family IS NOT NULL AND joined_ticks <= ?3
     ORDER BY joined_ticks DESC, joined_seq DESC
     LIMIT 1";

const RECENT_EVENTS: &str = "SELECT id, station, at_unix_ms, payload FROM events
     WHERE station = ?1
     ORDER BY ticks DESC, seq DESC, id DESC
     LIMIT ?2";

const PLAY_COLUMNS: &str = "id, station, track_id, title, source, generator, duration_ms,
     mastering, started_at_unix_ms, ended_id, ended_at_unix_ms, played_ms, end_reason, listener_ms";

const SESSION_COLUMNS: &str = "id, station, session_id, client_hash, transport, rendition_kbps,
     user_agent_family, joined_at_unix_ms, left_id, left_at_unix_ms, listened_ms, disconnect_reason";

const COUNTS_FOR_STATION: &str =
    "SELECT kind, COUNT(*) FROM events WHERE station = ?1 GROUP BY kind";
const COUNTS_FOR_ALL: &str = "SELECT kind, COUNT(*) FROM events GROUP BY kind";

/// Options of a [`SqliteSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long a statement waits for a lock held by another connection before
    /// it fails with a retryable error. Default 5 s.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Play events in one SQLite file. See the module's documentation for the
/// schema and durability.
pub struct SqliteSink {
    connection: Connection,
    path: PathBuf,
}

impl fmt::Debug for SqliteSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteSink")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteSink {
    /// Opens the database at `path` with default options, creating the file,
    /// its missing parent directories and the schema where needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EventSinkError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens the database at `path`, creating the file, its missing parent
    /// directories and the schema where needed, and migrating a version-1
    /// file.
    ///
    /// Fails with [`EventSinkError::SchemaTooNew`] when a newer build wrote the
    /// file, and with [`EventSinkError::Corrupt`] when it is not a database.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, EventSinkError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|source| EventSinkError::CreateDirectory {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let connection =
            Connection::open(&path).map_err(|error| classify(&path, SinkOperation::Open, error))?;
        let mut sink = Self { connection, path };
        sink.configure(options)?;
        sink.prepare_schema()?;
        Ok(sink)
    }

    /// The file this sink writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many events of each type are stored for `station`, or for all
    /// stations with `None`. Types with no events are left out.
    pub fn event_counts(
        &self,
        station: Option<&str>,
    ) -> Result<BTreeMap<EventType, u64>, EventSinkError> {
        let fail = |error| classify(&self.path, SinkOperation::Read, error);
        let mut counts = BTreeMap::new();
        let mut statement;
        let mut rows = match station {
            Some(station) => {
                statement = self
                    .connection
                    .prepare_cached(COUNTS_FOR_STATION)
                    .map_err(fail)?;
                statement.query(params![station]).map_err(fail)?
            }
            None => {
                statement = self
                    .connection
                    .prepare_cached(COUNTS_FOR_ALL)
                    .map_err(fail)?;
                statement.query([]).map_err(fail)?
            }
        };
        while let Some(row) = rows.next().map_err(fail)? {
            let kind: String = row.get(0).map_err(fail)?;
            let count: i64 = row.get(1).map_err(fail)?;
            let kind = kind
                .parse::<EventType>()
                .map_err(|error| EventSinkError::Decode {
                    path: self.path.clone(),
                    row: format!("a count of kind {kind:?}"),
                    source: error.into(),
                })?;
            counts.insert(kind, from_sql_int(count));
        }
        Ok(counts)
    }

    fn configure(&mut self, options: SqliteOptions) -> Result<(), EventSinkError> {
        let fail = |error| classify(&self.path, SinkOperation::Configure, error);
        self.connection
            .busy_timeout(options.busy_timeout)
            .map_err(fail)?;
        // Both pragmas read the file's header, so a file that is not a
        // database fails here.
        self.connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(fail)?;
        self.connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        Ok(())
    }

    /// Checks the schema version, migrates an older one and creates what is
    /// missing, in one transaction so that two processes opening a file agree.
    fn prepare_schema(&mut self) -> Result<(), EventSinkError> {
        let path = &self.path;
        let fail = |error| classify(path, SinkOperation::Schema, error);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        transaction
            .execute_batch(CREATE_VERSION_TABLE)
            .map_err(fail)?;
        let found: Option<i64> = transaction
            .query_row("SELECT MAX(version) FROM schema_version", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(fail)?
            .flatten();
        match found {
            None => {
                transaction.execute_batch(CREATE_EVENTS).map_err(fail)?;
                transaction.execute_batch(CREATE_SCHEMA).map_err(fail)?;
                transaction
                    .execute(
                        "INSERT INTO schema_version (version) VALUES (?1)",
                        [SQLITE_SCHEMA_VERSION],
                    )
                    .map_err(fail)?;
            }
            Some(SQLITE_SCHEMA_VERSION) => {
                transaction.execute_batch(CREATE_SCHEMA).map_err(fail)?;
            }
            Some(1) => {
                transaction.execute_batch(MIGRATE_1_TO_2).map_err(fail)?;
                transaction.execute_batch(CREATE_SCHEMA).map_err(fail)?;
                rebuild_derived_tables(&transaction, path)?;
                transaction
                    .execute_batch(
                        "DROP TABLE plays_version_1;
                         DELETE FROM schema_version;",
                    )
                    .map_err(fail)?;
                transaction
                    .execute(
                        "INSERT INTO schema_version (version) VALUES (?1)",
                        [SQLITE_SCHEMA_VERSION],
                    )
                    .map_err(fail)?;
            }
            Some(found) if found > SQLITE_SCHEMA_VERSION => {
                return Err(EventSinkError::SchemaTooNew {
                    path: path.clone(),
                    found,
                    supported: SQLITE_SCHEMA_VERSION,
                });
            }
            Some(found) => {
                return Err(EventSinkError::SchemaUnknown {
                    path: path.clone(),
                    found,
                    supported: SQLITE_SCHEMA_VERSION,
                });
            }
        }
        transaction.commit().map_err(fail)
    }

    fn decode_error(&self, row: &str, source: DriverError) -> EventSinkError {
        EventSinkError::Decode {
            path: self.path.clone(),
            row: row.to_string(),
            source,
        }
    }

    fn event_from_row(&self, row: &Row<'_>) -> Result<PlayEvent, EventSinkError> {
        let fail = |error| classify(&self.path, SinkOperation::Read, error);
        let id: String = row.get(0).map_err(fail)?;
        let station: String = row.get(1).map_err(fail)?;
        let at_unix_ms: i64 = row.get(2).map_err(fail)?;
        let payload: String = row.get(3).map_err(fail)?;
        let event_id = id
            .parse::<EventId>()
            .map_err(|error| self.decode_error(&id, error.into()))?;
        let kind: EventKind =
            serde_json::from_str(&payload).map_err(|error| self.decode_error(&id, error.into()))?;
        Ok(PlayEvent {
            id: event_id,
            station,
            at_unix_ms: from_sql_int(at_unix_ms),
            kind,
        })
    }

    /// A play from a row of [`PLAY_COLUMNS`] whose start is stored.
    fn play_from_row(&self, row: &Row<'_>) -> Result<Play, EventSinkError> {
        let fail = |error| classify(&self.path, SinkOperation::Read, error);
        let id: String = row.get(0).map_err(fail)?;
        let decode = |source: DriverError| self.decode_error(&id, source);
        let source: String = row.get(4).map_err(fail)?;
        let mastering: Option<String> = row.get(7).map_err(fail)?;
        let ended_id: Option<String> = row.get(9).map_err(fail)?;
        let ended = match ended_id {
            None => None,
            Some(ended_id) => {
                let ended_at: Option<i64> = row.get(10).map_err(fail)?;
                let played_ms: Option<i64> = row.get(11).map_err(fail)?;
                let reason: Option<String> = row.get(12).map_err(fail)?;
                let listener_ms: Option<i64> = row.get(13).map_err(fail)?;
                Some(PlayEnd {
                    id: ended_id
                        .parse()
                        .map_err(|error: super::id::EventIdError| decode(error.into()))?,
                    at_unix_ms: from_sql_int(ended_at.unwrap_or(0)),
                    played_ms: from_sql_int(played_ms.unwrap_or(0)),
                    reason: reason
                        .unwrap_or_default()
                        .parse::<EndReason>()
                        .map_err(|error| decode(error.into()))?,
                    listener_ms: from_sql_int(listener_ms.unwrap_or(0)),
                })
            }
        };
        Ok(Play {
            id: id
                .parse()
                .map_err(|error: super::id::EventIdError| decode(error.into()))?,
            station: row.get(1).map_err(fail)?,
            track_id: row.get(2).map_err(fail)?,
            title: row.get(3).map_err(fail)?,
            source: serde_json::from_str::<TrackSource>(&source)
                .map_err(|error| decode(error.into()))?,
            generator: row.get(5).map_err(fail)?,
            duration_ms: from_sql_int(row.get(6).map_err(fail)?),
            mastering: mastering
                .map(|json| serde_json::from_str(&json))
                .transpose()
                .map_err(|error| decode(error.into()))?,
            started_at_unix_ms: from_sql_int(row.get(8).map_err(fail)?),
            ended,
        })
    }

    /// A session from a row of [`SESSION_COLUMNS`] whose join is stored.
    fn session_from_row(&self, row: &Row<'_>) -> Result<ListenerSession, EventSinkError> {
        let fail = |error| classify(&self.path, SinkOperation::Read, error);
        let id: String = row.get(0).map_err(fail)?;
        let decode = |source: DriverError| self.decode_error(&id, source);
        let client_hash: Option<String> = row.get(3).map_err(fail)?;
        let transport: Option<String> = row.get(4).map_err(fail)?;
        let rendition: Option<i64> = row.get(5).map_err(fail)?;
        let left_id: Option<String> = row.get(8).map_err(fail)?;
        let left = match left_id {
            None => None,
            Some(left_id) => {
                let at: Option<i64> = row.get(9).map_err(fail)?;
                let listened: Option<i64> = row.get(10).map_err(fail)?;
                let reason: Option<String> = row.get(11).map_err(fail)?;
                Some(SessionEnd {
                    id: left_id
                        .parse()
                        .map_err(|error: super::id::EventIdError| decode(error.into()))?,
                    at_unix_ms: from_sql_int(at.unwrap_or(0)),
                    listened_ms: from_sql_int(listened.unwrap_or(0)),
                    disconnect_reason: reason.unwrap_or_default(),
                })
            }
        };
        Ok(ListenerSession {
            id: id
                .parse()
                .map_err(|error: super::id::EventIdError| decode(error.into()))?,
            station: row.get(1).map_err(fail)?,
            session_id: row.get(2).map_err(fail)?,
            client_hash: ClientHash::from_stored(client_hash.unwrap_or_default()),
            transport: parse_transport(transport.as_deref().unwrap_or_default()).map_err(decode)?,
            rendition_kbps: u32::try_from(rendition.unwrap_or(0)).unwrap_or(0),
            user_agent_family: row
                .get::<_, Option<String>>(6)
                .map_err(fail)?
                .unwrap_or_default(),
            joined_at_unix_ms: from_sql_int(row.get(7).map_err(fail)?),
            left,
        })
    }

    fn query_plays(
        &self,
        sql: &str,
        values: impl rusqlite::Params,
    ) -> Result<Vec<Play>, EventSinkError> {
        let fail = |error| classify(&self.path, SinkOperation::Read, error);
        let mut statement = self.connection.prepare_cached(sql).map_err(fail)?;
        let mut rows = statement.query(values).map_err(fail)?;
        let mut plays = Vec::new();
        while let Some(row) = rows.next().map_err(fail)? {
            plays.push(self.play_from_row(row)?);
        }
        Ok(plays)
    }

    fn query_sessions(
        &self,
        sql: &str,
        values: impl rusqlite::Params,
    ) -> Result<Vec<ListenerSession>, EventSinkError> {
        let fail = |error| classify(&self.path, SinkOperation::Read, error);
        let mut statement = self.connection.prepare_cached(sql).map_err(fail)?;
        let mut rows = statement.query(values).map_err(fail)?;
        let mut sessions = Vec::new();
        while let Some(row) = rows.next().map_err(fail)? {
            sessions.push(self.session_from_row(row)?);
        }
        Ok(sessions)
    }

    /// The station's latest [`OPEN_SESSION_DAYS`] days on which a session
    /// joined: where open sessions are looked for.
    fn open_session_days(&self, station: &str) -> Result<BTreeSet<u32>, EventSinkError> {
        let fail = |error| classify(&self.path, SinkOperation::Read, error);
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT DISTINCT joined_day FROM sessions
                 WHERE station = ?1 AND user_agent_family IS NOT NULL
                 ORDER BY joined_day DESC LIMIT ?2",
            )
            .map_err(fail)?;
        let mut rows = statement
            .query(params![station, to_sql_count(OPEN_SESSION_DAYS)])
            .map_err(fail)?;
        let mut days = BTreeSet::new();
        while let Some(row) = rows.next().map_err(fail)? {
            let day: i64 = row.get(0).map_err(fail)?;
            days.insert(u32::try_from(day).unwrap_or(0));
        }
        Ok(days)
    }
}

impl EventReader for SqliteSink {
    fn now_playing(&self, station: &str) -> Result<Option<Play>, EventSinkError> {
        let sql = format!(
            "SELECT {PLAY_COLUMNS} FROM plays
             WHERE station = ?1 AND title IS NOT NULL
             ORDER BY started_ticks DESC, started_seq DESC LIMIT 1"
        );
        let latest = self.query_plays(&sql, params![station])?;
        Ok(latest
            .into_iter()
            .next()
            .filter(|play| play.ended.is_none()))
    }

    fn history(
        &self,
        station: &str,
        limit: usize,
        before_unix_ms: Option<u64>,
    ) -> Result<Vec<Play>, EventSinkError> {
        let sql = format!(
            "SELECT {PLAY_COLUMNS} FROM plays
             WHERE station = ?1 AND title IS NOT NULL AND started_at_unix_ms < ?2
             ORDER BY started_ticks DESC, started_seq DESC LIMIT ?3"
        );
        let before = before_unix_ms.map_or(i64::MAX, to_sql_int);
        self.query_plays(&sql, params![station, before, to_sql_count(limit)])
    }

    fn day_stats(&self, station: &str, day: Day) -> Result<DayStats, EventSinkError> {
        let fail = |error| classify(&self.path, SinkOperation::Read, error);
        let (start, end) = (
            to_sql_int(day.start_unix_ms()),
            to_sql_int(day.end_unix_ms()),
        );
        let mut plays = Vec::new();
        {
            let mut statement = self
                .connection
                .prepare_cached(
                    "SELECT id, track_id, title, listener_ms FROM plays
                     WHERE station = ?1 AND title IS NOT NULL
                       AND started_at_unix_ms >= ?2 AND started_at_unix_ms < ?3",
                )
                .map_err(fail)?;
            let mut rows = statement
                .query(params![station, start, end])
                .map_err(fail)?;
            while let Some(row) = rows.next().map_err(fail)? {
                let id: String = row.get(0).map_err(fail)?;
                let listener_ms: Option<i64> = row.get(3).map_err(fail)?;
                plays.push(PlayTotal {
                    play_id: id.parse().map_err(|error: super::id::EventIdError| {
                        self.decode_error(&id, error.into())
                    })?,
                    track_id: row.get(1).map_err(fail)?,
                    title: row.get(2).map_err(fail)?,
                    listener_ms: from_sql_int(listener_ms.unwrap_or(0)),
                });
            }
        }
        let open_days = self.open_session_days(station)?;
        let mut sessions = Vec::new();
        {
            let mut statement = self
                .connection
                .prepare_cached(
                    "SELECT id, joined_day, user_agent_family IS NOT NULL, left_id, listened_ms
                     FROM sessions
                     WHERE station = ?1 AND joined_at_unix_ms < ?3
                       AND (left_at_unix_ms IS NULL OR left_at_unix_ms >= ?2)",
                )
                .map_err(fail)?;
            let mut rows = statement
                .query(params![station, start, end])
                .map_err(fail)?;
            while let Some(row) = rows.next().map_err(fail)? {
                let id: String = row.get(0).map_err(fail)?;
                let joined_day: i64 = row.get(1).map_err(fail)?;
                let join_stored: bool = row.get(2).map_err(fail)?;
                let left_id: Option<String> = row.get(3).map_err(fail)?;
                let listened: Option<i64> = row.get(4).map_err(fail)?;
                let parse = |text: &str| {
                    text.parse::<EventId>()
                        .map_err(|error| self.decode_error(&id, error.into()))
                };
                let joined = parse(&id)?;
                let left = left_id
                    .as_deref()
                    .map(parse)
                    .transpose()?
                    .map(|left| (left, from_sql_int(listened.unwrap_or(0))));
                let joined_day = Day::from_days_since_epoch(u32::try_from(joined_day).unwrap_or(0));
                let in_open_window = open_days.contains(&joined_day.days_since_epoch());
                if session_listed_on_day(
                    joined_day,
                    join_stored,
                    left.map(|(id, _)| id),
                    in_open_window,
                    day,
                ) {
                    sessions.push(SessionSpan { joined, left });
                }
            }
        }
        Ok(DayStats::compute(station, day, plays, sessions))
    }

    fn track_plays(&self, track_id: &str, month: Month) -> Result<TrackPlays, EventSinkError> {
        let sql = format!(
            "SELECT {PLAY_COLUMNS} FROM plays
             WHERE track_id = ?1 AND title IS NOT NULL
               AND started_at_unix_ms >= ?2 AND started_at_unix_ms < ?3
             ORDER BY started_ticks DESC, started_seq DESC"
        );
        let plays = self.query_plays(
            &sql,
            params![
                track_id,
                to_sql_int(month.first_day().start_unix_ms()),
                to_sql_int(month.end_day().start_unix_ms())
            ],
        )?;
        Ok(TrackPlays::from_plays(track_id, month, plays))
    }

    fn open_sessions(&self, station: &str) -> Result<Vec<ListenerSession>, EventSinkError> {
        let days = self.open_session_days(station)?;
        let Some(oldest) = days.first() else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions
             WHERE station = ?1 AND joined_day >= ?2 AND left_id IS NULL
               AND user_agent_family IS NOT NULL
             ORDER BY joined_ticks DESC, joined_seq DESC"
        );
        self.query_sessions(&sql, params![station, i64::from(*oldest)])
    }

    fn listener_sessions(
        &self,
        client_hash: &ClientHash,
        month: Month,
    ) -> Result<Vec<ListenerSession>, EventSinkError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions
             WHERE client_hash = ?1 AND user_agent_family IS NOT NULL
               AND joined_at_unix_ms >= ?2 AND joined_at_unix_ms < ?3
             ORDER BY joined_ticks DESC, joined_seq DESC"
        );
        self.query_sessions(
            &sql,
            params![
                client_hash.as_str(),
                to_sql_int(month.first_day().start_unix_ms()),
                to_sql_int(month.end_day().start_unix_ms())
            ],
        )
    }

    fn recent_events(&self, station: &str, limit: usize) -> Result<Vec<PlayEvent>, EventSinkError> {
        let fail = |error| classify(&self.path, SinkOperation::Read, error);
        let mut statement = self
            .connection
            .prepare_cached(RECENT_EVENTS)
            .map_err(fail)?;
        let mut rows = statement
            .query(params![station, to_sql_count(limit)])
            .map_err(fail)?;
        let mut events = Vec::new();
        while let Some(row) = rows.next().map_err(fail)? {
            events.push(self.event_from_row(row)?);
        }
        Ok(events)
    }
}

impl EventSink for SqliteSink {
    fn name(&self) -> &str {
        "sqlite"
    }

    fn write_batch(&mut self, events: &[PlayEvent]) -> Result<(), EventSinkError> {
        if events.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let fail = |error| classify(path, SinkOperation::Write, error);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        {
            let mut insert_event = transaction.prepare_cached(INSERT_EVENT).map_err(fail)?;
            for event in events {
                let payload = serde_json::to_string(&event.kind).map_err(|source| {
                    EventSinkError::Encode {
                        id: event.id,
                        source,
                    }
                })?;
                let inserted = insert_event
                    .execute(params![
                        event.id.to_string(),
                        event.station,
                        to_sql_int(event.at_unix_ms),
                        event.event_type().as_str(),
                        payload,
                        ticks(event.id),
                        i64::from(event.id.clock_sequence()),
                    ])
                    .map_err(fail)?;
                if inserted == 0 {
                    // Already stored, and so is everything derived from it.
                    continue;
                }
                derive(&transaction, path, event)?;
            }
        }
        transaction.commit().map_err(fail)
    }
}

/// Rebuilds `plays` and `sessions` from every stored event, in event order,
/// and fills the events' order columns (the migration from version 1).
fn rebuild_derived_tables(
    transaction: &Transaction<'_>,
    path: &Path,
) -> Result<(), EventSinkError> {
    let fail = |error| classify(path, SinkOperation::Schema, error);
    let mut events = Vec::new();
    {
        let mut statement = transaction
            .prepare("SELECT id, station, payload FROM events")
            .map_err(fail)?;
        let mut rows = statement.query([]).map_err(fail)?;
        while let Some(row) = rows.next().map_err(fail)? {
            let id: String = row.get(0).map_err(fail)?;
            let station: String = row.get(1).map_err(fail)?;
            let payload: String = row.get(2).map_err(fail)?;
            let decode = |source: DriverError| EventSinkError::Decode {
                path: path.to_path_buf(),
                row: id.clone(),
                source,
            };
            let event_id: EventId = id
                .parse()
                .map_err(|error: super::id::EventIdError| decode(error.into()))?;
            let kind: EventKind =
                serde_json::from_str(&payload).map_err(|error| decode(error.into()))?;
            events.push(PlayEvent::with_id(event_id, station, kind));
        }
    }
    events.sort_by_key(|event| event.id);
    let mut set_order = transaction
        .prepare("UPDATE events SET ticks = ?2, seq = ?3 WHERE id = ?1")
        .map_err(fail)?;
    for event in &events {
        set_order
            .execute(params![
                event.id.to_string(),
                ticks(event.id),
                i64::from(event.id.clock_sequence())
            ])
            .map_err(fail)?;
        derive(transaction, path, event)?;
    }
    Ok(())
}

/// Stores what `event` adds to `plays` and `sessions`.
fn derive(
    transaction: &Transaction<'_>,
    path: &Path,
    event: &PlayEvent,
) -> Result<(), EventSinkError> {
    let fail = |error| classify(path, SinkOperation::Write, error);
    let encode = |source| EventSinkError::Encode {
        id: event.id,
        source,
    };
    let id = event.id.to_string();
    match &event.kind {
        EventKind::TrackStarted {
            track_id,
            title,
            source,
            generator,
            duration_ms,
            mastering,
        } => {
            let source = serde_json::to_string(source).map_err(encode)?;
            let mastering = mastering
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(encode)?;
            transaction
                .prepare_cached(START_PLAY)
                .and_then(|mut statement| {
                    statement.execute(params![
                        id,
                        event.station,
                        track_id,
                        to_sql_int(event.id.unix_ms()),
                        ticks(event.id),
                        i64::from(event.id.clock_sequence()),
                        title,
                        source,
                        generator,
                        to_sql_int(*duration_ms),
                        mastering,
                    ])
                })
                .map_err(fail)?;
        }
        EventKind::TrackEnded {
            track_id,
            played_ms,
            reason,
            play_id,
            listener_ms,
        } => {
            let play_id =
                linked_or_open_row(transaction, *play_id, OPEN_PLAY_OF_TRACK, event, track_id)
                    .map_err(fail)?;
            let Some(play_id) = play_id else {
                return Ok(());
            };
            transaction
                .prepare_cached(END_PLAY)
                .and_then(|mut statement| {
                    statement.execute(params![
                        play_id.to_string(),
                        event.station,
                        track_id,
                        to_sql_int(play_id.unix_ms()),
                        ticks(play_id),
                        i64::from(play_id.clock_sequence()),
                        id,
                        ticks(event.id),
                        i64::from(event.id.clock_sequence()),
                        to_sql_int(event.at_unix_ms),
                        to_sql_int(*played_ms),
                        reason.as_str(),
                        to_sql_int(*listener_ms),
                    ])
                })
                .map_err(fail)?;
        }
        EventKind::ListenerJoined {
            session_id,
            transport,
            rendition_kbps,
            client_hash,
            user_agent_family,
        } => {
            transaction
                .prepare_cached(JOIN_SESSION)
                .and_then(|mut statement| {
                    statement.execute(params![
                        id,
                        event.station,
                        to_sql_int(event.id.unix_ms()),
                        ticks(event.id),
                        i64::from(event.id.clock_sequence()),
                        i64::from(Day::of_unix_ms(event.id.unix_ms()).days_since_epoch()),
                        session_id,
                        client_hash.as_str(),
                        transport_name(*transport),
                        i64::from(*rendition_kbps),
                        user_agent_family,
                    ])
                })
                .map_err(fail)?;
        }
        EventKind::ListenerLeft {
            session_id,
            listened_ms,
            disconnect_reason,
            joined_id,
            client_hash,
            ..
        } => {
            let joined_id = linked_or_open_row(
                transaction,
                *joined_id,
                OPEN_SESSION_OF_ID,
                event,
                session_id,
            )
            .map_err(fail)?;
            let Some(joined_id) = joined_id else {
                return Ok(());
            };
            transaction
                .prepare_cached(LEAVE_SESSION)
                .and_then(|mut statement| {
                    statement.execute(params![
                        joined_id.to_string(),
                        event.station,
                        to_sql_int(joined_id.unix_ms()),
                        ticks(joined_id),
                        i64::from(joined_id.clock_sequence()),
                        i64::from(Day::of_unix_ms(joined_id.unix_ms()).days_since_epoch()),
                        session_id,
                        client_hash.as_ref().map(ClientHash::as_str),
                        id,
                        ticks(event.id),
                        i64::from(event.id.clock_sequence()),
                        to_sql_int(event.at_unix_ms),
                        to_sql_int(*listened_ms),
                        disconnect_reason,
                    ])
                })
                .map_err(fail)?;
        }
        EventKind::StationStarted
        | EventKind::StationStopped
        | EventKind::PlaylistSwapped { .. }
        | EventKind::Skip { .. }
        | EventKind::ActorRestarted { .. } => {}
    }
    Ok(())
}

/// The id's 60-bit timestamp, which fits an SQLite integer.
fn ticks(id: EventId) -> i64 {
    to_sql_int(id.gregorian_ticks())
}

pub(crate) fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Websocket => "websocket",
        Transport::Http => "http",
    }
}

pub(crate) fn parse_transport(name: &str) -> Result<Transport, DriverError> {
    match name {
        "websocket" => Ok(Transport::Websocket),
        "http" => Ok(Transport::Http),
        other => Err(format!(
            "{:?} is not a transport",
            other.chars().take(32).collect::<String>()
        )
        .into()),
    }
}

/// Sorts a driver error into the [`EventSinkError`] that tells the writer
/// what to do.
fn classify(path: &Path, operation: SinkOperation, error: rusqlite::Error) -> EventSinkError {
    let path = path.to_path_buf();
    let source = Box::new(error);
    match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => EventSinkError::Corrupt {
            path,
            operation,
            source,
        },
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory,
        ) => EventSinkError::Unavailable {
            path,
            operation,
            source,
        },
        _ => EventSinkError::Database {
            path,
            operation,
            source,
        },
    }
}

/// SQLite integers are signed: values past `i64::MAX` are stored as `i64::MAX`.
/// The id of the row an end event closes: the one it links to, or, for an end stored
/// before ends carried the link, the latest open row of the same station and `key`
/// (track or session id) that began before it (`open_row_query` finds it).
fn linked_or_open_row(
    transaction: &Transaction<'_>,
    linked: Option<EventId>,
    open_row_query: &str,
    event: &PlayEvent,
    key: &str,
) -> rusqlite::Result<Option<EventId>> {
    if linked.is_some() {
        return Ok(linked);
    }
    let found: Option<String> = transaction
        .prepare_cached(open_row_query)?
        .query_row(params![event.station, key, ticks(event.id)], |row| {
            row.get(0)
        })
        .optional()?;
    Ok(found.and_then(|found| found.parse().ok()))
}

fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_sql_count(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Negative values, which this sink never writes, read as zero.
fn from_sql_int(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::model::MasteringStats;
    use crate::events::model::tests::one_of_each_kind;
    use crate::events::read::EventReader;

    fn temp_sink() -> (tempfile::TempDir, SqliteSink) {
        let dir = tempfile::tempdir().unwrap();
        let sink = SqliteSink::open(dir.path().join("events.db")).unwrap();
        (dir, sink)
    }

    fn rows(sink: &SqliteSink, table: &str) -> i64 {
        sink.connection
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap()
    }

    /// An event at a chosen millisecond, so that tests do not depend on the clock.
    fn event_at(unix_ms: u64, station: &str, kind: EventKind) -> PlayEvent {
        let ticks = 0x01B2_1DD2_1381_4000 + unix_ms * 10_000;
        PlayEvent::with_id(
            EventId::from_parts(ticks, 0, &[1, 0, 0, 0, 0, 1]),
            station,
            kind,
        )
    }

    fn started(track_id: &str, title: &str) -> EventKind {
        EventKind::TrackStarted {
            track_id: track_id.into(),
            title: title.into(),
            source: TrackSource::Prompt(format!("{title} 100 bpm")),
            generator: "procedural".into(),
            duration_ms: 120_000,
            mastering: Some(MasteringStats {
                output_lufs: Some(-14.0),
                backend: Some("cpu".into()),
                ..MasteringStats::default()
            }),
        }
    }

    fn ended(track_id: &str, played_ms: u64, reason: EndReason) -> EventKind {
        EventKind::TrackEnded {
            track_id: track_id.into(),
            played_ms,
            reason,
            play_id: None,
            listener_ms: 0,
        }
    }

    #[test]
    fn writing_the_same_batch_twice_leaves_one_row_per_event() {
        let (_dir, mut sink) = temp_sink();
        let events = one_of_each_kind("lofi");
        sink.write_batch(&events).unwrap();
        assert_eq!(rows(&sink, "events"), events.len() as i64);
        assert_eq!(rows(&sink, "plays"), 2);
        let history = sink.history("lofi", 10, None).unwrap();

        sink.write_batch(&events).unwrap();
        assert_eq!(rows(&sink, "events"), events.len() as i64);
        assert_eq!(rows(&sink, "plays"), 2);
        assert_eq!(sink.history("lofi", 10, None).unwrap(), history);
    }

    #[test]
    fn a_batch_holding_the_same_event_twice_stores_it_once() {
        let (_dir, mut sink) = temp_sink();
        let event = PlayEvent::new("lofi", started("t1", "One"));
        sink.write_batch(&[event.clone(), event]).unwrap();
        assert_eq!(rows(&sink, "events"), 1);
        assert_eq!(rows(&sink, "plays"), 1);
    }

    #[test]
    fn an_empty_batch_is_accepted() {
        let (_dir, mut sink) = temp_sink();
        sink.write_batch(&[]).unwrap();
        assert_eq!(rows(&sink, "events"), 0);
        assert_eq!(sink.name(), "sqlite");
    }

    #[test]
    fn events_read_back_newest_first_as_they_were_written() {
        let (_dir, mut sink) = temp_sink();
        let events = one_of_each_kind("lofi");
        sink.write_batch(&events).unwrap();
        sink.write_batch(&one_of_each_kind("techno")).unwrap();
        let recent = sink.recent_events("lofi", 100).unwrap();
        let expected: Vec<PlayEvent> = events.iter().rev().cloned().collect();
        assert_eq!(recent, expected);
        assert_eq!(sink.recent_events("lofi", 3).unwrap(), expected[..3]);
        assert!(sink.recent_events("lofi", 0).unwrap().is_empty());
        assert!(sink.recent_events("jazz", 10).unwrap().is_empty());
    }

    #[test]
    fn history_reads_plays_back_newest_first_with_how_they_ended() {
        let (_dir, mut sink) = temp_sink();
        let batch = [
            event_at(1_000, "lofi", started("t1", "One")),
            event_at(121_000, "lofi", ended("t1", 120_000, EndReason::Finished)),
            event_at(121_001, "lofi", started("t2", "Two")),
            event_at(150_000, "lofi", ended("t2", 29_000, EndReason::Skipped)),
            event_at(150_001, "lofi", started("t1", "One")),
            event_at(150_002, "techno", started("t9", "Nine")),
        ];
        sink.write_batch(&batch).unwrap();
        // The end of the replayed track arrives in a later batch.
        sink.write_batch(&[event_at(
            160_000,
            "lofi",
            ended("t1", 9_998, EndReason::Swapped),
        )])
        .unwrap();

        let history = sink.history("lofi", 10, None).unwrap();
        let summary: Vec<_> = history
            .iter()
            .map(|play| {
                (
                    play.track_id.as_str(),
                    play.started_at_unix_ms,
                    play.ended.map(|end| (end.played_ms, end.reason)),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("t1", 150_001, Some((9_998, EndReason::Swapped))),
                ("t2", 121_001, Some((29_000, EndReason::Skipped))),
                ("t1", 1_000, Some((120_000, EndReason::Finished))),
            ]
        );
        let newest = &history[0];
        assert_eq!(newest.id, batch[4].id);
        assert_eq!(newest.title, "One");
        assert_eq!(newest.source, TrackSource::Prompt("One 100 bpm".into()));
        assert_eq!(newest.generator, "procedural");
        assert_eq!(newest.duration_ms, 120_000);
        assert_eq!(
            newest
                .mastering
                .as_ref()
                .and_then(|stats| stats.output_lufs),
            Some(-14.0)
        );
        assert_eq!(newest.ended.map(|end| end.at_unix_ms), Some(160_000));

        let page = sink.history("lofi", 1, Some(150_001)).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].track_id, "t2");
        assert_eq!(sink.history("techno", 10, None).unwrap().len(), 1);
    }

    #[test]
    fn a_play_without_its_end_is_still_on_air() {
        let (_dir, mut sink) = temp_sink();
        sink.write_batch(&[event_at(5, "lofi", started("t1", "One"))])
            .unwrap();
        let history = sink.history("lofi", 10, None).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].ended, None);
    }

    #[test]
    fn counts_are_per_event_type_and_station() {
        let (_dir, mut sink) = temp_sink();
        sink.write_batch(&one_of_each_kind("lofi")).unwrap();
        sink.write_batch(&one_of_each_kind("techno")).unwrap();
        let counts = sink.event_counts(Some("lofi")).unwrap();
        assert_eq!(counts.len(), EventType::ALL.len());
        assert_eq!(counts[&EventType::TrackStarted], 2);
        assert_eq!(counts[&EventType::TrackEnded], 2);
        assert_eq!(counts[&EventType::Skip], 1);
        assert_eq!(counts.values().sum::<u64>(), 11);
        let all = sink.event_counts(None).unwrap();
        assert_eq!(all[&EventType::TrackStarted], 4);
        assert!(sink.event_counts(Some("jazz")).unwrap().is_empty());
    }

    #[test]
    fn events_survive_closing_and_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let events = one_of_each_kind("lofi");
        SqliteSink::open(&path)
            .unwrap()
            .write_batch(&events)
            .unwrap();
        let sink = SqliteSink::open(&path).unwrap();
        assert_eq!(sink.recent_events("lofi", 100).unwrap().len(), events.len());
        let mode: String = sink
            .connection
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        drop(SqliteSink::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE schema_version SET version = 7", [])
            .unwrap();

        let error = SqliteSink::open(&path).unwrap_err();
        assert!(
            matches!(
                error,
                EventSinkError::SchemaTooNew {
                    found: 7,
                    supported: SQLITE_SCHEMA_VERSION,
                    ..
                }
            ),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("version 7"), "{message}");
        assert!(
            message.contains(&format!("version {SQLITE_SCHEMA_VERSION}")),
            "{message}"
        );
        assert!(message.contains("events.db"), "{message}");
        assert!(!error.is_retryable());
        // The file was not changed.
        let version: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT version FROM schema_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, 7);
    }

    #[test]
    fn an_older_unknown_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        drop(SqliteSink::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE schema_version SET version = 0", [])
            .unwrap();
        let error = SqliteSink::open(&path).unwrap_err();
        assert!(
            matches!(error, EventSinkError::SchemaUnknown { found: 0, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn a_file_in_a_missing_directory_is_created_with_its_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not").join("yet").join("events.db");
        let mut sink = SqliteSink::open(&path).unwrap();
        sink.write_batch(&one_of_each_kind("lofi")).unwrap();
        assert!(path.is_file());
        assert_eq!(sink.path(), path);
    }

    #[test]
    fn a_directory_that_cannot_be_created_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("a-file");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let error = SqliteSink::open(blocker.join("events.db")).unwrap_err();
        match &error {
            EventSinkError::CreateDirectory { path, .. } => assert_eq!(path, &blocker),
            other => panic!("unexpected error {other:?}"),
        }
        assert_eq!(error.operation(), SinkOperation::Open);
    }

    #[test]
    fn a_corrupt_database_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let garbage: Vec<u8> = (0..8192u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&path, garbage).unwrap();
        let error = SqliteSink::open(&path).unwrap_err();
        assert!(matches!(error, EventSinkError::Corrupt { .. }), "{error:?}");
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("events.db"));
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn a_database_with_a_damaged_body_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        {
            let mut sink = SqliteSink::open(&path).unwrap();
            for _ in 0..20 {
                sink.write_batch(&one_of_each_kind("lofi")).unwrap();
            }
            sink.connection
                .pragma_update(None, "journal_mode", "DELETE")
                .unwrap();
        }
        // Keep the 100-byte header, overwrite the pages behind it.
        let mut bytes = std::fs::read(&path).unwrap();
        for (i, byte) in bytes.iter_mut().enumerate().skip(100) {
            *byte = (i % 251) as u8;
        }
        std::fs::write(&path, bytes).unwrap();
        let outcome = SqliteSink::open(&path).and_then(|sink| sink.recent_events("lofi", 1_000));
        assert!(outcome.is_err(), "{outcome:?}");
    }

    #[test]
    fn a_stored_row_that_cannot_be_read_is_an_error_naming_it() {
        let (_dir, mut sink) = temp_sink();
        let event = PlayEvent::new("lofi", EventKind::StationStarted);
        sink.write_batch(std::slice::from_ref(&event)).unwrap();
        sink.connection
            .execute("UPDATE events SET payload = '{\"type\": \"dance\"}'", [])
            .unwrap();
        let error = sink.recent_events("lofi", 10).unwrap_err();
        match &error {
            EventSinkError::Decode { row, .. } => assert_eq!(row, &event.id.to_string()),
            other => panic!("unexpected error {other:?}"),
        }
        assert_eq!(error.operation(), SinkOperation::Read);
    }

    #[test]
    fn an_end_naming_its_play_completes_it_even_before_the_start_arrives() {
        let (_dir, mut sink) = temp_sink();
        let start = event_at(1_000, "lofi", started("t1", "One"));
        let end = event_at(
            61_000,
            "lofi",
            EventKind::TrackEnded {
                track_id: "t1".into(),
                played_ms: 60_000,
                reason: EndReason::Finished,
                play_id: Some(start.id),
                listener_ms: 120_000,
            },
        );
        sink.write_batch(std::slice::from_ref(&end)).unwrap();
        assert!(sink.history("lofi", 10, None).unwrap().is_empty());
        assert_eq!(sink.now_playing("lofi").unwrap(), None);
        sink.write_batch(std::slice::from_ref(&start)).unwrap();
        let history = sink.history("lofi", 10, None).unwrap();
        assert_eq!(history.len(), 1);
        let play_end = history[0].ended.unwrap();
        assert_eq!(play_end.id, end.id);
        assert_eq!(play_end.listener_ms, 120_000);
        assert_eq!(sink.now_playing("lofi").unwrap(), None);
    }

    #[test]
    fn a_version_1_file_is_migrated_with_its_plays_and_sessions_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let events = one_of_each_kind("lofi");
        {
            let connection = Connection::open(&path).unwrap();
            connection.execute_batch(VERSION_1_SCHEMA).unwrap();
            for event in &events {
                // Version 1 payloads had no play or session links.
                let mut kind = serde_json::to_value(&event.kind).unwrap();
                let object = kind.as_object_mut().unwrap();
                for link in ["play_id", "listener_ms", "joined_id", "client_hash"] {
                    if event.event_type() != EventType::ListenerJoined {
                        object.remove(link);
                    }
                }
                connection
                    .execute(
                        "INSERT INTO events (id, station, at_unix_ms, kind, payload)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            event.id.to_string(),
                            event.station,
                            event.at_unix_ms as i64,
                            event.event_type().as_str(),
                            kind.to_string()
                        ],
                    )
                    .unwrap();
            }
        }
        let sink = SqliteSink::open(&path).unwrap();
        let version: i64 = sink
            .connection
            .query_row("SELECT version FROM schema_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, SQLITE_SCHEMA_VERSION);
        assert_eq!(rows(&sink, "plays"), 2);
        let history = sink.history("lofi", 10, None).unwrap();
        assert_eq!(history.len(), 2);
        assert!(history.iter().all(|play| play.ended.is_some()));
        assert_eq!(rows(&sink, "sessions"), 1);
        assert!(sink.open_sessions("lofi").unwrap().is_empty());
        let recent = sink.recent_events("lofi", 100).unwrap();
        assert_eq!(recent.len(), events.len());
        assert_eq!(recent[0].id, events[events.len() - 1].id);
        // Opening again finds version 2 and changes nothing.
        drop(sink);
        let sink = SqliteSink::open(&path).unwrap();
        assert_eq!(rows(&sink, "plays"), 2);
    }

    /// The schema of version 1, as it shipped.
    const VERSION_1_SCHEMA: &str = "
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version (version) VALUES (1);
        CREATE TABLE events (
            id TEXT PRIMARY KEY NOT NULL, station TEXT NOT NULL, at_unix_ms INTEGER NOT NULL,
            kind TEXT NOT NULL, payload TEXT NOT NULL
        );
        CREATE INDEX events_by_station_time ON events (station, at_unix_ms);
        CREATE TABLE plays (
            id TEXT PRIMARY KEY NOT NULL, station TEXT NOT NULL, track_id TEXT NOT NULL,
            title TEXT NOT NULL, source TEXT NOT NULL, generator TEXT NOT NULL,
            duration_ms INTEGER NOT NULL, mastering TEXT, started_at_unix_ms INTEGER NOT NULL,
            ended_id TEXT, ended_at_unix_ms INTEGER, played_ms INTEGER, end_reason TEXT
        );
        CREATE INDEX plays_by_station_time ON plays (station, started_at_unix_ms);
        CREATE INDEX plays_by_station_track ON plays (station, track_id);
    ";
}
