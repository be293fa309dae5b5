//! A WebSocket listener per rendition receives 50 packets per second, timestamps
//! advance by 960 with no discontinuity, and every packet decodes with libopus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use sonicforge_engine::codec::wire::parse_packet;
use tokio_tungstenite::tungstenite::Message;

const LISTEN_SECONDS: f64 = 6.0;

struct RenditionReport {
    bitrate: u64,
    packets: usize,
    latencies_ms: Vec<f64>,
    peak: f32,
    now_playing_seen: bool,
}

async fn listen(addr: &str, bitrate: u64) -> RenditionReport {
    let url = format!("ws://{addr}/stations/main/ws?bitrate={bitrate}");
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("websocket connects");
    let hello = match socket.next().await.unwrap().unwrap() {
        Message::Text(text) => serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        other => panic!("first message is not the hello: {other:?}"),
    };
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["codec"], "opus");
    assert_eq!(hello["sample_rate"], 48_000);
    assert_eq!(hello["channels"], 2);
    assert_eq!(hello["bitrate"], bitrate);
    assert_eq!(hello["station"], "main");
    let clock_pts = hello["clock"]["pts"].as_u64().expect("hello has clock.pts") as f64;
    let clock_unix_ms = hello["clock"]["unix_ms"]
        .as_u64()
        .expect("hello has clock.unix_ms") as f64;
    assert!(
        hello["now_playing"]["title"].is_string(),
        "hello carries now playing: {hello}"
    );

    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Stereo).unwrap();
    let mut pcm = vec![0f32; 5760 * 2];
    let mut previous_pts: Option<u64> = None;
    let mut packets = 0;
    let mut latencies_ms = Vec::new();
    let mut peak = 0f32;
    let mut now_playing_seen = false;
    let mut pings = 0;
    let started = Instant::now();
    let mut first_live: Option<(Instant, usize)> = None;
    while started.elapsed().as_secs_f64() < LISTEN_SECONDS {
        let message = tokio::time::timeout(Duration::from_secs(2), socket.next())
            .await
            .expect("a message at least every 2 s")
            .expect("stream open")
            .expect("no protocol error");
        match message {
            Message::Binary(bytes) => {
                let received_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64()
                    * 1000.0;
                let (header, payload) = parse_packet(&bytes).expect("valid packet frame");
                assert!(
                    !header.is_discontinuity(),
                    "unexpected discontinuity at pts {}",
                    header.pts
                );
                if let Some(previous) = previous_pts {
                    assert_eq!(header.pts, previous + 960, "timestamps must advance by 960");
                }
                previous_pts = Some(header.pts);
                let samples = decoder
                    .decode_float(payload, &mut pcm, false)
                    .expect("packet decodes");
                assert_eq!(samples, 960);
                peak = pcm[..samples * 2].iter().fold(peak, |p, s| p.max(s.abs()));
                let on_air_ms = clock_unix_ms + (header.pts as f64 - clock_pts) / 48.0;
                latencies_ms.push(received_ms - on_air_ms);
                packets += 1;
                // The pre-roll arrives in a burst; the live rate is measured after it.
                if first_live.is_none() && started.elapsed() > Duration::from_secs(1) {
                    first_live = Some((Instant::now(), packets));
                }
            }
            Message::Text(text) => {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(value["type"], "now_playing");
                now_playing_seen = true;
            }
            // The server measures our reading lag with pings; the client library answers them.
            Message::Ping(_) => pings += 1,
            other => panic!("unexpected message {other:?}"),
        }
    }
    let (live_start, live_first) = first_live.unwrap();
    let live_rate = (packets - live_first) as f64 / live_start.elapsed().as_secs_f64();
    assert!(
        (45.0..=55.0).contains(&live_rate),
        "{bitrate} kb/s: {live_rate:.1} packets per second instead of 50"
    );
    assert!(
        pings >= 3,
        "{bitrate} kb/s: {pings} pings in {LISTEN_SECONDS} s"
    );
    RenditionReport {
        bitrate,
        packets,
        latencies_ms,
        peak,
        now_playing_seen,
    }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[((values.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_listener_gets_every_packet_of_each_rendition() {
    let engine = common::Engine::start(common::SHORT_TRACKS_CONFIG);
    engine.wait_ready();
    let addr = engine.addr.clone();
    let (low, high) = tokio::join!(listen(&addr, 64), listen(&addr, 128));
    for mut report in [low, high] {
        assert!(
            report.peak > 0.01,
            "{} kb/s decoded audio is silent",
            report.bitrate
        );
        let p50 = percentile(&mut report.latencies_ms, 0.5);
        let p99 = percentile(&mut report.latencies_ms, 0.99);
        println!(
            "{} kb/s: {} packets, end-to-end latency p50 {p50:.1} ms, p99 {p99:.1} ms (reported, not asserted); now_playing message seen: {}",
            report.bitrate, report.packets, report.now_playing_seen
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_rendition_is_refused_before_the_upgrade() {
    let engine = common::Engine::start(common::SHORT_TRACKS_CONFIG);
    let (status, body) = engine.get("/stations/main/ws?bitrate=96");
    assert_eq!(status, 400);
    assert!(body.contains("96"), "{body}");
    let (status, _) = engine.get("/stations/nowhere/ws");
    assert_eq!(status, 404);
}
