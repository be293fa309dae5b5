//! A listener session that the engine could not close (it was killed) is closed at
//! the next start, with the reason `unclean_shutdown` and the time listened up to
//! the killed run's last sign of life, so that listener-hours stay right.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sonicforge_engine::events::{Day, EventKind, EventReader, SqliteSink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_engines_open_session_is_closed_when_it_starts_again() {
    let mut engine = common::Engine::start(common::SHORT_TRACKS_CONFIG);
    engine.wait_ready();
    let url = format!("ws://{}/stations/main/ws?bitrate=64", engine.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let hello = socket.next().await.unwrap().unwrap().into_text().unwrap();
    let hello: serde_json::Value = serde_json::from_str(&hello).unwrap();
    let session = hello["session"].as_u64().unwrap().to_string();

    // Listen until the join is stored, then some more, then kill the engine.
    let events = engine.data_dir.join("events.db");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(200), socket.next()).await;
        let open = SqliteSink::open(&events)
            .and_then(|sink| sink.open_sessions("main"))
            .unwrap_or_default();
        if open.iter().any(|s| s.session_id == session) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the join was not stored within 20 s"
        );
    }
    let listen_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < listen_until {
        let _ = tokio::time::timeout(Duration::from_millis(200), socket.next()).await;
    }
    engine.kill();
    drop(socket);
    let sink = SqliteSink::open(&events).unwrap();
    let open = sink.open_sessions("main").unwrap();
    let joined = open
        .iter()
        .find(|s| s.session_id == session)
        .expect("the killed engine left the session open")
        .clone();
    let last_seen = sink.recent_events("main", 1).unwrap()[0].at_unix_ms;
    drop(sink);

    let mut engine = engine;
    tokio::task::spawn_blocking(move || {
        engine.restart();
        engine.wait_ready();
        // The closing event reaches the store within a few writer ticks.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sink = SqliteSink::open(&events).unwrap();
            if !sink
                .open_sessions("main")
                .unwrap()
                .iter()
                .any(|s| s.session_id == session)
            {
                let left = sink
                    .recent_events("main", 200)
                    .unwrap()
                    .into_iter()
                    .find_map(|event| match event.kind {
                        EventKind::ListenerLeft {
                            session_id,
                            listened_ms,
                            disconnect_reason,
                            ..
                        } if session_id == session => Some((listened_ms, disconnect_reason)),
                        _ => None,
                    })
                    .expect("a ListenerLeft closes the session");
                assert_eq!(left.1, "unclean_shutdown");
                // Up to the killed run's last sign of life: its newest event, or the
                // alive marker it writes every 2 s, whichever is later.
                assert!(left.0 >= last_seen - joined.joined_at_unix_ms, "{left:?}");
                assert!(left.0 >= 1000, "{left:?}");
                assert!(left.0 <= 30_000, "{left:?}");
                // The day's listener-hours now count it.
                let stats = sink.day_stats("main", Day::of_unix_ms(last_seen)).unwrap();
                assert!(stats.listener_ms >= left.0, "{stats:?}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the session is still open 10 s after the restart; log:\n{}",
                engine.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    })
    .await
    .unwrap();
}
