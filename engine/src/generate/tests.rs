//! Behaviour of the procedural generator as a whole: rendered tracks.

use super::dsp::LoudnessMeter;
use super::theory::{Scale, hz};
use super::*;
use crate::frame::peak;

fn request(prompt: &str, seed: u64, seconds: f64) -> TrackRequest {
    TrackRequest {
        prompt: prompt.to_string(),
        seed,
        length: Some(Duration::from_secs_f64(seconds)),
    }
}

fn render(prompt: &str, seed: u64, seconds: f64) -> Track {
    ProceduralGenerator::default()
        .render(&request(prompt, seed, seconds))
        .unwrap()
}

fn rms(samples: &[f32]) -> f32 {
    let sum: f64 = samples.iter().map(|s| f64::from(*s) * f64::from(*s)).sum();
    (sum / samples.len().max(1) as f64).sqrt() as f32
}

/// The interleaved samples from `from` to `to` seconds.
fn seconds(track: &Track, from: f64, to: f64) -> &[f32] {
    let at = |s: f64| ((s * f64::from(SAMPLE_RATE)) as usize * CHANNELS).min(track.samples.len());
    &track.samples[at(from)..at(to)]
}

fn lufs(samples: &[f32]) -> f32 {
    let mut meter = LoudnessMeter::new(samples.len() / 2);
    for frame in samples.chunks_exact(2) {
        meter.push(frame[0], frame[1]);
    }
    meter.integrated().unwrap()
}

/// Onsets per second: 10 ms blocks more than twice as loud as the 30 ms before them.
fn onsets_per_second(track: &Track) -> f32 {
    let blocks: Vec<f32> = track.samples.chunks(960).map(rms).collect();
    let onsets = blocks
        .windows(4)
        .filter(|w| w[3] > 0.01 && w[3] > 2.0 * (w[0] + w[1] + w[2]) / 3.0)
        .count();
    onsets as f32 / track.duration().as_secs_f32()
}

#[test]
fn same_request_renders_identical_samples_id_and_title() {
    let a = render("lofi chill 80 bpm A minor", 7, 8.0);
    let b = render("lofi chill 80 bpm A minor", 7, 8.0);
    assert_eq!(a.id, b.id);
    assert_eq!(a.title, b.title);
    assert_eq!(a.style, b.style);
    assert!(
        a.samples
            .iter()
            .zip(b.samples.iter())
            .all(|(x, y)| x.to_bits() == y.to_bits())
    );
}

#[test]
fn different_seed_renders_different_music_and_id() {
    let a = render("dark techno 128 bpm", 1, 8.0);
    let b = render("dark techno 128 bpm", 2, 8.0);
    assert_ne!(a.id, b.id);
    let differing = a
        .samples
        .iter()
        .zip(b.samples.iter())
        .filter(|(x, y)| x != y)
        .count();
    assert!(
        differing > a.samples.len() / 2,
        "{differing} of {} samples differ",
        a.samples.len()
    );
}

#[test]
fn requested_length_is_honoured_to_the_sample() {
    for (seconds, frames) in [
        (1.0, 48_000),
        (7.0, 336_000),
        (6.5, 312_000),
        (12.345_678, 592_593),
    ] {
        let track = render("house 122 bpm", 1, seconds);
        assert_eq!(track.frames(), frames, "{seconds} s");
        assert_eq!(track.samples.len(), frames * 2);
    }
    assert_eq!(render("house", 1, 7.0).duration(), Duration::from_secs(7));
}

#[test]
fn default_length_is_whole_bars_between_two_and_four_minutes() {
    for seed in 0..50 {
        let style = style_for("synthwave 97 bpm", seed).unwrap();
        let frames = default_frames(&style, seed);
        let seconds = frames as f64 / f64::from(SAMPLE_RATE);
        assert!((120.0..=240.0).contains(&seconds), "{seconds} s");
        let bar = 4.0 * 60.0 / 97.0 * f64::from(SAMPLE_RATE);
        let bars = frames as f64 / bar;
        assert!((bars - bars.round()).abs() < 1e-3, "{bars} bars");
    }
    let track = ProceduralGenerator::default()
        .render(&TrackRequest {
            prompt: "ambient".into(),
            seed: 5,
            length: None,
        })
        .unwrap();
    assert!(
        DEFAULT_LENGTHS.contains(&track.duration()),
        "{:?}",
        track.duration()
    );
}

#[test]
fn length_outside_one_second_to_twenty_minutes_is_refused() {
    let mut generator = ProceduralGenerator::default();
    for seconds in [0.0, 0.999, 1200.001, 1e6] {
        let error = generator.render(&request("house", 1, seconds)).unwrap_err();
        assert_eq!(
            error,
            GenerateError::Length {
                requested: Duration::from_secs_f64(seconds),
                min: MIN_LENGTH,
                max: MAX_LENGTH
            }
        );
    }
}

#[test]
fn unreadable_prompts_are_refused_and_the_generator_keeps_working() {
    let mut generator = ProceduralGenerator::default();
    let empty = generator.render(&request("  ", 1, 2.0)).unwrap_err();
    assert_eq!(empty, GenerateError::Prompt(PromptError::Empty));
    let fast = generator
        .render(&request("techno 500 bpm", 1, 2.0))
        .unwrap_err();
    assert!(matches!(
        fast,
        GenerateError::Prompt(PromptError::Tempo { .. })
    ));
    assert!(generator.render(&request("techno", 1, 2.0)).is_ok());
}

#[test]
fn every_genre_is_audible_finite_below_full_scale_and_near_minus_fourteen_lufs() {
    for genre in Genre::ALL {
        let track = render(genre.name(), 3, 30.0);
        assert!(track.samples.iter().all(|s| s.is_finite()), "{genre}");
        let peak = peak(&track.samples);
        assert!(peak < 1.0, "{genre} peaks at {peak}");
        let level = rms(&track.samples);
        assert!((0.03..0.4).contains(&level), "{genre} rms {level}");
        let loudness = lufs(&track.samples);
        assert!(
            (-16.0..=-12.0).contains(&loudness),
            "{genre} at {loudness} LUFS"
        );
    }
}

#[test]
fn ambient_has_far_less_transient_energy_than_techno() {
    let techno = onsets_per_second(&render("techno 128 bpm", 5, 40.0));
    let ambient = onsets_per_second(&render("ambient 70 bpm", 5, 40.0));
    assert!(techno > 1.5, "techno {techno} onsets per second");
    assert!(
        techno > 4.0 * ambient,
        "techno {techno}, ambient {ambient} onsets per second"
    );
}

#[test]
fn intro_is_quieter_than_the_main_section_and_the_end_fades_out() {
    for genre in Genre::ALL {
        let track = render(genre.name(), 9, 120.0);
        let intro = rms(seconds(&track, 2.0, 6.0));
        let body = rms(seconds(&track, 40.0, 100.0));
        assert!(intro < body * 0.8, "{genre}: intro {intro}, body {body}");
        let end = track.duration().as_secs_f64();
        let last = rms(seconds(&track, end - 0.25, end));
        assert!(
            last < body * 0.1,
            "{genre}: last 250 ms {last}, body {body}"
        );
        let tail = &track.samples[track.samples.len() - 2..];
        assert!(
            tail.iter().all(|s| s.abs() < 1e-3),
            "{genre}: ends on {tail:?}"
        );
    }
}

#[test]
fn short_tracks_still_fade_in_and_out_around_music() {
    for genre in Genre::ALL {
        let track = render(genre.name(), 2, 6.0);
        assert_eq!(track.frames(), 6 * 48_000);
        assert!(track.samples[..2].iter().all(|s| s.abs() < 1e-3), "{genre}");
        assert!(
            track.samples[track.samples.len() - 2..]
                .iter()
                .all(|s| s.abs() < 1e-3),
            "{genre}"
        );
        assert!(rms(seconds(&track, 1.5, 4.5)) > 0.03, "{genre}");
    }
}

#[test]
fn stereo_image_is_wide_but_not_out_of_phase() {
    for genre in Genre::ALL {
        let track = render(genre.name(), 4, 20.0);
        let body = seconds(&track, 5.0, 15.0);
        let (mut lr, mut ll, mut rr) = (0.0f64, 0.0f64, 0.0f64);
        for frame in body.chunks_exact(2) {
            let (l, r) = (f64::from(frame[0]), f64::from(frame[1]));
            lr += l * r;
            ll += l * l;
            rr += r * r;
        }
        let correlation = lr / (ll * rr).sqrt();
        assert!(
            (0.3..0.995).contains(&correlation),
            "{genre}: correlation {correlation}"
        );
    }
}

/// Power of `samples` (mono) at `frequency`, by the Goertzel algorithm.
fn goertzel(samples: &[f32], frequency: f32) -> f32 {
    let coefficient = 2.0 * (std::f32::consts::TAU * frequency / SAMPLE_RATE as f32).cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in samples {
        let s0 = x + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coefficient * s1 * s2
}

#[test]
fn music_stays_in_the_requested_key() {
    for prompt in [
        "lofi 80 bpm A minor",
        "house 124 bpm F# major",
        "synthwave 100 bpm D minor",
        "ambient Eb major",
    ] {
        let track = render(prompt, 6, 40.0);
        let style = &track.style;
        let scale = Scale::new(style.key);
        let in_key: Vec<i32> = (0..7)
            .map(|d| (i32::from(style.key.root) + scale.semitones(d)) % 12)
            .collect();
        let mono: Vec<f32> = seconds(&track, 10.0, 30.0)
            .chunks_exact(2)
            .map(|f| f[0] + f[1])
            .collect();
        // 100 ms windows: bins about 10 Hz wide, so slightly detuned partials still count.
        let mut chroma = [0.0f32; 12];
        for window in mono.chunks_exact(4800) {
            for note in 55..80 {
                chroma[(note % 12) as usize] += goertzel(window, hz(note as f32));
            }
        }
        let inside: f32 = (0..12)
            .filter(|pc| in_key.contains(pc))
            .map(|pc| chroma[pc as usize])
            .sum::<f32>()
            / 7.0;
        let outside: f32 = (0..12)
            .filter(|pc| !in_key.contains(pc))
            .map(|pc| chroma[pc as usize])
            .sum::<f32>()
            / 5.0;
        assert!(
            inside > 4.0 * outside,
            "{prompt}: in key {inside}, outside {outside}"
        );
    }
}

#[test]
fn track_id_is_fnv1a_of_generator_prompt_seed_and_length() {
    let track = render("lofi", 99, 2.0);
    let mut bytes = b"procedural\0lofi\0".to_vec();
    bytes.extend_from_slice(&99u64.to_le_bytes());
    bytes.extend_from_slice(&96_000u64.to_le_bytes());
    assert_eq!(track.id, format!("{:016x}", rng::fnv1a64(&bytes)));
    assert_eq!(track.id.len(), 16);
    assert_eq!(track.generator, "procedural");
    assert!(!track.title.is_empty());
}

#[test]
fn target_loudness_option_sets_the_level() {
    let mut quiet = ProceduralGenerator::new(ProceduralOptions { target_lufs: -23.0 });
    let track = quiet.render(&request("house 124 bpm", 3, 20.0)).unwrap();
    let loudness = lufs(&track.samples);
    assert!((-24.0..=-22.0).contains(&loudness), "{loudness} LUFS");
    let mut broken = ProceduralGenerator::new(ProceduralOptions {
        target_lufs: f32::NAN,
    });
    let track = broken.render(&request("house 124 bpm", 3, 5.0)).unwrap();
    assert!(track.samples.iter().all(|s| s.is_finite()));
}
