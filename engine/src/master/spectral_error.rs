//! The spectral error: how far apart the tonal balance of two tracks is.
//!
//! It is the RMS difference in dB over the 31 third-octave bands from 20 Hz to 20 kHz
//! (centres `1000·2^(k/3)` Hz for k = −17 ..= 13, edges a sixth of an octave either
//! side) between the whole-file average spectra of two stereo signals, after
//! normalising both to equal power over those bands. The average spectrum of a
//! stereo signal is the mean over frames of the power spectra of left and right
//! added; frames are 32768 samples (1.46 Hz bins, so that even the 20 Hz band holds
//! three bins) with a periodic Hann window and a hop of half a frame.
//!
//! This is the quality metric of the tests and benchmarks. It is computed here
//! independently of the chain's own [`SpectralKernels`](super::SpectralKernels).

use realfft::RealFftPlanner;

use super::cpu::periodic_hann;
use crate::frame::{CHANNELS, SAMPLE_RATE};

/// Number of third-octave bands.
pub const BANDS: usize = 31;
/// Frame length of the metric's analysis.
pub const FRAME: usize = 32_768;
/// Power floor of a band, relative to the mean band power: keeps empty bands finite
/// (an empty band reads 120 dB under the mean).
const BAND_FLOOR: f64 = 1e-12;

/// The centre frequencies of the bands, in Hz (19.7 Hz to 20.2 kHz).
pub fn band_centres_hz() -> [f64; BANDS] {
    std::array::from_fn(|i| 1000.0 * 2f64.powf((i as f64 - 17.0) / 3.0))
}

/// The power of a stereo signal in each third-octave band.
#[derive(Debug, Clone, PartialEq)]
pub struct BandProfile {
    /// Band powers, in arbitrary but common units.
    pub powers: [f64; BANDS],
}

impl BandProfile {
    /// Measures interleaved stereo at 48 kHz (an odd trailing sample is ignored).
    pub fn measure(interleaved: &[f32]) -> Self {
        let frames = interleaved.len() / CHANNELS;
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(FRAME);
        let window = periodic_hann(FRAME);
        let mut input = fft.make_input_vec();
        let mut output = fft.make_output_vec();
        let mut scratch = fft.make_scratch_vec();
        let mut spectrum = vec![0.0f64; FRAME / 2 + 1];
        let hop = FRAME / 2;
        let count = if frames == 0 {
            0
        } else if frames <= FRAME {
            1
        } else {
            1 + (frames - FRAME).div_ceil(hop)
        };
        for index in 0..count {
            let start = index * hop;
            for channel in 0..CHANNELS {
                for (n, (slot, &w)) in input.iter_mut().zip(&window).enumerate() {
                    let at = (start + n) * CHANNELS + channel;
                    *slot = interleaved.get(at).map_or(0.0, |&x| x * w);
                }
                if fft
                    .process_with_scratch(&mut input, &mut output, &mut scratch)
                    .is_err()
                {
                    // Only buffers of the wrong length fail, and these come from the plan.
                    continue;
                }
                for (sum, bin) in spectrum.iter_mut().zip(&output) {
                    *sum += f64::from(bin.norm_sqr());
                }
            }
        }
        let bin_hz = f64::from(SAMPLE_RATE) / FRAME as f64;
        let edge = 2f64.powf(1.0 / 6.0);
        let mut powers = [0.0; BANDS];
        for (power, centre) in powers.iter_mut().zip(band_centres_hz()) {
            let (low, high) = (centre / edge, centre * edge);
            let first = (low / bin_hz).ceil() as usize;
            let last = ((high / bin_hz).ceil() as usize).min(spectrum.len());
            *power = spectrum[first.min(last)..last].iter().sum::<f64>() / count.max(1) as f64;
        }
        Self { powers }
    }

    /// Band levels in dB after normalising the total power to 1 (0 dB).
    pub fn normalised_db(&self) -> [f64; BANDS] {
        let total: f64 = self.powers.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            return [0.0; BANDS];
        }
        let floor = BAND_FLOOR / BANDS as f64;
        self.powers
            .map(|power| 10.0 * (power / total).max(floor).log10())
    }

    /// The spectral error between this profile and another, in dB.
    pub fn error_db(&self, other: &BandProfile) -> f64 {
        let (a, b) = (self.normalised_db(), other.normalised_db());
        let sum: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        (sum / BANDS as f64).sqrt()
    }
}

/// The spectral error between two stereo signals, in dB (see the module docs).
pub fn spectral_error_db(a: &[f32], b: &[f32]) -> f64 {
    BandProfile::measure(a).error_db(&BandProfile::measure(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(frames: usize, seed: u32) -> Vec<f32> {
        let mut state = seed | 1;
        (0..frames * CHANNELS)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32) - 0.5
            })
            .collect()
    }

    /// A one-pole low-pass on each channel: a crude "dull" version of a signal.
    fn dull(samples: &[f32], cutoff_hz: f32) -> Vec<f32> {
        let a = (-2.0 * std::f32::consts::PI * cutoff_hz / 48_000.0).exp();
        let mut state = [0.0f32; CHANNELS];
        samples
            .chunks_exact(CHANNELS)
            .flat_map(|frame| {
                let mut out = [0.0; CHANNELS];
                for c in 0..CHANNELS {
                    state[c] = (1.0 - a) * frame[c] + a * state[c];
                    out[c] = state[c];
                }
                out
            })
            .collect()
    }

    #[test]
    fn there_are_31_bands_from_20_hz_to_20_khz() {
        let centres = band_centres_hz();
        assert!((centres[0] - 19.69).abs() < 0.01);
        assert!((centres[17] - 1000.0).abs() < 1e-9);
        assert!((centres[30] - 20_158.7).abs() < 0.1);
    }

    #[test]
    fn identical_signals_have_no_error_whatever_their_level() {
        let a = noise(100_000, 1);
        assert_eq!(spectral_error_db(&a, &a), 0.0);
        let louder: Vec<f32> = a.iter().map(|x| x * 3.0).collect();
        assert!(spectral_error_db(&a, &louder) < 1e-6);
    }

    #[test]
    fn a_dull_signal_is_far_from_a_balanced_one() {
        let balanced = noise(200_000, 2);
        let other = noise(200_000, 3);
        let dulled = dull(&balanced, 500.0);
        let near = spectral_error_db(&balanced, &other);
        let far = spectral_error_db(&balanced, &dulled);
        assert!(near < 1.0, "two white noises differ by {near} dB");
        assert!(far > 10.0, "a dull copy differs by only {far} dB");
    }

    #[test]
    fn silence_and_empty_input_do_not_break_the_metric() {
        let silent = vec![0.0f32; 10_000];
        assert_eq!(spectral_error_db(&silent, &silent), 0.0);
        assert!(spectral_error_db(&[], &noise(50_000, 4)).is_finite());
    }
}
