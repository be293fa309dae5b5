//! `GET /api/stations/{id}/events`: a client gets the station's state at once, a
//! `track_change` when the next track goes on air and a `listeners` event when a
//! WebSocket listener joins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Engine, SHORT_TRACKS_CONFIG};
use serde_json::Value;

/// One server-sent event.
#[derive(Debug)]
struct Event {
    id: Option<String>,
    name: String,
    data: Value,
}

/// Connects to the event stream of `station` and hands every event to the returned
/// channel (from a reader thread), after checking the response head. The first item
/// is the `retry:` hint in milliseconds.
fn subscribe(addr: &str, station: &str) -> (mpsc::Receiver<Event>, u64) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /api/stations/{station}/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push(line.trim_end().to_ascii_lowercase());
    }
    assert!(head[0].starts_with("http/1.1 200"), "{head:?}");
    assert!(
        head.iter()
            .any(|h| h.starts_with("content-type: text/event-stream")),
        "{head:?}"
    );
    assert!(
        head.iter().any(|h| h == "transfer-encoding: chunked"),
        "{head:?}"
    );
    let (sender, receiver) = mpsc::channel();
    let (retry_sender, retry_receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut body = ChunkedBody { reader, left: 0 };
        let mut id = None;
        let mut name = String::from("message");
        let mut data = String::new();
        while let Some(line) = body.line() {
            if line.is_empty() {
                if !data.is_empty() {
                    let event = Event {
                        id: id.take(),
                        name: std::mem::replace(&mut name, "message".into()),
                        data: serde_json::from_str(&data).unwrap(),
                    };
                    data.clear();
                    if sender.send(event).is_err() {
                        return;
                    }
                }
            } else if let Some(retry) = line.strip_prefix("retry: ") {
                let _ = retry_sender.send(retry.parse::<u64>().unwrap());
            } else if let Some(value) = line.strip_prefix("id: ") {
                id = Some(value.to_string());
            } else if let Some(value) = line.strip_prefix("event: ") {
                name = value.to_string();
            } else if let Some(value) = line.strip_prefix("data: ") {
                data.push_str(value);
            }
        }
    });
    let retry = retry_receiver
        .recv_timeout(Duration::from_secs(10))
        .expect("a retry hint first");
    (receiver, retry)
}

/// Lines of a chunked HTTP body.
struct ChunkedBody {
    reader: BufReader<TcpStream>,
    left: usize,
}

impl ChunkedBody {
    fn line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        loop {
            if self.left == 0 {
                let mut size = String::new();
                if self.reader.read_line(&mut size).ok()? == 0 {
                    return None;
                }
                if size.trim().is_empty() {
                    continue;
                }
                self.left = usize::from_str_radix(size.trim(), 16).ok()?;
                if self.left == 0 {
                    return None;
                }
            }
            let mut byte = [0u8; 1];
            std::io::Read::read_exact(&mut self.reader, &mut byte).ok()?;
            self.left -= 1;
            if byte[0] == b'\n' {
                return Some(String::from_utf8(line).unwrap());
            }
            line.push(byte[0]);
        }
    }
}

/// The next event for which `wanted` holds, within `within`, skipping others.
fn until(
    events: &mpsc::Receiver<Event>,
    within: Duration,
    wanted: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) if wanted(&event) => return event,
            Ok(_) => {}
            Err(error) => panic!("no such event within {within:?}: {error}"),
        }
    }
}

/// A track change to a track (not to the fallback loop).
fn on_air(event: &Event) -> bool {
    event.name == "track_change" && event.data["now_playing"].is_object()
}

#[test]
fn unknown_station_is_404() {
    let engine = Engine::start(SHORT_TRACKS_CONFIG);
    let (status, body) = engine.get("/api/stations/nope/events");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    assert!(
        engine.metric(
            "sonicforge_http_requests_total{method=\"GET\",route=\"/api/stations/{id}/events\",status=\"4xx\"}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_follows_tracks_and_listeners() {
    let engine = Engine::start(SHORT_TRACKS_CONFIG);
    engine.wait_ready();
    let (events, retry) = subscribe(&engine.addr, "main");
    assert_eq!(retry, 3000);

    // The current state first, one event of each kind.
    let initial: Vec<Event> = (0..3)
        .map(|_| events.recv_timeout(Duration::from_secs(5)).unwrap())
        .collect();
    let names: Vec<&str> = initial.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["station", "track_change", "listeners"]);
    assert_eq!(initial[0].data["station"], "main");
    assert_eq!(initial[2].data["listeners"], 0);
    let initial_seq: u64 = initial[0].id.as_deref().unwrap().parse().unwrap();

    // The station is up (the watcher may see it a poll after /readyz did).
    if initial[0].data["state"] != "up" {
        let up = until(&events, Duration::from_secs(5), |e| e.name == "station");
        assert_eq!(up.data["state"], "up", "{:?}", up.data);
    }
    let first_track = match initial[1].data["now_playing"]["track_id"].as_str() {
        Some(track) => track.to_string(),
        None => until(&events, Duration::from_secs(20), on_air).data["now_playing"]["track_id"]
            .as_str()
            .unwrap()
            .to_string(),
    };

    // The next track (tracks are 9 s long).
    let change = until(&events, Duration::from_secs(40), on_air);
    let next_track = change.data["now_playing"]["track_id"].as_str().unwrap();
    assert_ne!(next_track, first_track);
    assert!(change.data["now_playing"]["title"].is_string());
    assert!(change.data["now_playing"]["started_pts"].as_u64().unwrap() > 0);
    let change_seq: u64 = change.id.unwrap().parse().unwrap();
    assert!(change_seq > initial_seq);

    // A WebSocket listener joins.
    let url = format!("ws://{}/stations/main/ws", engine.addr);
    let (_socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let joined = until(&events, Duration::from_secs(10), |e| e.name == "listeners");
    assert_eq!(joined.data["listeners"], 1, "{:?}", joined.data);
    assert!(engine.metric("sonicforge_sse_clients{station=\"main\"}") >= 1.0);
}
