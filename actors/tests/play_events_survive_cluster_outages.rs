//! No play event is lost or stored twice when the ScyllaDB cluster goes away: a real
//! CQL node (Apache Cassandra 5.0, started by `scripts/cassandra.sh` for this test
//! alone) is stopped for 30 s while events flow at a steady rate, then started again;
//! later it is stopped again, the engine is killed with events in its spool, the node
//! comes back and the restarted engine replays the spool.
//!
//! The engine's emitted-event log (`events.emitted_log`) records every event its
//! writer took from the queue; with `sonicforge_events_dropped_total` at zero, that is
//! every event emitted. The rows are read back with CQL.
//!
//! Without Java 17 or the Cassandra jars the test says so and passes, except when `CI`
//! is set, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod event_faults;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use event_faults::{
    CYCLES_PER_SECOND, EventFiles, ListenerChurn, MIN_EVENTS_PER_SECOND, OUTAGE, StoredEvents,
    assert_every_emitted_event_stored_once, restart_and_replay_spool, station_metric, unix_ms_now,
    wait_for, wait_until_everything_emitted_is_stored_or_spooled,
};
use scylla::value::CqlTimeuuid;
use sonicforge_engine::events::{
    Replication, SchemaOptions, ScyllaOptions, ScyllaStore, TableTtls,
};

/// A single Cassandra node of this test's own: its run directory and ports.
struct CassandraNode {
    script: PathBuf,
    run_dir: common::TempDir,
    cql_port: u16,
    storage_port: u16,
    jmx_port: u16,
}

impl CassandraNode {
    /// Starts a node on free loopback ports; `None` when it cannot start outside CI.
    fn start_new() -> Option<Self> {
        let ports: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let port = |index: usize| ports[index].local_addr().unwrap().port();
        let node = Self {
            script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cassandra.sh"),
            run_dir: common::TempDir::new(),
            cql_port: port(0),
            storage_port: port(1),
            jmx_port: port(2),
        };
        drop(ports);
        match node.script_command("start") {
            Ok(_) => Some(node),
            Err(output) => {
                let how = "it needs Java 17 and the Cassandra jars: run scripts/install-deps.sh cassandra and scripts/cassandra.sh fetch (or make test)";
                assert!(
                    std::env::var_os("CI").is_none(),
                    "cannot start a Cassandra node for this test ({how}):\n{output}"
                );
                eprintln!("not run: cannot start a Cassandra node ({how}):\n{output}");
                None
            }
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.cql_port)
    }

    /// Runs `scripts/cassandra.sh ACTION` on this node; its output, as an error when
    /// it failed.
    fn script_command(&self, action: &str) -> Result<String, String> {
        let output = Command::new("bash")
            .arg(&self.script)
            .arg(action)
            .env("CASSANDRA_RUN_DIR", &self.run_dir.path)
            .env("CQL_PORT", self.cql_port.to_string())
            .env("STORAGE_PORT", self.storage_port.to_string())
            .env("JMX_PORT", self.jmx_port.to_string())
            .output()
            .map_err(|error| format!("cannot run {}: {error}", self.script.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    fn stop(&self) {
        self.script_command("stop")
            .unwrap_or_else(|output| panic!("cannot stop the Cassandra node:\n{output}"));
    }

    fn restart(&self) {
        self.script_command("start")
            .unwrap_or_else(|output| panic!("cannot start the Cassandra node again:\n{output}"));
    }

    /// Every event row of `keyspace`, and its plays.
    fn stored_events(&self, keyspace: &str) -> StoredEvents {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let session = scylla::client::session_builder::SessionBuilder::new()
                .known_node(self.address())
                .build()
                .await
                .unwrap();
            let events = session
                .query_unpaged(
                    format!("SELECT id, kind FROM {keyspace}.events_by_station_day"),
                    &[],
                )
                .await
                .unwrap()
                .into_rows_result()
                .unwrap();
            let mut rows_by_id = BTreeMap::new();
            let mut track_started = 0;
            for row in events.rows::<(CqlTimeuuid, String)>().unwrap() {
                let (id, kind) = row.unwrap();
                *rows_by_id.entry(id.to_string()).or_insert(0) += 1;
                track_started += u64::from(kind == "track_started");
            }
            let plays = session
                .query_unpaged(
                    format!("SELECT play_id FROM {keyspace}.plays_by_station_day"),
                    &[],
                )
                .await
                .unwrap()
                .into_rows_result()
                .unwrap()
                .rows::<(CqlTimeuuid,)>()
                .unwrap()
                .count() as u64;
            StoredEvents {
                rows_by_id,
                track_started,
                plays,
            }
        })
    }
}

impl Drop for CassandraNode {
    fn drop(&mut self) {
        let _ = self.script_command("stop");
    }
}

/// Creates the event tables in a keyspace of this test's own.
fn migrate(node: &CassandraNode) -> String {
    let keyspace = format!("t_faults_{}", std::process::id());
    let mut options = ScyllaOptions::new(vec![node.address()], &keyspace);
    options.connect_timeout = Duration::from_secs(10);
    options.request_timeout = Duration::from_secs(20);
    ScyllaStore::migrate(
        options,
        SchemaOptions {
            replication: Replication::Simple { factor: 1 },
            ttls: TableTtls {
                events_days: 400,
                plays_days: 800,
                sessions_days: 400,
                totals_days: 3650,
            },
            compaction_window_days: 1,
        },
    )
    .unwrap();
    keyspace
}

#[test]
fn every_event_emitted_through_a_cluster_outage_and_an_engine_kill_is_stored_once() {
    let Some(node) = CassandraNode::start_new() else {
        return;
    };
    let keyspace = migrate(&node);
    let files = EventFiles::new();
    let config = files.config(
        6.0,
        &format!(
            "backend = \"scylla\"\n\n[events.scylla]\nknown_nodes = [\"{}\"]\nkeyspace = \"{keyspace}\"\n\
             replication_factor = 1\nconsistency = \"one\"\nconnect_timeout_ms = 5000\nrequest_timeout_ms = 5000",
            node.address()
        ),
    );
    let engine = common::Engine::start(&config);
    engine.wait_ready();
    wait_for(
        "the first events stored",
        Duration::from_secs(60),
        &engine,
        || station_metric(&engine, "sonicforge_events_written_total") > 0.0,
    );
    let churn = ListenerChurn::start(&engine.addr, CYCLES_PER_SECOND);
    std::thread::sleep(Duration::from_secs(2));

    // The node goes away for 30 s while listeners come and go.
    let outage_start = unix_ms_now();
    let back_at = Instant::now() + OUTAGE;
    node.stop();
    std::thread::sleep(back_at.saturating_duration_since(Instant::now()));
    let spooled = station_metric(&engine, "sonicforge_event_spool_events");
    let outage_end = unix_ms_now();
    node.restart();
    assert!(
        spooled > 0.0,
        "no event went to the spool during the outage; engine log:\n{}",
        engine.log_text()
    );
    wait_for(
        "the spool to drain",
        Duration::from_secs(120),
        &engine,
        || {
            station_metric(&engine, "sonicforge_event_spool_events") == 0.0
                && station_metric(&engine, "sonicforge_event_spool_replayed_total") > 0.0
        },
    );
    let during_outage = files.emitted_between(outage_start, outage_end);
    let rate = during_outage as f64 / ((outage_end - outage_start) as f64 / 1000.0);
    eprintln!(
        "outage of {} ms: {during_outage} events emitted ({rate:.1}/s), {spooled} in the spool at its end",
        outage_end - outage_start
    );
    assert!(
        rate >= MIN_EVENTS_PER_SECOND,
        "only {rate:.1} events/s were emitted during the outage"
    );

    // Away again; the engine is killed with the events of the second outage spooled.
    node.stop();
    std::thread::sleep(Duration::from_secs(4));
    churn.stop();
    wait_until_everything_emitted_is_stored_or_spooled(&engine, &files, || {
        station_metric(&engine, "sonicforge_events_written_total")
    });
    assert_eq!(
        station_metric(&engine, "sonicforge_events_dropped_total"),
        0.0
    );
    let spooled = station_metric(&engine, "sonicforge_event_spool_events");
    eprintln!(
        "killed with {spooled} events in the spool, {} emitted",
        files.emitted().len()
    );
    // SIGKILL: no flush, no shutdown.
    drop(engine);
    node.restart();

    let log = restart_and_replay_spool(&config, spooled, Duration::from_secs(120));
    assert_every_emitted_event_stored_once(&files, &node.stored_events(&keyspace), &log);
}
