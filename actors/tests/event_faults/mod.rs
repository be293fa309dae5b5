//! Shared by the play-event fault tests: the files an engine's events go to, a client
//! that makes listeners join and leave at a steady rate, and the check that every
//! emitted event was stored exactly once.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use sonicforge_engine::events::EventId;

use crate::common;

/// How long the store stays away in the outage tests.
pub const OUTAGE: Duration = Duration::from_secs(30);
/// Listener join-and-leave cycles per second the client drives: two events each.
pub const CYCLES_PER_SECOND: u32 = 40;
/// The least event rate an outage test must see while the store is away.
pub const MIN_EVENTS_PER_SECOND: f64 = 50.0;

/// The files of one engine's play events (spool, emitted-event log, SQLite file), kept
/// across engine restarts.
pub struct EventFiles {
    pub dir: common::TempDir,
}

impl EventFiles {
    pub fn new() -> Self {
        Self {
            dir: common::TempDir::new(),
        }
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path.join("events.db")
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.dir.path.join("spool")
    }

    pub fn emitted_log(&self) -> PathBuf {
        self.dir.path.join("emitted.log")
    }

    /// A one-station config whose tracks last `track_seconds`; its `[events]` table
    /// has the spool and the emitted-event log here, then `events_keys`.
    pub fn config(&self, track_seconds: f32, events_keys: &str) -> String {
        format!(
            r#"
[listeners]
behind_deadline_ms = 3000

[events]
spool_dir = "{}"
emitted_log = "{}"
{events_keys}

[[stations]]
id = "main"
name = "Test Main"
renditions_kbps = [64]
crossfade_ms = 1000
track_seconds = {track_seconds:.1}
upcoming_tracks = 2
seed = 7
playlist = ["lofi chill 80 bpm A minor", "dark techno 128 bpm"]
"#,
            self.spool_dir().display(),
            self.emitted_log().display(),
        )
    }

    /// The events of the emitted-event log, in order: (id, kind).
    pub fn emitted(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.emitted_log())
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let mut fields = line.split(' ');
                let id = fields.next().unwrap().to_string();
                let kind = fields.next().unwrap_or_default().to_string();
                (id, kind)
            })
            .collect()
    }

    /// Events of the emitted-event log that happened in `from..to` (Unix ms).
    pub fn emitted_between(&self, from: u64, to: u64) -> usize {
        self.emitted()
            .iter()
            .filter(|(id, _)| {
                let at = id.parse::<EventId>().unwrap().unix_ms();
                (from..to).contains(&at)
            })
            .count()
    }
}

/// What a store holds after the engine stopped.
pub struct StoredEvents {
    /// How many rows each event id has.
    pub rows_by_id: BTreeMap<String, u64>,
    /// Events of kind `track_started`.
    pub track_started: u64,
    /// Rows of plays (one per `track_started` event expected).
    pub plays: u64,
}

/// Every event of the emitted-event log is stored exactly once, nothing else is
/// stored, every play was derived once, and the engine dropped no event.
pub fn assert_every_emitted_event_stored_once(
    files: &EventFiles,
    stored: &StoredEvents,
    engine_logs: &str,
) {
    let emitted = files.emitted();
    let unique: BTreeSet<&String> = emitted.iter().map(|(id, _)| id).collect();
    assert_eq!(
        unique.len(),
        emitted.len(),
        "the emitted-event log names an event twice"
    );
    let doubled: Vec<_> = stored
        .rows_by_id
        .iter()
        .filter(|(_, rows)| **rows != 1)
        .collect();
    assert!(
        doubled.is_empty(),
        "events stored more than once: {doubled:?}"
    );
    let lost: Vec<_> = emitted
        .iter()
        .filter(|(id, _)| !stored.rows_by_id.contains_key(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} emitted events are not stored: {:?}\nengine logs:\n{engine_logs}",
        lost.len(),
        emitted.len(),
        &lost[..lost.len().min(20)]
    );
    let unexpected: Vec<_> = stored
        .rows_by_id
        .keys()
        .filter(|id| !unique.contains(id))
        .collect();
    assert!(
        unexpected.is_empty(),
        "stored events that were never emitted: {unexpected:?}"
    );
    assert_eq!(
        stored.plays, stored.track_started,
        "one play row per track_started event"
    );
    for line in ["play event dropped", "play events lost at shutdown"] {
        assert!(!engine_logs.contains(line), "{line}:\n{engine_logs}");
    }
}

/// Listeners joining and leaving over WebSockets at a steady rate, until stopped.
pub struct ListenerChurn {
    runtime: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
}

impl ListenerChurn {
    /// Starts `cycles_per_second` join-and-leave cycles a second on the engine at `addr`.
    pub fn start(addr: &str, cycles_per_second: u32) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let clients = 8;
        let period = Duration::from_secs_f64(f64::from(clients) / f64::from(cycles_per_second));
        let url = format!("ws://{addr}/stations/main/ws?bitrate=64");
        let tasks = (0..clients)
            .map(|_| {
                let stop = Arc::clone(&stop);
                let url = url.clone();
                runtime.spawn(async move {
                    let mut interval = tokio::time::interval(period);
                    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut cycles = 0;
                    while !stop.load(Ordering::Relaxed) {
                        interval.tick().await;
                        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await
                        else {
                            continue;
                        };
                        // The hello: the session has joined.
                        let _ = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
                        // Closes and goes: the session leaves when it reads the close.
                        let _ = socket.close(None).await;
                        drop(socket);
                        cycles += 1;
                    }
                    cycles
                })
            })
            .collect();
        Self {
            runtime,
            stop,
            tasks,
        }
    }

    /// Stops the clients; how many join-and-leave cycles they made.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut cycles = 0;
        for task in self.tasks {
            cycles += self.runtime.block_on(task).unwrap();
        }
        cycles
    }
}

/// Waits up to `timeout` for `condition`, polling.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    engine: &common::Engine,
    condition: impl Fn() -> bool,
) {
    let until = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}; engine log:\n{}",
            engine.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts the engine again after it was killed with `spooled` events in its spool,
/// waits up to `within` for the spool to be replayed, checks that nothing was dropped
/// and that the replay was logged, stops the engine cleanly and gives its log.
pub fn restart_and_replay_spool(config: &str, spooled: f64, within: Duration) -> String {
    let mut engine = common::Engine::start(config);
    wait_for("the spool replayed", within, &engine, || {
        station_metric(&engine, "sonicforge_event_spool_events") == 0.0
            && station_metric(&engine, "sonicforge_event_spool_replayed_total") >= spooled
    });
    assert_eq!(
        station_metric(&engine, "sonicforge_events_dropped_total"),
        0.0
    );
    let status = engine.terminate();
    assert!(status.success(), "{status}; log:\n{}", engine.log_text());
    let log = engine.log_text();
    assert!(
        log.contains("play events left in the spool by a previous run"),
        "{log}"
    );
    log
}

/// The value of one of station `main`'s metrics.
pub fn station_metric(engine: &common::Engine, name: &str) -> f64 {
    engine.metric(&format!("{name}{{station=\"main\"}}"))
}

/// Milliseconds since the Unix epoch now.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Waits until every event emitted so far is in the store or the spool, none in
/// memory or in the queue, with some in the spool: the engine is quiet (no listener,
/// no track change coming) and may be killed without losing what it took.
pub fn wait_until_everything_emitted_is_stored_or_spooled(
    engine: &common::Engine,
    files: &EventFiles,
    stored: impl Fn() -> f64,
) {
    wait_for(
        "every emitted event stored or spooled",
        Duration::from_secs(60),
        engine,
        || {
            let logged = files.emitted().len() as f64;
            let spooled = station_metric(engine, "sonicforge_event_spool_events");
            engine.metric("sonicforge_listeners{") == 0.0
                && station_metric(engine, "sonicforge_events_emitted_total") == logged
                && station_metric(engine, "sonicforge_events_pending") == 0.0
                && spooled > 0.0
                && stored() + spooled == logged
        },
    );
}
