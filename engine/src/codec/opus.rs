//! Opus encoding of 20 ms stereo frames at 48 kHz (libopus through the `opus` crate).

use crate::frame::{Frame, SAMPLE_RATE};

/// Largest Opus packet the encoder emits for one 20 ms frame (RFC 6716, section
/// 3.2.1: a frame holds at most 1275 bytes). [`OpusEncoder::encode`] never writes
/// more, so every packet fits a slot of the packet ring.
pub const MAX_PACKET_LEN: usize = 1275;
/// Lowest bitrate accepted, in bits per second.
pub const MIN_BITRATE: u32 = 6_000;
/// Highest bitrate accepted, in bits per second.
pub const MAX_BITRATE: u32 = 510_000;

/// Errors of the Opus encoder.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("bitrate {bps} b/s is outside {min}..={max} b/s")]
    Bitrate { bps: u32, min: u32, max: u32 },
    #[error("libopus: {0}")]
    Opus(#[from] ::opus::Error),
}

/// An Opus encoder for 48 kHz stereo music in 20 ms frames (`Application::Audio`,
/// constrained VBR, music signal hint).
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
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// An encoder at `bitrate_bps`, which must lie in
    /// [`MIN_BITRATE`]`..=`[`MAX_BITRATE`].
    pub fn new(bitrate_bps: u32) -> Result<Self, CodecError> {
        if !(MIN_BITRATE..=MAX_BITRATE).contains(&bitrate_bps) {
            return Err(CodecError::Bitrate {
                bps: bitrate_bps,
                min: MIN_BITRATE,
                max: MAX_BITRATE,
            });
        }
        let mut inner = ::opus::Encoder::new(
            SAMPLE_RATE,
            ::opus::Channels::Stereo,
            ::opus::Application::Audio,
        )?;
        // In range by the check above, so the conversion cannot fail.
        let bits = i32::try_from(bitrate_bps).unwrap_or(MAX_BITRATE as i32);
        inner.set_bitrate(::opus::Bitrate::Bits(bits))?;
        inner.set_vbr_constraint(true)?;
        inner.set_signal(::opus::Signal::Music)?;
        let pre_skip = u16::try_from(inner.get_lookahead()?.max(0)).unwrap_or(u16::MAX);
        Ok(Self {
            inner,
            bitrate: bitrate_bps,
            pre_skip,
        })
    }

    /// Encodes one frame into `out` and returns the packet's length, at most
    /// [`MAX_PACKET_LEN`] whatever the size of `out`. Allocates nothing. An `out`
    /// too small for the packet is an error from libopus.
    pub fn encode(&mut self, frame: &Frame, out: &mut [u8]) -> Result<usize, CodecError> {
        let limit = out.len().min(MAX_PACKET_LEN);
        Ok(self.inner.encode_float(frame, &mut out[..limit])?)
    }

    /// Samples (per channel, at 48 kHz) a decoder must drop at the start: the
    /// encoder's lookahead, written into OpusHead as the pre-skip.
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
    use crate::frame::{CHANNELS, FRAME_LEN, FRAME_SAMPLES};

    /// A major chord, slightly quieter on the right, continuing across frames.
    fn chord_frame(index: usize) -> Frame {
        let mut frame = [0.0f32; FRAME_LEN];
        for (i, pair) in frame.chunks_exact_mut(CHANNELS).enumerate() {
            let t = (index * FRAME_SAMPLES + i) as f64 / f64::from(SAMPLE_RATE);
            let value: f64 = [220.0f64, 277.18, 329.63]
                .iter()
                .map(|f| (t * f * std::f64::consts::TAU).sin() * 0.2)
                .sum();
            pair[0] = value as f32;
            pair[1] = (value * 0.8) as f32;
        }
        frame
    }

    /// Encodes and decodes `frames` frames of the chord; returns the input, the
    /// decoded output (both interleaved) and the total packet bytes.
    fn round_trip(bitrate: u32, frames: usize) -> (Vec<f32>, Vec<f32>, usize, u16) {
        let mut encoder = OpusEncoder::new(bitrate).unwrap();
        let mut decoder = ::opus::Decoder::new(SAMPLE_RATE, ::opus::Channels::Stereo).unwrap();
        let mut packet = [0u8; MAX_PACKET_LEN];
        let mut decoded = [0f32; FRAME_LEN];
        let (mut input, mut output, mut bytes) = (Vec::new(), Vec::new(), 0);
        for index in 0..frames {
            let frame = chord_frame(index);
            let len = encoder.encode(&frame, &mut packet).unwrap();
            bytes += len;
            let samples = decoder
                .decode_float(&packet[..len], &mut decoded, false)
                .unwrap();
            assert_eq!(samples, FRAME_SAMPLES);
            input.extend_from_slice(&frame);
            output.extend_from_slice(&decoded);
        }
        (input, output, bytes, encoder.pre_skip())
    }

    /// Correlation and energy ratio (dB) of `output` against `input` delayed by
    /// `delay` samples per channel, skipping the first `skip` samples per channel.
    fn compare(input: &[f32], output: &[f32], delay: usize, skip: usize) -> (f64, f64) {
        let input = &input[skip * CHANNELS..input.len() - delay * CHANNELS];
        let output = &output[(skip + delay) * CHANNELS..];
        let (mut cross, mut energy_in, mut energy_out) = (0f64, 0f64, 0f64);
        for (a, b) in input.iter().zip(output) {
            let (a, b) = (f64::from(*a), f64::from(*b));
            cross += a * b;
            energy_in += a * a;
            energy_out += b * b;
        }
        (
            cross / (energy_in * energy_out).sqrt(),
            10.0 * (energy_out / energy_in).log10(),
        )
    }

    #[test]
    fn bitrate_outside_the_range_is_refused() {
        assert!(matches!(
            OpusEncoder::new(5_999),
            Err(CodecError::Bitrate {
                bps: 5_999,
                min: MIN_BITRATE,
                max: MAX_BITRATE
            })
        ));
        assert!(matches!(
            OpusEncoder::new(510_001),
            Err(CodecError::Bitrate { bps: 510_001, .. })
        ));
        assert_eq!(
            OpusEncoder::new(MIN_BITRATE).unwrap().bitrate(),
            MIN_BITRATE
        );
        assert_eq!(
            OpusEncoder::new(MAX_BITRATE).unwrap().bitrate(),
            MAX_BITRATE
        );
    }

    #[test]
    fn two_seconds_of_a_chord_decode_back_aligned_by_the_pre_skip() {
        for bitrate in [64_000, 128_000] {
            let (input, output, bytes, pre_skip) = round_trip(bitrate, 100);
            // libopus's lookahead at 48 kHz: 2.5 ms plus the 4 ms delay compensation.
            assert_eq!(pre_skip, 312);
            let (correlation, ratio_db) =
                compare(&input, &output, usize::from(pre_skip), 4 * FRAME_SAMPLES);
            // Aligned by the pre-skip the decoded chord matches the input almost
            // exactly; eight samples off, the correlation falls to about 0.95.
            assert!(
                correlation > 0.995,
                "{bitrate} b/s: correlation {correlation:.4}"
            );
            assert!(
                ratio_db.abs() < 0.25,
                "{bitrate} b/s: energy differs by {ratio_db:.2} dB"
            );
            // Constrained VBR stays close to the target over 2 s.
            let expected = bitrate as usize / 8 * 2;
            assert!(
                bytes > expected * 7 / 10 && bytes < expected * 13 / 10,
                "{bitrate} b/s: {bytes} bytes in 2 s, expected about {expected}"
            );
        }
    }

    #[test]
    fn packets_never_exceed_the_maximum_even_with_a_larger_buffer() {
        let mut encoder = OpusEncoder::new(MAX_BITRATE).unwrap();
        let mut noise = 0x9e37_79b9_7f4a_7c15u64;
        let mut out = [0u8; 4 * MAX_PACKET_LEN];
        for _ in 0..50 {
            let mut frame = [0f32; FRAME_LEN];
            for sample in &mut frame {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                *sample = (noise >> 40) as f32 / (1u64 << 24) as f32 * 1.8 - 0.9;
            }
            let len = encoder.encode(&frame, &mut out).unwrap();
            assert!(len <= MAX_PACKET_LEN, "packet of {len} bytes");
            assert!(
                len > MAX_PACKET_LEN / 2,
                "white noise at 510 kb/s fills most of a packet, got {len}"
            );
        }
    }

    #[test]
    fn too_small_an_output_buffer_is_an_error() {
        let mut encoder = OpusEncoder::new(128_000).unwrap();
        assert!(matches!(
            encoder.encode(&chord_frame(0), &mut []),
            Err(CodecError::Opus(_))
        ));
    }
}
