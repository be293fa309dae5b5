//! The embedded event sink: one SQLite file.
//!
//! # Schema (version 1)
//! - `schema_version (version)`: one row holding the schema version. A file
//!   with a newer version is refused, never changed.
//! - `events (id TEXT PRIMARY KEY, station, at_unix_ms, kind, payload)`: every
//!   event; `kind` is the [`EventType`] name and `payload` the JSON of the
//!   [`EventKind`]. Indexed on `(station, at_unix_ms)`.
//! - `plays`: one row per `TrackStarted` event, keyed by its id, completed by
//!   the matching `TrackEnded` (the latest open play of the same track on the
//!   same station that started no later than it ended). Indexed on
//!   `(station, started_at_unix_ms)`.
//!
//! Rows written within the same millisecond are read back in the order they
//! were written.
//!
//! The file runs in WAL mode with `synchronous=NORMAL`: a committed batch
//! survives a crash of the process, and the last batches before a power loss
//! may be lost. Readers in other processes (a backup, an operator's `sqlite3`)
//! do not block the writer; a writer that finds the file locked waits up to
//! [`SqliteOptions::busy_timeout`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};

use super::EventSink;
use super::error::{EventSinkError, SinkOperation};
use super::id::EventId;
use super::model::{EndReason, EventKind, EventType, Play, PlayEnd, PlayEvent, TrackSource};

/// The schema version this build writes and reads.
pub const SQLITE_SCHEMA_VERSION: i64 = 1;

const CREATE_VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);";

const CREATE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY NOT NULL,
    station TEXT NOT NULL,
    at_unix_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_station_time ON events (station, at_unix_ms);
CREATE TABLE IF NOT EXISTS plays (
    id TEXT PRIMARY KEY NOT NULL,
    station TEXT NOT NULL,
    track_id TEXT NOT NULL,
    title TEXT NOT NULL,
    source TEXT NOT NULL,
    generator TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    mastering TEXT,
    started_at_unix_ms INTEGER NOT NULL,
    ended_id TEXT,
    ended_at_unix_ms INTEGER,
    played_ms INTEGER,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS plays_by_station_time ON plays (station, started_at_unix_ms);
CREATE INDEX IF NOT EXISTS plays_by_station_track ON plays (station, track_id);
";

const INSERT_EVENT: &str = "INSERT OR IGNORE INTO events (id, station, at_unix_ms, kind, payload)
     VALUES (?1, ?2, ?3, ?4, ?5)";

const INSERT_PLAY: &str = "INSERT OR IGNORE INTO plays
     (id, station, track_id, title, source, generator, duration_ms, mastering, started_at_unix_ms)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

const END_PLAY: &str = "UPDATE plays
     SET ended_id = ?1, ended_at_unix_ms = ?2, played_ms = ?3, end_reason = ?4
     WHERE rowid = (
         SELECT rowid FROM plays
         WHERE station = ?5 AND track_id = ?6 AND ended_id IS NULL AND started_at_unix_ms <= ?2
         ORDER BY started_at_unix_ms DESC, rowid DESC
         LIMIT 1
     )";

const RECENT_EVENTS: &str = "SELECT id, station, at_unix_ms, payload FROM events
     WHERE station = ?1
     ORDER BY at_unix_ms DESC, rowid DESC
     LIMIT ?2";

const HISTORY: &str =
    "SELECT id, station, track_id, title, source, generator, duration_ms, mastering,
            started_at_unix_ms, ended_id, ended_at_unix_ms, played_ms, end_reason
     FROM plays
     WHERE station = ?1 AND started_at_unix_ms < ?2
     ORDER BY started_at_unix_ms DESC, rowid DESC
     LIMIT ?3";

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
    /// directories and the schema where needed.
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

    /// The latest `limit` events of `station`, newest first.
    pub fn recent_events(
        &self,
        station: &str,
        limit: usize,
    ) -> Result<Vec<PlayEvent>, EventSinkError> {
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

    /// The latest `limit` plays of `station` that started before
    /// `before_unix_ms` (all of them for `None`), newest first. To page back,
    /// pass the `started_at_unix_ms` of the oldest play of the previous page.
    pub fn history(
        &self,
        station: &str,
        limit: usize,
        before_unix_ms: Option<u64>,
    ) -> Result<Vec<Play>, EventSinkError> {
        let fail = |error| classify(&self.path, SinkOperation::Read, error);
        let before = before_unix_ms.map_or(i64::MAX, to_sql_int);
        let mut statement = self.connection.prepare_cached(HISTORY).map_err(fail)?;
        let mut rows = statement
            .query(params![station, before, to_sql_count(limit)])
            .map_err(fail)?;
        let mut plays = Vec::new();
        while let Some(row) = rows.next().map_err(fail)? {
            plays.push(self.play_from_row(row)?);
        }
        Ok(plays)
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

    /// Checks the schema version and creates what is missing, in one
    /// transaction so that two processes opening a new file agree.
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

    fn event_from_row(&self, row: &Row<'_>) -> Result<PlayEvent, EventSinkError> {
        let fail = |error| classify(&self.path, SinkOperation::Read, error);
        let id: String = row.get(0).map_err(fail)?;
        let station: String = row.get(1).map_err(fail)?;
        let at_unix_ms: i64 = row.get(2).map_err(fail)?;
        let payload: String = row.get(3).map_err(fail)?;
        let decode = |source: super::error::DriverError| EventSinkError::Decode {
            path: self.path.clone(),
            row: id.clone(),
            source,
        };
        let event_id = id
            .parse::<EventId>()
            .map_err(|error| decode(error.into()))?;
        let kind: EventKind =
            serde_json::from_str(&payload).map_err(|error| decode(error.into()))?;
        Ok(PlayEvent {
            id: event_id,
            station,
            at_unix_ms: from_sql_int(at_unix_ms),
            kind,
        })
    }

    fn play_from_row(&self, row: &Row<'_>) -> Result<Play, EventSinkError> {
        let fail = |error| classify(&self.path, SinkOperation::Read, error);
        let id: String = row.get(0).map_err(fail)?;
        let decode = |source: super::error::DriverError| EventSinkError::Decode {
            path: self.path.clone(),
            row: id.clone(),
            source,
        };
        let source: String = row.get(4).map_err(fail)?;
        let mastering: Option<String> = row.get(7).map_err(fail)?;
        let ended_id: Option<String> = row.get(9).map_err(fail)?;
        let ended = match ended_id {
            None => None,
            Some(ended_id) => {
                let ended_at: Option<i64> = row.get(10).map_err(fail)?;
                let played_ms: Option<i64> = row.get(11).map_err(fail)?;
                let reason: Option<String> = row.get(12).map_err(fail)?;
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
            let mut insert_play = transaction.prepare_cached(INSERT_PLAY).map_err(fail)?;
            let mut end_play = transaction.prepare_cached(END_PLAY).map_err(fail)?;
            for event in events {
                let encode = |source| EventSinkError::Encode {
                    id: event.id,
                    source,
                };
                let id = event.id.to_string();
                let at = to_sql_int(event.at_unix_ms);
                let payload = serde_json::to_string(&event.kind).map_err(encode)?;
                let inserted = insert_event
                    .execute(params![
                        id,
                        event.station,
                        at,
                        event.event_type().as_str(),
                        payload
                    ])
                    .map_err(fail)?;
                if inserted == 0 {
                    // Already stored, and so is everything derived from it.
                    continue;
                }
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
                        insert_play
                            .execute(params![
                                id,
                                event.station,
                                track_id,
                                title,
                                source,
                                generator,
                                to_sql_int(*duration_ms),
                                mastering,
                                at,
                            ])
                            .map_err(fail)?;
                    }
                    EventKind::TrackEnded {
                        track_id,
                        played_ms,
                        reason,
                    } => {
                        end_play
                            .execute(params![
                                id,
                                at,
                                to_sql_int(*played_ms),
                                reason.as_str(),
                                event.station,
                                track_id,
                            ])
                            .map_err(fail)?;
                    }
                    _ => {}
                }
            }
        }
        transaction.commit().map_err(fail)
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
        assert!(message.contains("version 1"), "{message}");
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
}
