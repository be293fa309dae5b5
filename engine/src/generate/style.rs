//! What a track should sound like: genre template, tempo, key, energy and instruments.

use std::fmt;

/// Tempo bounds accepted in prompts, in beats per minute.
pub const MIN_BPM: f32 = 40.0;
pub const MAX_BPM: f32 = 220.0;

/// The genre templates. Each sets a tempo range, a usual mode, an energy, the
/// instruments that play, the drum and bass rhythms and the chord progressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Genre {
    /// Swung boom-bap drums, jazzy seventh and ninth chords on a warm electric
    /// piano, sub bass, vinyl crackle, everything gently low-passed.
    Lofi,
    /// Four-on-the-floor kick, offbeat hats, a rolling sixteenth bass, minor
    /// stabs through a dub delay, hypnotic sequences.
    Techno,
    /// Slow evolving pads, a sub drone, sparse bells, long reverb; no drums.
    Ambient,
    /// Four-on-the-floor with claps and offbeat open hats, piano or organ chord
    /// stabs, an offbeat bass, sidechain pumping.
    House,
    /// Saw pads and arpeggios, pulsing eighth bass, gated snare, a saw lead.
    Synthwave,
}

impl Genre {
    /// Every genre, in a fixed order.
    pub const ALL: [Genre; 5] = [
        Genre::Lofi,
        Genre::Techno,
        Genre::Ambient,
        Genre::House,
        Genre::Synthwave,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Genre::Lofi => "lofi",
            Genre::Techno => "techno",
            Genre::Ambient => "ambient",
            Genre::House => "house",
            Genre::Synthwave => "synthwave",
        }
    }

    /// The tempo range the template picks from when a prompt names none.
    pub fn bpm_range(&self) -> (f32, f32) {
        match self {
            Genre::Lofi => (70.0, 90.0),
            Genre::Techno => (124.0, 134.0),
            Genre::Ambient => (60.0, 78.0),
            Genre::House => (118.0, 126.0),
            Genre::Synthwave => (84.0, 110.0),
        }
    }

    /// Energy when the prompt has no energy words (0 calm ..= 1 driving).
    pub fn default_energy(&self) -> f32 {
        match self {
            Genre::Lofi => 0.4,
            Genre::Techno => 0.75,
            Genre::Ambient => 0.2,
            Genre::House => 0.65,
            Genre::Synthwave => 0.55,
        }
    }

    /// Chance that the seed picks a minor key when the prompt names no mode.
    pub(crate) fn minor_chance(&self) -> f32 {
        match self {
            Genre::Lofi => 0.6,
            Genre::Techno => 0.9,
            Genre::Ambient => 0.4,
            Genre::House => 0.5,
            Genre::Synthwave => 0.75,
        }
    }

    /// The key used when neither prompt nor seed chooses one.
    pub(crate) fn default_key(&self) -> Key {
        match self {
            Genre::Lofi => Key::new(9, Mode::Minor),
            Genre::Techno => Key::new(5, Mode::Minor),
            Genre::Ambient => Key::new(0, Mode::Major),
            Genre::House => Key::new(0, Mode::Major),
            Genre::Synthwave => Key::new(4, Mode::Minor),
        }
    }

    /// The parts the template plays and their sounds.
    pub fn default_instruments(&self) -> Instruments {
        let all = Instruments {
            drums: true,
            bass: true,
            chords: true,
            pad: true,
            lead: true,
            arp: true,
            texture: false,
            chord_sound: ChordSound::ElectricPiano,
            lead_sound: LeadSound::Soft,
        };
        match self {
            Genre::Lofi => Instruments {
                pad: false,
                arp: false,
                texture: true,
                ..all
            },
            Genre::Techno => Instruments {
                lead: false,
                chord_sound: ChordSound::Stab,
                lead_sound: LeadSound::Pluck,
                ..all
            },
            Genre::Ambient => Instruments {
                drums: false,
                chords: false,
                texture: true,
                chord_sound: ChordSound::Synth,
                lead_sound: LeadSound::Bell,
                ..all
            },
            Genre::House => Instruments {
                arp: false,
                chord_sound: ChordSound::Piano,
                lead_sound: LeadSound::Pluck,
                ..all
            },
            Genre::Synthwave => Instruments {
                chords: false,
                chord_sound: ChordSound::Synth,
                lead_sound: LeadSound::Saw,
                ..all
            },
        }
    }
}

impl fmt::Display for Genre {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The mode of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Major,
    Minor,
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Major => "major",
            Mode::Minor => "minor",
        }
    }
}

/// A key: root pitch class (0 = C, 1 = C#, ... 11 = B) and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// Pitch class of the tonic, `0..12`.
    pub root: u8,
    pub mode: Mode,
}

impl Key {
    /// A key; `root` is taken modulo 12.
    pub fn new(root: u8, mode: Mode) -> Self {
        Self {
            root: root % 12,
            mode,
        }
    }
}

const PITCH_NAMES: [&str; 12] = [
    "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
];

impl fmt::Display for Key {
    /// Writes the key as in "A minor" or "Eb major".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = PITCH_NAMES[usize::from(self.root % 12)];
        write!(f, "{name} {}", self.mode.name())
    }
}

/// The sound of the chord part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChordSound {
    /// A warm FM electric piano.
    ElectricPiano,
    /// A bright, percussive piano.
    Piano,
    /// A drawbar organ.
    Organ,
    /// Short filtered saw chords.
    Stab,
    /// Detuned saw chords, held.
    Synth,
}

/// The sound of the lead melody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeadSound {
    /// A mellow triangle-and-sine voice with vibrato.
    Soft,
    /// An FM bell.
    Bell,
    /// Two detuned saws through a low-pass filter.
    Saw,
    /// A short plucked square.
    Pluck,
}

/// Which parts play, and how the tuned ones sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Instruments {
    pub drums: bool,
    pub bass: bool,
    /// Rhythmic chords (keys, piano, organ, stabs).
    pub chords: bool,
    /// Sustained pad chords.
    pub pad: bool,
    /// A melody built from a repeated motif.
    pub lead: bool,
    /// Arpeggios or sequences over the chords.
    pub arp: bool,
    /// A noise bed: vinyl crackle and tape hiss, or wind.
    pub texture: bool,
    pub chord_sound: ChordSound,
    pub lead_sound: LeadSound,
}

/// Everything the generator needs to know about what to play.
#[derive(Debug, Clone, PartialEq)]
pub struct Style {
    pub genre: Genre,
    /// Beats per minute, within [`MIN_BPM`]`..=`[`MAX_BPM`].
    pub bpm: f32,
    pub key: Key,
    /// 0 (calm) ..= 1 (driving): drum density, brightness, note density.
    pub energy: f32,
    pub instruments: Instruments,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_display_as_name_and_mode() {
        assert_eq!(Key::new(9, Mode::Minor).to_string(), "A minor");
        assert_eq!(Key::new(1, Mode::Major).to_string(), "C# major");
        assert_eq!(Key::new(15, Mode::Major).to_string(), "Eb major");
    }

    #[test]
    fn templates_stay_within_the_accepted_tempo_range() {
        for genre in Genre::ALL {
            let (low, high) = genre.bpm_range();
            assert!(MIN_BPM <= low && low < high && high <= MAX_BPM, "{genre}");
            assert!((0.0..=1.0).contains(&genre.default_energy()), "{genre}");
        }
    }
}
