//! The spectral kernels on a batch of tracks, GPU and CPU side by side: long-term
//! spectra and a 4095-tap FIR on mid and side signals. Throughput is in samples per
//! second (divide by 48,000 for the real-time factor of one mono signal).
//!
//! The batch is `SONICFORGE_BENCH_TRACKS` tracks (default 8) of
//! `SONICFORGE_BENCH_SECONDS` seconds (default 180), each a mid and a side signal. The
//! adapter is printed first; without one only the CPU runs. On a software driver
//! (lavapipe) the GPU path is slower than the CPU: GPU figures mean something only on
//! a real GPU.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sonicforge_engine::master::cpu::CpuKernels;
use sonicforge_engine::master::gpu::{GpuKernels, find_adapter};
use sonicforge_engine::master::kernels::{ConvolveJob, SpectralKernels};

const TAPS: usize = 4095;

fn env_or(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A deterministic music-like signal (tones and noise bursts), peak below 1.
fn signal(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|n| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let t = n as f32 / 48_000.0;
            let beat = (t * 2.0).fract();
            0.4 * (2.0 * std::f32::consts::PI * 55.0 * t).sin()
                + 0.2 * (2.0 * std::f32::consts::PI * (261.6 + seed as f32) * t).sin()
                + noise * 0.5 * (-beat * 30.0).exp()
        })
        .collect()
}

/// A linear-phase FIR: a windowed-sinc low-pass at 8 kHz plus half a centred impulse.
fn fir() -> Vec<f32> {
    let c = (TAPS - 1) as f64 / 2.0;
    (0..TAPS)
        .map(|k| {
            let x = k as f64 - c;
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * k as f64 / (TAPS - 1) as f64).cos();
            let sinc = if x == 0.0 {
                1.0 / 3.0
            } else {
                (std::f64::consts::PI * x / 3.0).sin() / (std::f64::consts::PI * x)
            };
            let delta = if x == 0.0 { 0.5 } else { 0.0 };
            (w * sinc + delta) as f32
        })
        .collect()
}

fn kernels(c: &mut Criterion) {
    let tracks = env_or("SONICFORGE_BENCH_TRACKS", 8.0) as usize;
    let seconds = env_or("SONICFORGE_BENCH_SECONDS", 180.0);
    let len = (seconds * 48_000.0) as usize;
    let signals: Vec<Vec<f32>> = (0..2 * tracks).map(|i| signal(len, i as u64)).collect();
    let refs: Vec<&[f32]> = signals.iter().map(|s| s.as_slice()).collect();
    let taps = fir();
    let samples = (signals.len() * len) as u64;

    let mut backends: Vec<Box<dyn SpectralKernels>> = Vec::new();
    match find_adapter().and_then(|adapter| Ok((adapter, GpuKernels::new()?))) {
        Ok((adapter, gpu)) => {
            println!("adapter: {adapter}");
            backends.push(Box::new(gpu));
        }
        Err(e) => println!("no GPU adapter, CPU only: {e}"),
    }
    backends.push(Box::new(CpuKernels::new()));
    println!(
        "batch: {tracks} tracks x {seconds} s, mid and side: {} signals, {samples} samples",
        signals.len()
    );

    let mut group = c.benchmark_group("master_gpu");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(samples));
    let mut outputs: Vec<Vec<f32>> = signals.iter().map(|s| vec![0.0; s.len()]).collect();
    for backend in &mut backends {
        let name = backend.name();
        group.bench_function(format!("spectra/{name}"), |b| {
            b.iter(|| black_box(backend.average_power_spectra(black_box(&refs))).ok());
        });
        group.bench_function(format!("convolve_{TAPS}/{name}"), |b| {
            b.iter(|| {
                let mut jobs: Vec<ConvolveJob<'_>> = signals
                    .iter()
                    .zip(outputs.iter_mut())
                    .map(|(input, output)| ConvolveJob {
                        input,
                        taps: &taps,
                        output,
                    })
                    .collect();
                black_box(backend.convolve(&mut jobs)).ok()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
