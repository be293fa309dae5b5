//! The configuration file: what the stations are.
//!
//! Parsing is strict (unknown keys are errors) and every error names the file and
//! the key. The shipped default, `config/sonicforge.toml`, is embedded in the binary.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The default configuration, as shipped in `config/sonicforge.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/sonicforge.toml");
/// Name used in errors for the embedded default configuration.
pub const EMBEDDED_NAME: &str = "<embedded config/sonicforge.toml>";

/// Everything that can be wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config file {path}: key `{key}`: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub listeners: ListenerConfig,
    #[serde(default)]
    pub chaos: ChaosConfig,
    #[serde(default)]
    pub supervision: SupervisionConfig,
    #[serde(default)]
    pub mastering: MasteringConfig,
    #[serde(default)]
    pub events: EventsConfig,
    /// `[webhooks]`: posts to outside URLs on track changes and station up/down.
    #[serde(default)]
    pub webhooks: crate::webhooks::WebhooksConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub media: MediaConfig,
    /// The stations; at least one.
    pub stations: Vec<StationConfig>,
}

/// The media library (`[media]`): uploaded files and a watched folder.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Where uploads and the catalog are kept, relative to `server.data_dir` unless absolute.
    pub dir: PathBuf,
    /// An operator's folder scanned for new, changed and removed audio files
    /// (relative to `server.data_dir` unless absolute); none by default.
    pub watch_dir: Option<PathBuf>,
    /// Seconds between scans of `watch_dir`.
    pub watch_interval_seconds: u64,
    /// The largest upload, in MiB.
    pub max_upload_mb: u32,
    /// The longest file taken, in minutes.
    pub max_track_minutes: u32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("media"),
            watch_dir: None,
            watch_interval_seconds: 5,
            max_upload_mb: 200,
            max_track_minutes: 30,
        }
    }
}

impl MediaConfig {
    /// `max_upload_mb` in bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        u64::from(self.max_upload_mb) * 1024 * 1024
    }
}

/// The HTTP server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind (overridden by `--listen` and `SONICFORGE_LISTEN`).
    pub listen: SocketAddr,
    /// Directory for the engine's own files (overridden by `SONICFORGE_DATA_DIR`).
    pub data_dir: PathBuf,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            workers: 0,
        }
    }
}

/// Chaos hooks (`POST /api/admin/chaos`), for tests that kill actors on purpose.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ChaosConfig {
    /// Allow killing actors through the API (default off).
    pub enabled: bool,
    /// Allow it even when the server listens on an address that is not loopback.
    pub allow_non_loopback: bool,
}

/// Where the mastering chain's spectral stages run.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum MasteringBackendChoice {
    /// The GPU when an adapter exists and a calibration at start shows it faster.
    #[default]
    Auto,
    /// The GPU; the engine refuses to start without an adapter.
    Gpu,
    /// The CPU reference.
    Cpu,
}

/// How every track is mastered before it may go on air.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MasteringConfig {
    pub backend: MasteringBackendChoice,
    /// Integrated loudness of every track, in LUFS (-60..=0); a station may override it.
    pub target_lufs: f64,
    /// Highest true peak, in dBTP (-20..=0).
    pub ceiling_dbtp: f64,
    /// Width of the spectral EQ's correction, in dB from deepest cut to largest boost (0..=60).
    pub eq_range_db: f64,
}

impl Default for MasteringConfig {
    fn default() -> Self {
        Self {
            backend: MasteringBackendChoice::Auto,
            target_lufs: -14.0,
            ceiling_dbtp: -1.0,
            eq_range_db: 48.0,
        }
    }
}

/// Which store keeps the play events.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EventsBackend {
    /// One SQLite file under `server.data_dir`: no database server needed.
    #[default]
    Sqlite,
    /// A ScyllaDB (or Apache Cassandra) cluster, through CQL.
    Scylla,
}

/// Where play events go, and the on-disk spool that holds them while the store is away.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    pub backend: EventsBackend,
    /// The SQLite file, relative to `server.data_dir` unless absolute.
    pub sqlite_path: PathBuf,
    /// Directory of the spool, relative to `server.data_dir` unless absolute.
    pub spool_dir: PathBuf,
    /// Largest size of the spool on disk, in MiB (1..=65536); reaching it is an alert.
    pub spool_max_mb: u64,
    /// Off by default; for fault tests: a file, relative to `server.data_dir` unless
    /// absolute, where each station's event writer appends a line with the id of every
    /// play event it takes from its queue, before storing it.
    pub emitted_log: Option<PathBuf>,
    pub scylla: ScyllaConfig,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            backend: EventsBackend::Sqlite,
            sqlite_path: PathBuf::from("events.db"),
            spool_dir: PathBuf::from("spool"),
            spool_max_mb: 256,
            emitted_log: None,
            scylla: ScyllaConfig::default(),
        }
    }
}

impl EventsConfig {
    /// The SQLite file, resolved against `data_dir`.
    pub fn sqlite_file(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(&self.sqlite_path)
    }

    /// The spool directory, resolved against `data_dir`.
    pub fn spool_directory(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(&self.spool_dir)
    }

    /// The spool's bound in bytes.
    pub fn spool_max_bytes(&self) -> u64 {
        self.spool_max_mb.saturating_mul(1024 * 1024)
    }

    /// The emitted-event log, resolved against `data_dir`, when it is on.
    pub fn emitted_log_file(&self, data_dir: &Path) -> Option<PathBuf> {
        self.emitted_log.as_ref().map(|path| data_dir.join(path))
    }
}

/// Bearer tokens (HS256 JWTs) and the roles they carry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Check tokens at all (default on). Off, every route is open: development only.
    pub enabled: bool,
    /// Environment variable holding the signing secret (at least 32 bytes); it wins
    /// over `secret`.
    pub secret_env: String,
    /// The signing secret (at least 32 bytes), when not given in the environment.
    pub secret: Option<String>,
    /// With neither: this file, relative to `server.data_dir` unless absolute, holds
    /// the secret; the first start (or `sonicforge token`) writes a random one, mode 0600.
    pub secret_file: PathBuf,
    /// Listener streams and public API reads need a token (role listener or higher).
    pub require_listener_token: bool,
    /// Lifetime of a token `sonicforge token` prints without `--ttl` (like 1h, 30m, 7d).
    pub default_token_ttl: String,
    /// Longest lifetime `sonicforge token` issues.
    pub max_token_ttl: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            secret_env: "SONICFORGE_JWT_SECRET".into(),
            secret: None,
            secret_file: PathBuf::from("jwt-secret"),
            require_listener_token: false,
            default_token_ttl: "1h".into(),
            max_token_ttl: "30d".into(),
        }
    }
}

/// Limits on what one client, or all of them, may take.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Connection attempts (API requests and listener stream opens) one client address
    /// may make per second, sustained; 0 turns the limit off.
    pub connections_per_second: u32,
    /// Attempts one address may make at once before the rate applies (1..=100000).
    pub connection_burst: u32,
    /// Addresses the rate limit leaves alone (this machine by default: tests, load tests).
    pub rate_limit_exempt: Vec<std::net::IpAddr>,
    /// Client addresses whose rate is tracked at once (1000..=10000000); memory stays
    /// bounded under a flood of addresses, the longest idle are forgotten first.
    pub tracked_addresses: u32,
    /// Listeners of all stations together; 0 for no cap.
    pub max_listeners: u32,
    /// Listeners of one station; 0 for no cap.
    pub max_listeners_per_station: u32,
    /// Stations of the process, from the config file and the station API together
    /// (1..=256): each runs five threads and keeps tracks rendered ahead.
    pub max_stations: usize,
    /// Largest JSON request body, in KiB (1..=65536). Uploads have their own limit.
    pub json_body_kb: u32,
    /// Origins (like `https://radio.example.com`) whose pages may call the API from a
    /// browser; empty: same origin only.
    pub cors_origins: Vec<String>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            connections_per_second: 20,
            connection_burst: 60,
            rate_limit_exempt: vec![
                std::net::IpAddr::from([127, 0, 0, 1]),
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
            tracked_addresses: 100_000,
            max_listeners: 20_000,
            max_listeners_per_station: 0,
            max_stations: 16,
            json_body_kb: 64,
            cors_origins: Vec::new(),
        }
    }
}

/// Consistency level of CQL reads and writes.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CqlConsistency {
    One,
    Two,
    Quorum,
    #[default]
    LocalQuorum,
    LocalOne,
    All,
}

/// The ScyllaDB (or Cassandra) cluster of `events.backend = "scylla"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` (at least one).
    pub known_nodes: Vec<String>,
    /// Keyspace of the event tables (letters, digits and '_', at most 48).
    pub keyspace: String,
    /// Replication factor `sonicforge db migrate` creates the keyspace with (1..=10);
    /// 3 in production, 1 for a single test node.
    pub replication_factor: u32,
    /// Datacenters of a NetworkTopologyStrategy keyspace, each given `replication_factor`
    /// copies; empty (the default) for SimpleStrategy.
    pub replication_datacenters: Vec<String>,
    pub consistency: CqlConsistency,
    /// Time allowed to connect to the cluster (100..=120000).
    pub connect_timeout_ms: u64,
    /// Time allowed for one request (100..=120000).
    pub request_timeout_ms: u64,
    /// User name for password authentication; the password comes from the environment
    /// variable named by `password_env`.
    pub username: Option<String>,
    pub password_env: String,
    /// TLS: the CA certificate file (PEM) to verify the nodes with; no TLS when unset.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS, both or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Days rows are kept (the CQL default TTL), per table group (1..=7300, the
    /// longest TTL CQL accepts).
    pub events_ttl_days: u32,
    pub plays_ttl_days: u32,
    pub sessions_ttl_days: u32,
    pub totals_ttl_days: u32,
    /// Window of the time-window compaction of the day-partitioned tables, in days (1..=365).
    pub compaction_window_days: u32,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        Self {
            known_nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "sonicforge".into(),
            replication_factor: 1,
            replication_datacenters: Vec::new(),
            consistency: CqlConsistency::LocalQuorum,
            connect_timeout_ms: 5000,
            request_timeout_ms: 2000,
            username: None,
            password_env: "SONICFORGE_CQL_PASSWORD".into(),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            events_ttl_days: 400,
            plays_ttl_days: 800,
            sessions_ttl_days: 400,
            totals_ttl_days: 3650,
            compaction_window_days: 1,
        }
    }
}

/// Restart intensity and escalation of the station supervisors.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisionConfig {
    /// Restarts of a station's actors allowed within `within_seconds` (1..=10000);
    /// one more restarts the station's whole subtree.
    pub max_restarts: u32,
    pub within_seconds: u64,
    /// Subtree restarts allowed within `subtree_within_seconds` (0..=100); one more
    /// and the station holds its fallback loop on air and reports not ready.
    pub max_subtree_restarts: u32,
    pub subtree_within_seconds: u64,
    /// Seconds without an actor death after which a degraded station plays music again.
    pub recover_after_seconds: u64,
    /// A mixer or encoder silent for this long (milliseconds) is stalled.
    pub realtime_stall_ms: u64,
    /// A render running for this long (seconds) is stalled; the generator is replaced.
    pub generator_stall_seconds: u64,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            within_seconds: 30,
            max_subtree_restarts: 2,
            subtree_within_seconds: 300,
            recover_after_seconds: 60,
            realtime_stall_ms: 1000,
            generator_stall_seconds: 60,
        }
    }
}

impl SupervisionConfig {
    /// The station supervisors' policy.
    pub fn policy(&self) -> crate::supervise::tree::SupervisorPolicy {
        use crate::supervise::intensity::RestartIntensity;
        use std::time::Duration;
        crate::supervise::tree::SupervisorPolicy {
            children: RestartIntensity {
                max_restarts: self.max_restarts,
                within: Duration::from_secs(self.within_seconds),
            },
            subtrees: RestartIntensity {
                max_restarts: self.max_subtree_restarts,
                within: Duration::from_secs(self.subtree_within_seconds),
            },
            recover_after: Duration::from_secs(self.recover_after_seconds),
            check_every: Duration::from_millis(100),
        }
    }
}

/// How listener sessions are served.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// Newest audio sent on connect, in milliseconds (200..=500).
    pub pre_roll_ms: u32,
    /// Lag past which a listener skips forward to the newest packet.
    pub max_lag_ms: u32,
    /// Time a listener may stay behind, or a send may wait, before disconnection.
    pub behind_deadline_ms: u32,
    /// Opus packets a WebSocket session writes per wake-up (1..=50); a station's
    /// own `send_batch_packets` overrides it. More packets per wake-up cost less CPU
    /// and add up to 20 ms of latency per extra packet.
    pub send_batch_packets: u32,
    /// Ogg page duration of the HTTP stream (20..=1000, multiple of 20); a station's
    /// own `http_page_ms` overrides it. Longer pages mean fewer writes per listener
    /// and a page's duration of latency.
    pub http_page_ms: u32,
    /// Kernel send buffer per listener socket, in bytes (4096..=4194304).
    pub socket_send_buffer_bytes: u32,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            pre_roll_ms: 300,
            max_lag_ms: 500,
            behind_deadline_ms: 10_000,
            send_batch_packets: 1,
            http_page_ms: 100,
            socket_send_buffer_bytes: 32_768,
        }
    }
}

impl ListenerConfig {
    /// These settings with the station's own send batching (`send_batch_packets`,
    /// `http_page_ms`) in place of the defaults where it sets them.
    pub fn for_station(&self, station: &StationConfig) -> Self {
        Self {
            send_batch_packets: station
                .send_batch_packets
                .unwrap_or(self.send_batch_packets),
            http_page_ms: station.http_page_ms.unwrap_or(self.http_page_ms),
            ..*self
        }
    }
}

/// Checks a `send_batch_packets` value (1..=50); the message names the bounds.
fn check_send_batch_packets(packets: u32) -> Result<(), String> {
    check_range("send_batch_packets", packets, 1, 50)
}

/// Checks an `http_page_ms` value: 20..=1000 and whole 20 ms Opus packets.
fn check_http_page_ms(page_ms: u32) -> Result<(), String> {
    check_range("http_page_ms", page_ms, 20, 1000)?;
    if page_ms.is_multiple_of(20) {
        Ok(())
    } else {
        Err(format!(
            "{page_ms} is not a multiple of 20 (the Opus frame length)"
        ))
    }
}

/// One station.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    /// Used in URLs; lowercase letters, digits, '-' and '_'.
    pub id: String,
    /// Shown to listeners.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Opus renditions in kb/s (6..=510), one encoder each.
    #[serde(default = "default_renditions")]
    pub renditions_kbps: Vec<u32>,
    /// Equal-power crossfade between tracks in milliseconds (0..=30000).
    #[serde(default = "default_crossfade_ms")]
    pub crossfade_ms: u32,
    /// Music below -50 dBFS for longer than this (milliseconds, 500..=60000) is dead
    /// air: the fallback loop plays until the music is back.
    #[serde(default = "default_dead_air_ms")]
    pub dead_air_ms: u32,
    /// Length of generated tracks in seconds (1..=1200); absent: seed-chosen 120..=240 s.
    #[serde(default)]
    pub track_seconds: Option<f32>,
    /// Tracks rendered ahead of the one on air (2..=16).
    #[serde(default = "default_upcoming")]
    #[schema(minimum = 2, maximum = 16)]
    pub upcoming_tracks: usize,
    /// Integrated loudness of this station's tracks in LUFS; absent: `mastering.target_lufs`.
    #[serde(default)]
    pub mastering_target_lufs: Option<f64>,
    /// Seed of the station's track seeds; absent: taken from the clock at start.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Generator prompts, played in order and repeated.
    pub playlist: Vec<String>,
    /// The playlist the station starts on; absent: its built-in playlist (the
    /// prompts above), named after the station.
    #[serde(default)]
    pub playlist_name: Option<String>,
    /// Playlists whose first track is kept rendered ahead, so that a swap to one of
    /// them needs no render (0..=8; the most recently created, changed or swapped).
    #[serde(default = "default_swap_ready_playlists")]
    #[schema(maximum = 8)]
    pub swap_ready_playlists: usize,
    /// Minutes between jingles (1..=1440); needs `jingle`.
    #[serde(default)]
    pub jingle_every_minutes: Option<u32>,
    /// The jingle or station ID played between tracks when one is due: a playlist
    /// item (`prompt`, `seconds`, `seed` or `file`, `crossfade_ms`).
    #[serde(default)]
    pub jingle: Option<crate::playlists::PlaylistItem>,
    /// Opus packets a WebSocket session writes per wake-up (1..=50); absent:
    /// `listeners.send_batch_packets`.
    #[serde(default)]
    pub send_batch_packets: Option<u32>,
    /// Ogg page duration of the station's HTTP stream in milliseconds (20..=1000,
    /// multiple of 20); absent: `listeners.http_page_ms`.
    #[serde(default)]
    pub http_page_ms: Option<u32>,
}

fn default_swap_ready_playlists() -> usize {
    2
}

fn default_renditions() -> Vec<u32> {
    vec![64, 128]
}

fn default_crossfade_ms() -> u32 {
    4000
}

fn default_dead_air_ms() -> u32 {
    2000
}

fn default_upcoming() -> usize {
    2
}

impl Config {
    /// Loads `path`, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Self::parse(&text, &path.display().to_string())
            }
            None => Self::parse(DEFAULT_CONFIG, EMBEDDED_NAME),
        }
    }

    /// Parses and validates `text`; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: origin.to_string(),
            message: error.to_string().trim_end().to_string(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Applies the environment's overrides (`SONICFORGE_LISTEN`, `SONICFORGE_DATA_DIR`).
    pub fn apply_environment(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(listen) = lookup("SONICFORGE_LISTEN") {
            self.server.listen = listen.parse().map_err(|error| ConfigError::Invalid {
                path: "environment".into(),
                key: "SONICFORGE_LISTEN".into(),
                message: format!("`{listen}` is not an address like 127.0.0.1:8080: {error}"),
            })?;
        }
        if let Some(dir) = lookup("SONICFORGE_DATA_DIR") {
            self.server.data_dir = PathBuf::from(dir);
        }
        Ok(())
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: origin.to_string(),
            key,
            message,
        };
        let listeners = &self.listeners;
        check_range("listeners.pre_roll_ms", listeners.pre_roll_ms, 200, 500)
            .map_err(|m| invalid("listeners.pre_roll_ms".into(), m))?;
        check_range("listeners.max_lag_ms", listeners.max_lag_ms, 60, 10_000)
            .map_err(|m| invalid("listeners.max_lag_ms".into(), m))?;
        check_range(
            "listeners.behind_deadline_ms",
            listeners.behind_deadline_ms,
            500,
            600_000,
        )
        .map_err(|m| invalid("listeners.behind_deadline_ms".into(), m))?;
        check_send_batch_packets(listeners.send_batch_packets)
            .map_err(|m| invalid("listeners.send_batch_packets".into(), m))?;
        check_http_page_ms(listeners.http_page_ms)
            .map_err(|m| invalid("listeners.http_page_ms".into(), m))?;
        check_range(
            "listeners.socket_send_buffer_bytes",
            listeners.socket_send_buffer_bytes,
            4096,
            4 * 1024 * 1024,
        )
        .map_err(|m| invalid("listeners.socket_send_buffer_bytes".into(), m))?;

        let supervision = &self.supervision;
        for (key, value, min, max) in [
            (
                "supervision.max_restarts",
                u64::from(supervision.max_restarts),
                1,
                10_000,
            ),
            (
                "supervision.within_seconds",
                supervision.within_seconds,
                1,
                86_400,
            ),
            (
                "supervision.max_subtree_restarts",
                u64::from(supervision.max_subtree_restarts),
                0,
                100,
            ),
            (
                "supervision.subtree_within_seconds",
                supervision.subtree_within_seconds,
                1,
                86_400,
            ),
            (
                "supervision.recover_after_seconds",
                supervision.recover_after_seconds,
                1,
                86_400,
            ),
            (
                "supervision.realtime_stall_ms",
                supervision.realtime_stall_ms,
                100,
                60_000,
            ),
            (
                "supervision.generator_stall_seconds",
                supervision.generator_stall_seconds,
                5,
                3600,
            ),
        ] {
            check_range(key, value, min, max).map_err(|m| invalid(key.into(), m))?;
        }

        let mastering = &self.mastering;
        for (key, value, min, max) in [
            ("mastering.target_lufs", mastering.target_lufs, -60.0, 0.0),
            ("mastering.ceiling_dbtp", mastering.ceiling_dbtp, -20.0, 0.0),
            ("mastering.eq_range_db", mastering.eq_range_db, 0.0, 60.0),
        ] {
            if !value.is_finite() {
                return Err(invalid(key.into(), format!("{value} is not a number")));
            }
            check_range(key, value, min, max).map_err(|m| invalid(key.into(), m))?;
        }
        self.validate_events(origin)?;
        self.webhooks
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        self.validate_auth_and_limits(origin)?;
        if self.stations.is_empty() {
            return Err(invalid(
                "stations".into(),
                "at least one station is needed".into(),
            ));
        }
        if self.stations.len() > self.limits.max_stations {
            return Err(invalid(
                "stations".into(),
                format!(
                    "{} stations; [limits] max_stations allows {}",
                    self.stations.len(),
                    self.limits.max_stations
                ),
            ));
        }
        let mut ids = HashSet::new();
        for (index, station) in self.stations.iter().enumerate() {
            station.validate().map_err(|error| {
                invalid(format!("stations[{index}].{}", error.field), error.message)
            })?;
            if !ids.insert(station.id.as_str()) {
                return Err(invalid(
                    format!("stations[{index}].id"),
                    format!("station `{}` is defined twice", station.id),
                ));
            }
        }
        Ok(())
    }

    fn validate_events(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let events = &self.events;
        check_range("events.spool_max_mb", events.spool_max_mb, 1, 65_536)
            .map_err(|m| invalid("events.spool_max_mb", m))?;
        for (key, path) in [
            ("events.sqlite_path", &events.sqlite_path),
            ("events.spool_dir", &events.spool_dir),
        ]
        .into_iter()
        .chain(
            events
                .emitted_log
                .as_ref()
                .map(|path| ("events.emitted_log", path)),
        ) {
            if path.as_os_str().is_empty() {
                return Err(invalid(key, "must not be empty".into()));
            }
        }
        let scylla = &events.scylla;
        if scylla.known_nodes.is_empty() {
            return Err(invalid(
                "events.scylla.known_nodes",
                "at least one node is needed".into(),
            ));
        }
        for (index, node) in scylla.known_nodes.iter().enumerate() {
            let well_formed = node
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !well_formed {
                return Err(invalid(
                    &format!("events.scylla.known_nodes[{index}]"),
                    format!("`{node}` is not host:port"),
                ));
            }
        }
        let keyspace = &scylla.keyspace;
        if keyspace.is_empty()
            || keyspace.len() > 48
            || !keyspace.starts_with(|c: char| c.is_ascii_alphabetic())
            || !keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(invalid(
                "events.scylla.keyspace",
                format!(
                    "`{keyspace}` must be 1 to 48 letters, digits or '_', starting with a letter"
                ),
            ));
        }
        for (key, value, min, max) in [
            (
                "events.scylla.replication_factor",
                u64::from(scylla.replication_factor),
                1,
                10,
            ),
            (
                "events.scylla.connect_timeout_ms",
                scylla.connect_timeout_ms,
                100,
                120_000,
            ),
            (
                "events.scylla.request_timeout_ms",
                scylla.request_timeout_ms,
                100,
                120_000,
            ),
            (
                "events.scylla.events_ttl_days",
                u64::from(scylla.events_ttl_days),
                1,
                7_300,
            ),
            (
                "events.scylla.plays_ttl_days",
                u64::from(scylla.plays_ttl_days),
                1,
                7_300,
            ),
            (
                "events.scylla.sessions_ttl_days",
                u64::from(scylla.sessions_ttl_days),
                1,
                7_300,
            ),
            (
                "events.scylla.totals_ttl_days",
                u64::from(scylla.totals_ttl_days),
                1,
                7_300,
            ),
            (
                "events.scylla.compaction_window_days",
                u64::from(scylla.compaction_window_days),
                1,
                365,
            ),
        ] {
            check_range(key, value, min, max).map_err(|m| invalid(key, m))?;
        }
        if scylla.tls_cert_file.is_some() != scylla.tls_key_file.is_some() {
            return Err(invalid(
                "events.scylla.tls_cert_file",
                "tls_cert_file and tls_key_file go together".into(),
            ));
        }
        Ok(())
    }

    fn validate_auth_and_limits(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let auth = &self.auth;
        if auth.secret_env.is_empty() {
            return Err(invalid("auth.secret_env", "must not be empty".into()));
        }
        if let Some(secret) = &auth.secret
            && secret.len() < crate::auth::MIN_SECRET_BYTES
        {
            return Err(invalid(
                "auth.secret",
                format!(
                    "is {} bytes; at least {} are needed",
                    secret.len(),
                    crate::auth::MIN_SECRET_BYTES
                ),
            ));
        }
        if auth.secret_file.as_os_str().is_empty() {
            return Err(invalid("auth.secret_file", "must not be empty".into()));
        }
        let max_ttl = crate::auth::parse_ttl(&auth.max_token_ttl)
            .map_err(|error| invalid("auth.max_token_ttl", error.to_string()))?;
        let default_ttl = crate::auth::parse_ttl(&auth.default_token_ttl)
            .map_err(|error| invalid("auth.default_token_ttl", error.to_string()))?;
        if default_ttl > max_ttl {
            return Err(invalid(
                "auth.default_token_ttl",
                format!(
                    "{} is longer than auth.max_token_ttl ({})",
                    auth.default_token_ttl, auth.max_token_ttl
                ),
            ));
        }
        let limits = &self.limits;
        for (key, value, min, max) in [
            (
                "limits.connection_burst",
                u64::from(limits.connection_burst),
                1,
                100_000,
            ),
            (
                "limits.connections_per_second",
                u64::from(limits.connections_per_second),
                0,
                1_000_000,
            ),
            (
                "limits.tracked_addresses",
                u64::from(limits.tracked_addresses),
                1000,
                10_000_000,
            ),
            (
                "limits.json_body_kb",
                u64::from(limits.json_body_kb),
                1,
                65_536,
            ),
            ("limits.max_stations", limits.max_stations as u64, 1, 256),
        ] {
            check_range(key, value, min, max).map_err(|m| invalid(key, m))?;
        }
        for (index, allowed) in limits.cors_origins.iter().enumerate() {
            let well_formed = (allowed.starts_with("http://") || allowed.starts_with("https://"))
                && !allowed.ends_with('/')
                && actix_web::http::header::HeaderValue::from_str(allowed).is_ok();
            if !well_formed {
                return Err(invalid(
                    &format!("limits.cors_origins[{index}]"),
                    format!(
                        "`{allowed}` is not an origin like https://radio.example.com (scheme, host, optional port, no path)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The station with this id.
    pub fn station(&self, id: &str) -> Option<&StationConfig> {
        self.stations.iter().find(|s| s.id == id)
    }
}

fn check_range<T: PartialOrd + Copy + std::fmt::Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("{value} is outside {min}..={max} (key {key})"))
    }
}

/// A key of a station's settings that is out of range or malformed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("key `{field}`: {message}")]
pub struct InvalidStationField {
    /// The key under the station, e.g. `renditions_kbps[1]`.
    pub field: String,
    pub message: String,
}

impl StationConfig {
    /// Checks every key of the station, as the config file check and the station API
    /// do; the error names the first bad key.
    pub fn validate(&self) -> Result<(), InvalidStationField> {
        let invalid = |field: &str, message: String| InvalidStationField {
            field: field.to_string(),
            message,
        };
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(invalid(
                "id",
                format!(
                    "`{}` must be 1 to 64 lowercase letters, digits, '-' or '_'",
                    self.id
                ),
            ));
        }
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty".into()));
        }
        if self.renditions_kbps.is_empty() {
            return Err(invalid(
                "renditions_kbps",
                "at least one rendition is needed".into(),
            ));
        }
        if self.renditions_kbps.len() > 8 {
            return Err(invalid(
                "renditions_kbps",
                format!("{} renditions; at most 8", self.renditions_kbps.len()),
            ));
        }
        let mut seen = HashSet::new();
        for (r, kbps) in self.renditions_kbps.iter().enumerate() {
            let key = format!("renditions_kbps[{r}]");
            check_range(&key, *kbps, 6, 510).map_err(|m| invalid(&key, m))?;
            if !seen.insert(*kbps) {
                return Err(invalid(&key, format!("{kbps} kb/s is listed twice")));
            }
        }
        check_range("crossfade_ms", self.crossfade_ms, 0, 30_000)
            .map_err(|m| invalid("crossfade_ms", m))?;
        check_range("dead_air_ms", self.dead_air_ms, 500, 60_000)
            .map_err(|m| invalid("dead_air_ms", m))?;
        if let Some(seconds) = self.track_seconds
            && !(1.0..=1200.0).contains(&seconds)
        {
            return Err(invalid(
                "track_seconds",
                format!("{seconds} is outside 1..=1200 seconds"),
            ));
        }
        if !(2..=16).contains(&self.upcoming_tracks) {
            return Err(invalid(
                "upcoming_tracks",
                format!("{} is outside 2..=16", self.upcoming_tracks),
            ));
        }
        if let Some(target) = self.mastering_target_lufs {
            if !target.is_finite() {
                return Err(invalid(
                    "mastering_target_lufs",
                    format!("{target} is not a number"),
                ));
            }
            check_range("mastering_target_lufs", target, -60.0, 0.0)
                .map_err(|m| invalid("mastering_target_lufs", m))?;
        }
        if let Some(packets) = self.send_batch_packets {
            check_send_batch_packets(packets).map_err(|m| invalid("send_batch_packets", m))?;
        }
        if let Some(page_ms) = self.http_page_ms {
            check_http_page_ms(page_ms).map_err(|m| invalid("http_page_ms", m))?;
        }
        if self.playlist.is_empty() {
            return Err(invalid("playlist", "at least one prompt is needed".into()));
        }
        for (p, prompt) in self.playlist.iter().enumerate() {
            if let Err(error) = sonicforge_engine::generate::parse_prompt(prompt) {
                return Err(invalid(&format!("playlist[{p}]"), error.to_string()));
            }
        }
        validate_station_playlists(self).map_err(|(field, message)| invalid(&field, message))
    }
}

/// The playlist keys of a station: `Err((key under the station, message))`.
fn validate_station_playlists(station: &StationConfig) -> Result<(), (String, String)> {
    if let Some(name) = &station.playlist_name {
        crate::playlists::validate_name(name)
            .map_err(|error| ("playlist_name".to_string(), error.to_string()))?;
    }
    if station.swap_ready_playlists > 8 {
        return Err((
            "swap_ready_playlists".into(),
            format!("{} is outside 0..=8", station.swap_ready_playlists),
        ));
    }
    match (station.jingle_every_minutes, &station.jingle) {
        (Some(minutes), Some(jingle)) => {
            if !(1..=1440).contains(&minutes) {
                return Err((
                    "jingle_every_minutes".into(),
                    format!("{minutes} is outside 1..=1440"),
                ));
            }
            // Files are checked against the media library when the jingle is due.
            jingle
                .validate("", &|_| true)
                .map_err(|error| match error {
                    crate::playlists::PlaylistError::Invalid { field, message } => {
                        (format!("jingle.{field}"), message)
                    }
                    other => ("jingle".into(), other.to_string()),
                })?;
        }
        (Some(_), None) => {
            return Err((
                "jingle".into(),
                "jingle_every_minutes needs a jingle".into(),
            ));
        }
        (None, Some(_)) => {
            return Err((
                "jingle_every_minutes".into(),
                "a jingle needs jingle_every_minutes".into(),
            ));
        }
        (None, None) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        Config::parse(text, "test.toml").unwrap_err().to_string()
    }

    const MINIMAL: &str = r#"
[[stations]]
id = "main"
name = "Main"
playlist = ["lofi chill 80 bpm A minor"]
"#;

    #[test]
    fn shipped_default_config_loads() {
        let config = Config::load(None).unwrap();
        let main = config.station("main").unwrap();
        assert_eq!(main.renditions_kbps, vec![64, 128]);
        assert_eq!(main.crossfade_ms, 4000);
        assert_eq!(config.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.listeners, ListenerConfig::default());
    }

    #[test]
    fn shipped_file_on_disk_matches_the_embedded_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/sonicforge.toml");
        assert_eq!(
            Config::load(Some(&path)).unwrap(),
            Config::load(None).unwrap()
        );
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let config = Config::parse(MINIMAL, "test.toml").unwrap();
        assert_eq!(config.stations[0].upcoming_tracks, 2);
        assert_eq!(config.listeners.behind_deadline_ms, 10_000);
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let message = error_of(&format!("{MINIMAL}colour = \"red\"\n"));
        assert!(message.contains("test.toml"), "{message}");
        assert!(message.contains("colour"), "{message}");
    }

    #[test]
    fn unknown_key_in_a_section_is_an_error() {
        let message = error_of(&format!("[listeners]\npre_rol_ms = 300\n{MINIMAL}"));
        assert!(message.contains("pre_rol_ms"), "{message}");
    }

    #[test]
    fn wrong_type_is_named() {
        let message = error_of(&MINIMAL.replace(
            "name = \"Main\"",
            "name = \"Main\"\ncrossfade_ms = \"long\"",
        ));
        assert!(message.contains("crossfade_ms"), "{message}");
        assert!(message.contains("test.toml"), "{message}");
    }

    #[test]
    fn bad_bitrate_is_named_with_its_bounds() {
        let message = error_of(&MINIMAL.replace(
            "name = \"Main\"",
            "name = \"Main\"\nrenditions_kbps = [64, 900]",
        ));
        assert!(
            message.contains("stations[0].renditions_kbps[1]"),
            "{message}"
        );
        assert!(message.contains("6..=510"), "{message}");
    }

    #[test]
    fn duplicate_station_is_refused() {
        let message = error_of(&format!("{MINIMAL}{MINIMAL}"));
        assert!(message.contains("defined twice"), "{message}");
    }

    #[test]
    fn empty_prompt_is_refused() {
        let message = error_of(&MINIMAL.replace("[\"lofi chill 80 bpm A minor\"]", "[\"\"]"));
        assert!(message.contains("stations[0].playlist[0]"), "{message}");
    }

    #[test]
    fn station_send_batching_overrides_the_listener_defaults() {
        let config = Config::parse(
            &format!(
                "[listeners]\nsend_batch_packets = 2\nhttp_page_ms = 60\n{MINIMAL}{}",
                MINIMAL.replace("\"main\"", "\"batched\"").replace(
                    "name = \"Main\"",
                    "name = \"Batched\"\nsend_batch_packets = 5\nhttp_page_ms = 200"
                )
            ),
            "test.toml",
        )
        .unwrap();
        let main = config
            .listeners
            .for_station(config.station("main").unwrap());
        assert_eq!((main.send_batch_packets, main.http_page_ms), (2, 60));
        let batched = config
            .listeners
            .for_station(config.station("batched").unwrap());
        assert_eq!((batched.send_batch_packets, batched.http_page_ms), (5, 200));
        assert_eq!(batched.pre_roll_ms, config.listeners.pre_roll_ms);
    }

    #[test]
    fn side_by_side_load_test_config_loads_with_its_batching() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../loadtests/vs-icecast.toml");
        let config = Config::load(Some(&path)).unwrap();
        let batching = |id: &str| {
            let listeners = config.listeners.for_station(config.station(id).unwrap());
            (listeners.send_batch_packets, listeners.http_page_ms)
        };
        assert_eq!(batching("page20"), (1, 20));
        assert_eq!(batching("page100"), (5, 100));
    }

    #[test]
    fn station_send_batching_out_of_range_is_named() {
        let message = error_of(&MINIMAL.replace(
            "name = \"Main\"",
            "name = \"Main\"\nsend_batch_packets = 51",
        ));
        assert!(
            message.contains("stations[0].send_batch_packets"),
            "{message}"
        );
        assert!(message.contains("1..=50"), "{message}");
        let message =
            error_of(&MINIMAL.replace("name = \"Main\"", "name = \"Main\"\nhttp_page_ms = 30"));
        assert!(message.contains("stations[0].http_page_ms"), "{message}");
        assert!(message.contains("multiple of 20"), "{message}");
        let message = error_of(&format!("[listeners]\nhttp_page_ms = 1020\n{MINIMAL}"));
        assert!(message.contains("listeners.http_page_ms"), "{message}");
        assert!(message.contains("20..=1000"), "{message}");
    }

    #[test]
    fn environment_overrides_listen_and_data_dir() {
        let mut config = Config::parse(MINIMAL, "test.toml").unwrap();
        config
            .apply_environment(|key| match key {
                "SONICFORGE_LISTEN" => Some("127.0.0.1:9999".into()),
                "SONICFORGE_DATA_DIR" => Some("/tmp/sf".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.server.listen.port(), 9999);
        assert_eq!(config.server.data_dir, PathBuf::from("/tmp/sf"));
        let error = config
            .apply_environment(|key| (key == "SONICFORGE_LISTEN").then(|| "nowhere".into()))
            .unwrap_err();
        assert!(error.to_string().contains("SONICFORGE_LISTEN"));
    }
}
