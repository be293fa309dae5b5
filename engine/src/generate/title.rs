//! Track titles: a few words in the genre's mood, chosen by the seed.

use super::rng::Rng;
use super::style::{Genre, Style};

fn words(genre: Genre) -> (&'static [&'static str], &'static [&'static str]) {
    match genre {
        Genre::Lofi => (
            &[
                "Rainy", "Sleepy", "Dusty", "Paper", "Coffee", "Sunday", "Lazy", "Faded", "Quiet",
                "Velvet", "Cozy", "Late",
            ],
            &[
                "Window",
                "Notebook",
                "Afternoon",
                "Rooftop",
                "Tapes",
                "Polaroids",
                "Streetlights",
                "Library",
                "Balcony",
                "Letters",
                "Clouds",
                "Daydream",
            ],
        ),
        Genre::Techno => (
            &[
                "Concrete", "Black", "Iron", "Hollow", "Electric", "Cold", "Static", "Binary",
                "Carbon", "Infinite", "Red", "Heavy",
            ],
            &[
                "Pulse",
                "Machine",
                "Tunnel",
                "Circuit",
                "Signal",
                "Voltage",
                "Bunker",
                "Grid",
                "System",
                "Warehouse",
                "Frequency",
                "Engine",
            ],
        ),
        Genre::Ambient => (
            &[
                "Glacial",
                "Distant",
                "Still",
                "Slow",
                "Pale",
                "Boundless",
                "Weightless",
                "Silver",
                "Hidden",
                "Drifting",
                "Endless",
                "Soft",
            ],
            &[
                "Horizon",
                "Tide",
                "Meadow",
                "Aurora",
                "Fog",
                "Orbit",
                "Reflections",
                "Snowfall",
                "Lagoon",
                "Light",
                "Silence",
                "Bloom",
            ],
        ),
        Genre::House => (
            &[
                "Golden", "Sunset", "Velvet", "Deep", "Warm", "Summer", "Midnight", "Disco",
                "Crystal", "Lucky", "Sweet", "Higher",
            ],
            &[
                "Groove",
                "Feeling",
                "Boulevard",
                "Heat",
                "Motion",
                "Lights",
                "Paradise",
                "Weekend",
                "Dancer",
                "Fever",
                "Soul",
                "Love",
            ],
        ),
        Genre::Synthwave => (
            &[
                "Neon", "Chrome", "Midnight", "Electric", "Retro", "Laser", "Crimson", "Turbo",
                "Digital", "Violet", "Lost", "Night",
            ],
            &[
                "Highway",
                "Skyline",
                "Drive",
                "Arcade",
                "Runner",
                "Sunset",
                "Boulevard",
                "Dreams",
                "Coast",
                "Pulse",
                "City",
                "Memory",
            ],
        ),
    }
}

/// A title for a track in `style` rendered from `seed`, e.g. "Midnight Static".
pub(crate) fn title(style: &Style, seed: u64) -> String {
    let mut rng = Rng::stream(seed, "title");
    let (adjectives, nouns) = words(style.genre);
    let adjective = rng.pick(adjectives).copied().unwrap_or("Quiet");
    let noun = rng.pick(nouns).copied().unwrap_or("Signal");
    let other = nouns
        .iter()
        .copied()
        .cycle()
        .skip(rng.below(nouns.len()))
        .find(|n| *n != noun)
        .unwrap_or("Dreams");
    let roll = rng.unit();
    if roll < 0.6 {
        format!("{adjective} {noun}")
    } else if roll < 0.75 {
        format!("The {adjective} {noun}")
    } else if roll < 0.87 {
        format!("{noun} of {other}")
    } else {
        let mode = match style.key.mode {
            super::style::Mode::Major => "Major",
            super::style::Mode::Minor => "Minor",
        };
        let key = style.key.to_string();
        let tonic = key.split(' ').next().unwrap_or("C");
        format!("{noun} in {tonic} {mode}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::prompt::style_for;

    #[test]
    fn titles_are_stable_and_vary_with_the_seed() {
        let style = style_for("synthwave", 1).unwrap();
        assert_eq!(title(&style, 42), title(&style, 42));
        let titles: std::collections::BTreeSet<String> =
            (0..40).map(|seed| title(&style, seed)).collect();
        assert!(titles.len() > 20, "{titles:?}");
        for title in &titles {
            let words: Vec<&str> = title.split(' ').collect();
            assert!((2..=4).contains(&words.len()), "{title}");
            assert!(words.windows(2).all(|w| w[0] != w[1]), "{title}");
        }
    }
}
