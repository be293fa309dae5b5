//! Spectral EQ: the correction from a track's long-term spectrum to a target
//! spectrum, as a linear-phase FIR for the mid and one for the side channel.
//!
//! # The correction curve
//! 1. Both spectra are smoothed in fractional octaves (default 1/3): the value at a
//!    frequency `f` is the mean power of the linearly interpolated spectrum over
//!    `f·2^(−b/2) ..= f·2^(b/2)`. Curves live on a grid of [`GRID_POINTS_PER_OCTAVE`]
//!    points per octave from [`EQ_LOW_HZ`] to [`EQ_HIGH_HZ`].
//! 2. The target is level-matched to the track: scaled so that both hold the same
//!    power over 20 Hz-20 kHz.
//! 3. The correction is the difference in dB, bounded to `±max_eq_db`.
//! 4. Outside 20 Hz-20 kHz nothing is boosted: below 20 Hz the curve keeps the cut
//!    it has at 20 Hz (or 0 dB); boosts fade in over [`BOOST_FADE_IN_HZ`] above 20 Hz,
//!    and the FIR design corrects what its smearing still leaks under 20 Hz (see
//!    [`FirDesigner`]); above 20 kHz boosts fade out by 22 kHz.
//!
//! The mid channel's curve goes from the track's mid spectrum to the target's. For a
//! reference track, the side channel gets its own curve to the reference's side
//! spectrum (with the mid's level match, so that the stereo width is matched too);
//! where either side holds less than −60 dB of its mid, the mid's correction is used.
//! Genre targets have no side spectrum: the side gets the mid's filter.
//!
//! # The FIR
//! Frequency sampling: the curve is sampled with zero phase on a grid four times
//! longer than the filter, brought to the time domain with an inverse real FFT,
//! centred, cut to an odd length (default [`DEFAULT_FIR_TAPS`]) and windowed
//! (Hann); see [`FirDesigner`] for how leaks under 20 Hz are corrected. The taps are
//! exactly symmetric, so the filter is linear-phase; applied through
//! [`SpectralKernels::convolve`] it adds no delay.
//!
//! # Limits
//! The analysis spectra have 11.7 Hz bins (the kernels' 4096-point frames), so below
//! about 50 Hz the curve follows the spectrum's shape only roughly; and a band that
//! needs more than `max_eq_db` is corrected by that much only.

use std::f64::consts::PI;
use std::fmt;
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::error::MasterError;
use super::kernels::{ANALYSIS_BINS, ANALYSIS_FFT, ConvolveJob, MAX_FIR_TAPS, SpectralKernels};
use crate::frame::SAMPLE_RATE;
use crate::generate::Genre;

/// Lowest frequency the EQ corrects.
pub const EQ_LOW_HZ: f64 = 20.0;
/// Highest frequency the EQ corrects.
pub const EQ_HIGH_HZ: f64 = 20_000.0;
/// Frequency above which boosts have faded out completely.
pub const BOOST_FADE_OUT_HZ: f64 = 22_000.0;
/// Width of the band above [`EQ_LOW_HZ`] over which boosts fade in (a raised cosine).
pub const BOOST_FADE_IN_HZ: f64 = 10.0;
/// Resolution of correction curves.
pub const GRID_POINTS_PER_OCTAVE: usize = 48;
/// Default bound of the correction, in dB either way.
pub const DEFAULT_MAX_EQ_DB: f64 = 12.0;
/// Default smoothing width, in octaves.
pub const DEFAULT_SMOOTHING_OCTAVES: f64 = 1.0 / 3.0;
/// Default FIR length: 171 ms, a frequency resolution of about 6 Hz, fine enough to
/// correct 20-60 Hz and to keep boosts above 20 Hz from leaking under it.
pub const DEFAULT_FIR_TAPS: usize = 8191;
/// Side bands weaker than their mid by more than this (in power) take the mid's correction.
const SIDE_FLOOR: f64 = 1e-6;

/// Options of the spectral EQ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EqOptions {
    /// Largest boost or cut, in dB. Default 12.
    pub max_eq_db: f64,
    /// Smoothing width of both spectra, in octaves. Default 1/3.
    pub smoothing_octaves: f64,
    /// FIR length: odd, at most [`MAX_FIR_TAPS`]. Default 8191.
    pub taps: usize,
}

impl Default for EqOptions {
    fn default() -> Self {
        Self {
            max_eq_db: DEFAULT_MAX_EQ_DB,
            smoothing_octaves: DEFAULT_SMOOTHING_OCTAVES,
            taps: DEFAULT_FIR_TAPS,
        }
    }
}

impl EqOptions {
    /// Checks every option against its range.
    pub fn check(&self) -> Result<(), MasterError> {
        if !(0.0..=24.0).contains(&self.max_eq_db) {
            return Err(MasterError::BadOption {
                option: "max_eq_db",
                value: self.max_eq_db,
                expected: "0 ..= 24 dB",
            });
        }
        if !(self.smoothing_octaves > 0.0 && self.smoothing_octaves <= 2.0) {
            return Err(MasterError::BadOption {
                option: "smoothing_octaves",
                value: self.smoothing_octaves,
                expected: "more than 0 and at most 2 octaves",
            });
        }
        if self.taps.is_multiple_of(2) || !(3..=MAX_FIR_TAPS).contains(&self.taps) {
            return Err(MasterError::BadOption {
                option: "taps",
                value: self.taps as f64,
                expected: "an odd number from 3 to 8191",
            });
        }
        Ok(())
    }
}

/// A built-in target: the long-term spectrum typical of a genre, as a smooth tilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GenreTarget {
    /// A balanced mix of no genre in particular.
    #[default]
    Neutral,
    /// Warm and low-passed: more low mids, fewer highs.
    Lofi,
    /// Strong kick and bass, bright hats.
    House,
    /// Like house, a little darker in the mids.
    Techno,
    /// Full low mids and mids from pads and saws.
    Synthwave,
    /// Soft highs, pads and drones.
    Ambient,
}

/// Centres of the octave bands of the genre curves, in Hz.
pub const GENRE_BAND_CENTRES_HZ: [f64; 10] = [
    31.25, 62.5, 125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16_000.0,
];

impl GenreTarget {
    /// Every target, neutral first.
    pub const ALL: [GenreTarget; 6] = [
        GenreTarget::Neutral,
        GenreTarget::Lofi,
        GenreTarget::House,
        GenreTarget::Techno,
        GenreTarget::Synthwave,
        GenreTarget::Ambient,
    ];

    /// The genre's name as the generator spells it; "neutral" for the default.
    pub fn name(&self) -> &'static str {
        match self {
            GenreTarget::Neutral => "neutral",
            GenreTarget::Lofi => "lofi",
            GenreTarget::House => "house",
            GenreTarget::Techno => "techno",
            GenreTarget::Synthwave => "synthwave",
            GenreTarget::Ambient => "ambient",
        }
    }

    /// The target for a genre's name (case-insensitive), if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|target| target.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The target's power spectral density in dB at [`GENRE_BAND_CENTRES_HZ`], up to
    /// a constant (only the shape matters: targets are level-matched to the track).
    pub fn band_levels_db(&self) -> [f64; 10] {
        // Smoothed from the long-term spectra of the procedural generator's genres
        // (four seeds each), relative to the 62.5 Hz band; neutral is their mean.
        match self {
            GenreTarget::Neutral => [
                -5.0, 0.0, -4.0, -9.0, -14.0, -19.5, -25.0, -30.5, -36.0, -42.0,
            ],
            GenreTarget::Lofi => [
                -8.0, 0.0, -4.0, -9.0, -14.0, -20.0, -26.0, -32.0, -39.0, -48.0,
            ],
            GenreTarget::House => [
                -3.0, 0.0, -5.0, -11.0, -16.0, -21.0, -26.0, -31.0, -35.0, -40.0,
            ],
            GenreTarget::Techno => [
                -3.0, 0.0, -5.0, -11.0, -16.0, -22.0, -28.0, -33.0, -37.0, -41.0,
            ],
            GenreTarget::Synthwave => [
                -5.0, 0.0, -2.0, -7.0, -11.0, -15.0, -19.0, -24.0, -29.0, -35.0,
            ],
            GenreTarget::Ambient => [
                -6.0, 0.0, -5.0, -8.0, -12.0, -18.0, -24.0, -31.0, -39.0, -48.0,
            ],
        }
    }

    /// The target's density in dB at `hz`: linear in log-frequency between band
    /// centres, held beyond the outer ones.
    pub fn level_db_at(&self, hz: f64) -> f64 {
        let levels = self.band_levels_db();
        let position = (hz.max(1e-3) / GENRE_BAND_CENTRES_HZ[0]).log2();
        if position <= 0.0 {
            return levels[0];
        }
        let last = levels.len() - 1;
        if position >= last as f64 {
            return levels[last];
        }
        let index = position.floor() as usize;
        let t = position - index as f64;
        levels[index] * (1.0 - t) + levels[index + 1] * t
    }
}

impl From<Genre> for GenreTarget {
    fn from(genre: Genre) -> Self {
        match genre {
            Genre::Lofi => GenreTarget::Lofi,
            Genre::Techno => GenreTarget::Techno,
            Genre::Ambient => GenreTarget::Ambient,
            Genre::House => GenreTarget::House,
            Genre::Synthwave => GenreTarget::Synthwave,
        }
    }
}

/// The long-term mid and side spectra of a reference track, analysed like the tracks
/// (see [`analysis`](super::analysis)).
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceSpectrum {
    mid: Vec<f32>,
    side: Vec<f32>,
}

impl ReferenceSpectrum {
    /// From the mid and side spectra of a reference ([`ANALYSIS_BINS`] bins each).
    pub fn new(mid: Vec<f32>, side: Vec<f32>) -> Result<Self, MasterError> {
        for spectrum in [&mid, &side] {
            if spectrum.len() != ANALYSIS_BINS {
                return Err(MasterError::BadReference {
                    found: spectrum.len(),
                    expected: ANALYSIS_BINS,
                });
            }
        }
        Ok(Self { mid, side })
    }

    /// Analyses a reference track of interleaved stereo at 48 kHz.
    pub fn analyse(
        kernels: &mut dyn SpectralKernels,
        interleaved: &[f32],
    ) -> Result<Self, MasterError> {
        super::error::check_tracks(&[interleaved])?;
        let channels = [super::analysis::split_mid_side(interleaved)];
        let mut spectra = super::analysis::mid_side_spectra(kernels, &channels)?;
        let (mid, side) = spectra.pop().ok_or(MasterError::KernelOutput {
            backend: kernels.name(),
            expected: 2,
            found: 0,
        })?;
        Self::new(mid, side)
    }

    /// The mid channel's spectrum.
    pub fn mid(&self) -> &[f32] {
        &self.mid
    }

    /// The side channel's spectrum.
    pub fn side(&self) -> &[f32] {
        &self.side
    }
}

/// What the EQ aims for.
#[derive(Debug, Clone, PartialEq)]
pub enum EqTarget {
    /// The spectra of a reference track.
    Reference(ReferenceSpectrum),
    /// A built-in curve for a genre.
    Genre(GenreTarget),
}

impl Default for EqTarget {
    /// The neutral built-in curve.
    fn default() -> Self {
        EqTarget::Genre(GenreTarget::Neutral)
    }
}

/// A correction curve: gains in dB on a log-frequency grid over 20 Hz-20 kHz.
#[derive(Debug, Clone, PartialEq)]
pub struct EqCurve {
    gains_db: Vec<f64>,
}

impl EqCurve {
    /// The flat curve (0 dB everywhere).
    pub fn flat() -> Self {
        Self {
            gains_db: vec![0.0; grid_len()],
        }
    }

    /// Gains at the grid points [`grid_hz`].
    pub fn gains_db(&self) -> &[f64] {
        &self.gains_db
    }

    /// The smallest gain over 20 Hz-20 kHz (the deepest cut when negative).
    pub fn min_db(&self) -> f64 {
        self.gains_db.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The largest gain over 20 Hz-20 kHz (the largest boost when positive).
    pub fn max_db(&self) -> f64 {
        self.gains_db
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// The gain in dB at any frequency, with the roll-off outside 20 Hz-20 kHz.
    pub fn gain_db_at(&self, hz: f64) -> f64 {
        let last = self.gains_db.len() - 1;
        if hz <= EQ_LOW_HZ {
            return self.gains_db[0].min(0.0);
        }
        if hz >= EQ_HIGH_HZ {
            let edge = self.gains_db[last];
            return if edge <= 0.0 {
                edge
            } else {
                edge * raised_cosine((BOOST_FADE_OUT_HZ - hz) / (BOOST_FADE_OUT_HZ - EQ_HIGH_HZ))
            };
        }
        let position = (hz / EQ_LOW_HZ).log2() * GRID_POINTS_PER_OCTAVE as f64;
        let index = (position.floor() as usize).min(last - 1);
        let t = position - index as f64;
        self.gains_db[index] * (1.0 - t) + self.gains_db[index + 1] * t
    }
}

/// Points of the curve grid.
fn grid_len() -> usize {
    ((EQ_HIGH_HZ / EQ_LOW_HZ).log2() * GRID_POINTS_PER_OCTAVE as f64).floor() as usize + 1
}

/// The frequencies of the curve grid: [`GRID_POINTS_PER_OCTAVE`] per octave from 20 Hz.
pub fn grid_hz() -> Vec<f64> {
    (0..grid_len())
        .map(|i| EQ_LOW_HZ * 2f64.powf(i as f64 / GRID_POINTS_PER_OCTAVE as f64))
        .collect()
}

/// 0 at `x <= 0`, 1 at `x >= 1`, a raised cosine between.
fn raised_cosine(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    0.5 - 0.5 * (PI * x).cos()
}

/// A power spectrum with bins every `ANALYSIS bin` Hz, interpolated linearly between
/// bins, with its running integral for band means.
struct SmoothedSpectrum<'a> {
    power: &'a [f32],
    cumulative: Vec<f64>,
}

impl<'a> SmoothedSpectrum<'a> {
    fn new(power: &'a [f32]) -> Self {
        let mut cumulative = Vec::with_capacity(power.len());
        let mut sum = 0.0;
        cumulative.push(0.0);
        for pair in power.windows(2) {
            sum += 0.5 * (f64::from(pair[0]) + f64::from(pair[1]));
            cumulative.push(sum);
        }
        Self { power, cumulative }
    }

    fn value(&self, bin: usize) -> f64 {
        self.power.get(bin).copied().map_or(0.0, f64::from)
    }

    /// Integral of the interpolated spectrum from bin 0 to the fractional bin `x`.
    fn integral(&self, x: f64) -> f64 {
        let last = self.power.len().saturating_sub(1);
        let x = x.clamp(0.0, last as f64);
        let index = (x.floor() as usize).min(last.saturating_sub(1));
        let t = x - index as f64;
        let (a, b) = (self.value(index), self.value(index + 1));
        self.cumulative.get(index).copied().unwrap_or(0.0) + a * t + 0.5 * (b - a) * t * t
    }

    /// Mean power over `hz·2^(−octaves/2) ..= hz·2^(octaves/2)`.
    fn mean_around(&self, hz: f64, octaves: f64) -> f64 {
        let bin_hz = f64::from(SAMPLE_RATE) / ANALYSIS_FFT as f64;
        let half = 2f64.powf(octaves / 2.0);
        let low = hz / half / bin_hz;
        let high = hz * half / bin_hz;
        (self.integral(high) - self.integral(low)) / (high - low)
    }
}

/// A spectrum smoothed onto the curve grid (power per bin).
fn smooth_on_grid(power: &[f32], octaves: f64, grid: &[f64]) -> Vec<f64> {
    let spectrum = SmoothedSpectrum::new(power);
    grid.iter()
        .map(|&hz| spectrum.mean_around(hz, octaves).max(0.0))
        .collect()
}

/// Power over the grid (20 Hz-20 kHz): the integral over frequency of a density
/// sampled on the log grid.
fn grid_power(density: &[f64], grid: &[f64]) -> f64 {
    density.iter().zip(grid).map(|(&p, &hz)| p * hz).sum()
}

/// Fits boosts into the roll-off: they fade in over [`BOOST_FADE_IN_HZ`] above 20 Hz.
fn fade_in_boosts(gains_db: &mut [f64], grid: &[f64]) {
    for (gain, &hz) in gains_db.iter_mut().zip(grid) {
        if *gain > 0.0 {
            *gain *= raised_cosine((hz - EQ_LOW_HZ) / BOOST_FADE_IN_HZ);
        }
    }
}

/// The bounded difference `target · scale − track` in dB on the grid.
fn bounded_difference(track: &[f64], target: &[f64], scale: f64, max_db: f64) -> Vec<f64> {
    // A floor 120 dB under the track's mean keeps silent bands finite.
    let mean = track.iter().sum::<f64>() / track.len().max(1) as f64;
    let floor = (mean * 1e-12).max(f64::MIN_POSITIVE);
    track
        .iter()
        .zip(target)
        .map(|(&have, &want)| {
            let db = 10.0 * ((want * scale + floor) / (have + floor)).log10();
            db.clamp(-max_db, max_db)
        })
        .collect()
}

/// The mid and side correction curves for a track with the given spectra.
pub fn correction_curves(
    mid_spectrum: &[f32],
    side_spectrum: &[f32],
    target: &EqTarget,
    options: &EqOptions,
) -> (EqCurve, EqCurve) {
    let grid = grid_hz();
    let mid = smooth_on_grid(mid_spectrum, options.smoothing_octaves, &grid);
    let mid_power = grid_power(&mid, &grid);
    if mid_power <= 0.0 || !mid_power.is_finite() {
        // Silence (or nothing in 20 Hz-20 kHz): there is nothing to correct.
        return (EqCurve::flat(), EqCurve::flat());
    }
    let target_mid: Vec<f64> = match target {
        EqTarget::Reference(reference) => {
            smooth_on_grid(&reference.mid, options.smoothing_octaves, &grid)
        }
        EqTarget::Genre(genre) => grid
            .iter()
            .map(|&hz| 10f64.powf(genre.level_db_at(hz) / 10.0))
            .collect(),
    };
    let target_power = grid_power(&target_mid, &grid);
    if target_power <= 0.0 || !target_power.is_finite() {
        return (EqCurve::flat(), EqCurve::flat());
    }
    let scale = mid_power / target_power;
    let mut mid_gains = bounded_difference(&mid, &target_mid, scale, options.max_eq_db);

    let mut side_gains = match target {
        EqTarget::Genre(_) => mid_gains.clone(),
        EqTarget::Reference(reference) => {
            let side = smooth_on_grid(side_spectrum, options.smoothing_octaves, &grid);
            let target_side = smooth_on_grid(&reference.side, options.smoothing_octaves, &grid);
            let own = bounded_difference(&side, &target_side, scale, options.max_eq_db);
            own.iter()
                .enumerate()
                .map(|(i, &gain)| {
                    let weak_here = side[i] < SIDE_FLOOR * mid[i];
                    let weak_there = target_side[i] < SIDE_FLOOR * target_mid[i];
                    if weak_here || weak_there {
                        mid_gains[i]
                    } else {
                        gain
                    }
                })
                .collect()
        }
    };
    fade_in_boosts(&mut mid_gains, &grid);
    fade_in_boosts(&mut side_gains, &grid);
    (
        EqCurve {
            gains_db: mid_gains,
        },
        EqCurve {
            gains_db: side_gains,
        },
    )
}

/// Designs linear-phase FIRs from correction curves by frequency sampling.
///
/// The window smears the curve by the filter's frequency resolution, so a boost just
/// above 20 Hz leaks under it. After each design the response is measured on the
/// design grid up to the first bin above 20 Hz, and wherever it is above 0 dB the
/// curve there is lowered by a multiple of the excess (cutting there is allowed) and
/// the filter designed again, at most [`LEAK_PASSES`] times. With the default 8191
/// taps the response under 19.5 Hz stays under +0.1 dB even next to a 12 dB boost.
pub struct FirDesigner {
    taps: usize,
    forward: Arc<dyn RealToComplex<f64>>,
    inverse: Arc<dyn ComplexToReal<f64>>,
    spectrum: Vec<Complex<f64>>,
    impulse: Vec<f64>,
    scratch: Vec<Complex<f64>>,
    window: Vec<f64>,
}

/// Designs per filter at most, while correcting leaks under 20 Hz.
pub const LEAK_PASSES: usize = 24;
/// How many times the excess each correction takes off (the curve only ever goes
/// down, so this converges; a larger factor converges in fewer passes).
const LEAK_RELAXATION: f64 = 3.0;
/// The largest boost under 20 Hz left uncorrected, in dB.
const LEAK_TOLERANCE_DB: f64 = 0.02;

impl fmt::Debug for FirDesigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirDesigner")
            .field("taps", &self.taps)
            .field("grid", &self.impulse.len())
            .finish_non_exhaustive()
    }
}

impl FirDesigner {
    /// A designer of `taps`-long filters (odd; see [`EqOptions::check`]).
    pub fn new(taps: usize) -> Self {
        let taps = taps.clamp(1, MAX_FIR_TAPS) | 1;
        let grid = 4 * taps.next_power_of_two();
        let mut planner = RealFftPlanner::<f64>::new();
        let inverse = planner.plan_fft_inverse(grid);
        let forward = planner.plan_fft_forward(grid);
        let scratch_len = inverse.get_scratch_len().max(forward.get_scratch_len());
        // A Hann window that does not reach zero at either end (length taps + 1 inside).
        let window = (0..taps)
            .map(|j| 0.5 - 0.5 * (2.0 * PI * (j + 1) as f64 / (taps + 1) as f64).cos())
            .collect();
        Self {
            taps,
            spectrum: inverse.make_input_vec(),
            impulse: inverse.make_output_vec(),
            scratch: vec![Complex::default(); scratch_len],
            window,
            forward,
            inverse,
        }
    }

    /// The filter length.
    pub fn taps(&self) -> usize {
        self.taps
    }

    /// The linear-phase FIR whose magnitude follows `curve`.
    pub fn design(&mut self, curve: &EqCurve) -> Result<Vec<f32>, MasterError> {
        let grid = self.impulse.len();
        let hz_per_bin = f64::from(SAMPLE_RATE) / grid as f64;
        let mut desired_db: Vec<f64> = (0..self.spectrum.len())
            .map(|k| curve.gain_db_at(k as f64 * hz_per_bin))
            .collect();
        // Every grid bin under 20 Hz and the first one above it, so that the response
        // between the last two is held down too.
        let below_20_hz = (EQ_LOW_HZ / hz_per_bin).floor() as usize + 2;
        let mut taps = self.synthesise(&desired_db)?;
        for _ in 1..LEAK_PASSES {
            let response_db = self.response_db(&taps, below_20_hz)?;
            let mut leaked = false;
            for (desired, response) in desired_db.iter_mut().zip(response_db) {
                if response > LEAK_TOLERANCE_DB {
                    // Over-relaxed: a cut here is also smeared upwards, so a plain
                    // correction would approach the goal only slowly.
                    *desired -= LEAK_RELAXATION * response;
                    leaked = true;
                }
            }
            if !leaked {
                break;
            }
            taps = self.synthesise(&desired_db)?;
        }
        Ok(taps.into_iter().map(|t| t as f32).collect())
    }

    /// Zero-phase frequency sampling of `desired_db` (one value per grid bin), centred,
    /// windowed and made exactly symmetric.
    fn synthesise(&mut self, desired_db: &[f64]) -> Result<Vec<f64>, MasterError> {
        let grid = self.impulse.len();
        for (bin, &db) in self.spectrum.iter_mut().zip(desired_db) {
            *bin = Complex::new(10f64.powf(db / 20.0) / grid as f64, 0.0);
        }
        self.inverse
            .process_with_scratch(&mut self.spectrum, &mut self.impulse, &mut self.scratch)
            .map_err(|error| MasterError::Design(error.to_string()))?;
        let centre = (self.taps - 1) / 2;
        let mut taps: Vec<f64> = (0..self.taps)
            .map(|j| {
                let at = (j + grid - centre) % grid;
                self.impulse[at] * self.window[j]
            })
            .collect();
        for j in 0..centre {
            let mean = 0.5 * (taps[j] + taps[self.taps - 1 - j]);
            taps[j] = mean;
            taps[self.taps - 1 - j] = mean;
        }
        Ok(taps)
    }

    /// The magnitude response in dB of `taps` at the first `bins` grid bins.
    fn response_db(&mut self, taps: &[f64], bins: usize) -> Result<Vec<f64>, MasterError> {
        self.impulse.fill(0.0);
        self.impulse[..taps.len()].copy_from_slice(taps);
        self.forward
            .process_with_scratch(&mut self.impulse, &mut self.spectrum, &mut self.scratch)
            .map_err(|error| MasterError::Design(error.to_string()))?;
        Ok(self.spectrum[..bins.min(self.spectrum.len())]
            .iter()
            .map(|bin| 10.0 * bin.norm_sqr().log10())
            .collect())
    }
}

/// The filters the EQ applies to one track.
#[derive(Debug, Clone, PartialEq)]
pub struct EqFilters {
    /// The mid channel's correction.
    pub mid_curve: EqCurve,
    /// The side channel's correction.
    pub side_curve: EqCurve,
    /// The mid channel's FIR.
    pub mid_taps: Vec<f32>,
    /// The side channel's FIR (a copy of the mid's when the curves are the same).
    pub side_taps: Vec<f32>,
}

impl EqFilters {
    /// The smallest gain of either curve, in dB.
    pub fn min_db(&self) -> f64 {
        self.mid_curve.min_db().min(self.side_curve.min_db())
    }

    /// The largest gain of either curve, in dB.
    pub fn max_db(&self) -> f64 {
        self.mid_curve.max_db().max(self.side_curve.max_db())
    }
}

/// The spectral EQ: designs the filters for a track and applies them.
#[derive(Debug)]
pub struct SpectralEq {
    options: EqOptions,
    designer: FirDesigner,
}

impl SpectralEq {
    /// An EQ with the given options (see [`EqOptions::check`]).
    pub fn new(options: EqOptions) -> Self {
        Self {
            designer: FirDesigner::new(options.taps),
            options,
        }
    }

    /// The options in use.
    pub fn options(&self) -> &EqOptions {
        &self.options
    }

    /// The curves and filters that bring a track with these spectra to `target`.
    pub fn design(
        &mut self,
        mid_spectrum: &[f32],
        side_spectrum: &[f32],
        target: &EqTarget,
    ) -> Result<EqFilters, MasterError> {
        let (mid_curve, side_curve) =
            correction_curves(mid_spectrum, side_spectrum, target, &self.options);
        let mid_taps = self.designer.design(&mid_curve)?;
        let side_taps = if side_curve == mid_curve {
            mid_taps.clone()
        } else {
            self.designer.design(&side_curve)?
        };
        Ok(EqFilters {
            mid_curve,
            side_curve,
            mid_taps,
            side_taps,
        })
    }

    /// Filters mid and side channels in place (one kernel call for both).
    pub fn apply(
        kernels: &mut dyn SpectralKernels,
        filters: &EqFilters,
        mid: &mut Vec<f32>,
        side: &mut Vec<f32>,
    ) -> Result<(), MasterError> {
        let mut mid_out = vec![0.0; mid.len()];
        let mut side_out = vec![0.0; side.len()];
        let backend = kernels.name();
        kernels
            .convolve(&mut [
                ConvolveJob {
                    input: mid,
                    taps: &filters.mid_taps,
                    output: &mut mid_out,
                },
                ConvolveJob {
                    input: side,
                    taps: &filters.side_taps,
                    output: &mut side_out,
                },
            ])
            .map_err(|source| MasterError::Kernel { backend, source })?;
        *mid = mid_out;
        *side = side_out;
        Ok(())
    }
}

/// The magnitude response in dB of a linear-phase FIR at `hz` (for tests and reports).
pub fn fir_response_db(taps: &[f32], hz: f64) -> f64 {
    let centre = (taps.len() as f64 - 1.0) / 2.0;
    let omega = 2.0 * PI * hz / f64::from(SAMPLE_RATE);
    let (mut re, mut im) = (0.0, 0.0);
    for (j, &tap) in taps.iter().enumerate() {
        let phase = omega * (j as f64 - centre);
        re += f64::from(tap) * phase.cos();
        im += f64::from(tap) * phase.sin();
    }
    10.0 * (re * re + im * im).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spectrum with a density that is `db(hz)` dB.
    fn spectrum(db: impl Fn(f64) -> f64) -> Vec<f32> {
        let bin_hz = f64::from(SAMPLE_RATE) / ANALYSIS_FFT as f64;
        (0..ANALYSIS_BINS)
            .map(|k| 10f64.powf(db((k as f64 * bin_hz).max(1.0)) / 10.0) as f32)
            .collect()
    }

    fn pink(hz: f64) -> f64 {
        -3.0 * (hz / 1000.0).log2()
    }

    fn reference() -> EqTarget {
        let mid = spectrum(pink);
        let side = spectrum(|hz| pink(hz) - 10.0);
        EqTarget::Reference(ReferenceSpectrum::new(mid, side).unwrap())
    }

    #[test]
    fn matching_spectra_need_no_correction() {
        let mid = spectrum(|hz| pink(hz) + 7.0);
        let side = spectrum(|hz| pink(hz) - 3.0);
        let (mid_curve, side_curve) =
            correction_curves(&mid, &side, &reference(), &EqOptions::default());
        assert!(
            mid_curve.min_db() > -0.05 && mid_curve.max_db() < 0.05,
            "{mid_curve:?}"
        );
        assert!(side_curve.min_db() > -0.05 && side_curve.max_db() < 0.05);
    }

    #[test]
    fn a_dull_track_gets_its_highs_back_within_the_bound() {
        let dull = spectrum(|hz| pink(hz) - if hz > 4000.0 { 9.0 } else { 0.0 });
        let side = spectrum(|hz| pink(hz) - 10.0);
        let (curve, _) = correction_curves(&dull, &side, &reference(), &EqOptions::default());
        let boost = curve.gain_db_at(10_000.0) - curve.gain_db_at(500.0);
        assert!((boost - 9.0).abs() < 0.3, "boost {boost}");

        let very_dull = spectrum(|hz| pink(hz) - if hz > 4000.0 { 40.0 } else { 0.0 });
        let (curve, _) = correction_curves(&very_dull, &side, &reference(), &EqOptions::default());
        assert!(curve.max_db() <= DEFAULT_MAX_EQ_DB + 1e-9);
        assert!(curve.min_db() >= -DEFAULT_MAX_EQ_DB - 1e-9);
    }

    #[test]
    fn a_bass_heavy_track_is_cut_between_20_and_60_hz() {
        let heavy = spectrum(|hz| pink(hz) + if hz < 80.0 { 10.0 } else { 0.0 });
        let side = spectrum(|hz| pink(hz) - 10.0);
        let (curve, _) = correction_curves(&heavy, &side, &reference(), &EqOptions::default());
        for hz in [25.0, 35.0, 50.0] {
            let cut = curve.gain_db_at(hz) - curve.gain_db_at(1000.0);
            assert!(cut < -8.0, "{hz} Hz: {cut}");
        }
    }

    #[test]
    fn the_fir_follows_the_curve_and_boosts_nothing_below_20_hz() {
        // A track thin in the lows and dull in the highs: boosts at both ends.
        let thin = spectrum(|hz| {
            pink(hz)
                - if (100.0..=8000.0).contains(&hz) {
                    0.0
                } else {
                    12.0
                }
        });
        let side = spectrum(|hz| pink(hz) - 10.0);
        let mut eq = SpectralEq::new(EqOptions::default());
        let filters = eq.design(&thin, &side, &reference()).unwrap();
        let taps = &filters.mid_taps;
        assert_eq!(taps.len(), DEFAULT_FIR_TAPS);
        for j in 0..taps.len() / 2 {
            assert_eq!(taps[j], taps[taps.len() - 1 - j]);
        }
        // Within 1 dB of the curve where the curve is smooth on the FIR's scale.
        for hz in [200.0, 500.0, 1000.0, 3000.0, 5000.0, 12_000.0, 16_000.0] {
            let want = filters.mid_curve.gain_db_at(hz);
            let got = fir_response_db(taps, hz);
            assert!((got - want).abs() < 1.0, "{hz} Hz: {got} vs {want}");
        }
        for hz in [0.0, 2.0, 5.0, 10.0, 15.0, 18.0, 19.0, 19.5] {
            let got = fir_response_db(taps, hz);
            assert!(got <= 0.1, "{hz} Hz is boosted by {got} dB");
        }
    }

    #[test]
    fn genre_targets_are_smooth_and_named() {
        for target in GenreTarget::ALL {
            assert_eq!(GenreTarget::from_name(target.name()), Some(target));
            let levels = target.band_levels_db();
            for pair in levels.windows(2) {
                assert!((pair[1] - pair[0]).abs() <= 9.0, "{target:?}: {levels:?}");
            }
        }
        assert_eq!(GenreTarget::from_name(" House "), Some(GenreTarget::House));
        assert_eq!(GenreTarget::from_name("polka"), None);
        assert_eq!(GenreTarget::from(Genre::Lofi), GenreTarget::Lofi);
    }

    #[test]
    fn silence_gets_a_flat_curve() {
        let silent = vec![0.0f32; ANALYSIS_BINS];
        let (mid, side) = correction_curves(&silent, &silent, &reference(), &EqOptions::default());
        assert_eq!(mid, EqCurve::flat());
        assert_eq!(side, EqCurve::flat());
    }

    #[test]
    fn options_out_of_range_are_refused() {
        let even = EqOptions {
            taps: 4096,
            ..EqOptions::default()
        };
        assert!(matches!(
            even.check(),
            Err(MasterError::BadOption { option: "taps", .. })
        ));
        let wide = EqOptions {
            smoothing_octaves: f64::NAN,
            ..EqOptions::default()
        };
        assert!(wide.check().is_err());
        assert!(EqOptions::default().check().is_ok());
    }
}
