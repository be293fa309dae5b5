//! Opus encoding of 20 ms stereo frames at 48 kHz (libopus through the `opus` crate).

use crate::frame::{CHANNELS, Frame, SAMPLE_RATE};

/// Largest Opus packet for one frame (RFC 6716, section 3.4).
pub const MAX_PACKET_LEN: usize = 1275;
/// Bitrates libopus accepts, in bits per second.
pub const MIN_BITRATE: u32 = 6_000;
pub const MAX_BITRATE: u32 = 510_000;

/// Errors of the Opus encoder.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("bitrate {bps} b/s is outside {min}..={max} b/s")]
    Bitrate { bps: u32, min: u32, max: u32 },
    #[error("libopus: {0}")]
    Opus(#[from] ::opus::Error),
}

/// An Opus encoder for 48 kHz stereo music in 20 ms frames.
pub struct OpusEncoder {
    inner: ::opus::Encoder,
    bitrate: u32,
    pre_skip: u16,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("bitrate", &self.bitrate)
            .field("pre_skip", &self.pre_skip)
            .finish()
    }
}

impl OpusEncoder {
    /// An encoder at `bitrate_bps` (constrained VBR, full band, music tuning).
    pub fn new(bitrate_bps: u32) -> Result<Self, CodecError> {
        if !(MIN_BITRATE..=MAX_BITRATE).contains(&bitrate_bps) {
            return Err(CodecError::Bitrate {
                bps: bitrate_bps,
                min: MIN_BITRATE,
                max: MAX_BITRATE,
            });
        }
        let mut inner = ::opus::Encoder::new(SAMPLE_RATE, ::opus::Channels::Stereo, ::opus::Application::Audio)?;
        inner.set_bitrate(::opus::Bitrate::Bits(bitrate_bps as i32))?;
        inner.set_vbr_constraint(true)?;
        inner.set_signal(::opus::Signal::Music)?;
        let pre_skip = u16::try_from(inner.get_lookahead()?.max(0)).unwrap_or(u16::MAX);
        Ok(Self {
            inner,
            bitrate: bitrate_bps,
            pre_skip,
        })
    }

    /// Encodes one frame into `out`; returns the packet's length. Allocates nothing.
    pub fn encode(&mut self, frame: &Frame, out: &mut [u8]) -> Result<usize, CodecError> {
        debug_assert_eq!(frame.len() % CHANNELS, 0);
        Ok(self.inner.encode_float(frame, out)?)
    }

    /// Samples the decoder must drop at the start (OpusHead's pre-skip).
    pub fn pre_skip(&self) -> u16 {
        self.pre_skip
    }

    pub fn bitrate(&self) -> u32 {
        self.bitrate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FRAME_LEN, FRAME_SAMPLES};

    fn chord_frame(index: usize) -> Frame {
        let mut frame = [0.0f32; FRAME_LEN];
        for i in 0..FRAME_SAMPLES {
            let t = (index * FRAME_SAMPLES + i) as f32 / SAMPLE_RATE as f32;
            let value = [220.0f32, 277.2, 329.6]
                .iter()
                .map(|f| (t * f * std::f32::consts::TAU).sin() * 0.2)
                .sum::<f32>();
            frame[i * 2] = value;
            frame[i * 2 + 1] = value * 0.8;
        }
        frame
    }

    #[test]
    fn bitrate_outside_the_range_is_refused() {
        assert!(matches!(OpusEncoder::new(5_000), Err(CodecError::Bitrate { bps: 5_000, .. })));
        assert!(matches!(OpusEncoder::new(600_000), Err(CodecError::Bitrate { .. })));
        assert_eq!(OpusEncoder::new(128_000).unwrap().bitrate(), 128_000);
    }

    #[test]
    fn encoded_chord_decodes_back_with_its_energy() {
        let mut encoder = OpusEncoder::new(128_000).unwrap();
        assert!(encoder.pre_skip() > 0);
        let mut decoder = ::opus::Decoder::new(SAMPLE_RATE, ::opus::Channels::Stereo).unwrap();
        let mut packet = [0u8; MAX_PACKET_LEN];
        let mut decoded = vec![0f32; FRAME_LEN];
        let (mut energy_in, mut energy_out) = (0f64, 0f64);
        let mut bytes = 0;
        for index in 0..100 {
            let frame = chord_frame(index);
            let len = encoder.encode(&frame, &mut packet).unwrap();
            bytes += len;
            let samples = decoder.decode_float(&packet[..len], &mut decoded, false).unwrap();
            assert_eq!(samples, FRAME_SAMPLES);
            if index >= 10 {
                energy_in += frame.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
                energy_out += decoded.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
            }
        }
        let ratio_db = 10.0 * (energy_out / energy_in).log10();
        assert!(ratio_db.abs() < 1.0, "decoded energy differs by {ratio_db:.2} dB");
        // 2 s at 128 kb/s is about 32 kB.
        assert!((20_000..45_000).contains(&bytes), "{bytes} bytes for 2 s");
    }
}
