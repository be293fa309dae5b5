//! Streaming sample rate conversion of interleaved stereo to 48 kHz.
//!
//! Audio is fed in as it is decoded and converted in fixed chunks, so a long file
//! never needs a second full-length copy at the source rate. Rates whose ratio to
//! 48 kHz reduces to small numbers (44.1, 32, 22.05, 96 kHz, ...) use Rubato's FFT
//! resampler; others use its windowed-sinc resampler. The resampler's start-up delay
//! is trimmed, so the output lines up with the input and holds
//! `ceil(input_frames * 48000 / rate)` frames.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Indexing, Resampler, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};

use crate::frame::{CHANNELS, SAMPLE_RATE};

/// Input frames per conversion chunk.
const CHUNK_FRAMES: usize = 8192;
/// FFT sub-chunks per chunk: about 2048 frames each, long enough for a steep
/// anti-aliasing filter (cut-off near 0.98 of Nyquist).
const SUB_CHUNKS: usize = 4;
/// The largest reduced input block the FFT resampler is used for.
const MAX_FFT_BLOCK: usize = 4096;

/// Converts interleaved stereo from one rate to 48 kHz, a chunk at a time.
pub(super) struct ToEngineRate {
    resampler: Option<Box<dyn Resampler<f32>>>,
    rate: u32,
    ratio: f64,
    /// Source-rate stereo not yet converted, from `pending_start` frames on.
    pending: Vec<f32>,
    pending_start: usize,
    /// One chunk's output.
    scratch: Vec<f32>,
    /// Converted output frames still to drop (the resampler's delay).
    to_trim: usize,
    input_frames: u64,
    output: Vec<f32>,
}

impl std::fmt::Debug for ToEngineRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToEngineRate")
            .field("converts", &self.resampler.is_some())
            .field("ratio", &self.ratio)
            .field("input_frames", &self.input_frames)
            .finish_non_exhaustive()
    }
}

impl ToEngineRate {
    /// A converter from `rate` Hz; an error string says why Rubato refused the rate.
    pub(super) fn new(rate: u32) -> Result<Self, String> {
        let ratio = f64::from(SAMPLE_RATE) / f64::from(rate.max(1));
        let resampler: Option<Box<dyn Resampler<f32>>> = if rate == SAMPLE_RATE {
            None
        } else if rate as usize / gcd(rate as usize, SAMPLE_RATE as usize) <= MAX_FFT_BLOCK {
            Some(Box::new(
                Fft::<f32>::new_custom(
                    rate as usize,
                    SAMPLE_RATE as usize,
                    CHUNK_FRAMES,
                    SUB_CHUNKS,
                    CHANNELS,
                    WindowFunction::BlackmanHarris2,
                    FixedSync::Input,
                )
                .map_err(|error| error.to_string())?,
            ))
        } else {
            let parameters = SincInterpolationParameters {
                sinc_len: 256,
                f_cutoff: None,
                oversampling_factor: 256,
                interpolation: SincInterpolationType::Cubic,
                window: WindowFunction::BlackmanHarris2,
            };
            Some(Box::new(
                Async::<f32>::new_sinc(
                    ratio,
                    1.0,
                    &parameters,
                    CHUNK_FRAMES,
                    CHANNELS,
                    FixedAsync::Input,
                )
                .map_err(|error| error.to_string())?,
            ))
        };
        let (to_trim, scratch) = match &resampler {
            Some(resampler) => (
                resampler.output_delay(),
                vec![0.0; resampler.output_frames_max() * CHANNELS],
            ),
            None => (0, Vec::new()),
        };
        Ok(Self {
            resampler,
            rate: rate.max(1),
            ratio,
            pending: Vec::new(),
            pending_start: 0,
            scratch,
            to_trim,
            input_frames: 0,
            output: Vec::new(),
        })
    }

    /// Output frames that `input_frames` of source audio become.
    pub(super) fn output_frames_for(&self, input_frames: u64) -> u64 {
        let rate = u64::from(self.rate);
        (input_frames * u64::from(SAMPLE_RATE)).div_ceil(rate)
    }

    /// Takes whole stereo frames of source audio and converts every full chunk.
    pub(super) fn push(&mut self, stereo: &[f32]) -> Result<(), String> {
        self.input_frames += (stereo.len() / CHANNELS) as u64;
        if self.resampler.is_none() {
            self.output.extend_from_slice(stereo);
            return Ok(());
        }
        self.pending.extend_from_slice(stereo);
        while let Some(resampler) = self.resampler.as_ref() {
            let needed = resampler.input_frames_next();
            let available = self.pending.len() / CHANNELS - self.pending_start;
            if available < needed {
                break;
            }
            self.convert_chunk(None)?;
        }
        // Drop what has been converted once it is a chunk or more.
        if self.pending_start >= CHUNK_FRAMES {
            self.pending.drain(..self.pending_start * CHANNELS);
            self.pending_start = 0;
        }
        Ok(())
    }

    /// Converts what is left, pads out the resampler's delay, and returns the output.
    pub(super) fn finish(mut self) -> Result<Vec<f32>, String> {
        if self.resampler.is_none() {
            return Ok(self.output);
        }
        let expected = self.output_frames_for(self.input_frames) as usize;
        let left = self.pending.len() / CHANNELS - self.pending_start;
        if left > 0 {
            self.convert_chunk(Some(left))?;
        }
        // Silence through the resampler until the delayed tail is out.
        let mut rounds = 0;
        while self.output.len() / CHANNELS < expected {
            self.convert_chunk(Some(0))?;
            rounds += 1;
            if rounds > 64 {
                return Err("the resampler stopped producing output".to_string());
            }
        }
        self.output.truncate(expected * CHANNELS);
        Ok(self.output)
    }

    /// Converts one chunk from `pending` (all of it, or only `partial` frames padded
    /// with silence) and appends the output past the delay still to trim.
    fn convert_chunk(&mut self, partial: Option<usize>) -> Result<(), String> {
        let Some(resampler) = self.resampler.as_mut() else {
            return Ok(());
        };
        let pending_frames = self.pending.len() / CHANNELS;
        let input = InterleavedSlice::new(&self.pending[..], CHANNELS, pending_frames)
            .map_err(|error| error.to_string())?;
        let scratch_frames = self.scratch.len() / CHANNELS;
        let mut output = InterleavedSlice::new_mut(&mut self.scratch[..], CHANNELS, scratch_frames)
            .map_err(|error| error.to_string())?;
        let mut indexing = Indexing::new().input_offset(self.pending_start);
        if let Some(frames) = partial {
            indexing = indexing.partial_len(frames);
        }
        let (consumed, produced) = resampler
            .process_into_buffer(&input, &mut output, Some(&indexing))
            .map_err(|error| error.to_string())?;
        self.pending_start += match partial {
            Some(frames) => frames.min(consumed),
            None => consumed,
        };
        let trimmed = produced.min(self.to_trim);
        self.to_trim -= trimmed;
        self.output
            .extend_from_slice(&self.scratch[trimmed * CHANNELS..produced * CHANNELS]);
        Ok(())
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, frames: usize) -> Vec<f32> {
        (0..frames)
            .flat_map(|i| {
                let x = 0.5 * (std::f32::consts::TAU * hz * i as f32 / rate as f32).sin();
                [x, x]
            })
            .collect()
    }

    fn convert(rate: u32, input: &[f32], piece: usize) -> Vec<f32> {
        let mut converter = ToEngineRate::new(rate).unwrap();
        for chunk in input.chunks(piece * CHANNELS) {
            converter.push(chunk).unwrap();
        }
        converter.finish().unwrap()
    }

    #[test]
    fn the_output_has_the_scaled_length_whatever_the_feeding() {
        for rate in [44_100, 22_050, 96_000, 44_101] {
            let input = sine(rate, 440.0, 30_000);
            let expected = (30_000 * 48_000usize).div_ceil(rate as usize);
            for piece in [1000, 7, 30_000] {
                let output = convert(rate, &input, piece);
                assert_eq!(
                    output.len(),
                    expected * CHANNELS,
                    "rate {rate}, piece {piece}"
                );
            }
        }
    }

    #[test]
    fn a_sine_keeps_its_phase_and_level() {
        // 1 kHz at 44.1 kHz: the output must be the same sine sampled at 48 kHz,
        // aligned in time (the resampler's delay trimmed).
        let input = sine(44_100, 1000.0, 44_100);
        let output = convert(44_100, &input, 4410);
        let reference = sine(48_000, 1000.0, 48_000);
        let worst = output
            .iter()
            .zip(&reference)
            .skip(2000)
            .take(90_000)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "largest difference {worst}");
    }

    #[test]
    fn the_engine_rate_passes_through_untouched() {
        let input = sine(48_000, 440.0, 1000);
        assert_eq!(convert(48_000, &input, 100), input);
    }
}
