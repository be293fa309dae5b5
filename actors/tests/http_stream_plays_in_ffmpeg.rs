//! The plain HTTP Ogg/Opus stream decodes in ffmpeg without an error, is not
//! silent, and carries a crossfaded track change when tracks are short.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

const SECONDS: f64 = 12.0;

#[test]
fn http_stream_decodes_in_ffmpeg_and_changes_tracks() {
    let Some(ffmpeg) = common::require_tool("ffmpeg") else {
        return;
    };
    let engine = common::Engine::start(common::SHORT_TRACKS_CONFIG);
    engine.wait_ready();
    let changes_before = engine.metric("sonicforge_track_changes_total{");
    let dir = common::TempDir::new();
    let pcm_path = dir.path.join("decoded.raw");
    let url = format!("{}/stations/main/stream.opus?bitrate=128", engine.base_url);

    // ffmpeg fetches and decodes the live stream itself: an independent client and decoder.
    let started = Instant::now();
    let output = Command::new(&ffmpeg)
        .args([
            "-nostdin",
            "-hide_banner",
            "-v",
            "error",
            "-rw_timeout",
            "10000000",
            "-i",
            &url,
            "-t",
        ])
        .arg(SECONDS.to_string())
        .args(["-f", "s16le", "-ac", "2", "-ar", "48000"])
        .arg(&pcm_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ffmpeg failed: {stderr}");
    assert!(stderr.trim().is_empty(), "ffmpeg reported errors: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));

    let bytes = std::fs::read(&pcm_path).unwrap();
    let samples: Vec<f32> = bytes
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    let seconds = samples.len() as f64 / 2.0 / 48_000.0;
    assert!(seconds >= SECONDS - 0.1, "decoded only {seconds:.2} s");

    // Not silent anywhere: every 100 ms window has signal (tracks crossfade, never a gap).
    let window = 4800 * 2;
    let mut quietest = f64::MAX;
    for chunk in samples.chunks_exact(window) {
        let rms =
            (chunk.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / chunk.len() as f64).sqrt();
        quietest = quietest.min(20.0 * rms.max(1e-12).log10());
    }
    println!("decoded {seconds:.2} s; quietest 100 ms window {quietest:.1} dBFS");
    assert!(
        quietest > -70.0,
        "a 100 ms window is silent ({quietest:.1} dBFS)"
    );

    // Tracks of 9 s with a 2 s crossfade: at least one change in 12 s.
    let changes = engine.metric("sonicforge_track_changes_total{") - changes_before;
    assert!(changes >= 1.0, "no track change observed in {SECONDS} s");
    let underruns = engine.metric("sonicforge_mixer_underruns_total{");
    let dead_air = engine.metric("sonicforge_dead_air_frames_total{");
    println!(
        "track changes during the test: {changes}; mixer underruns since start: {underruns}; dead-air frames: {dead_air}"
    );
    assert_eq!(dead_air, 0.0, "generated music never counts as dead air");
}

#[test]
fn http_stream_starts_with_opus_headers() {
    use std::io::{Read, Write};
    let engine = common::Engine::start(common::SHORT_TRACKS_CONFIG);
    engine.wait_ready();
    let mut stream = std::net::TcpStream::connect(&engine.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /stations/main/stream.opus?bitrate=64 HTTP/1.1\r\nHost: {}\r\n\r\n",
        engine.addr
    )
    .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while received.len() < 8192 {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "stream ended early");
        received.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..40.min(text.len())]
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: audio/ogg")
    );
    let find = |needle: &[u8]| received.windows(needle.len()).position(|w| w == needle);
    let head = find(b"OpusHead").expect("OpusHead present");
    let tags = find(b"OpusTags").expect("OpusTags present");
    assert!(head < tags);
    // Version 1, two channels, 48 kHz input rate.
    assert_eq!(received[head + 8], 1);
    assert_eq!(received[head + 9], 2);
    assert_eq!(
        u32::from_le_bytes(received[head + 12..head + 16].try_into().unwrap()),
        48_000
    );
}
