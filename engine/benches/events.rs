//! Cost of storing play events: one `write_batch` of 256 new events into a
//! SQLite file in a temporary directory (WAL mode, synchronous=NORMAL).
//!
//! Each iteration writes events it has not written before, so that every row
//! is really inserted rather than ignored as a duplicate. Throughput is
//! reported in events per second.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sonicforge_engine::events::{
    ClientHash, EndReason, EventKind, EventSink, MasteringStats, PlayEvent, SqliteSink,
    TrackSource, Transport,
};

const BATCH: usize = 256;

/// A batch that looks like a busy station: mostly listeners coming and going,
/// with tracks starting and ending.
fn batch() -> Vec<PlayEvent> {
    (0..BATCH)
        .map(|i| {
            let track_id = format!("track-{}", i / 8);
            let kind = match i % 8 {
                0 => EventKind::TrackStarted {
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
                },
                7 => EventKind::TrackEnded {
                    track_id,
                    played_ms: 180_000,
                    reason: EndReason::Finished,
                    play_id: None,
                    listener_ms: 3_600_000,
                },
                n if n % 2 == 1 => EventKind::ListenerJoined {
                    session_id: format!("session-{i}"),
                    transport: Transport::Websocket,
                    rendition_kbps: 96,
                    client_hash: ClientHash::from_address(
                        std::net::Ipv4Addr::new(192, 0, 2, (i % 256) as u8).into(),
                        b"bench",
                    ),
                    user_agent_family: "firefox".into(),
                },
                _ => EventKind::ListenerLeft {
                    session_id: format!("session-{}", i - 1),
                    transport: Transport::Http,
                    rendition_kbps: 64,
                    listened_ms: 600_000,
                    disconnect_reason: "client closed".into(),
                    joined_id: None,
                    client_hash: None,
                },
            };
            PlayEvent::new("bench", kind)
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
