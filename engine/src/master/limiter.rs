//! The true-peak limiter: lookahead, 4x oversampled peak detection, linked stereo.
//!
//! The limiter works on whole tracks, so it looks ahead simply by reading ahead:
//! 1. **Peaks.** Each frame's peak is the largest of its two samples and of the
//!    inter-sample values on either side of it, found by a 4x polyphase windowed-sinc
//!    interpolator ([`Interpolator`]). Blocks whose samples are too small for any
//!    inter-sample value to reach the threshold skip the interpolation (the bound is
//!    exact: the interpolator's largest phase L1 norm times the block's peak).
//! 2. **Required gain** `r[n] = min(1, threshold / peak[n])`, where the threshold is the
//!    ceiling less a small internal safety margin.
//! 3. **Envelope.** A sliding minimum of `r` over the lookahead (widened by the
//!    interpolator's reach on both sides), an exponential release back towards 1, and
//!    a moving average over the lookahead. The average turns every drop into a linear
//!    ramp that starts one lookahead before the peak, so the gain never steps: it
//!    changes by at most `1 / (lookahead + 1)` per sample, and it is at most `r` at
//!    every sample within the interpolator's reach of a peak.
//! 4. One gain for both channels (linked stereo), so the image does not shift.
//!
//! Peaks do not depend on the gain applied before the limiter, so the mastering chain
//! detects them once and then tries gains cheaply ([`TruePeakLimiter::detect`],
//! [`TruePeakLimiter::estimated_loss_db`], [`TruePeakLimiter::apply`]). The input may be
//! interleaved or two separate channels ([`Stereo`]); the output is interleaved.

use std::f64::consts::PI;

use crate::frame::{CHANNELS, SAMPLE_RATE};

use super::loudness::{amplitude_to_db, db_to_amplitude};

/// Default ceiling, in dBTP.
pub const DEFAULT_CEILING_DBTP: f64 = -1.0;
/// Default lookahead (the attack time), in milliseconds.
pub const DEFAULT_LOOKAHEAD_MS: f64 = 1.5;
/// Default release time constant, in milliseconds.
pub const DEFAULT_RELEASE_MS: f64 = 60.0;
/// Default internal margin under the ceiling, in dB: covers the difference between
/// this limiter's interpolator and other true-peak meters.
pub const DEFAULT_SAFETY_DB: f64 = 0.15;
/// Oversampling of the peak detector.
pub const OVERSAMPLING: usize = 4;
/// Taps of each phase of the interpolator.
pub const INTERPOLATOR_TAPS: usize = 24;
/// Samples before the interpolated point that the interpolator reads.
const REACH_BEFORE: usize = INTERPOLATOR_TAPS / 2 - 1;
/// Samples after the interpolated point that the interpolator reads.
const REACH_AFTER: usize = INTERPOLATOR_TAPS / 2;
/// Frames per block of the peak detector.
const BLOCK: usize = 256;
/// Frames per sub-block: the unit in which the detector skips quiet audio.
const SUB_BLOCK: usize = 32;
/// Kaiser window shape of the interpolator.
const KAISER_BETA: f64 = 6.0;

/// Options of the limiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterOptions {
    /// The highest true peak allowed, in dBTP. Default -1.0.
    pub ceiling_dbtp: f64,
    /// Lookahead and attack time, in ms. Default 1.5.
    pub lookahead_ms: f64,
    /// Release time constant, in ms. Default 60.
    pub release_ms: f64,
    /// Internal margin under the ceiling, in dB. Default 0.15.
    pub safety_db: f64,
}

impl Default for LimiterOptions {
    fn default() -> Self {
        Self {
            ceiling_dbtp: DEFAULT_CEILING_DBTP,
            lookahead_ms: DEFAULT_LOOKAHEAD_MS,
            release_ms: DEFAULT_RELEASE_MS,
            safety_db: DEFAULT_SAFETY_DB,
        }
    }
}

/// Stereo samples: interleaved, or two channels of equal length.
#[derive(Debug, Clone, Copy)]
pub enum Stereo<'a> {
    /// Left and right alternating; an odd trailing sample is ignored.
    Interleaved(&'a [f32]),
    /// Two channels; frames beyond the shorter one are ignored.
    Planar {
        /// The left channel.
        left: &'a [f32],
        /// The right channel.
        right: &'a [f32],
    },
}

impl Stereo<'_> {
    /// Frames (samples per channel).
    pub fn frames(&self) -> usize {
        match self {
            Stereo::Interleaved(samples) => samples.len() / CHANNELS,
            Stereo::Planar { left, right } => left.len().min(right.len()),
        }
    }

    /// Copies frames `start .. start + left.len()` into two channels.
    fn copy_into(&self, start: usize, left: &mut [f32], right: &mut [f32]) {
        match self {
            Stereo::Interleaved(samples) => {
                let span = &samples[start * CHANNELS..(start + left.len()) * CHANNELS];
                for ((l, r), frame) in left.iter_mut().zip(right).zip(span.chunks_exact(CHANNELS)) {
                    *l = frame[0];
                    *r = frame[1];
                }
            }
            Stereo::Planar {
                left: from_left,
                right: from_right,
            } => {
                left.copy_from_slice(&from_left[start..start + left.len()]);
                right.copy_from_slice(&from_right[start..start + right.len()]);
            }
        }
    }

    /// Interleaved output: every frame times its entry in `scales`.
    fn scaled(&self, scales: &[f32]) -> Vec<f32> {
        let frames = self.frames().min(scales.len());
        let mut out = vec![0.0f32; frames * CHANNELS];
        match self {
            Stereo::Interleaved(samples) => {
                for ((to, from), &scale) in out
                    .chunks_exact_mut(CHANNELS)
                    .zip(samples.chunks_exact(CHANNELS))
                    .zip(scales)
                {
                    to[0] = from[0] * scale;
                    to[1] = from[1] * scale;
                }
            }
            Stereo::Planar { left, right } => {
                for (((to, &l), &r), &scale) in out
                    .chunks_exact_mut(CHANNELS)
                    .zip(left.iter())
                    .zip(right.iter())
                    .zip(scales)
                {
                    to[0] = l * scale;
                    to[1] = r * scale;
                }
            }
        }
        out
    }

    /// `left² + right²` of frame `n`.
    fn energy(&self, n: usize) -> f64 {
        let (l, r) = match self {
            Stereo::Interleaved(samples) => (samples[n * CHANNELS], samples[n * CHANNELS + 1]),
            Stereo::Planar { left, right } => (left[n], right[n]),
        };
        f64::from(l) * f64::from(l) + f64::from(r) * f64::from(r)
    }
}

/// What the limiter did to a track.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LimiterReport {
    /// The deepest gain reduction, in dB (0 when nothing was limited).
    pub max_reduction_db: f64,
    /// Frames whose gain was below 1.
    pub limited_frames: usize,
    /// The output's true peak in dBTP, by the limiter's detector.
    pub true_peak_dbtp: f64,
}

/// A limited signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    /// Interleaved stereo.
    pub samples: Vec<f32>,
    /// What the limiter did.
    pub report: LimiterReport,
}

/// A 4x polyphase windowed-sinc interpolator: the values a quarter, a half and three
/// quarters of the way from each sample to the next.
#[derive(Debug, Clone)]
pub struct Interpolator {
    /// `phases[p - 1][j]` weighs sample `n − REACH_BEFORE + j` for the point `n + p/4`.
    phases: [[f32; INTERPOLATOR_TAPS]; OVERSAMPLING - 1],
    /// The largest L1 norm of a phase: no interpolated value exceeds it times the
    /// largest sample it reads.
    gain_bound: f32,
}

impl Default for Interpolator {
    fn default() -> Self {
        Self::new()
    }
}

/// The modified Bessel function of the first kind, order 0 (for the Kaiser window).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..50 {
        term *= half / k as f64;
        sum += term * term;
        if term * term < sum * 1e-17 {
            break;
        }
    }
    sum
}

impl Interpolator {
    /// Windowed sinc (Kaiser, beta 6) over 24 samples, each phase normalised to unit DC
    /// gain: flat within 0.1% up to 20 kHz.
    pub fn new() -> Self {
        let mut phases = [[0.0f32; INTERPOLATOR_TAPS]; OVERSAMPLING - 1];
        let half_width = INTERPOLATOR_TAPS as f64 / 2.0;
        let mut gain_bound = 0.0f32;
        for (p, phase) in phases.iter_mut().enumerate() {
            let fraction = (p + 1) as f64 / OVERSAMPLING as f64;
            let mut taps = [0.0f64; INTERPOLATOR_TAPS];
            for (j, tap) in taps.iter_mut().enumerate() {
                let distance = fraction - (j as f64 - REACH_BEFORE as f64);
                let sinc = (PI * distance).sin() / (PI * distance);
                let ratio = (distance / half_width).clamp(-1.0, 1.0);
                let window =
                    bessel_i0(KAISER_BETA * (1.0 - ratio * ratio).sqrt()) / bessel_i0(KAISER_BETA);
                *tap = sinc * window;
            }
            let sum: f64 = taps.iter().sum();
            for (slot, tap) in phase.iter_mut().zip(taps) {
                *slot = (tap / sum) as f32;
            }
            gain_bound = gain_bound.max(phase.iter().map(|t| t.abs()).sum());
        }
        Self { phases, gain_bound }
    }

    /// The largest L1 norm of a phase.
    pub fn gain_bound(&self) -> f32 {
        self.gain_bound
    }

    /// The largest absolute value of the 4x oversampled signal of either channel
    /// (linear): the true peak, as this limiter's detector sees it. Blocks that cannot
    /// raise the peak found so far are skipped.
    pub fn true_peak(&self, input: Stereo<'_>) -> f32 {
        let frames = input.frames();
        let mut block = Block::new();
        let mut peak = 0.0f32;
        for start in (0..frames).step_by(BLOCK) {
            let count = BLOCK.min(frames - start);
            let loudest = block.load(input, start, count);
            peak = peak.max(loudest);
            if loudest * self.gain_bound > peak {
                block.segment_peaks(self, count, peak);
                peak = block.peaks[..count].iter().fold(peak, |a, &b| a.max(b));
            }
        }
        peak
    }
}

/// One block of the peak detector: its frames as two channels, with the samples the
/// interpolator reads on either side (zero outside the signal).
struct Block {
    left: [f32; BLOCK + INTERPOLATOR_TAPS],
    right: [f32; BLOCK + INTERPOLATOR_TAPS],
    /// `peaks[i]`: the largest inter-sample value between frames `start + i` and `start + i + 1`.
    peaks: [f32; BLOCK],
    values: [f32; BLOCK],
}

impl Block {
    fn new() -> Self {
        Self {
            left: [0.0; BLOCK + INTERPOLATOR_TAPS],
            right: [0.0; BLOCK + INTERPOLATOR_TAPS],
            peaks: [0.0; BLOCK],
            values: [0.0; BLOCK],
        }
    }

    /// Loads frames `start − REACH_BEFORE .. start + count + REACH_AFTER` and returns
    /// the largest absolute value among them.
    fn load(&mut self, input: Stereo<'_>, start: usize, count: usize) -> f32 {
        let frames = input.frames();
        let len = count + REACH_BEFORE + REACH_AFTER;
        // Position i holds frame start + i − REACH_BEFORE; first..last are inside the signal.
        let first = REACH_BEFORE.saturating_sub(start);
        let last = len.min(frames + REACH_BEFORE - start).max(first);
        self.left[..first].fill(0.0);
        self.right[..first].fill(0.0);
        self.left[last..len].fill(0.0);
        self.right[last..len].fill(0.0);
        input.copy_into(
            start + first - REACH_BEFORE,
            &mut self.left[first..last],
            &mut self.right[first..last],
        );
        self.left[first..last]
            .iter()
            .chain(&self.right[first..last])
            .fold(0.0f32, |a, &b| a.max(b.abs()))
    }

    /// Fills `peaks[..count]`, leaving 0 in every sub-block of [`SUB_BLOCK`] frames
    /// whose samples are too small for any interpolated value to reach `wanted` (the
    /// bound is the interpolator's [`gain_bound`](Interpolator::gain_bound)).
    fn segment_peaks(&mut self, interpolator: &Interpolator, count: usize, wanted: f32) {
        let skip_below = wanted / interpolator.gain_bound;
        self.peaks[..count].fill(0.0);
        for from in (0..count).step_by(SUB_BLOCK) {
            let to = (from + SUB_BLOCK).min(count);
            let reach = from..to + REACH_BEFORE + REACH_AFTER;
            let loudest = self.left[reach.clone()]
                .iter()
                .chain(&self.right[reach])
                .fold(0.0f32, |a, &b| a.max(b.abs()));
            if loudest < skip_below {
                continue;
            }
            for channel in [&self.left, &self.right] {
                for phase in &interpolator.phases {
                    let values = &mut self.values[from..to];
                    values.fill(0.0);
                    for (j, &tap) in phase.iter().enumerate() {
                        for (value, &x) in values.iter_mut().zip(&channel[from + j..to + j]) {
                            *value += tap * x;
                        }
                    }
                    for (peak, value) in self.peaks[from..to].iter_mut().zip(values.iter()) {
                        *peak = peak.max(value.abs());
                    }
                }
            }
        }
    }
}

/// The true peak of every frame of a signal: the largest of its two samples and of the
/// 4x interpolated values between it and its neighbours. Exact wherever it could reach
/// the floor it was detected with; elsewhere the frame's sample peak (under the floor).
#[derive(Debug, Clone, PartialEq)]
pub struct FramePeaks {
    peaks: Vec<f32>,
    /// The largest peak of each block of [`BLOCK`] frames.
    block_max: Vec<f32>,
    floor: f32,
    /// `Σ left² + right²` over all frames.
    energy: f64,
}

impl FramePeaks {
    /// Frames covered.
    pub fn len(&self) -> usize {
        self.peaks.len()
    }

    /// Whether no frame is covered.
    pub fn is_empty(&self) -> bool {
        self.peaks.is_empty()
    }

    /// The level under which peaks were not interpolated.
    pub fn floor(&self) -> f32 {
        self.floor
    }

    /// The largest peak.
    pub fn max(&self) -> f32 {
        self.peaks.iter().fold(0.0, |a, &b| a.max(b))
    }
}

/// The lookahead true-peak limiter. See the module docs.
#[derive(Debug, Clone)]
pub struct TruePeakLimiter {
    options: LimiterOptions,
    interpolator: Interpolator,
}

impl TruePeakLimiter {
    /// A limiter with the given options.
    pub fn new(options: LimiterOptions) -> Self {
        Self {
            options,
            interpolator: Interpolator::new(),
        }
    }

    /// The options in use.
    pub fn options(&self) -> &LimiterOptions {
        &self.options
    }

    /// Lookahead in samples per channel (at least 1).
    pub fn lookahead_frames(&self) -> usize {
        ((self.options.lookahead_ms * f64::from(SAMPLE_RATE) / 1000.0).round() as usize).max(1)
    }

    /// The linear threshold the detector holds peaks to: the ceiling less the margin.
    pub fn threshold(&self) -> f32 {
        db_to_amplitude(self.options.ceiling_dbtp - self.options.safety_db.max(0.0)) as f32
    }

    /// The true peak of a signal in dBTP, by this limiter's 4x detector.
    pub fn true_peak_dbtp(&self, input: Stereo<'_>) -> f64 {
        amplitude_to_db(f64::from(self.interpolator.true_peak(input)))
    }

    /// Finds the true peak of every frame (see [`FramePeaks`]), exactly wherever it
    /// could reach `floor`.
    pub fn detect(&self, input: Stereo<'_>, floor: f32) -> FramePeaks {
        let frames = input.frames();
        let mut peaks = vec![0.0f32; frames];
        let mut block = Block::new();
        let skip_below = floor / self.interpolator.gain_bound();
        // The peak between the previous block's last frame and this block's first.
        let mut carried = 0.0f32;
        let mut energy = 0.0f64;
        for (start, out) in (0..frames).step_by(BLOCK).zip(peaks.chunks_mut(BLOCK)) {
            let count = out.len();
            let loudest = block.load(input, start, count);
            let left = &block.left[REACH_BEFORE..REACH_BEFORE + count];
            let right = &block.right[REACH_BEFORE..REACH_BEFORE + count];
            let mut block_energy = 0.0f32;
            for ((peak, l), r) in out.iter_mut().zip(left).zip(right) {
                *peak = l.abs().max(r.abs());
                block_energy += l * l + r * r;
            }
            energy += f64::from(block_energy);
            if loudest < skip_below {
                carried = 0.0;
                continue;
            }
            block.segment_peaks(&self.interpolator, count, floor);
            for (i, peak) in out.iter_mut().enumerate() {
                let before = if i == 0 { carried } else { block.peaks[i - 1] };
                *peak = peak.max(before).max(block.peaks[i]);
            }
            carried = block.peaks[count - 1];
        }
        let block_max = block_maxima(&peaks);
        FramePeaks {
            peaks,
            block_max,
            floor,
            energy,
        }
    }

    /// The limiter's gain for each frame of a signal.
    pub fn gain_envelope(&self, interleaved: &[f32]) -> Vec<f32> {
        let peaks = self.detect(Stereo::Interleaved(interleaved), self.threshold());
        self.envelope(&peaks, 1.0)
    }

    /// Limits interleaved stereo in place.
    pub fn process(&self, interleaved: &mut [f32]) -> LimiterReport {
        let input = Stereo::Interleaved(interleaved);
        let peaks = self.detect(input, self.threshold());
        let limited = self.apply(input, &peaks, 1.0);
        let whole = limited.samples.len();
        interleaved[..whole].copy_from_slice(&limited.samples);
        limited.report
    }

    /// `input` times `gain` (linear), limited, with `peaks` detected beforehand on
    /// `input` (peaks detected with too high a floor for this gain are detected again).
    /// The report includes the output's true peak, measured where the limiter acted and
    /// taken from `peaks` elsewhere (where the output is `input` times `gain`).
    pub fn apply(&self, input: Stereo<'_>, peaks: &FramePeaks, gain: f32) -> Limited {
        self.apply_using(input, peaks, gain, &mut Vec::new())
    }

    /// [`apply`](Self::apply) with a scratch buffer of one value per frame, which is
    /// kept allocated between calls (the chain calls the limiter several times per track).
    pub(crate) fn apply_using(
        &self,
        input: Stereo<'_>,
        peaks: &FramePeaks,
        gain: f32,
        scratch: &mut Vec<f32>,
    ) -> Limited {
        let fresh;
        let threshold = self.threshold() / gain;
        let peaks = if peaks.floor > threshold || peaks.len() != input.frames() {
            fresh = self.detect(input, threshold);
            &fresh
        } else {
            peaks
        };
        self.envelope_into(peaks, gain, scratch);
        let scales = scratch;
        let mut report = LimiterReport::default();
        let mut lowest = 1.0f32;
        // Blocks of BLOCK frames in which the limiter acted.
        let mut acted = vec![false; scales.len().div_ceil(BLOCK)];
        for (block, chunk) in acted.iter_mut().zip(scales.chunks_mut(BLOCK)) {
            for scale in chunk {
                if *scale < 1.0 {
                    report.limited_frames += 1;
                    lowest = lowest.min(*scale);
                    *block = true;
                }
                *scale *= gain;
            }
        }
        if lowest < 1.0 {
            report.max_reduction_db = -amplitude_to_db(f64::from(lowest));
        }
        let samples = input.scaled(scales);
        report.true_peak_dbtp = self.output_true_peak(&samples, peaks, gain, &acted);
        Limited { samples, report }
    }

    /// The true peak of `output` in dBTP: interpolated in and next to the blocks where
    /// the limiter acted, `gain` times the detected peaks elsewhere; measured in full
    /// when that leaves it under the detection floor (where detected peaks are only
    /// sample peaks).
    fn output_true_peak(
        &self,
        output: &[f32],
        peaks: &FramePeaks,
        gain: f32,
        acted: &[bool],
    ) -> f64 {
        let output = Stereo::Interleaved(output);
        let frames = peaks.len();
        let mut block = Block::new();
        let mut peak = 0.0f32;
        for (index, start) in (0..frames).step_by(BLOCK).enumerate() {
            let count = BLOCK.min(frames - start);
            let near = acted[index.saturating_sub(1)..(index + 2).min(acted.len())]
                .iter()
                .any(|&a| a);
            if near {
                let loudest = block.load(output, start, count);
                peak = peak.max(loudest);
                if loudest * self.interpolator.gain_bound > peak {
                    block.segment_peaks(&self.interpolator, count, peak);
                    peak = block.peaks[..count].iter().fold(peak, |a, &b| a.max(b));
                }
            } else {
                let here = peaks.peaks[start..start + count]
                    .iter()
                    .fold(0.0f32, |a, &b| a.max(b));
                peak = peak.max(here * gain);
            }
        }
        if peak < peaks.floor * gain {
            return self.true_peak_dbtp(output);
        }
        amplitude_to_db(f64::from(peak))
    }

    /// How much the limiter would lower the signal's power at `gain`, in dB: the
    /// energy-weighted mean of the squared limiter gain. An estimate of the loudness it
    /// costs (no K-weighting, no gating), for the chain to compensate before it measures.
    pub fn estimated_loss_db(&self, input: Stereo<'_>, peaks: &FramePeaks, gain: f32) -> f64 {
        self.estimated_loss_db_using(input, peaks, gain, &mut Vec::new())
    }

    /// [`estimated_loss_db`](Self::estimated_loss_db) with a scratch buffer (see
    /// [`apply_using`](Self::apply_using)).
    pub(crate) fn estimated_loss_db_using(
        &self,
        input: Stereo<'_>,
        peaks: &FramePeaks,
        gain: f32,
        scratch: &mut Vec<f32>,
    ) -> f64 {
        let fresh;
        let peaks = if peaks.floor > self.threshold() / gain || peaks.len() != input.frames() {
            fresh = self.detect(input, self.threshold() / gain);
            &fresh
        } else {
            peaks
        };
        self.envelope_into(peaks, gain, scratch);
        let gains = scratch;
        // Only limited frames change their energy.
        let mut change = 0.0f64;
        for (n, &limit) in gains.iter().enumerate() {
            if limit < 1.0 {
                change += input.energy(n) * (1.0 - f64::from(limit * limit));
            }
        }
        let total = peaks.energy;
        if change <= 0.0 || total <= 0.0 || change >= total {
            return 0.0;
        }
        -10.0 * ((total - change) / total).log10()
    }

    /// The smooth gain (see the module docs) that holds `gain × peaks` to the threshold.
    fn envelope(&self, peaks: &FramePeaks, gain: f32) -> Vec<f32> {
        let mut gains = Vec::new();
        self.envelope_into(peaks, gain, &mut gains);
        gains
    }

    /// [`envelope`](Self::envelope) into `gains`, which is resized to one value per frame.
    fn envelope_into(&self, peaks: &FramePeaks, gain: f32, gains: &mut Vec<f32>) {
        let threshold = self.threshold() / gain;
        let lookahead = self.lookahead_frames();
        // The required gain for frame j is threshold / the largest peak of frames
        // j − REACH_AFTER ..= j + lookahead + REACH_AFTER: the interpolator reads at
        // most REACH_AFTER samples either way.
        sliding_required_gain(
            &peaks.peaks,
            &peaks.block_max,
            threshold,
            REACH_AFTER,
            lookahead + REACH_AFTER,
            gains,
        );

        let release =
            (-1000.0 / (self.options.release_ms.max(0.01) * f64::from(SAMPLE_RATE))).exp();
        // Release, then a moving average over lookahead + 1 frames (frames before the
        // start count as 1), in place. `settled` counts the frames since the released
        // gain was last below 1: once it reaches the average's width, the output is 1
        // until the required gain drops again.
        let width = lookahead + 1;
        let scale = 1.0 / width as f64;
        let mut ring = vec![1.0f64; width];
        let mut slot = 0;
        let mut sum = width as f64;
        let mut previous = 1.0f64;
        let mut settled = width;
        let mut n = 0;
        while n < gains.len() {
            if settled >= width {
                // Idle: the output is 1 until the required gain drops again.
                match gains[n..].iter().position(|&value| value < 1.0) {
                    Some(skip) => n += skip,
                    None => break,
                }
            }
            let value = &mut gains[n];
            let released = 1.0 - (1.0 - previous) * release;
            // Back to exactly 1 once the difference is below f32 resolution.
            let released = if 1.0 - released < 1e-9 { 1.0 } else { released };
            previous = released.min(f64::from(*value));
            settled = if previous < 1.0 { 0 } else { settled + 1 };
            sum += previous - ring[slot];
            ring[slot] = previous;
            slot = if slot + 1 == width { 0 } else { slot + 1 };
            if settled >= width {
                // The ring holds only ones again: start the next run from a clean sum.
                sum = width as f64;
            }
            *value = ((sum * scale) as f32).min(1.0);
            n += 1;
        }
    }
}

/// The largest value of each block of [`BLOCK`] values.
fn block_maxima(values: &[f32]) -> Vec<f32> {
    values
        .chunks(BLOCK)
        .map(|block| block.iter().fold(0.0f32, |a, &b| a.max(b)))
        .collect()
}

/// `out[j] = min(1, threshold / max(peaks[j − before ..= j + after]))`, clipped to the
/// slice; `block_max` holds the largest peak of each block of [`BLOCK`] frames. The
/// sliding maximum is the van Herk / Gil-Werman algorithm (three comparisons per value
/// whatever the window), and stretches whose blocks hold no peak over the threshold
/// are left at 1 without it.
fn sliding_required_gain(
    peaks: &[f32],
    block_max: &[f32],
    threshold: f32,
    before: usize,
    after: usize,
    out: &mut Vec<f32>,
) {
    let len = peaks.len();
    let width = before + after + 1;
    // The padded sequence p[k] = peaks[k − before] (0 outside); out[j] covers p[j .. j + width].
    let at = |k: usize| -> f32 {
        k.checked_sub(before)
            .and_then(|i| peaks.get(i))
            .copied()
            .unwrap_or(0.0)
    };
    let gain = |peak: f32| {
        if peak > threshold {
            threshold / peak
        } else {
            1.0
        }
    };
    out.clear();
    out.resize(len, 1.0);
    let mut suffix = vec![0.0f32; width];
    let mut base = 0;
    while base < len {
        // Outputs base .. base + width read peaks[low .. high].
        let low = base.saturating_sub(before);
        let high = (base + 2 * width)
            .saturating_sub(before)
            .min(len)
            .max(low + 1);
        let last_block = ((high - 1) / BLOCK).min(block_max.len().saturating_sub(1));
        let quiet = block_max
            .get(low / BLOCK..=last_block)
            .is_none_or(|blocks| blocks.iter().all(|&peak| peak <= threshold));
        if !quiet {
            let mut running = 0.0f32;
            for i in (0..width).rev() {
                running = running.max(at(base + i));
                suffix[i] = running;
            }
            let mut prefix = 0.0f32;
            let outputs = &mut out[base..(base + width).min(len)];
            for (i, (slot, &tail)) in outputs.iter_mut().zip(&suffix).enumerate() {
                if i > 0 {
                    prefix = prefix.max(at(base + width + i - 1));
                }
                *slot = gain(tail.max(prefix));
            }
        }
        base += width;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::loudness::{Measure, measure};

    fn burst(frames: usize, quiet: f32, loud: f32, from: usize, to: usize) -> Vec<f32> {
        (0..frames)
            .flat_map(|n| {
                let level = if (from..to).contains(&n) { loud } else { quiet };
                let x = level * (2.0 * std::f32::consts::PI * 997.0 * n as f32 / 48_000.0).sin();
                [x, -0.8 * x]
            })
            .collect()
    }

    #[test]
    fn sliding_required_gain_matches_a_direct_search() {
        // Long runs under the threshold take the fast path; the others the general one.
        let dense: Vec<f32> = (0..200).map(|i| ((i * 7919) % 97) as f32 / 50.0).collect();
        let sparse: Vec<f32> = (0..500)
            .map(|i| if i % 97 == 3 { 1.5 } else { 0.2 })
            .collect();
        for peaks in [dense, sparse] {
            for (before, after) in [(3, 5), (0, 7), (12, 84)] {
                let mut out = Vec::new();
                sliding_required_gain(&peaks, &block_maxima(&peaks), 0.9, before, after, &mut out);
                assert_eq!(out.len(), peaks.len());
                for (j, &got) in out.iter().enumerate() {
                    let lo = j.saturating_sub(before);
                    let hi = (j + after).min(peaks.len() - 1);
                    let loudest = peaks[lo..=hi].iter().cloned().fold(0.0, f32::max);
                    let want = if loudest > 0.9 { 0.9 / loudest } else { 1.0 };
                    assert_eq!(got, want, "j {j} window {before}+{after}");
                }
            }
        }
    }

    #[test]
    fn the_interpolator_finds_the_peak_between_samples() {
        // A sine at a quarter of the rate, sampled 45 degrees off its crests: samples
        // read 0.707 of the amplitude, the true peak is the amplitude.
        // It fades in and out so that its edges add no overshoot of their own.
        let samples: Vec<f32> = (0..4800)
            .flat_map(|n| {
                let fade = (n.min(4799 - n) as f64 / 1000.0).min(1.0);
                let x = (fade * (PI / 2.0 * n as f64 + PI / 4.0).sin()) as f32;
                [x, x]
            })
            .collect();
        let sample_peak = samples.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
        let true_peak = Interpolator::new().true_peak(Stereo::Interleaved(&samples));
        assert!((sample_peak - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-3);
        assert!((true_peak - 1.0).abs() < 0.01, "{true_peak}");
    }

    #[test]
    fn limited_audio_stays_under_the_ceiling_on_our_meter_and_ebur128() {
        let mut samples = burst(96_000, 0.3, 4.0, 30_000, 60_000);
        let limiter = TruePeakLimiter::new(LimiterOptions::default());
        let report = limiter.process(&mut samples);
        assert!(report.max_reduction_db > 10.0);
        let ours = amplitude_to_db(f64::from(
            Interpolator::new().true_peak(Stereo::Interleaved(&samples)),
        ));
        assert!(
            ours <= DEFAULT_CEILING_DBTP - DEFAULT_SAFETY_DB + 0.01,
            "{ours}"
        );
        let meter = measure(&samples, Measure::WITH_TRUE_PEAK).unwrap();
        assert!(
            meter.true_peak_dbtp.unwrap() <= DEFAULT_CEILING_DBTP,
            "{meter:?}"
        );
    }

    #[test]
    fn the_limiter_adds_no_clicks() {
        let samples = burst(96_000, 0.2, 8.0, 40_000, 40_500);
        let limiter = TruePeakLimiter::new(LimiterOptions::default());
        let gains = limiter.gain_envelope(&samples);
        let bound = 1.0 / (limiter.lookahead_frames() + 1) as f32 + 1e-6;
        let largest = gains
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f32::max);
        assert!(largest <= bound, "gain moved by {largest} in one sample");
        // The attack starts a lookahead ahead of the burst, and the release is gradual.
        let lookahead = limiter.lookahead_frames();
        assert!(gains[40_000 - lookahead - 2 * INTERPOLATOR_TAPS] > 0.999);
        assert!(gains[40_000] < 0.2);
        assert!(gains[40_500 + 2 * lookahead] < 0.5);
        assert!(gains[95_999] > 0.99);
    }

    #[test]
    fn quiet_audio_passes_untouched() {
        let original = burst(48_000, 0.25, 0.25, 0, 0);
        let mut samples = original.clone();
        let report = TruePeakLimiter::new(LimiterOptions::default()).process(&mut samples);
        assert_eq!(report.limited_frames, 0);
        assert_eq!(report.max_reduction_db, 0.0);
        assert!((report.true_peak_dbtp - amplitude_to_db(0.25)).abs() < 0.05);
        assert_eq!(samples, original);
    }
}
