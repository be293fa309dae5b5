//! Tags from Symphonia's metadata revisions into [`MediaTags`].

use std::path::Path;

use symphonia::core::meta::{MetadataRevision, RawValue, StandardTag, Tag};

use super::MediaTags;

/// The longest tag value kept, in characters; longer ones are cut.
const MAX_TAG_CHARS: usize = 512;

/// Collects tags as revisions come in; a later revision's value wins.
#[derive(Debug, Default)]
pub(super) struct TagCollector {
    tags: MediaTags,
}

impl TagCollector {
    /// Takes the media-level tags of a revision and those of the given track.
    pub(super) fn add_revision(&mut self, revision: &MetadataRevision, track_id: u32) {
        let track_tags = revision
            .per_track
            .iter()
            .filter(|per_track| per_track.track_id == u64::from(track_id))
            .flat_map(|per_track| per_track.metadata.tags.iter());
        for tag in revision.media.tags.iter().chain(track_tags) {
            self.add_tag(tag);
        }
    }

    fn add_tag(&mut self, tag: &Tag) {
        let Some(standard) = &tag.std else {
            self.add_raw(&tag.raw.key, &tag.raw.value);
            return;
        };
        match standard {
            StandardTag::TrackTitle(value) => set(&mut self.tags.title, value),
            StandardTag::Artist(value) => set_option(&mut self.tags.artist, value),
            StandardTag::AlbumArtist(value) if self.tags.artist.is_none() => {
                set_option(&mut self.tags.artist, value)
            }
            StandardTag::Album(value) => set_option(&mut self.tags.album, value),
            StandardTag::Genre(value) => set_option(&mut self.tags.genre, value),
            StandardTag::ReleaseDate(value) | StandardTag::RecordingDate(value) => {
                set_option(&mut self.tags.date, value)
            }
            StandardTag::ReleaseYear(year) | StandardTag::RecordingYear(year)
                if self.tags.date.is_none() =>
            {
                self.tags.date = Some(year.to_string());
            }
            StandardTag::TrackNumber(number) => self.tags.track_number = Some(*number),
            _ => {}
        }
    }

    /// Tags a reader left without a standard meaning (RIFF INFO keys, for one).
    fn add_raw(&mut self, key: &str, value: &RawValue) {
        let RawValue::String(value) = value else {
            return;
        };
        match key.to_ascii_uppercase().as_str() {
            "INAM" | "TITLE" => set(&mut self.tags.title, value),
            "IART" | "ARTIST" => set_option(&mut self.tags.artist, value),
            "IPRD" | "ALBUM" => set_option(&mut self.tags.album, value),
            "IGNR" | "GENRE" => set_option(&mut self.tags.genre, value),
            "ICRD" | "DATE" => set_option(&mut self.tags.date, value),
            _ => {}
        }
    }

    /// The tags found, the title falling back to the stem of `name`.
    pub(super) fn finish(mut self, name: &Path) -> MediaTags {
        if self.tags.title.is_empty() {
            self.tags.title = name
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        self.tags
    }
}

fn clean(value: &str) -> Option<String> {
    let trimmed = value.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if trimmed.is_empty() {
        None
    } else {
        Some(trimmed.chars().take(MAX_TAG_CHARS).collect())
    }
}

fn set(field: &mut String, value: &str) {
    if let Some(value) = clean(value) {
        *field = value;
    }
}

fn set_option(field: &mut Option<String>, value: &str) {
    if let Some(value) = clean(value) {
        *field = Some(value);
    }
}
