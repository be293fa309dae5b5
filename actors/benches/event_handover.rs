//! What a producer pays to hand a play event to the event writer: the latency of
//! each [`EventQueue::emit`] call, as a distribution (p50, p99, p99.9, max), while a
//! consumer thread drains the queue as the writer does.
//!
//! Two cases:
//! - `emit`: the hand-over alone, the event already made;
//! - `new_and_emit`: making the event (its time-based id, its station name) and
//!   handing it over, what `Station::emit` costs its caller.
//!
//! Every call is timed on its own with `Instant::now()`; the timer's own cost is
//! measured and printed too. Events are emitted in rounds of 4096 (made before the
//! round), and the producer waits between rounds until the queue is drained, so the
//! queue never fills and no event is dropped.
//!
//! Run: `cargo bench -p sonicforge-actors --bench event_handover`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sonicforge_actors::metrics::Metrics;
use sonicforge_actors::station::EventQueue;
use sonicforge_engine::events::{EventKind, PlayEvent};

const ROUND: usize = 4096;
const ROUNDS: usize = 250;

fn kind(i: usize) -> EventKind {
    EventKind::Skip {
        track_id: format!("track-{i}"),
    }
}

/// Nanoseconds at `quantile` of sorted samples.
fn quantile(sorted: &[u64], quantile: f64) -> u64 {
    let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<u64>) {
    samples.sort_unstable();
    println!(
        "{name:<14} n={:>8}  p50 {:>6} ns  p90 {:>6} ns  p99 {:>6} ns  p99.9 {:>7} ns  max {:>9} ns",
        samples.len(),
        quantile(&samples, 0.50),
        quantile(&samples, 0.90),
        quantile(&samples, 0.99),
        quantile(&samples, 0.999),
        samples.last().copied().unwrap_or(0),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a test run (`cargo test --benches`) passes nothing.
    let rounds = if std::env::args().any(|arg| arg == "--bench") {
        ROUNDS
    } else {
        2
    };
    let metrics = Metrics::new();
    let (queue, receiver) = EventQueue::new(
        metrics.events_emitted.with_label_values(&["bench"]),
        metrics.events_dropped.with_label_values(&["bench"]),
    );
    let drained = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let drained = Arc::clone(&drained);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                while let Ok(event) = receiver.try_recv() {
                    drop(black_box(event));
                    drained.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut emitted = 0u64;
    let wait_for_drain = |emitted: u64| {
        while drained.load(Ordering::Relaxed) < emitted {
            std::thread::sleep(Duration::from_millis(1));
        }
    };

    let mut timer = Vec::with_capacity(ROUND * rounds);
    for _ in 0..ROUND * rounds {
        let start = Instant::now();
        timer.push(start.elapsed().as_nanos() as u64);
    }

    let mut emit = Vec::with_capacity(ROUND * rounds);
    for _ in 0..rounds {
        let events: Vec<PlayEvent> = (0..ROUND)
            .map(|i| PlayEvent::new("bench", kind(i)))
            .collect();
        for event in events {
            let start = Instant::now();
            queue.emit(event);
            emit.push(start.elapsed().as_nanos() as u64);
        }
        emitted += ROUND as u64;
        wait_for_drain(emitted);
    }

    let mut new_and_emit = Vec::with_capacity(ROUND * rounds);
    for _ in 0..rounds {
        let kinds: Vec<EventKind> = (0..ROUND).map(kind).collect();
        for kind in kinds {
            let start = Instant::now();
            queue.emit(PlayEvent::new("bench", kind));
            new_and_emit.push(start.elapsed().as_nanos() as u64);
        }
        emitted += ROUND as u64;
        wait_for_drain(emitted);
    }

    stop.store(true, Ordering::Relaxed);
    let _ = consumer.join();
    let dropped = metrics.events_dropped.with_label_values(&["bench"]).get();
    report("timer", timer);
    report("emit", emit);
    report("new_and_emit", new_and_emit);
    println!("dropped {dropped}");
}
