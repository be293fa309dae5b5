//! Shared by the integration tests: an engine process on a free port, and tools.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A test station with short tracks so that track changes happen within seconds.
pub const SHORT_TRACKS_CONFIG: &str = r#"
[listeners]
behind_deadline_ms = 3000
socket_send_buffer_bytes = 8192

[[stations]]
id = "main"
name = "Test Main"
renditions_kbps = [64, 128]
crossfade_ms = 2000
track_seconds = 9
upcoming_tracks = 2
seed = 42
playlist = ["lofi chill 80 bpm A minor", "dark techno 128 bpm", "deep house 122 bpm F minor"]
"#;

/// [`SHORT_TRACKS_CONFIG`] with 120 s tracks and the listener deadline `deadline_ms`,
/// started and waited for until its upcoming tracks are rendered: the station's own
/// memory then stays put while the listeners' is measured.
pub fn start_with_rendered_long_tracks(deadline_ms: u64) -> Engine {
    let config = SHORT_TRACKS_CONFIG
        .replace(
            "behind_deadline_ms = 3000",
            &format!("behind_deadline_ms = {deadline_ms}"),
        )
        .replace("track_seconds = 9", "track_seconds = 120");
    let engine = Engine::start(&config);
    engine.wait_ready();
    while engine.metric("sonicforge_upcoming_tracks{") < 2.0 {
        std::thread::sleep(Duration::from_millis(200));
    }
    engine
}

/// The token signing secret every engine the harness starts uses (through
/// `SONICFORGE_JWT_SECRET`), so tests can mint tokens with [`token`].
pub const TEST_JWT_SECRET: &str = "sonicforge-integration-test-secret-0123456789";

/// A bearer token for the harness's engines with `role`, valid for an hour.
pub fn token(role: sonicforge_actors::auth::Role) -> String {
    sonicforge_actors::auth::TokenKeys::new(TEST_JWT_SECRET.as_bytes())
        .unwrap()
        .issue(role, "integration-test", Duration::from_secs(3600))
        .unwrap()
}

/// A running `sonicforge` process, killed when dropped.
pub struct Engine {
    child: Child,
    pub base_url: String,
    pub addr: String,
    pub log: PathBuf,
    /// The engine's data directory (play events).
    pub data_dir: PathBuf,
    _dir: TempDir,
}

impl Engine {
    /// Starts the engine with `config` on a free loopback port and waits until it listens.
    pub fn start(config: &str) -> Self {
        let dir = TempDir::new();
        std::fs::write(dir.path.join("sonicforge.toml"), config).unwrap();
        let (child, base_url) = Self::spawn(&dir.path);
        let addr = base_url.trim_start_matches("http://").to_string();
        Self {
            child,
            base_url,
            addr,
            log: dir.path.join("engine.log"),
            data_dir: dir.path.join("data"),
            _dir: dir,
        }
    }

    /// Starts an engine on the config and data directory in `dir` and waits for its
    /// address.
    fn spawn(dir: &std::path::Path) -> (Child, String) {
        let config_path = dir.join("sonicforge.toml");
        let log = dir.join("engine.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sonicforge"))
            .args(["run", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config_path)
            .env("SONICFORGE_DATA_DIR", dir.join("data"))
            .env("SONICFORGE_LOG", "info")
            .env("SONICFORGE_JWT_SECRET", TEST_JWT_SECRET)
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .expect("the sonicforge binary starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = sender.send(url.trim().to_string());
                }
            }
        });
        match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => (child, url.trim_end_matches('/').to_string()),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the engine did not print its address within 60 s; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
    }

    /// Kills the engine without warning (SIGKILL), as a crash or power loss would.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts the engine again on the same config and data directory (after
    /// [`kill`](Self::kill) or [`terminate`](Self::terminate)); its address changes.
    pub fn restart(&mut self) {
        let (child, base_url) = Self::spawn(&self._dir.path);
        self.child = child;
        self.addr = base_url.trim_start_matches("http://").to_string();
        self.base_url = base_url;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the engine the way an operator does (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the engine did not exit within 10 s of SIGTERM; log:\n{}",
            self.log_text()
        );
    }

    /// Resident memory of the engine process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// A GET request's status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path)
    }

    /// Waits until the engine's audio flows (`/readyz` answers 200).
    pub fn wait_ready(&self) {
        for _ in 0..600 {
            if self.get("/readyz").0 == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("engine not ready after 60 s; log:\n{}", self.log_text());
    }

    /// The value of a metric line that starts with `prefix` (name and labels).
    pub fn metric(&self, prefix: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP/1.1 GET (no keep-alive).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

/// A minimal blocking HTTP/1.1 POST of a JSON body (no keep-alive), as an admin
/// (a bearer token from [`token`]), so it may call any route.
pub fn http_post_json(addr: &str, path: &str, body: &str) -> (u16, String) {
    http_json_as_admin(addr, "POST", path, body)
}

/// A PUT of a JSON body as an admin.
pub fn http_put_json(addr: &str, path: &str, body: &str) -> (u16, String) {
    http_json_as_admin(addr, "PUT", path, body)
}

/// A DELETE as an admin.
pub fn http_delete(addr: &str, path: &str) -> (u16, String) {
    let answer = http_send(
        addr,
        "DELETE",
        path,
        &[(
            "Authorization",
            &bearer(sonicforge_actors::auth::Role::Admin),
        )],
        None,
    );
    (answer.status, answer.body)
}

fn http_json_as_admin(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let answer = http_send(
        addr,
        method,
        path,
        &[
            (
                "Authorization",
                &bearer(sonicforge_actors::auth::Role::Admin),
            ),
            ("Content-Type", "application/json"),
        ],
        Some(body.as_bytes()),
    );
    (answer.status, answer.body)
}

/// `Bearer <token>` for an `Authorization` header.
pub fn bearer(role: sonicforge_actors::auth::Role) -> String {
    format!("Bearer {}", token(role))
}

/// A response: status, headers (names lowercased) and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Any request, with exactly the given headers (no token unless given) and body; a
/// `Content-Length` is added for a body. Reads the response to its end.
pub fn http_send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpAnswer {
    use std::io::{Read, Write};
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    if let Some(body) = body {
        // The server may answer (413) and close before taking a large body.
        let _ = stream.write_all(body);
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Sends a whole request and returns the response's status and body.
fn http_request(addr: &str, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A directory removed when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "sonicforge-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Path of a tool the test needs. In CI (`CI` set) a missing tool fails the test;
/// elsewhere the test is skipped with a note.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{name} is required for this test and is not installed; `make test` installs it"
            );
        }
        eprintln!("note: {name} is not installed; skipping (run `make test` to install it)");
    }
    found
}
