//! Analysis of a stereo track: the long-term spectra of its mid and side channels
//! (through the [`SpectralKernels`] of either backend), and its loudness, loudness
//! range, sample and true peak (through the `ebur128` meter; see [`super::loudness`]).
//!
//! Mid is `(L + R) / 2` and side is `(L − R) / 2`, so `L = mid + side` and `R = mid − side`.
//!
//! # Two resolutions
//! The kernels' frames of [`ANALYSIS_FFT`] samples give 11.7 Hz bins: too coarse for
//! 17-60 Hz, where a third-octave band is a few hertz wide. So each channel is also
//! decimated by [`LOW_BAND_DECIMATION`] (to 6 kHz, through three cascaded 8-sample
//! moving averages: a 22-tap low-pass whose zeros sit on the frequencies that would
//! alias onto the low band) and analysed by the same kernel call: 1.46 Hz bins up to
//! 3 kHz. The low-band spectrum is brought to the full-rate spectrum's scale (times
//! the decimation factor, divided by the low-pass's power response), so the two agree
//! where both are valid; the EQ reads the low band below [`LOW_BAND_LIMIT_HZ`].

use std::f64::consts::PI;

use super::error::{MasterError, check_tracks};
use super::kernels::{ANALYSIS_BINS, ANALYSIS_FFT, SpectralKernels};
use super::loudness::{self, Loudness, Measure};
use crate::frame::{CHANNELS, SAMPLE_RATE};

/// Decimation factor of the low-band analysis (48 kHz to 6 kHz).
pub const LOW_BAND_DECIMATION: usize = 8;
/// Moving averages in the decimator's low-pass.
const DECIMATOR_STAGES: usize = 3;
/// Taps of the decimator's low-pass: the convolution of three 8-sample averages.
const DECIMATOR_TAPS: usize = DECIMATOR_STAGES * (LOW_BAND_DECIMATION - 1) + 1;
/// Highest frequency read from the low-band spectrum; its low-pass takes under
/// 0.1 dB there (and that is corrected) while aliases are more than 80 dB down.
pub const LOW_BAND_LIMIT_HZ: f64 = 300.0;

/// Bin spacing of the full-rate analysis spectrum, in Hz.
pub fn full_bin_hz() -> f64 {
    f64::from(SAMPLE_RATE) / ANALYSIS_FFT as f64
}

/// Bin spacing of the low-band analysis spectrum, in Hz.
pub fn low_bin_hz() -> f64 {
    full_bin_hz() / LOW_BAND_DECIMATION as f64
}

/// The long-term average power spectrum of one channel, at two resolutions.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSpectrum {
    /// [`ANALYSIS_BINS`] bins every [`full_bin_hz`] up to 24 kHz.
    pub full: Vec<f32>,
    /// [`ANALYSIS_BINS`] bins every [`low_bin_hz`] up to 3 kHz, on the scale of `full`
    /// (valid up to [`LOW_BAND_LIMIT_HZ`]).
    pub low: Vec<f32>,
}

impl ChannelSpectrum {
    /// Checks that both spectra have [`ANALYSIS_BINS`] bins.
    pub fn new(full: Vec<f32>, low: Vec<f32>) -> Result<Self, MasterError> {
        for spectrum in [&full, &low] {
            if spectrum.len() != ANALYSIS_BINS {
                return Err(MasterError::BadReference {
                    found: spectrum.len(),
                    expected: ANALYSIS_BINS,
                });
            }
        }
        Ok(Self { full, low })
    }

    /// All zeros: the spectrum of silence.
    pub fn silent() -> Self {
        Self {
            full: vec![0.0; ANALYSIS_BINS],
            low: vec![0.0; ANALYSIS_BINS],
        }
    }
}

/// What analysis found in one track.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Long-term average power spectrum of the mid channel.
    pub mid_spectrum: ChannelSpectrum,
    /// Long-term average power spectrum of the side channel.
    pub side_spectrum: ChannelSpectrum,
    /// Loudness and peaks of the stereo signal.
    pub loudness: Loudness,
}

/// The decimator's low-pass: three 8-sample moving averages convolved, unit gain at DC.
fn decimator_taps() -> [f32; DECIMATOR_TAPS] {
    let mut taps = [0.0f64; DECIMATOR_TAPS];
    taps[0] = 1.0;
    let mut len = 1;
    for _ in 0..DECIMATOR_STAGES {
        let previous = taps;
        taps = [0.0; DECIMATOR_TAPS];
        for (i, &value) in previous[..len].iter().enumerate() {
            for tap in &mut taps[i..i + LOW_BAND_DECIMATION] {
                *tap += value / LOW_BAND_DECIMATION as f64;
            }
        }
        len += LOW_BAND_DECIMATION - 1;
    }
    taps.map(|t| t as f32)
}

/// The power response of the decimator's low-pass at `hz` (at 48 kHz).
fn decimator_power_response(hz: f64) -> f64 {
    let x = PI * hz / f64::from(SAMPLE_RATE);
    if x.abs() < 1e-12 {
        return 1.0;
    }
    let n = LOW_BAND_DECIMATION as f64;
    let average = (n * x).sin() / (n * x.sin());
    average.powi(2 * DECIMATOR_STAGES as i32)
}

/// `signal` low-passed and decimated by [`LOW_BAND_DECIMATION`].
pub fn decimate_for_low_band(signal: &[f32]) -> Vec<f32> {
    let taps = decimator_taps();
    let outputs = signal.len().div_ceil(LOW_BAND_DECIMATION);
    let mut out = Vec::with_capacity(outputs);
    for m in 0..outputs {
        let start = m * LOW_BAND_DECIMATION;
        let window = &signal[start..signal.len().min(start + DECIMATOR_TAPS)];
        out.push(window.iter().zip(&taps).map(|(x, t)| x * t).sum());
    }
    out
}

/// Brings a low-band kernel spectrum to the full-rate scale, in place.
fn rescale_low_band(spectrum: &mut [f32]) {
    for (k, power) in spectrum.iter_mut().enumerate() {
        let response = decimator_power_response(k as f64 * low_bin_hz()).max(1e-3);
        *power = (f64::from(*power) * LOW_BAND_DECIMATION as f64 / response) as f32;
    }
}

/// Splits interleaved stereo into mid and side channels. An odd trailing sample is ignored.
pub fn split_mid_side(interleaved: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let frames = interleaved.len() / CHANNELS;
    let mut mid = vec![0.0f32; frames];
    let mut side = vec![0.0f32; frames];
    for ((m, s), frame) in mid
        .iter_mut()
        .zip(side.iter_mut())
        .zip(interleaved.chunks_exact(CHANNELS))
    {
        *m = 0.5 * (frame[0] + frame[1]);
        *s = 0.5 * (frame[0] - frame[1]);
    }
    (mid, side)
}

/// Turns mid and side channels into left and right, in place: `L = mid + side`,
/// `R = mid − side`.
pub fn mid_side_to_left_right(mid_into_left: &mut [f32], side_into_right: &mut [f32]) {
    for (m, s) in mid_into_left.iter_mut().zip(side_into_right.iter_mut()) {
        let (left, right) = (*m + *s, *m - *s);
        *m = left;
        *s = right;
    }
}

/// Joins mid and side channels into interleaved stereo: `L = mid + side`, `R = mid − side`.
/// Writes `min(mid.len(), side.len(), interleaved.len() / 2)` frames.
pub fn join_mid_side(mid: &[f32], side: &[f32], interleaved: &mut [f32]) {
    for ((frame, &m), &s) in interleaved.chunks_exact_mut(CHANNELS).zip(mid).zip(side) {
        frame[0] = m + s;
        frame[1] = m - s;
    }
}

/// Analyses one track of interleaved stereo at 48 kHz.
pub fn analyse(
    kernels: &mut dyn SpectralKernels,
    interleaved: &[f32],
    measure: Measure,
) -> Result<Analysis, MasterError> {
    let mut all = analyse_batch(kernels, &[interleaved], measure)?;
    all.pop().ok_or(MasterError::KernelOutput {
        backend: kernels.name(),
        expected: 1,
        found: 0,
    })
}

/// Analyses many tracks; the spectra of all of them take one kernel call.
pub fn analyse_batch(
    kernels: &mut dyn SpectralKernels,
    tracks: &[&[f32]],
    measure: Measure,
) -> Result<Vec<Analysis>, MasterError> {
    check_tracks(tracks)?;
    let channels: Vec<(Vec<f32>, Vec<f32>)> =
        tracks.iter().map(|track| split_mid_side(track)).collect();
    let spectra = mid_side_spectra(kernels, &channels)?;
    tracks
        .iter()
        .zip(spectra)
        .map(|(track, (mid_spectrum, side_spectrum))| {
            Ok(Analysis {
                mid_spectrum,
                side_spectrum,
                loudness: loudness::measure(track, measure)?,
            })
        })
        .collect()
}

/// A pair of mid and side signals.
pub type MidSide = (Vec<f32>, Vec<f32>);

/// The spectra of every track's mid and side at both resolutions, in one kernel call,
/// checked for shape.
pub(crate) fn mid_side_spectra(
    kernels: &mut dyn SpectralKernels,
    channels: &[MidSide],
) -> Result<Vec<(ChannelSpectrum, ChannelSpectrum)>, MasterError> {
    let decimated: Vec<MidSide> = channels
        .iter()
        .map(|(mid, side)| (decimate_for_low_band(mid), decimate_for_low_band(side)))
        .collect();
    let signals: Vec<&[f32]> = channels
        .iter()
        .zip(&decimated)
        .flat_map(|((mid, side), (low_mid, low_side))| {
            [
                mid.as_slice(),
                side.as_slice(),
                low_mid.as_slice(),
                low_side.as_slice(),
            ]
        })
        .collect();
    let backend = kernels.name();
    let spectra = kernels
        .average_power_spectra(&signals)
        .map_err(|source| MasterError::Kernel { backend, source })?;
    if spectra.len() != signals.len() {
        return Err(MasterError::KernelOutput {
            backend,
            expected: signals.len(),
            found: spectra.len(),
        });
    }
    if let Some(bad) = spectra.iter().find(|s| s.len() != ANALYSIS_BINS) {
        return Err(MasterError::KernelOutput {
            backend,
            expected: ANALYSIS_BINS,
            found: bad.len(),
        });
    }
    let mut pairs = Vec::with_capacity(channels.len());
    let mut spectra = spectra.into_iter();
    while let (Some(mid), Some(side), Some(mut low_mid), Some(mut low_side)) = (
        spectra.next(),
        spectra.next(),
        spectra.next(),
        spectra.next(),
    ) {
        rescale_low_band(&mut low_mid);
        rescale_low_band(&mut low_side);
        pairs.push((
            ChannelSpectrum {
                full: mid,
                low: low_mid,
            },
            ChannelSpectrum {
                full: side,
                low: low_side,
            },
        ));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::cpu::CpuKernels;

    #[test]
    fn mid_side_round_trips() {
        let stereo: Vec<f32> = (0..2000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let (mid, side) = split_mid_side(&stereo);
        let mut back = vec![0.0; stereo.len()];
        join_mid_side(&mid, &side, &mut back);
        for (a, b) in stereo.iter().zip(&back) {
            assert!((a - b).abs() < 1e-6);
        }
        let (mut left, mut right) = (mid, side);
        mid_side_to_left_right(&mut left, &mut right);
        for (frame, (l, r)) in stereo.chunks_exact(2).zip(left.iter().zip(&right)) {
            assert!((frame[0] - l).abs() < 1e-6 && (frame[1] - r).abs() < 1e-6);
        }
    }

    #[test]
    fn a_mono_track_has_no_side_and_reports_its_loudness() {
        let stereo: Vec<f32> = (0..96_000)
            .flat_map(|n| {
                let x = 0.1 * (n as f32 * 0.05).sin();
                [x, x]
            })
            .collect();
        let mut kernels = CpuKernels::new();
        let analysis = analyse(&mut kernels, &stereo, Measure::ALL).unwrap();
        assert_eq!(analysis.mid_spectrum.full.len(), ANALYSIS_BINS);
        assert_eq!(analysis.mid_spectrum.low.len(), ANALYSIS_BINS);
        assert!(analysis.side_spectrum.full.iter().all(|&p| p == 0.0));
        assert!(analysis.side_spectrum.low.iter().all(|&p| p == 0.0));
        assert!(analysis.loudness.integrated_lufs.is_finite());
        assert!((analysis.loudness.sample_peak_dbfs.unwrap() + 20.0).abs() < 0.01);
        assert!(analysis.loudness.true_peak_dbtp.is_some());
        assert!(analysis.loudness.range_lu.is_some());
    }

    #[test]
    fn the_low_band_agrees_with_the_full_rate_spectrum_and_resolves_close_tones() {
        // Two sub-bass tones 6 Hz apart and a midrange tone, in mid only.
        let stereo: Vec<f32> = (0..48_000 * 20)
            .flat_map(|n| {
                let t = n as f64 / 48_000.0;
                let x = 0.3 * (2.0 * PI * 27.5 * t).sin()
                    + 0.3 * (2.0 * PI * 33.5 * t).sin()
                    + 0.1 * (2.0 * PI * 180.0 * t).sin();
                [x as f32, x as f32]
            })
            .collect();
        let mut kernels = CpuKernels::new();
        let analysis = analyse(&mut kernels, &stereo, Measure::INTEGRATED).unwrap();
        let ChannelSpectrum { full, low } = &analysis.mid_spectrum;
        let around = |spectrum: &[f32], bin_hz: f64, hz: f64, width: f64| -> f64 {
            let first = ((hz - width) / bin_hz).floor().max(0.0) as usize;
            let last = ((hz + width) / bin_hz).ceil() as usize;
            spectrum[first..=last]
                .iter()
                .map(|&p| f64::from(p))
                .sum::<f64>()
                * bin_hz
        };
        // The 180 Hz tone holds the same power in both (within 0.2 dB).
        let in_full = around(full, full_bin_hz(), 180.0, 30.0);
        let in_low = around(low, low_bin_hz(), 180.0, 30.0);
        assert!(
            (10.0 * (in_low / in_full).log10()).abs() < 0.2,
            "{in_low} vs {in_full}"
        );
        // The low band shows a dip between the two sub tones; the full rate cannot.
        let at = |hz: f64| f64::from(low[(hz / low_bin_hz()).round() as usize]);
        assert!(at(30.5) < at(27.5) / 100.0 && at(30.5) < at(33.5) / 100.0);
        assert!((decimator_taps().iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn bad_tracks_are_named_by_index() {
        let mut kernels = CpuKernels::new();
        let good = [0.0f32; 4];
        let odd = [0.0f32; 3];
        let error = analyse_batch(&mut kernels, &[&good, &odd], Measure::INTEGRATED).unwrap_err();
        assert!(matches!(
            error,
            MasterError::OddSampleCount {
                track: 1,
                samples: 3
            }
        ));
        let nan = [0.0, f32::NAN];
        let error = analyse(&mut kernels, &nan, Measure::INTEGRATED).unwrap_err();
        assert!(matches!(
            error,
            MasterError::NonFinite {
                track: 0,
                index: 1,
                ..
            }
        ));
        let error = analyse(&mut kernels, &[], Measure::INTEGRATED).unwrap_err();
        assert!(matches!(error, MasterError::Empty { track: 0 }));
    }
}
