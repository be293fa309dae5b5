//! Cost of the mixer per 20 ms frame, plain and during a crossfade.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use sonicforge_engine::frame::{CHANNELS, SAMPLE_RATE, SILENT_FRAME};
use sonicforge_engine::mix::{Mixer, MixerOptions, QueuedTrack, retired_queue, upcoming_queue};

fn track(epoch: u32, seconds: usize) -> QueuedTrack {
    let frames = seconds * SAMPLE_RATE as usize;
    let samples: Vec<f32> = (0..frames * CHANNELS)
        .map(|i| ((i as f32) * 0.001).sin() * 0.5)
        .collect();
    QueuedTrack {
        epoch,
        samples: samples.into(),
        crossfade_samples: None,
    }
}

fn mixer_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("mixer");
    group.bench_function("frame_plain", |b| {
        let (mut upcoming, consumer) = upcoming_queue(4);
        let (retired, mut retired_consumer) = retired_queue(8);
        let fallback: Arc<[f32]> = vec![0.0; 4 * 1920].into();
        let mut mixer = Mixer::new(MixerOptions::default(), consumer, retired, fallback);
        let long = track(1, 600);
        let mut epoch = 1;
        upcoming.push(long.clone()).ok();
        let mut frame = SILENT_FRAME;
        b.iter(|| {
            if mixer.queued_tracks() == 0 {
                epoch += 1;
                let mut next = long.clone();
                next.epoch = epoch;
                upcoming.push(next).ok();
            }
            while retired_consumer.pop().is_ok() {}
            black_box(mixer.render(black_box(&mut frame)));
        });
    });
    group.bench_function("frame_crossfading", |b| {
        let fallback: Arc<[f32]> = vec![0.0; 4 * 1920].into();
        let a = track(1, 10);
        let next = track(2, 10);
        let options = MixerOptions {
            crossfade_samples: 10 * SAMPLE_RATE,
            ..MixerOptions::default()
        };
        let mut frame = SILENT_FRAME;
        b.iter_batched_ref(
            || {
                let (mut upcoming, consumer) = upcoming_queue(4);
                let (retired, retired_consumer) = retired_queue(8);
                upcoming.push(a.clone()).ok();
                upcoming.push(next.clone()).ok();
                let mut mixer = Mixer::new(options, consumer, retired, Arc::clone(&fallback));
                // First frame starts the crossfade (the whole 10 s track is the fade).
                let mut first = SILENT_FRAME;
                mixer.render(&mut first);
                (mixer, upcoming, retired_consumer)
            },
            |(mixer, _, _)| {
                black_box(mixer.render(black_box(&mut frame)));
            },
            criterion::BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, mixer_frame);
criterion_main!(benches);
