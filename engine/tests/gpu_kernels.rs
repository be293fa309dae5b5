//! The GPU spectral kernels against direct formulas (a naive DFT power spectrum, a
//! direct-sum convolution, both in f64) on whatever adapter is present (Mesa's
//! lavapipe in CI).
//!
//! Without an adapter these tests print why and pass, except under `CI`, where they
//! fail: install the driver with `scripts/install-deps.sh test`.

use sonicforge_engine::master::cpu::CpuKernels;
use sonicforge_engine::master::gpu::{GpuKernels, GpuOptions, find_adapter};
use sonicforge_engine::master::kernels::{
    ANALYSIS_BINS, ANALYSIS_FFT, ANALYSIS_HOP, ConvolveJob, KernelError, MAX_FIR_TAPS,
    SpectralKernels,
};

/// GPU against the CPU reference (both f32 FFTs): relative error per spectrum bin above
/// `SPECTRUM_FLOOR`, and per-sample convolution error relative to the input's peak.
const CPU_SPECTRUM_REL_TOL: f64 = 1e-4;
const CPU_CONVOLVE_TOL: f64 = 1e-5;

/// Spectrum tolerance: relative error per bin, for bins whose reference power is
/// above `SPECTRUM_FLOOR` times the signal's strongest bin (-80 dB).
const SPECTRUM_REL_TOL: f64 = 1e-3;
const SPECTRUM_FLOOR: f64 = 1e-8;
/// Spectrum tolerance for every bin: absolute error relative to the strongest bin.
const SPECTRUM_ABS_TOL: f64 = 1e-6;
/// Convolution tolerance: per-sample absolute error relative to the input's peak
/// times the FIR's gain bound `Σ|taps|` (the largest output the FIR can produce).
const CONVOLVE_TOL: f64 = 2e-6;

/// The kernels on the adapter, or `None` (with the reason printed) when there is no
/// adapter and `CI` is not set. Any other failure (a shader, the device) fails.
fn gpu_with(options: GpuOptions) -> Option<GpuKernels> {
    match find_adapter() {
        Ok(adapter) => {
            eprintln!("adapter: {adapter}");
            match GpuKernels::with_options(options) {
                Ok(gpu) => Some(gpu),
                Err(e) => panic!("the adapter exists but the kernels failed: {e}"),
            }
        }
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!(
                "CI is set and the GPU kernels have no adapter (run scripts/install-deps.sh test): {e}"
            )
        }
        Err(e) => {
            eprintln!(
                "skipped: no GPU adapter ({e}); install one with scripts/install-deps.sh test"
            );
            None
        }
    }
}

fn gpu() -> Option<GpuKernels> {
    gpu_with(GpuOptions::default())
}

/// A deterministic test signal: two sines and white noise, peak about `gain`.
fn signal(len: usize, seed: u64, gain: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|n| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let t = n as f32 / 48_000.0;
            gain * (0.5 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
                + 0.2 * (2.0 * std::f32::consts::PI * 6_000.0 * t).sin()
                + 0.3 * noise)
        })
        .collect()
}

/// Naive DFT power spectrum per the contract, in f64.
fn reference_spectrum(x: &[f32]) -> Vec<f64> {
    let n = ANALYSIS_FFT;
    let frames = if x.is_empty() {
        0
    } else if x.len() <= n {
        1
    } else {
        1 + (x.len() - n).div_ceil(ANALYSIS_HOP)
    };
    let cos: Vec<f64> = (0..n)
        .map(|i| (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
        .collect();
    let sin: Vec<f64> = (0..n)
        .map(|i| (2.0 * std::f64::consts::PI * i as f64 / n as f64).sin())
        .collect();
    let mut power = vec![0.0; ANALYSIS_BINS];
    for f in 0..frames {
        let frame: Vec<f64> = (0..n)
            .map(|i| {
                x.get(f * ANALYSIS_HOP + i).map_or(0.0, |&s| f64::from(s)) * (0.5 - 0.5 * cos[i])
            })
            .collect();
        for (k, p) in power.iter_mut().enumerate() {
            let (mut re, mut im) = (0.0, 0.0);
            for (i, &v) in frame.iter().enumerate() {
                let idx = (k * i) % n;
                re += v * cos[idx];
                im -= v * sin[idx];
            }
            *p += re * re + im * im;
        }
    }
    power.iter().map(|p| p / frames.max(1) as f64).collect()
}

/// Direct-sum convolution per the contract, in f64.
fn reference_convolution(x: &[f32], taps: &[f32]) -> Vec<f64> {
    let c = (taps.len() - 1) / 2;
    (0..x.len())
        .map(|n| {
            taps.iter()
                .enumerate()
                .filter_map(|(k, &h)| {
                    (n + k)
                        .checked_sub(c)
                        .and_then(|i| x.get(i))
                        .map(|&s| f64::from(h) * f64::from(s))
                })
                .sum()
        })
        .collect()
}

/// Worst (relative above the floor, absolute relative to the peak) errors of a spectrum.
fn spectrum_errors(got: &[f32], want: &[f64]) -> (f64, f64) {
    let peak = want.iter().cloned().fold(0.0, f64::max);
    let mut rel: f64 = 0.0;
    let mut abs: f64 = 0.0;
    for (&g, &w) in got.iter().zip(want) {
        let e = (f64::from(g) - w).abs();
        if peak > 0.0 {
            abs = abs.max(e / peak);
        }
        if w > SPECTRUM_FLOOR * peak {
            rel = rel.max(e / w);
        }
    }
    (rel, abs)
}

/// Worst per-sample error relative to `peak(input) · Σ|taps|`.
fn convolution_error(got: &[f32], want: &[f64], input: &[f32], taps: &[f32]) -> f64 {
    let scale = input.iter().fold(0.0f64, |m, &s| m.max(f64::from(s.abs())))
        * taps.iter().map(|&h| f64::from(h.abs())).sum::<f64>();
    let worst = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (f64::from(g) - w).abs())
        .fold(0.0, f64::max);
    if scale > 0.0 { worst / scale } else { worst }
}

/// An asymmetric FIR (so that a flipped kernel would show), odd length.
fn taps(len: usize, seed: u64) -> Vec<f32> {
    let noise = signal(len, seed, 1.0);
    noise
        .iter()
        .enumerate()
        .map(|(k, &v)| v / (1.0 + k as f32 * 0.01))
        .collect()
}

#[test]
fn spectrum_matches_a_naive_dft() {
    let Some(mut gpu) = gpu() else { return };
    let signals: Vec<Vec<f32>> = [0, 1, 100, 4096, 4096 + 2048 + 17, 3 * 4096, 20_000]
        .iter()
        .enumerate()
        .map(|(i, &len)| signal(len, i as u64 + 1, 0.9))
        .collect();
    let refs: Vec<&[f32]> = signals.iter().map(|s| s.as_slice()).collect();
    let spectra = gpu.average_power_spectra(&refs).unwrap();
    assert_eq!(spectra.len(), signals.len());
    let (mut worst_rel, mut worst_abs) = (0.0f64, 0.0f64);
    for (s, got) in signals.iter().zip(&spectra) {
        assert_eq!(got.len(), ANALYSIS_BINS);
        let want = reference_spectrum(s);
        if s.is_empty() {
            assert!(got.iter().all(|&p| p == 0.0));
            continue;
        }
        let (rel, abs) = spectrum_errors(got, &want);
        eprintln!(
            "len {}: relative error {rel:.2e}, absolute {abs:.2e}",
            s.len()
        );
        worst_rel = worst_rel.max(rel);
        worst_abs = worst_abs.max(abs);
    }
    eprintln!("spectrum vs naive DFT: worst relative {worst_rel:.2e}, absolute {worst_abs:.2e}");
    assert!(
        worst_rel <= SPECTRUM_REL_TOL,
        "relative error {worst_rel:e}"
    );
    assert!(
        worst_abs <= SPECTRUM_ABS_TOL,
        "absolute error {worst_abs:e}"
    );
}

#[test]
fn spectrum_of_a_pure_tone_peaks_at_its_bin() {
    let Some(mut gpu) = gpu() else { return };
    // Bin 100 exactly (100 · 48000 / 4096 Hz), over 21 whole frames (no zero padding).
    let x: Vec<f32> = (0..ANALYSIS_FFT + 20 * ANALYSIS_HOP)
        .map(|n| (2.0 * std::f64::consts::PI * 100.0 * n as f64 / 4096.0).sin() as f32)
        .collect();
    let spectrum = gpu.average_power_spectra(&[&x]).unwrap().remove(0);
    let peak = spectrum
        .iter()
        .enumerate()
        .fold((0, 0.0f32), |b, (k, &p)| if p > b.1 { (k, p) } else { b });
    assert_eq!(peak.0, 100);
    // A full frame of a unit sine through a Hann window: |X| = N/4 at the bin.
    let expected = (ANALYSIS_FFT as f32 / 4.0).powi(2);
    assert!(
        (peak.1 / expected - 1.0).abs() < 0.01,
        "peak power {}",
        peak.1
    );
}

#[test]
fn convolution_matches_a_direct_sum() {
    let Some(mut gpu) = gpu() else { return };
    let cases: &[(usize, usize)] = &[
        (0, 3),
        (1, 1),
        (5, 31),
        (100, 255),
        (1000, 1),
        (3000, 31),
        (20_000, 255),
        (9_000, 1023),
    ];
    let inputs: Vec<Vec<f32>> = cases
        .iter()
        .enumerate()
        .map(|(i, &(len, _))| signal(len, 10 + i as u64, 0.8))
        .collect();
    let firs: Vec<Vec<f32>> = cases
        .iter()
        .enumerate()
        .map(|(i, &(_, t))| taps(t, 50 + i as u64))
        .collect();
    let mut outputs: Vec<Vec<f32>> = cases.iter().map(|&(len, _)| vec![f32::NAN; len]).collect();
    let mut jobs: Vec<ConvolveJob<'_>> = inputs
        .iter()
        .zip(&firs)
        .zip(outputs.iter_mut())
        .map(|((input, taps), output)| ConvolveJob {
            input,
            taps,
            output,
        })
        .collect();
    gpu.convolve(&mut jobs).unwrap();
    let mut worst = 0.0f64;
    for ((input, fir), got) in inputs.iter().zip(&firs).zip(&outputs) {
        let want = reference_convolution(input, fir);
        let e = convolution_error(got, &want, input, fir);
        eprintln!("len {} taps {}: error {e:.2e}", input.len(), fir.len());
        worst = worst.max(e);
    }
    eprintln!("convolution vs direct sum: worst {worst:.2e}");
    assert!(worst <= CONVOLVE_TOL, "error {worst:e}");
}

#[test]
fn convolution_with_the_longest_fir_matches_a_direct_sum() {
    let Some(mut gpu) = gpu() else { return };
    let input = signal(40_000, 7, 1.0);
    let fir = taps(MAX_FIR_TAPS, 8);
    let mut output = vec![0.0; input.len()];
    gpu.convolve(&mut [ConvolveJob {
        input: &input,
        taps: &fir,
        output: &mut output,
    }])
    .unwrap();
    let e = convolution_error(&output, &reference_convolution(&input, &fir), &input, &fir);
    eprintln!("{MAX_FIR_TAPS} taps: error {e:.2e}");
    assert!(e <= CONVOLVE_TOL, "error {e:e}");
}

#[test]
fn a_unit_impulse_fir_passes_the_signal_through() {
    let Some(mut gpu) = gpu() else { return };
    let input = signal(30_000, 3, 1.0);
    let mut fir = vec![0.0; 301];
    fir[150] = 1.0;
    let mut output = vec![0.0; input.len()];
    gpu.convolve(&mut [ConvolveJob {
        input: &input,
        taps: &fir,
        output: &mut output,
    }])
    .unwrap();
    let worst = input
        .iter()
        .zip(&output)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-5, "error {worst}");
}

/// A batch cut into many small rounds gives the same convolution, bit for bit, and
/// the same spectra within rounding (partial sums are added in another grouping).
#[test]
fn small_buffers_split_the_batch_into_rounds_with_the_same_results() {
    let Some(mut big) = gpu() else { return };
    let Some(mut small) = gpu_with(GpuOptions {
        max_buffer_bytes: 0,
    }) else {
        return;
    };
    assert_eq!(small.max_buffer_bytes(), 1 << 20);
    let inputs: Vec<Vec<f32>> = (0..6)
        .map(|i| signal(200_000 + i * 31_111, i as u64, 0.7))
        .collect();
    let firs: Vec<Vec<f32>> = (0..6)
        .map(|i| taps(2 * (i * 700) + 1, 90 + i as u64))
        .collect();
    let run = |gpu: &mut GpuKernels| {
        let mut outputs: Vec<Vec<f32>> = inputs.iter().map(|x| vec![0.0; x.len()]).collect();
        let mut jobs: Vec<ConvolveJob<'_>> = inputs
            .iter()
            .zip(&firs)
            .zip(outputs.iter_mut())
            .map(|((input, taps), output)| ConvolveJob {
                input,
                taps,
                output,
            })
            .collect();
        gpu.convolve(&mut jobs).unwrap();
        let refs: Vec<&[f32]> = inputs.iter().map(|s| s.as_slice()).collect();
        (outputs, gpu.average_power_spectra(&refs).unwrap())
    };
    let (out_big, spec_big) = run(&mut big);
    let (out_small, spec_small) = run(&mut small);
    assert!(
        out_big == out_small,
        "convolution differs between round sizes"
    );
    for (a, b) in spec_big.iter().zip(&spec_small) {
        let want: Vec<f64> = a.iter().map(|&p| f64::from(p)).collect();
        let (rel, _) = spectrum_errors(b, &want);
        assert!(rel < 1e-5, "spectra differ by {rel:e}");
    }
    // And a second run on the same kernels (reused buffers) repeats itself exactly.
    let (out_again, spec_again) = run(&mut small);
    assert!(
        out_again == out_small && spec_again == spec_small,
        "results are not deterministic"
    );
}

#[test]
fn kernels_can_move_to_a_mastering_thread() {
    fn send<T: Send + 'static>() {}
    send::<GpuKernels>();
}

#[test]
fn bad_jobs_are_refused_before_any_work() {
    let Some(mut gpu) = gpu() else { return };
    let input = vec![0.5; 100];
    let mut output = vec![0.0; 100];
    let even = vec![0.25; 4];
    let err = gpu
        .convolve(&mut [ConvolveJob {
            input: &input,
            taps: &even,
            output: &mut output,
        }])
        .unwrap_err();
    assert!(matches!(err, KernelError::BadTaps { taps: 4, .. }), "{err}");
    let long = vec![0.0; MAX_FIR_TAPS + 2];
    let err = gpu
        .convolve(&mut [ConvolveJob {
            input: &input,
            taps: &long,
            output: &mut output,
        }])
        .unwrap_err();
    assert!(matches!(err, KernelError::BadTaps { .. }), "{err}");
    let mut short = vec![0.0; 99];
    let err = gpu
        .convolve(&mut [ConvolveJob {
            input: &input,
            taps: &[1.0],
            output: &mut short,
        }])
        .unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::LengthMismatch {
                input: 100,
                output: 99
            }
        ),
        "{err}"
    );
    assert!(output.iter().all(|&s| s == 0.0));
}

/// A music-like test track: a bass line, chords, a hi-hat-like noise burst every beat
/// and low-level noise, with peak about `gain`.
fn track(seconds: f64, seed: u64, gain: f32) -> Vec<f32> {
    let noise = signal((seconds * 48_000.0) as usize, seed, 1.0);
    noise
        .iter()
        .enumerate()
        .map(|(n, &white)| {
            let t = n as f64 / 48_000.0;
            let beat = (t * 2.0).fract();
            let bass = 0.4
                * (2.0 * std::f64::consts::PI * 55.0 * (1.0 + (t * 0.5).floor() % 2.0 * 0.5) * t)
                    .sin();
            let chord: f64 = [261.6, 329.6, 392.0]
                .iter()
                .map(|f| 0.12 * (2.0 * std::f64::consts::PI * f * t).sin())
                .sum();
            let hat = f64::from(white) * 0.6 * (-beat * 40.0).exp();
            gain * (bass + chord + hat + 0.02 * f64::from(white)) as f32 / 1.2
        })
        .collect()
}

/// A linear-phase EQ FIR of `len` taps (odd), designed by windowed sinc: a bass boost
/// below 120 Hz (+6 dB), a cut around 3 kHz and a treble lift above 10 kHz.
fn eq_fir(len: usize) -> Vec<f32> {
    let c = (len - 1) as f64 / 2.0;
    let lowpass = |fc: f64, k: usize| {
        let x = k as f64 - c;
        let w = 2.0 * fc / 48_000.0;
        if x == 0.0 {
            w
        } else {
            (std::f64::consts::PI * w * x).sin() / (std::f64::consts::PI * x)
        }
    };
    (0..len)
        .map(|k| {
            let window =
                0.5 - 0.5 * (2.0 * std::f64::consts::PI * k as f64 / (len - 1) as f64).cos();
            let delta = if k as f64 == c { 1.0 } else { 0.0 };
            let band = lowpass(4_000.0, k) - lowpass(2_000.0, k);
            let high = delta - lowpass(10_000.0, k);
            (window * (delta + lowpass(120.0, k) - 0.3 * band + 0.4 * high)) as f32
        })
        .collect()
}

/// The two backends agree on realistic lengths: 30 s mid and side signals at 48 kHz,
/// through a 4095-tap EQ FIR, in one batch.
#[test]
fn gpu_matches_the_cpu_reference_on_30_second_tracks() {
    let Some(mut gpu) = gpu() else { return };
    let mut cpu = CpuKernels::new();
    let mid = track(30.0, 21, 0.9);
    let side = track(30.0, 22, 0.2);
    let signals: [&[f32]; 2] = [&mid, &side];

    let gpu_spectra = gpu.average_power_spectra(&signals).unwrap();
    let cpu_spectra = cpu.average_power_spectra(&signals).unwrap();
    let mut worst_spectrum = (0.0f64, 0.0f64);
    for (g, c) in gpu_spectra.iter().zip(&cpu_spectra) {
        let want: Vec<f64> = c.iter().map(|&p| f64::from(p)).collect();
        let (rel, abs) = spectrum_errors(g, &want);
        worst_spectrum = (worst_spectrum.0.max(rel), worst_spectrum.1.max(abs));
    }

    let fir = eq_fir(4095);
    let run = |kernels: &mut dyn SpectralKernels| {
        let mut out_mid = vec![0.0; mid.len()];
        let mut out_side = vec![0.0; side.len()];
        kernels
            .convolve(&mut [
                ConvolveJob {
                    input: &mid,
                    taps: &fir,
                    output: &mut out_mid,
                },
                ConvolveJob {
                    input: &side,
                    taps: &fir,
                    output: &mut out_side,
                },
            ])
            .unwrap();
        [out_mid, out_side]
    };
    let gpu_out = run(&mut gpu);
    let cpu_out = run(&mut cpu);
    let mut worst_sample = 0.0f64;
    for ((g, c), input) in gpu_out.iter().zip(&cpu_out).zip(&signals) {
        let peak = input.iter().fold(0.0f32, |m, &s| m.max(s.abs()));
        let e = g
            .iter()
            .zip(c)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        worst_sample = worst_sample.max(f64::from(e / peak));
    }
    eprintln!(
        "GPU vs CPU, 2 x 30 s: spectrum relative {:.2e} (absolute {:.2e}), convolution {:.2e} of the peak",
        worst_spectrum.0, worst_spectrum.1, worst_sample
    );
    assert!(
        worst_spectrum.0 <= CPU_SPECTRUM_REL_TOL,
        "spectrum error {:e}",
        worst_spectrum.0
    );
    assert!(
        worst_spectrum.1 <= SPECTRUM_ABS_TOL,
        "spectrum error {:e}",
        worst_spectrum.1
    );
    assert!(
        worst_sample <= CPU_CONVOLVE_TOL,
        "convolution error {worst_sample:e}"
    );
}
