//! The deterministic test corpus of the mastering chain, generated in code.
//!
//! Every track is rendered by the [`ProceduralGenerator`] from a fixed prompt and
//! seed, then shaped with simple filters and gains into one of the cases the chain
//! must handle. All tracks are 48 kHz stereo; the length is a parameter (3 minutes
//! in the benchmarks, 20-30 s in tests). The same length always gives the same samples.
//!
//! | track | source | shaping |
//! |---|---|---|
//! | reference | house | none: the balanced reference, about -14 LUFS |
//! | quiet | lofi | gain to -30 LUFS |
//! | loud | techno | gain to -6 LUFS, then hard-clipped at full scale (true peak above 0 dBTP) |
//! | bass-heavy | synthwave | a 27.5 Hz and a 41.2 Hz sub drone, +12 dB low shelf at 70 Hz; -14 LUFS |
//! | dull | house | a 2nd-order low-pass at 3 kHz (highs missing); -14 LUFS |
//! | bright | synthwave | high-pass at 150 Hz, +12 dB high shelf at 3 kHz; -14 LUFS |

use std::f64::consts::PI;
use std::time::Duration;

use super::loudness::{Measure, apply_gain_db, gain_to_target_db, measure};
use crate::frame::{CHANNELS, SAMPLE_RATE};
use crate::generate::{GenerateError, Generator, ProceduralGenerator, TrackRequest};

/// Length of the benchmark corpus.
pub const BENCH_LENGTH: Duration = Duration::from_secs(180);

/// One track of the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorpusTrack {
    /// The balanced reference the others are mastered toward.
    Reference,
    /// About -30 LUFS.
    Quiet,
    /// Loud and clipped: true peak above 0 dBTP.
    Loud,
    /// Strong content at 20-60 Hz.
    BassHeavy,
    /// Highs missing.
    Dull,
    /// Too much treble, too little bass.
    Bright,
}

impl CorpusTrack {
    /// Every track, the reference first.
    pub const ALL: [CorpusTrack; 6] = [
        CorpusTrack::Reference,
        CorpusTrack::Quiet,
        CorpusTrack::Loud,
        CorpusTrack::BassHeavy,
        CorpusTrack::Dull,
        CorpusTrack::Bright,
    ];

    /// The tracks with a problem to fix (all but the reference).
    pub const PROBLEMS: [CorpusTrack; 5] = [
        CorpusTrack::Quiet,
        CorpusTrack::Loud,
        CorpusTrack::BassHeavy,
        CorpusTrack::Dull,
        CorpusTrack::Bright,
    ];

    /// A short name for reports and file names.
    pub fn name(&self) -> &'static str {
        match self {
            CorpusTrack::Reference => "reference",
            CorpusTrack::Quiet => "quiet",
            CorpusTrack::Loud => "loud",
            CorpusTrack::BassHeavy => "bass-heavy",
            CorpusTrack::Dull => "dull",
            CorpusTrack::Bright => "bright",
        }
    }

    fn request(&self, length: Duration) -> TrackRequest {
        let (prompt, seed) = match self {
            CorpusTrack::Reference => ("house 122 bpm", 101),
            CorpusTrack::Quiet => ("lofi chill 82 bpm", 202),
            CorpusTrack::Loud => ("dark techno 130 bpm", 303),
            CorpusTrack::BassHeavy => ("synthwave 100 bpm", 404),
            CorpusTrack::Dull => ("house 124 bpm", 505),
            CorpusTrack::Bright => ("synthwave 96 bpm", 606),
        };
        TrackRequest {
            prompt: prompt.to_string(),
            seed,
            length: Some(length),
        }
    }

    /// Renders the track: interleaved stereo at 48 kHz, `length` long (1 s to 20 min).
    pub fn render(&self, length: Duration) -> Result<Vec<f32>, GenerateError> {
        let track = ProceduralGenerator::default().render(&self.request(length))?;
        let mut samples = track.samples.to_vec();
        match self {
            CorpusTrack::Reference => {}
            CorpusTrack::Quiet => normalise(&mut samples, -30.0),
            CorpusTrack::Loud => {
                normalise(&mut samples, -6.0);
                for sample in &mut samples {
                    *sample = sample.clamp(-1.0, 1.0);
                }
            }
            CorpusTrack::BassHeavy => {
                add_sub_drone(&mut samples);
                Biquad::low_shelf(70.0, 12.0).run(&mut samples);
                normalise(&mut samples, -14.0);
            }
            CorpusTrack::Dull => {
                Biquad::low_pass(3000.0).run(&mut samples);
                normalise(&mut samples, -14.0);
            }
            CorpusTrack::Bright => {
                Biquad::high_pass(150.0).run(&mut samples);
                Biquad::high_shelf(3000.0, 12.0).run(&mut samples);
                normalise(&mut samples, -14.0);
            }
        }
        Ok(samples)
    }
}

/// Renders every track of the corpus, the reference first.
pub fn corpus(length: Duration) -> Result<Vec<(CorpusTrack, Vec<f32>)>, GenerateError> {
    CorpusTrack::ALL
        .iter()
        .map(|&track| Ok((track, track.render(length)?)))
        .collect()
}

/// Brings a signal to `lufs` (a silent one stays silent).
fn normalise(samples: &mut [f32], lufs: f64) {
    if let Ok(loudness) = measure(samples, Measure::INTEGRATED) {
        apply_gain_db(samples, gain_to_target_db(loudness.integrated_lufs, lufs));
    }
}

/// Adds two sub-bass sines (A0 and E1) that swell and fade every 8 seconds, at about
/// the signal's RMS level.
fn add_sub_drone(samples: &mut [f32]) {
    let rms = (samples
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        / samples.len().max(1) as f64)
        .sqrt();
    let rate = f64::from(SAMPLE_RATE);
    for (n, frame) in samples.chunks_exact_mut(CHANNELS).enumerate() {
        let t = n as f64 / rate;
        let swell = 0.6 + 0.4 * (2.0 * PI * t / 8.0).sin();
        let drone = (2.0 * PI * 27.5 * t).sin() + 0.8 * (2.0 * PI * 41.2 * t).sin();
        let x = (rms * swell * drone) as f32;
        for sample in frame {
            *sample += x;
        }
    }
}

/// A second-order IIR filter (the Audio EQ Cookbook's designs), run on both channels.
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
}

impl Biquad {
    /// Normalises the coefficients by `a0`.
    fn new(b: [f64; 3], a: [f64; 3]) -> Self {
        Self {
            b: b.map(|x| x / a[0]),
            a: [a[1] / a[0], a[2] / a[0]],
        }
    }

    fn omega(hz: f64) -> (f64, f64) {
        let w = 2.0 * PI * hz / f64::from(SAMPLE_RATE);
        (w.cos(), w.sin() / (2.0 * std::f64::consts::FRAC_1_SQRT_2))
    }

    fn low_pass(hz: f64) -> Self {
        let (cos, alpha) = Self::omega(hz);
        Self::new(
            [(1.0 - cos) / 2.0, 1.0 - cos, (1.0 - cos) / 2.0],
            [1.0 + alpha, -2.0 * cos, 1.0 - alpha],
        )
    }

    fn high_pass(hz: f64) -> Self {
        let (cos, alpha) = Self::omega(hz);
        Self::new(
            [(1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0],
            [1.0 + alpha, -2.0 * cos, 1.0 - alpha],
        )
    }

    fn low_shelf(hz: f64, gain_db: f64) -> Self {
        let a = 10f64.powf(gain_db / 40.0);
        let (cos, alpha) = Self::omega(hz);
        let root = 2.0 * a.sqrt() * alpha;
        Self::new(
            [
                a * ((a + 1.0) - (a - 1.0) * cos + root),
                2.0 * a * ((a - 1.0) - (a + 1.0) * cos),
                a * ((a + 1.0) - (a - 1.0) * cos - root),
            ],
            [
                (a + 1.0) + (a - 1.0) * cos + root,
                -2.0 * ((a - 1.0) + (a + 1.0) * cos),
                (a + 1.0) + (a - 1.0) * cos - root,
            ],
        )
    }

    fn high_shelf(hz: f64, gain_db: f64) -> Self {
        let a = 10f64.powf(gain_db / 40.0);
        let (cos, alpha) = Self::omega(hz);
        let root = 2.0 * a.sqrt() * alpha;
        Self::new(
            [
                a * ((a + 1.0) + (a - 1.0) * cos + root),
                -2.0 * a * ((a - 1.0) + (a + 1.0) * cos),
                a * ((a + 1.0) + (a - 1.0) * cos - root),
            ],
            [
                (a + 1.0) - (a - 1.0) * cos + root,
                2.0 * ((a - 1.0) - (a + 1.0) * cos),
                (a + 1.0) - (a - 1.0) * cos - root,
            ],
        )
    }

    /// Filters interleaved stereo in place.
    fn run(&self, samples: &mut [f32]) {
        let mut state = [[0.0f64; 4]; CHANNELS];
        for frame in samples.chunks_exact_mut(CHANNELS) {
            for (sample, s) in frame.iter_mut().zip(&mut state) {
                let x = f64::from(*sample);
                let y = self.b[0] * x + self.b[1] * s[0] + self.b[2] * s[1]
                    - self.a[0] * s[2]
                    - self.a[1] * s[3];
                *s = [x, s[0], y, s[2]];
                *sample = y as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::spectral_error::BandProfile;

    #[test]
    fn the_corpus_is_deterministic_and_has_each_problem() {
        let length = Duration::from_secs(12);
        let tracks = corpus(length).unwrap();
        assert_eq!(tracks.len(), CorpusTrack::ALL.len());
        for (track, samples) in &tracks {
            assert_eq!(samples.len(), 12 * 48_000 * CHANNELS, "{}", track.name());
        }
        assert_eq!(tracks[1].1, CorpusTrack::Quiet.render(length).unwrap());

        let loudness = |track: CorpusTrack| {
            let samples = &tracks[CorpusTrack::ALL.iter().position(|&t| t == track).unwrap()].1;
            measure(samples, Measure::WITH_TRUE_PEAK).unwrap()
        };
        assert!((loudness(CorpusTrack::Quiet).integrated_lufs + 30.0).abs() < 0.5);
        assert!(loudness(CorpusTrack::Loud).true_peak_dbtp.unwrap() > 0.0);

        // Band shares relative to the reference: the problems show where they should.
        let reference = BandProfile::measure(&tracks[0].1).normalised_db();
        let profile = |track: CorpusTrack| {
            let samples = &tracks[CorpusTrack::ALL.iter().position(|&t| t == track).unwrap()].1;
            BandProfile::measure(samples).normalised_db()
        };
        let high = 27; // 10 kHz
        let sub = |levels: [f64; 31]| {
            // 20-50 Hz
            10.0 * levels[..5]
                .iter()
                .map(|db| 10f64.powf(db / 10.0))
                .sum::<f64>()
                .log10()
        };
        assert!(sub(profile(CorpusTrack::BassHeavy)) > sub(reference) + 6.0);
        assert!(profile(CorpusTrack::Dull)[high] < reference[high] - 12.0);
        assert!(profile(CorpusTrack::Bright)[high] > reference[high] + 6.0);
    }

    #[test]
    fn the_filters_have_their_cookbook_gains() {
        let response = |filter: Biquad, hz: f64| {
            let mut samples: Vec<f32> = (0..96_000)
                .flat_map(|n| {
                    let x = (2.0 * PI * hz * n as f64 / 48_000.0).sin() as f32;
                    [x, x]
                })
                .collect();
            filter.run(&mut samples);
            let peak = samples[96_000..]
                .iter()
                .fold(0.0f32, |a, &b| a.max(b.abs()));
            20.0 * f64::from(peak).log10()
        };
        assert!((response(Biquad::low_pass(1000.0), 1000.0) + 3.01).abs() < 0.1);
        assert!((response(Biquad::high_pass(1000.0), 1000.0) + 3.01).abs() < 0.1);
        assert!((response(Biquad::low_shelf(100.0, 12.0), 20.0) - 12.0).abs() < 0.5);
        assert!((response(Biquad::high_shelf(1000.0, 12.0), 15_000.0) - 12.0).abs() < 0.5);
    }
}
