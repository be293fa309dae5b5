//! Why a file could not be decoded.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Why an audio file could not be decoded. Every variant names the file (its path, or
/// the name it was given when decoded from memory) and says what was wrong with it.
#[derive(Debug, Error)]
pub enum MediaError {
    /// The file cannot be opened or read.
    #[error("{}: cannot read: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file has no bytes.
    #[error("{}: the file is empty", path.display())]
    Empty { path: PathBuf },
    /// The file is larger than the limit.
    #[error("{}: {bytes} bytes is more than the limit of {max_bytes} bytes", path.display())]
    TooLarge {
        path: PathBuf,
        bytes: u64,
        max_bytes: u64,
    },
    /// Not a format that is read, or a feature of one that is not.
    #[error(
        "{}: unsupported format ({reason}); WAV, FLAC, MP3 and Ogg Vorbis are read",
        path.display()
    )]
    Unsupported { path: PathBuf, reason: String },
    /// The file claims to be audio but its data is broken.
    #[error("{}: malformed audio: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    /// The container holds no audio track.
    #[error("{}: no audio track", path.display())]
    NoAudioTrack { path: PathBuf },
    /// The audio's sample rate is outside what is converted.
    #[error("{}: sample rate {rate} Hz is outside {min}..={max} Hz", path.display())]
    SampleRate {
        path: PathBuf,
        rate: u32,
        min: u32,
        max: u32,
    },
    /// The audio is longer than the limit.
    #[error("{}: longer than the limit of {max_seconds} s", path.display())]
    TooLong { path: PathBuf, max_seconds: u64 },
    /// A valid file with no samples in it.
    #[error("{}: holds no samples", path.display())]
    NoSamples { path: PathBuf },
    /// The sample rate converter refused the stream (its message says why).
    #[error("{}: cannot convert {rate} Hz to 48000 Hz: {reason}", path.display())]
    Resample {
        path: PathBuf,
        rate: u32,
        reason: String,
    },
}

impl MediaError {
    /// The file (or name) the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Open { path, .. }
            | Self::Empty { path }
            | Self::TooLarge { path, .. }
            | Self::Unsupported { path, .. }
            | Self::Malformed { path, .. }
            | Self::NoAudioTrack { path }
            | Self::SampleRate { path, .. }
            | Self::TooLong { path, .. }
            | Self::NoSamples { path }
            | Self::Resample { path, .. } => path,
        }
    }

    /// Whether the error is about the file's content (as opposed to reading it):
    /// such a file will never decode, whoever tries.
    pub fn is_bad_content(&self) -> bool {
        !matches!(self, Self::Open { .. })
    }
}
