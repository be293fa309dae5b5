//! Cost of storing play events: one `write_batch` of 256 new events into a
//! SQLite file in a temporary directory (WAL mode, synchronous=NORMAL).
//!
//! Each iteration writes events it has not written before (new tracks and
//! sessions too), so that every row is really inserted rather than ignored as a
//! duplicate. Ends carry the ids of their starts, as the engine's do. Throughput
//! is reported in events per second.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sonicforge_engine::events::{
    ClientHash, EndReason, EventId, EventKind, EventSink, MasteringStats, PlayEvent, SqliteSink,
    TrackSource, Transport,
};

const BATCH: usize = 256;

/// A batch that looks like a busy station: mostly listeners coming and going,
/// with tracks starting and ending.
fn batch() -> Vec<PlayEvent> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = NEXT.fetch_add(BATCH as u64, Ordering::Relaxed);
    let mut play = None;
    let mut joined = None;
    (0..BATCH)
        .map(|i| {
            let n = base + i as u64;
            let id = EventId::now();
            let track_id = format!("track-{}", n / 8);
            let client_hash = ClientHash::from_address(
                std::net::Ipv4Addr::new(192, 0, 2, (n % 256) as u8).into(),
                b"bench",
            );
            let kind = match i % 8 {
                0 => {
                    play = Some(id);
                    EventKind::TrackStarted {
                        track_id,
                        title: "Midnight Static".into(),
                        source: TrackSource::Prompt("lofi chill 80 bpm A minor".into()),
                        generator: "procedural".into(),
                        duration_ms: 180_000,
                        mastering: Some(MasteringStats {
                            input_lufs: Some(-17.5),
                            output_lufs: Some(-14.0),
                            true_peak_dbtp: Some(-1.0),
                            eq_range_db: Some(2.5),
                            seconds: Some(0.3),
                            backend: Some("cpu".into()),
                        }),
                    }
                }
                7 => EventKind::TrackEnded {
                    track_id,
                    played_ms: 180_000,
                    reason: EndReason::Finished,
                    play_id: play,
                    listener_ms: 3_600_000,
                },
                odd if odd % 2 == 1 => {
                    joined = Some(id);
                    EventKind::ListenerJoined {
                        session_id: format!("session-{n}"),
                        transport: Transport::Websocket,
                        rendition_kbps: 96,
                        client_hash,
                        user_agent_family: "firefox".into(),
                    }
                }
                _ => EventKind::ListenerLeft {
                    session_id: format!("session-{}", n - 1),
                    transport: Transport::Websocket,
                    rendition_kbps: 96,
                    listened_ms: 600_000,
                    disconnect_reason: "client closed".into(),
                    joined_id: joined,
                    client_hash: Some(client_hash),
                },
            };
            PlayEvent::with_id(id, "bench", kind)
        })
        .collect()
}

fn write_batch_of_256(c: &mut Criterion) {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            println!("no temporary directory: {error}");
            return;
        }
    };
    let mut sink = match SqliteSink::open(dir.path().join("events.db")) {
        Ok(sink) => sink,
        Err(error) => {
            println!("cannot open the event database: {error}");
            return;
        }
    };
    let mut group = c.benchmark_group("events_sqlite");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("write_batch_256", |b| {
        b.iter_batched(
            batch,
            |events| sink.write_batch(black_box(&events)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, write_batch_of_256);
criterion_main!(benches);
