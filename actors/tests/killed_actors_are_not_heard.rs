//! Chaos hooks: actors killed by stopping or by a panic come back, every kill is
//! counted as a restart, and a listener keeps receiving every packet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sonicforge_engine::codec::wire::parse_packet;
use tokio_tungstenite::tungstenite::Message;

fn chaos_config() -> String {
    format!(
        "[chaos]\nenabled = true\n[supervision]\nmax_restarts = 100\n{}",
        common::SHORT_TRACKS_CONFIG
    )
}

/// A short fuse: two restarts in 30 s, then one subtree restart, then degraded;
/// calm again after 2 s.
fn short_fuse_config() -> String {
    format!(
        "[chaos]\nenabled = true\n[supervision]\nmax_restarts = 2\nmax_subtree_restarts = 1\nrecover_after_seconds = 2\n{}",
        common::SHORT_TRACKS_CONFIG
    )
}

async fn kill(engine: &common::Engine, actor: &str, mode: &str) -> String {
    let addr = engine.addr.clone();
    let body = format!(r#"{{"station":"main","actor":"{actor}","mode":"{mode}"}}"#);
    let (status, answer) = tokio::task::spawn_blocking(move || {
        common::http_post_json(&addr, "/api/admin/chaos", &body)
    })
    .await
    .unwrap();
    assert_eq!(status, 202, "{answer}");
    answer
}

const KILLS: [(&str, &str); 8] = [
    ("mixer", "panic"),
    ("encoder", "panic"),
    ("scheduler", "stop"),
    ("generator", "panic"),
    ("mixer", "stop"),
    ("encoder", "stop"),
    ("scheduler", "panic"),
    ("generator", "stop"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_actors_restart_and_the_listener_hears_nothing() {
    let engine = common::Engine::start(&chaos_config());
    engine.wait_ready();
    let url = format!("ws://{}/stations/main/ws?bitrate=64", engine.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let _hello = socket.next().await.unwrap().unwrap();

    let mut kills = KILLS.iter();
    let mut next_kill = Instant::now() + Duration::from_millis(500);
    let finish = Instant::now() + Duration::from_secs(8);
    let mut previous_pts: Option<u64> = None;
    let mut packets = 0;
    while Instant::now() < finish {
        if Instant::now() >= next_kill
            && let Some((actor, mode)) = kills.next()
        {
            let answer = kill(&engine, actor, mode).await;
            assert!(
                answer.contains(&format!("\"killed\":\"{actor}\"")),
                "{answer}"
            );
            next_kill = Instant::now() + Duration::from_millis(700);
        }
        let message = tokio::time::timeout(Duration::from_secs(2), socket.next())
            .await
            .expect("audio keeps coming while actors are killed")
            .expect("the listener stays connected")
            .unwrap();
        if let Message::Binary(bytes) = message {
            let (header, _) = parse_packet(&bytes).unwrap();
            assert!(
                !header.is_discontinuity(),
                "a kill lost audio at pts {}",
                header.pts
            );
            if let Some(previous) = previous_pts {
                assert_eq!(header.pts, previous + 960, "a kill left a gap");
            }
            previous_pts = Some(header.pts);
            packets += 1;
        }
    }
    assert!(kills.next().is_none(), "every kill was made");
    assert!(packets > 300);
    // Every kill is one counted restart. A machine short of CPU may also make the
    // watchdog replace an actor it saw stalled: counted apart, with reason `stalled`.
    let stalled = |engine: &common::Engine| {
        let (_, text) = engine.get("/metrics");
        text.lines()
            .filter(|line| {
                line.starts_with("sonicforge_actor_restarts_total{")
                    && line.contains("reason=\"stalled\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let mut restarts = 0.0;
    for _ in 0..50 {
        restarts = engine.metric("sonicforge_actor_restarts_total{") - stalled(&engine);
        if restarts >= KILLS.len() as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(restarts, KILLS.len() as f64, "{}", engine.get("/metrics").1);
    // Each restart's latency, kill (or stall) to running again, is observed once.
    let observed = engine.metric("sonicforge_actor_restart_seconds_count{");
    assert_eq!(
        observed,
        KILLS.len() as f64 + stalled(&engine),
        "{}",
        engine.get("/metrics").1
    );
    let seconds = engine.metric("sonicforge_actor_restart_seconds_sum{");
    println!(
        "{} restarts, mean restart latency {:.3} ms (reported, not asserted)",
        KILLS.len(),
        seconds * 1000.0 / observed
    );
    assert_eq!(engine.metric("sonicforge_listener_disconnects_total{"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_restart_intensity_the_station_restarts_its_actors_then_degrades_and_recovers() {
    let engine = common::Engine::start(&short_fuse_config());
    engine.wait_ready();
    let url = format!("ws://{}/stations/main/ws?bitrate=64", engine.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let _hello = socket.next().await.unwrap().unwrap();
    let level = |engine: &common::Engine, level: &str| {
        engine.metric(&format!(
            "sonicforge_supervisor_escalations_total{{level=\"{level}\",station=\"main\"}}"
        ))
    };

    // Three deaths in a row: one past the intensity restarts every actor of the station.
    for _ in 0..3 {
        kill(&engine, "mixer", "panic").await;
    }
    wait_for(|| level(&engine, "subtree_restart") == 1.0).await;
    assert_eq!(engine.get("/readyz").0, 200);
    // Three more: past the intensity again, and past the subtree restarts allowed.
    for _ in 0..3 {
        kill(&engine, "encoder", "panic").await;
    }
    wait_for(|| level(&engine, "degraded") == 1.0).await;
    let (status, body) = engine.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("stations_degraded"), "{body}");
    assert_eq!(engine.metric("sonicforge_station_degraded{"), 1.0);

    // The station stays on air (the fallback loop) and the listener stays connected.
    let mut packets = 0;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let message = tokio::time::timeout(Duration::from_secs(2), socket.next())
            .await
            .expect("audio keeps coming while degraded")
            .expect("the listener stays connected")
            .unwrap();
        packets += usize::from(matches!(message, Message::Binary(_)));
    }
    assert!(
        packets >= 40,
        "{packets} packets in a second while degraded"
    );

    // Calm for recover_after_seconds: music again, ready again.
    wait_for(|| engine.metric("sonicforge_station_degraded{") == 0.0).await;
    let mut ready = false;
    for _ in 0..50 {
        if engine.get("/readyz").0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "{}", engine.get("/readyz").1);
    assert_eq!(engine.metric("sonicforge_listener_disconnects_total{"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_session_is_the_one_named_and_its_death_is_counted() {
    let engine = common::Engine::start(&chaos_config());
    engine.wait_ready();
    let url = format!("ws://{}/stations/main/ws?bitrate=64", engine.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let hello = socket.next().await.unwrap().unwrap().into_text().unwrap();
    let hello: serde_json::Value = serde_json::from_str(&hello).unwrap();
    let session = hello["session"]
        .as_u64()
        .expect("the hello names the session");

    let answer = kill(&engine, "listener", "panic").await;
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["killed"], "listener");
    assert_eq!(answer["session"].as_u64(), Some(session));
    // The session ends with a close frame (service restart: reconnect).
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame.map(|frame| u16::from(frame.code));
            }
        }
        None
    })
    .await
    .expect("the killed session closes");
    assert_eq!(closed, Some(1012));
    wait_for(|| {
        engine.metric(
            "sonicforge_actor_restarts_total{actor=\"listener\",reason=\"panic\",station=\"main\"}",
        ) == 1.0
    })
    .await;
    // Nobody left to kill: a clear refusal.
    let addr = engine.addr.clone();
    let (status, body) = tokio::task::spawn_blocking(move || {
        common::http_post_json(
            &addr,
            "/api/admin/chaos",
            r#"{"station":"main","actor":"listener","mode":"stop"}"#,
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 409, "{body}");
}

/// Waits up to 10 s for `done`.
async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done(), "condition not met within 10 s");
}

#[test]
fn chaos_requests_are_validated_and_disabled_by_default() {
    let engine = common::Engine::start(common::SHORT_TRACKS_CONFIG);
    let (status, body) = common::http_post_json(
        &engine.addr,
        "/api/admin/chaos",
        r#"{"station":"main","actor":"mixer","mode":"stop"}"#,
    );
    assert_eq!(status, 403, "{body}");
    drop(engine);

    let engine = common::Engine::start(&chaos_config());
    let (status, body) = common::http_post_json(
        &engine.addr,
        "/api/admin/chaos",
        r#"{"station":"main","actor":"juggler","mode":"stop"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("juggler"), "{body}");
    let (status, body) = common::http_post_json(
        &engine.addr,
        "/api/admin/chaos",
        r#"{"station":"nowhere","actor":"mixer","mode":"stop"}"#,
    );
    assert_eq!(status, 404, "{body}");
}

#[test]
fn chaos_is_refused_on_a_public_address() {
    let dir = common::TempDir::new();
    let path = dir.path.join("chaos.toml");
    std::fs::write(&path, chaos_config()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sonicforge"))
        .args(["run", "--listen", "0.0.0.0:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("allow_non_loopback"), "{stderr}");
}
