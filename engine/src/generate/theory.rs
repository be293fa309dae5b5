//! Scales, chords, progressions and voicings.
//!
//! Pitches are MIDI note numbers (60 = middle C). Chords are built from scale
//! degrees (0 = tonic) by stacking thirds, so every progression stays in its key.

use super::style::{Genre, Key, Mode};

const MAJOR: [i32; 7] = [0, 2, 4, 5, 7, 9, 11];
const MINOR: [i32; 7] = [0, 2, 3, 5, 7, 8, 10];

/// The scale of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scale {
    /// Pitch class of the tonic, `0..12`.
    root: i32,
    steps: &'static [i32; 7],
}

impl Scale {
    pub(crate) fn new(key: Key) -> Self {
        let steps = match key.mode {
            Mode::Major => &MAJOR,
            Mode::Minor => &MINOR,
        };
        Self {
            root: i32::from(key.root % 12),
            steps,
        }
    }

    /// Semitones from the tonic to scale degree `degree`, any integer (7 is the
    /// tonic an octave up, -1 the leading tone below).
    pub(crate) fn semitones(&self, degree: i32) -> i32 {
        self.steps[degree.rem_euclid(7) as usize] + 12 * degree.div_euclid(7)
    }

    /// MIDI note of scale degree `degree`, counted from the tonic in `octave`
    /// (octave 4 holds middle C).
    pub(crate) fn note(&self, degree: i32, octave: i32) -> i32 {
        12 * (octave + 1) + self.root + self.semitones(degree)
    }
}

/// How a chord is stacked, as scale degrees above its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Root, third, fifth.
    Triad,
    /// Root, third, fifth, seventh.
    Seventh,
    /// Third, fifth, seventh, ninth: the bass plays the root.
    RootlessNinth,
    /// Root, fifth, ninth and the third above: wide, for pads.
    Open,
}

impl Shape {
    fn degrees(&self) -> &'static [i32] {
        match self {
            Shape::Triad => &[0, 2, 4],
            Shape::Seventh => &[0, 2, 4, 6],
            Shape::RootlessNinth => &[2, 4, 6, 8],
            Shape::Open => &[0, 4, 8, 9],
        }
    }
}

/// A chord on a scale degree of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chord {
    /// Scale degree of the chord's root, `0..7`.
    pub(crate) degree: i32,
    pub(crate) shape: Shape,
}

/// Up to four MIDI notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Voicing {
    notes: [i32; 4],
    len: usize,
}

impl Voicing {
    /// One note.
    pub(crate) fn single(note: i32) -> Self {
        let mut voicing = Self::default();
        voicing.push(note);
        voicing
    }

    pub(crate) fn notes(&self) -> &[i32] {
        &self.notes[..self.len]
    }

    fn push(&mut self, note: i32) {
        if let Some(slot) = self.notes.get_mut(self.len) {
            *slot = note;
            self.len += 1;
        }
    }

    fn mean(&self) -> f32 {
        let notes = self.notes();
        notes.iter().sum::<i32>() as f32 / notes.len().max(1) as f32
    }
}

impl Chord {
    /// Whether scale degree `degree` (any octave) is one of the chord's tones.
    pub(crate) fn has_degree(&self, degree: i32) -> bool {
        let above_root = (degree - self.degree).rem_euclid(7);
        self.shape
            .degrees()
            .iter()
            .any(|d| d.rem_euclid(7) == above_root)
            || above_root == 0
    }

    /// The chord tone nearest to scale degree `degree`, preferring the lower on a tie.
    pub(crate) fn nearest_tone(&self, degree: i32) -> i32 {
        (0..7)
            .flat_map(|distance| [degree - distance, degree + distance])
            .find(|d| self.has_degree(*d))
            .unwrap_or(degree)
    }

    /// MIDI note of the chord's root in `octave`.
    pub(crate) fn root_note(&self, scale: &Scale, octave: i32) -> i32 {
        scale.note(self.degree, octave)
    }

    /// A close voicing whose average pitch is nearest to `center`; for
    /// [`Shape::Open`] the stacking is kept as written, root nearest `center - 9`.
    pub(crate) fn voicing(&self, scale: &Scale, center: f32) -> Voicing {
        let degrees = self.shape.degrees();
        let root_semitones = scale.semitones(self.degree);
        if self.shape == Shape::Open {
            let lowest = scale.note(self.degree, -1);
            let octaves = ((center - 9.0 - lowest as f32) / 12.0).round() as i32;
            let root = lowest + 12 * octaves;
            let mut voicing = Voicing::default();
            for d in degrees {
                voicing.push(root + scale.semitones(self.degree + d) - root_semitones);
            }
            return voicing;
        }
        let mut pitch_classes = Voicing::default();
        for d in degrees {
            pitch_classes.push((scale.root + scale.semitones(self.degree + d)).rem_euclid(12));
        }
        let classes = pitch_classes.notes();
        let mut best = Voicing::default();
        let mut best_distance = f32::INFINITY;
        for rotation in 0..classes.len() {
            for octave_shift in [-12, 0] {
                let mut voicing = Voicing::default();
                let first = classes[rotation];
                // Lowest note: this pitch class at or above `center - 7`, maybe an octave down.
                let floor = center.round() as i32 - 7;
                let mut note = floor + (first - floor).rem_euclid(12) + octave_shift;
                voicing.push(note);
                for step in 1..classes.len() {
                    let class = classes[(rotation + step) % classes.len()];
                    note += 1 + (class - note - 1).rem_euclid(12);
                    voicing.push(note);
                }
                let distance = (voicing.mean() - center).abs();
                if distance < best_distance {
                    best_distance = distance;
                    best = voicing;
                }
            }
        }
        best
    }
}

/// The chord progressions a genre picks from (scale degrees, one chord each).
fn progressions(genre: Genre, mode: Mode) -> &'static [[i32; 4]] {
    match (genre, mode) {
        (Genre::Lofi, Mode::Minor) => &[
            [0, 3, 6, 2],
            [1, 4, 0, 0],
            [5, 4, 0, 0],
            [3, 2, 1, 0],
            [0, 5, 3, 4],
        ],
        (Genre::Lofi, Mode::Major) => &[[1, 4, 0, 5], [0, 5, 1, 4], [3, 2, 1, 0], [3, 4, 2, 5]],
        (Genre::Techno, Mode::Minor) => &[
            [0, 0, 0, 0],
            [0, 0, 5, 5],
            [0, 5, 0, 6],
            [0, 0, 3, 3],
            [0, 6, 5, 6],
        ],
        (Genre::Techno, Mode::Major) => &[[0, 0, 5, 5], [0, 0, 3, 3], [0, 4, 0, 4]],
        (Genre::Ambient, Mode::Major) => &[[0, 3, 5, 4], [0, 4, 5, 3], [3, 0, 4, 5], [0, 5, 3, 0]],
        (Genre::Ambient, Mode::Minor) => &[[0, 5, 2, 6], [0, 3, 5, 2], [0, 6, 5, 6], [5, 3, 0, 4]],
        (Genre::House, Mode::Major) => &[[5, 3, 0, 4], [1, 4, 0, 0], [3, 4, 2, 5], [0, 3, 5, 4]],
        (Genre::House, Mode::Minor) => &[[0, 5, 6, 4], [0, 3, 6, 5], [0, 6, 5, 6], [3, 4, 0, 0]],
        (Genre::Synthwave, Mode::Minor) => {
            &[[0, 5, 2, 6], [0, 6, 5, 6], [5, 6, 0, 0], [0, 3, 5, 6]]
        }
        (Genre::Synthwave, Mode::Major) => {
            &[[0, 4, 5, 3], [5, 3, 0, 4], [0, 3, 4, 4], [3, 4, 5, 5]]
        }
    }
}

/// A progression of four chords for `genre` in `key`, chosen by `pick`.
pub(crate) fn progression(genre: Genre, key: Key, shape: Shape, pick: usize) -> [Chord; 4] {
    let table = progressions(genre, key.mode);
    let degrees = table
        .get(pick % table.len().max(1))
        .copied()
        .unwrap_or([0, 0, 0, 0]);
    degrees.map(|degree| Chord { degree, shape })
}

/// How many progressions `genre` offers in `mode`.
pub(crate) fn progression_count(genre: Genre, mode: Mode) -> usize {
    progressions(genre, mode).len()
}

/// Frequency in hertz of a (fractional) MIDI note.
pub(crate) fn hz(note: f32) -> f32 {
    440.0 * ((note - 69.0) / 12.0).exp2()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_minor() -> Scale {
        Scale::new(Key::new(9, Mode::Minor))
    }

    #[test]
    fn scale_degrees_wrap_into_octaves() {
        let scale = a_minor();
        assert_eq!(scale.semitones(2), 3);
        assert_eq!(scale.semitones(7), 12);
        assert_eq!(scale.semitones(-1), -2);
        assert_eq!(scale.note(0, 4), 69);
        assert_eq!(Scale::new(Key::new(0, Mode::Major)).note(0, 4), 60);
    }

    #[test]
    fn chords_are_stacked_in_the_key() {
        let scale = a_minor();
        // iv7 in A minor is D minor seven: D F A C.
        let chord = Chord {
            degree: 3,
            shape: Shape::Seventh,
        };
        let mut classes: Vec<i32> = chord
            .voicing(&scale, 60.0)
            .notes()
            .iter()
            .map(|n| n % 12)
            .collect();
        classes.sort_unstable();
        assert_eq!(classes, vec![0, 2, 5, 9]);
        // D above the tonic A2.
        assert_eq!(chord.root_note(&scale, 2), 50);
    }

    #[test]
    fn close_voicings_sit_near_their_center_and_ascend() {
        let scale = Scale::new(Key::new(3, Mode::Major));
        for degree in 0..7 {
            for shape in [Shape::Triad, Shape::Seventh, Shape::RootlessNinth] {
                let voicing = Chord { degree, shape }.voicing(&scale, 62.0);
                let notes = voicing.notes();
                assert!(
                    notes.windows(2).all(|w| w[0] < w[1] && w[1] - w[0] <= 12),
                    "{notes:?}"
                );
                assert!((voicing.mean() - 62.0).abs() <= 6.0, "{notes:?}");
            }
        }
    }

    #[test]
    fn open_voicing_spans_more_than_an_octave() {
        let voicing = Chord {
            degree: 0,
            shape: Shape::Open,
        }
        .voicing(&a_minor(), 60.0);
        let notes = voicing.notes();
        assert_eq!(notes.len(), 4);
        assert!(notes[3] - notes[0] > 12);
        assert_eq!(notes[0] % 12, 9);
    }

    #[test]
    fn melody_notes_snap_to_chord_tones() {
        let chord = Chord {
            degree: 0,
            shape: Shape::Triad,
        };
        assert_eq!(chord.nearest_tone(1), 0);
        assert_eq!(chord.nearest_tone(3), 2);
        assert_eq!(chord.nearest_tone(4), 4);
        assert_eq!(chord.nearest_tone(6), 7);
        assert!(chord.has_degree(-3));
    }

    #[test]
    fn every_genre_and_mode_has_progressions() {
        for genre in Genre::ALL {
            for mode in [Mode::Major, Mode::Minor] {
                assert!(progression_count(genre, mode) >= 3, "{genre} {mode:?}");
                let chords = progression(genre, Key::new(0, mode), Shape::Triad, 99);
                assert!(chords.iter().all(|c| (0..7).contains(&c.degree)));
            }
        }
    }

    #[test]
    fn a440_is_midi_sixty_nine() {
        assert!((hz(69.0) - 440.0).abs() < 1e-3);
        assert!((hz(57.0) - 220.0).abs() < 1e-3);
    }
}
