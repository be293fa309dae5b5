//! The instruments: drum one-shots synthesized once per track, and the voices
//! that play notes (FM keys and bells, subtractive synths, a noise riser).
//!
//! A voice writes interleaved stereo into a caller's block and reports whether
//! it still sounds; nothing here allocates once a voice has started.

use super::dsp::{
    Adsr, Envelope, OnePole, Oscillator, SR, Svf, Waveforms, decay_coefficient, sine, sine_near,
    soft_clip, wrap,
};
use super::rng::Noise;
use super::style::{ChordSound, Genre, LeadSound, Style};
use super::theory::hz;

/// The drums of a kit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drum {
    Kick,
    Snare,
    Clap,
    ClosedHat,
    OpenHat,
    Shaker,
    Rim,
    Crash,
    HighTom,
    MidTom,
    LowTom,
}

impl Drum {
    const ALL: [Drum; 11] = [
        Drum::Kick,
        Drum::Snare,
        Drum::Clap,
        Drum::ClosedHat,
        Drum::OpenHat,
        Drum::Shaker,
        Drum::Rim,
        Drum::Crash,
        Drum::HighTom,
        Drum::MidTom,
        Drum::LowTom,
    ];
}

/// One-shot drum samples (mono, peak 1), synthesized for one genre.
#[derive(Debug, Clone)]
pub(crate) struct Kit {
    samples: [Vec<f32>; 11],
}

impl Kit {
    pub(crate) fn new(genre: Genre, seed: u64) -> Self {
        let mut noise = Noise::new(seed ^ 0xd2b7_4407_b1ce_6e93);
        Self {
            samples: Drum::ALL.map(|drum| normalized(synthesize(drum, genre, &mut noise))),
        }
    }

    pub(crate) fn sample(&self, drum: Drum) -> &[f32] {
        &self.samples[drum as usize]
    }
}

fn normalized(mut samples: Vec<f32>) -> Vec<f32> {
    let peak = samples.iter().fold(0.0f32, |peak, s| peak.max(s.abs()));
    if peak > 0.0 {
        samples.iter_mut().for_each(|s| *s /= peak);
    }
    // A 3 ms fade so a sample never ends on a step.
    let fade = (0.003 * SR) as usize;
    let length = samples.len();
    for (i, sample) in samples
        .iter_mut()
        .skip(length.saturating_sub(fade))
        .enumerate()
    {
        *sample *= 1.0 - i as f32 / fade as f32;
    }
    samples
}

/// Renders `seconds` of a sound from a function of the sample index.
fn render(seconds: f32, mut sample: impl FnMut(usize) -> f32) -> Vec<f32> {
    (0..(seconds * SR) as usize).map(&mut sample).collect()
}

fn synthesize(drum: Drum, genre: Genre, noise: &mut Noise) -> Vec<f32> {
    match drum {
        Drum::Kick => kick(genre, noise),
        Drum::Snare => snare(genre, noise),
        Drum::Clap => clap(noise),
        Drum::ClosedHat => hat(genre, noise, 0.07),
        Drum::OpenHat => hat(genre, noise, 0.5),
        Drum::Shaker => shaker(noise),
        Drum::Rim => rim(noise),
        Drum::Crash => crash(noise),
        Drum::HighTom => tom(190.0, noise),
        Drum::MidTom => tom(140.0, noise),
        Drum::LowTom => tom(100.0, noise),
    }
}

/// A sine swept down in pitch, with a click and some drive.
fn kick(genre: Genre, noise: &mut Noise) -> Vec<f32> {
    // (start Hz, end Hz, sweep seconds, decay seconds, click, drive, tone Hz)
    let (start, end, sweep, decay, click, drive, tone) = match genre {
        Genre::Lofi => (125.0, 50.0, 0.03, 0.38, 0.25, 1.6, 2200.0),
        Genre::Techno => (175.0, 45.0, 0.04, 0.65, 0.5, 2.6, 6000.0),
        Genre::Ambient => (95.0, 46.0, 0.05, 0.55, 0.0, 1.0, 1200.0),
        Genre::House => (150.0, 50.0, 0.035, 0.5, 0.4, 1.8, 5000.0),
        Genre::Synthwave => (160.0, 52.0, 0.045, 0.5, 0.6, 1.6, 7000.0),
    };
    let sweep_coefficient = (-1.0 / (sweep * SR)).exp();
    let amplitude_coefficient = decay_coefficient(decay);
    let click_coefficient = (-1.0 / (0.0015 * SR)).exp();
    let (mut phase, mut sweep_level, mut amplitude, mut click_level) = (0.0f32, 1.0, 1.0, click);
    let mut click_filter = OnePole::new(3000.0);
    let mut tone_filter = OnePole::new(tone);
    render(decay * 1.1, |i| {
        let pitch = end + (start - end) * sweep_level;
        sweep_level *= sweep_coefficient;
        phase += pitch / SR;
        let attack = (i as f32 / (0.0006 * SR)).min(1.0);
        let body = sine(phase) * amplitude * attack;
        amplitude *= amplitude_coefficient;
        let snap = click_filter.high(noise.next()) * click_level;
        click_level *= click_coefficient;
        tone_filter.low(soft_clip((body + snap) * drive) / drive.min(1.4))
    })
}

/// Two tones and a band of noise; synthwave's is gated: a dense tail cut short.
fn snare(genre: Genre, noise: &mut Noise) -> Vec<f32> {
    let (tone_hz, tone_decay, noise_decay, band_hz, top_hz) = match genre {
        Genre::Lofi | Genre::Ambient => (185.0, 0.1, 0.22, 1700.0, 5000.0),
        Genre::Techno => (200.0, 0.08, 0.26, 2400.0, 9000.0),
        Genre::House => (210.0, 0.07, 0.28, 2600.0, 10_000.0),
        Genre::Synthwave => (175.0, 0.14, 0.3, 1900.0, 8000.0),
    };
    let gated = genre == Genre::Synthwave;
    let tone_coefficient = decay_coefficient(tone_decay);
    let noise_coefficient = decay_coefficient(noise_decay);
    let (mut tone_level, mut noise_level) = (1.0f32, 1.0f32);
    let mut band = Svf::new(band_hz, 0.9);
    let mut low_cut = OnePole::new(400.0);
    let mut top = OnePole::new(top_hz);
    let mut tail = Svf::new(2200.0, 0.6);
    let gate_frames = (0.34 * SR) as usize;
    let fade_frames = (0.02 * SR) as usize;
    let length = if gated { 0.4 } else { noise_decay * 1.1 };
    render(length, |i| {
        let t = i as f32 / SR;
        let tone = (sine(t * tone_hz) + 0.6 * sine(t * tone_hz * 1.63)) * tone_level;
        tone_level *= tone_coefficient;
        let white = noise.next();
        let body = band.process(white);
        let rattle = top.low(low_cut.high(body.band * 1.5 + body.high * 0.5)) * noise_level;
        noise_level *= noise_coefficient;
        let mut value = 0.35 * tone + 2.5 * rattle;
        if gated {
            // A flat, dense "reverb" tail that stops abruptly: the 1980s gated snare.
            let gate = if i < gate_frames {
                1.0
            } else {
                (1.0 - (i - gate_frames) as f32 / fade_frames as f32).max(0.0)
            };
            value += 1.2 * tail.process(white).band * gate * (1.0 - 0.4 * t / 0.34);
        }
        value
    })
}

/// Three quick bursts of band-passed noise, then a short tail.
fn clap(noise: &mut Noise) -> Vec<f32> {
    let mut band = Svf::new(1250.0, 1.4);
    let burst = (0.011 * SR) as usize;
    render(0.35, |i| {
        let t = i as f32 / SR;
        let envelope = if i < 3 * burst {
            (-((i % burst) as f32) / (0.004 * SR)).exp()
        } else {
            0.8 * (-(t - 0.033) / 0.07).exp()
        };
        band.process(noise.next()).band * envelope
    })
}

/// The six square waves of a classic drum machine's cymbals.
struct Metal {
    oscillators: [Oscillator; 6],
}

impl Metal {
    fn new(scale: f32) -> Self {
        let hz = [205.3, 304.4, 369.6, 522.7, 540.0, 800.0];
        Self {
            oscillators: hz.map(|hz| Oscillator::new(hz * scale, 0.0)),
        }
    }

    fn next(&mut self) -> f32 {
        self.oscillators
            .iter_mut()
            .map(Oscillator::square)
            .sum::<f32>()
            / 6.0
    }
}

/// Metallic squares and noise, high-passed; `decay` sets closed or open.
fn hat(genre: Genre, noise: &mut Noise, decay: f32) -> Vec<f32> {
    let (cut, top) = match genre {
        Genre::Lofi | Genre::Ambient => (6000.0, 9000.0),
        _ => (7500.0, 16_000.0),
    };
    let mut metal = Metal::new(1.0);
    let mut high = Svf::new(cut, 0.8);
    let mut low = OnePole::new(top);
    let coefficient = decay_coefficient(decay);
    let mut level = 1.0f32;
    render(decay * 1.1, |_| {
        let source = 0.6 * metal.next() + 0.5 * noise.next();
        let value = low.low(high.process(source).high) * level;
        level *= coefficient;
        value
    })
}

fn shaker(noise: &mut Noise) -> Vec<f32> {
    let mut band = Svf::new(5500.0, 1.0);
    render(0.12, |i| {
        let t = i as f32 / SR;
        let envelope = (t / 0.012).min(1.0) * (-t / 0.03).exp();
        band.process(noise.next()).band * envelope
    })
}

fn rim(noise: &mut Noise) -> Vec<f32> {
    let mut high = OnePole::new(2000.0);
    render(0.08, |i| {
        let t = i as f32 / SR;
        let tone = (sine(t * 1700.0) + 0.7 * sine(t * 820.0)) * (-t / 0.012).exp();
        tone + high.high(noise.next()) * (-t / 0.003).exp()
    })
}

fn crash(noise: &mut Noise) -> Vec<f32> {
    let mut metal = Metal::new(1.47);
    let mut high = Svf::new(3500.0, 0.7);
    let coefficient = decay_coefficient(2.4);
    let mut level = 1.0f32;
    render(2.6, |i| {
        let attack = (i as f32 / (0.002 * SR)).min(1.0);
        let value = high.process(0.5 * metal.next() + 0.7 * noise.next()).high * level * attack;
        level *= coefficient;
        value
    })
}

fn tom(pitch: f32, noise: &mut Noise) -> Vec<f32> {
    let coefficient = decay_coefficient(0.6);
    let (mut phase, mut level) = (0.0f32, 1.0f32);
    let mut soft = OnePole::new(3000.0);
    render(0.6, |i| {
        let t = i as f32 / SR;
        phase += pitch * (1.0 + 0.5 * (-t / 0.04).exp()) / SR;
        let value = sine(phase) * level + soft.low(noise.next()) * 0.2 * (-t / 0.01).exp();
        level *= coefficient;
        value
    })
}

/// An FM sound: a sine carrier phase-modulated by a sine, plus one decaying partial.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FmPatch {
    /// Modulator frequency over carrier frequency.
    pub(crate) ratio: f32,
    /// Modulation depth at the attack, in cycles.
    pub(crate) index: f32,
    /// Seconds for the modulation to fall by 60 dB (infinite: constant).
    pub(crate) index_decay: f32,
    /// Modulation depth that remains.
    pub(crate) index_floor: f32,
    pub(crate) partial_ratio: f32,
    pub(crate) partial_level: f32,
    pub(crate) partial_decay: f32,
    /// Slow pitch wobble (tape wow), in semitones.
    pub(crate) wow: f32,
    pub(crate) envelope: Adsr,
}

/// A subtractive synth sound: oscillators, a resonant low-pass with its own
/// envelope and LFO, vibrato and an amplitude envelope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SynthPatch {
    pub(crate) waves: Waveforms,
    /// Extra detuned saws (0..=2) beside the main oscillator.
    pub(crate) extra_saws: u8,
    pub(crate) detune_cents: f32,
    /// How far the extra saws spread left and right (0..=1).
    pub(crate) spread: f32,
    /// A sine an octave below.
    pub(crate) sub: f32,
    pub(crate) noise: f32,
    pub(crate) cutoff: f32,
    pub(crate) q: f32,
    /// Octaves the filter envelope opens the cutoff at the attack.
    pub(crate) filter_env: f32,
    pub(crate) filter_decay: f32,
    pub(crate) lfo_hz: f32,
    /// Octaves the LFO moves the cutoff.
    pub(crate) lfo_depth: f32,
    /// Vibrato depth in semitones, reached after `vibrato_delay` seconds.
    pub(crate) vibrato: f32,
    pub(crate) vibrato_delay: f32,
    pub(crate) envelope: Adsr,
}

const DEFAULT_SYNTH: SynthPatch = SynthPatch {
    waves: Waveforms {
        saw: 0.0,
        square: 0.0,
        triangle: 0.0,
        sine: 0.0,
    },
    extra_saws: 0,
    detune_cents: 0.0,
    spread: 0.0,
    sub: 0.0,
    noise: 0.0,
    cutoff: 2000.0,
    q: 0.707,
    filter_env: 0.0,
    filter_decay: 0.2,
    lfo_hz: 0.0,
    lfo_depth: 0.0,
    vibrato: 0.0,
    vibrato_delay: 0.0,
    envelope: Adsr {
        attack: 0.005,
        decay: 1.0,
        sustain: 1.0,
        release: 0.1,
    },
};

const fn waves(saw: f32, square: f32, triangle: f32, sine: f32) -> Waveforms {
    Waveforms {
        saw,
        square,
        triangle,
        sine,
    }
}

const fn adsr(attack: f32, decay: f32, sustain: f32, release: f32) -> Adsr {
    Adsr {
        attack,
        decay,
        sustain,
        release,
    }
}

/// How a part sounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Sound {
    Fm(FmPatch),
    Synth(SynthPatch),
}

/// The sounds of a track's tuned parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Palette {
    pub(crate) bass: Sound,
    pub(crate) chords: Sound,
    pub(crate) pad: Sound,
    pub(crate) lead: Sound,
    pub(crate) arp: Sound,
}

impl Palette {
    pub(crate) fn new(style: &Style) -> Self {
        let genre = style.genre;
        let energy = style.energy;
        let bright = 0.7 + 0.6 * energy;
        let bass = match genre {
            Genre::Lofi => SynthPatch {
                waves: waves(0.0, 0.0, 0.35, 1.0),
                cutoff: 520.0,
                filter_env: 0.6,
                envelope: adsr(0.006, 1.4, 0.5, 0.12),
                ..DEFAULT_SYNTH
            },
            Genre::Techno => SynthPatch {
                waves: waves(1.0, 0.0, 0.0, 0.0),
                sub: 0.7,
                cutoff: 130.0 + 120.0 * energy,
                q: 2.4,
                filter_env: 2.2 + 1.2 * energy,
                filter_decay: 0.14,
                envelope: adsr(0.002, 0.45, 0.55, 0.05),
                ..DEFAULT_SYNTH
            },
            Genre::Ambient => SynthPatch {
                waves: waves(0.0, 0.0, 0.2, 1.0),
                cutoff: 320.0,
                envelope: adsr(1.2, 4.0, 0.9, 2.5),
                ..DEFAULT_SYNTH
            },
            Genre::House => SynthPatch {
                waves: waves(0.3, 0.7, 0.0, 0.0),
                sub: 0.7,
                cutoff: 230.0,
                q: 1.8,
                filter_env: 2.3,
                filter_decay: 0.16,
                envelope: adsr(0.003, 0.5, 0.45, 0.06),
                ..DEFAULT_SYNTH
            },
            Genre::Synthwave => SynthPatch {
                waves: waves(1.0, 0.0, 0.0, 0.0),
                extra_saws: 1,
                detune_cents: 7.0,
                sub: 0.5,
                cutoff: 300.0,
                q: 1.2,
                filter_env: 2.0,
                filter_decay: 0.18,
                envelope: adsr(0.003, 0.5, 0.6, 0.08),
                ..DEFAULT_SYNTH
            },
        };
        let chords = match style.instruments.chord_sound {
            ChordSound::ElectricPiano => Sound::Fm(FmPatch {
                ratio: 1.0,
                index: 0.28,
                index_decay: 1.4,
                index_floor: 0.05,
                partial_ratio: 7.0,
                partial_level: 0.14,
                partial_decay: 0.3,
                wow: if genre == Genre::Lofi { 0.1 } else { 0.0 },
                envelope: adsr(0.004, 3.5, 0.0, 0.35),
            }),
            ChordSound::Piano => Sound::Fm(FmPatch {
                ratio: 1.0,
                index: 0.42,
                index_decay: 0.7,
                index_floor: 0.07,
                partial_ratio: 2.0,
                partial_level: 0.35,
                partial_decay: 1.3,
                wow: 0.0,
                envelope: adsr(0.002, 2.4, 0.0, 0.25),
            }),
            ChordSound::Organ => Sound::Fm(FmPatch {
                ratio: 2.0,
                index: 0.12,
                index_decay: f32::INFINITY,
                index_floor: 0.0,
                partial_ratio: 0.5,
                partial_level: 0.45,
                partial_decay: f32::INFINITY,
                wow: 0.0,
                envelope: adsr(0.005, 1.0, 1.0, 0.08),
            }),
            ChordSound::Stab => Sound::Synth(SynthPatch {
                waves: waves(1.0, 0.3, 0.0, 0.0),
                extra_saws: 1,
                detune_cents: 12.0,
                spread: 0.5,
                cutoff: 380.0 * bright,
                q: 2.2,
                filter_env: 3.0,
                filter_decay: 0.13,
                envelope: adsr(0.001, 0.4, 0.0, 0.12),
                ..DEFAULT_SYNTH
            }),
            ChordSound::Synth => Sound::Synth(SynthPatch {
                waves: waves(1.0, 0.0, 0.0, 0.0),
                extra_saws: 2,
                detune_cents: 10.0,
                spread: 0.7,
                cutoff: 1300.0 * bright,
                q: 0.8,
                filter_env: 1.0,
                filter_decay: 0.4,
                envelope: adsr(0.005, 0.8, 0.7, 0.25),
                ..DEFAULT_SYNTH
            }),
        };
        let pad = match genre {
            Genre::Lofi => SynthPatch {
                waves: waves(0.4, 0.0, 0.6, 0.0),
                extra_saws: 1,
                detune_cents: 9.0,
                spread: 0.6,
                cutoff: 900.0,
                lfo_hz: 0.15,
                lfo_depth: 0.4,
                envelope: adsr(0.6, 2.0, 0.85, 1.5),
                ..DEFAULT_SYNTH
            },
            Genre::Techno => SynthPatch {
                waves: waves(1.0, 0.0, 0.0, 0.0),
                extra_saws: 2,
                detune_cents: 14.0,
                spread: 0.8,
                cutoff: 600.0 * bright,
                q: 1.5,
                lfo_hz: 0.07,
                lfo_depth: 1.0,
                envelope: adsr(1.2, 2.0, 0.9, 2.0),
                ..DEFAULT_SYNTH
            },
            Genre::Ambient => SynthPatch {
                waves: waves(0.5, 0.0, 0.6, 0.0),
                extra_saws: 2,
                detune_cents: 8.0,
                spread: 0.9,
                cutoff: 800.0,
                q: 0.9,
                lfo_hz: 0.05,
                lfo_depth: 0.8,
                envelope: adsr(2.5, 3.0, 0.9, 4.5),
                ..DEFAULT_SYNTH
            },
            Genre::House => SynthPatch {
                waves: waves(1.0, 0.0, 0.0, 0.0),
                extra_saws: 2,
                detune_cents: 11.0,
                spread: 0.8,
                cutoff: 1400.0,
                q: 0.8,
                lfo_hz: 0.1,
                lfo_depth: 0.4,
                envelope: adsr(0.4, 2.0, 0.85, 1.2),
                ..DEFAULT_SYNTH
            },
            Genre::Synthwave => SynthPatch {
                waves: waves(1.0, 0.0, 0.0, 0.0),
                extra_saws: 2,
                detune_cents: 13.0,
                spread: 0.9,
                cutoff: 1800.0,
                q: 0.9,
                lfo_hz: 0.12,
                lfo_depth: 0.5,
                envelope: adsr(0.35, 2.0, 0.9, 1.0),
                ..DEFAULT_SYNTH
            },
        };
        let bell = FmPatch {
            ratio: 3.5,
            index: 0.3,
            index_decay: 2.5,
            index_floor: 0.02,
            partial_ratio: 2.0,
            partial_level: 0.15,
            partial_decay: 1.5,
            wow: 0.0,
            envelope: adsr(
                if genre == Genre::Ambient {
                    0.012
                } else {
                    0.003
                },
                4.0,
                0.0,
                2.0,
            ),
        };
        let pluck = SynthPatch {
            waves: waves(0.3, 0.8, 0.0, 0.0),
            cutoff: 800.0 * bright,
            q: 1.6,
            filter_env: 2.8,
            filter_decay: 0.12,
            envelope: adsr(0.001, 0.5, 0.0, 0.15),
            ..DEFAULT_SYNTH
        };
        let lead = match style.instruments.lead_sound {
            LeadSound::Soft => Sound::Synth(SynthPatch {
                waves: waves(0.0, 0.0, 0.8, 0.5),
                noise: 0.04,
                cutoff: 2400.0,
                vibrato: 0.18,
                vibrato_delay: 0.25,
                envelope: adsr(0.04, 1.5, 0.8, 0.3),
                ..DEFAULT_SYNTH
            }),
            LeadSound::Bell => Sound::Fm(bell),
            LeadSound::Saw => Sound::Synth(SynthPatch {
                waves: waves(1.0, 0.0, 0.0, 0.0),
                extra_saws: 1,
                detune_cents: 6.0,
                spread: 0.3,
                cutoff: 2000.0 * bright,
                q: 1.2,
                filter_env: 1.2,
                filter_decay: 0.25,
                vibrato: 0.15,
                vibrato_delay: 0.3,
                envelope: adsr(0.01, 1.0, 0.75, 0.3),
                ..DEFAULT_SYNTH
            }),
            LeadSound::Pluck => Sound::Synth(pluck),
        };
        let arp = match genre {
            Genre::Techno => Sound::Synth(SynthPatch {
                waves: waves(1.0, 0.0, 0.0, 0.0),
                cutoff: 260.0 * bright,
                q: 7.0,
                filter_env: 3.0,
                filter_decay: 0.11,
                envelope: adsr(0.002, 0.3, 0.3, 0.05),
                ..DEFAULT_SYNTH
            }),
            Genre::Ambient => Sound::Fm(bell),
            Genre::Synthwave => Sound::Synth(SynthPatch {
                waves: waves(0.6, 0.5, 0.0, 0.0),
                cutoff: 1100.0 * bright,
                q: 1.4,
                filter_env: 2.2,
                filter_decay: 0.15,
                envelope: adsr(0.001, 0.35, 0.0, 0.12),
                ..DEFAULT_SYNTH
            }),
            Genre::Lofi | Genre::House => Sound::Synth(pluck),
        };
        Self {
            bass: Sound::Synth(bass),
            chords,
            pad: Sound::Synth(pad),
            lead,
            arp,
        }
    }
}

/// A drum sample playing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SampleVoice {
    drum: Drum,
    position: usize,
    gain: f32,
}

/// An FM note playing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FmVoice {
    carrier: Oscillator,
    modulator: Oscillator,
    partial: Oscillator,
    hz: f32,
    ratio: f32,
    partial_ratio: f32,
    index: f32,
    index_coefficient: f32,
    index_floor: f32,
    partial_level: f32,
    partial_coefficient: f32,
    wow: f32,
    wow_phase: f32,
    envelope: Envelope,
    gain: f32,
    tick: u32,
}

/// Most pitches one synth voice plays (a chord).
const CHORD_NOTES: usize = 4;

/// A subtractive synth note or chord playing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SynthVoice {
    /// Per pitch: the main oscillator and two detuned saws.
    oscillators: [[Oscillator; 3]; CHORD_NOTES],
    subs: [Oscillator; CHORD_NOTES],
    pitches: [f32; CHORD_NOTES],
    count: usize,
    noise: Noise,
    waves: Waveforms,
    extra_saws: u8,
    saw_level: f32,
    sub_level: f32,
    noise_level: f32,
    /// Gains of the detuned saws on their own side and the other side.
    near: f32,
    far: f32,
    stereo: bool,
    left: Svf,
    right: Svf,
    cutoff: f32,
    q: f32,
    filter_env: f32,
    filter_coefficient: f32,
    lfo_phase: f32,
    lfo_step: f32,
    lfo_depth: f32,
    detune: f32,
    vibrato: f32,
    vibrato_phase: f32,
    vibrato_wait: usize,
    envelope: Envelope,
    gain: f32,
    tick: u32,
}

/// Band-passed noise rising in pitch and level over its length.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RiserVoice {
    noise: Noise,
    filter: Svf,
    position: usize,
    length: usize,
    gain: f32,
}

/// Anything that plays.
// Voices live in a vector allocated once per track; boxing the large variants
// would allocate for every note instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Voice {
    Sample(SampleVoice),
    Fm(FmVoice),
    Synth(SynthVoice),
    Riser(RiserVoice),
}

/// Control-rate period: filters and pitch modulation update every this many frames.
const CONTROL: u32 = 16;

impl Voice {
    pub(crate) fn drum(drum: Drum, gain: f32) -> Self {
        Voice::Sample(SampleVoice {
            drum,
            position: 0,
            gain,
        })
    }

    pub(crate) fn riser(length: usize, gain: f32, seed: u64) -> Self {
        Voice::Riser(RiserVoice {
            noise: Noise::new(seed),
            filter: Svf::new(300.0, 2.0),
            position: 0,
            length: length.max(1),
            gain,
        })
    }

    /// A note of `sound` at the MIDI `pitches`, held `hold` frames; `start` (the
    /// note's frame in the track) keeps slow modulations in step across notes.
    /// Synth sounds play up to four pitches as one chord; FM sounds play the
    /// first pitch (keys arrive note by note).
    pub(crate) fn note(
        sound: &Sound,
        pitches: &[i32],
        velocity: f32,
        hold: usize,
        start: usize,
        seed: u64,
    ) -> Self {
        let first = pitches.first().map_or(60.0, |&p| p as f32);
        match sound {
            Sound::Fm(patch) => {
                let pitch = hz(first);
                Voice::Fm(FmVoice {
                    carrier: Oscillator::new(pitch, 0.0),
                    modulator: Oscillator::new(pitch * patch.ratio, 0.0),
                    partial: Oscillator::new(pitch * patch.partial_ratio, 0.0),
                    hz: pitch,
                    ratio: patch.ratio,
                    partial_ratio: patch.partial_ratio,
                    index: patch.index * (0.6 + 0.4 * velocity),
                    index_coefficient: decay_coefficient(patch.index_decay),
                    index_floor: patch.index_floor,
                    partial_level: patch.partial_level * velocity,
                    partial_coefficient: decay_coefficient(patch.partial_decay),
                    wow: patch.wow,
                    wow_phase: (start as f64 * 0.55 / f64::from(SR)).fract() as f32,
                    envelope: Envelope::new(patch.envelope, hold),
                    gain: velocity,
                    tick: 0,
                })
            }
            Sound::Synth(patch) => {
                let detune = (patch.detune_cents / 1200.0).exp2();
                let mut phases = Noise::new(seed);
                let mut oscillators = [[Oscillator::default(); 3]; CHORD_NOTES];
                let mut subs = [Oscillator::default(); CHORD_NOTES];
                let mut hertz = [0.0f32; CHORD_NOTES];
                let count = pitches.len().clamp(1, CHORD_NOTES);
                for n in 0..count {
                    let pitch = hz(pitches.get(n).map_or(first, |&p| p as f32));
                    hertz[n] = pitch;
                    let mut phase = || phases.next() * 0.5 + 0.5;
                    oscillators[n] = [
                        Oscillator::new(pitch, phase()),
                        Oscillator::new(pitch * detune, phase()),
                        Oscillator::new(pitch / detune, phase()),
                    ];
                    subs[n] = Oscillator::new(pitch * 0.5, 0.0);
                }
                let key_tracking = (hz(first) / 261.6).sqrt();
                // Several pitches add up: keep a chord about as loud as one note.
                let gain = velocity / (count as f32).sqrt();
                Voice::Synth(SynthVoice {
                    oscillators,
                    subs,
                    pitches: hertz,
                    count,
                    noise: Noise::new(seed ^ 0x5bd1_e995),
                    waves: patch.waves,
                    extra_saws: patch.extra_saws.min(2),
                    saw_level: patch.waves.saw.max(0.5),
                    sub_level: patch.sub,
                    noise_level: patch.noise,
                    near: (1.0 + patch.spread) * 0.5,
                    far: (1.0 - patch.spread) * 0.5,
                    stereo: patch.spread > 0.0 && patch.extra_saws > 0,
                    left: Svf::new(patch.cutoff, patch.q),
                    right: Svf::new(patch.cutoff, patch.q),
                    cutoff: patch.cutoff * key_tracking,
                    q: patch.q,
                    filter_env: patch.filter_env * (0.5 + 0.5 * velocity),
                    filter_coefficient: decay_coefficient(patch.filter_decay).powi(CONTROL as i32),
                    lfo_phase: (start as f64 * f64::from(patch.lfo_hz) / f64::from(SR)).fract()
                        as f32,
                    lfo_step: patch.lfo_hz * CONTROL as f32 / SR,
                    lfo_depth: patch.lfo_depth,
                    detune,
                    vibrato: patch.vibrato,
                    vibrato_phase: 0.0,
                    vibrato_wait: (patch.vibrato_delay * SR) as usize,
                    envelope: Envelope::new(patch.envelope, hold),
                    gain,
                    tick: 0,
                })
            }
        }
    }

    /// Writes the next `out.len() / 2` frames (interleaved stereo, overwriting)
    /// and returns whether the voice still sounds.
    pub(crate) fn fill(&mut self, kit: &Kit, out: &mut [f32]) -> bool {
        match self {
            Voice::Sample(voice) => voice.fill(kit, out),
            Voice::Fm(voice) => voice.fill(out),
            Voice::Synth(voice) => voice.fill(out),
            Voice::Riser(voice) => voice.fill(out),
        }
    }
}

impl SampleVoice {
    fn fill(&mut self, kit: &Kit, out: &mut [f32]) -> bool {
        let sample = kit.sample(self.drum);
        let rest = sample.get(self.position..).unwrap_or(&[]);
        let mut frames = out.chunks_exact_mut(2);
        for (frame, value) in (&mut frames).zip(rest) {
            let value = value * self.gain;
            frame[0] = value;
            frame[1] = value;
        }
        let written = (out.len() / 2).min(rest.len());
        out[written * 2..].fill(0.0);
        self.position += written;
        self.position < sample.len()
    }
}

impl FmVoice {
    fn fill(&mut self, out: &mut [f32]) -> bool {
        for frame in out.chunks_exact_mut(2) {
            if self.wow != 0.0 && self.tick.is_multiple_of(CONTROL) {
                self.wow_phase = wrap(self.wow_phase + 0.55 * CONTROL as f32 / SR);
                let pitch = self.hz * (self.wow * sine(self.wow_phase) / 12.0).exp2();
                self.carrier.set_hz(pitch);
                self.modulator.set_hz(pitch * self.ratio);
                self.partial.set_hz(pitch * self.partial_ratio);
            }
            self.tick = self.tick.wrapping_add(1);
            let modulation = self.modulator.sine() * (self.index + self.index_floor);
            self.index *= self.index_coefficient;
            // The modulation stays within ±0.6 cycles (index at most 0.5 plus its floor).
            let carrier = sine_near(self.carrier.phase() + modulation);
            self.carrier.advance();
            let mut value = carrier;
            if self.partial_level > 1e-4 {
                value += self.partial.sine() * self.partial_level;
                self.partial_level *= self.partial_coefficient;
            }
            let value = value * self.envelope.next() * self.gain;
            frame[0] = value;
            frame[1] = value;
        }
        !self.envelope.is_done()
    }
}

impl SynthVoice {
    fn control(&mut self) {
        self.lfo_phase = wrap(self.lfo_phase + self.lfo_step);
        let octaves = self.filter_env + self.lfo_depth * sine(self.lfo_phase);
        self.filter_env *= self.filter_coefficient;
        let cutoff = self.cutoff * octaves.exp2();
        self.left.set(cutoff, self.q);
        if self.stereo {
            self.right.set(cutoff, self.q);
        }
        if self.vibrato != 0.0 {
            if self.vibrato_wait > 0 {
                self.vibrato_wait = self.vibrato_wait.saturating_sub(CONTROL as usize);
            } else {
                self.vibrato_phase = wrap(self.vibrato_phase + 5.2 * CONTROL as f32 / SR);
                let bend = (self.vibrato * sine(self.vibrato_phase) / 12.0).exp2();
                for n in 0..self.count {
                    let pitch = self.pitches[n] * bend;
                    let [main, up, down] = &mut self.oscillators[n];
                    main.set_hz(pitch);
                    up.set_hz(pitch * self.detune);
                    down.set_hz(pitch / self.detune);
                    self.subs[n].set_hz(pitch * 0.5);
                }
            }
        }
    }

    fn fill(&mut self, out: &mut [f32]) -> bool {
        let count = self.count.min(CHORD_NOTES);
        for frame in out.chunks_exact_mut(2) {
            if self.tick.is_multiple_of(CONTROL) {
                self.control();
            }
            self.tick = self.tick.wrapping_add(1);
            let (mut left, mut right) = (0.0, 0.0);
            for n in 0..count {
                let [main, up, down] = &mut self.oscillators[n];
                let center = main.shapes(&self.waves);
                left += center;
                right += center;
                if self.extra_saws >= 1 {
                    let saw = up.saw() * self.saw_level;
                    left += saw * self.near;
                    right += saw * self.far;
                }
                if self.extra_saws >= 2 {
                    let saw = down.saw() * self.saw_level;
                    left += saw * self.far;
                    right += saw * self.near;
                }
                if self.sub_level != 0.0 {
                    let sub = self.subs[n].sine() * self.sub_level;
                    left += sub;
                    right += sub;
                }
            }
            if self.noise_level != 0.0 {
                let breath = self.noise.next() * self.noise_level;
                left += breath;
                right += breath;
            }
            let level = self.envelope.next() * self.gain;
            let left = self.left.low(left) * level;
            let right = if self.stereo {
                self.right.low(right) * level
            } else {
                left
            };
            frame[0] = left;
            frame[1] = right;
        }
        !self.envelope.is_done()
    }
}

impl RiserVoice {
    fn fill(&mut self, out: &mut [f32]) -> bool {
        let release = (0.05 * SR) as usize;
        for frame in out.chunks_exact_mut(2) {
            let progress = self.position as f32 / self.length as f32;
            let level = if self.position < self.length {
                progress * progress
            } else {
                (1.0 - (self.position - self.length) as f32 / release as f32).max(0.0)
            };
            if self.position.is_multiple_of(CONTROL as usize) {
                self.filter.set(300.0 * 30f32.powf(progress.min(1.0)), 2.0);
            }
            self.position += 1;
            let value = self.filter.process(self.noise.next()).band * level * self.gain;
            frame[0] = value;
            frame[1] = value;
        }
        self.position < self.length + release
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::prompt::style_for;

    fn rms(samples: &[f32]) -> f32 {
        (samples.iter().map(|s| s * s).sum::<f32>() / samples.len().max(1) as f32).sqrt()
    }

    #[test]
    fn every_drum_of_every_kit_is_audible_peaks_at_one_and_ends_silent() {
        for genre in Genre::ALL {
            let kit = Kit::new(genre, 1);
            for drum in Drum::ALL {
                let sample = kit.sample(drum);
                let peak = sample.iter().fold(0.0f32, |p, s| p.max(s.abs()));
                assert!((peak - 1.0).abs() < 1e-6, "{genre} {drum:?} peak {peak}");
                assert!(
                    sample.last().is_some_and(|s| s.abs() < 1e-3),
                    "{genre} {drum:?}"
                );
            }
        }
    }

    #[test]
    fn kick_is_mostly_low_frequency_and_hat_mostly_high() {
        let kit = Kit::new(Genre::Techno, 3);
        let zero_crossings = |s: &[f32]| {
            s.windows(2)
                .filter(|w| w[0].signum() != w[1].signum())
                .count()
        };
        let kick = kit.sample(Drum::Kick);
        let hat = kit.sample(Drum::ClosedHat);
        let kick_hz = zero_crossings(kick) as f32 / 2.0 / (kick.len() as f32 / SR);
        let hat_hz = zero_crossings(hat) as f32 / 2.0 / (hat.len() as f32 / SR);
        assert!(kick_hz < 150.0, "kick {kick_hz} Hz");
        assert!(hat_hz > 4000.0, "hat {hat_hz} Hz");
    }

    #[test]
    fn every_sound_plays_a_note_that_ends_after_its_release() {
        let kit = Kit::new(Genre::House, 0);
        for genre in Genre::ALL {
            let style = style_for(genre.name(), 5).unwrap();
            let palette = Palette::new(&style);
            for sound in [
                palette.bass,
                palette.chords,
                palette.pad,
                palette.lead,
                palette.arp,
            ] {
                let mut voice = Voice::note(&sound, &[60, 64, 67], 0.8, (0.5 * SR) as usize, 0, 7);
                let mut block = vec![0.0f32; 512];
                let mut energy = 0.0;
                let mut blocks = 0;
                while voice.fill(&kit, &mut block) {
                    assert!(block.iter().all(|s| s.is_finite()), "{genre}");
                    energy += rms(&block);
                    blocks += 1;
                    assert!(blocks < 3000, "{genre}: a note never ends");
                }
                assert!(energy > 0.0, "{genre}: silent note");
            }
        }
    }

    #[test]
    fn riser_grows_louder_towards_its_end() {
        let kit = Kit::new(Genre::Techno, 0);
        let mut voice = Voice::riser(SR as usize, 1.0, 3);
        let mut first = vec![0.0f32; 9600];
        let mut last = vec![0.0f32; 9600];
        voice.fill(&kit, &mut first);
        for _ in 0..3 {
            voice.fill(&kit, &mut last);
        }
        voice.fill(&kit, &mut last);
        assert!(rms(&last) > rms(&first) * 4.0);
    }
}
