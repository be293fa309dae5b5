//! `events`: writes play events through the engine's sinks at a target rate, several
//! batches in flight, and reports the sustained rate and the latency of each batch
//! write: into a CQL node (the ScyllaDB sink), or into a SQLite file with `--sqlite`.
//!
//! Each writer thread has its own sink, as each station's writer has in the engine: on
//! one shared store (one driver session) for CQL, or its own connection to the one
//! file for SQLite. A warm-up at the same rate comes first and is not counted: a
//! freshly started node compiles its hot paths while it runs and writes at less than
//! half its rate in its first half-minute. The events look like a busy
//! station's: listeners joining and leaving (each leave linked to its join), tracks
//! starting and ending (each end linked to its start).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use sonicforge_engine::events::{
    ClientHash, CqlConsistency, EndReason, EventId, EventKind, EventSink, PlayEvent, Replication,
    SchemaOptions, ScyllaOptions, ScyllaStore, SqliteOptions, SqliteSink, TableTtls, TrackSource,
    Transport,
};

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// CQL contact points, comma-separated host:port.
    #[arg(long, env = "SONICFORGE_CQL_NODES", default_value = "127.0.0.1:9042")]
    pub nodes: String,
    /// Keyspace to write into; a fresh one, migrated first and dropped after, when absent.
    #[arg(long)]
    pub keyspace: Option<String>,
    /// Target events per second over all writers.
    #[arg(long, default_value_t = 25_000)]
    pub rate: u64,
    /// Seconds to write for.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Events per batch (one `write_batch`).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Batches in flight at once: one writer thread each.
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    /// Stations the events belong to (writers take them in turn).
    #[arg(long, default_value_t = 4)]
    pub stations: usize,
    /// Distinct listeners (client hashes) the sessions are drawn from.
    #[arg(long, default_value_t = 5_000)]
    pub listeners: u32,
    /// Consistency of the writes: one, quorum or local_quorum.
    #[arg(long, default_value = "local_quorum")]
    pub consistency: String,
    /// Seconds of writing at the target rate before the measured part, not counted.
    #[arg(long, default_value_t = 30)]
    pub warm_up: u64,
    /// Write into this SQLite file (created when missing) instead of a CQL node.
    #[arg(long, value_name = "PATH")]
    pub sqlite: Option<std::path::PathBuf>,
}

/// Batch latencies above this (a minute) are recorded as a minute.
const MAX_LATENCY_US: u64 = 60_000_000;

/// What one writer measured.
struct WriterReport {
    events: u64,
    failed_batches: u64,
    latency_us: Histogram<u64>,
}

/// Where the writers write: one shared CQL store, or one SQLite file.
enum Target {
    Cql {
        store: ScyllaStore,
        keyspace: String,
    },
    Sqlite(PathBuf),
}

impl Target {
    fn open(args: &EventsArgs) -> anyhow::Result<Self> {
        if let Some(path) = &args.sqlite {
            // Made here once, so that writers opening it at once do not race to create it.
            SqliteSink::open(path)
                .with_context(|| format!("cannot open the SQLite file {}", path.display()))?;
            return Ok(Self::Sqlite(path.clone()));
        }
        let nodes: Vec<String> = args
            .nodes
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(str::to_string)
            .collect();
        let fresh = args.keyspace.is_none();
        let keyspace = args.keyspace.clone().unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos());
            format!("load_{}_{}", std::process::id(), nanos % 1_000_000_000)
        });
        let mut options = ScyllaOptions::new(nodes, keyspace.clone());
        options.consistency = match args.consistency.as_str() {
            "one" => CqlConsistency::One,
            "quorum" => CqlConsistency::Quorum,
            "local_quorum" => CqlConsistency::LocalQuorum,
            other => anyhow::bail!("--consistency {other}: use one, quorum or local_quorum"),
        };
        options.request_timeout = Duration::from_secs(10);
        if fresh {
            ScyllaStore::migrate(
                options.clone(),
                SchemaOptions {
                    replication: Replication::Simple { factor: 1 },
                    ttls: TableTtls {
                        events_days: 1,
                        plays_days: 1,
                        sessions_days: 1,
                        totals_days: 1,
                    },
                    compaction_window_days: 1,
                },
            )
            .context("cannot migrate the load keyspace")?;
            println!("made the keyspace {keyspace}; drop it after with DROP KEYSPACE {keyspace}");
        }
        let store = ScyllaStore::open(options).context("cannot open the event store")?;
        store.connect().context("cannot connect to the CQL node")?;
        Ok(Self::Cql { store, keyspace })
    }

    fn sink(&self) -> anyhow::Result<Box<dyn EventSink + Send>> {
        Ok(match self {
            Self::Cql { store, .. } => Box::new(store.sink()),
            Self::Sqlite(path) => Box::new(
                SqliteSink::open_with(
                    path,
                    SqliteOptions {
                        busy_timeout: SQLITE_BUSY_TIMEOUT,
                    },
                )
                .with_context(|| format!("cannot open the SQLite file {}", path.display()))?,
            ),
        })
    }

    fn describe(&self, nodes: &str) -> String {
        match self {
            Self::Cql { keyspace, .. } => format!("{keyspace} on {nodes}"),
            Self::Sqlite(path) => path.display().to_string(),
        }
    }
}

/// How long a SQLite writer waits for another's transaction; writers take turns.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The time line of a run: warm-up, then the measured part.
#[derive(Clone, Copy)]
struct Phases {
    measured_from: Instant,
    until: Instant,
}

pub fn run(args: &EventsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.batch > 0
            && args.in_flight > 0
            && args.stations > 0
            && args.rate > 0
            && args.seconds > 0,
        "--batch, --in-flight, --stations, --rate and --seconds must be at least 1"
    );
    let target = Target::open(args)?;
    let sinks = (0..args.in_flight)
        .map(|_| target.sink())
        .collect::<anyhow::Result<Vec<_>>>()?;

    let per_writer_rate = args.rate as f64 / args.in_flight as f64;
    let batch_interval = Duration::from_secs_f64(args.batch as f64 / per_writer_rate);
    println!(
        "writing {} events/s into {}: {} s warm-up, then {} s measured; {} writers, {} events per batch, one batch per {:.1} ms each",
        args.rate,
        target.describe(&args.nodes),
        args.warm_up,
        args.seconds,
        args.in_flight,
        args.batch,
        batch_interval.as_secs_f64() * 1000.0
    );
    let histograms = (0..args.in_flight)
        .map(|_| Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot make the latency histograms")?;
    let measured_from = Instant::now() + Duration::from_secs(args.warm_up);
    let phases = Phases {
        measured_from,
        until: measured_from + Duration::from_secs(args.seconds),
    };
    let reports: Vec<WriterReport> = std::thread::scope(|scope| {
        let handles: Vec<_> = histograms
            .into_iter()
            .zip(sinks)
            .enumerate()
            .map(|(writer, (histogram, mut sink))| {
                let station = format!("load-{}", writer % args.stations);
                let listeners = args.listeners.max(1);
                let batch = args.batch;
                scope.spawn(move || {
                    write_for(
                        sink.as_mut(),
                        histogram,
                        StationState::new(&station, writer, listeners),
                        (batch, batch_interval),
                        phases,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|handle| handle.join().ok())
            .collect()
    });
    let elapsed = measured_from.elapsed();

    let mut latency =
        Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3).context("histogram")?;
    let mut events = 0;
    let mut failed = 0;
    for report in &reports {
        events += report.events;
        failed += report.failed_batches;
        latency.add(&report.latency_us).context("histogram")?;
    }
    let rate = events as f64 / elapsed.as_secs_f64();
    println!("events written     {events} (measured part)");
    println!("failed batches     {failed}");
    println!("elapsed            {:.1} s", elapsed.as_secs_f64());
    println!(
        "sustained rate     {rate:.0} events/s (target {})",
        args.rate
    );
    println!(
        "batch write        p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} batches of {})",
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        latency.max() as f64 / 1000.0,
        latency.len(),
        args.batch
    );
    Ok(())
}

/// Writes a batch of `batch` events every `interval` until the run ends; only the
/// batches begun in the measured part are counted.
fn write_for(
    sink: &mut dyn EventSink,
    latency_us: Histogram<u64>,
    mut station_state: StationState,
    (batch, interval): (usize, Duration),
    phases: Phases,
) -> WriterReport {
    let mut report = WriterReport {
        events: 0,
        failed_batches: 0,
        latency_us,
    };
    let mut next = Instant::now();
    while Instant::now() < phases.until {
        let events = station_state.batch(batch);
        let begun = Instant::now();
        let outcome = sink.write_batch(&events);
        let took = begun.elapsed();
        if begun >= phases.measured_from {
            report
                .latency_us
                .saturating_record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            match &outcome {
                Ok(()) => report.events += events.len() as u64,
                Err(_) => report.failed_batches += 1,
            }
        }
        if let Err(error) = outcome {
            eprintln!("batch failed: {error}");
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            // Behind schedule: go on at once, without catching up in a burst.
            next = now;
        }
    }
    report
}

/// A station's state while events are made for it: the play on air and the open
/// sessions, so that every end is linked to its start.
struct StationState {
    station: String,
    writer: usize,
    listeners: u32,
    counter: u64,
    on_air: Option<(EventId, String)>,
    open: std::collections::VecDeque<(EventId, String, ClientHash)>,
}

impl StationState {
    fn new(station: &str, writer: usize, listeners: u32) -> Self {
        Self {
            station: station.to_string(),
            writer,
            listeners,
            counter: 0,
            on_air: None,
            open: std::collections::VecDeque::new(),
        }
    }

    fn event(&self, kind: EventKind) -> PlayEvent {
        PlayEvent::new(self.station.clone(), kind)
    }

    /// The next `size` events: a track change every 16 events, the rest listeners
    /// joining (while fewer than 200 are connected) and leaving.
    fn batch(&mut self, size: usize) -> Vec<PlayEvent> {
        let mut events = Vec::with_capacity(size);
        while events.len() < size {
            self.counter += 1;
            let n = self.counter;
            if n.is_multiple_of(16) {
                if let Some((play_id, track_id)) = self.on_air.take() {
                    events.push(self.event(EventKind::TrackEnded {
                        track_id,
                        played_ms: 180_000,
                        reason: EndReason::Finished,
                        play_id: Some(play_id),
                        listener_ms: 36_000_000,
                    }));
                }
                let track_id = format!("w{}-track-{}", self.writer, n % 97);
                let started = self.event(EventKind::TrackStarted {
                    track_id: track_id.clone(),
                    title: "Midnight Static".into(),
                    source: TrackSource::Prompt("lofi chill 80 bpm A minor".into()),
                    generator: "procedural".into(),
                    duration_ms: 180_000,
                    mastering: None,
                });
                self.on_air = Some((started.id, track_id));
                events.push(started);
            } else if self.open.len() < 200 && (n.is_multiple_of(2) || self.open.is_empty()) {
                let who = u32::try_from(n % u64::from(self.listeners)).unwrap_or(0);
                let [a, b, c, d] = (who + (self.writer as u32) * 7919).to_be_bytes();
                let address = Ipv4Addr::new(10 ^ a, b, c, d);
                let client_hash = ClientHash::from_address(address.into(), b"load");
                let session_id = n.to_string();
                let joined = self.event(EventKind::ListenerJoined {
                    session_id: session_id.clone(),
                    transport: Transport::Websocket,
                    rendition_kbps: 128,
                    client_hash: client_hash.clone(),
                    user_agent_family: "firefox".into(),
                });
                self.open.push_back((joined.id, session_id, client_hash));
                events.push(joined);
            } else if let Some((joined_id, session_id, client_hash)) = self.open.pop_front() {
                events.push(self.event(EventKind::ListenerLeft {
                    session_id,
                    transport: Transport::Websocket,
                    rendition_kbps: 128,
                    listened_ms: 600_000,
                    disconnect_reason: "client_closed".into(),
                    joined_id: Some(joined_id),
                    client_hash: Some(client_hash),
                }));
            }
        }
        events
    }
}
