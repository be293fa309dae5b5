//! Music generators behind one trait.
//!
//! | generator | name | what it makes |
//! | --- | --- | --- |
//! | [`ProceduralGenerator`] | `"procedural"` | music synthesized from a text prompt: genre template, tempo, key, energy, instruments |
//!
//! # The contract
//! [`Generator::render`] turns a [`TrackRequest`] into a whole [`Track`] of 48 kHz
//! interleaved stereo audio. It runs off the real-time path and may take seconds.
//! The same request always gives the same id and title, and bit-identical
//! samples from the same build on the same platform. An error means only that this request cannot be rendered (a prompt that
//! cannot be read, a length out of bounds): the caller skips the request and asks
//! for the next one. No error leaves a generator unusable, so none calls for a
//! reset.
//!
//! # The procedural generator
//! A prompt is read into a [`Style`] ([`parse_prompt`], [`style_for`]). The track
//! is then composed (sections from intro to outro, chord progressions from the
//! genre's tables, drum patterns, a bass line on the chord roots, chords, pads, a
//! lead built from a repeated motif, arpeggios), synthesized voice by voice into
//! drum and instrument buses with sidechain ducking, reverb and delay, faded in
//! and out, normalized to [`ProceduralOptions::target_lufs`] and soft-clipped
//! below full scale.

mod arrange;
mod dsp;
mod instruments;
mod prompt;
mod render;
mod rng;
mod style;
mod theory;
mod title;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::frame::{CHANNELS, SAMPLE_RATE};

pub use prompt::{MAX_PROMPT_CHARS, PromptError, parse_prompt, style_for};
pub use style::{ChordSound, Genre, Instruments, Key, LeadSound, MAX_BPM, MIN_BPM, Mode, Style};

/// Shortest track a generator renders.
pub const MIN_LENGTH: Duration = Duration::from_secs(1);
/// Longest track a generator renders.
pub const MAX_LENGTH: Duration = Duration::from_secs(20 * 60);
/// The range a seed picks a length from when a request names none.
pub const DEFAULT_LENGTHS: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(120)..=Duration::from_secs(240);

/// What to render.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackRequest {
    /// A text prompt such as "lofi chill 80 bpm A minor".
    pub prompt: String,
    /// Every choice the prompt leaves open is drawn from this seed.
    pub seed: u64,
    /// Exact length (rounded to the nearest sample); `None` lets the seed choose
    /// a whole number of bars within [`DEFAULT_LENGTHS`].
    pub length: Option<Duration>,
}

/// A rendered track.
#[derive(Clone)]
pub struct Track {
    /// Stable: 16 hex digits of FNV-1a 64 over the generator's name, the prompt,
    /// the seed and the length in samples per channel (see [`track_id`]).
    pub id: String,
    /// A title chosen by the seed in the style's mood, e.g. "Midnight Static".
    pub title: String,
    pub prompt: String,
    /// Name of the generator that made it.
    pub generator: &'static str,
    pub seed: u64,
    /// The style as rendered: the prompt's words, with the seed's choices for the rest.
    pub style: Style,
    /// Interleaved stereo at 48 kHz; the length is even.
    pub samples: Arc<[f32]>,
}

impl Track {
    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.samples.len() / CHANNELS
    }

    pub fn duration(&self) -> Duration {
        let frames = self.frames() as u64;
        let rate = u64::from(SAMPLE_RATE);
        Duration::from_secs(frames / rate)
            + Duration::from_nanos((frames % rate) * 1_000_000_000 / rate)
    }
}

impl fmt::Debug for Track {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Track")
            .field("id", &self.id)
            .field("title", &self.title)
            .field("prompt", &self.prompt)
            .field("generator", &self.generator)
            .field("seed", &self.seed)
            .field("style", &self.style)
            .field("frames", &self.frames())
            .finish_non_exhaustive()
    }
}

/// Why a request cannot be rendered. Either way the request is skipped; the
/// generator stays usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerateError {
    #[error("the prompt cannot be used: {0}")]
    Prompt(#[from] PromptError),
    #[error("length {requested:?} is outside {min:?}..={max:?}")]
    Length {
        requested: Duration,
        min: Duration,
        max: Duration,
    },
}

/// A music generator. See the module's contract.
pub trait Generator: Send {
    /// Short name, recorded with every track and part of its id.
    fn name(&self) -> &'static str;
    /// Renders a whole track. Errors mean "skip this request", never "reset".
    fn render(&mut self, request: &TrackRequest) -> Result<Track, GenerateError>;
}

/// Options of the [`ProceduralGenerator`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProceduralOptions {
    /// Integrated loudness of every track (ITU-R BS.1770), in LUFS. Default -14;
    /// values are kept within -40..=-6, and a value that is not a number means the default.
    pub target_lufs: f32,
}

impl Default for ProceduralOptions {
    fn default() -> Self {
        Self {
            target_lufs: render::DEFAULT_TARGET_LUFS,
        }
    }
}

/// Synthesizes music from text prompts; deterministic for a given request.
#[derive(Debug, Default, Clone)]
pub struct ProceduralGenerator {
    options: ProceduralOptions,
}

impl ProceduralGenerator {
    pub fn new(options: ProceduralOptions) -> Self {
        Self { options }
    }

    pub fn options(&self) -> &ProceduralOptions {
        &self.options
    }
}

impl Generator for ProceduralGenerator {
    fn name(&self) -> &'static str {
        "procedural"
    }

    fn render(&mut self, request: &TrackRequest) -> Result<Track, GenerateError> {
        let style = style_for(&request.prompt, request.seed)?;
        let frames = match request.length {
            Some(length) => {
                if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
                    return Err(GenerateError::Length {
                        requested: length,
                        min: MIN_LENGTH,
                        max: MAX_LENGTH,
                    });
                }
                frames_in(length)
            }
            None => default_frames(&style, request.seed),
        };
        let score = arrange::compose(&style, request.seed, frames);
        let target = if self.options.target_lufs.is_nan() {
            render::DEFAULT_TARGET_LUFS
        } else {
            self.options.target_lufs.clamp(-40.0, -6.0)
        };
        // Rendered in place: a fresh shared buffer has one owner, so it lends
        // itself mutably and the samples are never copied.
        let mut samples: Arc<[f32]> = std::iter::repeat_n(0.0, frames * CHANNELS).collect();
        match Arc::get_mut(&mut samples) {
            Some(out) => render::render(&style, &score, request.seed, target, out),
            None => {
                let mut out = vec![0.0; frames * CHANNELS];
                render::render(&style, &score, request.seed, target, &mut out);
                samples = out.into();
            }
        }
        Ok(Track {
            id: track_id(self.name(), &request.prompt, request.seed, frames as u64),
            title: title::title(&style, request.seed),
            prompt: request.prompt.clone(),
            generator: self.name(),
            seed: request.seed,
            style,
            samples,
        })
    }
}

/// Samples per channel in `length`, rounded to the nearest.
fn frames_in(length: Duration) -> usize {
    let nanos = length.as_nanos();
    ((nanos * u128::from(SAMPLE_RATE) + 500_000_000) / 1_000_000_000) as usize
}

/// A length the seed picks within [`DEFAULT_LENGTHS`], in whole bars.
fn default_frames(style: &Style, seed: u64) -> usize {
    let mut rng = rng::Rng::stream(seed, "length");
    let bar = 4.0 * 60.0 / f64::from(style.bpm) * f64::from(SAMPLE_RATE);
    let shortest = frames_in(*DEFAULT_LENGTHS.start()) as f64;
    let longest = frames_in(*DEFAULT_LENGTHS.end()) as f64;
    let fewest = (shortest / bar).ceil() as usize;
    let most = ((longest / bar).floor() as usize).max(fewest);
    let bars = fewest + rng.below(most - fewest + 1);
    ((bars as f64 * bar).round() as usize).clamp(shortest as usize, longest as usize)
}

/// The id of a track: FNV-1a 64 over the generator's name, a zero byte, the
/// prompt's UTF-8 bytes, a zero byte, the seed (8 bytes, little-endian) and the
/// length in samples per channel (8 bytes, little-endian), as 16 lowercase hex digits.
pub fn track_id(generator: &str, prompt: &str, seed: u64, frames: u64) -> String {
    let mut hash = rng::Fnv1a64::default();
    hash.write(generator.as_bytes());
    hash.write(&[0]);
    hash.write(prompt.as_bytes());
    hash.write(&[0]);
    hash.write(&seed.to_le_bytes());
    hash.write(&frames.to_le_bytes());
    format!("{:016x}", hash.finish())
}

#[cfg(test)]
mod tests;
