//! Audio files of every supported format decode to 48 kHz stereo with their tags, and
//! bytes that are not a whole, valid file give an error, never a panic.
//!
//! WAV fixtures are written with hound; FLAC, MP3 and Ogg Vorbis ones with ffmpeg.
//! Where ffmpeg is not installed those cases are skipped with a note, except under
//! `CI`, where a missing ffmpeg fails the test.

// Test helpers unwrap: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sonicforge_engine::media::{DecodeLimits, MediaError, decode_bytes, decode_file};

const TONE_HZ: f64 = 1000.0;

fn ffmpeg_available() -> bool {
    if Command::new("ffmpeg").arg("-version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set and ffmpeg is not installed (`make test` installs it)"
    );
    println!("ffmpeg is not installed; the ffmpeg cases are skipped");
    false
}

/// Encodes a 1 kHz sine (amplitude 1/8) of `seconds` at `rate` with ffmpeg, with tags.
fn ffmpeg_tone(dir: &Path, name: &str, rate: u32, channels: u32, seconds: f64) -> PathBuf {
    let path = dir.join(name);
    let codec: &[&str] = match path.extension().and_then(|e| e.to_str()) {
        Some("mp3") => &["-c:a", "libmp3lame", "-b:a", "192k", "-id3v2_version", "3"],
        Some("ogg") => &["-c:a", "libvorbis", "-q:a", "6"],
        Some("flac") => &["-c:a", "flac"],
        _ => &[],
    };
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!(
            "sine=frequency={TONE_HZ}:sample_rate={rate}:duration={seconds}"
        ))
        .args(match channels {
            1 => &[][..],
            // Both channels at the source's level (ffmpeg's own upmix lowers each by 3 dB).
            _ => &["-af", "pan=stereo|c0=c0|c1=c0"][..],
        })
        .args(codec)
        .args([
            "-metadata",
            "title=Test Tone",
            "-metadata",
            "artist=The Oscillators",
            "-metadata",
            "album=Calibration",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg could not write {name}");
    path
}

/// The RMS of the middle half of the left channel, as ffmpeg decodes the file.
fn ffmpeg_left_rms(path: &Path) -> f64 {
    let output = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-af", "pan=mono|c0=c0", "-f", "f32le", "-"])
        .output()
        .unwrap();
    assert!(output.status.success(), "ffmpeg could not decode {path:?}");
    let samples: Vec<f32> = output
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    rms(samples[samples.len() / 4..samples.len() * 3 / 4]
        .iter()
        .copied())
}

/// Writes a 16-bit WAV of a 1 kHz sine at `amplitude` on every channel.
fn wav_tone(path: &Path, rate: u32, channels: u16, frames: usize, amplitude: f64) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..frames {
        let x = amplitude * (std::f64::consts::TAU * TONE_HZ * i as f64 / f64::from(rate)).sin();
        for _ in 0..channels {
            writer.write_sample((x * 32767.0).round() as i16).unwrap();
        }
    }
    writer.finalize().unwrap();
}

fn rms(samples: impl Iterator<Item = f32>) -> f64 {
    let (sum, count) = samples.fold((0.0, 0usize), |(s, n), x| (s + f64::from(x).powi(2), n + 1));
    (sum / count as f64).sqrt()
}

/// The frequency of the strongest tone, from upward zero crossings over the middle.
fn frequency(left: &[f32], rate: f64) -> f64 {
    let middle = &left[left.len() / 4..left.len() * 3 / 4];
    let crossings: Vec<usize> = middle
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, _)| i)
        .collect();
    let (first, last) = (crossings[0], crossings[crossings.len() - 1]);
    (crossings.len() - 1) as f64 * rate / (last - first) as f64
}

fn left_channel(samples: &[f32]) -> Vec<f32> {
    samples.chunks_exact(2).map(|f| f[0]).collect()
}

#[test]
fn a_44k1_mono_wav_comes_out_at_48k_stereo_at_the_same_pitch_length_and_level() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calibration tone.wav");
    wav_tone(&path, 44_100, 1, 44_100 * 2, 0.5);
    let audio = decode_file(&path, &DecodeLimits::default()).unwrap();

    assert_eq!(audio.source_sample_rate, 44_100);
    assert_eq!(audio.source_channels, 1);
    assert_eq!(audio.source_format, "wave");
    assert_eq!(audio.frames(), 96_000);
    assert_eq!(audio.duration, Duration::from_secs(2));
    for frame in audio.samples.chunks_exact(2) {
        assert_eq!(frame[0], frame[1], "mono must reach both channels alike");
    }
    let left = left_channel(&audio.samples);
    let hz = frequency(&left, 48_000.0);
    assert!((hz - TONE_HZ).abs() < 0.5, "{hz} Hz");
    let level_db = 20.0 * (rms(left[4800..91_200].iter().copied()) / (0.5 / 2f64.sqrt())).log10();
    assert!(level_db.abs() < 0.1, "level off by {level_db} dB");
    // No tags: the title is the file's stem.
    assert_eq!(audio.tags.title, "calibration tone");
    assert_eq!(audio.tags.artist, None);
}

#[test]
fn a_six_channel_wav_is_folded_to_stereo() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("surround.wav");
    wav_tone(&path, 48_000, 6, 4800, 0.25);
    let audio = decode_file(&path, &DecodeLimits::default()).unwrap();
    assert_eq!(audio.source_channels, 6);
    assert_eq!(audio.frames(), 4800);
    let peak = audio.samples.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(peak > 0.1 && peak <= 0.26, "peak {peak}");
}

#[test]
fn flac_mp3_and_ogg_vorbis_decode_with_their_tags() {
    if !ffmpeg_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, rate, channels, codec, exact_length) in [
        ("tone.flac", 44_100, 2, "flac", true),
        ("tone.mp3", 44_100, 2, "mp3", false),
        ("tone.ogg", 44_100, 2, "vorbis", false),
        ("mono.ogg", 22_050, 1, "vorbis", false),
        ("tone-48k.flac", 48_000, 1, "flac", true),
    ] {
        let path = ffmpeg_tone(dir.path(), name, rate, channels, 3.0);
        let audio = decode_file(&path, &DecodeLimits::default())
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(audio.source_sample_rate, rate, "{name}");
        assert_eq!(audio.source_channels, channels as usize, "{name}");
        assert_eq!(audio.source_codec, codec, "{name}");
        let seconds = audio.duration.as_secs_f64();
        if exact_length {
            assert_eq!(audio.frames(), 144_000, "{name}");
        } else {
            // Lossy codecs may keep their encoder's padding (a few milliseconds).
            assert!((seconds - 3.0).abs() < 0.1, "{name}: {seconds} s");
        }
        let left = left_channel(&audio.samples);
        let hz = frequency(&left, 48_000.0);
        assert!((hz - TONE_HZ).abs() < 0.5, "{name}: {hz} Hz");
        // The level ffmpeg's own decoder reads from the same file (lossy encoders
        // change the level a little themselves; ffmpeg's sine source has amplitude 1/8).
        let middle = &left[left.len() / 4..left.len() * 3 / 4];
        let reference = ffmpeg_left_rms(&path);
        let level_db = 20.0 * (rms(middle.iter().copied()) / reference).log10();
        assert!(level_db.abs() < 0.1, "{name}: level off by {level_db} dB");
        assert_eq!(audio.tags.title, "Test Tone", "{name}");
        assert_eq!(
            audio.tags.artist.as_deref(),
            Some("The Oscillators"),
            "{name}"
        );
        assert_eq!(audio.tags.album.as_deref(), Some("Calibration"), "{name}");

        // The same bytes from memory decode the same.
        let bytes = std::fs::read(&path).unwrap();
        let from_memory = decode_bytes(name, &bytes, &DecodeLimits::default()).unwrap();
        assert_eq!(from_memory.samples, audio.samples, "{name}");
    }
}

#[test]
fn limits_refuse_long_and_large_files_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.wav");
    wav_tone(&path, 48_000, 2, 48_000 * 3, 0.5);
    let short = DecodeLimits {
        max_duration: Duration::from_secs(2),
        ..DecodeLimits::default()
    };
    let error = decode_file(&path, &short).unwrap_err();
    assert!(
        matches!(error, MediaError::TooLong { max_seconds: 2, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("long.wav"), "{error}");

    let small = DecodeLimits {
        max_input_bytes: 1000,
        ..DecodeLimits::default()
    };
    let error = decode_file(&path, &small).unwrap_err();
    assert!(
        matches!(
            error,
            MediaError::TooLarge {
                max_bytes: 1000,
                ..
            }
        ),
        "{error}"
    );
}

/// Every way a file can be wrong gives an error (and never a panic).
#[test]
fn broken_files_are_errors_not_panics() {
    let limits = DecodeLimits::default();
    let dir = tempfile::tempdir().unwrap();
    let mut valid: Vec<(String, Vec<u8>)> = Vec::new();
    let wav = dir.path().join("tone.wav");
    wav_tone(&wav, 44_100, 2, 44_100, 0.5);
    valid.push(("tone.wav".into(), std::fs::read(&wav).unwrap()));
    if ffmpeg_available() {
        for name in ["tone.flac", "tone.mp3", "tone.ogg"] {
            let path = ffmpeg_tone(dir.path(), name, 44_100, 2, 2.0);
            valid.push((name.into(), std::fs::read(path).unwrap()));
        }
    }

    let expect_error =
        |name: &str, bytes: &[u8], what: &str| match decode_bytes(name, bytes, &limits) {
            Ok(audio) => panic!(
                "{name} ({what}) decoded to {} frames instead of failing",
                audio.frames()
            ),
            Err(error) => {
                assert!(error.to_string().contains(name), "{error}");
                error
            }
        };

    for (name, bytes) in &valid {
        // Cut short: in the header, and part way through the audio.
        for keep in [4, 40, bytes.len() / 3, bytes.len() * 9 / 10] {
            expect_error(name, &bytes[..keep], &format!("cut to {keep} bytes"));
        }
        // The header corrupted.
        let mut corrupted = bytes.clone();
        for byte in corrupted.iter_mut().take(64).skip(4) {
            *byte ^= 0x5a;
        }
        expect_error(name, &corrupted, "corrupted header");
    }

    // Random bytes under every extension.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for extension in ["mp3", "flac", "ogg", "wav", "bin"] {
        for round in 0..8 {
            let bytes: Vec<u8> = (0..4096 * (round + 1))
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            expect_error(&format!("noise.{extension}"), &bytes, "random bytes");
        }
    }

    // An empty file and a text file posing as an MP3.
    let error = expect_error("empty.mp3", b"", "empty");
    assert!(matches!(error, MediaError::Empty { .. }), "{error}");
    let text = "This is a shopping list, not a song.\n".repeat(100);
    expect_error("list.mp3", text.as_bytes(), "text");

    // The same through the file path.
    let empty = dir.path().join("empty.flac");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        decode_file(&empty, &limits),
        Err(MediaError::Empty { .. })
    ));
    assert!(matches!(
        decode_file(&dir.path().join("missing.ogg"), &limits),
        Err(MediaError::Open { .. })
    ));
}
