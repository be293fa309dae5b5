//! Renders a score to stereo audio.
//!
//! Voices run in blocks of [`BLOCK`] frames into four buses: drums, tuned parts
//! (ducked by the kick and low-passed as the arrangement asks), a reverb send and
//! a delay send. A noise bed, the effect returns and the fades complete each
//! block, which is written straight into the track's buffer while a loudness
//! meter listens. A last pass sets the level to the target loudness and
//! soft-clips the peaks below full scale.

use super::arrange::{Note, Part, Score};
use super::dsp::{
    LoudnessMeter, OnePole, PingPong, Reverb, ReverbSettings, SR, Svf, pan_gains, sine, soft_clip,
    wrap,
};
use super::instruments::{Drum, Kit, Palette, Sound, Voice};
use super::rng::Noise;
use super::style::{Genre, Style};
use crate::frame::CHANNELS;

/// Frames rendered per block.
const BLOCK: usize = 256;
/// Voices that may sound at once; the oldest gives way beyond this.
const MAX_VOICES: usize = 160;
/// Integrated loudness of a track unless the options say otherwise.
pub(crate) const DEFAULT_TARGET_LUFS: f32 = -14.0;

/// How a part is mixed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PartMix {
    level: f32,
    reverb: f32,
    delay: f32,
    /// On the drum bus (never ducked or filtered) rather than the tuned-parts bus.
    drums: bool,
}

/// Levels of the parts in one genre's mix, in decibels.
struct Levels {
    kick: f32,
    snare: f32,
    clap: f32,
    /// Closed hats; open hats and shakers sit a little lower.
    hats: f32,
    /// Rim shots.
    perc: f32,
    crash: f32,
    toms: f32,
    riser: f32,
    bass: f32,
    chords: f32,
    pad: f32,
    lead: f32,
    arp: f32,
}

fn levels(genre: Genre) -> Levels {
    match genre {
        Genre::Lofi => Levels {
            kick: -1.9,
            snare: 1.0,
            clap: -2.0,
            hats: -5.0,
            perc: -3.0,
            crash: -12.0,
            toms: -9.0,
            riser: -18.0,
            bass: -9.0,
            chords: -11.7,
            pad: -16.5,
            lead: -14.0,
            arp: -19.0,
        },
        Genre::Techno => Levels {
            kick: -0.9,
            snare: -3.0,
            clap: 2.0,
            hats: -4.0,
            perc: -3.0,
            crash: -11.0,
            toms: -9.0,
            riser: -14.0,
            bass: -3.8,
            chords: 0.8,
            pad: -6.5,
            lead: -12.0,
            arp: -11.0,
        },
        Genre::Ambient => Levels {
            kick: -6.0,
            snare: -8.0,
            clap: -8.0,
            hats: -10.0,
            perc: -8.0,
            crash: -16.0,
            toms: -10.0,
            riser: -18.0,
            bass: -10.4,
            chords: -7.0,
            pad: -11.7,
            lead: -14.7,
            arp: -13.5,
        },
        Genre::House => Levels {
            kick: -0.9,
            snare: -1.0,
            clap: 2.0,
            hats: -6.0,
            perc: -5.0,
            crash: -12.0,
            toms: -9.0,
            riser: -15.0,
            bass: -1.1,
            chords: -12.5,
            pad: -17.1,
            lead: -8.2,
            arp: -16.0,
        },
        Genre::Synthwave => Levels {
            kick: -0.9,
            snare: 3.5,
            clap: -2.0,
            hats: -4.7,
            perc: -5.0,
            crash: -11.0,
            toms: -6.0,
            riser: -15.0,
            bass: -6.8,
            chords: -8.0,
            pad: -17.4,
            lead: -14.0,
            arp: -2.8,
        },
    }
}

fn part_mix(genre: Genre, part: Part) -> PartMix {
    let db = levels(genre);
    let gain = |decibels: f32| 10f32.powf(decibels / 20.0);
    let tuned = |decibels: f32, reverb: f32, delay: f32| PartMix {
        level: gain(decibels),
        reverb,
        delay,
        drums: false,
    };
    let drum = |decibels: f32, reverb: f32| PartMix {
        level: gain(decibels),
        reverb,
        delay: 0.0,
        drums: true,
    };
    let ambient = genre == Genre::Ambient;
    match part {
        Part::Drum(Drum::Kick) => drum(db.kick, 0.0),
        Part::Drum(Drum::Snare) => {
            drum(db.snare, if genre == Genre::Synthwave { 0.45 } else { 0.2 })
        }
        Part::Drum(Drum::Clap) => drum(db.clap, 0.3),
        Part::Drum(Drum::ClosedHat) => drum(db.hats, 0.04),
        Part::Drum(Drum::OpenHat) => drum(db.hats - 1.0, 0.08),
        Part::Drum(Drum::Shaker) => drum(db.hats - 2.0, 0.1),
        Part::Drum(Drum::Rim) => drum(db.perc, 0.25),
        Part::Drum(Drum::Crash) => drum(db.crash, 0.3),
        Part::Drum(Drum::HighTom | Drum::MidTom | Drum::LowTom) => drum(db.toms, 0.35),
        Part::Riser => tuned(db.riser, 0.5, 0.0),
        Part::Bass => tuned(db.bass, 0.0, 0.0),
        Part::Chords => match genre {
            Genre::Techno => tuned(db.chords, 0.3, 0.45),
            Genre::Lofi => tuned(db.chords, 0.2, 0.05),
            _ => tuned(db.chords, 0.25, 0.1),
        },
        Part::Pad => tuned(db.pad, if ambient { 0.7 } else { 0.35 }, 0.0),
        Part::Lead => match genre {
            Genre::Ambient => tuned(db.lead, 0.7, 0.35),
            Genre::Synthwave => tuned(db.lead, 0.35, 0.3),
            _ => tuned(db.lead, 0.3, 0.2),
        },
        Part::Arp => match genre {
            Genre::Ambient => tuned(db.arp, 0.7, 0.4),
            Genre::Techno => tuned(db.arp, 0.2, 0.3),
            _ => tuned(db.arp, 0.3, 0.35),
        },
    }
}

/// The genre's room, echo, sidechain depth and tape tone.
struct GenreMix {
    reverb: ReverbSettings,
    delay_beats: f32,
    delay_feedback: f32,
    duck: f32,
    /// A low-pass on the whole mix, in hertz, for a worn-tape warmth.
    tape: Option<f32>,
}

fn genre_mix(genre: Genre) -> GenreMix {
    let reverb = |decay, size, damping_hz, predelay| ReverbSettings {
        decay,
        size,
        damping_hz,
        predelay,
    };
    match genre {
        Genre::Lofi => GenreMix {
            reverb: reverb(1.3, 0.7, 4000.0, 0.01),
            delay_beats: 0.5,
            delay_feedback: 0.25,
            duck: 0.15,
            tape: Some(9000.0),
        },
        Genre::Techno => GenreMix {
            reverb: reverb(2.4, 1.1, 5000.0, 0.02),
            delay_beats: 0.75,
            delay_feedback: 0.45,
            duck: 0.45,
            tape: None,
        },
        Genre::Ambient => GenreMix {
            reverb: reverb(7.0, 1.5, 4500.0, 0.03),
            delay_beats: 0.75,
            delay_feedback: 0.5,
            duck: 0.0,
            tape: None,
        },
        Genre::House => GenreMix {
            reverb: reverb(1.6, 0.9, 6000.0, 0.015),
            delay_beats: 0.75,
            delay_feedback: 0.3,
            duck: 0.5,
            tape: None,
        },
        Genre::Synthwave => GenreMix {
            reverb: reverb(2.8, 1.2, 6000.0, 0.02),
            delay_beats: 0.75,
            delay_feedback: 0.38,
            duck: 0.3,
            tape: None,
        },
    }
}

/// Sidechain compression, kick-triggered: a quick dip and a tempo-scaled recovery.
#[derive(Debug, Clone, Copy)]
struct Duck {
    depth: f32,
    level: f32,
    release: f32,
    rising: usize,
}

impl Duck {
    fn trigger(&mut self) {
        self.rising = (0.004 * SR) as usize;
    }

    #[inline]
    fn next(&mut self) -> f32 {
        if self.rising > 0 {
            self.rising -= 1;
            self.level += (1.0 - self.level) * 0.02;
        } else {
            self.level *= self.release;
        }
        1.0 - self.depth * self.level
    }
}

/// A noise bed: vinyl crackle and hiss, or wind.
#[derive(Debug, Clone)]
struct Texture {
    wind: bool,
    noise: Noise,
    level: f32,
    hiss: [OnePole; 2],
    hiss_floor: [OnePole; 2],
    crackle: f32,
    crackle_tone: OnePole,
    gusts: [Svf; 2],
    phase: f32,
    tick: u32,
}

impl Texture {
    fn new(genre: Genre, seed: u64) -> Self {
        Self {
            wind: genre == Genre::Ambient,
            noise: Noise::new(seed ^ 0x7e87_0a11),
            level: 0.0,
            hiss: [OnePole::new(6000.0); 2],
            hiss_floor: [OnePole::new(1500.0); 2],
            crackle: 0.0,
            crackle_tone: OnePole::new(1000.0),
            gusts: [Svf::new(500.0, 1.2); 2],
            phase: 0.0,
            tick: 0,
        }
    }

    #[inline]
    fn next(&mut self, target: f32) -> (f32, f32) {
        self.level += (target - self.level) * 0.0002;
        if self.level < 1e-4 {
            return (0.0, 0.0);
        }
        if self.wind {
            if self.tick.is_multiple_of(16) {
                self.phase = wrap(self.phase + 0.07 * 16.0 / SR);
                self.gusts[0].set(450.0 * (1.2 * sine(self.phase)).exp2(), 1.2);
                self.gusts[1].set(450.0 * (1.2 * sine(self.phase + 0.31)).exp2(), 1.2);
            }
            self.tick = self.tick.wrapping_add(1);
            let swell = 0.6 + 0.4 * sine(self.phase * 2.0 + 0.2);
            let gain = self.level * swell * 0.05;
            let left = self.gusts[0].process(self.noise.next()).band * gain;
            let right = self.gusts[1].process(self.noise.next()).band * gain;
            return (left, right);
        }
        let mut hiss = [0.0; 2];
        for (channel, value) in hiss.iter_mut().enumerate() {
            *value =
                self.hiss_floor[channel].high(self.hiss[channel].low(self.noise.next())) * 0.01;
        }
        if self.noise.next() > 0.9994 {
            self.crackle = self.noise.next() * 0.35;
        }
        let pop = self.crackle_tone.high(self.crackle);
        self.crackle *= 0.6;
        (
            (hiss[0] + pop) * self.level,
            (hiss[1] + pop * 0.8) * self.level,
        )
    }
}

/// A voice with its mix gains.
#[derive(Debug, Clone, Copy)]
struct Playing {
    voice: Voice,
    left: f32,
    right: f32,
    reverb: f32,
    delay: f32,
    drums: bool,
    /// Frames into the current block before the voice starts.
    offset: usize,
    alive: bool,
}

struct Mixer<'a> {
    score: &'a Score,
    genre: Genre,
    seed: u64,
    kit: Kit,
    palette: Palette,
    voices: Vec<Playing>,
    next_note: usize,
    scratch: Vec<f32>,
    drum_bus: Vec<f32>,
    music_bus: Vec<f32>,
    reverb_send: Vec<f32>,
    delay_send: Vec<f32>,
    /// Frames into the block at which a kick starts (ducking), and how many.
    kicks: [usize; 8],
    kick_count: usize,
    duck: Duck,
    tone: [Svf; 2],
    texture: Texture,
    reverb: Reverb,
    delay: PingPong,
    high_pass: [OnePole; 2],
    /// Two one-pole low-passes per channel.
    tape: Option<[OnePole; 4]>,
    meter: LoudnessMeter,
}

impl<'a> Mixer<'a> {
    fn new(style: &Style, score: &'a Score, seed: u64) -> Self {
        let genre = style.genre;
        let mix = genre_mix(genre);
        let beat = 60.0 / style.bpm;
        let bus = || vec![0.0f32; BLOCK * CHANNELS];
        Self {
            score,
            genre,
            seed,
            kit: Kit::new(genre, seed),
            palette: Palette::new(style),
            voices: Vec::with_capacity(MAX_VOICES),
            next_note: 0,
            scratch: bus(),
            drum_bus: bus(),
            music_bus: bus(),
            reverb_send: bus(),
            delay_send: bus(),
            kicks: [0; 8],
            kick_count: 0,
            duck: Duck {
                depth: mix.duck,
                level: 0.0,
                release: (-1.0 / (0.28 * beat * SR)).exp(),
                rising: 0,
            },
            tone: [Svf::new(20_000.0, 0.707); 2],
            texture: Texture::new(genre, seed),
            reverb: Reverb::new(mix.reverb),
            delay: PingPong::new(mix.delay_beats * beat, mix.delay_feedback),
            high_pass: [OnePole::new(25.0); 2],
            tape: mix.tape.map(|hz| [OnePole::new(hz); 4]),
            meter: LoudnessMeter::new(score.frames),
        }
    }

    fn run(&mut self, out: &mut [f32]) {
        let frames = self.score.frames.min(out.len() / CHANNELS);
        let mut start = 0;
        while start < frames {
            let length = BLOCK.min(frames - start);
            self.start_notes(start, length);
            self.play_voices(length);
            self.finish_block(
                start,
                &mut out[start * CHANNELS..(start + length) * CHANNELS],
            );
            start += length;
        }
    }

    fn start_notes(&mut self, start: usize, length: usize) {
        self.kick_count = 0;
        while let Some(note) = self.score.notes.get(self.next_note) {
            if note.start >= start + length {
                break;
            }
            let offset = note.start.saturating_sub(start);
            let seed = self.seed ^ (self.next_note as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            self.next_note += 1;
            let voice = match note.part {
                Part::Drum(drum) => Voice::drum(drum, note.velocity),
                Part::Riser => Voice::riser(note.length, note.velocity, seed),
                Part::Bass => self.note(&self.palette.bass, note, seed),
                Part::Chords => self.note(&self.palette.chords, note, seed),
                Part::Pad => self.note(&self.palette.pad, note, seed),
                Part::Lead => self.note(&self.palette.lead, note, seed),
                Part::Arp => self.note(&self.palette.arp, note, seed),
            };
            if note.part == Part::Drum(Drum::Kick)
                && let Some(slot) = self.kicks.get_mut(self.kick_count)
            {
                *slot = offset;
                self.kick_count += 1;
            }
            let mix = part_mix(self.genre, note.part);
            let (left, right) = pan_gains(note.pan);
            if self.voices.len() >= MAX_VOICES {
                self.voices.remove(0);
            }
            self.voices.push(Playing {
                voice,
                left: left * mix.level,
                right: right * mix.level,
                reverb: mix.reverb * mix.level,
                delay: mix.delay * mix.level,
                drums: mix.drums,
                offset,
                alive: true,
            });
        }
    }

    fn note(&self, sound: &Sound, note: &Note, seed: u64) -> Voice {
        Voice::note(
            sound,
            note.pitches.notes(),
            note.velocity,
            note.length,
            note.start,
            seed,
        )
    }

    fn play_voices(&mut self, length: usize) {
        let used = length * CHANNELS;
        for bus in [
            &mut self.drum_bus,
            &mut self.music_bus,
            &mut self.reverb_send,
            &mut self.delay_send,
        ] {
            bus[..used].fill(0.0);
        }
        for playing in &mut self.voices {
            let offset = playing.offset.min(length) * CHANNELS;
            playing.offset = 0;
            let scratch = &mut self.scratch[..used - offset];
            playing.alive = playing.voice.fill(&self.kit, scratch);
            let bus = if playing.drums {
                &mut self.drum_bus
            } else {
                &mut self.music_bus
            };
            let (left, right, reverb, delay) =
                (playing.left, playing.right, playing.reverb, playing.delay);
            let sends = self.reverb_send[offset..used]
                .chunks_exact_mut(2)
                .zip(self.delay_send[offset..used].chunks_exact_mut(2));
            for ((mixed, sound), (room, echo)) in bus[offset..used]
                .chunks_exact_mut(2)
                .zip(scratch.chunks_exact(2))
                .zip(sends)
            {
                mixed[0] += sound[0] * left;
                mixed[1] += sound[1] * right;
                room[0] += sound[0] * reverb;
                room[1] += sound[1] * reverb;
                echo[0] += sound[0] * delay;
                echo[1] += sound[1] * delay;
            }
        }
        self.voices.retain(|playing| playing.alive);
    }

    fn finish_block(&mut self, start: usize, out: &mut [f32]) {
        let score = self.score;
        let length = out.len() / CHANNELS;
        let middle = start + length / 2;
        let cutoff = 120.0 * (score.brightness_at(middle) * 7.4).exp2();
        for filter in &mut self.tone {
            filter.set(cutoff, 0.707);
        }
        let texture = score.texture_at(middle);
        let level = score.level_at(start);
        let level_step = (score.level_at(start + length) - level) / length as f32;
        let mut next_kick = 0;
        for (i, frame) in out.chunks_exact_mut(CHANNELS).enumerate() {
            while next_kick < self.kick_count && self.kicks[next_kick] == i {
                self.duck.trigger();
                next_kick += 1;
            }
            let duck = self.duck.next();
            let at = i * CHANNELS;
            let music_left = self.tone[0].low(self.music_bus[at]) * duck;
            let music_right = self.tone[1].low(self.music_bus[at + 1]) * duck;
            let (noise_left, noise_right) = self.texture.next(texture);
            let (echo_left, echo_right) = self
                .delay
                .process(self.delay_send[at], self.delay_send[at + 1]);
            let (room_left, room_right) = self.reverb.process(
                self.reverb_send[at] + echo_left * 0.25,
                self.reverb_send[at + 1] + echo_right * 0.25,
            );
            let dry = level + level_step * i as f32;
            let mut left =
                (self.drum_bus[at] + music_left) * dry + noise_left + echo_left + room_left;
            let mut right =
                (self.drum_bus[at + 1] + music_right) * dry + noise_right + echo_right + room_right;
            left = self.high_pass[0].high(left);
            right = self.high_pass[1].high(right);
            if let Some(tape) = &mut self.tape {
                let [first_left, first_right, second_left, second_right] = tape;
                left = second_left.low(first_left.low(left));
                right = second_right.low(first_right.low(right));
            }
            let fade = fade(score, start + i);
            frame[0] = left * fade;
            frame[1] = right * fade;
            self.meter.push(frame[0], frame[1]);
        }
    }
}

/// Gain of the fade-in and fade-out at `frame`: 0 on the first and last frames.
fn fade(score: &Score, frame: usize) -> f32 {
    let smooth = |t: f32| t * t * (3.0 - 2.0 * t);
    let mut gain = 1.0;
    if frame < score.fade_in {
        gain *= smooth(frame as f32 / score.fade_in as f32);
    }
    let left = score.frames.saturating_sub(frame + 1);
    if left < score.fade_out {
        gain *= smooth(left as f32 / score.fade_out as f32);
    }
    gain
}

/// Mixes `score` in `style` into `out` (interleaved stereo, `score.frames`
/// frames) as it comes out of the mix bus, and returns its integrated loudness
/// (`None` for silence or under 400 ms).
pub(crate) fn mix(style: &Style, score: &Score, seed: u64, out: &mut [f32]) -> Option<f32> {
    let mut mixer = Mixer::new(style, score, seed);
    mixer.run(out);
    mixer.meter.integrated()
}

/// Renders `score` in `style` into `out` (interleaved stereo, `score.frames`
/// frames) at `target_lufs`, peaks below full scale.
pub(crate) fn render(style: &Style, score: &Score, seed: u64, target_lufs: f32, out: &mut [f32]) {
    let loudness = mix(style, score, seed, out);
    let gain = match loudness {
        Some(lufs) => 10f32.powf((target_lufs - lufs) / 20.0).clamp(1e-3, 1e3),
        None => 1.0,
    };
    for sample in out.iter_mut() {
        *sample = soft_clip(*sample * gain);
    }
}
