//! Audio files from outside: decoding, tags, and conversion to the engine's format.
//!
//! [`decode_file`] and [`decode_bytes`] read WAV, FLAC, MP3 and Ogg Vorbis through
//! Symphonia and return interleaved stereo `f32` at 48 kHz, whatever the file held:
//! other sample rates are converted with an FFT resampler (Rubato), mono is copied to
//! both channels, and more than two channels are folded down to stereo. Tags (ID3,
//! Vorbis comments, RIFF INFO) fill [`MediaTags`]; the title falls back to the file's
//! stem.
//!
//! Files are outside input. Any bytes at all give either audio or a [`MediaError`]
//! naming the file and what was wrong, never a panic; [`DecodeLimits`] bound both the
//! bytes read and the length of the audio, so a file cannot make memory grow without
//! bound.
//!
//! | Container | Codec        | Tags read        |
//! |-----------|--------------|------------------|
//! | WAV       | PCM          | RIFF INFO        |
//! | FLAC      | FLAC         | Vorbis comments  |
//! | MP3       | MPEG layer 3 | ID3v1, ID3v2     |
//! | Ogg       | Vorbis       | Vorbis comments  |

mod decode;
mod downmix;
mod error;
mod resample;
mod tags;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use decode::{SourceRateError, decode_source_rate};
pub use decode::{decode_bytes, decode_file};
pub use error::MediaError;

/// Bounds on what a decode may take in and produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The longest audio accepted. Default: 30 minutes.
    pub max_duration: Duration,
    /// The largest input accepted, in bytes. Default: 1 GiB (a 30-minute 96 kHz
    /// 24-bit stereo WAV file fits).
    pub max_input_bytes: u64,
}

impl DecodeLimits {
    /// The default longest audio: 30 minutes.
    pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(30 * 60);
    /// The default largest input: 1 GiB.
    pub const DEFAULT_MAX_INPUT_BYTES: u64 = 1 << 30;
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_duration: Self::DEFAULT_MAX_DURATION,
            max_input_bytes: Self::DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

/// What the file's tags say about it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MediaTags {
    /// The track title; the file's stem when the file has no title tag.
    pub title: String,
    /// The performing artist.
    pub artist: Option<String>,
    /// The album.
    pub album: Option<String>,
    /// The genre, as written in the file.
    pub genre: Option<String>,
    /// The release or recording date (or year), as written in the file.
    pub date: Option<String>,
    /// The track's number on its album.
    pub track_number: Option<u64>,
}

/// A decoded file: interleaved stereo `f32` at 48 kHz and what was learnt on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Interleaved stereo samples at 48 kHz (left, right, left, ...).
    pub samples: Vec<f32>,
    /// The file's tags.
    pub tags: MediaTags,
    /// The container, as Symphonia names it: "wave", "flac", "mp3", "ogg".
    pub source_format: String,
    /// The codec, as Symphonia names it: "pcm_s16le", "flac", "mp3", "vorbis", ...
    pub source_codec: String,
    /// The file's sample rate in Hz.
    pub source_sample_rate: u32,
    /// The file's channel count.
    pub source_channels: usize,
    /// The length of [`samples`](Self::samples).
    pub duration: Duration,
}

/// A stable id for a file's content: the first 16 hex digits of its SHA-256, so the
/// same bytes get the same id wherever and whenever they arrive.
pub fn content_id(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

impl DecodedAudio {
    /// Stereo frames (samples per channel) in [`samples`](Self::samples).
    pub fn frames(&self) -> usize {
        self.samples.len() / crate::frame::CHANNELS
    }
}
