//! Analysis of a stereo track: the long-term spectra of its mid and side channels
//! (through the [`SpectralKernels`] of either backend), and its loudness, loudness
//! range, sample and true peak (through the `ebur128` meter; see [`super::loudness`]).
//!
//! Mid is `(L + R) / 2` and side is `(L − R) / 2`, so `L = mid + side` and `R = mid − side`.

use super::error::{MasterError, check_tracks};
use super::kernels::{ANALYSIS_BINS, SpectralKernels};
use super::loudness::{self, Loudness, Measure};
use crate::frame::CHANNELS;

/// What analysis found in one track.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Long-term average power spectrum of the mid channel ([`ANALYSIS_BINS`] bins).
    pub mid_spectrum: Vec<f32>,
    /// Long-term average power spectrum of the side channel ([`ANALYSIS_BINS`] bins).
    pub side_spectrum: Vec<f32>,
    /// Loudness and peaks of the stereo signal.
    pub loudness: Loudness,
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

/// A pair of mid and side signals (or of their spectra).
pub type MidSide = (Vec<f32>, Vec<f32>);

/// The spectra of every track's mid and side, in one kernel call, checked for shape.
pub(crate) fn mid_side_spectra(
    kernels: &mut dyn SpectralKernels,
    channels: &[MidSide],
) -> Result<Vec<MidSide>, MasterError> {
    let signals: Vec<&[f32]> = channels
        .iter()
        .flat_map(|(mid, side)| [mid.as_slice(), side.as_slice()])
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
    while let (Some(mid), Some(side)) = (spectra.next(), spectra.next()) {
        pairs.push((mid, side));
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
        assert_eq!(analysis.mid_spectrum.len(), ANALYSIS_BINS);
        assert!(analysis.side_spectrum.iter().all(|&p| p == 0.0));
        assert!(analysis.loudness.integrated_lufs.is_finite());
        assert!((analysis.loudness.sample_peak_dbfs.unwrap() + 20.0).abs() < 0.01);
        assert!(analysis.loudness.true_peak_dbtp.is_some());
        assert!(analysis.loudness.range_lu.is_some());
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
