//! Webhooks: a receiver that fails the first post gets the event again, signed; a
//! receiver that never answers costs the station nothing and every attempt ends at
//! the timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{SHORT_TRACKS_CONFIG, TempDir, http_get};

const SECRET_ENV: &str = "SONICFORGE_TEST_WEBHOOK_SECRET";
const SECRET: &str = "webhook-test-secret";

/// An engine started with the webhook secret in its environment, killed when dropped.
struct Engine {
    child: Child,
    addr: String,
    _dir: TempDir,
}

impl Engine {
    fn start(config: &str) -> Self {
        let dir = TempDir::new();
        let config_path = dir.path.join("sonicforge.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sonicforge"))
            .args(["run", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config_path)
            .env("SONICFORGE_DATA_DIR", dir.path.join("data"))
            .env(SECRET_ENV, SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on http://") {
                    let _ = sender.send(url.trim().trim_end_matches('/').to_string());
                }
            }
        });
        let addr = receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("the engine prints its address");
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    fn metric(&self, prefix: &str) -> f64 {
        let (_, text) = http_get(&self.addr, "/metrics");
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + within;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{what} not seen within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(receiver: &str, extra: &str) -> String {
    format!(
        "{SHORT_TRACKS_CONFIG}\n[webhooks]\nurls = [\"http://{receiver}/hooks?token=abc\"]\n\
         secret_env = \"{SECRET_ENV}\"\n{extra}\n"
    )
}

/// One request as the receiver saw it.
#[derive(Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    assert!(request_line.starts_with("POST /hooks"), "{request_line}");
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .expect("a content-length");
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received { headers, body })
}

#[test]
fn failed_post_is_retried_and_signed() {
    let receiver = TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver_addr = receiver.local_addr().unwrap().to_string();
    let (sender, requests) = mpsc::channel();
    std::thread::spawn(move || {
        for (index, stream) in receiver.incoming().enumerate() {
            let mut stream = stream.unwrap();
            let Some(request) = read_request(&mut stream) else {
                continue;
            };
            let status = if index == 0 {
                "500 Internal Server Error"
            } else {
                "204 No Content"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            if sender.send(request).is_err() {
                return;
            }
        }
    });
    let engine = Engine::start(&config(
        &receiver_addr,
        "timeout_ms = 2000\nmax_attempts = 3\nbackoff_initial_ms = 100\nbackoff_max_ms = 200",
    ));

    let first = requests.recv_timeout(Duration::from_secs(60)).unwrap();
    let retry = requests.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(
        first.header("x-sonicforge-delivery"),
        retry.header("x-sonicforge-delivery")
    );
    assert_eq!(first.body, retry.body);
    let body: serde_json::Value = serde_json::from_slice(&retry.body).unwrap();
    assert_eq!(body["station"], "main");
    assert_eq!(body["id"], retry.header("x-sonicforge-delivery").unwrap());
    assert_eq!(body["type"], retry.header("x-sonicforge-event").unwrap());
    assert!(body["time"].as_str().unwrap().ends_with('Z'), "{body}");
    assert!(body["payload"].is_object(), "{body}");
    assert_eq!(retry.header("content-type"), Some("application/json"));
    assert_eq!(
        retry.header("x-sonicforge-signature").unwrap(),
        sonicforge_actors::webhooks::sign(SECRET.as_bytes(), &retry.body)
    );

    // Track changes follow; each is posted (tracks are 9 s long).
    let deadline = Instant::now() + Duration::from_secs(40);
    let track = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let request = requests.recv_timeout(left).expect("a track_change post");
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        if body["type"] == "track_change" && body["payload"]["now_playing"].is_object() {
            break body;
        }
    };
    assert!(track["payload"]["now_playing"]["track_id"].is_string());

    let label = format!("url=\"http://{receiver_addr}/hooks\"");
    assert!(engine.metric(&format!("sonicforge_webhook_failures_total{{{label}}}")) >= 1.0);
    // Counted once the engine has read the receiver's answer.
    engine.wait_for("two deliveries counted", Duration::from_secs(10), |e| {
        e.metric(&format!("sonicforge_webhook_deliveries_total{{{label}}}")) >= 2.0
    });
    let (_, metrics) = http_get(&engine.addr, "/metrics");
    assert!(
        !metrics.contains("token=abc"),
        "the URL's query stays out of the labels"
    );
}

#[test]
fn receiver_that_never_answers_does_not_hold_the_station() {
    // Accepts connections and never reads or answers them.
    let receiver = TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver_addr = receiver.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in receiver.incoming() {
            held.push(stream);
        }
    });
    let engine = Engine::start(&config(
        &receiver_addr,
        "timeout_ms = 300\nmax_attempts = 2\nbackoff_initial_ms = 50\nbackoff_max_ms = 50\n\
         queue_capacity = 2",
    ));
    let label = format!("url=\"http://{receiver_addr}/hooks\"");

    // Every attempt ends (a timeout), so events are given up one after another.
    engine.wait_for("an event given up", Duration::from_secs(60), |e| {
        e.metric(&format!(
            "sonicforge_webhook_dropped_total{{reason=\"attempts_exhausted\",{label}}}"
        )) >= 1.0
    });
    assert!(engine.metric(&format!("sonicforge_webhook_failures_total{{{label}}}")) >= 2.0);
    assert_eq!(
        engine.metric(&format!("sonicforge_webhook_deliveries_total{{{label}}}")),
        0.0
    );

    // Meanwhile the station plays on: ready, and the next track goes on air.
    let changes = engine.metric("sonicforge_track_changes_total{station=\"main\"}");
    engine.wait_for("the next track on air", Duration::from_secs(40), |e| {
        e.metric("sonicforge_track_changes_total{station=\"main\"}") > changes
    });
    assert_eq!(http_get(&engine.addr, "/readyz").0, 200);
}
