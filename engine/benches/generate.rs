//! Rendering speed of the procedural generator: one 3-minute track per genre.
//!
//! Throughput is reported in seconds of audio per second of rendering, which is
//! the real-time factor (the generator must reach 50x on one core).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sonicforge_engine::generate::{Generator, ProceduralGenerator, TrackRequest};

const TRACK_SECONDS: u64 = 180;

const PROMPTS: [&str; 5] = [
    "lofi chill 80 bpm A minor",
    "dark techno 128 bpm",
    "ambient calm 70 bpm C major",
    "house 124 bpm",
    "synthwave 100 bpm",
];

fn render_three_minutes(c: &mut Criterion) {
    let mut group = c.benchmark_group("generate_3min");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(12));
    group.throughput(Throughput::Elements(TRACK_SECONDS));
    let mut generator = ProceduralGenerator::default();
    for prompt in PROMPTS {
        let request = TrackRequest {
            prompt: prompt.to_string(),
            seed: 42,
            length: Some(Duration::from_secs(TRACK_SECONDS)),
        };
        let started = Instant::now();
        match generator.render(&request) {
            Ok(_) => {
                let seconds = started.elapsed().as_secs_f64();
                println!(
                    "{prompt}: {TRACK_SECONDS} s of audio in {seconds:.3} s, real-time factor {:.0}x",
                    TRACK_SECONDS as f64 / seconds
                );
            }
            Err(error) => println!("{prompt}: {error}"),
        }
        group.bench_function(prompt, |b| {
            b.iter(|| {
                generator
                    .render(black_box(&request))
                    .map(|track| track.frames())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, render_three_minutes);
criterion_main!(benches);
