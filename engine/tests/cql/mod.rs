//! A CQL node for the tests: `SONICFORGE_CQL_NODES` names it (set by
//! `scripts/cassandra.sh run -- cargo test ...`), and each test migrates a
//! keyspace of its own.

// Test support: a failure here is the test failing; each test file uses part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use sonicforge_engine::events::{
    Replication, SchemaOptions, ScyllaOptions, ScyllaStore, TableTtls,
};

const VARIABLE: &str = "SONICFORGE_CQL_NODES";

/// The nodes of the test cluster. Without them the test is not run: it says
/// so and passes, except when `CI` is set, where it fails.
pub fn nodes(test: &str) -> Option<Vec<String>> {
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
    let how = format!(
        "run through scripts/cassandra.sh run -- cargo test -p sonicforge-engine --test {test} (or make test-scylla)"
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "{VARIABLE} is not set, so the ScyllaDB tests cannot reach a node: {how}"
    );
    eprintln!("{test}: not run: {VARIABLE} is not set; {how}");
    None
}

/// A keyspace name no other test run uses.
pub fn fresh_keyspace(purpose: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let mut name = format!(
        "t_{purpose}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    );
    name.truncate(48);
    name
}

pub fn options(nodes: &[String], keyspace: &str) -> ScyllaOptions {
    let mut options = ScyllaOptions::new(nodes.to_vec(), keyspace);
    // A single test node on a busy machine: generous timeouts.
    options.request_timeout = std::time::Duration::from_secs(20);
    options.connect_timeout = std::time::Duration::from_secs(10);
    options
}

pub fn schema() -> SchemaOptions {
    SchemaOptions {
        replication: Replication::Simple { factor: 1 },
        ttls: TableTtls {
            events_days: 400,
            plays_days: 800,
            sessions_days: 400,
            totals_days: 3650,
        },
        compaction_window_days: 1,
    }
}

/// Migrates a fresh keyspace and opens a store on it.
pub fn migrated_store(nodes: &[String], purpose: &str) -> (String, ScyllaStore) {
    let keyspace = fresh_keyspace(purpose);
    let outcome = ScyllaStore::migrate(options(nodes, &keyspace), schema()).unwrap();
    assert!(outcome.created_keyspace);
    assert_eq!(outcome.previous_version, None);
    let store = ScyllaStore::open(options(nodes, &keyspace)).unwrap();
    (keyspace, store)
}

/// A session of the test's own on the node (for checks and cleanup), with the
/// runtime it runs on.
pub fn session(nodes: &[String]) -> (tokio::runtime::Runtime, scylla::client::session::Session) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let session = runtime
        .block_on(
            scylla::client::session_builder::SessionBuilder::new()
                .known_nodes(nodes)
                .build(),
        )
        .unwrap();
    (runtime, session)
}

/// Every row of a query, typed.
pub fn rows<R>(
    runtime: &tokio::runtime::Runtime,
    session: &scylla::client::session::Session,
    query: &str,
    values: impl scylla::serialize::row::SerializeRow,
) -> Vec<R>
where
    R: for<'frame, 'metadata> scylla::deserialize::row::DeserializeRow<'frame, 'metadata>,
{
    runtime.block_on(async {
        let result = session
            .query_unpaged(query, values)
            .await
            .unwrap_or_else(|error| panic!("{query}: {error}"));
        result
            .into_rows_result()
            .unwrap()
            .rows::<R>()
            .unwrap()
            .map(Result::unwrap)
            .collect()
    })
}

pub fn execute(
    runtime: &tokio::runtime::Runtime,
    session: &scylla::client::session::Session,
    statement: &str,
) {
    runtime
        .block_on(session.query_unpaged(statement, ()))
        .unwrap_or_else(|error| panic!("{statement}: {error}"));
}

pub fn drop_keyspace(nodes: &[String], keyspace: &str) {
    let (runtime, session) = session(nodes);
    execute(
        &runtime,
        &session,
        &format!("DROP KEYSPACE IF EXISTS {keyspace}"),
    );
}
