//! Writing events: the rows each event makes, grouped by partition.
//!
//! Every statement is prepared once per connection, marked idempotent, and
//! carries `USING TIMESTAMP ?`, bound to the event's time in microseconds
//! (read from its id). Writing an event twice therefore writes the same cells
//! with the same timestamps, which changes nothing; the end of a play or
//! session, written later, lands on other cells of the same row; the leave of
//! a session deletes its open-session row with a timestamp later than the
//! join's, whatever order the two arrive in.
//!
//! A batch's rows are grouped by (table, partition key); each group of up to
//! [`MAX_BATCH_ROWS`] rows goes as one unlogged batch (a single statement when
//! alone), so that no batch spans partitions, and the groups are written in
//! parallel (at most [`PARALLEL_REQUESTS`] at once).

use std::collections::HashMap;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlDate, CqlTimeuuid, CqlValue, MaybeUnset};

use super::{Connected, ScyllaOptions, classify};
use crate::events::calendar::{Day, Month};
use crate::events::error::{EventSinkError, SinkOperation};
use crate::events::id::EventId;
use crate::events::model::{EventKind, PlayEvent};
use crate::events::read::session_days;
use crate::events::sqlite::transport_name;

/// Rows of one partition sent in one unlogged batch at most.
pub(crate) const MAX_BATCH_ROWS: usize = 64;
/// Requests of one `write_batch` in flight at once at most.
pub(crate) const PARALLEL_REQUESTS: usize = 64;

/// A bound value: `Unset` leaves a column as it is (no tombstone for a
/// missing optional value).
pub(crate) type Value = MaybeUnset<CqlValue>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Statement {
    Event,
    MarkDay,
    StartPlayByDay,
    StartPlayByTrack,
    StartTotal,
    EndPlayByDay,
    EndPlayByTrack,
    EndTotal,
    JoinByClient,
    JoinByDay,
    JoinOpen,
    LeaveByClient,
    LeaveByDay,
    LeaveOpen,
}

impl Statement {
    const ALL: [Statement; 14] = [
        Self::Event,
        Self::MarkDay,
        Self::StartPlayByDay,
        Self::StartPlayByTrack,
        Self::StartTotal,
        Self::EndPlayByDay,
        Self::EndPlayByTrack,
        Self::EndTotal,
        Self::JoinByClient,
        Self::JoinByDay,
        Self::JoinOpen,
        Self::LeaveByClient,
        Self::LeaveByDay,
        Self::LeaveOpen,
    ];

    /// The table the statement writes, and its CQL (`{ks}` is the keyspace).
    fn cql(self) -> (&'static str, &'static str) {
        match self {
            Self::Event => (
                "events_by_station_day",
                "INSERT INTO {ks}.events_by_station_day (station, day, id, kind, payload)
                 VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?",
            ),
            Self::MarkDay => (
                "station_days",
                "INSERT INTO {ks}.station_days (station, kind, day) VALUES (?, ?, ?) USING TIMESTAMP ?",
            ),
            Self::StartPlayByDay => (
                "plays_by_station_day",
                "INSERT INTO {ks}.plays_by_station_day
                 (station, day, play_id, track_id, title, source, generator, duration_ms, mastering)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            ),
            Self::StartPlayByTrack => (
                "plays_by_track_month",
                "INSERT INTO {ks}.plays_by_track_month
                 (track_id, month, play_id, station, title, source, generator, duration_ms, mastering)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            ),
            Self::StartTotal => (
                "track_day_totals",
                "INSERT INTO {ks}.track_day_totals (station, day, track_id, play_id, title, started)
                 VALUES (?, ?, ?, ?, ?, true) USING TIMESTAMP ?",
            ),
            Self::EndPlayByDay => (
                "plays_by_station_day",
                "INSERT INTO {ks}.plays_by_station_day
                 (station, day, play_id, track_id, ended_id, played_ms, end_reason, listener_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            ),
            Self::EndPlayByTrack => (
                "plays_by_track_month",
                "INSERT INTO {ks}.plays_by_track_month
                 (track_id, month, play_id, station, ended_id, played_ms, end_reason, listener_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            ),
            Self::EndTotal => (
                "track_day_totals",
                "INSERT INTO {ks}.track_day_totals (station, day, track_id, play_id, listener_ms)
                 VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?",
            ),
            Self::JoinByClient => (
                "listener_sessions_by_client_month",
                "INSERT INTO {ks}.listener_sessions_by_client_month
                 (client_hash, month, joined_id, station, session_id, transport, rendition_kbps,
                  user_agent_family)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            ),
            Self::JoinByDay => (
                "listener_sessions_by_station_day",
                "INSERT INTO {ks}.listener_sessions_by_station_day (station, day, joined_id)
                 VALUES (?, ?, ?) USING TIMESTAMP ?",
            ),
            Self::JoinOpen => (
                "open_listener_sessions",
                "INSERT INTO {ks}.open_listener_sessions
                 (station, day, joined_id, session_id, client_hash, transport, rendition_kbps,
                  user_agent_family)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            ),
            Self::LeaveByClient => (
                "listener_sessions_by_client_month",
                "INSERT INTO {ks}.listener_sessions_by_client_month
                 (client_hash, month, joined_id, left_id, listened_ms, disconnect_reason)
                 VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
            ),
            Self::LeaveByDay => (
                "listener_sessions_by_station_day",
                "INSERT INTO {ks}.listener_sessions_by_station_day
                 (station, day, joined_id, left_id, listened_ms)
                 VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?",
            ),
            Self::LeaveOpen => (
                "open_listener_sessions",
                "DELETE FROM {ks}.open_listener_sessions USING TIMESTAMP ?
                 WHERE station = ? AND day = ? AND joined_id = ?",
            ),
        }
    }
}

/// The prepared write statements of one connection.
pub(crate) struct Statements {
    prepared: HashMap<Statement, PreparedStatement>,
}

impl Statements {
    pub(crate) async fn prepare(
        session: &Session,
        options: &ScyllaOptions,
    ) -> Result<Self, EventSinkError> {
        let mut prepared = HashMap::new();
        for statement in Statement::ALL {
            let (_, cql) = statement.cql();
            let mut ready = session
                .prepare(cql.replace("{ks}", &options.keyspace))
                .await
                .map_err(|error| classify::prepare(&options.cluster_name(), error))?;
            ready.set_is_idempotent(true);
            prepared.insert(statement, ready);
        }
        Ok(Self { prepared })
    }

    fn get(&self, statement: Statement) -> Option<&PreparedStatement> {
        self.prepared.get(&statement)
    }
}

/// One row to write: a statement, the partition it writes and its values.
#[derive(Debug)]
pub(crate) struct Row {
    statement: Statement,
    /// The table and the partition key's values, as text.
    partition: (&'static str, String),
    values: Vec<Value>,
}

/// A day on which a station has rows of a kind (`station_days`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DayMark {
    station: String,
    kind: &'static str,
    day: Day,
    /// The latest event time marking it, in microseconds.
    timestamp: i64,
}

impl DayMark {
    pub(crate) fn key(&self) -> (String, &'static str, u32) {
        (self.station.clone(), self.kind, self.day.days_since_epoch())
    }

    fn row(&self) -> Row {
        Row {
            statement: Statement::MarkDay,
            partition: ("station_days", self.station.clone()),
            values: vec![
                text(&self.station),
                text(self.kind),
                date(self.day),
                timestamp_value(self.timestamp),
            ],
        }
    }
}

/// The rows of a batch of events, and the days they mark.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    rows: Vec<Row>,
    day_marks: Vec<DayMark>,
}

impl Rows {
    pub(crate) fn day_marks(&self) -> &[DayMark] {
        &self.day_marks
    }

    fn mark(&mut self, station: &str, kind: &'static str, day: Day, timestamp: i64) {
        if let Some(mark) = self
            .day_marks
            .iter_mut()
            .find(|mark| mark.station == station && mark.kind == kind && mark.day == day)
        {
            mark.timestamp = mark.timestamp.max(timestamp);
        } else {
            self.day_marks.push(DayMark {
                station: station.to_string(),
                kind,
                day,
                timestamp,
            });
        }
    }

    fn push(&mut self, statement: Statement, key: String, values: Vec<Value>) {
        let (table, _) = statement.cql();
        self.rows.push(Row {
            statement,
            partition: (table, key),
            values,
        });
    }
}

/// The event's time as a CQL write timestamp: microseconds since the Unix
/// epoch, read from its id.
pub(crate) fn write_timestamp(id: EventId) -> i64 {
    i64::try_from(id.unix_nanos() / 1000).unwrap_or(i64::MAX)
}

fn text(value: &str) -> Value {
    MaybeUnset::Set(CqlValue::Text(value.to_string()))
}

fn optional_text(value: Option<String>) -> Value {
    value.map_or(MaybeUnset::Unset, |value| {
        MaybeUnset::Set(CqlValue::Text(value))
    })
}

fn bigint(value: u64) -> Value {
    MaybeUnset::Set(CqlValue::BigInt(i64::try_from(value).unwrap_or(i64::MAX)))
}

fn int(value: u32) -> Value {
    MaybeUnset::Set(CqlValue::Int(i32::try_from(value).unwrap_or(i32::MAX)))
}

fn month(value: Month) -> Value {
    MaybeUnset::Set(CqlValue::Int(value.key()))
}

fn timestamp_value(micros: i64) -> Value {
    MaybeUnset::Set(CqlValue::BigInt(micros))
}

pub(crate) fn date(day: Day) -> Value {
    MaybeUnset::Set(CqlValue::Date(cql_date(day)))
}

pub(crate) fn cql_date(day: Day) -> CqlDate {
    CqlDate((1u32 << 31).saturating_add(day.days_since_epoch()))
}

pub(crate) fn timeuuid(id: EventId) -> Value {
    MaybeUnset::Set(CqlValue::Timeuuid(CqlTimeuuid::from(*id.as_uuid())))
}

/// The rows `events` make, in event order.
pub(crate) fn rows_of(events: &[PlayEvent]) -> Result<Rows, EventSinkError> {
    let mut rows = Rows::default();
    for event in events {
        let encode = |source| EventSinkError::Encode {
            id: event.id,
            source,
        };
        let ts = write_timestamp(event.id);
        let station = event.station.as_str();
        let day = Day::of_unix_ms(event.id.unix_ms());
        let day_key = |day: Day| format!("{station}\u{0}{}", day.days_since_epoch());
        let payload = serde_json::to_string(&event.kind).map_err(encode)?;
        rows.push(
            Statement::Event,
            day_key(day),
            vec![
                text(station),
                date(day),
                timeuuid(event.id),
                text(event.event_type().as_str()),
                text(&payload),
                timestamp_value(ts),
            ],
        );
        rows.mark(station, "events", day, ts);
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
                let month_of_play = day.month();
                rows.push(
                    Statement::StartPlayByDay,
                    day_key(day),
                    vec![
                        text(station),
                        date(day),
                        timeuuid(event.id),
                        text(track_id),
                        text(title),
                        text(&source),
                        text(generator),
                        bigint(*duration_ms),
                        optional_text(mastering.clone()),
                        timestamp_value(ts),
                    ],
                );
                rows.push(
                    Statement::StartPlayByTrack,
                    format!("{track_id}\u{0}{}", month_of_play.key()),
                    vec![
                        text(track_id),
                        month(month_of_play),
                        timeuuid(event.id),
                        text(station),
                        text(title),
                        text(&source),
                        text(generator),
                        bigint(*duration_ms),
                        optional_text(mastering),
                        timestamp_value(ts),
                    ],
                );
                rows.push(
                    Statement::StartTotal,
                    day_key(day),
                    vec![
                        text(station),
                        date(day),
                        text(track_id),
                        timeuuid(event.id),
                        text(title),
                        timestamp_value(ts),
                    ],
                );
                rows.mark(station, "plays", day, ts);
            }
            EventKind::TrackEnded {
                track_id,
                played_ms,
                reason,
                play_id: Some(play_id),
                listener_ms,
            } => {
                let play_day = Day::of_unix_ms(play_id.unix_ms());
                let play_month = play_day.month();
                rows.push(
                    Statement::EndPlayByDay,
                    day_key(play_day),
                    vec![
                        text(station),
                        date(play_day),
                        timeuuid(*play_id),
                        text(track_id),
                        timeuuid(event.id),
                        bigint(*played_ms),
                        text(reason.as_str()),
                        bigint(*listener_ms),
                        timestamp_value(ts),
                    ],
                );
                rows.push(
                    Statement::EndPlayByTrack,
                    format!("{track_id}\u{0}{}", play_month.key()),
                    vec![
                        text(track_id),
                        month(play_month),
                        timeuuid(*play_id),
                        text(station),
                        timeuuid(event.id),
                        bigint(*played_ms),
                        text(reason.as_str()),
                        bigint(*listener_ms),
                        timestamp_value(ts),
                    ],
                );
                rows.push(
                    Statement::EndTotal,
                    day_key(play_day),
                    vec![
                        text(station),
                        date(play_day),
                        text(track_id),
                        timeuuid(*play_id),
                        bigint(*listener_ms),
                        timestamp_value(ts),
                    ],
                );
            }
            EventKind::ListenerJoined {
                session_id,
                transport,
                rendition_kbps,
                client_hash,
                user_agent_family,
            } => {
                let join_month = day.month();
                rows.push(
                    Statement::JoinByClient,
                    format!("{client_hash}\u{0}{}", join_month.key()),
                    vec![
                        text(client_hash.as_str()),
                        month(join_month),
                        timeuuid(event.id),
                        text(station),
                        text(session_id),
                        text(transport_name(*transport)),
                        int(*rendition_kbps),
                        text(user_agent_family),
                        timestamp_value(ts),
                    ],
                );
                rows.push(
                    Statement::JoinByDay,
                    day_key(day),
                    vec![
                        text(station),
                        date(day),
                        timeuuid(event.id),
                        timestamp_value(ts),
                    ],
                );
                rows.push(
                    Statement::JoinOpen,
                    day_key(day),
                    vec![
                        text(station),
                        date(day),
                        timeuuid(event.id),
                        text(session_id),
                        text(client_hash.as_str()),
                        text(transport_name(*transport)),
                        int(*rendition_kbps),
                        text(user_agent_family),
                        timestamp_value(ts),
                    ],
                );
                rows.mark(station, "sessions", day, ts);
            }
            EventKind::ListenerLeft {
                listened_ms,
                disconnect_reason,
                joined_id: Some(joined_id),
                client_hash,
                ..
            } => {
                let join_day = Day::of_unix_ms(joined_id.unix_ms());
                if let Some(client_hash) = client_hash {
                    let join_month = join_day.month();
                    rows.push(
                        Statement::LeaveByClient,
                        format!("{client_hash}\u{0}{}", join_month.key()),
                        vec![
                            text(client_hash.as_str()),
                            month(join_month),
                            timeuuid(*joined_id),
                            timeuuid(event.id),
                            bigint(*listened_ms),
                            text(disconnect_reason),
                            timestamp_value(ts),
                        ],
                    );
                }
                if *joined_id <= event.id {
                    let (first, last) = session_days(join_day, event.id);
                    let mut open_day = first;
                    while open_day <= last {
                        rows.push(
                            Statement::LeaveByDay,
                            day_key(open_day),
                            vec![
                                text(station),
                                date(open_day),
                                timeuuid(*joined_id),
                                timeuuid(event.id),
                                bigint(*listened_ms),
                                timestamp_value(ts),
                            ],
                        );
                        if open_day == last {
                            break;
                        }
                        open_day = open_day.next();
                    }
                }
                rows.push(
                    Statement::LeaveOpen,
                    day_key(join_day),
                    vec![
                        timestamp_value(ts),
                        text(station),
                        date(join_day),
                        timeuuid(*joined_id),
                    ],
                );
            }
            // Ends without a link to their start (stored before links existed)
            // and the other kinds are kept in the events table only.
            EventKind::TrackEnded { play_id: None, .. }
            | EventKind::ListenerLeft {
                joined_id: None, ..
            }
            | EventKind::StationStarted
            | EventKind::StationStopped
            | EventKind::PlaylistSwapped { .. }
            | EventKind::Skip { .. }
            | EventKind::ActorRestarted { .. } => {}
        }
    }
    Ok(rows)
}

/// Writes `rows` and the `marks` not yet written by this process: all
/// partitions in parallel; the first failure is returned.
pub(crate) async fn execute(
    connection: &Connected,
    cluster: &str,
    rows: Rows,
    marks: &[DayMark],
) -> Result<(), EventSinkError> {
    let mut groups: Vec<Vec<Row>> = Vec::new();
    let mut index: HashMap<(&'static str, String), usize> = HashMap::new();
    for row in rows.rows.into_iter().chain(marks.iter().map(DayMark::row)) {
        let slot = *index.entry(row.partition.clone()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[slot].push(row);
    }
    let mut requests: Vec<Vec<Row>> = Vec::new();
    for mut group in groups {
        while group.len() > MAX_BATCH_ROWS {
            let rest = group.split_off(MAX_BATCH_ROWS);
            requests.push(group);
            group = rest;
        }
        requests.push(group);
    }
    stream::iter(
        requests
            .into_iter()
            .map(|request| write_group(connection, cluster, request)),
    )
    .buffer_unordered(PARALLEL_REQUESTS)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

/// Writes rows of one partition: one statement, or one unlogged batch.
async fn write_group(
    connection: &Connected,
    cluster: &str,
    mut group: Vec<Row>,
) -> Result<(), EventSinkError> {
    let missing = || EventSinkError::ClusterSetup {
        cluster: cluster.to_string(),
        message: "a write statement was not prepared".into(),
        source: None,
    };
    let fail = |error| classify::execution(cluster, SinkOperation::Write, error);
    if group.len() == 1 {
        let row = group.pop().ok_or_else(missing)?;
        let statement = connection
            .statements
            .get(row.statement)
            .ok_or_else(missing)?;
        connection
            .session
            .execute_unpaged(statement, row.values)
            .await
            .map_err(fail)?;
        return Ok(());
    }
    let mut batch = Batch::new(BatchType::Unlogged);
    batch.set_is_idempotent(true);
    let mut values = Vec::with_capacity(group.len());
    for row in group {
        let statement = connection
            .statements
            .get(row.statement)
            .ok_or_else(missing)?;
        batch.append_statement(statement.clone());
        values.push(row.values);
    }
    connection
        .session
        .batch(&batch, values)
        .await
        .map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::model::tests::one_of_each_kind;

    #[test]
    fn every_row_names_one_partition_and_binds_its_timestamp() {
        let events = one_of_each_kind("lofi");
        let rows = rows_of(&events).unwrap();
        // One events row per event, plus the rows each kind derives.
        let count = |statement: Statement| {
            rows.rows
                .iter()
                .filter(|row| row.statement == statement)
                .count()
        };
        assert_eq!(count(Statement::Event), events.len());
        assert_eq!(count(Statement::StartPlayByDay), 2);
        assert_eq!(count(Statement::EndPlayByTrack), 2);
        assert_eq!(count(Statement::JoinOpen), 1);
        assert_eq!(count(Statement::LeaveOpen), 1);
        assert_eq!(count(Statement::LeaveByDay), 1);
        for row in &rows.rows {
            let (table, cql) = row.statement.cql();
            assert_eq!(row.partition.0, table);
            assert_eq!(
                cql.matches('?').count(),
                row.values.len(),
                "{:?}",
                row.statement
            );
        }
        let first = &rows.rows[0];
        let expected = write_timestamp(events[0].id);
        assert!(
            matches!(first.values.last(), Some(MaybeUnset::Set(CqlValue::BigInt(ts))) if *ts == expected),
            "{:?}",
            first.values.last()
        );
        let kinds: Vec<&str> = rows.day_marks().iter().map(|mark| mark.kind).collect();
        assert_eq!(kinds, ["events", "plays", "sessions"]);
    }

    #[test]
    fn the_write_timestamp_is_the_event_time_in_microseconds() {
        let id = EventId::now();
        assert_eq!(
            write_timestamp(id),
            i64::try_from(id.unix_nanos() / 1000).unwrap()
        );
        assert_eq!(write_timestamp(id) / 1000, id.unix_ms() as i64);
    }

    #[test]
    fn dates_count_from_the_cql_epoch() {
        assert_eq!(cql_date(Day::from_days_since_epoch(0)), CqlDate(1 << 31));
        assert_eq!(
            cql_date("2025-03-01".parse().unwrap()),
            CqlDate((1 << 31) + 20_148)
        );
    }
}
