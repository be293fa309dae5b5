//! Text prompts to styles: "lofi chill 80 bpm A minor" or "dark techno 128 bpm".
//!
//! Words name a genre (with synonyms), a tempo (`80 bpm`, `80bpm`, `tempo 80`), a
//! key (`A minor`, `C# major`, `F#m`, `Eb`, `B flat minor`, `in D`), a mood that
//! picks the mode (dark, happy), an energy (chill, calm, driving, energetic) and
//! instruments (piano, organ, pads, bells, arp, vinyl; `no drums`, `drumless`).
//! Unknown words are ignored. What the prompt leaves open comes from the genre's
//! template, and from the track's seed when there is one ([`style_for`]).

use super::rng::Rng;
use super::style::{ChordSound, Genre, Key, LeadSound, MAX_BPM, MIN_BPM, Mode, Style};

/// Longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 1000;

/// Why a prompt cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromptError {
    #[error("the prompt has no words")]
    Empty,
    #[error("the prompt has {chars} characters; at most {max} are accepted")]
    TooLong { chars: usize, max: usize },
    #[error("tempo {bpm} bpm is outside {min}..={max} bpm")]
    Tempo { bpm: f32, min: f32, max: f32 },
}

/// The style a prompt asks for, with the genre template's defaults for what it
/// leaves open (tempo in the middle of the template's range, the template's key).
pub fn parse_prompt(prompt: &str) -> Result<Style, PromptError> {
    Ok(Intent::parse(prompt)?.resolve(None))
}

/// The style a track rendered from `prompt` with `seed` has: what the prompt says,
/// the rest (genre, tempo within the template's range, key, mode) chosen by the seed.
pub fn style_for(prompt: &str, seed: u64) -> Result<Style, PromptError> {
    Ok(Intent::parse(prompt)?.resolve(Some(seed)))
}

/// The parts a prompt can switch on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Drums,
    Bass,
    Chords,
    Pad,
    Lead,
    Arp,
    Texture,
}

/// A sound a prompt can ask for (which also switches its part on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sound {
    Chord(ChordSound),
    Lead(LeadSound),
}

/// What a prompt says, before the template and the seed fill the gaps.
#[derive(Debug, Clone, Default, PartialEq)]
struct Intent {
    genre: Option<Genre>,
    bpm: Option<f32>,
    root: Option<u8>,
    mode: Option<Mode>,
    mood_mode: Option<Mode>,
    energy_shift: f32,
    energy_words: bool,
    parts: Vec<(Part, bool)>,
    sounds: Vec<Sound>,
}

/// A word of the prompt, lowercased, and whether it began with a capital letter.
struct Word {
    text: String,
    capital: bool,
}

fn words(prompt: &str) -> Vec<Word> {
    prompt
        .split(|c: char| !(c.is_alphanumeric() || matches!(c, '#' | '-' | '.' | '♯' | '♭')))
        .map(|raw| raw.trim_matches(|c| c == '.' || c == '-'))
        .filter(|raw| !raw.is_empty())
        .map(|raw| Word {
            text: raw.to_lowercase().replace('♯', "#").replace('♭', "b"),
            capital: raw.starts_with(|c: char| c.is_uppercase()),
        })
        .collect()
}

impl Intent {
    fn parse(prompt: &str) -> Result<Self, PromptError> {
        let chars = prompt.chars().count();
        if chars > MAX_PROMPT_CHARS {
            return Err(PromptError::TooLong {
                chars,
                max: MAX_PROMPT_CHARS,
            });
        }
        let words = words(prompt);
        if words.is_empty() {
            return Err(PromptError::Empty);
        }
        let text = |i: usize| words.get(i).map_or("", |w| w.text.as_str());

        let mut intent = Intent::default();
        // Words left in which a "no" or "without" still applies.
        let mut negation = 0usize;
        let mut i = 0;
        while i < words.len() {
            let (word, next, previous) = (text(i), text(i + 1), text(i.wrapping_sub(1)));
            let mut used = 1;

            if let Some(bpm) = tempo(word, next) {
                intent.bpm = Some(bpm.value);
                used = bpm.words;
            } else if let Some(key) = key(&words, i) {
                intent.root.get_or_insert(key.root);
                if let Some(mode) = key.mode {
                    intent.mode.get_or_insert(mode);
                }
                used = key.words;
            } else if let Some(genre) = genre(word, next) {
                intent.genre.get_or_insert(genre.genre);
                used = genre.words;
            } else if let Some(mode) = mode_word(word) {
                intent.mode.get_or_insert(mode);
            }
            if let Some(mode) = mood(word) {
                intent.mood_mode = Some(mode);
            }
            if let Some(shift) = energy(word) {
                intent.energy_shift += shift;
                intent.energy_words = true;
            }
            if matches!(word, "no" | "without" | "minus") {
                negation = 3;
            }
            let (stem, less) = match word.strip_suffix("less") {
                Some(stem) if !stem.is_empty() => (stem, true),
                _ => (word, false),
            };
            if let Some((part, sound)) = instrument(stem, previous) {
                let on = !(less || negation > 0);
                intent.parts.push((part, on));
                if let (true, Some(sound)) = (on, sound) {
                    intent.sounds.push(sound);
                }
                negation = 0;
            }
            negation = negation.saturating_sub(1);
            i += used;
        }

        if let Some(bpm) = intent.bpm
            && !(MIN_BPM..=MAX_BPM).contains(&bpm)
        {
            return Err(PromptError::Tempo {
                bpm,
                min: MIN_BPM,
                max: MAX_BPM,
            });
        }
        Ok(intent)
    }

    fn resolve(&self, seed: Option<u64>) -> Style {
        let mut rng = seed.map(|seed| Rng::stream(seed, "style"));
        let shift = self.energy_shift.clamp(-0.5, 0.5);

        let genre = self.genre.unwrap_or_else(|| {
            let choices: &[Genre] = if shift < 0.0 {
                &[Genre::Lofi, Genre::Ambient]
            } else if shift > 0.0 {
                &[Genre::Techno, Genre::House, Genre::Synthwave]
            } else {
                &Genre::ALL
            };
            let picked = match rng.as_mut() {
                Some(rng) => rng.pick(choices),
                None => choices.first(),
            };
            picked.copied().unwrap_or(Genre::Lofi)
        });

        let bpm = self.bpm.unwrap_or_else(|| {
            let (low, high) = genre.bpm_range();
            let position = rng.as_mut().map_or(0.5, |rng| rng.unit()) + shift;
            (low + (high - low) * position.clamp(0.0, 1.0)).round()
        });

        let default_key = genre.default_key();
        let mode = self
            .mode
            .or(self.mood_mode)
            .unwrap_or_else(|| match rng.as_mut() {
                Some(rng) => {
                    if rng.chance(genre.minor_chance()) {
                        Mode::Minor
                    } else {
                        Mode::Major
                    }
                }
                None => default_key.mode,
            });
        let root = self.root.unwrap_or_else(|| match rng.as_mut() {
            Some(rng) => rng.below(12) as u8,
            None => default_key.root,
        });

        let jitter = match rng.as_mut() {
            Some(rng) => {
                if self.energy_words {
                    0.0
                } else {
                    rng.range(-0.06, 0.06)
                }
            }
            None => 0.0,
        };
        let energy = (genre.default_energy() + shift + jitter).clamp(0.0, 1.0);

        let mut instruments = genre.default_instruments();
        for sound in &self.sounds {
            match *sound {
                Sound::Chord(sound) => instruments.chord_sound = sound,
                Sound::Lead(sound) => instruments.lead_sound = sound,
            }
        }
        for &(part, on) in &self.parts {
            let slot = match part {
                Part::Drums => &mut instruments.drums,
                Part::Bass => &mut instruments.bass,
                Part::Chords => &mut instruments.chords,
                Part::Pad => &mut instruments.pad,
                Part::Lead => &mut instruments.lead,
                Part::Arp => &mut instruments.arp,
                Part::Texture => &mut instruments.texture,
            };
            *slot = on;
        }

        Style {
            genre,
            bpm,
            key: Key::new(root, mode),
            energy,
            instruments,
        }
    }
}

/// Something read from one or more words.
struct Read<T> {
    value: T,
    words: usize,
}

fn number(word: &str) -> Option<f32> {
    let plain = !word.is_empty()
        && word.chars().all(|c| c.is_ascii_digit() || c == '.')
        && word.chars().any(|c| c.is_ascii_digit());
    if plain { word.parse().ok() } else { None }
}

/// `80 bpm`, `80bpm`, `bpm 80` or `tempo 80`.
fn tempo(word: &str, next: &str) -> Option<Read<f32>> {
    if let Some(value) = number(word)
        && next == "bpm"
    {
        return Some(Read { value, words: 2 });
    }
    if let Some(value) = word.strip_suffix("bpm").and_then(number) {
        return Some(Read { value, words: 1 });
    }
    if matches!(word, "bpm" | "tempo")
        && let Some(value) = number(next)
    {
        return Some(Read { value, words: 2 });
    }
    None
}

struct KeyRead {
    root: u8,
    mode: Option<Mode>,
    words: usize,
}

fn letter_pitch(letter: char) -> Option<i8> {
    Some(match letter {
        'c' => 0,
        'd' => 2,
        'e' => 4,
        'f' => 5,
        'g' => 7,
        'a' => 9,
        'b' => 11,
        _ => return None,
    })
}

fn pitch(letter: i8, accidental: i8) -> u8 {
    (letter + accidental).rem_euclid(12) as u8
}

fn mode_word(word: &str) -> Option<Mode> {
    match word {
        "minor" | "min" | "m" | "moll" => Some(Mode::Minor),
        "major" | "maj" | "dur" => Some(Mode::Major),
        _ => None,
    }
}

/// A key starting at word `i`: a note (`a`, `c#`, `eb`, `b flat`) and a mode
/// word, or a note with its mode attached (`f#m`, `ebmin`, `cmaj`), or a note
/// alone when it cannot be an ordinary word (`Eb`, `F#`, or a capital `D`).
fn key(words: &[Word], i: usize) -> Option<KeyRead> {
    let word = words.get(i)?;
    let text = |k: usize| words.get(k).map_or("", |w| w.text.as_str());
    let mut chars = word.text.chars();
    let letter = letter_pitch(chars.next()?)?;
    let rest = chars.as_str();

    // The accidental: "#", "sharp", "b", "flat", attached or as the next word.
    let (accidental, remainder, mut used) = if rest.is_empty() {
        match text(i + 1) {
            "sharp" => (1, "", 2),
            "flat" => (-1, "", 2),
            _ => (0, "", 1),
        }
    } else if let Some(after) = rest
        .strip_prefix('#')
        .or_else(|| rest.strip_prefix("sharp"))
    {
        (1, after, 1)
    } else if let Some(after) = rest.strip_prefix("flat").or_else(|| rest.strip_prefix('b')) {
        (-1, after, 1)
    } else {
        (0, rest, 1)
    };
    let root = pitch(letter, accidental);

    if !remainder.is_empty() {
        // A mode attached to the note: "f#m", "ebmin", "am", "cmaj".
        let mode = mode_word(remainder)?;
        if word.text == "am" && !word.capital {
            // "am" is a word; "Am" is A minor.
            return None;
        }
        return Some(KeyRead {
            root,
            mode: Some(mode),
            words: used,
        });
    }
    if let Some(mode) = mode_word(text(i + used)) {
        used += 1;
        return Some(KeyRead {
            root,
            mode: Some(mode),
            words: used,
        });
    }
    let spelled_accidental = accidental != 0;
    let previous = if i == 0 { "" } else { text(i - 1) };
    let capital_letter = word.capital && word.text.len() == 1;
    let after_in = matches!(previous, "in" | "key");
    // A lone capital "A" is usually an article, so it needs "in A" or "key A".
    let lone_note = capital_letter && (word.text != "a" || after_in);
    if spelled_accidental || lone_note {
        return Some(KeyRead {
            root,
            mode: None,
            words: used,
        });
    }
    None
}

struct GenreRead {
    genre: Genre,
    words: usize,
}

fn genre(word: &str, next: &str) -> Option<GenreRead> {
    let two = |genre| Some(GenreRead { genre, words: 2 });
    match (word, next) {
        ("lo", "fi") => return two(Genre::Lofi),
        ("hip", "hop") => return two(Genre::Lofi),
        ("synth", "pop") => return two(Genre::Synthwave),
        _ => {}
    }
    let genre = match word {
        "lofi" | "lo-fi" | "chillhop" | "jazzhop" | "jazz" | "jazzy" | "hiphop" | "hip-hop"
        | "boombap" | "boom-bap" => Genre::Lofi,
        "techno" | "tekno" | "industrial" | "minimal" | "rave" | "warehouse" | "acid" => {
            Genre::Techno
        }
        "ambient" | "atmospheric" | "soundscape" | "meditation" | "ethereal" | "cinematic"
        | "space" | "new-age" | "drone" => Genre::Ambient,
        "house" | "disco" | "nu-disco" | "garage" | "dance" | "club" | "edm" => Genre::House,
        "synthwave" | "retrowave" | "outrun" | "80s" | "1980s" | "eighties" | "synthpop"
        | "synth-pop" | "vaporwave" | "darkwave" | "chillwave" | "retro" | "neon" => {
            Genre::Synthwave
        }
        _ => return None,
    };
    Some(GenreRead { genre, words: 1 })
}

/// The mode a mood word suggests.
fn mood(word: &str) -> Option<Mode> {
    match word {
        "dark" | "sad" | "moody" | "melancholic" | "melancholy" | "gloomy" | "somber"
        | "sombre" | "haunting" | "eerie" | "sinister" | "noir" | "lonely" => Some(Mode::Minor),
        "happy" | "bright" | "sunny" | "uplifting" | "joyful" | "cheerful" | "hopeful"
        | "summer" | "euphoric" => Some(Mode::Major),
        _ => None,
    }
}

/// How much an energy word moves the template's energy.
fn energy(word: &str) -> Option<f32> {
    Some(match word {
        "chill" | "calm" | "relaxed" | "relaxing" | "mellow" | "soft" | "sleepy" | "sleep"
        | "gentle" | "peaceful" | "quiet" | "lazy" | "dreamy" | "study" | "slow" | "soothing"
        | "tranquil" | "meditative" | "laid-back" | "laidback" | "cozy" | "cosy" => -0.2,
        "deep" | "smooth" | "late-night" => -0.08,
        "groovy" | "bouncy" | "punchy" => 0.1,
        "energetic" | "driving" | "hard" | "intense" | "upbeat" | "fast" | "aggressive"
        | "pumping" | "banging" | "peak" | "party" | "heavy" | "powerful" | "hype" | "raw" => 0.2,
        _ => return None,
    })
}

/// The part (and sound) an instrument word names; `previous` disambiguates "electric piano".
fn instrument(word: &str, previous: &str) -> Option<(Part, Option<Sound>)> {
    use ChordSound as C;
    use LeadSound as L;
    let chord = |sound| Some((Part::Chords, Some(Sound::Chord(sound))));
    let lead = |sound| Some((Part::Lead, Some(Sound::Lead(sound))));
    match word {
        "drums" | "drum" | "beat" | "beats" | "percussion" | "kick" | "kicks" | "groove"
        | "breakbeat" | "breaks" => Some((Part::Drums, None)),
        "bass" | "bassline" | "basslines" | "sub" | "subbass" | "808" => Some((Part::Bass, None)),
        "piano" | "pianos" if previous == "electric" => chord(C::ElectricPiano),
        "piano" | "pianos" => chord(C::Piano),
        "rhodes" | "wurlitzer" | "wurli" | "ep" | "e-piano" => chord(C::ElectricPiano),
        "organ" | "organs" => chord(C::Organ),
        "stab" | "stabs" => chord(C::Stab),
        "chords" | "keys" => Some((Part::Chords, None)),
        "pad" | "pads" | "strings" | "string" | "choir" | "drone" | "drones" => {
            Some((Part::Pad, None))
        }
        "flute" | "whistle" => lead(L::Soft),
        "bell" | "bells" | "chimes" | "glockenspiel" | "celesta" | "kalimba" => lead(L::Bell),
        "saw" | "saws" => lead(L::Saw),
        "pluck" | "plucks" | "guitar" | "harp" => lead(L::Pluck),
        "lead" | "melody" | "melodies" | "melodic" | "hook" => Some((Part::Lead, None)),
        "arp" | "arps" | "arpeggio" | "arpeggios" | "arpeggiated" | "sequence" | "sequencer"
        | "sequenced" => Some((Part::Arp, None)),
        "vinyl" | "crackle" | "hiss" | "tape" | "rain" | "noise" | "texture" | "dusty" | "wind" => {
            Some((Part::Texture, None))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(prompt: &str) -> Key {
        parse_prompt(prompt).unwrap().key
    }

    #[test]
    fn lofi_example_reads_genre_tempo_key_and_low_energy() {
        let style = parse_prompt("lofi chill 80 bpm A minor").unwrap();
        assert_eq!(style.genre, Genre::Lofi);
        assert_eq!(style.bpm, 80.0);
        assert_eq!(style.key, Key::new(9, Mode::Minor));
        assert_eq!(style.key.to_string(), "A minor");
        assert!(style.energy < Genre::Lofi.default_energy());
        assert!(style.instruments.drums && style.instruments.texture);
    }

    #[test]
    fn dark_techno_example_is_minor_driving_and_at_its_tempo() {
        let style = parse_prompt("dark techno 128 bpm").unwrap();
        assert_eq!(style.genre, Genre::Techno);
        assert_eq!(style.bpm, 128.0);
        assert_eq!(style.key.mode, Mode::Minor);
        assert!(style.energy >= 0.7);
        for seed in 0..20 {
            let seeded = style_for("dark techno 128 bpm", seed).unwrap();
            assert_eq!(seeded.key.mode, Mode::Minor, "seed {seed}");
            assert_eq!(seeded.bpm, 128.0);
        }
    }

    #[test]
    fn key_forms_are_understood() {
        assert_eq!(key_of("house C# major"), Key::new(1, Mode::Major));
        assert_eq!(key_of("house c# maj"), Key::new(1, Mode::Major));
        assert_eq!(key_of("synthwave F#m"), Key::new(6, Mode::Minor));
        assert_eq!(key_of("ambient Eb"), Key::new(3, Mode::Major));
        assert_eq!(key_of("techno in Bb min"), Key::new(10, Mode::Minor));
        assert_eq!(key_of("lofi b flat minor"), Key::new(10, Mode::Minor));
        assert_eq!(key_of("lofi Ebm"), Key::new(3, Mode::Minor));
        assert_eq!(key_of("lofi Bm"), Key::new(11, Mode::Minor));
        assert_eq!(key_of("lofi Am 85 bpm"), Key::new(9, Mode::Minor));
        assert_eq!(key_of("house in D"), Key::new(2, Mode::Major));
        assert_eq!(key_of("house in A"), Key::new(9, Mode::Major));
        assert_eq!(key_of("techno G♯ minor"), Key::new(8, Mode::Minor));
        assert_eq!(key_of("lofi minor").mode, Mode::Minor);
        assert_eq!(key_of("techno major").mode, Mode::Major);
    }

    #[test]
    fn ordinary_words_are_not_read_as_keys() {
        let template = parse_prompt("house").unwrap().key;
        assert_eq!(
            key_of("A house track, i am happy to be here").root,
            template.root
        );
        assert_eq!(key_of("a deep house track").root, template.root);
        assert_eq!(key_of("house a bed of dreams").root, template.root);
    }

    #[test]
    fn tempo_forms_are_understood() {
        assert_eq!(parse_prompt("house 124bpm").unwrap().bpm, 124.0);
        assert_eq!(parse_prompt("house bpm 121").unwrap().bpm, 121.0);
        assert_eq!(parse_prompt("lofi tempo 75").unwrap().bpm, 75.0);
        assert_eq!(parse_prompt("lofi 82.5 BPM").unwrap().bpm, 82.5);
        // A bare number is not a tempo.
        assert_eq!(
            parse_prompt("lofi 99").unwrap().bpm,
            parse_prompt("lofi").unwrap().bpm
        );
    }

    #[test]
    fn tempo_outside_forty_to_two_hundred_twenty_is_refused() {
        assert!(parse_prompt("ambient 40 bpm").is_ok());
        assert!(parse_prompt("techno 220 bpm").is_ok());
        assert_eq!(
            parse_prompt("lofi 39 bpm"),
            Err(PromptError::Tempo {
                bpm: 39.0,
                min: MIN_BPM,
                max: MAX_BPM
            })
        );
        assert!(matches!(
            parse_prompt("techno 300bpm"),
            Err(PromptError::Tempo { bpm, .. }) if bpm == 300.0
        ));
        assert!(matches!(
            parse_prompt("techno 0 bpm"),
            Err(PromptError::Tempo { .. })
        ));
    }

    #[test]
    fn unknown_words_are_ignored() {
        let plain = parse_prompt("ambient").unwrap();
        assert_eq!(
            parse_prompt("purple elephant ambient waterfall xyzzy").unwrap(),
            plain
        );
        assert_eq!(parse_prompt("ambient!!! (for real) ???").unwrap(), plain);
    }

    #[test]
    fn empty_and_oversized_prompts_are_refused() {
        assert_eq!(parse_prompt(""), Err(PromptError::Empty));
        assert_eq!(parse_prompt("   \t\n"), Err(PromptError::Empty));
        assert_eq!(parse_prompt("!!! ... ---"), Err(PromptError::Empty));
        let long = "lofi ".repeat(300);
        assert_eq!(
            parse_prompt(&long),
            Err(PromptError::TooLong {
                chars: 1500,
                max: MAX_PROMPT_CHARS
            })
        );
    }

    #[test]
    fn arbitrary_text_never_panics_and_always_parses_or_explains() {
        let pieces = [
            "a", "b", "#", "♭", "m", "min", "bpm", "120", "-", ".", "9.9.9", "lo", "fi", "no",
            "drums", "less", "ü", "ß", "İ", "🎵", "\u{0}", "  ", "\n", "c#m", "flat", "sharp",
            "tempo", "1e9",
        ];
        let mut rng = Rng::new(77);
        for _ in 0..5000 {
            let mut prompt = String::new();
            for _ in 0..rng.below(12) {
                prompt.push_str(rng.pick(&pieces).unwrap());
                if rng.chance(0.6) {
                    prompt.push(' ');
                }
            }
            match parse_prompt(&prompt) {
                Ok(style) => {
                    assert!((MIN_BPM..=MAX_BPM).contains(&style.bpm), "{prompt:?}");
                    assert!((0.0..=1.0).contains(&style.energy), "{prompt:?}");
                    assert!(style.key.root < 12, "{prompt:?}");
                }
                Err(PromptError::Empty | PromptError::Tempo { .. }) => {}
                Err(error) => panic!("{prompt:?}: {error}"),
            }
        }
    }

    #[test]
    fn genre_synonyms_pick_templates() {
        let genre = |prompt| parse_prompt(prompt).unwrap().genre;
        assert_eq!(genre("lo-fi hip hop beats"), Genre::Lofi);
        assert_eq!(genre("lo fi"), Genre::Lofi);
        assert_eq!(genre("warehouse acid"), Genre::Techno);
        assert_eq!(genre("atmospheric soundscape"), Genre::Ambient);
        assert_eq!(genre("nu-disco"), Genre::House);
        assert_eq!(genre("80s outrun"), Genre::Synthwave);
    }

    #[test]
    fn instrument_words_toggle_parts_and_sounds() {
        let style = parse_prompt("techno no drums with piano").unwrap();
        assert!(!style.instruments.drums);
        assert!(style.instruments.chords);
        assert_eq!(style.instruments.chord_sound, ChordSound::Piano);
        assert!(
            parse_prompt("ambient with beats")
                .unwrap()
                .instruments
                .drums
        );
        assert!(!parse_prompt("drumless house").unwrap().instruments.drums);
        assert!(
            !parse_prompt("lofi without the vinyl")
                .unwrap()
                .instruments
                .texture
        );
        let keys = parse_prompt("lofi electric piano and bells")
            .unwrap()
            .instruments;
        assert_eq!(keys.chord_sound, ChordSound::ElectricPiano);
        assert_eq!(keys.lead_sound, LeadSound::Bell);
        assert!(keys.lead);
        let organ = parse_prompt("house organ").unwrap().instruments;
        assert_eq!(organ.chord_sound, ChordSound::Organ);
    }

    #[test]
    fn energy_words_move_energy() {
        let plain = parse_prompt("house").unwrap().energy;
        assert!(parse_prompt("chill house").unwrap().energy < plain);
        assert!(parse_prompt("energetic driving house").unwrap().energy > plain);
        let calmest = parse_prompt("calm chill sleepy soft gentle ambient")
            .unwrap()
            .energy;
        assert!((0.0..=1.0).contains(&calmest));
    }

    #[test]
    fn seed_fills_what_the_prompt_leaves_open() {
        let (low, high) = Genre::Techno.bpm_range();
        let styles: Vec<Style> = (0..16)
            .map(|seed| style_for("techno", seed).unwrap())
            .collect();
        assert!(
            styles
                .iter()
                .all(|s| (low..=high).contains(&s.bpm) && s.genre == Genre::Techno)
        );
        assert!(styles.iter().any(|s| s.bpm != styles[0].bpm));
        assert!(styles.iter().any(|s| s.key != styles[0].key));
        assert_eq!(style_for("techno", 3), style_for("techno", 3));
        let fixed = style_for("techno 130 bpm D minor", 9).unwrap();
        assert_eq!((fixed.bpm, fixed.key), (130.0, Key::new(2, Mode::Minor)));
    }

    #[test]
    fn prompt_without_genre_follows_its_energy() {
        for seed in 0..16 {
            let calm = style_for("something chill to read to", seed).unwrap().genre;
            assert!(matches!(calm, Genre::Lofi | Genre::Ambient), "{calm}");
            let loud = style_for("energetic", seed).unwrap().genre;
            assert!(!matches!(loud, Genre::Lofi | Genre::Ambient), "{loud}");
        }
    }
}
