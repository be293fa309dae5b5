//! Named playlists: what they hold, how they rotate, and where they are kept.
//!
//! A playlist is a list of items, each a generator prompt or a file of the media
//! library, played in one of three rotations. Playlists are kept in
//! `server.data_dir/playlists.json` (rewritten whole through a temporary file and a
//! rename, so a crash leaves the old or the new file, never half of one). Every
//! station's configured prompts form a built-in playlist named after the station,
//! refreshed from the config at every start.
//!
//! The store also knows which station plays which playlist, so that a playlist on
//! air cannot be deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::config::StationConfig;

/// File name of the store under `server.data_dir`.
pub const PLAYLISTS_FILE: &str = "playlists.json";
/// Longest playlist name.
const MAX_NAME_LEN: usize = 64;
/// Most items in one playlist.
pub const MAX_ITEMS: usize = 1000;
/// Longest prompt, in bytes.
const MAX_PROMPT_LEN: usize = 500;
/// Shortest and longest length of a generated item, in seconds.
pub const ITEM_SECONDS: std::ops::RangeInclusive<f32> = 1.0..=1200.0;
/// Crossfade override range, in milliseconds.
pub const CROSSFADE_MS: std::ops::RangeInclusive<u32> = 0..=30_000;
/// Largest weight of an item.
const MAX_WEIGHT: f64 = 1_000_000.0;

/// How a playlist picks its next item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RotationMode {
    /// In order, then from the top.
    #[default]
    Sequential,
    /// A new random order every pass; a pass never starts with the item that ended
    /// the previous one (when the playlist has more than one).
    Shuffle,
    /// Each pick at random, in proportion to the items' weights.
    Weighted,
}

/// One entry of a playlist: a generator prompt or a media file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaylistItem {
    /// Generator prompt (exclusive with `file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 500)]
    pub prompt: Option<String>,
    /// Length of the generated track in seconds (1..=1200); absent: the station's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1200)]
    pub seconds: Option<f32>,
    /// Seed of the generated track; absent: a new one every play.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = "uint64", minimum = 0, maximum = 18446744073709551615_u64)]
    pub seed: Option<u64>,
    /// Media library id of a file to play (exclusive with `prompt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Crossfade from this item into the next, in milliseconds (0..=30000); absent:
    /// the station's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 30000)]
    pub crossfade_ms: Option<u32>,
    /// Weight in weighted rotation (greater than 0; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 1000000)]
    pub weight: Option<f64>,
}

/// What an item plays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ItemSource<'a> {
    Prompt {
        prompt: &'a str,
        seconds: Option<f32>,
        seed: Option<u64>,
    },
    File {
        media_id: &'a str,
    },
}

impl PlaylistItem {
    /// A generator prompt with the station's length and a new seed every play.
    pub fn prompt(prompt: impl Into<String>) -> Self {
        Self {
            prompt: Some(prompt.into()),
            seconds: None,
            seed: None,
            file: None,
            crossfade_ms: None,
            weight: None,
        }
    }

    /// What the item plays; call on validated items only (a prompt wins otherwise).
    pub fn source(&self) -> ItemSource<'_> {
        match (&self.prompt, &self.file) {
            (Some(prompt), _) => ItemSource::Prompt {
                prompt,
                seconds: self.seconds,
                seed: self.seed,
            },
            (None, Some(media_id)) => ItemSource::File { media_id },
            (None, None) => ItemSource::Prompt {
                prompt: "",
                seconds: self.seconds,
                seed: self.seed,
            },
        }
    }

    /// The item's weight in weighted rotation.
    pub fn weight(&self) -> f64 {
        self.weight.unwrap_or(1.0)
    }

    /// Checks the item; `field` prefixes the names in errors (like `items[2]`).
    /// `media_exists` answers whether a media id is in the library.
    pub fn validate(
        &self,
        field: &str,
        media_exists: &dyn Fn(&str) -> bool,
    ) -> Result<(), PlaylistError> {
        let invalid = |name: &str, message: String| PlaylistError::Invalid {
            field: if field.is_empty() {
                name.to_string()
            } else {
                format!("{field}.{name}")
            },
            message,
        };
        match (&self.prompt, &self.file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "file",
                    "an item is either a prompt or a file, not both".into(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "prompt",
                    "an item needs a `prompt` or a `file`".into(),
                ));
            }
            (Some(prompt), None) => {
                if prompt.trim().is_empty() {
                    return Err(invalid("prompt", "must not be empty".into()));
                }
                if prompt.len() > MAX_PROMPT_LEN {
                    return Err(invalid(
                        "prompt",
                        format!("longer than {MAX_PROMPT_LEN} bytes"),
                    ));
                }
            }
            (None, Some(media_id)) => {
                if self.seconds.is_some() || self.seed.is_some() {
                    let key = if self.seconds.is_some() {
                        "seconds"
                    } else {
                        "seed"
                    };
                    return Err(invalid(key, "only prompt items take it".into()));
                }
                if !media_exists(media_id) {
                    return Err(invalid(
                        "file",
                        format!("no media `{media_id}` in the library"),
                    ));
                }
            }
        }
        if let Some(seconds) = self.seconds
            && !ITEM_SECONDS.contains(&seconds)
        {
            return Err(invalid(
                "seconds",
                format!("{seconds} is outside 1..=1200 seconds"),
            ));
        }
        if let Some(crossfade) = self.crossfade_ms
            && !CROSSFADE_MS.contains(&crossfade)
        {
            return Err(invalid(
                "crossfade_ms",
                format!("{crossfade} is outside 0..=30000 milliseconds"),
            ));
        }
        if let Some(weight) = self.weight
            && !(weight.is_finite() && weight > 0.0 && weight <= MAX_WEIGHT)
        {
            return Err(invalid(
                "weight",
                format!("{weight} must be greater than 0 and at most {MAX_WEIGHT}"),
            ));
        }
        Ok(())
    }
}

/// A playlist as clients send it (`POST` names it in the body, `PUT` in the path).
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaylistInput {
    /// 1 to 64 ASCII letters, digits, '-', '_' or '.' (not first); required by `POST`.
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub name: Option<String>,
    #[serde(default)]
    pub rotation: RotationMode,
    #[schema(min_items = 1, max_items = 1000)]
    pub items: Vec<PlaylistItem>,
}

/// A stored playlist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Playlist {
    pub name: String,
    pub rotation: RotationMode,
    pub items: Vec<PlaylistItem>,
    /// Made from a station's config; refreshed from it at every start.
    #[serde(default)]
    pub built_in: bool,
    /// Changes with every update of the playlist (the store's counter).
    #[serde(default)]
    pub revision: u64,
}

impl Playlist {
    /// Checks `input` and makes a playlist named `name` of it.
    pub fn from_input(
        name: &str,
        input: PlaylistInput,
        media_exists: &dyn Fn(&str) -> bool,
    ) -> Result<Self, PlaylistError> {
        validate_name(name)?;
        if input.items.is_empty() {
            return Err(PlaylistError::Invalid {
                field: "items".into(),
                message: "a playlist needs at least one item".into(),
            });
        }
        if input.items.len() > MAX_ITEMS {
            return Err(PlaylistError::Invalid {
                field: "items".into(),
                message: format!("more than {MAX_ITEMS} items"),
            });
        }
        for (index, item) in input.items.iter().enumerate() {
            item.validate(&format!("items[{index}]"), media_exists)?;
        }
        Ok(Self {
            name: name.to_string(),
            rotation: input.rotation,
            items: input.items,
            built_in: false,
            revision: 0,
        })
    }

    /// The built-in playlist of a station: its configured prompts, in order.
    pub fn of_station(station: &StationConfig) -> Self {
        Self {
            name: station.id.clone(),
            rotation: RotationMode::Sequential,
            items: station
                .playlist
                .iter()
                .map(|prompt| PlaylistItem::prompt(prompt.clone()))
                .collect(),
            built_in: true,
            revision: 0,
        }
    }
}

/// Checks a playlist name: 1 to 64 ASCII letters, digits, '-', '_' or '.'.
pub fn validate_name(name: &str) -> Result<(), PlaylistError> {
    let message = if name.is_empty() {
        "must not be empty"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 64 characters"
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        "only ASCII letters, digits, '-', '_' and '.' (not first) are allowed"
    } else {
        return Ok(());
    };
    Err(PlaylistError::Invalid {
        field: "name".into(),
        message: message.into(),
    })
}

/// What went wrong with a playlist operation.
#[derive(Debug, thiserror::Error)]
pub enum PlaylistError {
    #[error("invalid `{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("no playlist `{0}`")]
    NotFound(String),
    #[error("a playlist `{0}` exists already")]
    Exists(String),
    #[error("playlist `{name}` is on air on station `{station}`")]
    InUse { name: String, station: String },
    #[error("cannot write the playlists to {path}: {source}")]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the playlists from {path}: {message}")]
    Load { path: PathBuf, message: String },
}

#[derive(Debug, Default)]
struct StoreState {
    playlists: BTreeMap<String, Arc<Playlist>>,
    /// The playlist each station plays, by station id.
    in_use: BTreeMap<String, String>,
    /// Bumped by every change; a playlist's revision is the counter at its change.
    revision: u64,
    /// When each playlist was last touched (created, changed, swapped to or from),
    /// by the same counter: the most recent are kept ready for swaps.
    touched: BTreeMap<String, u64>,
}

/// The playlists of the process, shared by the API and every station.
#[derive(Debug)]
pub struct PlaylistStore {
    /// `None`: kept in memory only (tests).
    path: Option<PathBuf>,
    state: Mutex<StoreState>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredFile {
    playlists: Vec<Playlist>,
}

impl PlaylistStore {
    /// A store in memory only, with the stations' built-in playlists.
    pub fn in_memory(stations: &[StationConfig]) -> Self {
        let store = Self {
            path: None,
            state: Mutex::new(StoreState::default()),
        };
        store.add_built_ins(stations);
        store
    }

    /// Loads `data_dir/playlists.json` (absent: none yet), then refreshes the
    /// stations' built-in playlists and the stations' starting playlists.
    pub fn open(data_dir: &Path, stations: &[StationConfig]) -> Result<Self, PlaylistError> {
        let path = data_dir.join(PLAYLISTS_FILE);
        let mut state = StoreState::default();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: StoredFile =
                    serde_json::from_slice(&bytes).map_err(|error| PlaylistError::Load {
                        path: path.clone(),
                        message: error.to_string(),
                    })?;
                for playlist in stored.playlists {
                    state.revision = state.revision.max(playlist.revision);
                    state
                        .playlists
                        .insert(playlist.name.clone(), Arc::new(playlist));
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(PlaylistError::Load {
                    path,
                    message: error.to_string(),
                });
            }
        }
        let store = Self {
            path: Some(path),
            state: Mutex::new(state),
        };
        store.add_built_ins(stations);
        store.persist(&store.lock())?;
        Ok(store)
    }

    fn add_built_ins(&self, stations: &[StationConfig]) {
        let mut state = self.lock();
        for station in stations {
            if !station.playlist.is_empty() {
                state.revision += 1;
                let mut playlist = Playlist::of_station(station);
                playlist.revision = state.revision;
                state
                    .playlists
                    .insert(playlist.name.clone(), Arc::new(playlist));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every playlist, by name.
    pub fn list(&self) -> Vec<Arc<Playlist>> {
        self.lock().playlists.values().cloned().collect()
    }

    /// The playlist `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Playlist>> {
        self.lock().playlists.get(name).cloned()
    }

    /// Adds a new playlist; refuses a name in use.
    pub fn create(&self, playlist: Playlist) -> Result<Arc<Playlist>, PlaylistError> {
        let mut state = self.lock();
        if state.playlists.contains_key(&playlist.name) {
            return Err(PlaylistError::Exists(playlist.name));
        }
        self.store(&mut state, playlist)
    }

    /// Replaces the playlist of the same name; it must exist.
    pub fn replace(&self, playlist: Playlist) -> Result<Arc<Playlist>, PlaylistError> {
        let mut state = self.lock();
        if !state.playlists.contains_key(&playlist.name) {
            return Err(PlaylistError::NotFound(playlist.name));
        }
        self.store(&mut state, playlist)
    }

    fn store(
        &self,
        state: &mut StoreState,
        mut playlist: Playlist,
    ) -> Result<Arc<Playlist>, PlaylistError> {
        state.revision += 1;
        playlist.revision = state.revision;
        let name = playlist.name.clone();
        let playlist = Arc::new(playlist);
        let previous = state.playlists.insert(name.clone(), Arc::clone(&playlist));
        if let Err(error) = self.persist(state) {
            match previous {
                Some(previous) => state.playlists.insert(name, previous),
                None => state.playlists.remove(&name),
            };
            return Err(error);
        }
        let revision = state.revision;
        state.touched.insert(name, revision);
        Ok(playlist)
    }

    /// Deletes a playlist no station plays.
    pub fn delete(&self, name: &str) -> Result<(), PlaylistError> {
        let mut state = self.lock();
        if let Some((station, _)) = state.in_use.iter().find(|(_, playing)| *playing == name) {
            return Err(PlaylistError::InUse {
                name: name.to_string(),
                station: station.clone(),
            });
        }
        let Some(removed) = state.playlists.remove(name) else {
            return Err(PlaylistError::NotFound(name.to_string()));
        };
        if let Err(error) = self.persist(&state) {
            state.playlists.insert(name.to_string(), removed);
            return Err(error);
        }
        state.touched.remove(name);
        Ok(())
    }

    /// Records that `station` plays `name` from now on and returns the playlist.
    pub fn claim(&self, station: &str, name: &str) -> Result<Arc<Playlist>, PlaylistError> {
        let mut state = self.lock();
        let playlist = state
            .playlists
            .get(name)
            .cloned()
            .ok_or_else(|| PlaylistError::NotFound(name.to_string()))?;
        state.revision += 1;
        let revision = state.revision;
        if let Some(previous) = state.in_use.insert(station.to_string(), name.to_string()) {
            state.touched.insert(previous, revision);
        }
        state.touched.insert(name.to_string(), revision);
        Ok(playlist)
    }

    /// Adds the built-in playlist of a station added while the engine runs (a left
    /// over built-in playlist of the same name is replaced); refuses when an operator's
    /// playlist has the station's id as its name.
    pub fn add_station(&self, station: &StationConfig) -> Result<(), PlaylistError> {
        let mut state = self.lock();
        if state
            .playlists
            .get(&station.id)
            .is_some_and(|existing| !existing.built_in)
        {
            return Err(PlaylistError::Exists(station.id.clone()));
        }
        self.store(&mut state, Playlist::of_station(station))
            .map(drop)
    }

    /// Forgets a removed station: it plays nothing, and its built-in playlist goes
    /// unless another station plays it.
    pub fn remove_station(&self, station: &str) -> Result<(), PlaylistError> {
        let mut state = self.lock();
        state.in_use.remove(station);
        let built_in = state
            .playlists
            .get(station)
            .is_some_and(|playlist| playlist.built_in);
        let played_elsewhere = state.in_use.values().any(|name| name == station);
        if !built_in || played_elsewhere {
            return Ok(());
        }
        let Some(removed) = state.playlists.remove(station) else {
            return Ok(());
        };
        if let Err(error) = self.persist(&state) {
            state.playlists.insert(station.to_string(), removed);
            return Err(error);
        }
        state.touched.remove(station);
        Ok(())
    }

    /// The playlist `station` plays.
    pub fn playing(&self, station: &str) -> Option<String> {
        self.lock().in_use.get(station).cloned()
    }

    /// Up to `count` playlists other than `except`, most recently touched first:
    /// those a swap is most likely to go to.
    pub fn most_recent(&self, except: &str, count: usize) -> Vec<Arc<Playlist>> {
        let state = self.lock();
        let mut names: Vec<(&String, u64)> = state
            .playlists
            .keys()
            .filter(|name| name.as_str() != except)
            .map(|name| (name, state.touched.get(name).copied().unwrap_or(0)))
            .collect();
        names.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        names
            .into_iter()
            .take(count)
            .filter_map(|(name, _)| state.playlists.get(name).cloned())
            .collect()
    }

    /// Writes every playlist to the file: a temporary file, synced, renamed over it.
    fn persist(&self, state: &StoreState) -> Result<(), PlaylistError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let persist_error = |source| PlaylistError::Persist {
            path: path.clone(),
            source,
        };
        let stored = StoredFile {
            playlists: state.playlists.values().map(|p| (**p).clone()).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&stored)
            .map_err(|error| persist_error(std::io::Error::other(error)))?;
        crate::files::write_atomically(path, &bytes).map_err(persist_error)
    }
}

/// SplitMix64: a small, good, seedable generator for rotations.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound.max(1) as u64) as usize
    }

    /// Uniform in `0.0..1.0`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where a station is in a playlist's rotation.
#[derive(Debug, Clone)]
pub struct Rotation {
    mode: RotationMode,
    rng: SplitMix64,
    /// The current pass (shuffle), or unused.
    order: Vec<usize>,
    /// Next position in the pass (shuffle) or the playlist (sequential).
    position: usize,
    /// The item picked last.
    last: Option<usize>,
}

impl Rotation {
    pub fn new(mode: RotationMode, seed: u64) -> Self {
        Self {
            mode,
            rng: SplitMix64::new(seed),
            order: Vec::new(),
            position: 0,
            last: None,
        }
    }

    /// Index of the next item of `playlist` (which may have changed since the last
    /// pick: a shorter one starts a new pass); `None` for an empty playlist.
    pub fn next(&mut self, playlist: &Playlist) -> Option<usize> {
        let count = playlist.items.len();
        if count == 0 {
            return None;
        }
        if playlist.rotation != self.mode {
            self.mode = playlist.rotation;
            self.order.clear();
            self.position = 0;
        }
        let index = match self.mode {
            RotationMode::Sequential => {
                let index = self.position % count;
                self.position = index + 1;
                index
            }
            RotationMode::Shuffle => {
                if self.position >= self.order.len() || self.order.len() != count {
                    self.new_pass(count);
                }
                let index = self.order[self.position];
                self.position += 1;
                index
            }
            RotationMode::Weighted => {
                let total: f64 = playlist.items.iter().map(PlaylistItem::weight).sum();
                let mut target = self.rng.unit() * total;
                let mut chosen = count - 1;
                for (index, item) in playlist.items.iter().enumerate() {
                    target -= item.weight();
                    if target < 0.0 {
                        chosen = index;
                        break;
                    }
                }
                chosen
            }
        };
        self.last = Some(index);
        Some(index)
    }

    /// A new random order (Fisher-Yates) that does not start with the last item.
    fn new_pass(&mut self, count: usize) {
        self.order.clear();
        self.order.extend(0..count);
        for i in (1..count).rev() {
            let j = self.rng.below(i + 1);
            self.order.swap(i, j);
        }
        if count > 1 && self.last == Some(self.order[0]) {
            let other = 1 + self.rng.below(count - 1);
            self.order.swap(0, other);
        }
        self.position = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playlist(rotation: RotationMode, items: usize) -> Playlist {
        Playlist {
            name: "test".into(),
            rotation,
            items: (0..items)
                .map(|i| PlaylistItem::prompt(format!("lofi {i}")))
                .collect(),
            built_in: false,
            revision: 1,
        }
    }

    fn no_media(_: &str) -> bool {
        false
    }

    #[test]
    fn sequential_rotation_plays_in_order_and_wraps() {
        let playlist = playlist(RotationMode::Sequential, 3);
        let mut rotation = Rotation::new(RotationMode::Sequential, 1);
        let picks: Vec<usize> = (0..7).filter_map(|_| rotation.next(&playlist)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn shuffle_plays_every_item_once_per_pass_without_repeating_across_passes() {
        let playlist = playlist(RotationMode::Shuffle, 5);
        for seed in 0..200 {
            let mut rotation = Rotation::new(RotationMode::Shuffle, seed);
            let picks: Vec<usize> = (0..50).filter_map(|_| rotation.next(&playlist)).collect();
            for pass in picks.chunks(5) {
                let mut sorted = pass.to_vec();
                sorted.sort_unstable();
                assert_eq!(sorted, vec![0, 1, 2, 3, 4], "seed {seed}: {picks:?}");
            }
            for pair in picks.windows(2) {
                assert_ne!(pair[0], pair[1], "seed {seed}: repeat in {picks:?}");
            }
        }
    }

    #[test]
    fn shuffle_is_deterministic_from_its_seed() {
        let playlist = playlist(RotationMode::Shuffle, 8);
        let picks = |seed| {
            let mut rotation = Rotation::new(RotationMode::Shuffle, seed);
            (0..16)
                .filter_map(|_| rotation.next(&playlist))
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(9), picks(9));
        assert_ne!(picks(9), picks(10));
    }

    #[test]
    fn weighted_rotation_follows_the_weights() {
        let mut playlist = playlist(RotationMode::Weighted, 3);
        playlist.items[0].weight = Some(1.0);
        playlist.items[1].weight = Some(3.0);
        playlist.items[2].weight = Some(6.0);
        let mut rotation = Rotation::new(RotationMode::Weighted, 77);
        let mut counts = [0usize; 3];
        for _ in 0..10_000 {
            counts[rotation.next(&playlist).unwrap()] += 1;
        }
        let shares: Vec<f64> = counts.iter().map(|c| *c as f64 / 10_000.0).collect();
        for (share, expected) in shares.iter().zip([0.1, 0.3, 0.6]) {
            assert!((share - expected).abs() < 0.03, "shares {shares:?}");
        }
    }

    #[test]
    fn a_shorter_playlist_restarts_the_shuffle_pass() {
        let mut playlist = playlist(RotationMode::Shuffle, 6);
        let mut rotation = Rotation::new(RotationMode::Shuffle, 3);
        rotation.next(&playlist);
        playlist.items.truncate(2);
        for _ in 0..10 {
            assert!(rotation.next(&playlist).unwrap() < 2);
        }
    }

    fn input(json: &str) -> PlaylistInput {
        serde_json::from_str(json).unwrap()
    }

    fn field_of(result: Result<Playlist, PlaylistError>) -> String {
        match result {
            Err(PlaylistError::Invalid { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        let ok = r#"{"items": [{"prompt": "lofi"}]}"#;
        assert!(Playlist::from_input("morning-show_2", input(ok), &no_media).is_ok());
        assert_eq!(
            field_of(Playlist::from_input("", input(ok), &no_media)),
            "name"
        );
        assert_eq!(
            field_of(Playlist::from_input("bad name!", input(ok), &no_media)),
            "name"
        );
        let cases = [
            (r#"{"items": []}"#, "items"),
            (r#"{"items": [{"weight": 2}]}"#, "items[0].prompt"),
            (
                r#"{"items": [{"prompt": "a"}, {"prompt": "b", "file": "x"}]}"#,
                "items[1].file",
            ),
            (r#"{"items": [{"file": "nope"}]}"#, "items[0].file"),
            (
                r#"{"items": [{"prompt": "a", "seconds": 0.5}]}"#,
                "items[0].seconds",
            ),
            (
                r#"{"items": [{"prompt": "a", "seconds": 5000}]}"#,
                "items[0].seconds",
            ),
            (
                r#"{"items": [{"prompt": "a", "weight": 0}]}"#,
                "items[0].weight",
            ),
            (
                r#"{"items": [{"prompt": "a", "weight": -1}]}"#,
                "items[0].weight",
            ),
            (
                r#"{"items": [{"prompt": "a", "crossfade_ms": 30001}]}"#,
                "items[0].crossfade_ms",
            ),
            (r#"{"items": [{"prompt": "  "}]}"#, "items[0].prompt"),
        ];
        for (json, field) in cases {
            assert_eq!(
                field_of(Playlist::from_input("x", input(json), &no_media)),
                field,
                "{json}"
            );
        }
        let with_file = r#"{"items": [{"file": "abc", "crossfade_ms": 0}]}"#;
        assert!(Playlist::from_input("x", input(with_file), &|id| id == "abc").is_ok());
    }

    fn station(id: &str, prompts: &[&str]) -> StationConfig {
        let text = format!(
            "[[stations]]\nid = \"{id}\"\nname = \"n\"\nplaylist = [{}]\n",
            prompts
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        crate::config::Config::parse(&text, "test.toml")
            .unwrap()
            .stations
            .remove(0)
    }

    #[test]
    fn the_store_persists_and_refreshes_built_ins() {
        let dir = tempfile::tempdir().unwrap();
        let stations = vec![station("main", &["lofi"])];
        let store = PlaylistStore::open(dir.path(), &stations).unwrap();
        assert!(store.get("main").unwrap().built_in);
        let evening = Playlist::from_input(
            "evening",
            input(r#"{"rotation": "shuffle", "items": [{"prompt": "ambient", "seed": 4}]}"#),
            &no_media,
        )
        .unwrap();
        store.create(evening.clone()).unwrap();
        assert!(matches!(
            store.create(evening),
            Err(PlaylistError::Exists(_))
        ));
        drop(store);
        let stations = vec![station("main", &["techno", "house"])];
        let store = PlaylistStore::open(dir.path(), &stations).unwrap();
        let evening = store.get("evening").unwrap();
        assert_eq!(evening.rotation, RotationMode::Shuffle);
        assert_eq!(evening.items[0].seed, Some(4));
        assert_eq!(store.get("main").unwrap().items.len(), 2, "config wins");
        assert!(!dir.path().join("playlists.json.partial").exists());
    }

    #[test]
    fn stations_added_and_removed_bring_and_take_their_built_in_playlist() {
        let dir = tempfile::tempdir().unwrap();
        let store = PlaylistStore::open(dir.path(), &[station("main", &["lofi"])]).unwrap();
        store.add_station(&station("night", &["ambient"])).unwrap();
        assert!(store.get("night").unwrap().built_in);
        let reopened = PlaylistStore::open(dir.path(), &[]).unwrap();
        assert!(reopened.get("night").is_some(), "kept in the file");
        store.claim("night", "night").unwrap();
        store.claim("main", "night").unwrap();
        store.remove_station("night").unwrap();
        assert!(
            store.get("night").is_some(),
            "kept while another station plays it"
        );
        assert_eq!(store.playing("night"), None);
        store.claim("main", "main").unwrap();
        store.remove_station("night").unwrap();
        assert!(store.get("night").is_none());
        // An operator's playlist is never replaced by a station's built-in one.
        let jazz = Playlist::from_input(
            "jazz",
            input(r#"{"items": [{"prompt": "jazz"}]}"#),
            &no_media,
        )
        .unwrap();
        store.create(jazz).unwrap();
        assert!(matches!(
            store.add_station(&station("jazz", &["jazz trio"])),
            Err(PlaylistError::Exists(name)) if name == "jazz"
        ));
        assert!(!store.get("jazz").unwrap().built_in);
    }

    #[test]
    fn a_playlist_on_air_cannot_be_deleted() {
        let store = PlaylistStore::in_memory(&[station("main", &["lofi"])]);
        store.claim("main", "main").unwrap();
        assert!(matches!(
            store.delete("main"),
            Err(PlaylistError::InUse { station, .. }) if station == "main"
        ));
        assert!(matches!(
            store.delete("nothing"),
            Err(PlaylistError::NotFound(_))
        ));
    }

    #[test]
    fn recently_touched_playlists_come_first() {
        let store = PlaylistStore::in_memory(&[station("main", &["lofi"])]);
        for name in ["a", "b", "c"] {
            let playlist =
                Playlist::from_input(name, input(r#"{"items": [{"prompt": "x"}]}"#), &no_media)
                    .unwrap();
            store.create(playlist).unwrap();
        }
        store.claim("main", "main").unwrap();
        store.claim("main", "a").unwrap();
        let names: Vec<String> = store
            .most_recent("a", 2)
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(names, vec!["main", "c"]);
    }
}
