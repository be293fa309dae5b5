//! Stations while the engine runs: starting them (at boot and through the station
//! API), stopping them, starting them again and removing them, without a restart.
//!
//! Every started station is wired the same way, whenever it starts: sessions an
//! earlier run of it left open are closed, it goes under the root supervisor, and the
//! change announcements (event stream, webhooks) watch it. Stations added through the
//! API, and which stations are stopped, are kept in `data_dir/stations.json`, so that
//! the next start of the process brings back the same stations in the same state.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use serde::{Deserialize, Serialize};

use crate::config::{Config, InvalidStationField, StationConfig};
use crate::mastering::MasteringSettings;
use crate::metrics::Metrics;
use crate::playlists::PlaylistError;
use crate::station::{
    AliveMarker, EventStorage, Station, StationError, StationOrigin, Stations, UncleanSessions,
};
use crate::station_events::StationEvents;
use crate::supervise::root::{RootSupervisor, Supervise, Unsupervise};

/// The file, in the data directory, of the stations added through the API and of the
/// stopped stations.
pub const STATIONS_FILE: &str = "stations.json";
/// How long a stopping station waits for its listeners to leave before it stores its
/// last play events.
pub(crate) const LISTENERS_LEAVE_WITHIN: Duration = Duration::from_secs(3);
/// How long a stopping station may take to store its last play events.
const FLUSH_EVENTS_WITHIN: Duration = Duration::from_secs(5);

/// Why a station could not be added, stopped, started or removed.
#[derive(Debug, thiserror::Error)]
pub enum StationControlError {
    #[error("station settings: {0}")]
    Invalid(#[from] InvalidStationField),
    #[error("station `{0}` exists already")]
    Exists(String),
    #[error("no station `{0}`")]
    Unknown(String),
    #[error(
        "station `{0}` is defined in the config file: remove it there (it can be stopped through the API)"
    )]
    InConfigFile(String),
    #[error("at most {limit} stations ([limits] max_stations)")]
    TooMany { limit: usize },
    #[error("station `{station}`: no playlist `{playlist}` to start on")]
    UnknownPlaylist { station: String, playlist: String },
    #[error("station `{0}`: a playlist of that name exists; choose another id")]
    PlaylistNameTaken(String),
    #[error("station `{station}`: playlists: {source}")]
    Playlists {
        station: String,
        source: PlaylistError,
    },
    #[error(transparent)]
    Start(#[from] StationError),
    #[error(transparent)]
    Events(#[from] crate::events::EventStoreError),
    #[error("cannot store the stations in {path}: {source}")]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the stations from {path}: {message}")]
    Load { path: PathBuf, message: String },
}

/// What `stations.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredStations {
    /// Stations added through the API, in the order they were added.
    #[serde(default)]
    pub added: Vec<StationConfig>,
    /// Stations stopped through the API (from the config file or added).
    #[serde(default)]
    pub stopped: BTreeSet<String>,
}

impl StoredStations {
    /// Reads `data_dir/stations.json`; none yet when it is absent.
    pub fn load(data_dir: &Path) -> Result<Self, StationControlError> {
        let path = data_dir.join(STATIONS_FILE);
        let load_error = |message: String| StationControlError::Load {
            path: path.clone(),
            message,
        };
        let stored: Self = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| load_error(e.to_string()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(error) => return Err(load_error(error.to_string())),
        };
        for station in &stored.added {
            station
                .validate()
                .map_err(|error| load_error(format!("station `{}`: {error}", station.id)))?;
        }
        Ok(stored)
    }

    /// The stations to run: those of the config file, then those added through the API
    /// (one whose id the config file now defines too is left out, logged).
    pub fn with_config_file(&self, config: &Config) -> Vec<(StationConfig, StationOrigin)> {
        let mut stations: Vec<_> = config
            .stations
            .iter()
            .map(|station| (station.clone(), StationOrigin::ConfigFile))
            .collect();
        for added in &self.added {
            if config.stations.iter().any(|station| station.id == added.id) {
                tracing::warn!(station = %added.id, "a station added through the API is now defined in the config file too; the config file's settings are used");
                continue;
            }
            stations.push((added.clone(), StationOrigin::Api));
        }
        stations
    }
}

/// Starts, stops and removes the stations of the process.
pub struct StationControl {
    stations: Arc<Stations>,
    config: Arc<Config>,
    mastering: MasteringSettings,
    metrics: Metrics,
    event_reader: Option<crate::events::SharedReader>,
    root: Addr<RootSupervisor>,
    station_events: Arc<StationEvents>,
    /// One change at a time, so that the stored file follows the order of changes.
    changes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for StationControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationControl")
            .field("stations", &self.stations.len())
            .finish_non_exhaustive()
    }
}

impl StationControl {
    pub fn new(
        stations: Arc<Stations>,
        config: Arc<Config>,
        mastering: MasteringSettings,
        metrics: Metrics,
        event_reader: Option<crate::events::SharedReader>,
        root: Addr<RootSupervisor>,
        station_events: Arc<StationEvents>,
    ) -> Self {
        Self {
            stations,
            config,
            mastering,
            metrics,
            event_reader,
            root,
            station_events,
            changes: tokio::sync::Mutex::new(()),
        }
    }

    /// Every station of the process.
    pub fn stations(&self) -> &Arc<Stations> {
        &self.stations
    }

    /// Starts a station and wires it: sessions its earlier run left open are closed,
    /// and the root supervisor and the change announcements take it. Must run on a
    /// thread of the actix system.
    pub fn launch(
        &self,
        config: StationConfig,
        origin: StationOrigin,
    ) -> Result<Arc<Station>, StationControlError> {
        // Looked up before the station starts, so that only the previous run counts.
        let unclean = self
            .event_reader
            .as_ref()
            .and_then(|reader| self.find_unclean_sessions(reader.as_ref(), &config.id));
        let storage = event_storage(&self.config)?;
        let station = Station::start(
            config,
            self.config.listeners,
            self.config.supervision,
            self.mastering.clone(),
            storage,
            &self.metrics,
            Arc::clone(self.stations.playlists()),
        )?;
        if let Some(unclean) = unclean {
            close_unclean_sessions(&station, &unclean);
        }
        self.stations.insert(Arc::clone(&station), origin);
        self.running_gauge(station.id()).set(1);
        self.root.do_send(Supervise {
            station: Arc::clone(&station),
            policy: self.config.supervision.policy(),
        });
        self.station_events.watch(Arc::clone(&station));
        Ok(station)
    }

    /// Lists a station that stays stopped (it was stopped through the API before the
    /// engine started again).
    pub fn keep_stopped(&self, config: StationConfig, origin: StationOrigin) {
        tracing::info!(station = %config.id, "station stays stopped (stopped through the API)");
        self.running_gauge(&config.id).set(0);
        self.stations.insert_stopped(config, origin);
    }

    /// Adds a station through the API and starts it.
    pub async fn add(&self, config: StationConfig) -> Result<Arc<Station>, StationControlError> {
        config.validate()?;
        let _change = self.changes.lock().await;
        if self.stations.entry(&config.id).is_some() {
            return Err(StationControlError::Exists(config.id));
        }
        let limit = self.config.limits.max_stations;
        if self.stations.len() >= limit {
            return Err(StationControlError::TooMany { limit });
        }
        let playlists = self.stations.playlists();
        if let Some(name) = &config.playlist_name
            && playlists.get(name).is_none()
        {
            return Err(StationControlError::UnknownPlaylist {
                station: config.id.clone(),
                playlist: name.clone(),
            });
        }
        playlists
            .add_station(&config)
            .map_err(|error| match error {
                PlaylistError::Exists(_) => {
                    StationControlError::PlaylistNameTaken(config.id.clone())
                }
                source => StationControlError::Playlists {
                    station: config.id.clone(),
                    source,
                },
            })?;
        let id = config.id.clone();
        let station = match self.launch(config, StationOrigin::Api) {
            Ok(station) => station,
            Err(error) => {
                let _ = playlists.remove_station(&id);
                return Err(error);
            }
        };
        if let Err(error) = self.store() {
            self.stations.remove(&id);
            self.retire(&station).await;
            let _ = playlists.remove_station(&id);
            return Err(error);
        }
        tracing::info!(station = %id, "station added");
        Ok(station)
    }

    /// Stops a station; its listeners are told that it stopped and its last play
    /// events are stored. Stopping a stopped station changes nothing.
    pub async fn stop(&self, id: &str) -> Result<(), StationControlError> {
        let _change = self.changes.lock().await;
        self.stations
            .entry(id)
            .ok_or_else(|| StationControlError::Unknown(id.to_string()))?;
        let Some(station) = self.stations.mark_stopped(id) else {
            return Ok(());
        };
        let stored = self.store();
        self.retire(&station).await;
        tracing::info!(station = %id, "station stopped");
        stored
    }

    /// Starts a stopped station again, with the playlist it played. Starting a running
    /// station changes nothing.
    pub async fn start(&self, id: &str) -> Result<Arc<Station>, StationControlError> {
        let _change = self.changes.lock().await;
        let entry = self
            .stations
            .entry(id)
            .ok_or_else(|| StationControlError::Unknown(id.to_string()))?;
        if let Some(station) = entry.running {
            return Ok(station);
        }
        let station = self.launch(entry.config, entry.origin)?;
        if let Err(error) = self.store() {
            self.stations.mark_stopped(id);
            self.retire(&station).await;
            return Err(error);
        }
        tracing::info!(station = %id, "station started");
        Ok(station)
    }

    /// Removes a station added through the API, stopping it first if it runs.
    pub async fn remove(&self, id: &str) -> Result<(), StationControlError> {
        let _change = self.changes.lock().await;
        let entry = self
            .stations
            .entry(id)
            .ok_or_else(|| StationControlError::Unknown(id.to_string()))?;
        if entry.origin == StationOrigin::ConfigFile {
            return Err(StationControlError::InConfigFile(id.to_string()));
        }
        self.stations.remove(id);
        if let Err(error) = self.store() {
            match &entry.running {
                Some(station) => self.stations.insert(Arc::clone(station), entry.origin),
                None => self.stations.insert_stopped(entry.config, entry.origin),
            }
            return Err(error);
        }
        if let Some(station) = &entry.running {
            self.retire(station).await;
        }
        let _ = self.metrics.station_running.remove_label_values(&[id]);
        if let Err(error) = self.stations.playlists().remove_station(id) {
            tracing::warn!(station = %id, %error, "station removed; its built-in playlist is kept");
        }
        tracing::info!(station = %id, "station removed");
        Ok(())
    }

    /// Stops a station taken out of the list: its actors, its supervision, then, once
    /// its listeners have left (or after [`LISTENERS_LEAVE_WITHIN`]), its event writer
    /// with the last play events.
    async fn retire(&self, station: &Arc<Station>) {
        station.stop();
        self.running_gauge(station.id()).set(0);
        self.root.do_send(Unsupervise {
            station: station.id().to_string(),
        });
        let staying = station.listeners_left(LISTENERS_LEAVE_WITHIN).await;
        if staying > 0 {
            tracing::warn!(
                station = %station.id(), listeners = staying,
                "listeners were still connected when the stopped station stored its last play events; their leave events are lost"
            );
        }
        station.flush_events(FLUSH_EVENTS_WITHIN).await;
    }

    fn running_gauge(&self, id: &str) -> prometheus::IntGauge {
        self.metrics.station_running.with_label_values(&[id])
    }

    /// Writes `stations.json` from the stations now (a temporary file renamed over it).
    fn store(&self) -> Result<(), StationControlError> {
        let entries = self.stations.entries();
        let stored = StoredStations {
            added: entries
                .iter()
                .filter(|entry| entry.origin == StationOrigin::Api)
                .map(|entry| entry.config.clone())
                .collect(),
            stopped: entries
                .iter()
                .filter(|entry| entry.running.is_none())
                .map(|entry| entry.config.id.clone())
                .collect(),
        };
        let data_dir = &self.config.server.data_dir;
        let path = data_dir.join(STATIONS_FILE);
        let store_error = |source| StationControlError::Store {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(&stored)
            .map_err(|error| store_error(std::io::Error::other(error)))?;
        crate::files::write_atomically(&path, &bytes).map_err(store_error)
    }

    /// The listener sessions the previous run of `station` left open; `None` (logged)
    /// when they cannot be looked up.
    fn find_unclean_sessions(
        &self,
        reader: &dyn sonicforge_engine::events::EventReader,
        station: &str,
    ) -> Option<UncleanSessions> {
        let config = &self.config;
        let spool_dir = config
            .events
            .spool_directory(&config.server.data_dir)
            .join(station);
        let options = sonicforge_engine::events::SpoolOptions::with_max_bytes(
            config.events.spool_max_bytes(),
        );
        let alive = AliveMarker::new(&config.server.data_dir, station);
        match UncleanSessions::find(reader, station, &spool_dir, options, &alive) {
            Ok(found) => {
                for corruption in &found.spool_corruption {
                    tracing::error!(
                        station, %corruption,
                        "bad bytes in the event spool moved aside; the good records are kept"
                    );
                }
                self.metrics
                    .event_spool_corrupt_records
                    .with_label_values(&[station])
                    .inc_by(found.spool_corruption.len() as u64);
                Some(found)
            }
            Err(error) => {
                tracing::warn!(station, %error, "cannot look up listener sessions left open by an earlier run");
                None
            }
        }
    }
}

/// Where a station's play events go: the configured store (SQLite or the ScyllaDB
/// cluster), with a spool per station.
fn event_storage(config: &Config) -> Result<EventStorage, StationControlError> {
    let data_dir = &config.server.data_dir;
    let store = crate::events::shared_store(&config.events, data_dir)?;
    Ok(EventStorage::new(
        store.sink_opener(),
        &config.events,
        data_dir,
    ))
}

/// Closes the sessions an earlier run left open, with the reason `unclean_shutdown`.
fn close_unclean_sessions(station: &Station, unclean: &UncleanSessions) {
    let closing = unclean.closing_events();
    if closing.is_empty() {
        return;
    }
    tracing::warn!(
        station = %station.id(), sessions = closing.len(),
        "closing listener sessions an earlier run left open (it stopped uncleanly)"
    );
    for event in closing {
        station.emit(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(stations: &[&str]) -> Config {
        let mut text = String::new();
        for id in stations {
            text.push_str(&format!(
                "[[stations]]\nid = \"{id}\"\nname = \"{id}\"\nplaylist = [\"lofi\"]\n"
            ));
        }
        Config::parse(&text, "test.toml").unwrap()
    }

    #[test]
    fn stored_stations_come_back_after_the_config_file_ones() {
        let dir = tempfile::tempdir().unwrap();
        assert!(StoredStations::load(dir.path()).unwrap().added.is_empty());
        let added = config(&["night", "main"]).stations;
        let stored = StoredStations {
            added,
            stopped: BTreeSet::from(["main".to_string()]),
        };
        std::fs::write(
            dir.path().join(STATIONS_FILE),
            serde_json::to_vec(&stored).unwrap(),
        )
        .unwrap();
        let loaded = StoredStations::load(dir.path()).unwrap();
        assert!(loaded.stopped.contains("main"));
        let stations = loaded.with_config_file(&config(&["main"]));
        let listed: Vec<_> = stations
            .iter()
            .map(|(station, origin)| (station.id.as_str(), *origin))
            .collect();
        assert_eq!(
            listed,
            [
                ("main", StationOrigin::ConfigFile),
                ("night", StationOrigin::Api)
            ],
            "the config file's station wins over an added one of the same id"
        );
    }

    #[test]
    fn a_bad_stations_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATIONS_FILE);
        std::fs::write(&path, b"{\"added\": [{\"id\": \"Bad Id\"").unwrap();
        let error = StoredStations::load(dir.path()).unwrap_err();
        assert!(error.to_string().contains("stations.json"), "{error}");
        let mut bad = config(&["night"]).stations;
        bad[0].renditions_kbps = vec![1];
        let stored = StoredStations {
            added: bad,
            stopped: BTreeSet::new(),
        };
        std::fs::write(&path, serde_json::to_vec(&stored).unwrap()).unwrap();
        let error = StoredStations::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("renditions_kbps[0]"), "{error}");
    }
}
