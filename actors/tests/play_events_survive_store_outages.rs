//! No play event is lost or stored twice when the SQLite store goes away: events
//! flowing at a steady rate through a 30 s outage, an engine killed while its spool
//! holds events, and a spool whose last record was torn before the engine started.
//!
//! The store is made unavailable the way another process would: a connection that
//! holds `BEGIN EXCLUSIVE` on the database. The engine's emitted-event log
//! (`events.emitted_log`) records every event its writer took from the queue; with
//! `sonicforge_events_dropped_total` at zero, that is every event emitted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod event_faults;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use event_faults::{
    CYCLES_PER_SECOND, EventFiles, ListenerChurn, MIN_EVENTS_PER_SECOND, OUTAGE, StoredEvents,
    assert_every_emitted_event_stored_once, restart_and_replay_spool, station_metric, unix_ms_now,
    wait_for, wait_until_everything_emitted_is_stored_or_spooled,
};
use sonicforge_engine::events::{EventKind, PlayEvent, Spool, SpoolOptions};

/// The `[events]` keys of a SQLite store at the files' database.
fn sqlite_keys(files: &EventFiles) -> String {
    format!(
        "backend = \"sqlite\"\nsqlite_path = \"{}\"",
        files.database().display()
    )
}

/// Holds the database's write lock until dropped, as another process could.
fn lock_store(files: &EventFiles) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(files.database()).unwrap();
    connection.busy_timeout(Duration::from_secs(30)).unwrap();
    connection.execute_batch("BEGIN EXCLUSIVE").unwrap();
    connection
}

fn stored_events(database: &Path) -> StoredEvents {
    let connection = rusqlite::Connection::open(database).unwrap();
    let mut rows_by_id = BTreeMap::new();
    let mut statement = connection.prepare("SELECT id FROM events").unwrap();
    for id in statement
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
    {
        *rows_by_id.entry(id.unwrap()).or_insert(0) += 1;
    }
    let count = |sql: &str| {
        connection
            .query_row(sql, [], |row| row.get::<_, i64>(0))
            .unwrap() as u64
    };
    StoredEvents {
        rows_by_id,
        track_started: count("SELECT COUNT(*) FROM events WHERE kind = 'track_started'"),
        plays: count("SELECT COUNT(*) FROM plays"),
    }
}

#[test]
fn every_event_emitted_through_a_30_second_store_outage_is_stored_once() {
    let files = EventFiles::new();
    let mut engine = common::Engine::start(&files.config(6.0, &sqlite_keys(&files)));
    engine.wait_ready();
    wait_for(
        "the first events stored",
        Duration::from_secs(30),
        &engine,
        || station_metric(&engine, "sonicforge_events_written_total") > 0.0,
    );
    let churn = ListenerChurn::start(&engine.addr, CYCLES_PER_SECOND);
    std::thread::sleep(Duration::from_secs(2));

    let lock = lock_store(&files);
    let outage_start = unix_ms_now();
    std::thread::sleep(OUTAGE);
    let spooled = station_metric(&engine, "sonicforge_event_spool_events");
    let outage_end = unix_ms_now();
    drop(lock);
    assert!(
        spooled > 0.0,
        "no event went to the spool during the outage; engine log:\n{}",
        engine.log_text()
    );

    // Events keep flowing while the spool drains into the store.
    wait_for(
        "the spool to drain",
        Duration::from_secs(60),
        &engine,
        || {
            station_metric(&engine, "sonicforge_event_spool_events") == 0.0
                && station_metric(&engine, "sonicforge_event_spool_replayed_total") > 0.0
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let cycles = churn.stop();
    assert_eq!(
        station_metric(&engine, "sonicforge_events_dropped_total"),
        0.0
    );
    assert_eq!(
        station_metric(&engine, "sonicforge_event_spool_corrupt_records_total"),
        0.0
    );
    assert!(station_metric(&engine, "sonicforge_event_write_errors_total") > 0.0);
    let status = engine.terminate();
    assert!(status.success(), "{status}; log:\n{}", engine.log_text());

    // Events flowed at the required rate while the store was away.
    let during_outage = files.emitted_between(outage_start, outage_end);
    let rate = during_outage as f64 / ((outage_end - outage_start) as f64 / 1000.0);
    eprintln!(
        "outage of {} ms: {during_outage} events emitted ({rate:.1}/s), {spooled} in the spool at its end, {} emitted in all",
        outage_end - outage_start,
        files.emitted().len()
    );
    assert!(
        rate >= MIN_EVENTS_PER_SECOND,
        "only {rate:.1} events/s were emitted during the outage (the client made {cycles} cycles)"
    );
    assert_every_emitted_event_stored_once(
        &files,
        &stored_events(&files.database()),
        &engine.log_text(),
    );
}

#[test]
fn an_engine_killed_with_events_in_its_spool_replays_them_at_restart() {
    let files = EventFiles::new();
    // Tracks far longer than the test: no track event comes while the engine is quiet.
    let config = files.config(600.0, &sqlite_keys(&files));
    let engine = common::Engine::start(&config);
    engine.wait_ready();
    wait_for(
        "the first events stored",
        Duration::from_secs(30),
        &engine,
        || station_metric(&engine, "sonicforge_events_written_total") > 0.0,
    );
    let lock = lock_store(&files);
    let churn = ListenerChurn::start(&engine.addr, CYCLES_PER_SECOND);
    std::thread::sleep(Duration::from_secs(4));
    churn.stop();
    wait_until_everything_emitted_is_stored_or_spooled(&engine, &files, || {
        lock.query_row("SELECT COUNT(*) FROM events", [], |row| {
            row.get::<_, i64>(0)
        })
        .unwrap() as f64
    });
    let spooled = station_metric(&engine, "sonicforge_event_spool_events");
    eprintln!(
        "killed with {spooled} events in the spool, {} emitted",
        files.emitted().len()
    );
    // SIGKILL: no flush, no shutdown.
    drop(engine);
    drop(lock);

    let log = restart_and_replay_spool(&config, spooled, Duration::from_secs(60));
    assert_every_emitted_event_stored_once(&files, &stored_events(&files.database()), &log);
}

#[test]
fn a_torn_spool_tail_is_reported_and_the_good_records_stored() {
    let files = EventFiles::new();
    let left_behind: Vec<PlayEvent> = (0..21)
        .map(|i| {
            PlayEvent::new(
                "main",
                EventKind::Skip {
                    track_id: format!("left-behind-{i}"),
                },
            )
        })
        .collect();
    let station_spool = files.spool_dir().join("main");
    {
        let mut spool = Spool::open(&station_spool, SpoolOptions::default())
            .unwrap()
            .spool;
        spool.append(&left_behind).unwrap();
    }
    // The last record's write was cut short by a crash: its last 10 bytes never made it.
    let segment = std::fs::read_dir(&station_spool)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "spool"))
        .unwrap();
    let length = std::fs::metadata(&segment).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(length - 10).unwrap();
    drop(file);

    let mut engine = common::Engine::start(&files.config(600.0, &sqlite_keys(&files)));
    wait_for(
        "the spool replayed",
        Duration::from_secs(60),
        &engine,
        || {
            station_metric(&engine, "sonicforge_event_spool_replayed_total") >= 20.0
                && station_metric(&engine, "sonicforge_event_spool_events") == 0.0
        },
    );
    assert_eq!(
        station_metric(&engine, "sonicforge_event_spool_corrupt_records_total"),
        1.0
    );
    let status = engine.terminate();
    assert!(status.success(), "{status}; log:\n{}", engine.log_text());
    let log = engine.log_text();
    let report = log
        .lines()
        .find(|line| line.contains("bad bytes in the event spool moved aside"))
        .unwrap_or_else(|| panic!("no corruption report in the log:\n{log}"));
    assert!(report.contains("torn tail"), "{report}");

    let stored = stored_events(&files.database());
    for event in &left_behind[..20] {
        assert_eq!(
            stored.rows_by_id.get(&event.id.to_string()),
            Some(&1),
            "{event:?}"
        );
    }
    assert!(
        !stored
            .rows_by_id
            .contains_key(&left_behind[20].id.to_string())
    );
    // The torn bytes were kept aside for an operator.
    let corrupt = segment.with_extension("corrupt");
    assert!(std::fs::metadata(&corrupt).unwrap().len() > 0);
}
