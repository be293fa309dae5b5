//! Tokens, roles and limits, end to end against a real engine: 401 and 403 as JSON,
//! the right role gets through, expired and foreign tokens are refused, a token in the
//! query opens a stream when listener tokens are required, a burst of attempts gets
//! 429, listener caps turn listeners away with 503, large bodies get 413, CORS
//! preflights are allowed or refused by origin, and bad bodies and queries get 4xx
//! naming the field. Also `sonicforge token`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Engine, HttpAnswer, bearer, http_send, token};
use sonicforge_actors::auth::{Claims, Role, TokenKeys, unix_now};

const STATION: &str = r#"
[[stations]]
id = "main"
name = "Test Main"
renditions_kbps = [64]
crossfade_ms = 1000
track_seconds = 9
upcoming_tracks = 2
seed = 7
playlist = ["lofi chill 80 bpm A minor"]
"#;

const CONSOLE_ORIGIN: &str = "https://console.example";

/// Open reads, operator for changes, admin for chaos; caps and a 1 KiB body limit;
/// no rate limit.
fn open_config() -> String {
    format!(
        r#"
[chaos]
enabled = true

[limits]
connections_per_second = 0
max_listeners_per_station = 2
json_body_kb = 1
cors_origins = ["{CONSOLE_ORIGIN}"]
{STATION}"#
    )
}

/// Listener tokens required; a small rate limit that also applies to this machine.
fn closed_config() -> String {
    format!(
        r#"
[auth]
require_listener_token = true

[limits]
connections_per_second = 2
connection_burst = 5
rate_limit_exempt = []
{STATION}"#
    )
}

fn post_chaos(engine: &Engine, authorization: Option<&str>, body: &str) -> HttpAnswer {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(value) = authorization {
        headers.push(("Authorization", value));
    }
    http_send(
        &engine.addr,
        "POST",
        "/api/admin/chaos",
        &headers,
        Some(body.as_bytes()),
    )
}

const KILL_SCHEDULER: &str = r#"{"station":"main","actor":"scheduler","mode":"stop"}"#;

fn assert_json_error(answer: &HttpAnswer, status: u16) -> serde_json::Value {
    assert_eq!(answer.status, status, "{answer:?}");
    let body = answer.json();
    assert!(body["error"].is_string(), "not a JSON error: {answer:?}");
    body
}

#[test]
fn roles_caps_bodies_and_cors_are_enforced() {
    let engine = Engine::start(&open_config());
    engine.wait_ready();

    // Reads are open.
    assert_eq!(engine.get("/api/stations").0, 200);
    assert_eq!(engine.get("/metrics").0, 200);

    // No token: 401 with a Bearer challenge, naming the role needed.
    let answer = post_chaos(&engine, None, KILL_SCHEDULER);
    let body = assert_json_error(&answer, 401);
    assert_eq!(body["detail"]["required_role"], "admin");
    assert!(
        answer
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer"),
        "{answer:?}"
    );

    // Not a bearer token, garbage, expired, signed with another secret: 401.
    let answer = post_chaos(&engine, Some("Basic dXNlcjpwYXNz"), KILL_SCHEDULER);
    assert_json_error(&answer, 401);
    let answer = post_chaos(&engine, Some("Bearer not.a.token"), KILL_SCHEDULER);
    assert_json_error(&answer, 401);
    let keys = TokenKeys::new(common::TEST_JWT_SECRET.as_bytes()).unwrap();
    let now = unix_now();
    let expired = keys
        .sign(&Claims {
            sub: "yesterday".into(),
            role: Role::Admin,
            iat: now - 86_400,
            exp: now - 3600,
        })
        .unwrap();
    let answer = post_chaos(&engine, Some(&format!("Bearer {expired}")), KILL_SCHEDULER);
    let body = assert_json_error(&answer, 401);
    assert!(
        body["error"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let foreign = TokenKeys::new(b"a completely different secret, 32+ bytes")
        .unwrap()
        .issue(Role::Admin, "intruder", Duration::from_secs(600))
        .unwrap();
    let answer = post_chaos(&engine, Some(&format!("Bearer {foreign}")), KILL_SCHEDULER);
    let body = assert_json_error(&answer, 401);
    assert!(
        body["error"].as_str().unwrap().contains("signature"),
        "{body}"
    );

    // A valid token with too low a role: 403 naming the role needed.
    for role in [Role::Listener, Role::Operator] {
        let answer = post_chaos(&engine, Some(&bearer(role)), KILL_SCHEDULER);
        let body = assert_json_error(&answer, 403);
        assert_eq!(body["detail"]["required_role"], "admin");
        assert_eq!(body["detail"]["role"], role.name());
    }
    // An operator route refuses a listener.
    let answer = http_send(
        &engine.addr,
        "POST",
        "/api/playlists",
        &[
            ("Authorization", &bearer(Role::Listener)),
            ("Content-Type", "application/json"),
        ],
        Some(b"{}"),
    );
    assert_eq!(
        assert_json_error(&answer, 403)["detail"]["required_role"],
        "operator"
    );

    // The right role gets through.
    let answer = post_chaos(&engine, Some(&bearer(Role::Admin)), KILL_SCHEDULER);
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.json()["killed"], "scheduler");

    // Bad bodies: 4xx naming the field, never a 5xx.
    let admin = bearer(Role::Admin);
    let cases: [(&str, u16, &str); 5] = [
        (
            r#"{"station":5,"actor":"scheduler","mode":"stop"}"#,
            400,
            "station",
        ),
        (r#"{"station":"main","actor":"scheduler"}"#, 400, "mode"),
        (
            r#"{"station":"main","actor":"scheduler","mode":"stop","why":1}"#,
            400,
            "why",
        ),
        (
            r#"{"station":"main","actor":"toaster","mode":"stop"}"#,
            400,
            "actor",
        ),
        (r#"{"station": "main", "#, 400, "body"),
    ];
    for (body, status, field) in cases {
        let answer = post_chaos(&engine, Some(&admin), body);
        let json = assert_json_error(&answer, status);
        assert!(
            json["detail"]["field"].as_str().unwrap().contains(field),
            "{body}: {json}"
        );
    }
    let answer = http_send(
        &engine.addr,
        "POST",
        "/api/admin/chaos",
        &[("Authorization", &admin), ("Content-Type", "text/plain")],
        Some(KILL_SCHEDULER.as_bytes()),
    );
    assert_eq!(
        assert_json_error(&answer, 415)["detail"]["field"],
        "content-type"
    );
    // Over [limits] json_body_kb = 1: 413.
    let large = format!(
        r#"{{"station":"{}","actor":"scheduler","mode":"stop"}}"#,
        "m".repeat(2048)
    );
    let answer = post_chaos(&engine, Some(&admin), &large);
    assert_eq!(
        assert_json_error(&answer, 413)["detail"]["limit_bytes"],
        1024
    );
    // Bad queries and paths.
    let answer = http_send(
        &engine.addr,
        "GET",
        "/stations/main/stream.opus?bitrate=loud",
        &[],
        None,
    );
    assert_eq!(
        assert_json_error(&answer, 400)["detail"]["field"],
        "bitrate"
    );
    let answer = http_send(
        &engine.addr,
        "GET",
        "/stations/main/stream.opus?volume=11",
        &[],
        None,
    );
    assert_eq!(assert_json_error(&answer, 400)["detail"]["field"], "volume");

    // CORS: the configured origin's preflight is allowed, another's refused as JSON.
    let preflight = |origin: &str| {
        http_send(
            &engine.addr,
            "OPTIONS",
            "/api/admin/chaos",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                ),
            ],
            None,
        )
    };
    let allowed = preflight(CONSOLE_ORIGIN);
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some(CONSOLE_ORIGIN)
    );
    let denied = preflight("https://elsewhere.example");
    assert_eq!(assert_json_error(&denied, 403)["detail"]["field"], "origin");
    assert_eq!(denied.header("access-control-allow-origin"), None);

    // Listener cap of 2 per station: the third listener gets 503 before its stream.
    let first = open_stream(&engine.addr, "/stations/main/stream.opus");
    let second = open_stream(&engine.addr, "/stations/main/stream.opus");
    assert_eq!((first.0, second.0), (200, 200));
    let third = http_send(&engine.addr, "GET", "/stations/main/stream.opus", &[], None);
    let body = assert_json_error(&third, 503);
    assert_eq!(body["detail"]["scope"], "station");
    assert_eq!(body["detail"]["limit"], 2);
    assert!(third.header("retry-after").is_some());
    // A listener that leaves frees its place.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    let again = loop {
        let again = open_stream(&engine.addr, "/stations/main/stream.opus");
        if again.0 == 200 || Instant::now() > deadline {
            break again;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        again.0, 200,
        "the place of a listener that left was not freed"
    );
}

#[test]
fn listener_tokens_and_rate_limit_are_enforced() {
    let engine = Engine::start(&closed_config());
    // Health stays open (and is not rate limited).
    engine.wait_ready();

    // Reads need a token; the header or the query carries it.
    let answer = http_send(&engine.addr, "GET", "/api/stations", &[], None);
    assert_eq!(
        assert_json_error(&answer, 401)["detail"]["required_role"],
        "listener"
    );
    let listener = token(Role::Listener);
    let stream = open_stream(
        &engine.addr,
        &format!("/stations/main/stream.opus?bitrate=64&token={listener}"),
    );
    assert_eq!(
        stream.0, 200,
        "a listener token in the query opens the stream"
    );
    drop(stream);
    let answer = http_send(
        &engine.addr,
        "GET",
        "/stations/main/stream.opus?token=garbage",
        &[],
        None,
    );
    assert_json_error(&answer, 401);

    // A burst of attempts from one address: over the burst of 5, 429 with Retry-After.
    std::thread::sleep(Duration::from_secs(3));
    let answers: Vec<HttpAnswer> = (0..40)
        .map(|_| {
            http_send(
                &engine.addr,
                "GET",
                "/api/stations",
                &[("Authorization", &bearer(Role::Listener))],
                None,
            )
        })
        .collect();
    assert!(answers.iter().any(|a| a.status == 200), "{answers:?}");
    let limited = answers
        .iter()
        .find(|a| a.status == 429)
        .expect("a burst of 40 attempts with a burst allowance of 5 gets 429");
    let body = assert_json_error(limited, 429);
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(body["detail"]["retry_after_seconds"], retry_after);
}

#[test]
fn token_command_issues_tokens_the_engine_accepts() {
    let dir = common::TempDir::new();
    let config = dir.path.join("sonicforge.toml");
    std::fs::write(
        &config,
        format!("[auth]\nmax_token_ttl = \"2h\"\n{STATION}"),
    )
    .unwrap();
    let data_dir = dir.path.join("data");
    let run = |args: &[&str], secret: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sonicforge"));
        command
            .arg("token")
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("SONICFORGE_DATA_DIR", &data_dir)
            .env_remove("SONICFORGE_JWT_SECRET");
        if let Some(secret) = secret {
            command.env("SONICFORGE_JWT_SECRET", secret);
        }
        command.output().unwrap()
    };

    // The secret from the environment.
    let output = run(
        &["--role", "operator", "--ttl", "90m", "--subject", "console"],
        Some(common::TEST_JWT_SECRET),
    );
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    let claims = TokenKeys::new(common::TEST_JWT_SECRET.as_bytes())
        .unwrap()
        .verify(printed.trim())
        .unwrap();
    assert_eq!(claims.role, Role::Operator);
    assert_eq!(claims.sub, "console");
    assert_eq!(claims.exp - claims.iat, 90 * 60);

    // No secret anywhere: one is made in the data directory, mode 0600, and used.
    let output = run(&["--role", "admin"], None);
    assert!(output.status.success(), "{output:?}");
    let secret_file = data_dir.join("jwt-secret");
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let printed = String::from_utf8(output.stdout).unwrap();
    let claims = TokenKeys::new(secret.trim().as_bytes())
        .unwrap()
        .verify(printed.trim())
        .unwrap();
    assert_eq!(claims.role, Role::Admin);
    assert_eq!(claims.exp - claims.iat, 3600, "the default lifetime");

    // Refusals name the problem.
    for (args, expected) in [
        (&["--role", "admin", "--ttl", "3h"][..], "max_token_ttl"),
        (
            &["--role", "admin", "--ttl", "3 weeks"][..],
            "not a lifetime",
        ),
        (&["--role", "root"][..], "root"),
    ] {
        let output = run(args, None);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let output = run(&["--role", "admin"], Some("too short"));
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("at least 32"),
        "{output:?}"
    );
}

/// Opens a stream and reads its status line; the connection stays open (the
/// listener stays connected) until the returned stream is dropped.
fn open_stream(addr: &str, path: &str) -> (u16, std::net::TcpStream) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, stream)
}
