//! The event store as the configuration describes it: SQLite or a ScyllaDB
//! cluster, the sinks the stations' event writers write through, the shared
//! read handle of the HTTP API, and each station's listener clock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use sonicforge_engine::events::{
    CqlConsistency as EngineConsistency, EventReader, EventSink, EventSinkError, Replication,
    SchemaOptions, ScyllaOptions, ScyllaStore, SqliteOptions, SqliteSink, TableTtls, TlsFiles,
};

use crate::config::{CqlConsistency, EventsBackend, EventsConfig, ScyllaConfig};

/// Why the event store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    #[error(
        "events.scylla.username is set but the password variable {variable} is not (or is not UTF-8)"
    )]
    MissingPassword { variable: String },
    #[error(transparent)]
    Sink(#[from] EventSinkError),
}

/// How long a station's writer waits for SQLite's lock before its batch goes to the
/// spool: short, so that a locked file (a backup, an operator's `sqlite3`) moves events
/// to the spool within a tick or four instead of stalling the writer.
pub const SQLITE_WRITER_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads play events back; shared by every HTTP worker.
pub type SharedReader = Arc<dyn EventReader + Send + Sync>;

/// Opens a station's sink; called again after a failure that needs the sink reopened.
pub type SinkOpener =
    Arc<dyn Fn() -> Result<Box<dyn EventSink>, EventSinkError> + Send + Sync + 'static>;

/// The configured event store of this process.
#[derive(Debug, Clone)]
pub enum EventStore {
    /// One SQLite file; each station writes through its own connection.
    Sqlite { path: PathBuf },
    /// A cluster; every station writes through the one connection.
    Scylla(ScyllaStore),
}

impl EventStore {
    /// Opens the store of `config`, relative paths under `data_dir`.
    ///
    /// SQLite: creates or migrates the file. ScyllaDB: tries the cluster once;
    /// a cluster that does not answer is no error (the writers hold their events
    /// until it does), one that answers with another schema version than this build's
    /// is, and so is one that refuses the credentials.
    pub fn open(config: &EventsConfig, data_dir: &Path) -> Result<Self, EventStoreError> {
        match config.backend {
            EventsBackend::Sqlite => {
                let path = config.sqlite_file(data_dir);
                SqliteSink::open(&path)?;
                Ok(Self::Sqlite { path })
            }
            EventsBackend::Scylla => {
                let options = scylla_options(&config.scylla, |name| std::env::var(name).ok())?;
                Ok(Self::Scylla(ScyllaStore::open(options)?))
            }
        }
    }

    /// `"sqlite"` or `"scylla"`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Scylla(_) => "scylla",
        }
    }

    /// A sink for one station's event writer.
    pub fn open_sink(&self) -> Result<Box<dyn EventSink>, EventSinkError> {
        match self {
            Self::Sqlite { path } => Ok(Box::new(SqliteSink::open_with(
                path,
                SqliteOptions {
                    busy_timeout: SQLITE_WRITER_BUSY_TIMEOUT,
                },
            )?)),
            Self::Scylla(store) => Ok(Box::new(store.sink())),
        }
    }

    /// [`open_sink`](Self::open_sink) as the event writer takes it.
    pub fn sink_opener(&self) -> SinkOpener {
        let store = self.clone();
        Arc::new(move || store.open_sink())
    }

    /// The read handle of the HTTP API (reads block: call them from a blocking pool).
    pub fn reader(&self) -> Result<SharedReader, EventSinkError> {
        match self {
            Self::Sqlite { path } => Ok(Arc::new(Mutex::new(SqliteSink::open(path)?))),
            Self::Scylla(store) => Ok(Arc::new(store.clone())),
        }
    }
}

/// A sink for `station`'s events in the store `config` describes. Every call with the
/// same ScyllaDB settings shares one connection to the cluster for the whole process.
pub fn open_sink(
    config: &EventsConfig,
    data_dir: &Path,
    station: &str,
) -> Result<Box<dyn EventSink>, EventStoreError> {
    let store = shared_store(config, data_dir)?;
    tracing::debug!(station, backend = store.backend_name(), "event sink opened");
    Ok(store.open_sink()?)
}

/// The store of `config`, opened once per process and configuration.
pub fn shared_store(config: &EventsConfig, data_dir: &Path) -> Result<EventStore, EventStoreError> {
    static STORES: OnceLock<Mutex<HashMap<String, EventStore>>> = OnceLock::new();
    let key = format!("{:?}|{}", config, data_dir.display());
    let stores = STORES.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(store) = stores
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok(store.clone());
    }
    let store = EventStore::open(config, data_dir)?;
    stores
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_insert(store.clone());
    Ok(store)
}

/// The engine's options for the cluster of `config`; the password is read through
/// `environment` from the variable `config.password_env`.
pub fn scylla_options(
    config: &ScyllaConfig,
    environment: impl Fn(&str) -> Option<String>,
) -> Result<ScyllaOptions, EventStoreError> {
    let password = match &config.username {
        Some(_) => Some(environment(&config.password_env).ok_or_else(|| {
            EventStoreError::MissingPassword {
                variable: config.password_env.clone(),
            }
        })?),
        None => None,
    };
    Ok(ScyllaOptions {
        known_nodes: config.known_nodes.clone(),
        keyspace: config.keyspace.clone(),
        consistency: match config.consistency {
            CqlConsistency::One => EngineConsistency::One,
            CqlConsistency::Two => EngineConsistency::Two,
            CqlConsistency::Quorum => EngineConsistency::Quorum,
            CqlConsistency::LocalQuorum => EngineConsistency::LocalQuorum,
            CqlConsistency::LocalOne => EngineConsistency::LocalOne,
            CqlConsistency::All => EngineConsistency::All,
        },
        connect_timeout: Duration::from_millis(config.connect_timeout_ms),
        request_timeout: Duration::from_millis(config.request_timeout_ms),
        username: config.username.clone(),
        password,
        tls: config.tls_ca_file.as_ref().map(|ca_file| TlsFiles {
            ca_file: ca_file.clone(),
            client_cert_file: config.tls_cert_file.clone(),
            client_key_file: config.tls_key_file.clone(),
        }),
    })
}

/// What `sonicforge db migrate` creates for `config`.
pub fn schema_options(config: &ScyllaConfig) -> SchemaOptions {
    let replication = if config.replication_datacenters.is_empty() {
        Replication::Simple {
            factor: config.replication_factor,
        }
    } else {
        Replication::NetworkTopology {
            datacenters: config
                .replication_datacenters
                .iter()
                .map(|name| (name.clone(), config.replication_factor))
                .collect(),
        }
    };
    SchemaOptions {
        replication,
        ttls: TableTtls {
            events_days: config.events_ttl_days,
            plays_days: config.plays_ttl_days,
            sessions_days: config.sessions_ttl_days,
            totals_days: config.totals_ttl_days,
        },
        compaction_window_days: config.compaction_window_days,
    }
}

/// Integrates a station's listener count over time: listener-milliseconds since the
/// station started. Listeners update it when they join and leave (a lock taken twice
/// per session, never per frame); a play's listener-milliseconds are the difference
/// of two readings.
#[derive(Debug, Default)]
pub struct ListenerClock {
    state: Mutex<ClockState>,
}

#[derive(Debug, Default)]
struct ClockState {
    listeners: u64,
    /// When `listeners` last changed.
    since: Option<Instant>,
    /// Listener-microseconds up to `since`.
    listener_us: u128,
}

impl ClockState {
    fn advance(&mut self, now: Instant) {
        if let Some(since) = self.since {
            self.listener_us +=
                u128::from(self.listeners) * now.saturating_duration_since(since).as_micros();
        }
        self.since = Some(now);
    }
}

impl ListenerClock {
    pub fn joined(&self) {
        self.change(|listeners| listeners.saturating_add(1));
    }

    pub fn left(&self) {
        self.change(|listeners| listeners.saturating_sub(1));
    }

    /// Listener-milliseconds so far.
    pub fn listener_ms(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.advance(Instant::now());
        u64::try_from(state.listener_us / 1000).unwrap_or(u64::MAX)
    }

    /// Listeners connected now.
    pub fn listeners(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .listeners
    }

    fn change(&self, update: impl FnOnce(u64) -> u64) {
        // The state is consistent at every step, so a panic elsewhere while it was
        // held cannot have broken it.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.advance(Instant::now());
        state.listeners = update(state.listeners);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_clock_integrates_the_listener_count() {
        let clock = ListenerClock::default();
        let start = Instant::now();
        {
            let mut state = clock.state.lock().unwrap();
            state.advance(start);
            state.listeners = 2;
            state.advance(start + Duration::from_millis(1500));
            state.listeners = 1;
            state.advance(start + Duration::from_millis(2500));
        }
        // 2 listeners for 1.5 s, then 1 for 1 s.
        assert_eq!(clock.state.lock().unwrap().listener_us, 4_000_000);
        clock.left();
        clock.left();
        assert_eq!(clock.listeners(), 0);
        let before = clock.listener_ms();
        assert!(before >= 4_000);
        // Nobody listens: no listener time passes.
        assert_eq!(clock.listener_ms(), before);
        clock.joined();
        assert_eq!(clock.listeners(), 1);
    }

    #[test]
    fn the_password_comes_from_the_named_variable() {
        let mut config = ScyllaConfig {
            username: Some("sonicforge".into()),
            ..ScyllaConfig::default()
        };
        let error = scylla_options(&config, |_| None).unwrap_err();
        assert!(
            error.to_string().contains("SONICFORGE_CQL_PASSWORD"),
            "{error}"
        );
        let options = scylla_options(&config, |name| {
            (name == "SONICFORGE_CQL_PASSWORD").then(|| "secret".to_string())
        })
        .unwrap();
        assert_eq!(options.password.as_deref(), Some("secret"));
        assert!(!format!("{options:?}").contains("secret"));
        config.username = None;
        assert_eq!(scylla_options(&config, |_| None).unwrap().password, None);
    }

    #[test]
    fn the_production_example_config_loads_with_three_copies() {
        let config = crate::config::Config::parse(
            include_str!("../../config/production.example.toml"),
            "config/production.example.toml",
        )
        .unwrap();
        assert_eq!(config.events.backend, EventsBackend::Scylla);
        let schema = schema_options(&config.events.scylla);
        assert_eq!(
            schema.replication,
            Replication::NetworkTopology {
                datacenters: vec![("dc1".into(), 3)]
            }
        );
        let options = scylla_options(&config.events.scylla, |_| Some("secret".into())).unwrap();
        assert_eq!(options.known_nodes.len(), 3);
        assert!(options.tls.is_some());
        let default =
            crate::config::Config::parse(crate::config::DEFAULT_CONFIG, "default").unwrap();
        assert_eq!(
            schema_options(&default.events.scylla).replication,
            Replication::Simple { factor: 1 }
        );
    }

    #[test]
    fn replication_follows_the_configured_datacenters() {
        let mut config = ScyllaConfig {
            replication_factor: 3,
            ..ScyllaConfig::default()
        };
        assert_eq!(
            schema_options(&config).replication,
            Replication::Simple { factor: 3 }
        );
        config.replication_datacenters = vec!["dc1".into(), "dc2".into()];
        assert_eq!(
            schema_options(&config).replication,
            Replication::NetworkTopology {
                datacenters: vec![("dc1".into(), 3), ("dc2".into(), 3)]
            }
        );
    }

    #[test]
    fn a_sqlite_store_opens_sinks_and_a_reader_on_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = EventsConfig::default();
        let store = EventStore::open(&config, dir.path()).unwrap();
        assert_eq!(store.backend_name(), "sqlite");
        let mut sink = (store.sink_opener())().unwrap();
        let event = sonicforge_engine::events::PlayEvent::new(
            "main",
            sonicforge_engine::events::EventKind::StationStarted,
        );
        sink.write_batch(std::slice::from_ref(&event)).unwrap();
        let reader = store.reader().unwrap();
        assert_eq!(reader.recent_events("main", 5).unwrap(), vec![event]);
        assert!(dir.path().join("events.db").is_file());
        let shared = open_sink(&config, dir.path(), "main").unwrap();
        assert_eq!(shared.name(), "sqlite");
    }
}
