//! Reading events back from the cluster: walks over a station's days (from
//! `station_days`, newest first) and single-partition queries.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::stream::TryStreamExt;
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlDate, CqlTimestamp, CqlTimeuuid};

use super::write::cql_date;
use super::{Connected, ScyllaOptions, ScyllaStore, classify, connected};
use crate::events::calendar::{Day, Month};
use crate::events::error::{EventSinkError, SinkOperation};
use crate::events::id::EventId;
use crate::events::model::{
    ClientHash, EndReason, EventKind, MasteringStats, Play, PlayEnd, PlayEvent, TrackSource,
};
use crate::events::read::{
    DayStats, EventReader, ListenerSession, OPEN_SESSION_DAYS, PlayTotal, SessionEnd, SessionSpan,
    TrackPlays,
};
use crate::events::sqlite::parse_transport;

/// Requests one read may make one after another, for its time bound.
const READ_ROUND_TRIPS: u32 = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Query {
    Days,
    Events,
    PlaysOfDay,
    PlaysOfDayBefore,
    PlaysOfTrack,
    TotalsOfDay,
    SessionsOfDay,
    OpenSessionsOfDay,
    SessionsOfClient,
}

const PLAY_COLUMNS: &str = "play_id, track_id, title, source, generator, duration_ms, mastering, \
                            ended_id, played_ms, end_reason, listener_ms";

impl Query {
    const ALL: [Query; 9] = [
        Self::Days,
        Self::Events,
        Self::PlaysOfDay,
        Self::PlaysOfDayBefore,
        Self::PlaysOfTrack,
        Self::TotalsOfDay,
        Self::SessionsOfDay,
        Self::OpenSessionsOfDay,
        Self::SessionsOfClient,
    ];

    fn cql(self) -> String {
        match self {
            Self::Days => "SELECT day FROM {ks}.station_days
                 WHERE station = ? AND kind = ? AND day <= ?"
                .into(),
            Self::Events => "SELECT id, kind, payload FROM {ks}.events_by_station_day
                 WHERE station = ? AND day = ?"
                .into(),
            Self::PlaysOfDay => format!(
                "SELECT {PLAY_COLUMNS} FROM {{ks}}.plays_by_station_day WHERE station = ? AND day = ?"
            ),
            Self::PlaysOfDayBefore => format!(
                "SELECT {PLAY_COLUMNS} FROM {{ks}}.plays_by_station_day
                 WHERE station = ? AND day = ? AND play_id < minTimeuuid(?)"
            ),
            Self::PlaysOfTrack => format!(
                "SELECT {PLAY_COLUMNS}, station FROM {{ks}}.plays_by_track_month
                 WHERE track_id = ? AND month = ?"
            ),
            Self::TotalsOfDay => "SELECT track_id, play_id, title, started, listener_ms
                 FROM {ks}.track_day_totals WHERE station = ? AND day = ?"
                .into(),
            Self::SessionsOfDay => "SELECT joined_id, left_id, listened_ms
                 FROM {ks}.listener_sessions_by_station_day WHERE station = ? AND day = ?"
                .into(),
            Self::OpenSessionsOfDay => "SELECT joined_id, session_id, client_hash, transport,
                        rendition_kbps, user_agent_family
                 FROM {ks}.open_listener_sessions WHERE station = ? AND day = ?"
                .into(),
            Self::SessionsOfClient => "SELECT joined_id, station, session_id, transport,
                        rendition_kbps, user_agent_family, left_id, listened_ms, disconnect_reason
                 FROM {ks}.listener_sessions_by_client_month WHERE client_hash = ? AND month = ?"
                .into(),
        }
    }
}

/// The prepared read statements of one connection.
pub(crate) struct ReadStatements {
    prepared: HashMap<Query, PreparedStatement>,
}

impl ReadStatements {
    pub(crate) async fn prepare(
        session: &Session,
        options: &ScyllaOptions,
    ) -> Result<Self, EventSinkError> {
        let mut prepared = HashMap::new();
        for query in Query::ALL {
            let mut ready = session
                .prepare(query.cql().replace("{ks}", &options.keyspace))
                .await
                .map_err(|error| classify::prepare(&options.cluster_name(), error))?;
            ready.set_is_idempotent(true);
            prepared.insert(query, ready);
        }
        Ok(Self { prepared })
    }
}

/// One read in progress: the connection and the cluster's name for errors.
struct Reader {
    connection: Arc<Connected>,
    cluster: String,
}

type PlayRow = (
    CqlTimeuuid,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<CqlTimeuuid>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

impl Reader {
    /// Every row of `query` with `values` (all pages), or the first `limit`.
    async fn rows<R>(
        &self,
        query: Query,
        values: impl SerializeRow,
        limit: Option<usize>,
    ) -> Result<Vec<R>, EventSinkError>
    where
        R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
    {
        let statement = self
            .connection
            .reads
            .prepared
            .get(&query)
            .ok_or_else(|| EventSinkError::ClusterSetup {
                cluster: self.cluster.clone(),
                message: "a read statement was not prepared".into(),
                source: None,
            })?
            .clone();
        let pager = self
            .connection
            .session
            .execute_iter(statement, values)
            .await
            .map_err(|error| classify::read(&self.cluster, error, true))?;
        let mut stream = pager
            .rows_stream::<R>()
            .map_err(|error| classify::read(&self.cluster, error, false))?;
        let mut rows = Vec::new();
        while limit.is_none_or(|limit| rows.len() < limit) {
            match stream
                .try_next()
                .await
                .map_err(|error| classify::read(&self.cluster, error, true))?
            {
                Some(row) => rows.push(row),
                None => break,
            }
        }
        Ok(rows)
    }

    /// The station's days with rows of `kind`, newest first, from `until`
    /// back, at most `limit`.
    async fn days(
        &self,
        station: &str,
        kind: &str,
        until: Day,
        limit: Option<usize>,
    ) -> Result<Vec<Day>, EventSinkError> {
        let rows: Vec<(CqlDate,)> = self
            .rows(Query::Days, (station, kind, cql_date(until)), limit)
            .await?;
        Ok(rows.into_iter().map(|(date,)| day_of(date)).collect())
    }

    fn decode(&self, row: String, source: crate::events::error::DriverError) -> EventSinkError {
        EventSinkError::ClusterRefused {
            cluster: self.cluster.clone(),
            operation: SinkOperation::Read,
            source: format!("row {row} cannot be read: {source}").into(),
        }
    }

    fn event_id(&self, uuid: CqlTimeuuid) -> Result<EventId, EventSinkError> {
        let uuid: uuid::Uuid = uuid.into();
        EventId::try_from(uuid).map_err(|error| self.decode(uuid.to_string(), error.into()))
    }

    /// A play from its row, `None` while its start is not stored.
    fn play(&self, station: &str, row: PlayRow) -> Result<Option<Play>, EventSinkError> {
        let (
            play_id,
            track_id,
            title,
            source,
            generator,
            duration_ms,
            mastering,
            ended_id,
            played_ms,
            end_reason,
            listener_ms,
        ) = row;
        let id = self.event_id(play_id)?;
        let (Some(track_id), Some(title), Some(source), Some(generator)) =
            (track_id, title, source, generator)
        else {
            return Ok(None);
        };
        let decode =
            |source: crate::events::error::DriverError| self.decode(id.to_string(), source);
        let ended = match ended_id {
            None => None,
            Some(ended_id) => {
                let ended_id = self.event_id(ended_id)?;
                Some(PlayEnd {
                    id: ended_id,
                    at_unix_ms: ended_id.unix_ms(),
                    played_ms: unsigned(played_ms),
                    reason: end_reason
                        .unwrap_or_default()
                        .parse::<EndReason>()
                        .map_err(|error| decode(error.into()))?,
                    listener_ms: unsigned(listener_ms),
                })
            }
        };
        Ok(Some(Play {
            id,
            station: station.to_string(),
            track_id,
            title,
            source: serde_json::from_str::<TrackSource>(&source)
                .map_err(|error| decode(error.into()))?,
            generator,
            duration_ms: unsigned(duration_ms),
            mastering: mastering
                .map(|json| serde_json::from_str::<MasteringStats>(&json))
                .transpose()
                .map_err(|error| decode(error.into()))?,
            started_at_unix_ms: id.unix_ms(),
            ended,
        }))
    }

    async fn history(
        &self,
        station: &str,
        limit: usize,
        before_unix_ms: Option<u64>,
    ) -> Result<Vec<Play>, EventSinkError> {
        let mut plays = Vec::new();
        if limit == 0 {
            return Ok(plays);
        }
        let until = before_unix_ms.map_or(Day::from_days_since_epoch(u32::MAX), |before| {
            Day::of_unix_ms(before)
        });
        for day in self.days(station, "plays", until, None).await? {
            let rows: Vec<PlayRow> = match before_unix_ms {
                Some(before) if Day::of_unix_ms(before) == day => {
                    let before = CqlTimestamp(i64::try_from(before).unwrap_or(i64::MAX));
                    self.rows(
                        Query::PlaysOfDayBefore,
                        (station, cql_date(day), before),
                        None,
                    )
                    .await?
                }
                _ => {
                    self.rows(Query::PlaysOfDay, (station, cql_date(day)), None)
                        .await?
                }
            };
            for row in rows {
                if let Some(play) = self.play(station, row)? {
                    plays.push(play);
                    if plays.len() == limit {
                        return Ok(plays);
                    }
                }
            }
        }
        Ok(plays)
    }

    async fn open_sessions(&self, station: &str) -> Result<Vec<ListenerSession>, EventSinkError> {
        let days = self
            .days(
                station,
                "sessions",
                Day::from_days_since_epoch(u32::MAX),
                Some(OPEN_SESSION_DAYS),
            )
            .await?;
        let mut sessions = Vec::new();
        for day in days {
            type OpenRow = (
                CqlTimeuuid,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<i32>,
                Option<String>,
            );
            let rows: Vec<OpenRow> = self
                .rows(Query::OpenSessionsOfDay, (station, cql_date(day)), None)
                .await?;
            for (joined_id, session_id, client_hash, transport, rendition, user_agent) in rows {
                let id = self.event_id(joined_id)?;
                let (Some(session_id), Some(user_agent_family)) = (session_id, user_agent) else {
                    continue;
                };
                sessions.push(ListenerSession {
                    id,
                    station: station.to_string(),
                    session_id,
                    client_hash: ClientHash::from_stored(client_hash.unwrap_or_default()),
                    transport: parse_transport(transport.as_deref().unwrap_or_default())
                        .map_err(|error| self.decode(id.to_string(), error))?,
                    rendition_kbps: u32::try_from(rendition.unwrap_or(0)).unwrap_or(0),
                    user_agent_family,
                    joined_at_unix_ms: id.unix_ms(),
                    left: None,
                });
            }
        }
        sessions.sort_by_key(|session| std::cmp::Reverse(session.id));
        Ok(sessions)
    }

    async fn day_stats(&self, station: &str, day: Day) -> Result<DayStats, EventSinkError> {
        type TotalRow = (
            String,
            CqlTimeuuid,
            Option<String>,
            Option<bool>,
            Option<i64>,
        );
        let totals: Vec<TotalRow> = self
            .rows(Query::TotalsOfDay, (station, cql_date(day)), None)
            .await?;
        let mut plays = Vec::with_capacity(totals.len());
        for (track_id, play_id, title, started, listener_ms) in totals {
            if started != Some(true) {
                continue;
            }
            plays.push(PlayTotal {
                play_id: self.event_id(play_id)?,
                track_id,
                title: title.unwrap_or_default(),
                listener_ms: unsigned(listener_ms),
            });
        }
        type SessionRow = (CqlTimeuuid, Option<CqlTimeuuid>, Option<i64>);
        let rows: Vec<SessionRow> = self
            .rows(Query::SessionsOfDay, (station, cql_date(day)), None)
            .await?;
        let mut sessions = Vec::with_capacity(rows.len());
        for (joined_id, left_id, listened_ms) in rows {
            sessions.push(SessionSpan {
                joined: self.event_id(joined_id)?,
                left: left_id
                    .map(|left| self.event_id(left))
                    .transpose()?
                    .map(|left| (left, unsigned(listened_ms))),
            });
        }
        for open in self.open_sessions(station).await? {
            sessions.push(SessionSpan {
                joined: open.id,
                left: None,
            });
        }
        Ok(DayStats::compute(station, day, plays, sessions))
    }
}

fn unsigned(value: Option<i64>) -> u64 {
    value.map_or(0, |value| u64::try_from(value).unwrap_or(0))
}

fn day_of(date: CqlDate) -> Day {
    Day::from_days_since_epoch(date.0.saturating_sub(1 << 31))
}

impl ScyllaStore {
    /// Runs a read with a connection, bounded in time.
    fn read<T, F, Fut>(&self, read: F) -> Result<T, EventSinkError>
    where
        T: Send + 'static,
        F: FnOnce(Reader) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, EventSinkError>> + Send,
    {
        let shared = Arc::clone(&self.shared);
        let limit = self.request_limit(READ_ROUND_TRIPS);
        self.run(SinkOperation::Read, limit, async move {
            let connection = connected(&shared, false).await?;
            read(Reader {
                connection,
                cluster: shared.cluster.clone(),
            })
            .await
        })
    }
}

use std::future::Future;

impl EventReader for ScyllaStore {
    fn now_playing(&self, station: &str) -> Result<Option<Play>, EventSinkError> {
        let station = station.to_string();
        self.read(move |reader| async move {
            let latest = reader.history(&station, 1, None).await?;
            Ok(latest
                .into_iter()
                .next()
                .filter(|play| play.ended.is_none()))
        })
    }

    fn history(
        &self,
        station: &str,
        limit: usize,
        before_unix_ms: Option<u64>,
    ) -> Result<Vec<Play>, EventSinkError> {
        let station = station.to_string();
        self.read(
            move |reader| async move { reader.history(&station, limit, before_unix_ms).await },
        )
    }

    fn day_stats(&self, station: &str, day: Day) -> Result<DayStats, EventSinkError> {
        let station = station.to_string();
        self.read(move |reader| async move { reader.day_stats(&station, day).await })
    }

    fn track_plays(&self, track_id: &str, month: Month) -> Result<TrackPlays, EventSinkError> {
        let track_id = track_id.to_string();
        self.read(move |reader| async move {
            type TrackRow = (
                CqlTimeuuid,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<i64>,
                Option<String>,
                Option<CqlTimeuuid>,
                Option<i64>,
                Option<String>,
                Option<i64>,
                Option<String>,
            );
            let rows: Vec<TrackRow> = reader
                .rows(Query::PlaysOfTrack, (track_id.as_str(), month.key()), None)
                .await?;
            let mut plays = Vec::with_capacity(rows.len());
            for row in rows {
                let (a, _, c, d, e, f, g, h, i, j, k, station) = row;
                let Some(station) = station else {
                    continue;
                };
                if let Some(play) = reader.play(
                    &station,
                    (a, Some(track_id.clone()), c, d, e, f, g, h, i, j, k),
                )? {
                    plays.push(play);
                }
            }
            Ok(TrackPlays::from_plays(&track_id, month, plays))
        })
    }

    fn open_sessions(&self, station: &str) -> Result<Vec<ListenerSession>, EventSinkError> {
        let station = station.to_string();
        self.read(move |reader| async move { reader.open_sessions(&station).await })
    }

    fn listener_sessions(
        &self,
        client_hash: &ClientHash,
        month: Month,
    ) -> Result<Vec<ListenerSession>, EventSinkError> {
        let client_hash = client_hash.clone();
        self.read(move |reader| async move {
            type ClientRow = (
                CqlTimeuuid,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<i32>,
                Option<String>,
                Option<CqlTimeuuid>,
                Option<i64>,
                Option<String>,
            );
            let rows: Vec<ClientRow> = reader
                .rows(
                    Query::SessionsOfClient,
                    (client_hash.as_str(), month.key()),
                    None,
                )
                .await?;
            let mut sessions = Vec::new();
            for (
                joined_id,
                station,
                session_id,
                transport,
                rendition,
                user_agent,
                left_id,
                listened,
                reason,
            ) in rows
            {
                let id = reader.event_id(joined_id)?;
                let (Some(station), Some(session_id), Some(user_agent_family)) =
                    (station, session_id, user_agent)
                else {
                    continue;
                };
                let left = match left_id {
                    None => None,
                    Some(left_id) => {
                        let left_id = reader.event_id(left_id)?;
                        Some(SessionEnd {
                            id: left_id,
                            at_unix_ms: left_id.unix_ms(),
                            listened_ms: unsigned(listened),
                            disconnect_reason: reason.unwrap_or_default(),
                        })
                    }
                };
                sessions.push(ListenerSession {
                    id,
                    station,
                    session_id,
                    client_hash: client_hash.clone(),
                    transport: parse_transport(transport.as_deref().unwrap_or_default())
                        .map_err(|error| reader.decode(id.to_string(), error))?,
                    rendition_kbps: u32::try_from(rendition.unwrap_or(0)).unwrap_or(0),
                    user_agent_family,
                    joined_at_unix_ms: id.unix_ms(),
                    left,
                });
            }
            sessions.sort_by_key(|session| std::cmp::Reverse(session.id));
            Ok(sessions)
        })
    }

    fn recent_events(&self, station: &str, limit: usize) -> Result<Vec<PlayEvent>, EventSinkError> {
        let station = station.to_string();
        self.read(move |reader| async move {
            let mut events = Vec::new();
            if limit == 0 {
                return Ok(events);
            }
            let days = reader
                .days(
                    &station,
                    "events",
                    Day::from_days_since_epoch(u32::MAX),
                    None,
                )
                .await?;
            for day in days {
                let remaining = limit - events.len();
                let rows: Vec<(CqlTimeuuid, String, String)> = reader
                    .rows(
                        Query::Events,
                        (station.as_str(), cql_date(day)),
                        Some(remaining),
                    )
                    .await?;
                for (id, _kind, payload) in rows {
                    let id = reader.event_id(id)?;
                    let kind: EventKind = serde_json::from_str(&payload)
                        .map_err(|error| reader.decode(id.to_string(), error.into()))?;
                    events.push(PlayEvent::with_id(id, station.clone(), kind));
                }
                if events.len() >= limit {
                    break;
                }
            }
            Ok(events)
        })
    }
}
