//! The CPU reference implementation of [`SpectralKernels`], built on `realfft`.
//!
//! FFT plans and scratch buffers are made once and reused by every call. The
//! convolution is overlap-save with a block length picked for the tap count (see
//! [`fft_len_for`]), so its cost per output sample barely grows with the FIR length.
//!
//! How the contract in [`kernels`](super::kernels) is read where it leaves room:
//! - Frame count of the spectra: a signal of `len` samples gives one frame when
//!   `len <= ANALYSIS_FFT`, otherwise `1 + ceil((len - ANALYSIS_FFT) / ANALYSIS_HOP)`
//!   frames: frames start every hop from sample 0 until one reaches the last sample,
//!   and that last frame is zero-padded. (An empty signal gives all zeros.)
//! - The mean over frames is accumulated in `f64` and returned as `f32`.
//! - [`KernelError`] has no variant for the CPU: an FFT failure, which only buffers
//!   of the wrong length cause and the buffers here come from the plans, would be
//!   reported as [`KernelError::Gpu`] with a message that names the CPU.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::fmt;
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::kernels::{
    ANALYSIS_BINS, ANALYSIS_FFT, ANALYSIS_HOP, ConvolveJob, KernelError, SpectralKernels,
};

/// Smallest overlap-save block; shorter FFTs are all overhead.
const MIN_CONVOLVE_FFT: usize = 256;
/// Largest overlap-save block (256 KiB of real samples: stays in a core's L2 cache).
const MAX_CONVOLVE_FFT: usize = 65_536;

/// The spectral kernels on the CPU.
pub struct CpuKernels {
    planner: RealFftPlanner<f32>,
    analysis: Analysis,
    /// One overlap-save engine per FFT length used so far.
    convolvers: BTreeMap<usize, Convolver>,
}

impl fmt::Debug for CpuKernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuKernels")
            .field(
                "convolve_fft_lengths",
                &self.convolvers.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for CpuKernels {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuKernels {
    /// Plans the analysis FFT; convolution plans are made on first use of each length.
    pub fn new() -> Self {
        let mut planner = RealFftPlanner::new();
        let analysis = Analysis::new(&mut planner);
        Self {
            planner,
            analysis,
            convolvers: BTreeMap::new(),
        }
    }
}

impl SpectralKernels for CpuKernels {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn average_power_spectra(&mut self, signals: &[&[f32]]) -> Result<Vec<Vec<f32>>, KernelError> {
        signals
            .iter()
            .map(|signal| self.analysis.average_power_spectrum(signal))
            .collect()
    }

    fn convolve(&mut self, jobs: &mut [ConvolveJob<'_>]) -> Result<(), KernelError> {
        // Check every job before running any, so a bad batch changes nothing.
        for job in jobs.iter() {
            job.check()?;
        }
        for job in jobs.iter_mut() {
            let n = fft_len_for(job.taps.len(), job.input.len());
            let convolver = match self.convolvers.entry(n) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(Convolver::new(&mut self.planner, n))
                }
            };
            convolver.run(job)?;
        }
        Ok(())
    }
}

/// Frames of the long-term spectrum for a signal of `len` samples (see the module docs).
pub fn analysis_frames(len: usize) -> usize {
    if len == 0 {
        0
    } else if len <= ANALYSIS_FFT {
        1
    } else {
        1 + (len - ANALYSIS_FFT).div_ceil(ANALYSIS_HOP)
    }
}

/// The periodic Hann window of `len` points: `0.5 − 0.5·cos(2πn/len)`.
pub fn periodic_hann(len: usize) -> Vec<f32> {
    (0..len)
        .map(|n| (0.5 - 0.5 * (2.0 * PI * n as f64 / len as f64).cos()) as f32)
        .collect()
}

/// The overlap-save FFT length for `taps` taps and an input of `input_len` samples:
/// the shortest power of two whose FFT work per output sample, `N·log2(N) / (N − taps + 1)`,
/// is within 5% of the least (longer blocks gain little and leave the cache), but no
/// longer than one block that holds the whole convolution.
pub fn fft_len_for(taps: usize, input_len: usize) -> usize {
    let first = MIN_CONVOLVE_FFT.max((2 * taps).next_power_of_two());
    let last = MAX_CONVOLVE_FFT.max(first);
    let cost = |n: usize| n as f64 * (n as f64).log2() / (n - taps + 1) as f64;
    let lengths =
        || std::iter::successors(Some(first), |&n| Some(n * 2)).take_while(|&n| n <= last);
    let least = lengths().map(cost).fold(f64::INFINITY, f64::min);
    let best = lengths()
        .find(|&n| cost(n) <= least * 1.05)
        .unwrap_or(first);
    let whole = (input_len + taps).next_power_of_two().max(MIN_CONVOLVE_FFT);
    best.min(whole)
}

fn fft_error(error: realfft::FftError) -> KernelError {
    // Only a buffer of the wrong length makes realfft fail; the buffers here are
    // made by the plans themselves, so this is a defect, reported rather than panicking.
    KernelError::Gpu(format!("CPU FFT failed: {error}"))
}

/// The long-term spectrum analyser: one 4096-point plan and its buffers.
struct Analysis {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    sum: Vec<f64>,
}

impl Analysis {
    fn new(planner: &mut RealFftPlanner<f32>) -> Self {
        let fft = planner.plan_fft_forward(ANALYSIS_FFT);
        Self {
            frame: fft.make_input_vec(),
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            window: periodic_hann(ANALYSIS_FFT),
            sum: vec![0.0; ANALYSIS_BINS],
            fft,
        }
    }

    fn average_power_spectrum(&mut self, signal: &[f32]) -> Result<Vec<f32>, KernelError> {
        let frames = analysis_frames(signal.len());
        if frames == 0 {
            return Ok(vec![0.0; ANALYSIS_BINS]);
        }
        self.sum.fill(0.0);
        for index in 0..frames {
            let start = index * ANALYSIS_HOP;
            let end = (start + ANALYSIS_FFT).min(signal.len());
            let available = &signal[start..end];
            for ((slot, &sample), &w) in self.frame.iter_mut().zip(available).zip(&self.window) {
                *slot = sample * w;
            }
            self.frame[available.len()..].fill(0.0);
            self.fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
                .map_err(fft_error)?;
            for (sum, bin) in self.sum.iter_mut().zip(&self.spectrum) {
                *sum += f64::from(bin.norm_sqr());
            }
        }
        let scale = 1.0 / frames as f64;
        Ok(self.sum.iter().map(|&s| (s * scale) as f32).collect())
    }
}

/// Overlap-save convolution with one FFT length.
struct Convolver {
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    block: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    filter: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
}

impl Convolver {
    fn new(planner: &mut RealFftPlanner<f32>, n: usize) -> Self {
        let forward = planner.plan_fft_forward(n);
        let inverse = planner.plan_fft_inverse(n);
        let scratch_len = forward.get_scratch_len().max(inverse.get_scratch_len());
        Self {
            block: forward.make_input_vec(),
            spectrum: forward.make_output_vec(),
            filter: forward.make_output_vec(),
            scratch: vec![Complex::default(); scratch_len],
            forward,
            inverse,
        }
    }

    /// `output[n] = Σ_k taps[k] · input[n + k − c]` with `c = (taps − 1) / 2`. This is the
    /// full linear convolution of the reversed taps, read `c` samples late; overlap-save
    /// computes `fft − taps + 1` of its samples per block.
    fn run(&mut self, job: &mut ConvolveJob<'_>) -> Result<(), KernelError> {
        let n = self.block.len();
        let taps = job.taps.len();
        let centre = (taps - 1) / 2;
        let step = n - taps + 1;
        let input = job.input;
        let len = input.len();

        // The filter's spectrum: reversed taps, zero-padded, with the inverse FFT's 1/n folded in.
        let scale = 1.0 / n as f32;
        for (slot, &tap) in self.block.iter_mut().zip(job.taps.iter().rev()) {
            *slot = tap * scale;
        }
        self.block[taps..].fill(0.0);
        self.forward
            .process_with_scratch(&mut self.block, &mut self.filter, &mut self.scratch)
            .map_err(fft_error)?;

        let mut start = 0;
        while start < len {
            // The block holds input[start − c .. start − c + n], zero outside the input.
            let skip = centre.saturating_sub(start);
            let from = (start + skip).saturating_sub(centre).min(len);
            let to = (start + n).saturating_sub(centre).min(len).max(from);
            self.block[..skip].fill(0.0);
            self.block[skip..skip + (to - from)].copy_from_slice(&input[from..to]);
            self.block[skip + (to - from)..].fill(0.0);
            self.forward
                .process_with_scratch(&mut self.block, &mut self.spectrum, &mut self.scratch)
                .map_err(fft_error)?;
            for (bin, &h) in self.spectrum.iter_mut().zip(&self.filter) {
                *bin *= h;
            }
            // The imaginary parts of DC and Nyquist are exactly zero for real taps and
            // input; rounding can leave dust there, which the inverse would report.
            if let Some(first_bin) = self.spectrum.first_mut() {
                first_bin.im = 0.0;
            }
            if let Some(last_bin) = self.spectrum.last_mut() {
                last_bin.im = 0.0;
            }
            self.inverse
                .process_with_scratch(&mut self.spectrum, &mut self.block, &mut self.scratch)
                .map_err(fft_error)?;
            let count = step.min(len - start);
            job.output[start..start + count]
                .copy_from_slice(&self.block[taps - 1..taps - 1 + count]);
            start += step;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The contract's formula, summed directly in f64.
    fn direct_convolution(input: &[f32], taps: &[f32]) -> Vec<f64> {
        let centre = (taps.len() - 1) / 2;
        (0..input.len())
            .map(|n| {
                taps.iter()
                    .enumerate()
                    .filter_map(|(k, &tap)| {
                        let at = (n + k).checked_sub(centre)?;
                        input.get(at).map(|&x| f64::from(tap) * f64::from(x))
                    })
                    .sum()
            })
            .collect()
    }

    /// The contract's spectrum with a naive DFT in f64, at the given bins.
    fn naive_spectrum(signal: &[f32], bins: &[usize]) -> Vec<f64> {
        let frames = analysis_frames(signal.len());
        let mut sum = vec![0.0; bins.len()];
        for frame in 0..frames {
            let start = frame * ANALYSIS_HOP;
            for (slot, &bin) in sum.iter_mut().zip(bins) {
                let (mut re, mut im) = (0.0f64, 0.0f64);
                for n in 0..ANALYSIS_FFT {
                    let x = signal.get(start + n).copied().map_or(0.0, f64::from);
                    let w = 0.5 - 0.5 * (2.0 * PI * n as f64 / ANALYSIS_FFT as f64).cos();
                    let angle = -2.0 * PI * (bin * n) as f64 / ANALYSIS_FFT as f64;
                    re += w * x * angle.cos();
                    im += w * x * angle.sin();
                }
                *slot += re * re + im * im;
            }
        }
        sum.iter().map(|s| s / frames as f64).collect()
    }

    #[test]
    fn frame_count_follows_the_contract() {
        assert_eq!(analysis_frames(0), 0);
        assert_eq!(analysis_frames(1), 1);
        assert_eq!(analysis_frames(ANALYSIS_FFT), 1);
        assert_eq!(analysis_frames(ANALYSIS_FFT + 1), 2);
        assert_eq!(analysis_frames(ANALYSIS_FFT + ANALYSIS_HOP), 2);
        assert_eq!(analysis_frames(ANALYSIS_FFT + ANALYSIS_HOP + 1), 3);
    }

    /// Tolerance: relative error per bin below 1e-3 for bins holding at least 1e-6 of
    /// the strongest bin's power (f32 FFT against an f64 DFT).
    #[test]
    fn spectra_match_a_naive_dft() {
        let mut kernels = CpuKernels::new();
        let bins = [0, 1, 2, 17, 100, 511, 1024, 2047, 2048];
        for len in [
            1,
            1000,
            ANALYSIS_FFT,
            ANALYSIS_FFT + 1,
            3 * ANALYSIS_FFT + 123,
        ] {
            let signal = noise(len, len as u32);
            let spectra = kernels.average_power_spectra(&[&signal]).unwrap();
            assert_eq!(spectra.len(), 1);
            assert_eq!(spectra[0].len(), ANALYSIS_BINS);
            let expected = naive_spectrum(&signal, &bins);
            let strongest = expected.iter().cloned().fold(0.0, f64::max);
            for (&bin, &want) in bins.iter().zip(&expected) {
                let got = f64::from(spectra[0][bin]);
                if want > strongest * 1e-6 {
                    let error = (got - want).abs() / want;
                    assert!(error < 1e-3, "len {len} bin {bin}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn a_sine_peaks_at_its_bin_and_an_empty_signal_is_zero() {
        let mut kernels = CpuKernels::new();
        let bin = 300;
        let sine: Vec<f32> = (0..48_000)
            .map(|n| (2.0 * PI * bin as f64 * n as f64 / ANALYSIS_FFT as f64).sin() as f32)
            .collect();
        let empty: [f32; 0] = [];
        let spectra = kernels.average_power_spectra(&[&sine, &empty]).unwrap();
        let peak = spectra[0]
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        assert_eq!(peak, Some(bin));
        assert!(spectra[1].iter().all(|&p| p == 0.0));
    }

    /// Tolerance: per-sample error below 1e-5 of the input's peak times the taps' L1 norm.
    #[test]
    fn convolution_matches_the_direct_formula() {
        let mut kernels = CpuKernels::new();
        let cases = [
            (1, 10),
            (3, 1),
            (5, 100),
            (31, 2_000),
            (255, 700),
            (1023, 5_000),
        ];
        for (taps_len, input_len) in cases {
            // Asymmetric taps prove the orientation of the formula, not only linear phase.
            let taps = noise(taps_len, 7 + taps_len as u32);
            let input = noise(input_len, 11 + input_len as u32);
            let mut output = vec![0.0; input_len];
            kernels
                .convolve(&mut [ConvolveJob {
                    input: &input,
                    taps: &taps,
                    output: &mut output,
                }])
                .unwrap();
            let expected = direct_convolution(&input, &taps);
            let l1: f64 = taps.iter().map(|&t| f64::from(t.abs())).sum();
            for (n, (&got, &want)) in output.iter().zip(&expected).enumerate() {
                assert!(
                    (f64::from(got) - want).abs() < 1e-5 * l1,
                    "taps {taps_len} input {input_len} sample {n}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn a_centred_impulse_passes_the_input_unchanged() {
        let mut kernels = CpuKernels::new();
        let mut taps = vec![0.0; 4095];
        taps[2047] = 1.0;
        let input = noise(50_000, 3);
        let mut output = vec![0.0; input.len()];
        kernels
            .convolve(&mut [ConvolveJob {
                input: &input,
                taps: &taps,
                output: &mut output,
            }])
            .unwrap();
        for (a, b) in input.iter().zip(&output) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn bad_jobs_are_refused_before_any_runs() {
        let mut kernels = CpuKernels::new();
        let input = [1.0f32; 8];
        let mut first = [0.0f32; 8];
        let mut second = [0.0f32; 8];
        let error = kernels
            .convolve(&mut [
                ConvolveJob {
                    input: &input,
                    taps: &[1.0],
                    output: &mut first,
                },
                ConvolveJob {
                    input: &input,
                    taps: &[0.5, 0.5],
                    output: &mut second,
                },
            ])
            .unwrap_err();
        assert!(matches!(error, KernelError::BadTaps { taps: 2, .. }));
        assert!(first.iter().all(|&x| x == 0.0));

        let mut short = [0.0f32; 7];
        let error = kernels
            .convolve(&mut [ConvolveJob {
                input: &input,
                taps: &[1.0],
                output: &mut short,
            }])
            .unwrap_err();
        assert!(matches!(
            error,
            KernelError::LengthMismatch {
                input: 8,
                output: 7
            }
        ));
        let too_long = vec![0.0f32; crate::master::kernels::MAX_FIR_TAPS + 2];
        let mut output = [0.0f32; 8];
        let error = kernels
            .convolve(&mut [ConvolveJob {
                input: &input,
                taps: &too_long,
                output: &mut output,
            }])
            .unwrap_err();
        assert!(matches!(error, KernelError::BadTaps { .. }));
    }

    #[test]
    fn block_length_grows_with_the_taps_and_fits_short_inputs() {
        assert!(fft_len_for(4095, 10_000_000) >= 16_384);
        assert!(fft_len_for(8191, 10_000_000) >= 32_768);
        assert_eq!(fft_len_for(3, 10), MIN_CONVOLVE_FFT);
        assert!(fft_len_for(4095, 100) <= 8192);
    }
}
