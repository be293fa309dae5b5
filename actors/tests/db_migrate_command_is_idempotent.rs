//! `sonicforge db migrate` and `sonicforge db check` against a real CQL node
//! (`scripts/cassandra.sh run -- cargo test ...` sets `SONICFORGE_CQL_NODES`).

// The helpers outside the tests fail the test when they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

const VARIABLE: &str = "SONICFORGE_CQL_NODES";

/// The test node, or `None` (the test then says it was not run and passes,
/// except under `CI`, where it fails).
fn nodes() -> Option<Vec<String>> {
    let nodes: Vec<String> = std::env::var(VARIABLE)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(str::to_string)
        .collect();
    if !nodes.is_empty() {
        return Some(nodes);
    }
    let how = "run through scripts/cassandra.sh run -- cargo test -p sonicforge-actors --test db_migrate_command_is_idempotent (or make test-scylla)";
    assert!(
        std::env::var_os("CI").is_none(),
        "{VARIABLE} is not set, so the ScyllaDB tests cannot reach a node: {how}"
    );
    eprintln!("db_migrate_command_is_idempotent: not run: {VARIABLE} is not set; {how}");
    None
}

fn sonicforge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sonicforge"))
        .args(args)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn migrate_creates_the_schema_once_and_check_reports_its_version() {
    let Some(nodes) = nodes() else {
        return;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let keyspace = format!("t_cli_{}_{}", std::process::id(), nanos % 1_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sonicforge.toml");
    let node_list = nodes
        .iter()
        .map(|node| format!("{node:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &config,
        format!(
            r#"
[events]
backend = "scylla"

[events.scylla]
known_nodes = [{node_list}]
keyspace = "{keyspace}"
replication_factor = 1
consistency = "one"
request_timeout_ms = 20000
connect_timeout_ms = 10000

[[stations]]
id = "main"
name = "Main"
playlist = ["lofi chill 80 bpm A minor"]
"#
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let check = sonicforge(&["db", "check", "--config", config]);
    assert!(!check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("no event schema") && text(&check).contains("db migrate"),
        "{}",
        text(&check)
    );

    let first = sonicforge(&["db", "migrate", "--config", config]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains(&format!("keyspace {keyspace} created")),
        "{}",
        text(&first)
    );
    assert!(
        text(&first).contains("version 1 applied"),
        "{}",
        text(&first)
    );

    let second = sonicforge(&["db", "migrate", "--config", config]);
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        text(&second).contains("already applied"),
        "{}",
        text(&second)
    );

    let check = sonicforge(&["db", "check", "--config", config]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains(&format!("keyspace {keyspace}: event schema version 1")),
        "{}",
        text(&check)
    );

    // Clean up with the migrate command's own driver: drop what it made.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let session = scylla::client::session_builder::SessionBuilder::new()
            .known_nodes(&nodes)
            .build()
            .await
            .unwrap();
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
            .await
            .unwrap();
    });
}

#[test]
fn migrate_names_the_cluster_it_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sonicforge.toml");
    std::fs::write(
        &config,
        r#"
[events.scylla]
known_nodes = ["127.0.0.1:1"]
connect_timeout_ms = 500
request_timeout_ms = 500

[[stations]]
id = "main"
name = "Main"
playlist = ["lofi chill 80 bpm A minor"]
"#,
    )
    .unwrap();
    let output = sonicforge(&["db", "migrate", "--config", config.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(text(&output).contains("127.0.0.1:1"), "{}", text(&output));
}
