//! PCM frames: 48 kHz, stereo, interleaved `f32`, 20 ms (960 samples per channel).
//!
//! Time is counted in samples per channel at 48 kHz since the station started
//! (a "sample timestamp"); one frame advances it by [`FRAME_SAMPLES`].

/// Sample rate of every signal inside the engine.
pub const SAMPLE_RATE: u32 = 48_000;
/// Channels of every signal inside the engine (left, right; interleaved).
pub const CHANNELS: usize = 2;
/// Samples per channel in one 20 ms frame.
pub const FRAME_SAMPLES: usize = 960;
/// Interleaved values in one frame (`FRAME_SAMPLES * CHANNELS`).
pub const FRAME_LEN: usize = FRAME_SAMPLES * CHANNELS;
/// Duration of one frame in milliseconds.
pub const FRAME_MS: u32 = 20;

/// One 20 ms frame of interleaved stereo audio.
pub type Frame = [f32; FRAME_LEN];

/// A frame of silence.
pub const SILENT_FRAME: Frame = [0.0; FRAME_LEN];

/// Samples per channel in `ms` milliseconds.
pub const fn samples_for_ms(ms: u64) -> u64 {
    ms * SAMPLE_RATE as u64 / 1000
}

/// Whole frames needed to hold at least `ms` milliseconds (at least one).
pub const fn frames_for_ms(ms: u64) -> usize {
    let frames = ms.div_ceil(FRAME_MS as u64) as usize;
    if frames == 0 { 1 } else { frames }
}

/// Milliseconds covered by `samples` samples per channel.
pub fn ms_for_samples(samples: u64) -> f64 {
    samples as f64 * 1000.0 / SAMPLE_RATE as f64
}

/// Peak absolute value of an interleaved buffer.
pub fn peak(samples: &[f32]) -> f32 {
    samples.iter().fold(0.0f32, |acc, s| acc.max(s.abs()))
}

/// Root-mean-square level of an interleaved buffer in dBFS (`-inf` for silence).
pub fn rms_dbfs(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return f32::NEG_INFINITY;
    }
    let sum: f64 = samples.iter().map(|s| f64::from(*s) * f64::from(*s)).sum();
    let rms = (sum / samples.len() as f64).sqrt();
    (20.0 * rms.log10()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_twenty_milliseconds_of_stereo() {
        assert_eq!(FRAME_LEN, 1920);
        assert_eq!(samples_for_ms(20), FRAME_SAMPLES as u64);
        assert_eq!(frames_for_ms(1000), 50);
        assert_eq!(frames_for_ms(1), 1);
        assert_eq!(frames_for_ms(0), 1);
        assert!((ms_for_samples(48_000) - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn levels_of_known_signals() {
        assert_eq!(peak(&[0.1, -0.7, 0.3]), 0.7);
        assert_eq!(rms_dbfs(&SILENT_FRAME), f32::NEG_INFINITY);
        let full = [1.0f32; 16];
        assert!(rms_dbfs(&full).abs() < 1e-6);
    }
}
