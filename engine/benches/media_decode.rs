//! Speed of reading a media file for air: decode plus conversion to 48 kHz stereo of a
//! 3-minute 44.1 kHz file, FLAC and MP3 (192 kb/s), from memory. The files are made
//! by ffmpeg from a corpus track at the start of the run (ffmpeg must be installed).
//!
//! Throughput is in output samples per channel, so criterion's "elem/s" divided by
//! 48 000 is the real-time factor. Before the measurements, one timed run of each
//! prints its real-time factor.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sonicforge_engine::frame::SAMPLE_RATE;
use sonicforge_engine::master::audio_file::{WavFormat, write_wav};
use sonicforge_engine::master::corpus::CorpusTrack;
use sonicforge_engine::media::{DecodeLimits, decode_bytes};

const LENGTH: Duration = Duration::from_secs(180);

/// Encodes `source` (a WAV file) at 44.1 kHz with `codec` arguments into `name`.
fn encode(source: &Path, dir: &Path, name: &str, codec: &[&str]) -> Vec<u8> {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(source)
        .args(["-ar", "44100"])
        .args(codec)
        .arg(&path)
        .status();
    match status {
        Ok(status) if status.success() => {}
        _ => panic!("ffmpeg could not make {name}; the media bench needs ffmpeg installed"),
    }
    match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) => panic!("{name}: {error}"),
    }
}

fn media_decode(c: &mut Criterion) {
    let track = match CorpusTrack::Dull.render(LENGTH) {
        Ok(track) => track,
        Err(error) => panic!("the corpus track cannot be rendered: {error}"),
    };
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("no temporary directory: {error}"),
    };
    let wav = dir.path().join("track.wav");
    if let Err(error) = write_wav(&wav, &track, WavFormat::Float32) {
        panic!("{error}");
    }
    let files = [
        (
            "flac",
            encode(&wav, dir.path(), "track.flac", &["-c:a", "flac"]),
        ),
        (
            "mp3",
            encode(
                &wav,
                dir.path(),
                "track.mp3",
                &["-c:a", "libmp3lame", "-b:a", "192k"],
            ),
        ),
    ];
    let limits = DecodeLimits::default();

    let mut group = c.benchmark_group("media_decode");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    for (format, bytes) in &files {
        let name = format!("track.{format}");
        let started = Instant::now();
        let decoded = match decode_bytes(&name, bytes, &limits) {
            Ok(decoded) => decoded,
            Err(error) => panic!("{error}"),
        };
        let seconds = started.elapsed().as_secs_f64();
        let audio = decoded.frames() as f64 / f64::from(SAMPLE_RATE);
        println!(
            "media_decode/{format}_44k1: {audio:.0} s of audio in {seconds:.3} s, real-time factor {:.0}x",
            audio / seconds
        );
        group.throughput(Throughput::Elements(decoded.frames() as u64));
        group.bench_function(format!("{format}_44k1_to_48k"), |b| {
            b.iter(|| black_box(decode_bytes(&name, black_box(bytes), &limits).ok()))
        });
    }
    group.finish();
}

criterion_group!(benches, media_decode);
criterion_main!(benches);
