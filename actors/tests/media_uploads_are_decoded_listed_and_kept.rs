//! The media library over HTTP on a running engine: FLAC and MP3 uploads (made by
//! ffmpeg) are decoded, listed with their tags and kept across a restart; garbage,
//! a bad name and an upload over the limit get clear 4xx answers and leave nothing
//! behind; the engine stays healthy throughout.

// Test helpers unwrap: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Engine, SHORT_TRACKS_CONFIG, bearer, http_send, require_tool};
use sonicforge_actors::auth::Role;

fn tone(dir: &Path, name: &str, codec: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("sine=frequency=440:sample_rate=44100:duration=3")
        .args(["-af", "pan=stereo|c0=c0|c1=c0"])
        .args(codec)
        .args([
            "-metadata",
            "title=Harbour Lights",
            "-metadata",
            "artist=The Test Signals",
            "-metadata",
            "album=Fixtures",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg could not write {name}");
    path
}

fn upload(engine: &Engine, name: &str, bytes: &[u8]) -> common::HttpAnswer {
    let token = bearer(Role::Operator);
    http_send(
        &engine.addr,
        "POST",
        &format!("/api/media?name={name}"),
        &[
            ("Authorization", &token),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(bytes),
    )
}

#[test]
fn media_uploads_are_decoded_listed_and_kept() {
    if require_tool("ffmpeg").is_none() {
        return;
    }
    let config = format!("{SHORT_TRACKS_CONFIG}\n[media]\nmax_upload_mb = 1\n");
    let mut engine = Engine::start(&config);
    engine.wait_ready();
    let fixtures = tempfile::tempdir().unwrap();
    let flac = std::fs::read(tone(fixtures.path(), "harbour.flac", &["-c:a", "flac"])).unwrap();
    let mp3 = std::fs::read(tone(
        fixtures.path(),
        "harbour.mp3",
        &["-c:a", "libmp3lame", "-b:a", "128k", "-id3v2_version", "3"],
    ))
    .unwrap();

    // Good files: 201 with their entries.
    let mut ids = Vec::new();
    for (name, bytes, format) in [
        ("harbour.flac", &flac, "flac"),
        ("harbour.mp3", &mp3, "mp3"),
    ] {
        let answer = upload(&engine, name, bytes);
        assert_eq!(answer.status, 201, "{name}: {}", answer.body);
        let entry = answer.json();
        assert_eq!(entry["file_name"], name);
        assert_eq!(entry["title"], "Harbour Lights", "{entry}");
        assert_eq!(entry["artist"], "The Test Signals", "{entry}");
        assert_eq!(entry["album"], "Fixtures", "{entry}");
        assert_eq!(entry["format"], format, "{entry}");
        assert_eq!(entry["sample_rate"], 44_100, "{entry}");
        let seconds = entry["duration_seconds"].as_f64().unwrap();
        assert!((seconds - 3.0).abs() < 0.1, "{entry}");
        let id = entry["id"].as_str().unwrap().to_string();
        assert_eq!(
            answer.header("location"),
            Some(format!("/api/media/{id}").as_str())
        );
        ids.push(id);
    }
    // The same content again is the same entry.
    let again = upload(&engine, "copy.flac", &flac);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["id"], ids[0].as_str());

    // Garbage: refused with the decoder's message, 415 or 422.
    let noise: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (name, bytes) in [
        ("noise.mp3", noise.as_slice()),
        (
            "letter.flac",
            b"Dear operator, this is not a FLAC file.".as_slice(),
        ),
        ("cut.flac", &flac[..flac.len() / 3]),
    ] {
        let answer = upload(&engine, name, bytes);
        assert!(
            answer.status == 415 || answer.status == 422,
            "{name}: {} {}",
            answer.status,
            answer.body
        );
        let error = answer.json();
        assert!(
            error["error"].as_str().unwrap().contains(name),
            "{name}: {error}"
        );
    }
    // A name that is not an audio file name: 400 naming the field.
    let answer = upload(&engine, "notes.txt", &flac);
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["detail"]["field"], "name");
    let answer = upload(&engine, "", &flac);
    assert_eq!(answer.status, 400, "{}", answer.body);
    // Over the limit (1 MiB here): 413 with the limit.
    let answer = upload(&engine, "huge.wav", &vec![0u8; 2 << 20]);
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(answer.json()["detail"]["limit_bytes"], 1 << 20);
    // Mutations need a token.
    let answer = http_send(
        &engine.addr,
        "POST",
        "/api/media?name=harbour.flac",
        &[],
        Some(&flac),
    );
    assert_eq!(answer.status, 401, "{}", answer.body);

    // Only the good files are listed, and only they are stored.
    let (status, body) = engine.get("/api/media");
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut listed: Vec<&str> = list["media"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["id"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    let mut stored: Vec<String> = std::fs::read_dir(engine.data_dir.join("media"))
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    stored.sort();
    let mut expected_files = vec![
        format!("{}.flac", ids[0]),
        format!("{}.mp3", ids[1]),
        "catalog.json".to_string(),
    ];
    expected_files.sort();
    assert_eq!(stored, expected_files);

    // One entry, then its removal.
    let (status, body) = engine.get(&format!("/api/media/{}", ids[1]));
    assert_eq!(status, 200, "{body}");
    let answer = http_send(
        &engine.addr,
        "DELETE",
        &format!("/api/media/{}", ids[1]),
        &[("Authorization", &bearer(Role::Operator))],
        None,
    );
    assert_eq!(answer.status, 204, "{}", answer.body);
    let (status, body) = engine.get(&format!("/api/media/{}", ids[1]));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"error\""), "{body}");

    // Two uploads whose bodies are still arriving hold both upload places: a third is
    // refused with 503 and Retry-After until one of them goes.
    let stalled: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            use std::io::Write;
            let mut stream = std::net::TcpStream::connect(&engine.addr).unwrap();
            let head = format!(
                "POST /api/media?name=slow.flac HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\nfLaC",
                engine.addr,
                bearer(Role::Operator)
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    // Probe only once both hold their places: a probe sent earlier could take a place
    // first and turn one of the stalled uploads away.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while engine.metric("sonicforge_media_uploads_in_progress") < 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the two stalled uploads never held both places: sonicforge_media_uploads_in_progress = {}",
            engine.metric("sonicforge_media_uploads_in_progress")
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let busy = upload(&engine, "noise.wav", b"RIFF....WAVEjunk");
    assert_eq!(busy.status, 503, "{}", busy.body);
    assert_eq!(busy.header("retry-after"), Some("5"), "{:?}", busy.headers);
    assert!(busy.body.contains("uploads_at_once"), "{}", busy.body);
    drop(stalled);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let after = loop {
        let answer = upload(&engine, "noise.wav", b"RIFF....WAVEjunk");
        if answer.status != 503 || std::time::Instant::now() > deadline {
            break answer;
        }
    };
    assert_eq!(after.status, 422, "{}", after.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while engine.metric("sonicforge_media_uploads_in_progress") > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "uploads whose clients left are still counted in progress"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // Still on air, and the catalog survives a restart.
    assert_eq!(engine.get("/healthz").0, 200);
    engine.terminate();
    engine.restart();
    engine.wait_ready();
    let (status, body) = engine.get(&format!("/api/media/{}", ids[0]));
    assert_eq!(status, 200, "{body}");
    let entry: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(entry["title"], "Harbour Lights");
    let (_, body) = engine.get("/api/media");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["media"].as_array().unwrap().len(), 1, "{list}");
}
