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
    format!("[chaos]\nenabled = true\n{}", common::SHORT_TRACKS_CONFIG)
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
            let addr = engine.addr.clone();
            let body = format!(r#"{{"station":"main","actor":"{actor}","mode":"{mode}"}}"#);
            let (status, answer) = tokio::task::spawn_blocking(move || {
                common::http_post_json(&addr, "/api/admin/chaos", &body)
            })
            .await
            .unwrap();
            assert_eq!(status, 202, "{answer}");
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
    // Every kill is one counted restart.
    let mut restarts = 0.0;
    for _ in 0..50 {
        restarts = engine.metric("sonicforge_actor_restarts_total{");
        if restarts >= KILLS.len() as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(restarts, KILLS.len() as f64, "{}", engine.get("/metrics").1);
    // Each restart's latency, kill to running again, is observed once.
    let observed = engine.metric("sonicforge_actor_restart_seconds_count{");
    assert_eq!(observed, KILLS.len() as f64, "{}", engine.get("/metrics").1);
    let seconds = engine.metric("sonicforge_actor_restart_seconds_sum{");
    println!(
        "{} restarts, mean restart latency {:.3} ms (reported, not asserted)",
        KILLS.len(),
        seconds * 1000.0 / observed
    );
    assert_eq!(engine.metric("sonicforge_listener_disconnects_total{"), 0.0);
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
