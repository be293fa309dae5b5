//! Playlists through the API, and what operators do on air: a swap `now` is heard
//! within 2 s without a gap, a swap `next` waits for the end of the track on air, a
//! skip cuts over at once, a queued request plays before the rotation goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use sonicforge_engine::codec::wire::parse_packet;
use tokio_tungstenite::tungstenite::Message;

const CONFIG: &str = r#"
[listeners]
behind_deadline_ms = 3000

[[stations]]
id = "main"
name = "Test Main"
renditions_kbps = [64]
crossfade_ms = 2000
track_seconds = 9
upcoming_tracks = 2
swap_ready_playlists = 2
seed = 42
playlist = ["lofi chill 80 bpm A minor", "deep house 122 bpm F minor"]
"#;

const CROSSFADE_SAMPLES: u64 = 2 * 48_000;

async fn blocking<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(job).await.unwrap()
}

async fn post(engine: &common::Engine, path: &str, body: &str) -> (u16, Value) {
    let (addr, path, body) = (engine.addr.clone(), path.to_string(), body.to_string());
    let (status, text) = blocking(move || common::http_post_json(&addr, &path, &body)).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn put(engine: &common::Engine, path: &str, body: &str) -> (u16, Value) {
    let (addr, path, body) = (engine.addr.clone(), path.to_string(), body.to_string());
    let (status, text) = blocking(move || common::http_put_json(&addr, &path, &body)).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A WebSocket listener that checks every packet follows the one before.
struct Listener {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    previous_pts: Option<u64>,
    /// The last now_playing message and the pts of the first packet after it.
    now_playing: Option<Value>,
}

/// A track change the listener heard: the track and the pts it started at.
struct Change {
    track: Value,
    pts: u64,
    at: Instant,
}

impl Listener {
    async fn connect(engine: &common::Engine) -> Self {
        let url = format!("ws://{}/stations/main/ws", engine.addr);
        let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let hello = socket.next().await.unwrap().unwrap();
        let hello: Value = serde_json::from_str(hello.to_text().unwrap()).unwrap();
        assert_eq!(hello["type"], "hello");
        Self {
            socket,
            previous_pts: None,
            now_playing: Some(hello["now_playing"].clone()),
        }
    }

    /// Reads until a now_playing message and the packet after it, checking packets
    /// for gaps; `None` at the deadline.
    async fn next_change(&mut self, deadline: Instant) -> Option<Change> {
        let mut announced: Option<(Value, Instant)> = None;
        while Instant::now() < deadline {
            let message = tokio::time::timeout(Duration::from_secs(2), self.socket.next())
                .await
                .expect("audio keeps coming")
                .expect("the listener stays connected")
                .unwrap();
            match message {
                Message::Binary(bytes) => {
                    let (header, _) = parse_packet(&bytes).unwrap();
                    assert!(
                        !header.is_discontinuity(),
                        "discontinuity at {}",
                        header.pts
                    );
                    if let Some(previous) = self.previous_pts {
                        assert_eq!(header.pts, previous + 960, "a gap in the listener's audio");
                    }
                    self.previous_pts = Some(header.pts);
                    if let Some((track, at)) = announced.take() {
                        self.now_playing = Some(track.clone());
                        return Some(Change {
                            track,
                            pts: header.pts,
                            at,
                        });
                    }
                }
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] == "now_playing" {
                        announced = Some((value["now_playing"].clone(), Instant::now()));
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Reads changes until one satisfies `wanted`.
    async fn change_where(
        &mut self,
        within: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Option<Change> {
        let deadline = Instant::now() + within;
        while let Some(change) = self.next_change(deadline).await {
            if wanted(&change.track) {
                return Some(change);
            }
        }
        None
    }
}

fn from_playlist(name: &'static str) -> impl Fn(&Value) -> bool {
    move |track| track["playlist"] == name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlists_are_validated_stored_and_protected_while_on_air() {
    let engine = common::Engine::start(CONFIG);
    let (status, listed) = blocking({
        let addr = engine.addr.clone();
        move || common::http_get(&addr, "/api/playlists")
    })
    .await;
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(
        listed["playlists"][0]["name"], "main",
        "the built-in playlist"
    );

    let (status, created) = post(
        &engine,
        "/api/playlists",
        r#"{"name": "night", "rotation": "shuffle",
            "items": [{"prompt": "ambient calm 70 bpm C major", "seconds": 30, "weight": 2},
                      {"prompt": "dark techno 128 bpm", "seed": 7, "crossfade_ms": 500}]}"#,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["items"][1]["seed"], 7);

    for (body, field) in [
        (r#"{"name": "", "items": [{"prompt": "x"}]}"#, "name"),
        (r#"{"name": "a b", "items": [{"prompt": "x"}]}"#, "name"),
        (r#"{"name": "n", "items": []}"#, "items"),
        (
            r#"{"name": "n", "items": [{"weight": 1}]}"#,
            "items[0].prompt",
        ),
        (
            r#"{"name": "n", "items": [{"file": "missing"}]}"#,
            "items[0].file",
        ),
        (
            r#"{"name": "n", "items": [{"prompt": "x", "seconds": 0}]}"#,
            "items[0].seconds",
        ),
        (
            r#"{"name": "n", "items": [{"prompt": "x", "weight": 0}]}"#,
            "items[0].weight",
        ),
        (
            r#"{"name": "n", "items": [{"prompt": "x", "crossfade_ms": 40000}]}"#,
            "items[0].crossfade_ms",
        ),
    ] {
        let (status, answer) = post(&engine, "/api/playlists", body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["detail"]["field"], field, "{body}: {answer}");
    }
    let (status, _) = post(
        &engine,
        "/api/playlists",
        r#"{"name": "night", "items": [{"prompt": "x"}]}"#,
    )
    .await;
    assert_eq!(status, 409, "a name in use");

    let (status, replaced) = put(
        &engine,
        "/api/playlists/night",
        r#"{"items": [{"prompt": "lofi chill 80 bpm A minor"}]}"#,
    )
    .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["rotation"], "sequential");
    let (status, _) = put(
        &engine,
        "/api/playlists/nothing",
        r#"{"items": [{"prompt": "x"}]}"#,
    )
    .await;
    assert_eq!(status, 404);

    let addr = engine.addr.clone();
    let (on_air, unknown, deleted, gone) = blocking(move || {
        (
            common::http_delete(&addr, "/api/playlists/main").0,
            common::http_delete(&addr, "/api/playlists/nothing").0,
            common::http_delete(&addr, "/api/playlists/night").0,
            common::http_get(&addr, "/api/playlists/night").0,
        )
    })
    .await;
    assert_eq!(on_air, 409, "the playlist on air stays");
    assert_eq!(unknown, 404);
    assert_eq!(deleted, 204);
    assert_eq!(gone, 404);
    let (status, answer) = put(
        &engine,
        "/api/stations/main/playlist",
        r#"{"playlist": "night", "when": "now"}"#,
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["detail"]["field"], "playlist");

    // Kept across a restart.
    post(
        &engine,
        "/api/playlists",
        r#"{"name": "kept", "items": [{"prompt": "lofi chill 80 bpm A minor"}]}"#,
    )
    .await;
    let mut engine = engine;
    engine.terminate();
    engine.restart();
    assert_eq!(engine.get("/api/playlists/kept").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_skips_and_requests_change_the_music_without_a_gap() {
    let engine = common::Engine::start(CONFIG);
    engine.wait_ready();
    for (name, prompt) in [
        ("alpha", "synthwave driving 100 bpm E minor"),
        ("beta", "ambient calm 70 bpm C major"),
    ] {
        let body = format!(r#"{{"name": "{name}", "items": [{{"prompt": "{prompt}"}}]}}"#);
        let (status, answer) = post(&engine, "/api/playlists", &body).await;
        assert_eq!(status, 201, "{answer}");
    }
    let mut listener = Listener::connect(&engine).await;
    // Time for the first tracks of both playlists to be rendered ahead.
    let warm_up = Instant::now() + Duration::from_secs(6);
    while listener.next_change(warm_up).await.is_some() {}

    // Now: the new playlist is heard within 2 s, without a gap.
    let requested = Instant::now();
    let (status, swap) = put(
        &engine,
        "/api/stations/main/playlist",
        r#"{"playlist": "alpha", "when": "now"}"#,
    )
    .await;
    assert_eq!(status, 200, "{swap}");
    assert_eq!(swap["from"], "main");
    let change = listener
        .change_where(Duration::from_secs(5), from_playlist("alpha"))
        .await
        .expect("a track of the new playlist goes on air");
    let delay = change.at - requested;
    println!(
        "swap now: first track ready {}, heard after {delay:?} (reported)",
        swap["first_track_ready"]
    );
    assert!(delay < Duration::from_secs(2), "heard only after {delay:?}");
    let (_, station) = engine.get("/api/stations/main/playlist");
    let station: Value = serde_json::from_str(&station).unwrap();
    assert_eq!(station["playlist"], "alpha");

    // Next: the track on air plays to its crossfade first.
    let on_air = change;
    let (status, swap) = put(
        &engine,
        "/api/stations/main/playlist",
        r#"{"playlist": "beta", "when": "next"}"#,
    )
    .await;
    assert_eq!(status, 200, "{swap}");
    let change = listener
        .change_where(Duration::from_secs(20), |_| true)
        .await
        .expect("the next track goes on air");
    assert_eq!(change.track["playlist"], "beta", "{}", change.track);
    let duration_samples = on_air.track["duration_ms"].as_u64().unwrap() * 48;
    assert!(
        change.pts >= on_air.pts + duration_samples - CROSSFADE_SAMPLES,
        "the swap for the next track cut the track on air short"
    );

    // Skip: the next track comes in at once.
    let requested = Instant::now();
    let (status, skip) = post(&engine, "/api/stations/main/skip", "{}").await;
    assert_eq!(status, 200, "{skip}");
    let skipped = change.track["track_id"].clone();
    assert_eq!(skip["skipped"], skipped);
    let change = listener
        .change_where(Duration::from_secs(10), |_| true)
        .await
        .expect("a skip changes the track");
    assert_ne!(change.track["track_id"], skipped);
    println!("skip heard after {:?} (reported)", change.at - requested);

    // A request plays after the track on air, before the tracks already queued.
    let (status, queued) = post(
        &engine,
        "/api/stations/main/queue",
        r#"{"prompt": "deep house 122 bpm F minor", "seconds": 9}"#,
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["position"], 0);
    let change = listener
        .change_where(Duration::from_secs(20), |_| true)
        .await
        .expect("the next track goes on air");
    assert_eq!(
        change.track["scheduled_as"], "request",
        "the request plays right after the track on air: {}",
        change.track
    );
    assert_eq!(change.track["prompt"], "deep house 122 bpm F minor");
    let (status, bad) = post(&engine, "/api/stations/main/queue", r#"{"seconds": 9}"#).await;
    assert_eq!(status, 422, "{bad}");

    // The tracks cut short were stored with why they ended.
    let mut reasons = Vec::new();
    for _ in 0..100 {
        let (_, history) = engine.get("/api/stations/main/history?limit=50");
        let history: Value = serde_json::from_str(&history).unwrap();
        reasons = history["plays"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|play| play["ended"]["reason"].as_str().map(str::to_string))
            .collect();
        if reasons.iter().any(|r| r == "swapped") && reasons.iter().any(|r| r == "skipped") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reasons.iter().any(|r| r == "swapped"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "skipped"), "{reasons:?}");
    let log = engine.log_text();
    assert!(!log.contains("panicked"), "no actor panicked: {log}");
}
