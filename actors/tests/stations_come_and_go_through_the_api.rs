//! Stations are added, stopped, started and removed through the API while the engine
//! runs, and the next start of the engine brings back the same stations in the same
//! state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;
use sonicforge_actors::auth::Role;

const NIGHT: &str = r#"{
    "id": "night",
    "name": "Night Shift",
    "renditions_kbps": [64],
    "crossfade_ms": 1000,
    "track_seconds": 9,
    "upcoming_tracks": 2,
    "seed": 7,
    "playlist": ["ambient calm 60 bpm C major"]
}"#;

fn send(
    engine: &common::Engine,
    method: &str,
    path: &str,
    role: Role,
    body: &str,
) -> common::HttpAnswer {
    let authorization = common::bearer(role);
    let mut headers = vec![("Authorization", authorization.as_str())];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let body = (!body.is_empty()).then_some(body.as_bytes());
    common::http_send(&engine.addr, method, path, &headers, body)
}

fn station(engine: &common::Engine, id: &str) -> (u16, Value) {
    let (status, body) = engine.get(&format!("/api/stations/{id}"));
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// An open Ogg/Opus stream of a station.
struct Stream(std::net::TcpStream);

impl Stream {
    fn open(engine: &common::Engine, id: &str) -> Self {
        let mut socket = std::net::TcpStream::connect(&engine.addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        write!(
            socket,
            "GET /stations/{id}/stream.opus HTTP/1.1\r\nHost: {}\r\n\r\n",
            engine.addr
        )
        .unwrap();
        Self(socket)
    }

    /// Reads until `bytes` more bytes came, or fails after `within`.
    fn receive(&mut self, bytes: usize, within: Duration) -> Vec<u8> {
        let started = Instant::now();
        let mut received = Vec::new();
        let mut buffer = [0u8; 8192];
        while received.len() < bytes {
            assert!(
                started.elapsed() < within,
                "only {} of {bytes} bytes of the stream within {within:?}",
                received.len()
            );
            match self.0.read(&mut buffer) {
                Ok(0) => panic!("the stream ended after {} bytes", received.len()),
                Ok(n) => received.extend_from_slice(&buffer[..n]),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {}
                Err(error) => panic!("stream read failed: {error}"),
            }
        }
        received
    }

    /// Reads until the server ends the stream; fails after `within`.
    fn wait_for_end(&mut self, within: Duration) {
        let started = Instant::now();
        let mut buffer = [0u8; 8192];
        loop {
            assert!(
                started.elapsed() < within,
                "the stream did not end within {within:?}"
            );
            match self.0.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => {
                    // The chunked encoding's last chunk ends the response.
                    if buffer[..n].ends_with(b"0\r\n\r\n") {
                        return;
                    }
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn stations_are_added_stopped_started_and_removed_without_a_restart() {
    // The default deadline: a listener of a stopped station must not be left to it.
    let config = common::SHORT_TRACKS_CONFIG
        .replace("behind_deadline_ms = 3000", "behind_deadline_ms = 10000");
    let mut engine = common::Engine::start(&config);
    engine.wait_ready();

    // Adding a station needs an admin; settings are checked key by key.
    let refused = send(&engine, "POST", "/api/stations", Role::Operator, NIGHT);
    assert_eq!(refused.status, 403, "{}", refused.body);
    let bad_id = NIGHT.replace("\"night\"", "\"Night Shift\"");
    let answer = send(&engine, "POST", "/api/stations", Role::Admin, &bad_id);
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(answer.json()["detail"]["field"], "id");
    let bad_rendition = NIGHT.replace("[64]", "[64, 5000]");
    let answer = send(
        &engine,
        "POST",
        "/api/stations",
        Role::Admin,
        &bad_rendition,
    );
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(answer.json()["detail"]["field"], "renditions_kbps[1]");
    let unknown_key = NIGHT.replace("\"seed\"", "\"volume\"");
    let answer = send(&engine, "POST", "/api/stations", Role::Admin, &unknown_key);
    assert_eq!(answer.status, 400, "{}", answer.body);
    let missing_playlist = NIGHT.replace("\"seed\": 7", "\"playlist_name\": \"nowhere\"");
    let answer = send(
        &engine,
        "POST",
        "/api/stations",
        Role::Admin,
        &missing_playlist,
    );
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(answer.json()["detail"]["field"], "playlist_name");

    // Added: it starts, plays, and has its built-in playlist.
    let added = send(&engine, "POST", "/api/stations", Role::Admin, NIGHT);
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(added.header("location"), Some("/api/stations/night"));
    assert_eq!(added.json()["state"], "running");
    assert_eq!(added.json()["origin"], "api");
    let again = send(&engine, "POST", "/api/stations", Role::Admin, NIGHT);
    assert_eq!(again.status, 409, "{}", again.body);
    let (_, list) = engine.get("/api/stations");
    let list: Value = serde_json::from_str(&list).unwrap();
    let ids: Vec<&str> = list["stations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["main", "night"]);
    assert_eq!(engine.get("/api/playlists/night").0, 200);
    assert_eq!(
        engine.metric("sonicforge_station_running{station=\"night\"}"),
        1.0
    );
    let mut stream = Stream::open(&engine, "night");
    let audio = stream.receive(16 * 1024, Duration::from_secs(30));
    assert!(
        contains(&audio, b"OpusHead"),
        "no Ogg/Opus header in the new station's stream"
    );

    // Its change announcements are on the event stream.
    let mut events = std::net::TcpStream::connect(&engine.addr).unwrap();
    events
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        events,
        "GET /api/stations/night/events HTTP/1.1\r\nHost: {}\r\n\r\n",
        engine.addr
    )
    .unwrap();
    let mut first = [0u8; 4096];
    let n = events.read(&mut first).unwrap();
    assert!(
        contains(&first[..n], b"event: station"),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );
    drop(events);

    // Stopped by an operator: its listeners' streams end, streams are refused, the
    // API shows it stopped, and the engine is still ready.
    let stopped = send(
        &engine,
        "POST",
        "/api/stations/night/stop",
        Role::Operator,
        "",
    );
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    assert_eq!(stopped.json()["state"], "stopped");
    stream.wait_for_end(Duration::from_secs(10));
    let refused = common::http_send(
        &engine.addr,
        "GET",
        "/stations/night/stream.opus",
        &[],
        None,
    );
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(station(&engine, "night").1["state"], "stopped");
    assert_eq!(engine.get("/readyz").0, 200);
    assert_eq!(
        engine.metric("sonicforge_station_running{station=\"night\"}"),
        0.0
    );
    let twice = send(
        &engine,
        "POST",
        "/api/stations/night/stop",
        Role::Operator,
        "",
    );
    assert_eq!(
        twice.status, 200,
        "stopping a stopped station changes nothing"
    );

    // A restart of the engine keeps the added station, stopped.
    engine.terminate();
    engine.restart();
    engine.wait_ready();
    let (status, night) = station(&engine, "night");
    assert_eq!(status, 200);
    assert_eq!(night["state"], "stopped");
    assert_eq!(night["origin"], "api");
    assert_eq!(station(&engine, "main").1["state"], "running");

    // Started again: it plays.
    let started = send(
        &engine,
        "POST",
        "/api/stations/night/start",
        Role::Operator,
        "",
    );
    assert_eq!(started.status, 200, "{}", started.body);
    assert_eq!(started.json()["state"], "running");
    let mut stream = Stream::open(&engine, "night");
    stream.receive(16 * 1024, Duration::from_secs(30));
    drop(stream);

    // Stopped and started again at once, a station opens its event spool again.
    for path in ["/api/stations/main/stop", "/api/stations/main/start"] {
        let answer = send(&engine, "POST", path, Role::Operator, "");
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    }
    let mut stream = Stream::open(&engine, "main");
    stream.receive(16 * 1024, Duration::from_secs(30));
    drop(stream);
    let log = engine.log_text();
    assert!(
        !log.contains("open in another process"),
        "the stopped station kept its spool open:\n{log}"
    );
    assert!(
        !log.contains("listeners were still connected"),
        "a stopped station's listeners did not leave before its last events were stored:\n{log}"
    );

    // Stations of the config file are removed there, not through the API.
    let answer = send(&engine, "DELETE", "/api/stations/main", Role::Admin, "");
    assert_eq!(answer.status, 409, "{}", answer.body);
    let answer = send(&engine, "DELETE", "/api/stations/night", Role::Operator, "");
    assert_eq!(answer.status, 403, "{}", answer.body);
    let answer = send(&engine, "DELETE", "/api/stations/night", Role::Admin, "");
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(station(&engine, "night").0, 404);
    assert_eq!(engine.get("/api/playlists/night").0, 404);
    let answer = send(
        &engine,
        "POST",
        "/api/stations/night/start",
        Role::Operator,
        "",
    );
    assert_eq!(answer.status, 404, "{}", answer.body);

    // And it stays removed.
    engine.terminate();
    engine.restart();
    engine.wait_ready();
    assert_eq!(station(&engine, "night").0, 404);
    assert_eq!(station(&engine, "main").1["state"], "running");
}
