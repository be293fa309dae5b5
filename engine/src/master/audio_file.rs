//! Audio files for the mastering chain: WAV and FLAC (and the other formats of
//! [`crate::media`]) in, WAV out (hound).
//!
//! Files are outside input: a bad, truncated or unsupported file gives an
//! [`AudioFileError`] naming the file and what was found, never a panic, and a file
//! is never read past [`MAX_FILE_SECONDS`] of audio. Everything read is interleaved
//! stereo `f32` at 48 kHz: mono is duplicated to both channels; other sample rates
//! and more than two channels are refused (resampling is not done here).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::frame::{CHANNELS, SAMPLE_RATE};
use crate::media::{DecodeLimits, MediaError, SourceRateError, decode_source_rate};

/// The longest file read, in seconds of audio.
pub const MAX_FILE_SECONDS: u64 = 30 * 60;

/// Why an audio file could not be read or written.
#[derive(Debug, Error)]
pub enum AudioFileError {
    /// The file cannot be opened or read.
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file has no bytes.
    #[error("{}: the file is empty", path.display())]
    EmptyFile { path: PathBuf },
    /// Not a WAV or FLAC file, or a feature of one that is not read.
    #[error("{}: unsupported format ({reason}); WAV and FLAC are read", path.display())]
    Unsupported { path: PathBuf, reason: String },
    /// The file claims to be audio but its data is broken.
    #[error("{}: malformed audio: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    /// The container holds no audio track.
    #[error("{}: no audio track", path.display())]
    NoAudio { path: PathBuf },
    /// The sample rate is not 48 kHz.
    #[error("{}: sample rate {found} Hz; only 48000 Hz is read (resample the file first)", path.display())]
    SampleRate { path: PathBuf, found: u32 },
    /// More than two channels.
    #[error("{}: {found} channels; only mono and stereo are read", path.display())]
    Channels { path: PathBuf, found: usize },
    /// A valid file with no samples in it.
    #[error("{}: holds no samples", path.display())]
    NoSamples { path: PathBuf },
    /// Longer than [`MAX_FILE_SECONDS`].
    #[error("{}: longer than {max_seconds} s", path.display())]
    TooLong { path: PathBuf, max_seconds: u64 },
    /// Samples to write that are not whole stereo frames.
    #[error("{}: {samples} samples are not whole stereo frames", path.display())]
    NotStereo { path: PathBuf, samples: usize },
    /// The WAV file cannot be written.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
}

/// The sample format of a written WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WavFormat {
    /// 32-bit IEEE float: lossless for the chain's output.
    #[default]
    Float32,
    /// 24-bit integer PCM, clipped to full scale.
    Int24,
}

/// Reads an audio file (WAV, FLAC, or any format [`crate::media`] decodes) into
/// interleaved stereo `f32` at 48 kHz, refusing other rates and more than two channels.
pub fn read_audio_file(path: impl AsRef<Path>) -> Result<Vec<f32>, AudioFileError> {
    let path = path.as_ref();
    let limits = DecodeLimits {
        max_duration: Duration::from_secs(MAX_FILE_SECONDS),
        max_input_bytes: u64::MAX,
    };
    let audio = decode_source_rate(path, &limits, |rate, channels| {
        if rate != SAMPLE_RATE {
            Err(AudioFileError::SampleRate {
                path: path.to_path_buf(),
                found: rate,
            })
        } else if !(1..=CHANNELS).contains(&channels) {
            Err(AudioFileError::Channels {
                path: path.to_path_buf(),
                found: channels,
            })
        } else {
            Ok(())
        }
    })
    .map_err(|error| match error {
        SourceRateError::Refused(refusal) => refusal,
        SourceRateError::Media(error) => from_media_error(path, error),
    })?;
    Ok(audio.samples)
}

fn from_media_error(path: &Path, error: MediaError) -> AudioFileError {
    let path = path.to_path_buf();
    match error {
        MediaError::SampleRate { rate, .. } => AudioFileError::SampleRate { path, found: rate },
        MediaError::Open { source, .. } => AudioFileError::Open { path, source },
        MediaError::Empty { .. } => AudioFileError::EmptyFile { path },
        MediaError::Unsupported { reason, .. } => AudioFileError::Unsupported { path, reason },
        MediaError::NoAudioTrack { .. } => AudioFileError::NoAudio { path },
        MediaError::TooLong { max_seconds, .. } => AudioFileError::TooLong { path, max_seconds },
        MediaError::NoSamples { .. } => AudioFileError::NoSamples { path },
        other @ (MediaError::Malformed { .. }
        | MediaError::TooLarge { .. }
        | MediaError::Resample { .. }) => AudioFileError::Malformed {
            path,
            reason: other.to_string(),
        },
    }
}

/// Writes interleaved stereo at 48 kHz as a WAV file.
pub fn write_wav(
    path: impl AsRef<Path>,
    interleaved: &[f32],
    format: WavFormat,
) -> Result<(), AudioFileError> {
    let path = path.as_ref();
    if !interleaved.len().is_multiple_of(CHANNELS) {
        return Err(AudioFileError::NotStereo {
            path: path.to_path_buf(),
            samples: interleaved.len(),
        });
    }
    let wrap = |source| AudioFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let spec = hound::WavSpec {
        channels: CHANNELS as u16,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: match format {
            WavFormat::Float32 => 32,
            WavFormat::Int24 => 24,
        },
        sample_format: match format {
            WavFormat::Float32 => hound::SampleFormat::Float,
            WavFormat::Int24 => hound::SampleFormat::Int,
        },
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(wrap)?;
    match format {
        WavFormat::Float32 => {
            for &sample in interleaved {
                writer.write_sample(sample).map_err(wrap)?;
            }
        }
        WavFormat::Int24 => {
            const FULL_SCALE: f32 = 8_388_607.0;
            for &sample in interleaved {
                let value = (sample.clamp(-1.0, 1.0) * FULL_SCALE).round() as i32;
                writer.write_sample(value).map_err(wrap)?;
            }
        }
    }
    writer.finalize().map_err(wrap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stereo_ramp(frames: usize) -> Vec<f32> {
        (0..frames * CHANNELS)
            .map(|i| ((i % 200) as f32 - 100.0) / 128.0)
            .collect()
    }

    fn write_with(path: &Path, channels: u16, rate: u32, frames: usize) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..frames * usize::from(channels) {
            writer.write_sample((i % 1000) as i16 * 20).unwrap();
        }
        writer.finalize().unwrap();
    }

    /// A minimal FLAC encoder for tests: 16-bit stereo at 48 kHz, verbatim subframes,
    /// fixed blocks of `block` frames.
    fn flac_bytes(left: &[i16], right: &[i16], block: usize) -> Vec<u8> {
        fn crc8(bytes: &[u8]) -> u8 {
            bytes.iter().fold(0u8, |mut crc, &byte| {
                crc ^= byte;
                for _ in 0..8 {
                    crc = if crc & 0x80 != 0 {
                        (crc << 1) ^ 0x07
                    } else {
                        crc << 1
                    };
                }
                crc
            })
        }
        fn crc16(bytes: &[u8]) -> u16 {
            bytes.iter().fold(0u16, |mut crc, &byte| {
                crc ^= u16::from(byte) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 {
                        (crc << 1) ^ 0x8005
                    } else {
                        crc << 1
                    };
                }
                crc
            })
        }
        let frames = left.len();
        let mut out = b"fLaC".to_vec();
        // STREAMINFO, the last metadata block: 34 bytes.
        out.extend_from_slice(&[0x80, 0, 0, 34]);
        out.extend_from_slice(&(block as u16).to_be_bytes());
        out.extend_from_slice(&(block as u16).to_be_bytes());
        out.extend_from_slice(&[0; 6]); // frame sizes unknown
        // 20 bits rate, 3 bits channels - 1, 5 bits bits per sample - 1, 36 bits total samples.
        let packed: u64 = (48_000u64 << 44) | (1 << 41) | (15 << 36) | frames as u64;
        out.extend_from_slice(&packed.to_be_bytes());
        out.extend_from_slice(&[0; 16]); // no MD5
        for (number, start) in (0..frames).step_by(block).enumerate() {
            let end = (start + block).min(frames);
            let mut frame = vec![0xFF, 0xF8];
            // Block size from the 16 bits after the header; 48 kHz; independent stereo; 16 bits.
            frame.push(0x7A);
            frame.push(0x18);
            assert!(number < 128);
            frame.push(number as u8);
            frame.extend_from_slice(&((end - start - 1) as u16).to_be_bytes());
            frame.push(crc8(&frame));
            for channel in [left, right] {
                frame.push(0x02); // verbatim subframe, no wasted bits
                for &sample in &channel[start..end] {
                    frame.extend_from_slice(&sample.to_be_bytes());
                }
            }
            let crc = crc16(&frame);
            frame.extend_from_slice(&crc.to_be_bytes());
            out.extend_from_slice(&frame);
        }
        out
    }

    #[test]
    fn flac_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.flac");
        let left: Vec<i16> = (0..10_000)
            .map(|i| ((i * 37) % 2000 - 1000) as i16)
            .collect();
        let right: Vec<i16> = left.iter().map(|&x| -x / 2).collect();
        std::fs::write(&path, flac_bytes(&left, &right, 4096)).unwrap();
        let samples = read_audio_file(&path).unwrap();
        assert_eq!(samples.len(), 20_000);
        for (frame, (&l, &r)) in samples.chunks_exact(2).zip(left.iter().zip(&right)) {
            assert!((frame[0] - f32::from(l) / 32768.0).abs() < 1e-6);
            assert!((frame[1] - f32::from(r) / 32768.0).abs() < 1e-6);
        }
    }

    #[test]
    fn float_wav_round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("float.wav");
        let samples = stereo_ramp(5000);
        write_wav(&path, &samples, WavFormat::Float32).unwrap();
        assert_eq!(read_audio_file(&path).unwrap(), samples);
    }

    #[test]
    fn int24_wav_round_trips_within_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("int24.wav");
        let samples = stereo_ramp(5000);
        write_wav(&path, &samples, WavFormat::Int24).unwrap();
        let back = read_audio_file(&path).unwrap();
        assert_eq!(back.len(), samples.len());
        for (a, b) in samples.iter().zip(&back) {
            assert!((a - b).abs() < 2.0 / 8_388_607.0);
        }
    }

    #[test]
    fn mono_is_duplicated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mono.wav");
        write_with(&path, 1, 48_000, 100);
        let samples = read_audio_file(&path).unwrap();
        assert_eq!(samples.len(), 200);
        for frame in samples.chunks_exact(2) {
            assert_eq!(frame[0], frame[1]);
        }
    }

    #[test]
    fn other_rates_and_channel_counts_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cd.wav");
        write_with(&path, 2, 44_100, 100);
        let error = read_audio_file(&path).unwrap_err();
        assert!(
            matches!(error, AudioFileError::SampleRate { found: 44_100, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("cd.wav"));

        let path = dir.path().join("surround.wav");
        write_with(&path, 3, 48_000, 100);
        let error = read_audio_file(&path).unwrap_err();
        assert!(
            matches!(error, AudioFileError::Channels { found: 3, .. }),
            "{error}"
        );
    }

    #[test]
    fn an_empty_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.wav");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            read_audio_file(&path),
            Err(AudioFileError::EmptyFile { .. })
        ));
    }

    #[test]
    fn a_malformed_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        // A RIFF/WAVE header whose format chunk is garbage.
        let mut bytes = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00".to_vec();
        bytes.extend_from_slice(&[0xff; 16]);
        bytes.extend_from_slice(b"data\x00\x00\x00\x00");
        let path = dir.path().join("broken.wav");
        std::fs::write(&path, &bytes).unwrap();
        let error = read_audio_file(&path).unwrap_err();
        assert!(
            matches!(
                error,
                AudioFileError::Malformed { .. } | AudioFileError::Unsupported { .. }
            ),
            "{error}"
        );

        // A valid file cut in its header.
        let path = dir.path().join("cut.wav");
        write_with(&path, 2, 48_000, 1000);
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..30]).unwrap();
        assert!(read_audio_file(&path).is_err());
    }

    #[test]
    fn an_unsupported_format_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("song.txt");
        std::fs::write(
            &path,
            "these are not audio samples at all, just text".repeat(10),
        )
        .unwrap();
        let error = read_audio_file(&path).unwrap_err();
        assert!(
            matches!(error, AudioFileError::Unsupported { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("song.txt"));

        let missing = dir.path().join("missing.flac");
        assert!(matches!(
            read_audio_file(&missing),
            Err(AudioFileError::Open { .. })
        ));
    }

    #[test]
    fn writing_half_a_frame_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error =
            write_wav(dir.path().join("odd.wav"), &[0.0; 3], WavFormat::Float32).unwrap_err();
        assert!(matches!(
            error,
            AudioFileError::NotStereo { samples: 3, .. }
        ));
    }
}
