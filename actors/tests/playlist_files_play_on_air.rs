//! File items: an uploaded file plays on air from a playlist, mastered, with its
//! title; an item whose file is gone is skipped (logged and counted) and the next
//! item plays, without a gap for the listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use sonicforge_actors::auth::Role;
use sonicforge_engine::codec::wire::parse_packet;
use tokio_tungstenite::tungstenite::Message;

const CONFIG: &str = r#"
[[stations]]
id = "main"
name = "Test Main"
renditions_kbps = [64]
crossfade_ms = 1000
track_seconds = 9
upcoming_tracks = 2
seed = 42
playlist = ["lofi chill 80 bpm A minor"]
"#;

/// A 16-bit stereo WAV file of `seconds` of a 440 Hz tone at 44.1 kHz.
fn tone_wav(seconds: u32) -> Vec<u8> {
    let rate = 44_100u32;
    let frames = rate * seconds;
    let data_len = frames * 4;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&2u16.to_le_bytes()); // stereo
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 4).to_le_bytes());
    wav.extend_from_slice(&4u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for n in 0..frames {
        let phase = std::f64::consts::TAU * 440.0 * f64::from(n) / f64::from(rate);
        let sample = (phase.sin() * 0.3 * f64::from(i16::MAX)) as i16;
        wav.extend_from_slice(&sample.to_le_bytes());
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

fn upload(engine: &common::Engine, name: &str, bytes: &[u8]) -> String {
    let answer = common::http_send(
        &engine.addr,
        "POST",
        &format!("/api/media?name={name}"),
        &[("Authorization", &common::bearer(Role::Operator))],
        Some(bytes),
    );
    assert!(
        answer.status == 201 || answer.status == 200,
        "upload: {} {}",
        answer.status,
        answer.body
    );
    answer.json()["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_plays_from_a_playlist_and_a_missing_one_is_skipped() {
    let engine = common::Engine::start(CONFIG);
    engine.wait_ready();
    let (good, gone) = {
        let good = upload(&engine, "tone.wav", &tone_wav(8));
        let gone = upload(&engine, "short.wav", &tone_wav(5));
        (good, gone)
    };
    let (status, answer) = common::http_post_json(
        &engine.addr,
        "/api/playlists",
        r#"{"name": "bad", "items": [{"file": "no-such-media"}]}"#,
    );
    assert_eq!(status, 422, "{answer}");
    let body = format!(
        r#"{{"name": "files", "items": [{{"file": "{gone}"}}, {{"file": "{good}", "crossfade_ms": 500}}]}}"#
    );
    let (status, answer) = common::http_post_json(&engine.addr, "/api/playlists", &body);
    assert_eq!(status, 201, "{answer}");
    // The first item's file leaves the library: it cannot play any more.
    let (status, answer) = common::http_delete(&engine.addr, &format!("/api/media/{gone}"));
    assert!((200..300).contains(&status), "{status} {answer}");

    let url = format!("ws://{}/stations/main/ws", engine.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let _hello = socket.next().await.unwrap().unwrap();
    let (status, answer) = common::http_put_json(
        &engine.addr,
        "/api/stations/main/playlist",
        r#"{"playlist": "files", "when": "now"}"#,
    );
    assert_eq!(status, 200, "{answer}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut previous_pts: Option<u64> = None;
    let mut heard_file = None;
    while Instant::now() < deadline && heard_file.is_none() {
        let message = tokio::time::timeout(Duration::from_secs(2), socket.next())
            .await
            .expect("audio keeps coming")
            .expect("the listener stays connected")
            .unwrap();
        match message {
            Message::Binary(bytes) => {
                let (header, _) = parse_packet(&bytes).unwrap();
                if let Some(previous) = previous_pts {
                    assert_eq!(header.pts, previous + 960, "a gap in the listener's audio");
                }
                previous_pts = Some(header.pts);
            }
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == "now_playing" && value["now_playing"]["file"] == good.as_str() {
                    heard_file = Some(value["now_playing"].clone());
                }
            }
            _ => {}
        }
    }
    let track = heard_file.expect("the file goes on air");
    assert_eq!(track["title"], "tone");
    assert_eq!(track["generator"], "file");
    assert!(track["mastering"]["output_lufs"].is_number(), "{track}");
    assert!(
        engine.metric("sonicforge_generate_failures_total{") >= 1.0,
        "the missing file is counted"
    );
}
