//! Play events reach the embedded store: the station's start and stop, tracks on air,
//! listeners joining and leaving, and actor restarts, including restarts of the
//! event writer itself, which loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sonicforge_engine::events::{EventReader, EventType, SqliteSink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn station_track_listener_and_restart_events_are_stored_across_writer_kills() {
    let config = format!(
        "[chaos]\nenabled = true\n[supervision]\nmax_restarts = 100\n{}",
        common::SHORT_TRACKS_CONFIG
    );
    let mut engine = common::Engine::start(&config);
    engine.wait_ready();
    let url = format!("ws://{}/stations/main/ws?bitrate=64", engine.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let _hello = socket.next().await.unwrap().unwrap();

    let mut kills = ["stop", "panic", "stop"].into_iter();
    let until = Instant::now() + Duration::from_secs(12);
    let mut next_kill = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        if Instant::now() >= next_kill
            && let Some(mode) = kills.next()
        {
            let addr = engine.addr.clone();
            let body = format!(r#"{{"station":"main","actor":"event_writer","mode":"{mode}"}}"#);
            let (status, answer) = tokio::task::spawn_blocking(move || {
                common::http_post_json(&addr, "/api/admin/chaos", &body)
            })
            .await
            .unwrap();
            assert_eq!(status, 202, "{answer}");
            next_kill = Instant::now() + Duration::from_secs(2);
        }
        tokio::time::timeout(Duration::from_secs(2), socket.next())
            .await
            .expect("audio keeps coming")
            .expect("the listener stays connected")
            .unwrap();
    }
    // Terminated with the listener still connected: its leaving is stored too.
    let status = tokio::task::spawn_blocking(move || {
        let status = engine.terminate();
        (engine, status)
    })
    .await
    .unwrap();
    let (engine, status) = status;
    drop(socket);
    assert!(status.success(), "{status}; log:\n{}", engine.log_text());

    let sink = SqliteSink::open(engine.data_dir.join("events.db")).unwrap();
    let counts: BTreeMap<EventType, u64> = sink.event_counts(Some("main")).unwrap();
    let count = |kind| counts.get(&kind).copied().unwrap_or(0);
    assert_eq!(count(EventType::StationStarted), 1, "{counts:?}");
    assert_eq!(count(EventType::StationStopped), 1, "{counts:?}");
    // 12 s of 9 s tracks: at least two on air, the first one ended.
    assert!(count(EventType::TrackStarted) >= 2, "{counts:?}");
    assert!(count(EventType::TrackEnded) >= 1, "{counts:?}");
    assert_eq!(count(EventType::ListenerJoined), 1, "{counts:?}");
    assert_eq!(count(EventType::ListenerLeft), 1, "{counts:?}");
    // Each kill of the writer is itself recorded, by the writer that came back.
    assert_eq!(count(EventType::ActorRestarted), 3, "{counts:?}");
    let history = sink.history("main", 10, None).unwrap();
    assert!(!history.is_empty());
}
