//! The media library: audio files operators upload or drop into a watched folder,
//! each decoded once on arrival (so a bad file is refused at the door) and listed in
//! a catalog that survives restarts.
//!
//! - Uploads are stored under the library directory as `<id>.<extension>`, where the
//!   id is [`content_id`] of the bytes: the same file uploaded twice is one entry.
//! - The watched folder (optional) is scanned every few seconds on its own thread:
//!   new and changed files are decoded and listed, removed ones are dropped. Its files
//!   stay where the operator put them; the API does not delete them.
//! - The catalog is `catalog.json` in the library directory, written to a temporary
//!   file and renamed over the old one, so a crash leaves the old or the new catalog,
//!   never half of one. At start, entries whose files are gone are dropped.
//!
//! Decoding is slow (seconds for a long file): call [`MediaLibrary::add_upload`] and
//! [`MediaLibrary::scan_watched`] off async threads (`web::block`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sonicforge_engine::media::{
    DecodeLimits, DecodedAudio, MediaError, MediaTags, content_id, decode_bytes, decode_file,
};
use thiserror::Error;

use crate::config::MediaConfig;

/// File extensions the library takes (lowercase).
pub const AUDIO_EXTENSIONS: &[&str] = &["wav", "flac", "mp3", "ogg", "oga"];

const CATALOG_FILE: &str = "catalog.json";

/// Where an entry's file lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaSource {
    /// Uploaded through the API; stored in the library directory.
    Upload,
    /// Found in the watched folder; the file stays there.
    Watched,
}

/// One file of the library, as the catalog and the API show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaEntry {
    /// Stable id: a hash of the file's content.
    pub id: String,
    /// The file's name as uploaded or found.
    pub file_name: String,
    /// Title, artist, album, ... from the file's tags.
    #[serde(flatten)]
    pub tags: MediaTags,
    /// Length of the audio in seconds.
    pub duration_seconds: f64,
    /// Container format ("wave", "flac", "mp3", "ogg").
    pub format: String,
    /// Codec ("pcm_s16le", "flac", "mp3", "vorbis", ...).
    pub codec: String,
    /// The file's own sample rate (it plays at 48 kHz).
    pub sample_rate: u32,
    /// The file's own channel count (it plays in stereo).
    pub channels: usize,
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// When the file joined the library, in milliseconds since the Unix epoch.
    pub added_unix_ms: u64,
    pub source: MediaSource,
    /// For watched files: the path and modification time the entry was made from.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub watched: Option<WatchedFile>,
}

/// A watched file's place and the signature that tells whether it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WatchedFile {
    #[schema(value_type = String)]
    pub path: PathBuf,
    pub modified_unix_ms: u64,
}

/// Why a library operation failed.
#[derive(Debug, Error)]
pub enum LibraryError {
    /// The upload is larger than `[media] max_upload_mb`.
    #[error("the upload is larger than the limit of {limit_bytes} bytes")]
    TooLarge { limit_bytes: u64 },
    /// The file name is missing, not a plain name, or has no audio extension.
    #[error("file name `{name}`: {reason}")]
    BadName { name: String, reason: String },
    /// The file does not decode.
    #[error(transparent)]
    Decode(#[from] MediaError),
    /// No entry has this id.
    #[error("no media file `{0}`")]
    NotFound(String),
    /// The entry's file is in the watched folder, which the API leaves alone.
    #[error("media file `{id}` is in the watched folder ({}); remove it there", path.display())]
    Watched { id: String, path: PathBuf },
    /// A file or directory of the library cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The catalog file is not valid JSON of the expected shape.
    #[error("{}: not a media catalog: {source}", path.display())]
    Catalog {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl LibraryError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The library: shared as `Arc<MediaLibrary>` (in `AppState::media`).
#[derive(Debug)]
pub struct MediaLibrary {
    dir: PathBuf,
    watch_dir: Option<PathBuf>,
    watch_interval: Duration,
    limits: DecodeLimits,
    max_upload_bytes: u64,
    catalog: RwLock<BTreeMap<String, MediaEntry>>,
    /// Serialises catalog writes (and the watcher's scans with uploads).
    writes: std::sync::Mutex<()>,
}

impl MediaLibrary {
    /// Opens (creating it if needed) the library configured by `config`, with paths
    /// relative to `data_dir`, and loads its catalog.
    pub fn open(config: &MediaConfig, data_dir: &Path) -> Result<Self, LibraryError> {
        let dir = data_dir.join(&config.dir);
        std::fs::create_dir_all(&dir).map_err(LibraryError::io(&dir))?;
        let catalog_path = dir.join(CATALOG_FILE);
        let mut catalog: BTreeMap<String, MediaEntry> = match std::fs::read(&catalog_path) {
            Ok(bytes) => serde_json::from_slice::<Vec<MediaEntry>>(&bytes)
                .map_err(|source| LibraryError::Catalog {
                    path: catalog_path.clone(),
                    source,
                })?
                .into_iter()
                .map(|entry| (entry.id.clone(), entry))
                .collect(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(LibraryError::Io {
                    path: catalog_path,
                    source,
                });
            }
        };
        let watch_dir = config.watch_dir.as_ref().map(|watch| data_dir.join(watch));
        // Entries whose files are gone (or whose folder is no longer watched) go.
        catalog.retain(|_, entry| match (&entry.watched, &watch_dir) {
            (Some(file), Some(watch)) => file.path.starts_with(watch) && file.path.is_file(),
            (Some(_), None) => false,
            (None, _) => upload_path(&dir, entry).is_file(),
        });
        let library = Self {
            dir,
            watch_dir,
            watch_interval: Duration::from_secs(config.watch_interval_seconds.max(1)),
            limits: DecodeLimits {
                max_duration: Duration::from_secs(u64::from(config.max_track_minutes) * 60),
                max_input_bytes: DecodeLimits::DEFAULT_MAX_INPUT_BYTES,
            },
            max_upload_bytes: config.max_upload_bytes(),
            catalog: RwLock::new(catalog),
            writes: std::sync::Mutex::new(()),
        };
        library.save()?;
        Ok(library)
    }

    /// The largest upload taken, in bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes
    }

    /// Every entry, ordered by id.
    pub fn list(&self) -> Vec<MediaEntry> {
        self.read_catalog().values().cloned().collect()
    }

    /// The entry with this id.
    pub fn get(&self, id: &str) -> Option<MediaEntry> {
        self.read_catalog().get(id).cloned()
    }

    /// Where the file of entry `id` is, to decode it for air.
    pub fn path_of(&self, id: &str) -> Option<PathBuf> {
        let catalog = self.read_catalog();
        let entry = catalog.get(id)?;
        Some(match &entry.watched {
            Some(file) => file.path.clone(),
            None => upload_path(&self.dir, entry),
        })
    }

    /// Decodes entry `id` for air (48 kHz stereo, tags), with the library's limits.
    pub fn decode(&self, id: &str) -> Result<DecodedAudio, LibraryError> {
        let path = self
            .path_of(id)
            .ok_or_else(|| LibraryError::NotFound(id.to_string()))?;
        Ok(decode_file(&path, &self.limits)?)
    }

    /// Decodes an upload and, when it is good audio, stores and lists it. Returns the
    /// entry and whether it is new (the same content uploaded before is one entry).
    /// Blocking: decodes the whole file.
    pub fn add_upload(&self, name: &str, bytes: &[u8]) -> Result<(MediaEntry, bool), LibraryError> {
        let extension = checked_extension(name)?;
        if bytes.len() as u64 > self.max_upload_bytes {
            return Err(LibraryError::TooLarge {
                limit_bytes: self.max_upload_bytes,
            });
        }
        let decoded = decode_bytes(name, bytes, &self.limits)?;
        let id = content_id(bytes);
        let _write = self.lock_writes();
        if let Some(existing) = self.get(&id) {
            return Ok((existing, false));
        }
        let entry = entry_from(
            id,
            name,
            &decoded,
            bytes.len() as u64,
            MediaSource::Upload,
            None,
        );
        let path = self.dir.join(format!("{}.{extension}", entry.id));
        write_atomically(&path, bytes)?;
        self.write_catalog().insert(entry.id.clone(), entry.clone());
        self.save()?;
        Ok((entry, true))
    }

    /// Removes an uploaded entry and its file.
    pub fn remove(&self, id: &str) -> Result<MediaEntry, LibraryError> {
        let _write = self.lock_writes();
        let entry = self
            .get(id)
            .ok_or_else(|| LibraryError::NotFound(id.to_string()))?;
        if let Some(file) = &entry.watched {
            return Err(LibraryError::Watched {
                id: id.to_string(),
                path: file.path.clone(),
            });
        }
        let path = upload_path(&self.dir, &entry);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(LibraryError::Io { path, source }),
        }
        self.write_catalog().remove(id);
        self.save()?;
        Ok(entry)
    }

    /// One pass over the watched folder: lists new and changed audio files, drops
    /// entries whose files are gone. Files that do not decode are logged and left
    /// out (and tried again when they change). Returns how many entries changed.
    /// Blocking: decodes every new file.
    pub fn scan_watched(&self) -> Result<usize, LibraryError> {
        let Some(watch_dir) = &self.watch_dir else {
            return Ok(0);
        };
        let mut found: BTreeMap<PathBuf, (u64, u64)> = BTreeMap::new();
        let entries = match std::fs::read_dir(watch_dir) {
            Ok(entries) => entries,
            // A folder not made yet is an empty folder.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return self.drop_watched_except(&found);
            }
            Err(source) => {
                return Err(LibraryError::Io {
                    path: watch_dir.clone(),
                    source,
                });
            }
        };
        for dir_entry in entries.flatten() {
            let path = dir_entry.path();
            let Ok(metadata) = dir_entry.metadata() else {
                continue;
            };
            let name = dir_entry.file_name().to_string_lossy().into_owned();
            if !metadata.is_file() || name.starts_with('.') || checked_extension(&name).is_err() {
                continue;
            }
            found.insert(path, (metadata.len(), unix_ms(metadata.modified().ok())));
        }
        let mut changed = self.drop_watched_except(&found)?;
        let known: BTreeMap<PathBuf, u64> = self
            .read_catalog()
            .values()
            .filter_map(|entry| {
                let file = entry.watched.as_ref()?;
                Some((file.path.clone(), file.modified_unix_ms))
            })
            .collect();
        for (path, (size, modified)) in found {
            if known.get(&path) == Some(&modified) {
                continue;
            }
            if size > self.limits.max_input_bytes {
                tracing::warn!(path = %path.display(), size, "watched file too large; left out");
                continue;
            }
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "watched file unreadable");
                    continue;
                }
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let decoded = match decode_bytes(&name, &bytes, &self.limits) {
                Ok(decoded) => decoded,
                Err(error) => {
                    tracing::warn!(%error, "watched file refused");
                    continue;
                }
            };
            let entry = entry_from(
                content_id(&bytes),
                &name,
                &decoded,
                bytes.len() as u64,
                MediaSource::Watched,
                Some(WatchedFile {
                    path: path.clone(),
                    modified_unix_ms: modified,
                }),
            );
            let _write = self.lock_writes();
            let mut catalog = self.write_catalog();
            // The file's earlier version goes; an upload of the same content stays.
            catalog.retain(|_, old| old.watched.as_ref().is_none_or(|file| file.path != path));
            catalog.entry(entry.id.clone()).or_insert(entry);
            drop(catalog);
            self.save()?;
            changed += 1;
        }
        Ok(changed)
    }

    /// Starts the watched folder's scanner thread (when a folder is configured). The
    /// thread ends once the library is dropped.
    pub fn start_watching(self: &Arc<Self>) -> Result<(), LibraryError> {
        if self.watch_dir.is_none() {
            return Ok(());
        }
        let library: Weak<Self> = Arc::downgrade(self);
        let interval = self.watch_interval;
        std::thread::Builder::new()
            .name("media-watch".to_string())
            .spawn(move || {
                while let Some(library) = library.upgrade() {
                    match library.scan_watched() {
                        Ok(0) => {}
                        Ok(changed) => tracing::info!(changed, "watched media folder scanned"),
                        Err(error) => tracing::warn!(%error, "watched media folder scan failed"),
                    }
                    drop(library);
                    std::thread::sleep(interval);
                }
            })
            .map_err(LibraryError::io(&self.dir))?;
        Ok(())
    }

    fn drop_watched_except(
        &self,
        present: &BTreeMap<PathBuf, (u64, u64)>,
    ) -> Result<usize, LibraryError> {
        let _write = self.lock_writes();
        let mut catalog = self.write_catalog();
        let before = catalog.len();
        catalog.retain(|_, entry| {
            entry
                .watched
                .as_ref()
                .is_none_or(|file| present.contains_key(&file.path))
        });
        let dropped = before - catalog.len();
        drop(catalog);
        if dropped > 0 {
            self.save()?;
        }
        Ok(dropped)
    }

    /// Writes the catalog atomically.
    fn save(&self) -> Result<(), LibraryError> {
        let entries = self.list();
        let path = self.dir.join(CATALOG_FILE);
        let bytes =
            serde_json::to_vec_pretty(&entries).map_err(|source| LibraryError::Catalog {
                path: path.clone(),
                source,
            })?;
        write_atomically(&path, &bytes)
    }

    fn read_catalog(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, MediaEntry>> {
        // A panic while holding the lock leaves a consistent map (every change is one
        // insert or remove), so a poisoned lock is still usable.
        self.catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_catalog(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, MediaEntry>> {
        self.catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The lowercase audio extension of a plain file name, or why the name is refused.
pub fn checked_extension(name: &str) -> Result<String, LibraryError> {
    let refuse = |reason: &str| LibraryError::BadName {
        name: name.chars().take(200).collect(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(refuse("empty"));
    }
    if name.len() > 255 {
        return Err(refuse("longer than 255 bytes"));
    }
    if name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
        return Err(refuse("must be a plain file name, without a directory"));
    }
    let extension = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| refuse("has no extension; expected one of wav, flac, mp3, ogg, oga"))?;
    if AUDIO_EXTENSIONS.contains(&extension.as_str()) {
        Ok(extension)
    } else {
        Err(refuse(&format!(
            "extension `{extension}` is not one of wav, flac, mp3, ogg, oga"
        )))
    }
}

fn upload_path(dir: &Path, entry: &MediaEntry) -> PathBuf {
    let extension = Path::new(&entry.file_name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    dir.join(format!("{}.{extension}", entry.id))
}

fn entry_from(
    id: String,
    name: &str,
    decoded: &DecodedAudio,
    size_bytes: u64,
    source: MediaSource,
    watched: Option<WatchedFile>,
) -> MediaEntry {
    MediaEntry {
        id,
        file_name: name.to_string(),
        tags: decoded.tags.clone(),
        duration_seconds: decoded.duration.as_secs_f64(),
        format: decoded.source_format.clone(),
        codec: decoded.source_codec.clone(),
        sample_rate: decoded.source_sample_rate,
        channels: decoded.source_channels,
        size_bytes,
        added_unix_ms: unix_ms(Some(SystemTime::now())),
        source,
        watched,
    }
}

fn unix_ms(time: Option<SystemTime>) -> u64 {
    time.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), LibraryError> {
    crate::files::write_atomically(path, bytes).map_err(LibraryError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-bit stereo PCM WAV file of a sawtooth.
    fn wav_bytes(frames: usize, rate: u32) -> Vec<u8> {
        let data_len = (frames * 4) as u32;
        let mut bytes = Vec::with_capacity(44 + data_len as usize);
        bytes.extend_from_slice(b"RIFF");
        bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
        bytes.extend_from_slice(b"WAVEfmt ");
        bytes.extend_from_slice(&16u32.to_le_bytes());
        bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
        bytes.extend_from_slice(&2u16.to_le_bytes()); // channels
        bytes.extend_from_slice(&rate.to_le_bytes());
        bytes.extend_from_slice(&(rate * 4).to_le_bytes()); // bytes per second
        bytes.extend_from_slice(&4u16.to_le_bytes()); // block align
        bytes.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
        bytes.extend_from_slice(b"data");
        bytes.extend_from_slice(&data_len.to_le_bytes());
        for i in 0..frames * 2 {
            let sample = ((i % 200) as i16 - 100) * 100;
            bytes.extend_from_slice(&sample.to_le_bytes());
        }
        bytes
    }

    fn config(watch: Option<&str>) -> MediaConfig {
        MediaConfig {
            watch_dir: watch.map(PathBuf::from),
            ..MediaConfig::default()
        }
    }

    #[test]
    fn an_upload_is_listed_kept_across_reopening_and_removed() {
        let data = tempfile::tempdir().unwrap();
        let library = MediaLibrary::open(&config(None), data.path()).unwrap();
        let bytes = wav_bytes(4800, 44_100);
        let (entry, new) = library.add_upload("Night Drive.wav", &bytes).unwrap();
        assert!(new);
        assert_eq!(entry.tags.title, "Night Drive");
        assert_eq!(entry.sample_rate, 44_100);
        assert_eq!(entry.source, MediaSource::Upload);
        // The same bytes again: the same entry.
        let (again, new) = library.add_upload("copy.wav", &bytes).unwrap();
        assert!(!new);
        assert_eq!(again.id, entry.id);

        let reopened = MediaLibrary::open(&config(None), data.path()).unwrap();
        assert_eq!(reopened.list(), vec![entry.clone()]);
        let path = reopened.path_of(&entry.id).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(reopened.decode(&entry.id).unwrap().frames(), 5225);

        reopened.remove(&entry.id).unwrap();
        assert!(!path.exists());
        assert!(reopened.get(&entry.id).is_none());
        assert!(matches!(
            reopened.remove(&entry.id),
            Err(LibraryError::NotFound(_))
        ));
    }

    #[test]
    fn bad_uploads_are_refused_and_not_kept() {
        let data = tempfile::tempdir().unwrap();
        let library = MediaLibrary::open(&config(None), data.path()).unwrap();
        for name in ["", "../x.wav", "a/b.wav", "song", "song.txt"] {
            assert!(
                matches!(
                    library.add_upload(name, &wav_bytes(10, 48_000)),
                    Err(LibraryError::BadName { .. })
                ),
                "{name:?}"
            );
        }
        assert!(matches!(
            library.add_upload("noise.mp3", b"not audio at all, only words".as_slice()),
            Err(LibraryError::Decode(_))
        ));
        assert!(library.list().is_empty());
        let stored: Vec<_> = std::fs::read_dir(data.path().join("media"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(stored, vec![std::ffi::OsString::from(CATALOG_FILE)]);
    }

    #[test]
    fn the_watched_folder_follows_new_changed_and_removed_files() {
        let data = tempfile::tempdir().unwrap();
        let watch = data.path().join("inbox");
        std::fs::create_dir_all(&watch).unwrap();
        let library = MediaLibrary::open(&config(Some("inbox")), data.path()).unwrap();
        std::fs::write(watch.join("one.wav"), wav_bytes(4800, 48_000)).unwrap();
        std::fs::write(watch.join("notes.txt"), b"not audio").unwrap();
        std::fs::write(watch.join("broken.flac"), b"fLaC broken").unwrap();
        assert_eq!(library.scan_watched().unwrap(), 1);
        let listed = library.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].file_name, "one.wav");
        assert_eq!(listed[0].source, MediaSource::Watched);
        // Unchanged: nothing to do.
        assert_eq!(library.scan_watched().unwrap(), 0);
        // The API leaves watched files alone.
        assert!(matches!(
            library.remove(&listed[0].id),
            Err(LibraryError::Watched { .. })
        ));
        // Changed content: a new entry replaces the old one.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(watch.join("one.wav"), wav_bytes(9600, 48_000)).unwrap();
        let file = std::fs::File::options()
            .write(true)
            .open(watch.join("one.wav"))
            .unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        library.scan_watched().unwrap();
        let listed_after = library.list();
        assert_eq!(listed_after.len(), 1);
        assert_ne!(listed_after[0].id, listed[0].id);
        assert!((listed_after[0].duration_seconds - 0.2).abs() < 1e-9);
        // Removed: the entry goes.
        std::fs::remove_file(watch.join("one.wav")).unwrap();
        library.scan_watched().unwrap();
        assert!(library.list().is_empty());
    }
}
