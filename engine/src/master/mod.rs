//! The mastering chain: every track goes to air with its long-term spectrum matched
//! to a target, its loudness at the station's target and its true peak under the ceiling.
//!
//! ```text
//! input ─ analysis ─ spectral EQ ─ loudness ─ true-peak limiter ─ output
//!         (mid/side spectra,  (linear-phase FIR   (gain to       (4x oversampled,
//!          BS.1770 loudness)   on mid and side)    target LUFS)   lookahead)
//! ```
//!
//! The two stages that carry nearly all the arithmetic, the long-term spectra and the
//! FIR convolution, are [`SpectralKernels`]: [`CpuKernels`] here (the reference, with
//! `realfft`) or the wgpu compute shaders in [`gpu`]. Everything else is the same code
//! for both backends:
//!
//! | stage | module | implementation |
//! |---|---|---|
//! | spectra, convolution | [`kernels`] | [`cpu`] (realfft), [`gpu`] (wgpu) |
//! | analysis | [`analysis`] | mid/side, spectra through the kernels, loudness |
//! | spectral EQ | [`eq`] | smoothed, bounded correction curve; frequency-sampled FIR |
//! | loudness | [`loudness`] | the `ebur128` meter; gain to the target |
//! | limiter | [`limiter`] | lookahead, 4x polyphase peak detection, linked stereo |
//!
//! The loudness gain comes from the integrated loudness measured after the EQ (by
//! `ebur128`), raised by an estimate of what the limiter will take away. The output is
//! measured again: integrated loudness by `ebur128`, true peak by the limiter's 4x
//! detector. When the loudness ended more than [`LOUDNESS_TOLERANCE_LU`] off the target,
//! or the true peak used up more than half the limiter's safety margin, the gain or the
//! limiter's threshold is corrected and the last two stages run again (at most
//! [`MAX_PASSES`] times in all; on the test corpus one pass is enough).
//!
//! Integrated loudness is measured three times per track (input, after the EQ, output);
//! those `ebur128` passes are about half of the chain's time on the CPU.
//!
//! Around the chain: [`audio_file`] reads WAV and FLAC and writes WAV, [`corpus`] makes
//! the deterministic test corpus and [`spectral_error`] is the quality metric.

pub mod analysis;
pub mod audio_file;
pub mod corpus;
pub mod cpu;
pub mod eq;
pub mod error;
pub mod gpu;
pub mod kernels;
pub mod limiter;
pub mod loudness;
pub mod spectral_error;

use std::time::Instant;

pub use analysis::{Analysis, ChannelSpectrum};
pub use cpu::CpuKernels;
pub use eq::{EqTarget, GenreTarget, ReferenceSpectrum};
pub use error::MasterError;
pub use kernels::{ConvolveJob, KernelError, SpectralKernels};

use analysis::{mid_side_spectra, mid_side_to_left_right, split_mid_side};
use eq::{EqFilters, EqOptions, SpectralEq};
use error::check_tracks;
use limiter::{LimiterOptions, Stereo, TruePeakLimiter};
use loudness::{Measure, db_to_amplitude, gain_to_target_db};

use crate::frame::CHANNELS;

/// How far from the target the output's integrated loudness may end before the
/// chain corrects its gain and runs the last stages again, in LU.
pub const LOUDNESS_TOLERANCE_LU: f64 = 0.1;
/// The most times the loudness and limiter stages run for one track.
pub const MAX_PASSES: usize = 4;
/// How far under the ceiling the chain aims when it corrects a true peak that the
/// detector read above it, in dB.
const TRUE_PEAK_CORRECTION_DB: f64 = 0.05;
/// How much more gain than first planned the limiter's peak detection allows for, in dB.
const DETECTION_HEADROOM_DB: f64 = 1.5;

/// Options of the mastering chain.
#[derive(Debug, Clone, PartialEq)]
pub struct MasteringOptions {
    /// Integrated loudness of the output, in LUFS (-60 ..= 0). Default -14.
    pub target_lufs: f64,
    /// Highest true peak of the output, in dBTP (-20 ..= 0). Default -1.
    pub ceiling_dbtp: f64,
    /// Width of the spectral EQ's correction window, in dB from deepest cut to largest
    /// boost (0 ..= 60). Default 48.
    pub eq_range_db: f64,
    /// Smoothing of the spectra before they are compared, in octaves. Default 1/3.
    pub smoothing_octaves: f64,
    /// What the EQ aims for. Default: the neutral built-in curve.
    pub eq_target: EqTarget,
    /// Length of the EQ's linear-phase FIR (odd, at most 8191). Default 8191.
    pub fir_taps: usize,
}

impl Default for MasteringOptions {
    fn default() -> Self {
        Self {
            target_lufs: loudness::DEFAULT_TARGET_LUFS,
            ceiling_dbtp: limiter::DEFAULT_CEILING_DBTP,
            eq_range_db: eq::DEFAULT_EQ_RANGE_DB,
            smoothing_octaves: eq::DEFAULT_SMOOTHING_OCTAVES,
            eq_target: EqTarget::default(),
            fir_taps: eq::DEFAULT_FIR_TAPS,
        }
    }
}

impl MasteringOptions {
    /// Checks every option against its range.
    pub fn check(&self) -> Result<(), MasterError> {
        if !(-60.0..=0.0).contains(&self.target_lufs) {
            return Err(MasterError::BadOption {
                option: "target_lufs",
                value: self.target_lufs,
                expected: "-60 ..= 0 LUFS",
            });
        }
        if !(-20.0..=0.0).contains(&self.ceiling_dbtp) {
            return Err(MasterError::BadOption {
                option: "ceiling_dbtp",
                value: self.ceiling_dbtp,
                expected: "-20 ..= 0 dBTP",
            });
        }
        self.eq_options().check()
    }

    fn eq_options(&self) -> EqOptions {
        EqOptions {
            range_db: self.eq_range_db,
            smoothing_octaves: self.smoothing_octaves,
            taps: self.fir_taps,
        }
    }

    fn limiter_options(&self) -> LimiterOptions {
        LimiterOptions {
            ceiling_dbtp: self.ceiling_dbtp,
            ..LimiterOptions::default()
        }
    }
}

/// The smallest and largest gain the spectral EQ applied over 20 Hz-20 kHz, in dB.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EqRange {
    /// The deepest cut (or the smallest boost), in dB.
    pub min_db: f64,
    /// The largest boost (or the smallest cut), in dB.
    pub max_db: f64,
}

/// What mastering did to one track.
#[derive(Debug, Clone, PartialEq)]
pub struct MasteringStats {
    /// Integrated loudness of the input, in LUFS (negative infinity for silence).
    pub input_lufs: f64,
    /// Integrated loudness of the output, in LUFS.
    pub output_lufs: f64,
    /// True peak of the output, in dBTP, by the limiter's 4x detector (a 24-tap
    /// windowed-sinc interpolator; `ebur128` and ffmpeg read the corpus within 0.05 dB of it).
    pub true_peak_dbtp: f64,
    /// The range of the EQ's correction.
    pub eq_range_db: EqRange,
    /// The gain applied after the EQ, in dB.
    pub loudness_gain_db: f64,
    /// The limiter's deepest gain reduction, in dB.
    pub limiter_reduction_db: f64,
    /// How many times the loudness and limiter stages ran (1 ..= [`MAX_PASSES`]).
    pub passes: usize,
    /// Time mastering took, in seconds. In a batch, the stages shared by the batch
    /// are divided among its tracks in proportion to their lengths.
    pub seconds: f64,
    /// The kernels' backend, e.g. "cpu" or "gpu".
    pub backend: &'static str,
}

impl From<&MasteringStats> for crate::events::MasteringStats {
    /// Non-finite figures (the loudness of silence) become `None`. `eq_range_db` is
    /// whichever of the smallest and largest gain is further from 0 dB, with its sign.
    fn from(stats: &MasteringStats) -> Self {
        let finite = |x: f64| x.is_finite().then_some(x);
        let range = stats.eq_range_db;
        let widest = if range.min_db.abs() > range.max_db.abs() {
            range.min_db
        } else {
            range.max_db
        };
        Self {
            input_lufs: finite(stats.input_lufs),
            output_lufs: finite(stats.output_lufs),
            true_peak_dbtp: finite(stats.true_peak_dbtp),
            eq_range_db: finite(widest),
            seconds: finite(stats.seconds),
            backend: Some(stats.backend.to_string()),
        }
    }
}

impl From<MasteringStats> for crate::events::MasteringStats {
    fn from(stats: MasteringStats) -> Self {
        Self::from(&stats)
    }
}

/// A mastered track.
#[derive(Debug, Clone, PartialEq)]
pub struct Mastered {
    /// Interleaved stereo at 48 kHz, as long as the input.
    pub samples: Vec<f32>,
    /// What mastering did.
    pub stats: MasteringStats,
}

/// The mastering chain on one backend.
pub struct Mastering {
    kernels: Box<dyn SpectralKernels + Send>,
    options: MasteringOptions,
    eq: SpectralEq,
    limiter: TruePeakLimiter,
}

impl std::fmt::Debug for Mastering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mastering")
            .field("backend", &self.kernels.name())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Mastering {
    /// A chain running its spectral stages on `kernels`. Options are checked when a
    /// track is mastered (see [`MasteringOptions::check`]).
    pub fn new(kernels: Box<dyn SpectralKernels + Send>, options: MasteringOptions) -> Self {
        Self {
            eq: SpectralEq::new(options.eq_options()),
            limiter: TruePeakLimiter::new(options.limiter_options()),
            kernels,
            options,
        }
    }

    /// A chain on the CPU reference kernels.
    pub fn cpu(options: MasteringOptions) -> Self {
        Self::new(Box::new(CpuKernels::new()), options)
    }

    /// The options in use.
    pub fn options(&self) -> &MasteringOptions {
        &self.options
    }

    /// The kernels' backend name.
    pub fn backend(&self) -> &'static str {
        self.kernels.name()
    }

    /// Replaces the options (the FIR designer is rebuilt when its length changes).
    pub fn set_options(&mut self, options: MasteringOptions) {
        if options.eq_options() != *self.eq.options() {
            self.eq = SpectralEq::new(options.eq_options());
        }
        self.limiter = TruePeakLimiter::new(options.limiter_options());
        self.options = options;
    }

    /// Aims the EQ at a new target.
    pub fn set_eq_target(&mut self, target: EqTarget) {
        self.options.eq_target = target;
    }

    /// Analyses a reference track on this chain's kernels, for [`EqTarget::Reference`].
    pub fn analyse_reference(
        &mut self,
        interleaved: &[f32],
    ) -> Result<ReferenceSpectrum, MasterError> {
        ReferenceSpectrum::analyse(self.kernels.as_mut(), interleaved)
    }

    /// Masters one track of interleaved stereo at 48 kHz.
    pub fn master(&mut self, interleaved_stereo_48k: &[f32]) -> Result<Mastered, MasterError> {
        let mut all = self.master_batch(&[interleaved_stereo_48k])?;
        all.pop().ok_or(MasterError::KernelOutput {
            backend: self.kernels.name(),
            expected: 1,
            found: 0,
        })
    }

    /// Masters many tracks. Each spectral kernel runs once for the whole batch. Every
    /// track is checked before any work starts; one bad track fails the batch, and the
    /// error names it by its index.
    pub fn master_batch(&mut self, tracks: &[&[f32]]) -> Result<Vec<Mastered>, MasterError> {
        self.options.check()?;
        check_tracks(tracks)?;
        if tracks.is_empty() {
            return Ok(Vec::new());
        }
        let total_frames: usize = tracks.iter().map(|t| t.len() / CHANNELS).sum();
        let share = |track: &[f32]| (track.len() / CHANNELS) as f64 / total_frames.max(1) as f64;
        let mut seconds = vec![0.0f64; tracks.len()];

        // Input loudness, and the EQ designed from the spectra (one kernel call).
        let started = Instant::now();
        let mut channels: Vec<(Vec<f32>, Vec<f32>)> =
            tracks.iter().map(|track| split_mid_side(track)).collect();
        let spectra = mid_side_spectra(self.kernels.as_mut(), &channels)?;
        let shared = started.elapsed().as_secs_f64();
        for (slot, track) in seconds.iter_mut().zip(tracks) {
            *slot += shared * share(track);
        }
        let mut inputs = Vec::with_capacity(tracks.len());
        let mut filters: Vec<EqFilters> = Vec::with_capacity(tracks.len());
        for (index, (track, (mid_spectrum, side_spectrum))) in
            tracks.iter().zip(&spectra).enumerate()
        {
            let started = Instant::now();
            inputs.push(loudness::measure(track, Measure::INTEGRATED)?);
            filters.push(
                self.eq
                    .design(mid_spectrum, side_spectrum, &self.options.eq_target)?,
            );
            seconds[index] += started.elapsed().as_secs_f64();
        }

        // The EQ on every mid and side (one kernel call).
        let started = Instant::now();
        let mut filtered: Vec<(Vec<f32>, Vec<f32>)> = channels
            .iter()
            .map(|(mid, side)| (vec![0.0; mid.len()], vec![0.0; side.len()]))
            .collect();
        {
            let mut jobs: Vec<ConvolveJob<'_>> = Vec::with_capacity(2 * tracks.len());
            for (((mid, side), (mid_out, side_out)), filter) in
                channels.iter().zip(filtered.iter_mut()).zip(&filters)
            {
                jobs.push(ConvolveJob {
                    input: mid,
                    taps: &filter.mid_taps,
                    output: mid_out,
                });
                jobs.push(ConvolveJob {
                    input: side,
                    taps: &filter.side_taps,
                    output: side_out,
                });
            }
            let backend = self.kernels.name();
            self.kernels
                .convolve(&mut jobs)
                .map_err(|source| MasterError::Kernel { backend, source })?;
        }
        channels.clear();
        let shared = started.elapsed().as_secs_f64();
        for (slot, track) in seconds.iter_mut().zip(tracks) {
            *slot += shared * share(track);
        }

        // Loudness and limiter, track by track.
        let mut mastered = Vec::with_capacity(tracks.len());
        for (index, ((mut left, mut right), (input, filter))) in filtered
            .into_iter()
            .zip(inputs.into_iter().zip(&filters))
            .enumerate()
        {
            let started = Instant::now();
            mid_side_to_left_right(&mut left, &mut right);
            let finished = self.finish(&left, &right)?;
            drop((left, right));
            seconds[index] += started.elapsed().as_secs_f64();
            mastered.push(Mastered {
                samples: finished.samples,
                stats: MasteringStats {
                    input_lufs: input.integrated_lufs,
                    output_lufs: finished.output_lufs,
                    true_peak_dbtp: finished.true_peak_dbtp,
                    eq_range_db: EqRange {
                        min_db: filter.min_db(),
                        max_db: filter.max_db(),
                    },
                    loudness_gain_db: finished.gain_db,
                    limiter_reduction_db: finished.reduction_db,
                    passes: finished.passes,
                    seconds: seconds[index],
                    backend: self.kernels.name(),
                },
            });
        }
        Ok(mastered)
    }

    /// Loudness gain and limiter, corrected until the meter agrees (see the module docs).
    fn finish(&self, left: &[f32], right: &[f32]) -> Result<Finished, MasterError> {
        let target = self.options.target_lufs;
        let ceiling = self.options.ceiling_dbtp;
        let equalised = Stereo::Planar { left, right };
        let after_eq = loudness::measure_planar(left, right, Measure::INTEGRATED)?;
        let mut gain_db = gain_to_target_db(after_eq.integrated_lufs, target);
        let mut limiter = self.limiter.clone();
        let mut limiter_options = self.options.limiter_options();
        // Peaks are detected once, on the equalised signal, exactly wherever they could
        // reach the threshold with up to DETECTION_HEADROOM_DB more gain than planned.
        let floor = limiter.threshold() / db_to_amplitude(gain_db + DETECTION_HEADROOM_DB) as f32;
        let peaks = limiter.detect(equalised, floor);
        // The limiter takes some loudness away; give it back before the first measurement.
        let mut scratch = Vec::new();
        gain_db += estimated_limiter_loss_db(&limiter, equalised, &peaks, gain_db, &mut scratch);
        let mut passes = 0;
        loop {
            passes += 1;
            let gain = db_to_amplitude(gain_db) as f32;
            let limited = limiter.apply_using(equalised, &peaks, gain, &mut scratch);
            let (samples, report) = (limited.samples, limited.report);
            let output = loudness::measure(&samples, Measure::INTEGRATED)?;
            let true_peak = report.true_peak_dbtp;
            let loudness_error = target - output.integrated_lufs;
            let loud_enough =
                !loudness_error.is_finite() || loudness_error.abs() <= LOUDNESS_TOLERANCE_LU;
            // The limiter holds peaks a safety margin under the ceiling; a reading that
            // used up half of it means the interpolation of the gain ramps added to a peak.
            let under_ceiling = true_peak <= ceiling - limiter_options.safety_db / 2.0;
            if (loud_enough && under_ceiling) || passes >= MAX_PASSES {
                return Ok(Finished {
                    samples,
                    output_lufs: output.integrated_lufs,
                    true_peak_dbtp: true_peak,
                    gain_db,
                    reduction_db: report.max_reduction_db,
                    passes,
                });
            }
            if !under_ceiling {
                limiter_options.safety_db += true_peak - ceiling + TRUE_PEAK_CORRECTION_DB;
                limiter = TruePeakLimiter::new(limiter_options);
            }
            if !loud_enough {
                gain_db += loudness_error;
            }
        }
    }
}

/// The gain to add so that, after the limiter, the loudness is back where `gain_db`
/// alone would put it: the fixed point of `x = loss(gain_db + x)`, extrapolated from
/// two estimates (raising the gain makes the limiter take more). It is an estimate
/// (power, not K-weighted gated loudness); the measurement after it corrects what is left.
fn estimated_limiter_loss_db(
    limiter: &TruePeakLimiter,
    input: Stereo<'_>,
    peaks: &limiter::FramePeaks,
    gain_db: f64,
    scratch: &mut Vec<f32>,
) -> f64 {
    let at = |db: f64| db_to_amplitude(db) as f32;
    let first = limiter.estimated_loss_db_using(input, peaks, at(gain_db), scratch);
    if first < LOUDNESS_TOLERANCE_LU / 2.0 {
        return first;
    }
    let second = limiter.estimated_loss_db_using(input, peaks, at(gain_db + first), scratch);
    let ratio = ((second - first) / first).clamp(0.0, 0.8);
    first / (1.0 - ratio)
}

/// The outcome of the last two stages.
struct Finished {
    samples: Vec<f32>,
    output_lufs: f64,
    true_peak_dbtp: f64,
    gain_db: f64,
    reduction_db: f64,
    passes: usize,
}
