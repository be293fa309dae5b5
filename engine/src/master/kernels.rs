//! The spectral kernels of the mastering chain: the two stages that carry nearly all
//! of its arithmetic and run on either backend, the CPU reference (`realfft`) or the
//! GPU (`wgpu` compute shaders in `shaders/`). Everything else in the chain (the
//! correction curve, loudness, the limiter) is the same code for both.
//!
//! # The contract
//! - Signals are mono `f32` at 48 kHz (the chain works on mid and side channels).
//! - [`SpectralKernels::average_power_spectra`]: for each signal, the mean over frames
//!   of `|FFT(w · frame)|²` where frames are [`ANALYSIS_FFT`] samples long, start every
//!   [`ANALYSIS_HOP`] samples from sample 0, the last one zero-padded, and `w` is the
//!   periodic Hann window `w[n] = 0.5 − 0.5·cos(2πn/N)`. The result has
//!   `ANALYSIS_FFT / 2 + 1` bins. A signal shorter than one frame is one zero-padded
//!   frame; an empty signal gives all zeros.
//! - [`SpectralKernels::convolve`]: for each job, `output[n] = Σ_k taps[k] ·
//!   input[n + k − (taps.len() − 1) / 2]` (samples outside `input` are zero): a
//!   linear-phase FIR of odd length applied without delay, `output.len() ==
//!   input.len()`. Taps are at most [`MAX_FIR_TAPS`].
//! - Both take a batch: the GPU backend submits the whole batch at once.
//! - Results of the two backends agree within the tolerances the tests state
//!   (per-sample error of `convolve`, relative error per bin of the spectra).

use thiserror::Error;

/// Frame length of the long-term spectrum analysis (85 ms at 48 kHz; 11.7 Hz bins).
pub const ANALYSIS_FFT: usize = 4096;
/// Hop between analysis frames: half a frame (Hann windows overlap-add to a constant).
pub const ANALYSIS_HOP: usize = ANALYSIS_FFT / 2;
/// Bins of an analysis spectrum.
pub const ANALYSIS_BINS: usize = ANALYSIS_FFT / 2 + 1;
/// Longest FIR the convolution kernels take.
pub const MAX_FIR_TAPS: usize = 8191;

/// One convolution: `input` through the FIR `taps` into `output` (same length).
#[derive(Debug)]
pub struct ConvolveJob<'a> {
    pub input: &'a [f32],
    pub taps: &'a [f32],
    pub output: &'a mut [f32],
}

impl ConvolveJob<'_> {
    /// Checks the job against the contract: odd taps, at most [`MAX_FIR_TAPS`], an
    /// output as long as the input.
    pub fn check(&self) -> Result<(), KernelError> {
        let taps = self.taps.len();
        if taps.is_multiple_of(2) || taps > MAX_FIR_TAPS {
            return Err(KernelError::BadTaps {
                taps,
                max: MAX_FIR_TAPS,
            });
        }
        if self.output.len() != self.input.len() {
            return Err(KernelError::LengthMismatch {
                input: self.input.len(),
                output: self.output.len(),
            });
        }
        Ok(())
    }
}

/// Why a kernel did not run.
#[derive(Debug, Error)]
pub enum KernelError {
    #[error("FIR of {taps} taps: the length must be odd and at most {max}")]
    BadTaps { taps: usize, max: usize },
    #[error("convolution output holds {output} samples for an input of {input}")]
    LengthMismatch { input: usize, output: usize },
    #[error("GPU: {0}")]
    Gpu(String),
}

/// The spectral stages, on one backend.
pub trait SpectralKernels {
    /// `"cpu"` or `"gpu"`, for statistics and metrics.
    fn name(&self) -> &'static str;

    /// The long-term average power spectrum of each signal (see the module contract).
    fn average_power_spectra(&mut self, signals: &[&[f32]]) -> Result<Vec<Vec<f32>>, KernelError>;

    /// Runs every convolution job (see the module contract).
    fn convolve(&mut self, jobs: &mut [ConvolveJob<'_>]) -> Result<(), KernelError>;
}
