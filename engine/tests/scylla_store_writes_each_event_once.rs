//! The ScyllaDB store against a real CQL node (Apache Cassandra 5.0 through
//! `scripts/cassandra.sh run`): round trips, idempotent rewrites, write
//! timestamps, schema versions; and, with no node at all, an engine that
//! still starts.

// The helpers outside the tests fail the test when they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cql;

use std::time::Duration;

use scylla::value::{CqlDate, CqlTimeuuid};
use sonicforge_engine::events::{
    CQL_SCHEMA_VERSION, ClientHash, Day, EndReason, EventKind, EventReader, EventSink,
    EventSinkError, PlayEvent, ScyllaOptions, ScyllaStore, TrackSource, Transport,
};

const TEST: &str = "scylla_store_writes_each_event_once";

/// A short station day: a play with its end, a listener who came and went.
fn events(station: &str) -> Vec<PlayEvent> {
    let client = ClientHash::from_address(std::net::Ipv4Addr::new(192, 0, 2, 1).into(), b"salt");
    let station_started = PlayEvent::new(station, EventKind::StationStarted);
    let started = PlayEvent::new(
        station,
        EventKind::TrackStarted {
            track_id: "t1".into(),
            title: "Midnight Static".into(),
            source: TrackSource::Prompt("lofi chill 80 bpm".into()),
            generator: "procedural".into(),
            duration_ms: 180_000,
            mastering: None,
        },
    );
    let joined = PlayEvent::new(
        station,
        EventKind::ListenerJoined {
            session_id: "7".into(),
            transport: Transport::Websocket,
            rendition_kbps: 128,
            client_hash: client.clone(),
            user_agent_family: "firefox".into(),
        },
    );
    let left = PlayEvent::new(
        station,
        EventKind::ListenerLeft {
            session_id: "7".into(),
            transport: Transport::Websocket,
            rendition_kbps: 128,
            listened_ms: 1_000,
            disconnect_reason: "client_closed".into(),
            joined_id: Some(joined.id),
            client_hash: Some(client),
        },
    );
    let ended = PlayEvent::new(
        station,
        EventKind::TrackEnded {
            track_id: "t1".into(),
            played_ms: 2_000,
            reason: EndReason::Finished,
            play_id: Some(started.id),
            listener_ms: 1_000,
        },
    );
    vec![station_started, started, joined, left, ended]
}

#[test]
fn a_batch_round_trips_and_a_second_write_changes_nothing() {
    let Some(nodes) = cql::nodes(TEST) else {
        return;
    };
    let (keyspace, store) = cql::migrated_store(&nodes, "round_trip");
    let events = events("lofi");
    let mut sink = store.sink();
    assert_eq!(sink.name(), "scylla");
    sink.write_batch(&events).unwrap();

    let recent = store.recent_events("lofi", 100).unwrap();
    let expected: Vec<PlayEvent> = events.iter().rev().cloned().collect();
    assert_eq!(recent, expected);
    let history = store.history("lofi", 10, None).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].id, events[1].id);
    assert_eq!(history[0].ended.map(|end| end.listener_ms), Some(1_000));
    assert!(store.open_sessions("lofi").unwrap().is_empty());

    // The same batch again, and again inside a larger one.
    sink.write_batch(&events).unwrap();
    let mut doubled = events.clone();
    doubled.extend(events.iter().cloned());
    sink.write_batch(&doubled).unwrap();

    let (runtime, session) = cql::session(&nodes);
    let day = Day::of_unix_ms(events[0].at_unix_ms);
    let date = CqlDate((1 << 31) + day.days_since_epoch());
    let rows: Vec<(CqlTimeuuid,)> = cql::rows(
        &runtime,
        &session,
        &format!("SELECT id FROM {keyspace}.events_by_station_day WHERE station = ? AND day = ?"),
        ("lofi", date),
    );
    assert_eq!(rows.len(), events.len(), "one row per event");
    let plays: Vec<(CqlTimeuuid,)> = cql::rows(
        &runtime,
        &session,
        &format!(
            "SELECT play_id FROM {keyspace}.plays_by_station_day WHERE station = ? AND day = ?"
        ),
        ("lofi", date),
    );
    assert_eq!(plays.len(), 1);
    assert_eq!(store.recent_events("lofi", 100).unwrap(), expected);
    assert_eq!(store.history("lofi", 10, None).unwrap(), history);
    drop(session);
    cql::drop_keyspace(&nodes, &keyspace);
}

#[test]
fn every_cell_carries_its_event_time_as_write_timestamp() {
    let Some(nodes) = cql::nodes(TEST) else {
        return;
    };
    let (keyspace, store) = cql::migrated_store(&nodes, "timestamps");
    let events = events("lofi");
    store.sink().write_batch(&events).unwrap();
    // Written again much later: the timestamps stay those of the events.
    std::thread::sleep(Duration::from_millis(20));
    store.sink().write_batch(&events).unwrap();

    let micros = |event: &PlayEvent| i64::try_from(event.id.unix_nanos() / 1000).unwrap();
    let (runtime, session) = cql::session(&nodes);
    let day = Day::of_unix_ms(events[0].at_unix_ms);
    let date = CqlDate((1 << 31) + day.days_since_epoch());
    let written: Vec<(CqlTimeuuid, i64, i64)> = cql::rows(
        &runtime,
        &session,
        &format!(
            "SELECT id, WRITETIME(kind), WRITETIME(payload) FROM {keyspace}.events_by_station_day
             WHERE station = ? AND day = ?"
        ),
        ("lofi", date),
    );
    assert_eq!(written.len(), events.len());
    for (id, kind_time, payload_time) in written {
        let uuid: uuid::Uuid = id.into();
        let event = events
            .iter()
            .find(|event| *event.id.as_uuid() == uuid)
            .unwrap();
        assert_eq!(kind_time, micros(event), "{:?}", event.kind);
        assert_eq!(payload_time, micros(event));
    }
    let (started, ended) = (&events[1], &events[4]);
    let play: Vec<(i64, i64)> = cql::rows(
        &runtime,
        &session,
        &format!(
            "SELECT WRITETIME(title), WRITETIME(ended_id) FROM {keyspace}.plays_by_station_day
             WHERE station = ? AND day = ?"
        ),
        ("lofi", date),
    );
    assert_eq!(play, vec![(micros(started), micros(ended))]);
    drop(session);
    cql::drop_keyspace(&nodes, &keyspace);
}

#[test]
fn a_keyspace_without_this_builds_schema_version_is_refused_naming_both() {
    let Some(nodes) = cql::nodes(TEST) else {
        return;
    };
    // Never migrated.
    let keyspace = cql::fresh_keyspace("missing");
    let error = ScyllaStore::open(cql::options(&nodes, &keyspace)).unwrap_err();
    assert!(
        matches!(error, EventSinkError::CqlSchemaMismatch { found: None, .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert!(
        error.to_string().contains("sonicforge db migrate"),
        "{error}"
    );
    assert_eq!(
        ScyllaStore::schema_version(cql::options(&nodes, &keyspace)).unwrap(),
        None
    );

    // Migrated, then marked by a newer build.
    let (keyspace, store) = cql::migrated_store(&nodes, "newer");
    drop(store);
    let (runtime, session) = cql::session(&nodes);
    cql::execute(
        &runtime,
        &session,
        &format!("UPDATE {keyspace}.schema_version SET version = 9 WHERE component = 'events'"),
    );
    let error = ScyllaStore::open(cql::options(&nodes, &keyspace)).unwrap_err();
    assert!(
        matches!(
            error,
            EventSinkError::CqlSchemaMismatch {
                found: Some(9),
                expected: CQL_SCHEMA_VERSION,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("version 9"), "{message}");
    assert!(
        message.contains(&format!("version {CQL_SCHEMA_VERSION}")),
        "{message}"
    );
    // Migrating does not take a newer schema back either.
    let refused = ScyllaStore::migrate(cql::options(&nodes, &keyspace), cql::schema()).unwrap_err();
    assert!(matches!(
        refused,
        EventSinkError::CqlSchemaMismatch { found: Some(9), .. }
    ));
    drop(session);
    cql::drop_keyspace(&nodes, &keyspace);
}

#[test]
fn migrating_twice_keeps_the_data_and_the_version() {
    let Some(nodes) = cql::nodes(TEST) else {
        return;
    };
    let (keyspace, store) = cql::migrated_store(&nodes, "twice");
    let events = events("lofi");
    store.sink().write_batch(&events).unwrap();
    let mut schema = cql::schema();
    schema.ttls.events_days = 30;
    let again = ScyllaStore::migrate(cql::options(&nodes, &keyspace), schema).unwrap();
    assert!(!again.created_keyspace);
    assert_eq!(again.previous_version, Some(CQL_SCHEMA_VERSION));
    assert_eq!(
        store.recent_events("lofi", 100).unwrap().len(),
        events.len()
    );
    let (runtime, session) = cql::session(&nodes);
    let ttl: Vec<(i32,)> = cql::rows(
        &runtime,
        &session,
        "SELECT default_time_to_live FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?",
        (keyspace.as_str(), "events_by_station_day"),
    );
    assert_eq!(ttl, vec![(30 * 86_400,)]);
    drop(session);
    cql::drop_keyspace(&nodes, &keyspace);
}

#[test]
fn a_cluster_that_does_not_answer_lets_the_store_open_and_writes_wait() {
    // Nothing listens on port 1 of the loopback address: connection refused.
    let mut options = ScyllaOptions::new(vec!["127.0.0.1:1".into()], "sonicforge");
    options.connect_timeout = Duration::from_millis(500);
    options.request_timeout = Duration::from_millis(500);
    let store = ScyllaStore::open(options).unwrap();
    assert!(!store.is_connected());
    let error = store.sink().write_batch(&events("lofi")).unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
    let read = store.history("lofi", 10, None).unwrap_err();
    assert!(read.is_retryable(), "{read:?}");
}

#[test]
fn unusable_options_are_refused_before_any_connection() {
    let options = ScyllaOptions::new(vec!["127.0.0.1:1".into()], "bad-name; DROP");
    let error = ScyllaStore::open(options).unwrap_err();
    assert!(
        matches!(error, EventSinkError::ClusterSetup { .. }),
        "{error:?}"
    );
    let mut options = ScyllaOptions::new(vec!["127.0.0.1:1".into()], "sonicforge");
    options.tls = Some(sonicforge_engine::events::TlsFiles {
        ca_file: "/nonexistent/ca.pem".into(),
        client_cert_file: None,
        client_key_file: None,
    });
    let error = ScyllaStore::open(options).unwrap_err();
    assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    assert!(!error.is_retryable());
}
