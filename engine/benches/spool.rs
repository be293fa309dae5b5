//! The play-event spool: how fast events go in while the store is away, and how
//! fast they come back out when it returns.
//!
//! - `spool/append_256`: one [`Spool::append`] of 256 events, synced to disk (the
//!   durability point of every append).
//! - `spool/replay_4096_read`: peeking and committing 4096 spooled events in
//!   batches of 1024, as the writer does, without storing them.
//! - `spool/replay_4096_into_sqlite`: the same replay, each batch stored in a
//!   SQLite file (WAL mode, synchronous=NORMAL) before its commit: the replay rate
//!   of the embedded store.
//!
//! Every iteration appends or replays events not seen before, so inserts are real.
//! Throughput is reported in events per second.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sonicforge_engine::events::{
    ClientHash, EventKind, EventSink, PlayEvent, Spool, SpoolOptions, SqliteSink, Transport,
};

const APPEND_BATCH: usize = 256;
const REPLAY_EVENTS: usize = 4096;
/// The event writer's batch.
const REPLAY_BATCH: usize = 1024;

/// Listeners joining and leaving: the events a busy station spools most.
fn events(count: usize) -> Vec<PlayEvent> {
    (0..count)
        .map(|i| {
            let kind = if i % 2 == 0 {
                EventKind::ListenerJoined {
                    session_id: format!("session-{i}"),
                    transport: Transport::Websocket,
                    rendition_kbps: 96,
                    client_hash: ClientHash::from_address(
                        std::net::Ipv4Addr::new(192, 0, 2, (i % 256) as u8).into(),
                        b"bench",
                    ),
                    user_agent_family: "firefox".into(),
                }
            } else {
                EventKind::ListenerLeft {
                    session_id: format!("session-{}", i - 1),
                    transport: Transport::Websocket,
                    rendition_kbps: 96,
                    listened_ms: 600_000,
                    disconnect_reason: "client_closed".into(),
                    joined_id: None,
                    client_hash: None,
                }
            };
            PlayEvent::new("bench", kind)
        })
        .collect()
}

fn open_spool(dir: &Path) -> Option<Spool> {
    match Spool::open(dir.join("spool"), SpoolOptions::default()) {
        Ok(opened) => Some(opened.spool),
        Err(error) => {
            println!("cannot open the spool: {error}");
            None
        }
    }
}

/// Replays everything in `spool`, storing each batch in `sink` when there is one.
fn replay(spool: &mut Spool, mut sink: Option<&mut SqliteSink>) {
    while !spool.is_empty() {
        let batch = match spool.peek(REPLAY_BATCH) {
            Ok(batch) => batch,
            Err(error) => {
                println!("cannot peek: {error}");
                return;
            }
        };
        if let Some(sink) = sink.as_deref_mut()
            && let Err(error) = sink.write_batch(black_box(&batch))
        {
            println!("cannot store a batch: {error}");
            return;
        }
        if let Err(error) = spool.commit(batch.len()) {
            println!("cannot commit: {error}");
            return;
        }
    }
}

fn spool_benches(c: &mut Criterion) {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            println!("no temporary directory: {error}");
            return;
        }
    };
    let Some(mut spool) = open_spool(dir.path()) else {
        return;
    };
    let mut sink = match SqliteSink::open(dir.path().join("events.db")) {
        Ok(sink) => sink,
        Err(error) => {
            println!("cannot open the event database: {error}");
            return;
        }
    };
    let mut group = c.benchmark_group("spool");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));

    group.throughput(Throughput::Elements(APPEND_BATCH as u64));
    group.bench_function("append_256", |b| {
        b.iter_batched(
            || events(APPEND_BATCH),
            |batch| {
                if let Err(error) = spool.append(black_box(&batch)) {
                    println!("cannot append: {error}");
                }
                // Keeps the spool far from its bound; replay is measured below.
                if spool.size_bytes() > 64 * 1024 * 1024 {
                    replay(&mut spool, None);
                }
            },
            BatchSize::LargeInput,
        )
    });
    replay(&mut spool, None);

    group.throughput(Throughput::Elements(REPLAY_EVENTS as u64));
    group.sample_size(20);
    for (name, store) in [
        ("replay_4096_read", false),
        ("replay_4096_into_sqlite", true),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut measured = Duration::ZERO;
                for _ in 0..iterations {
                    for chunk in events(REPLAY_EVENTS).chunks(APPEND_BATCH) {
                        if let Err(error) = spool.append(chunk) {
                            println!("cannot append: {error}");
                        }
                    }
                    let start = Instant::now();
                    replay(&mut spool, store.then_some(&mut sink));
                    measured += start.elapsed();
                }
                measured
            })
        });
    }
    group.finish();
}

criterion_group!(benches, spool_benches);
criterion_main!(benches);
