//! The arrangement: sections with their instrumentation, chord progressions,
//! and every part's notes (drums, bass, chords, pad, lead, arpeggio) on a
//! sample-accurate timeline.
//!
//! Rhythms are written as sixteen-step strings, one character per sixteenth:
//! for drums `X` accent, `x` hit, `o` soft hit, `g` ghost, `.` rest; for bass
//! and chords a letter starts a note and `-` holds it (see [`bass_pitch`]).

use super::instruments::Drum;
use super::rng::Rng;
use super::style::{ChordSound, Genre, Style};
use super::theory::{Chord, Scale, Shape, Voicing, progression, progression_count};
use crate::frame::SAMPLE_RATE;

const STEPS: usize = 16;
const SR: f64 = SAMPLE_RATE as f64;

/// What plays a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Drum(Drum),
    Riser,
    Bass,
    Chords,
    Pad,
    Lead,
    Arp,
}

/// One note of the score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Note {
    /// First frame.
    pub(crate) start: usize,
    /// Frames held before the release.
    pub(crate) length: usize,
    pub(crate) part: Part,
    /// MIDI pitches: one for most notes, a chord for pads and synth chords, none for drums.
    pub(crate) pitches: Voicing,
    /// 0..=1.
    pub(crate) velocity: f32,
    /// -1 (left) ..= 1 (right).
    pub(crate) pan: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SectionKind {
    Intro,
    Verse,
    Chorus,
    Breakdown,
    Outro,
}

/// What plays in a section.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Layers {
    /// 0 none, 1 light, 2 full, 3 full with extra percussion.
    pub(crate) drums: u8,
    pub(crate) bass: bool,
    pub(crate) chords: bool,
    pub(crate) pad: bool,
    pub(crate) lead: bool,
    pub(crate) arp: bool,
    /// Level of the noise bed, 0..=1.
    pub(crate) texture: f32,
    /// Low-pass brightness of the tuned parts at the section's start and end (0 dark .. 1 open).
    pub(crate) brightness: (f32, f32),
    /// Level of the dry mix at the section's start and end, in decibels.
    pub(crate) level: (f32, f32),
}

impl Layers {
    /// How many parts play (drums count by level).
    pub(crate) fn density(&self) -> usize {
        usize::from(self.drums)
            + [self.bass, self.chords, self.pad, self.lead, self.arp]
                .iter()
                .filter(|on| **on)
                .count()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Section {
    pub(crate) kind: SectionKind,
    pub(crate) start_bar: usize,
    pub(crate) bars: usize,
    pub(crate) layers: Layers,
    /// The section leads into a chorus after a breakdown: riser and drum roll at its end.
    pub(crate) builds: bool,
}

/// Everything the renderer needs: notes in start order, per-bar automation and fades.
#[derive(Debug, Clone)]
pub(crate) struct Score {
    pub(crate) notes: Vec<Note>,
    pub(crate) sections: Vec<Section>,
    /// Frames per bar.
    pub(crate) bar_frames: f64,
    pub(crate) frames: usize,
    pub(crate) fade_in: usize,
    pub(crate) fade_out: usize,
}

impl Score {
    /// The section playing at `frame` (the last one past the end).
    pub(crate) fn section_at(&self, frame: usize) -> Option<&Section> {
        let bar = (frame as f64 / self.bar_frames) as usize;
        self.sections
            .iter()
            .find(|s| bar < s.start_bar + s.bars)
            .or(self.sections.last())
    }

    /// A section ramp (`from`, `to`) at `frame`.
    fn ramp_at(&self, frame: usize, ramp: impl Fn(&Layers) -> (f32, f32)) -> Option<f32> {
        let bar = frame as f64 / self.bar_frames;
        let section = self.section_at(frame)?;
        let into = ((bar - section.start_bar as f64) / section.bars.max(1) as f64).clamp(0.0, 1.0);
        let (from, to) = ramp(&section.layers);
        Some(from + (to - from) * into as f32)
    }

    /// Brightness (0..=1) of the tuned parts at `frame`, ramping across each section.
    pub(crate) fn brightness_at(&self, frame: usize) -> f32 {
        self.ramp_at(frame, |layers| layers.brightness)
            .unwrap_or(1.0)
    }

    /// Gain of the dry mix at `frame`, ramping across each section.
    pub(crate) fn level_at(&self, frame: usize) -> f32 {
        let decibels = self.ramp_at(frame, |layers| layers.level).unwrap_or(0.0);
        10f32.powf(decibels / 20.0)
    }

    pub(crate) fn texture_at(&self, frame: usize) -> f32 {
        self.section_at(frame).map_or(0.0, |s| s.layers.texture)
    }
}

/// Where steps fall in time, with swing.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    bar: f64,
    step: f64,
    /// Delay of the off-beat eighths, in steps.
    swing8: f64,
    /// Delay of the off-beat sixteenths, in steps.
    swing16: f64,
}

impl Timeline {
    fn new(style: &Style, rng: &mut Rng) -> Self {
        let beat = 60.0 / f64::from(style.bpm) * SR;
        let (swing8, swing16) = match style.genre {
            Genre::Lofi => (f64::from(rng.range(0.3, 0.45)), 0.0),
            Genre::House => (0.0, f64::from(rng.range(0.08, 0.2))),
            _ => (0.0, 0.0),
        };
        Self {
            bar: beat * 4.0,
            step: beat / 4.0,
            swing8,
            swing16,
        }
    }

    /// Frame of sixteenth `step` (may run past the bar) of `bar`.
    fn at(&self, bar: usize, step: usize) -> f64 {
        let mut position = step as f64;
        if step % 4 == 2 {
            position += self.swing8;
        }
        if step % 2 == 1 {
            position += self.swing16;
        }
        bar as f64 * self.bar + position * self.step
    }

    fn steps(&self, steps: f64) -> f64 {
        steps * self.step
    }
}

/// Collects notes, converting bars and steps to frames with a little human timing.
struct Writer {
    timeline: Timeline,
    notes: Vec<Note>,
    humanize: Rng,
    /// Largest random timing offset, in frames.
    jitter: f64,
}

impl Writer {
    /// A note of one pitch (drums ignore it).
    #[allow(clippy::too_many_arguments)]
    fn note(
        &mut self,
        bar: usize,
        step: usize,
        offset: f64,
        steps: f64,
        part: Part,
        pitch: i32,
        velocity: f32,
        pan: f32,
    ) {
        let pitches = if matches!(part, Part::Drum(_) | Part::Riser) {
            Voicing::default()
        } else {
            Voicing::single(pitch)
        };
        self.chord(bar, step, offset, steps, part, pitches, velocity, pan);
    }

    /// A note of several pitches played as one voice.
    #[allow(clippy::too_many_arguments)]
    fn chord(
        &mut self,
        bar: usize,
        step: usize,
        offset: f64,
        steps: f64,
        part: Part,
        pitches: Voicing,
        velocity: f32,
        pan: f32,
    ) {
        let jitter = if self.jitter > 0.0 {
            f64::from(self.humanize.range(-1.0, 1.0)) * self.jitter
        } else {
            0.0
        };
        let start = (self.timeline.at(bar, step) + offset + jitter).max(0.0);
        self.notes.push(Note {
            start: start as usize,
            length: self.timeline.steps(steps).max(1.0) as usize,
            part,
            pitches,
            velocity: velocity.clamp(0.0, 1.0),
            pan,
        });
    }
}

/// Composes a track of `frames` frames in `style`, every choice drawn from `seed`.
pub(crate) fn compose(style: &Style, seed: u64, frames: usize) -> Score {
    let mut timing = Rng::stream(seed, "timing");
    let timeline = Timeline::new(style, &mut timing);
    let total_bars = ((frames as f64 / timeline.bar).ceil() as usize).max(1);
    let sections = plan_sections(total_bars, style, &mut Rng::stream(seed, "form"));
    let harmony = Harmony::new(style, &mut Rng::stream(seed, "harmony"));
    let jitter_ms = match style.genre {
        Genre::Lofi => 9.0,
        Genre::House => 2.0,
        _ => 0.5,
    };
    let mut writer = Writer {
        timeline,
        notes: Vec::with_capacity(total_bars * 64),
        humanize: Rng::stream(seed, "humanize"),
        jitter: jitter_ms / 1000.0 * SR,
    };
    let mut drums = Drummer::new(style, &mut Rng::stream(seed, "drums"));
    let mut bass = Bassist::new(style, &mut Rng::stream(seed, "bass"));
    let mut keys = Keys::new(style, &mut Rng::stream(seed, "keys"));
    let melody = Melody::new(style, &mut Rng::stream(seed, "melody"));
    let mut arp = Arpeggio::new(style, &mut Rng::stream(seed, "arp"));

    for (index, section) in sections.iter().enumerate() {
        let next = sections.get(index + 1);
        for bar in section.start_bar..section.start_bar + section.bars {
            let within = bar - section.start_bar;
            let chord = harmony.chord(section.kind, within);
            let next_chord = if within + 1 < section.bars {
                harmony.chord(section.kind, within + 1)
            } else {
                next.map_or(chord, |n| harmony.chord(n.kind, 0))
            };
            let last_bar = bar + 1 == total_bars;
            let layers = &section.layers;
            drums.bar(&mut writer, section, within, last_bar);
            if layers.bass {
                bass.bar(&mut writer, &harmony, bar, within, chord, next_chord);
            }
            if layers.chords {
                keys.chords(&mut writer, &harmony, bar, chord, next_chord);
            }
            if layers.pad && within.is_multiple_of(harmony.bars_per_chord) {
                keys.pad(&mut writer, &harmony, bar, chord);
            }
            if layers.lead {
                melody.bar(&mut writer, &harmony, section, bar, within);
            }
            if layers.arp {
                arp.bar(&mut writer, &harmony, section, bar, chord);
            }
        }
    }

    let mut notes = writer.notes;
    notes.retain(|note| note.start < frames);
    notes.sort_by_key(|note| note.start);

    let bar_frames = timeline.bar;
    let fade_in = ((2.0 * SR) as usize).min(frames * 8 / 100).max(1);
    let fade_out = (bar_frames as usize)
        .max(frames / 10)
        .min((10.0 * SR) as usize)
        .min(frames * 3 / 10)
        .max(1);
    Score {
        notes,
        sections,
        bar_frames,
        frames,
        fade_in,
        fade_out,
    }
}

/// Splits `total` bars into sections: intro, a genre's sequence of verses,
/// choruses and breakdowns, outro. Short tracks get one bar of intro and outro,
/// or a single section under the fades.
fn plan_sections(total: usize, style: &Style, rng: &mut Rng) -> Vec<Section> {
    use SectionKind::*;
    let mut plan: Vec<(SectionKind, usize)> = Vec::new();
    if total <= 2 {
        plan.push((Chorus, total));
    } else if total <= 5 {
        plan.extend([(Intro, 1), (Chorus, total - 2), (Outro, 1)]);
    } else {
        let unit = if total >= 48 {
            4
        } else if total >= 16 {
            2
        } else {
            1
        };
        let rounded = |bars: f64| (((bars / unit as f64).round() as usize) * unit).clamp(unit, 16);
        let intro = rounded(total as f64 * 0.12);
        let outro = rounded(total as f64 * 0.1);
        let middle = total - intro - outro;
        let long_phrases = matches!(style.genre, Genre::Techno | Genre::House);
        let phrase = if middle >= 64 && long_phrases {
            16
        } else if middle >= 16 {
            8
        } else if middle >= 8 {
            4
        } else {
            middle.max(1)
        };
        let forms: &[&[SectionKind]] = match style.genre {
            Genre::Ambient => &[
                &[Verse, Chorus, Breakdown, Chorus, Verse],
                &[Verse, Breakdown, Chorus, Verse, Chorus],
            ],
            Genre::Lofi => &[
                &[Verse, Chorus, Verse, Breakdown, Chorus],
                &[Verse, Chorus, Breakdown, Verse, Chorus],
            ],
            _ => &[
                &[Verse, Chorus, Breakdown, Chorus, Verse, Chorus],
                &[Verse, Breakdown, Chorus, Verse, Breakdown, Chorus],
            ],
        };
        let form = rng.pick(forms).copied().unwrap_or(&[Chorus]);
        plan.push((Intro, intro));
        let mut left = middle;
        let mut index = 0;
        while left > 0 {
            let bars = if left < phrase * 3 / 2 { left } else { phrase };
            let kind = form
                .get(index % form.len().max(1))
                .copied()
                .unwrap_or(Chorus);
            plan.push((kind, bars));
            left -= bars;
            index += 1;
        }
        plan.push((Outro, outro));
        // The body ends on a chorus, and always has one.
        let body = 1..plan.len() - 1;
        if let Some(last) = plan.get_mut(body.end - 1)
            && last.0 != Chorus
        {
            last.0 = Chorus;
        }
        if body.len() >= 2 && plan[body.clone()].iter().all(|(kind, _)| *kind == Chorus) {
            plan[1].0 = Verse;
        }
    }

    let mut sections = Vec::with_capacity(plan.len());
    let mut start_bar = 0;
    for (index, &(kind, bars)) in plan.iter().enumerate() {
        let next = plan.get(index + 1).map(|(kind, _)| *kind);
        let builds = kind == Breakdown && next == Some(Chorus);
        sections.push(Section {
            kind,
            start_bar,
            bars,
            layers: layers(style, kind, builds),
            builds,
        });
        start_bar += bars;
    }
    sections
}

/// What plays in a section of `kind`: the genre's habit, limited to the
/// instruments the style has (a section is never left empty).
fn layers(style: &Style, kind: SectionKind, builds: bool) -> Layers {
    use SectionKind::*;
    let genre = style.genre;
    let energy = style.energy;
    let none = Layers {
        drums: 0,
        bass: false,
        chords: false,
        pad: false,
        lead: false,
        arp: false,
        texture: 0.0,
        brightness: (1.0, 1.0),
        level: (0.0, 0.0),
    };
    let mut layers = match (genre, kind) {
        (Genre::Lofi, Intro) => Layers {
            chords: true,
            texture: 1.0,
            brightness: (0.35, 0.7),
            ..none
        },
        (Genre::Lofi, Verse) => Layers {
            drums: 2,
            bass: true,
            chords: true,
            lead: energy > 0.55,
            texture: 0.8,
            brightness: (0.85, 0.85),
            ..none
        },
        (Genre::Lofi, Chorus) => Layers {
            drums: 2 + u8::from(energy > 0.6),
            bass: true,
            chords: true,
            pad: true,
            lead: true,
            arp: true,
            texture: 0.8,
            brightness: (0.95, 0.95),
            ..none
        },
        (Genre::Lofi, Breakdown) => Layers {
            drums: 1,
            chords: true,
            lead: true,
            pad: true,
            texture: 1.0,
            brightness: (0.6, 0.6),
            ..none
        },
        (Genre::Lofi, Outro) => Layers {
            drums: 1,
            bass: true,
            chords: true,
            texture: 1.0,
            brightness: (0.8, 0.4),
            ..none
        },

        (Genre::Techno, Intro) => Layers {
            drums: 1,
            brightness: (0.45, 0.8),
            ..none
        },
        (Genre::Techno, Verse) => Layers {
            drums: 2,
            bass: true,
            arp: energy > 0.5,
            pad: energy <= 0.5,
            brightness: (0.85, 0.9),
            ..none
        },
        (Genre::Techno, Chorus) => Layers {
            drums: 3,
            bass: true,
            chords: true,
            arp: true,
            lead: true,
            brightness: (1.0, 1.0),
            ..none
        },
        (Genre::Techno, Breakdown) => Layers {
            chords: true,
            pad: true,
            arp: true,
            brightness: (0.55, if builds { 0.9 } else { 0.65 }),
            ..none
        },
        (Genre::Techno, Outro) => Layers {
            drums: 1,
            bass: true,
            brightness: (0.8, 0.45),
            ..none
        },

        (Genre::Ambient, Intro) => Layers {
            pad: true,
            texture: 1.0,
            brightness: (0.3, 0.6),
            ..none
        },
        (Genre::Ambient, Verse) => Layers {
            drums: 1,
            pad: true,
            bass: true,
            arp: true,
            texture: 0.6,
            brightness: (0.65, 0.65),
            ..none
        },
        (Genre::Ambient, Chorus) => Layers {
            drums: 2,
            pad: true,
            bass: true,
            lead: true,
            arp: true,
            chords: true,
            texture: 0.5,
            brightness: (0.75, 0.75),
            ..none
        },
        (Genre::Ambient, Breakdown) => Layers {
            pad: true,
            lead: true,
            texture: 1.0,
            brightness: (0.55, 0.55),
            ..none
        },
        (Genre::Ambient, Outro) => Layers {
            pad: true,
            texture: 1.0,
            brightness: (0.55, 0.3),
            ..none
        },

        (Genre::House, Intro) => Layers {
            drums: 1,
            brightness: (0.5, 0.85),
            ..none
        },
        (Genre::House, Verse) => Layers {
            drums: 2,
            bass: true,
            chords: true,
            brightness: (0.9, 0.9),
            ..none
        },
        (Genre::House, Chorus) => Layers {
            drums: 3,
            bass: true,
            chords: true,
            pad: true,
            lead: true,
            arp: true,
            brightness: (1.0, 1.0),
            ..none
        },
        (Genre::House, Breakdown) => Layers {
            chords: true,
            pad: true,
            brightness: (0.55, if builds { 0.9 } else { 0.7 }),
            ..none
        },
        (Genre::House, Outro) => Layers {
            drums: 1,
            bass: true,
            brightness: (0.85, 0.5),
            ..none
        },

        (Genre::Synthwave, Intro) => Layers {
            pad: true,
            arp: true,
            brightness: (0.4, 0.75),
            ..none
        },
        (Genre::Synthwave, Verse) => Layers {
            drums: 2,
            bass: true,
            pad: true,
            arp: true,
            brightness: (0.85, 0.85),
            ..none
        },
        (Genre::Synthwave, Chorus) => Layers {
            drums: 3,
            bass: true,
            pad: true,
            arp: true,
            lead: true,
            chords: true,
            brightness: (1.0, 1.0),
            ..none
        },
        (Genre::Synthwave, Breakdown) => Layers {
            pad: true,
            arp: true,
            brightness: (0.55, if builds { 0.85 } else { 0.65 }),
            ..none
        },
        (Genre::Synthwave, Outro) => Layers {
            drums: 1,
            pad: true,
            arp: true,
            bass: true,
            brightness: (0.8, 0.4),
            ..none
        },
    };
    if energy < 0.3 {
        layers.drums = layers.drums.min(2);
    }
    // Intros rise towards the body; outros sink into the fade.
    let dance = matches!(genre, Genre::Techno | Genre::House);
    layers.level = match kind {
        Intro if dance => (-3.0, -1.0),
        Intro => (-6.0, -2.0),
        Outro => (0.0, -3.0),
        _ => (0.0, 0.0),
    };
    let have = style.instruments;
    layers.drums = if have.drums { layers.drums } else { 0 };
    layers.bass &= have.bass;
    layers.chords &= have.chords;
    layers.pad &= have.pad;
    layers.lead &= have.lead;
    layers.arp &= have.arp;
    layers.texture = if have.texture { layers.texture } else { 0.0 };
    if layers.density() == 0 {
        // Fall back to the first part the style has, in order of how well it carries a section alone.
        if have.pad {
            layers.pad = true;
        } else if have.chords {
            layers.chords = true;
        } else if have.arp {
            layers.arp = true;
        } else if have.lead {
            layers.lead = true;
        } else if have.bass {
            layers.bass = true;
        } else if have.drums {
            layers.drums = 1;
        } else {
            // A style with every part switched off still gets a pad.
            layers.pad = true;
        }
    }
    layers
}

/// The chords of each section kind.
struct Harmony {
    scale: Scale,
    /// Progressions for intro, verse, chorus, breakdown, outro.
    progressions: [[Chord; 4]; 5],
    bars_per_chord: usize,
    pad_shape: Shape,
}

impl Harmony {
    fn new(style: &Style, rng: &mut Rng) -> Self {
        let genre = style.genre;
        let shape = match genre {
            Genre::Lofi => {
                if rng.chance(0.5) {
                    Shape::RootlessNinth
                } else {
                    Shape::Seventh
                }
            }
            Genre::House => Shape::Seventh,
            Genre::Techno => {
                if rng.chance(0.5) {
                    Shape::Seventh
                } else {
                    Shape::Triad
                }
            }
            Genre::Ambient => Shape::Open,
            Genre::Synthwave => Shape::Triad,
        };
        let count = progression_count(genre, style.key.mode);
        let verse = progression(genre, style.key, shape, rng.below(count));
        let chorus = progression(genre, style.key, shape, rng.below(count));
        let breakdown = if rng.chance(0.5) { verse } else { chorus };
        let bars_per_chord = match genre {
            Genre::Techno | Genre::Ambient => 2,
            Genre::Synthwave if style.bpm < 90.0 => 1,
            _ => 1,
        };
        Self {
            scale: Scale::new(style.key),
            progressions: [verse, verse, chorus, breakdown, chorus],
            bars_per_chord,
            pad_shape: match genre {
                Genre::Ambient | Genre::Synthwave => Shape::Open,
                Genre::Techno => Shape::Triad,
                _ => Shape::Seventh,
            },
        }
    }

    fn chord(&self, kind: SectionKind, bar_in_section: usize) -> Chord {
        let progression = &self.progressions[kind as usize];
        progression[(bar_in_section / self.bars_per_chord) % progression.len()]
    }
}

/// A velocity for a drum pattern character, or `None` for a rest.
fn hit(symbol: u8) -> Option<f32> {
    match symbol {
        b'X' => Some(1.0),
        b'x' => Some(0.82),
        b'o' => Some(0.6),
        b'g' => Some(0.32),
        _ => None,
    }
}

type DrumPattern = &'static [(Drum, &'static str)];

/// The genre's drum patterns at `level` (1 light, 2 full, 3 peak); several variants each.
fn drum_patterns(genre: Genre, level: u8) -> &'static [DrumPattern] {
    use Drum::*;
    match (genre, level) {
        (Genre::Lofi, 1) => &[
            &[(Rim, "....o.......o..."), (ClosedHat, "o.g.o.g.o.g.o.g.")],
            &[(Kick, "o.........o....."), (ClosedHat, "o.g.o.g.o.g.o.g.")],
        ],
        (Genre::Lofi, 2) => &[
            &[
                (Kick, "x.........x....."),
                (Snare, "....x.......x..."),
                (ClosedHat, "x.o.x.o.x.o.x.o."),
            ],
            &[
                (Kick, "x......o..x....."),
                (Snare, "....x.......x..g"),
                (ClosedHat, "x.o.xgo.x.o.x.oo"),
            ],
            &[
                (Kick, "x.....o...x...o."),
                (Snare, "....x..g....x..."),
                (ClosedHat, "x.o.x.o.x.ooxgo."),
            ],
        ],
        (Genre::Lofi, _) => &[
            &[
                (Kick, "x.........x....."),
                (Snare, "....x..g....x..."),
                (ClosedHat, "x.o.xgo.x.o.x.oo"),
                (Shaker, "..o...o...o...o."),
            ],
            &[
                (Kick, "x......o..x...o."),
                (Snare, "....x.......x..g"),
                (ClosedHat, "x.o.x.o.x.o.x.o."),
                (OpenHat, "..............o."),
            ],
        ],
        (Genre::Techno, 1) => &[
            &[(Kick, "X...X...X...X..."), (OpenHat, "..o...o...o...o.")],
            &[
                (Kick, "X...X...X...X..."),
                (ClosedHat, "..o...o...o...o."),
                (Rim, "...........o...."),
            ],
        ],
        (Genre::Techno, 2) => &[
            &[
                (Kick, "X...X...X...X..."),
                (OpenHat, "..x...x...x...x."),
                (Clap, "....x.......x..."),
                (ClosedHat, ".g.g.g.g.g.g.g.g"),
            ],
            &[
                (Kick, "X...X...X...X..."),
                (OpenHat, "..x...x...x...x."),
                (Rim, "...o..o....o..o."),
                (ClosedHat, "gogggogggogggogg"),
            ],
        ],
        (Genre::Techno, _) => &[
            &[
                (Kick, "X...X...X...X..."),
                (OpenHat, "..x...x...x...x."),
                (Clap, "....x.......x..."),
                (ClosedHat, "ogxgogxgogxgogxg"),
                (Rim, "...o......o..o.."),
            ],
            &[
                (Kick, "X...X...X...X..."),
                (OpenHat, "..x...x...x...x."),
                (Clap, "....x.......x..."),
                (ClosedHat, "gogggogggogggogg"),
                (Rim, "......o.......o."),
            ],
        ],
        (Genre::House, 1) => &[
            &[(Kick, "X...X...X...X..."), (Shaker, "gogggogggogggogg")],
            &[(Kick, "X...X...X...X..."), (ClosedHat, "..o...o...o...o.")],
        ],
        (Genre::House, 2) => &[
            &[
                (Kick, "X...X...X...X..."),
                (Clap, "....x.......x..."),
                (OpenHat, "..x...x...x...x."),
                (Shaker, "gogggogggogggogg"),
            ],
            &[
                (Kick, "X...X...X...X..."),
                (Clap, "....x.......x..."),
                (OpenHat, "..x...x...x...x."),
                (ClosedHat, "o.g.o.g.o.g.o.g."),
            ],
        ],
        (Genre::House, _) => &[
            &[
                (Kick, "X...X...X...X..."),
                (Clap, "....x.......x..."),
                (OpenHat, "..x...x...x...x."),
                (Shaker, "gogxgogxgogxgogx"),
                (Rim, "...o..o.......o."),
            ],
            &[
                (Kick, "X...X...X...X..."),
                (Clap, "....x.......x..."),
                (OpenHat, "..x...x...x...x."),
                (ClosedHat, "ogogogogogogogog"),
                (Snare, "...............g"),
            ],
        ],
        (Genre::Synthwave, 1) => &[&[(Kick, "x.......x......."), (ClosedHat, "o.o.o.o.o.o.o.o.")]],
        (Genre::Synthwave, 2) => &[
            &[
                (Kick, "x.......x.x....."),
                (Snare, "....x.......x..."),
                (ClosedHat, "x.o.x.o.x.o.x.o."),
            ],
            &[
                (Kick, "x.......x......."),
                (Snare, "....x.......x..."),
                (ClosedHat, "x.o.x.o.x.o.x.o."),
            ],
        ],
        (Genre::Synthwave, _) => &[
            &[
                (Kick, "x.......x.x....."),
                (Snare, "....x.......x..."),
                (ClosedHat, "xoooxoooxoooxooo"),
                (OpenHat, "..............o."),
            ],
            &[
                (Kick, "x..x....x.x....."),
                (Snare, "....x.......x..."),
                (ClosedHat, "xoooxoooxoooxooo"),
            ],
        ],
        (Genre::Ambient, 1) => &[&[(Kick, "o..............."), (Shaker, "........o.......")]],
        (Genre::Ambient, _) => &[
            &[
                (Kick, "o.........o....."),
                (Rim, "....o.......o..."),
                (Shaker, "..o...o...o...o."),
            ],
            &[
                (Kick, "o.......o......."),
                (Rim, "............o..."),
                (Shaker, "..g...o...g...o."),
            ],
        ],
    }
}

fn drum_pan(drum: Drum) -> f32 {
    match drum {
        Drum::Kick | Drum::Snare => 0.0,
        Drum::Clap => 0.08,
        Drum::ClosedHat => 0.3,
        Drum::OpenHat => -0.25,
        Drum::Shaker => 0.45,
        Drum::Rim => -0.35,
        Drum::Crash => -0.2,
        Drum::HighTom => 0.4,
        Drum::MidTom => 0.0,
        Drum::LowTom => -0.4,
    }
}

/// Plays the drums: the section's pattern, fills at phrase ends, crashes, builds.
struct Drummer {
    genre: Genre,
    enabled: bool,
    /// The pattern variant each section kind uses, per level.
    variants: [usize; 5],
    velocity: Rng,
}

impl Drummer {
    fn new(style: &Style, rng: &mut Rng) -> Self {
        Self {
            genre: style.genre,
            enabled: style.instruments.drums,
            variants: [0; 5].map(|_| rng.below(8)),
            velocity: Rng::new(rng.next_u64()),
        }
    }

    fn hit(&mut self, writer: &mut Writer, bar: usize, step: usize, drum: Drum, velocity: f32) {
        let spread = if matches!(drum, Drum::ClosedHat | Drum::Shaker) {
            0.15
        } else {
            0.06
        };
        let velocity = velocity * (1.0 - spread + spread * self.velocity.unit());
        let part = Part::Drum(drum);
        writer.note(bar, step, 0.0, 1.0, part, 0, velocity, drum_pan(drum));
    }

    fn bar(&mut self, writer: &mut Writer, section: &Section, within: usize, last_bar: bool) {
        let level = section.layers.drums;
        let genre = self.genre;
        let dance = matches!(genre, Genre::Techno | Genre::House | Genre::Synthwave);
        let bar = section.start_bar + within;
        let bars_left = section.bars - within;
        let building = section.builds && self.enabled && dance && bars_left <= 2;
        if level > 0 {
            let patterns = drum_patterns(genre, level);
            let variant = self.variants[section.kind as usize];
            let pattern = patterns
                .get(variant % patterns.len().max(1))
                .copied()
                .unwrap_or(&[]);
            let phrase_end = within % 8 == 7 && bars_left > 1 || bars_left == 1 && !last_bar;
            let fill = level >= 2 && phrase_end && genre != Genre::Ambient;
            let fill_from = if genre == Genre::Synthwave { 8 } else { 12 };
            // A long four-on-the-floor intro starts on the hats alone; the kick enters halfway.
            let kick_waits = section.kind == SectionKind::Intro
                && section.bars >= 4
                && within < section.bars / 2
                && matches!(genre, Genre::Techno | Genre::House);
            for &(drum, rhythm) in pattern {
                if kick_waits && drum == Drum::Kick {
                    continue;
                }
                for (step, symbol) in rhythm.bytes().enumerate().take(STEPS) {
                    let muted = fill && step >= fill_from && drum != Drum::Kick;
                    if let (Some(velocity), false) = (hit(symbol), muted) {
                        self.hit(writer, bar, step, drum, velocity);
                    }
                }
            }
            if fill {
                self.fill(writer, bar);
            }
            if within == 0 && section.kind == SectionKind::Chorus && dance && level >= 2 {
                self.hit(writer, bar, 0, Drum::Crash, 0.9);
            }
        }
        if building {
            // A snare roll: eighths, then sixteenths in the last bar, getting louder.
            let (every, from, to) = if bars_left == 2 {
                (2, 0.25, 0.55)
            } else {
                (1, 0.55, 1.0)
            };
            for step in (0..STEPS).step_by(every) {
                let velocity = from + (to - from) * step as f32 / STEPS as f32;
                self.hit(writer, bar, step, Drum::Snare, velocity);
            }
            if bars_left == 2 || section.bars == 1 {
                let steps = (STEPS * bars_left.min(2)) as f64;
                writer.note(bar, 0, 0.0, steps, Part::Riser, 0, 0.9, 0.0);
            }
        }
    }

    fn fill(&mut self, writer: &mut Writer, bar: usize) {
        use Drum::*;
        let fill: &[(usize, Drum, f32)] = match self.genre {
            Genre::Synthwave => &[
                (8, HighTom, 0.8),
                (10, HighTom, 0.75),
                (12, MidTom, 0.85),
                (13, MidTom, 0.8),
                (14, LowTom, 0.9),
                (15, LowTom, 0.95),
            ],
            Genre::Lofi => &[(12, Snare, 0.8), (14, Kick, 0.6), (15, Snare, 0.35)],
            Genre::Techno => &[
                (12, Clap, 0.5),
                (13, Clap, 0.6),
                (14, Clap, 0.75),
                (15, Clap, 0.9),
            ],
            Genre::House => &[
                (12, Snare, 0.5),
                (13, Snare, 0.6),
                (14, Snare, 0.75),
                (15, Snare, 0.9),
                (14, OpenHat, 0.7),
            ],
            Genre::Ambient => &[],
        };
        for &(step, drum, velocity) in fill {
            self.hit(writer, bar, step, drum, velocity);
        }
    }
}

/// Plays the bass line from the chord roots in the genre's rhythm: one pattern
/// for four bars, its answer for the next four.
struct Bassist {
    genre: Genre,
    patterns: [&'static str; 2],
    gate: f64,
    low: i32,
}

/// MIDI pitch of a bass pattern letter: `R` root, `O` octave, `F` fifth, `T`
/// third, `S` seventh, `A` a scale step below the next chord's root.
fn bass_pitch(symbol: u8, harmony: &Harmony, chord: Chord, next: Chord, low: i32) -> Option<i32> {
    let scale = &harmony.scale;
    let into_range = |note: i32| low + (note - low).rem_euclid(12);
    let root = into_range(chord.root_note(scale, 2));
    let above = |degrees: i32| {
        root + scale.semitones(chord.degree + degrees) - scale.semitones(chord.degree)
    };
    Some(match symbol {
        b'R' => root,
        b'O' => root + 12,
        b'F' => above(4),
        b'T' => above(2),
        b'S' => above(6),
        b'A' => {
            let target = into_range(next.root_note(scale, 2));
            target - (scale.semitones(next.degree) - scale.semitones(next.degree - 1))
        }
        _ => return None,
    })
}

impl Bassist {
    fn new(style: &Style, rng: &mut Rng) -> Self {
        let (options, gate, low): (&[&'static str], f64, i32) = match style.genre {
            Genre::Lofi => (
                &[
                    "R-----..F-..R---",
                    "R-------..R---A-",
                    "R-----R-..T---A-",
                    "R---...R--..F-O-",
                ],
                0.95,
                33,
            ),
            Genre::Techno if style.energy < 0.4 => {
                (&["..R-..R-..R-..R-", "..R-..R-..R-..RO"], 0.7, 29)
            }
            Genre::Techno => (
                &[
                    ".RRR.RRR.RRR.RRR",
                    ".R.R.R.R.R.R.RRR",
                    ".RRR.RRR.RRR.RRO",
                    ".RR..RR..RR..RRO",
                ],
                0.7,
                29,
            ),
            Genre::House => (
                &[
                    "..R-..R-..R-..R-",
                    "..R-..RO..R-..R-",
                    "R-.R..R-..R-.RF.",
                    "..R..R..R-.R..O-",
                ],
                0.8,
                29,
            ),
            Genre::Synthwave => (
                &["R.R.R.R.R.R.R.R.", "R.R.O.R.R.R.O.R.", "RRR.RRR.RRR.RROO"],
                0.55,
                31,
            ),
            Genre::Ambient => (&["R---------------"], 1.0, 28),
        };
        let mut pick = || rng.pick(options).copied().unwrap_or("R---------------");
        Self {
            genre: style.genre,
            patterns: [pick(), pick()],
            gate,
            low,
        }
    }

    fn bar(
        &mut self,
        writer: &mut Writer,
        harmony: &Harmony,
        bar: usize,
        within: usize,
        chord: Chord,
        next: Chord,
    ) {
        if self.genre == Genre::Ambient {
            // A drone on each chord's root.
            if within.is_multiple_of(harmony.bars_per_chord)
                && let Some(pitch) = bass_pitch(b'R', harmony, chord, next, self.low)
            {
                let steps = (STEPS * harmony.bars_per_chord) as f64;
                writer.note(bar, 0, 0.0, steps, Part::Bass, pitch, 0.8, 0.0);
            }
            return;
        }
        let pattern = self.patterns[(within / 4) % 2].as_bytes();
        for (step, &symbol) in pattern.iter().enumerate().take(STEPS) {
            let Some(pitch) = bass_pitch(symbol, harmony, chord, next, self.low) else {
                continue;
            };
            let held = pattern[step + 1..]
                .iter()
                .take_while(|&&s| s == b'-')
                .count();
            let velocity = if step.is_multiple_of(4) { 0.95 } else { 0.8 };
            writer.note(
                bar,
                step,
                0.0,
                (1 + held) as f64 * self.gate,
                Part::Bass,
                pitch,
                velocity,
                0.0,
            );
        }
    }
}

/// Plays the chord part (keys, stabs) and the pad.
struct Keys {
    patterns: [&'static str; 2],
    gate: f64,
    center: f32,
    pad_center: f32,
    /// Strum between chord notes, in frames.
    strum: f64,
    /// The bar's first chord was already struck at the end of the previous bar.
    anticipated: bool,
    /// The chord sound plays a whole chord as one voice (synths), not note by note (keys).
    as_one: bool,
    velocity: Rng,
}

impl Keys {
    fn new(style: &Style, rng: &mut Rng) -> Self {
        let (options, gate, center, strum_ms): (&[&'static str], f64, f32, f64) =
            match (style.genre, style.instruments.chord_sound) {
                (Genre::Lofi, _) => (
                    &[
                        "x---------------",
                        "x-----------x---",
                        "x------------->-",
                        "x-------x-------",
                    ],
                    0.97,
                    62.0,
                    18.0,
                ),
                (Genre::Techno, _) | (_, ChordSound::Stab) => (
                    &[
                        "...x......x.....",
                        "..x.....x..x....",
                        "......x.......x.",
                        "...x..x....x....",
                    ],
                    0.5,
                    60.0,
                    0.0,
                ),
                (Genre::House, ChordSound::Organ) => {
                    (&["..x-..x-..x-..x-", "x-.x-.x-..x-.x-."], 0.9, 64.0, 2.0)
                }
                (Genre::House, _) => (
                    &[
                        "x..x..x...x..x..",
                        "..x-..x-..x-..x-",
                        "x-.x-.x-..x-.x-.",
                        "..x..x..x...x.x.",
                    ],
                    0.85,
                    64.0,
                    4.0,
                ),
                (Genre::Synthwave, _) => {
                    (&["x-x-x-x-x-x-x-x-", "x--x--x-x--x--x-"], 0.7, 62.0, 0.0)
                }
                (Genre::Ambient, _) => (&["x---------------"], 1.0, 64.0, 40.0),
            };
        let mut pick = || rng.pick(options).copied().unwrap_or("x---------------");
        Self {
            patterns: [pick(), pick()],
            gate,
            center,
            pad_center: match style.genre {
                Genre::Techno => 57.0,
                Genre::House => 62.0,
                _ => 60.0,
            },
            strum: strum_ms / 1000.0 * SR,
            anticipated: false,
            as_one: matches!(
                style.instruments.chord_sound,
                ChordSound::Stab | ChordSound::Synth
            ),
            velocity: Rng::new(rng.next_u64()),
        }
    }

    fn chords(
        &mut self,
        writer: &mut Writer,
        harmony: &Harmony,
        bar: usize,
        chord: Chord,
        next: Chord,
    ) {
        let pattern = self.patterns[(bar / 2) % 2].as_bytes();
        let skip_first = std::mem::take(&mut self.anticipated);
        for (step, &symbol) in pattern.iter().enumerate().take(STEPS) {
            let struck = match symbol {
                b'x' if !(step == 0 && skip_first) => chord,
                b'>' => {
                    self.anticipated = true;
                    next
                }
                _ => continue,
            };
            let held = pattern[step + 1..]
                .iter()
                .take_while(|&&s| s == b'-')
                .count();
            // An anticipated chord rings on into the next bar.
            let extra = if symbol == b'>' { 8.0 } else { 0.0 };
            let steps = (1 + held) as f64 * self.gate + extra;
            let voicing = struck.voicing(&harmony.scale, self.center);
            let accent = if step.is_multiple_of(4) { 0.85 } else { 0.72 };
            if self.as_one {
                let velocity = accent * (0.9 + 0.1 * self.velocity.unit());
                writer.chord(bar, step, 0.0, steps, Part::Chords, voicing, velocity, 0.0);
                continue;
            }
            let notes = voicing.notes();
            for (n, &pitch) in notes.iter().enumerate() {
                let spread = n as f32 / (notes.len().max(2) - 1) as f32 * 0.7 - 0.35;
                let velocity = accent * (0.9 + 0.1 * self.velocity.unit());
                writer.note(
                    bar,
                    step,
                    self.strum * n as f64,
                    steps,
                    Part::Chords,
                    pitch,
                    velocity,
                    spread,
                );
            }
        }
    }

    fn pad(&mut self, writer: &mut Writer, harmony: &Harmony, bar: usize, chord: Chord) {
        let pad = Chord {
            shape: harmony.pad_shape,
            ..chord
        };
        let voicing = pad.voicing(&harmony.scale, self.pad_center);
        let steps = (STEPS * harmony.bars_per_chord) as f64;
        writer.chord(bar, 0, 0.0, steps, Part::Pad, voicing, 0.8, 0.0);
    }
}

/// One note of a two-bar motif: sixteenth step (0..32), length in steps, scale degree.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MotifNote {
    step: usize,
    steps: usize,
    degree: i32,
}

/// The lead: per section kind a motif and an answer, repeated as
/// motif, varied motif, motif, answer over each eight bars.
struct Melody {
    genre: Genre,
    octave: i32,
    /// For verse, chorus and breakdown: motif, varied motif, answer.
    phrases: [[Vec<MotifNote>; 3]; 3],
}

impl Melody {
    fn new(style: &Style, rng: &mut Rng) -> Self {
        let genre = style.genre;
        let phrase = |rng: &mut Rng| {
            let motif = motif(genre, style.energy, rng, None);
            let mut varied = motif.clone();
            let count = varied.len();
            for note in varied.iter_mut().skip(count.saturating_sub(2)) {
                note.degree += *rng.pick(&[-2, -1, 1, 2]).unwrap_or(&1);
            }
            let answer = motif_with_ending(genre, style.energy, rng);
            [motif, varied, answer]
        };
        let verse = phrase(rng);
        let chorus = phrase(rng);
        let breakdown = chorus.clone().map(|notes| {
            // The chorus melody, slower: every other note, held twice as long.
            notes
                .into_iter()
                .step_by(2)
                .map(|note| MotifNote {
                    steps: (note.steps * 2).min(32 - note.step),
                    ..note
                })
                .collect()
        });
        Self {
            genre,
            octave: if genre == Genre::Ambient { 5 } else { 4 },
            phrases: [verse, chorus, breakdown],
        }
    }

    fn bar(
        &self,
        writer: &mut Writer,
        harmony: &Harmony,
        section: &Section,
        bar: usize,
        within: usize,
    ) {
        let phrases = match section.kind {
            SectionKind::Verse | SectionKind::Intro => &self.phrases[0],
            SectionKind::Chorus | SectionKind::Outro => &self.phrases[1],
            SectionKind::Breakdown => &self.phrases[2],
        };
        let pair = if section.bars < 8 {
            [0, 2][(within / 2) % 2]
        } else {
            [0, 1, 0, 2][(within % 8) / 2]
        };
        let half = within % 2;
        let chord = harmony.chord(section.kind, within);
        for note in phrases[pair].iter().filter(|n| n.step / STEPS == half) {
            let step = note.step % STEPS;
            let strong = step.is_multiple_of(4) || note.steps >= 4;
            let degree = if strong {
                chord.nearest_tone(note.degree)
            } else {
                note.degree
            };
            let pitch = harmony.scale.note(degree, self.octave);
            let velocity = if step.is_multiple_of(4) { 0.9 } else { 0.75 };
            let legato = if self.genre == Genre::Techno {
                0.6
            } else {
                0.92
            };
            writer.note(
                bar,
                step,
                0.0,
                note.steps as f64 * legato,
                Part::Lead,
                pitch,
                velocity,
                0.12,
            );
        }
    }
}

/// A two-bar motif in the genre's rhythm, as a walk over scale degrees.
fn motif(genre: Genre, energy: f32, rng: &mut Rng, start: Option<i32>) -> Vec<MotifNote> {
    let (lengths, rest_chance, rests): (&[usize], f32, &[usize]) = match genre {
        Genre::Lofi => (&[2, 2, 3, 4, 6], 0.35, &[2, 4]),
        Genre::House | Genre::Techno => (&[1, 2, 2, 3], 0.3, &[1, 2, 3]),
        Genre::Synthwave => (&[2, 2, 4, 4, 6, 8], 0.2, &[2]),
        Genre::Ambient => (&[6, 8, 12, 16], 0.3, &[4, 8]),
    };
    let rest_chance = rest_chance * (1.3 - 0.6 * energy);
    let mut notes = Vec::new();
    let mut degree = start.unwrap_or_else(|| *rng.pick(&[0, 2, 4, 7]).unwrap_or(&0));
    let mut step = if rng.chance(0.3) { 2 } else { 0 };
    while step < 2 * STEPS - 1 {
        if !notes.is_empty() && rng.chance(rest_chance) {
            step += rng.pick(rests).copied().unwrap_or(2);
            continue;
        }
        let steps = rng
            .pick(lengths)
            .copied()
            .unwrap_or(2)
            .min(2 * STEPS - step);
        notes.push(MotifNote {
            step,
            steps,
            degree,
        });
        step += steps;
        degree = (degree
            + rng
                .pick(&[-2, -1, -1, 0, 1, 1, 2, 3, -3])
                .copied()
                .unwrap_or(1))
        .clamp(-3, 9);
    }
    notes
}

/// A motif whose last note rests on the tonic: the answer that closes a phrase.
fn motif_with_ending(genre: Genre, energy: f32, rng: &mut Rng) -> Vec<MotifNote> {
    let mut notes = motif(genre, energy, rng, Some(4));
    if let Some(last) = notes.last_mut() {
        last.degree = if last.degree > 3 { 7 } else { 0 };
    }
    notes
}

/// Arpeggios and sequences over the chords.
struct Arpeggio {
    genre: Genre,
    order: &'static [usize],
    /// Techno's one-bar sequence: per step, a tone index and an accent (`None` rests).
    sequence: [Option<(usize, bool)>; STEPS],
    sparkle: Rng,
}

impl Arpeggio {
    fn new(style: &Style, rng: &mut Rng) -> Self {
        let orders: &[&'static [usize]] = &[
            &[0, 1, 2, 3],
            &[0, 1, 2, 3, 2, 1],
            &[0, 2, 1, 3],
            &[3, 2, 1, 0],
            &[0, 1, 2, 1, 3, 1],
        ];
        let order = rng.pick(orders).copied().unwrap_or(&[0, 1, 2, 3]);
        let mut sequence = [None; STEPS];
        for (step, slot) in sequence.iter_mut().enumerate() {
            if step == 0 || rng.chance(0.6) {
                *slot = Some((rng.below(5), rng.chance(0.3)));
            }
        }
        Self {
            genre: style.genre,
            order,
            sequence,
            sparkle: Rng::new(rng.next_u64()),
        }
    }

    fn bar(
        &mut self,
        writer: &mut Writer,
        harmony: &Harmony,
        section: &Section,
        bar: usize,
        chord: Chord,
    ) {
        let scale = &harmony.scale;
        match self.genre {
            Genre::Techno => {
                // Root, octave, fifth, third, seventh above the chord root in octave 3.
                let tones = [0, 7, 4, 2, 6];
                for (step, slot) in self.sequence.iter().enumerate() {
                    let Some((tone, accent)) = *slot else {
                        continue;
                    };
                    let degree = chord.degree + tones[tone % tones.len()];
                    let pitch = scale.note(degree, 3);
                    let velocity = if accent { 1.0 } else { 0.6 };
                    writer.note(bar, step, 0.0, 0.7, Part::Arp, pitch, velocity, 0.25);
                }
            }
            Genre::Ambient => {
                // Sparse bells from the chord, an octave up.
                let voicing = chord.voicing(scale, 76.0);
                let tones = voicing.notes();
                let chance = if section.kind == SectionKind::Chorus {
                    0.45
                } else {
                    0.3
                };
                for step in (0..STEPS).step_by(4) {
                    if self.sparkle.chance(chance) {
                        let pitch = tones
                            .get(self.sparkle.below(tones.len()))
                            .copied()
                            .unwrap_or(76);
                        let pan = self.sparkle.range(-0.6, 0.6);
                        writer.note(bar, step, 0.0, 4.0, Part::Arp, pitch, 0.55, pan);
                    }
                }
            }
            _ => {
                let triad = Chord {
                    shape: Shape::Triad,
                    ..chord
                };
                let voicing = triad.voicing(scale, 69.0);
                let notes = voicing.notes();
                let low = notes.first().copied().unwrap_or(69);
                let tones = [
                    low,
                    notes.get(1).copied().unwrap_or(low + 4),
                    notes.get(2).copied().unwrap_or(low + 7),
                    low + 12,
                ];
                let every = if self.genre == Genre::Synthwave { 1 } else { 2 };
                for (i, step) in (0..STEPS).step_by(every).enumerate() {
                    let tone = tones[self.order[i % self.order.len()] % tones.len()];
                    let velocity = if step.is_multiple_of(4) { 0.9 } else { 0.65 };
                    let pan = if i.is_multiple_of(2) { -0.4 } else { 0.4 };
                    writer.note(
                        bar,
                        step,
                        0.0,
                        every as f64 * 0.8,
                        Part::Arp,
                        tone,
                        velocity,
                        pan,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::prompt::style_for;

    fn score(prompt: &str, seed: u64, seconds: f64) -> Score {
        let style = style_for(prompt, seed).unwrap();
        compose(&style, seed, (seconds * SR) as usize)
    }

    #[test]
    fn sections_tile_the_track_from_intro_to_outro() {
        for genre in Genre::ALL {
            for seconds in [3.0, 6.0, 12.0, 20.0, 60.0, 150.0, 240.0] {
                let score = score(genre.name(), 11, seconds);
                let total = (score.frames as f64 / score.bar_frames).ceil() as usize;
                let mut next = 0;
                for section in &score.sections {
                    assert_eq!(section.start_bar, next, "{genre} {seconds}s");
                    assert!(section.bars > 0);
                    assert!(
                        section.layers.density() > 0,
                        "{genre} {seconds}s: empty {:?}",
                        section.kind
                    );
                    next += section.bars;
                }
                assert_eq!(next, total, "{genre} {seconds}s");
                let kinds: Vec<SectionKind> = score.sections.iter().map(|s| s.kind).collect();
                assert!(
                    kinds.contains(&SectionKind::Chorus),
                    "{genre} {seconds}s: {kinds:?}"
                );
                if total > 2 {
                    assert_eq!(kinds.first(), Some(&SectionKind::Intro));
                    assert_eq!(kinds.last(), Some(&SectionKind::Outro));
                }
                if seconds >= 150.0 {
                    assert!(kinds.len() >= 5, "{genre}: {kinds:?}");
                }
            }
        }
    }

    #[test]
    fn any_number_of_bars_is_planned_without_gaps() {
        for genre in Genre::ALL {
            let style = style_for(genre.name(), 1).unwrap();
            for total in 1..=1200 {
                let sections = plan_sections(total, &style, &mut Rng::new(total as u64));
                let covered: usize = sections.iter().map(|s| s.bars).sum();
                assert_eq!(covered, total, "{genre}: {total} bars");
                assert!(sections.iter().all(|s| s.bars > 0), "{genre}: {total} bars");
                assert!(sections.iter().any(|s| s.kind == SectionKind::Chorus));
            }
        }
    }

    #[test]
    fn intro_is_sparser_than_the_chorus() {
        for genre in Genre::ALL {
            let score = score(genre.name(), 4, 180.0);
            let intro = score.sections.first().unwrap().layers.density();
            let chorus = score
                .sections
                .iter()
                .find(|s| s.kind == SectionKind::Chorus)
                .unwrap()
                .layers
                .density();
            assert!(intro < chorus, "{genre}: intro {intro}, chorus {chorus}");
        }
    }

    #[test]
    fn notes_are_in_order_and_inside_the_track() {
        let score = score("lofi chill", 2, 30.0);
        assert!(!score.notes.is_empty());
        assert!(score.notes.windows(2).all(|w| w[0].start <= w[1].start));
        assert!(
            score
                .notes
                .iter()
                .all(|n| n.start < score.frames && n.length > 0)
        );
        assert!(
            score
                .notes
                .iter()
                .all(|n| (0.0..=1.0).contains(&n.velocity))
        );
    }

    #[test]
    fn techno_kick_is_four_on_the_floor() {
        let score = score("techno 128 bpm", 3, 60.0);
        let beat = score.bar_frames / 4.0;
        let kicks: Vec<usize> = score
            .notes
            .iter()
            .filter(|n| n.part == Part::Drum(Drum::Kick))
            .map(|n| n.start)
            .collect();
        assert!(kicks.len() > 60, "{} kicks", kicks.len());
        for kick in kicks {
            let offset = kick as f64 % beat;
            assert!(
                offset < 0.01 * SR || beat - offset < 0.01 * SR,
                "kick off the beat at {kick}"
            );
        }
    }

    #[test]
    fn lofi_offbeats_swing_late() {
        let style = style_for("lofi", 6).unwrap();
        let timeline = Timeline::new(&style, &mut Rng::stream(6, "timing"));
        let straight = timeline.step * 2.0;
        assert!(timeline.at(0, 2) > straight + 0.25 * timeline.step);
        assert_eq!(timeline.at(0, 4), timeline.step * 4.0);
    }

    #[test]
    fn bass_follows_the_chord_roots() {
        let style = style_for("house 124 bpm C major", 8).unwrap();
        let score = compose(&style, 8, (60.0 * SR) as usize);
        let scale = Scale::new(style.key);
        let major_classes: Vec<i32> = (0..7).map(|d| scale.semitones(d) % 12).collect();
        let bass: Vec<&Note> = score
            .notes
            .iter()
            .filter(|n| n.part == Part::Bass)
            .collect();
        assert!(bass.len() > 20);
        let pitches: Vec<i32> = bass
            .iter()
            .flat_map(|n| n.pitches.notes().to_vec())
            .collect();
        assert_eq!(pitches.len(), bass.len());
        assert!(pitches.iter().all(|p| (24..=60).contains(p)));
        assert!(pitches.iter().all(|p| major_classes.contains(&(p % 12))));
    }

    #[test]
    fn ambient_has_no_drums_unless_asked() {
        let quiet = score("ambient", 5, 120.0);
        assert!(!quiet.notes.iter().any(|n| matches!(n.part, Part::Drum(_))));
        let with_drums = score("ambient with drums", 5, 120.0);
        assert!(
            with_drums
                .notes
                .iter()
                .any(|n| matches!(n.part, Part::Drum(_)))
        );
    }

    #[test]
    fn lead_repeats_its_motif() {
        let score = score("synthwave 100 bpm", 12, 180.0);
        let chorus = score
            .sections
            .iter()
            .find(|s| s.kind == SectionKind::Chorus && s.bars >= 8)
            .unwrap();
        let bar = |b: usize| -> Vec<(usize, i32)> {
            let start = ((chorus.start_bar + b) as f64 * score.bar_frames) as usize;
            let end = ((chorus.start_bar + b + 1) as f64 * score.bar_frames) as usize;
            score
                .notes
                .iter()
                .filter(|n| n.part == Part::Lead && (start..end).contains(&n.start))
                .map(|n| {
                    (
                        ((n.start - start) as f64 / (score.bar_frames / 16.0)).round() as usize,
                        n.pitches.notes()[0],
                    )
                })
                .collect()
        };
        // Bars 0 and 4 of a phrase play the same motif (pitches may follow the chord on strong beats).
        let (first, again) = (bar(0), bar(4));
        assert!(!first.is_empty());
        let rhythm = |notes: &[(usize, i32)]| notes.iter().map(|(t, _)| *t).collect::<Vec<_>>();
        assert_eq!(rhythm(&first), rhythm(&again));
    }

    #[test]
    fn switching_every_part_off_still_leaves_a_pad() {
        let score = score(
            "lofi no drums no bass no chords no lead no arp no pad no vinyl",
            1,
            30.0,
        );
        assert!(score.notes.iter().all(|n| n.part == Part::Pad));
        assert!(!score.notes.is_empty());
    }
}
