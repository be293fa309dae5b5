//! Speed of the mastering chain on the CPU backend: each stage and the whole chain
//! on one 3-minute stereo track of the corpus (the dull one, mastered toward the
//! corpus reference). Stages: analysis (mid/side spectra and input loudness), EQ design,
//! EQ convolution (mid and side), loudness (measure after the EQ and apply the gain),
//! limiter (peak detection, loss estimate, gain and limiting with the output's true
//! peak), output loudness (the last measurement), and the whole chain.
//!
//! Throughput is in samples per channel, so criterion's "elem/s" divided by 48 000
//! is the real-time factor (the CPU path must reach 200x on one core; goal 500x).
//! Before the measurements, one timed run of each stage prints its real-time factor.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sonicforge_engine::frame::{CHANNELS, SAMPLE_RATE};
use sonicforge_engine::master::analysis::{analyse, join_mid_side, split_mid_side};
use sonicforge_engine::master::corpus::{BENCH_LENGTH, CorpusTrack};
use sonicforge_engine::master::eq::{EqOptions, SpectralEq};
use sonicforge_engine::master::limiter::{LimiterOptions, Stereo, TruePeakLimiter};
use sonicforge_engine::master::loudness::{Measure, apply_gain_db, gain_to_target_db, measure};
use sonicforge_engine::master::{
    CpuKernels, EqTarget, Mastering, MasteringOptions, ReferenceSpectrum,
};

/// Prints the real-time factor of one run of `stage`.
fn report(name: &str, frames: usize, mut stage: impl FnMut()) {
    let started = Instant::now();
    stage();
    let seconds = started.elapsed().as_secs_f64();
    let audio = frames as f64 / f64::from(SAMPLE_RATE);
    println!(
        "master/{name}: {audio:.0} s of audio in {seconds:.3} s, real-time factor {:.0}x",
        audio / seconds
    );
}

fn mastering_stages(c: &mut Criterion) {
    let track = match CorpusTrack::Dull.render(BENCH_LENGTH) {
        Ok(track) => track,
        Err(error) => panic!("the corpus track cannot be rendered: {error}"),
    };
    let reference = match CorpusTrack::Reference.render(BENCH_LENGTH) {
        Ok(track) => track,
        Err(error) => panic!("the corpus reference cannot be rendered: {error}"),
    };
    let frames = track.len() / CHANNELS;
    let mut kernels = CpuKernels::new();
    let target = match ReferenceSpectrum::analyse(&mut kernels, &reference) {
        Ok(spectrum) => EqTarget::Reference(spectrum),
        Err(error) => panic!("the reference cannot be analysed: {error}"),
    };

    // The intermediate signals each stage starts from.
    let analysis = analyse(&mut kernels, &track, Measure::INTEGRATED).ok();
    let Some(analysis) = analysis else {
        panic!("the track cannot be analysed")
    };
    let mut eq = SpectralEq::new(EqOptions::default());
    let Ok(filters) = eq.design(&analysis.mid_spectrum, &analysis.side_spectrum, &target) else {
        panic!("the EQ cannot be designed")
    };
    let (mid, side) = split_mid_side(&track);
    let (mut eq_mid, mut eq_side) = (mid.clone(), side.clone());
    if let Err(error) = SpectralEq::apply(&mut kernels, &filters, &mut eq_mid, &mut eq_side) {
        panic!("the EQ cannot be applied: {error}");
    }
    let mut equalised = vec![0.0f32; track.len()];
    join_mid_side(&eq_mid, &eq_side, &mut equalised);
    let after_eq = measure(&equalised, Measure::INTEGRATED).map_or(-14.0, |l| l.integrated_lufs);
    let gain = 10f32.powf(gain_to_target_db(after_eq, -14.0) as f32 / 20.0);
    let limiter = TruePeakLimiter::new(LimiterOptions::default());
    // The limiter as the chain runs it: peaks once, the loss estimate, then the gain and limiting.
    let limit = |input: &[f32]| {
        let input = Stereo::Interleaved(input);
        let peaks = limiter.detect(input, limiter.threshold() / gain / 1.2);
        let loss = limiter.estimated_loss_db(input, &peaks, gain);
        limiter.apply(input, &peaks, gain * 10f32.powf(loss as f32 / 20.0))
    };
    let limited = limit(&equalised).samples;
    let options = MasteringOptions {
        eq_target: target.clone(),
        ..MasteringOptions::default()
    };
    let mut mastering = Mastering::new(Box::new(CpuKernels::new()), options);

    report("analysis", frames, || {
        black_box(analyse(&mut kernels, &track, Measure::INTEGRATED).ok());
    });
    report("eq_design", frames, || {
        black_box(
            eq.design(&analysis.mid_spectrum, &analysis.side_spectrum, &target)
                .ok(),
        );
    });
    report("eq_convolution", frames, || {
        let (mut m, mut s) = (mid.clone(), side.clone());
        black_box(SpectralEq::apply(&mut kernels, &filters, &mut m, &mut s).ok());
    });
    report("loudness", frames, || {
        let mut samples = equalised.clone();
        let lufs = measure(&samples, Measure::INTEGRATED).map_or(-14.0, |l| l.integrated_lufs);
        apply_gain_db(&mut samples, gain_to_target_db(lufs, -14.0));
        black_box(samples);
    });
    report("limiter", frames, || {
        black_box(limit(&equalised));
    });
    report("output_loudness", frames, || {
        black_box(measure(&limited, Measure::INTEGRATED).ok());
    });
    report("chain", frames, || match mastering.master(&track) {
        Ok(mastered) => println!("master/chain stats: {:?}", mastered.stats),
        Err(error) => println!("master/chain failed: {error}"),
    });

    let mut group = c.benchmark_group("master_3min");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(frames as u64));
    group.bench_function("analysis", |b| {
        b.iter(|| analyse(&mut kernels, black_box(&track), Measure::INTEGRATED).ok())
    });
    group.bench_function("eq_design", |b| {
        b.iter(|| {
            eq.design(
                black_box(&analysis.mid_spectrum),
                &analysis.side_spectrum,
                &target,
            )
            .ok()
        })
    });
    group.bench_function("eq_convolution", |b| {
        b.iter_batched(
            || (mid.clone(), side.clone()),
            |(mut m, mut s)| {
                SpectralEq::apply(&mut kernels, &filters, &mut m, &mut s).ok();
                (m, s)
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("loudness", |b| {
        b.iter_batched(
            || equalised.clone(),
            |mut samples| {
                let lufs =
                    measure(&samples, Measure::INTEGRATED).map_or(-14.0, |l| l.integrated_lufs);
                apply_gain_db(&mut samples, gain_to_target_db(lufs, -14.0));
                samples
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("limiter", |b| b.iter(|| limit(black_box(&equalised))));
    group.bench_function("output_loudness", |b| {
        b.iter(|| measure(black_box(&limited), Measure::INTEGRATED).ok())
    });
    group.bench_function("chain", |b| {
        b.iter(|| mastering.master(black_box(&track)).ok())
    });
    group.finish();
}

criterion_group!(benches, mastering_stages);
criterion_main!(benches);
