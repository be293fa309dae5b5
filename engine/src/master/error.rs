//! Why mastering failed.

use thiserror::Error;

use super::kernels::KernelError;
use super::loudness::MeterError;
use crate::frame::CHANNELS;

/// Why a track (or a batch) could not be mastered. Every variant is about the
/// request, never about the engine's state: the [`Mastering`](super::Mastering)
/// stays usable and the next request may succeed.
#[derive(Debug, Error)]
pub enum MasterError {
    /// The samples are not whole stereo frames.
    #[error("track {track}: {samples} interleaved samples is not a whole number of stereo frames")]
    OddSampleCount { track: usize, samples: usize },
    /// The track holds no samples.
    #[error("track {track} is empty")]
    Empty { track: usize },
    /// A sample is NaN or infinite.
    #[error("track {track}: sample {index} is {value}, not a finite number")]
    NonFinite {
        track: usize,
        index: usize,
        value: f32,
    },
    /// An option is out of its range.
    #[error("option {option} is {value}; expected {expected}")]
    BadOption {
        option: &'static str,
        value: f64,
        expected: &'static str,
    },
    /// A reference spectrum does not have the analysis' bin count.
    #[error("reference spectrum has {found} bins; expected {expected}")]
    BadReference { found: usize, expected: usize },
    /// A spectral kernel failed.
    #[error("spectral kernel on {backend}: {source}")]
    Kernel {
        backend: &'static str,
        #[source]
        source: KernelError,
    },
    /// A kernel returned a result of the wrong shape (a defect of that backend).
    #[error("spectral kernel on {backend} returned {found} values where {expected} were due")]
    KernelOutput {
        backend: &'static str,
        expected: usize,
        found: usize,
    },
    /// The loudness meter failed.
    #[error(transparent)]
    Meter(#[from] MeterError),
    /// The FIR design's FFT failed (a defect: its buffers come from its own plan).
    #[error("FIR design: {0}")]
    Design(String),
}

/// Checks that every track is non-empty, whole stereo frames, and finite.
pub fn check_tracks(tracks: &[&[f32]]) -> Result<(), MasterError> {
    for (track, samples) in tracks.iter().enumerate() {
        if samples.is_empty() {
            return Err(MasterError::Empty { track });
        }
        if !samples.len().is_multiple_of(CHANNELS) {
            return Err(MasterError::OddSampleCount {
                track,
                samples: samples.len(),
            });
        }
        if let Some(index) = samples.iter().position(|x| !x.is_finite()) {
            return Err(MasterError::NonFinite {
                track,
                index,
                value: samples[index],
            });
        }
    }
    Ok(())
}
