//! The ScyllaDB event store: play events in a ScyllaDB or Apache Cassandra
//! cluster, through CQL (the `scylla` driver).
//!
//! One [`ScyllaStore`] per process holds the connection (a driver session) on
//! a small runtime of its own, so that callers on any thread, including
//! actors that run their own async runtime, hand it requests and wait for the
//! answer for a bounded time. [`ScyllaStore::sink`] gives each station's
//! writer an [`EventSink`]; the store itself is the [`EventReader`].
//!
//! # Connecting
//! [`ScyllaStore::open`] tries the cluster once. When no node answers, the
//! store opens anyway and connects on the next request (at most once per
//! [`RECONNECT_PAUSE`]), so an engine starts while the cluster is down and
//! its writers hold or spool their events meanwhile. Once connected, the
//! driver follows nodes going down and coming back by itself. Every
//! connection checks the keyspace's schema version: a keyspace without one,
//! or with another than [`CQL_SCHEMA_VERSION`], is refused with
//! [`EventSinkError::CqlSchemaMismatch`].
//!
//! # Writing
//! See `write.rs`: prepared, idempotent inserts, written with the event's
//! time as their write timestamp, in unlogged batches that each hold rows of
//! one partition only.

mod classify;
mod read;
mod schema;
mod write;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;

use super::EventSink;
use super::error::{EventSinkError, SinkOperation};
use super::model::PlayEvent;

pub use schema::{CQL_SCHEMA_VERSION, MigrateOutcome, Replication, SchemaOptions, TableTtls};

/// A store that could not connect waits this long before it tries again.
pub const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Consistency level of reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CqlConsistency {
    One,
    Two,
    Quorum,
    #[default]
    LocalQuorum,
    LocalOne,
    All,
}

impl CqlConsistency {
    fn driver(self) -> Consistency {
        match self {
            Self::One => Consistency::One,
            Self::Two => Consistency::Two,
            Self::Quorum => Consistency::Quorum,
            Self::LocalQuorum => Consistency::LocalQuorum,
            Self::LocalOne => Consistency::LocalOne,
            Self::All => Consistency::All,
        }
    }
}

/// TLS towards the cluster: the CA that signed the nodes' certificates, and
/// optionally a client certificate and key (mutual TLS). All PEM files. The
/// nodes are checked against the addresses they are reached at, so their
/// certificates must name those addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: PathBuf,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

/// How to reach the cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct ScyllaOptions {
    /// Contact points, `host:port`.
    pub known_nodes: Vec<String>,
    /// Keyspace of the event tables: a letter, then letters, digits or '_'
    /// (48 at most).
    pub keyspace: String,
    pub consistency: CqlConsistency,
    /// Time allowed to open a connection to a node.
    pub connect_timeout: Duration,
    /// Time allowed for one request; a batch's partitions are written in
    /// parallel, each within it.
    pub request_timeout: Duration,
    /// Password authentication, when set.
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<TlsFiles>,
}

impl fmt::Debug for ScyllaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaOptions")
            .field("known_nodes", &self.known_nodes)
            .field("keyspace", &self.keyspace)
            .field("consistency", &self.consistency)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl ScyllaOptions {
    /// Options for a node at `known_nodes` and `keyspace`, with the defaults
    /// of the configuration file (LOCAL_QUORUM, 5 s to connect, 2 s per
    /// request, no authentication, no TLS).
    pub fn new(known_nodes: Vec<String>, keyspace: impl Into<String>) -> Self {
        Self {
            known_nodes,
            keyspace: keyspace.into(),
            consistency: CqlConsistency::LocalQuorum,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(2),
            username: None,
            password: None,
            tls: None,
        }
    }

    /// The cluster as error messages name it: its nodes and keyspace.
    pub fn cluster_name(&self) -> String {
        format!("{}/{}", self.known_nodes.join(","), self.keyspace)
    }

    /// Checks what is interpolated into CQL text or handed to the driver.
    pub(crate) fn validate(&self) -> Result<(), EventSinkError> {
        let setup = |message: String| EventSinkError::ClusterSetup {
            cluster: self.cluster_name(),
            message,
            source: None,
        };
        if !is_identifier(&self.keyspace) {
            return Err(setup(format!(
                "the keyspace name {:?} must be a letter, then letters, digits or '_' (48 at most)",
                self.keyspace.chars().take(64).collect::<String>()
            )));
        }
        if self.known_nodes.is_empty() {
            return Err(setup("no known nodes are configured".into()));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(setup(
                "password authentication needs both a user name and a password".into(),
            ));
        }
        Ok(())
    }

    async fn session(&self, keyspace: bool) -> Result<Session, EventSinkError> {
        let cluster = self.cluster_name();
        let profile = ExecutionProfile::builder()
            .consistency(self.consistency.driver())
            .request_timeout(Some(self.request_timeout))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&self.known_nodes)
            .connection_timeout(self.connect_timeout)
            .default_execution_profile_handle(profile.into_handle());
        if keyspace {
            builder = builder.use_keyspace(&self.keyspace, false);
        }
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            builder = builder.user(user, password);
        }
        if let Some(tls) = &self.tls {
            builder = builder.tls_context(Some(tls_config(tls, &cluster)?));
        }
        // The builder bounds each connection by the connect timeout; the
        // whole start (several nodes, metadata) by a few of them.
        let limit = self.connect_timeout * 3 + self.request_timeout;
        match tokio::time::timeout(limit, builder.build()).await {
            Ok(Ok(session)) => Ok(session),
            Ok(Err(error)) => Err(classify::new_session(&cluster, error)),
            Err(_) => Err(EventSinkError::ClusterUnavailable {
                cluster,
                operation: SinkOperation::Open,
                source: format!("no answer within {} ms", limit.as_millis()).into(),
            }),
        }
    }
}

/// `name` is a CQL identifier that needs no quotes.
fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn tls_config(tls: &TlsFiles, cluster: &str) -> Result<Arc<rustls::ClientConfig>, EventSinkError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let setup =
        |message: String, source: Option<super::error::DriverError>| EventSinkError::ClusterSetup {
            cluster: cluster.to_string(),
            message,
            source,
        };
    let certificates = |path: &PathBuf| -> Result<Vec<CertificateDer<'static>>, EventSinkError> {
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|error| {
                setup(
                    format!("cannot read the certificates in {}", path.display()),
                    Some(Box::new(error)),
                )
            })?;
        if certificates.is_empty() {
            return Err(setup(
                format!("{} holds no PEM certificate", path.display()),
                None,
            ));
        }
        Ok(certificates)
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(&tls.ca_file)? {
        roots.add(certificate).map_err(|error| {
            setup(
                format!(
                    "{} holds a CA certificate that cannot be used",
                    tls.ca_file.display()
                ),
                Some(Box::new(error)),
            )
        })?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| {
        setup(
            "no TLS protocol version available".into(),
            Some(Box::new(error)),
        )
    })?
    .with_root_certificates(roots);
    let config = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| {
                setup(
                    format!("cannot read the private key in {}", key_file.display()),
                    Some(Box::new(error)),
                )
            })?;
            builder
                .with_client_auth_cert(certificates(cert_file)?, key)
                .map_err(|error| {
                    setup(
                        format!(
                            "the client certificate {} and key {} do not go together",
                            cert_file.display(),
                            key_file.display()
                        ),
                        Some(Box::new(error)),
                    )
                })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(setup(
                "a client certificate and its key go together".into(),
                None,
            ));
        }
    };
    Ok(Arc::new(config))
}

/// The connection once made: a session bound to the keyspace, whose schema
/// version was checked, with its statements prepared.
struct Connected {
    session: Session,
    statements: write::Statements,
    reads: read::ReadStatements,
}

enum ConnectionState {
    NotYet {
        last_attempt: Option<Instant>,
        last_error: Option<String>,
    },
    Ready(Arc<Connected>),
}

struct Shared {
    options: ScyllaOptions,
    cluster: String,
    handle: tokio::runtime::Handle,
    /// `Some` until the store is dropped.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    connection: tokio::sync::Mutex<ConnectionState>,
    /// (station, kind, day) rows of `station_days` written by this process.
    marked_days: Mutex<HashSet<(String, &'static str, u32)>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Shutting down in the background never blocks, so the last handle
        // may be dropped anywhere, also inside another runtime.
        if let Some(runtime) = self
            .runtime
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            runtime.shutdown_background();
        }
    }
}

/// A connection to the cluster shared by every station of the process: makes
/// [`ScyllaSink`]s and answers reads. Cloning it is cheap and shares it.
#[derive(Clone)]
pub struct ScyllaStore {
    shared: Arc<Shared>,
}

impl fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("cluster", &self.shared.cluster)
            .finish_non_exhaustive()
    }
}

impl ScyllaStore {
    /// Starts the store and tries the cluster once.
    ///
    /// Fails when the options are unusable (a bad keyspace name, unreadable
    /// TLS files), or when the cluster answers but refuses: its schema
    /// version is not [`CQL_SCHEMA_VERSION`] (or missing), or it refuses the
    /// credentials. A cluster that does not answer is not an error: the store
    /// connects later (see the module's documentation).
    pub fn open(options: ScyllaOptions) -> Result<Self, EventSinkError> {
        let store = Self::start(options)?;
        match store.connect() {
            Ok(()) => {}
            Err(error) if error.is_retryable() => {
                tracing::warn!(cluster = %store.shared.cluster, %error,
                    "the event cluster does not answer yet; events are held until it does");
            }
            Err(error) => return Err(error),
        }
        Ok(store)
    }

    /// Starts the store without trying the cluster.
    fn start(options: ScyllaOptions) -> Result<Self, EventSinkError> {
        options.validate()?;
        let cluster = options.cluster_name();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sonicforge-cql")
            .enable_all()
            .build()
            .map_err(|error| EventSinkError::ClusterSetup {
                cluster: cluster.clone(),
                message: "cannot start the threads of the CQL driver".into(),
                source: Some(Box::new(error)),
            })?;
        Ok(Self {
            shared: Arc::new(Shared {
                options,
                cluster,
                handle: runtime.handle().clone(),
                runtime: Mutex::new(Some(runtime)),
                connection: tokio::sync::Mutex::new(ConnectionState::NotYet {
                    last_attempt: None,
                    last_error: None,
                }),
                marked_days: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// Connects now if not connected yet (ignoring the pause between
    /// attempts), checking the schema version.
    pub fn connect(&self) -> Result<(), EventSinkError> {
        let shared = Arc::clone(&self.shared);
        let limit = self.connect_limit();
        self.run(SinkOperation::Open, limit, async move {
            connected(&shared, true).await.map(|_| ())
        })
    }

    /// Whether a connection was made and checked.
    pub fn is_connected(&self) -> bool {
        self.shared
            .connection
            .try_lock()
            .is_ok_and(|state| matches!(*state, ConnectionState::Ready(_)))
    }

    /// A sink writing through this store.
    pub fn sink(&self) -> ScyllaSink {
        ScyllaSink {
            store: self.clone(),
        }
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &ScyllaOptions {
        &self.shared.options
    }

    /// Creates the keyspace (with `schema.replication`) and the tables where
    /// missing, applies the configured TTLs and compaction to existing tables
    /// and records [`CQL_SCHEMA_VERSION`]. Running it again changes nothing
    /// but table options. Refuses a keyspace a newer build migrated.
    pub fn migrate(
        options: ScyllaOptions,
        schema: SchemaOptions,
    ) -> Result<MigrateOutcome, EventSinkError> {
        schema.validate(&options.cluster_name())?;
        let store = Self::start(options)?;
        let options = store.shared.options.clone();
        let limit = store.ddl_limit() * 24;
        store.run(SinkOperation::Schema, limit, async move {
            let session = options.session(false).await?;
            schema::migrate(&session, &options, &schema).await
        })
    }

    /// The schema version recorded in the keyspace, `None` when it has none.
    pub fn schema_version(options: ScyllaOptions) -> Result<Option<i64>, EventSinkError> {
        let store = Self::start(options)?;
        let options = store.shared.options.clone();
        let limit = store.connect_limit();
        store.run(SinkOperation::Schema, limit, async move {
            let session = options.session(false).await?;
            schema::read_version(&session, &options).await
        })
    }

    fn connect_limit(&self) -> Duration {
        let options = &self.shared.options;
        options.connect_timeout * 3 + options.request_timeout * 4
    }

    fn ddl_limit(&self) -> Duration {
        self.shared.options.request_timeout.max(schema::DDL_TIMEOUT)
    }

    /// The bound of a request that may need to connect first and then make
    /// `round_trips` requests one after another.
    fn request_limit(&self, round_trips: u32) -> Duration {
        self.connect_limit() + self.shared.options.request_timeout * round_trips.max(1)
    }

    /// Runs `future` on the store's runtime and waits for it at most `limit`.
    fn run<T, F>(
        &self,
        operation: SinkOperation,
        limit: Duration,
        future: F,
    ) -> Result<T, EventSinkError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, EventSinkError>> + Send + 'static,
    {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.shared.handle.spawn(async move {
            let outcome = tokio::time::timeout(limit, future).await;
            // The caller may have stopped waiting; nothing to do then.
            let _ = answer.send(outcome);
        });
        let timed_out = || EventSinkError::ClusterUnavailable {
            cluster: self.shared.cluster.clone(),
            operation,
            source: format!("no answer within {} ms", limit.as_millis()).into(),
        };
        match answered.recv_timeout(limit + Duration::from_secs(1)) {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_elapsed)) => Err(timed_out()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(timed_out()),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(EventSinkError::ClusterUnavailable {
                    cluster: self.shared.cluster.clone(),
                    operation,
                    source: "the CQL driver's threads stopped".into(),
                })
            }
        }
    }
}

/// The checked connection, made now if there is none and the last attempt
/// is older than [`RECONNECT_PAUSE`] (or `now`).
async fn connected(shared: &Arc<Shared>, now: bool) -> Result<Arc<Connected>, EventSinkError> {
    let mut state = shared.connection.lock().await;
    if let ConnectionState::NotYet {
        last_attempt: Some(at),
        last_error,
    } = &*state
        && !now
        && at.elapsed() < RECONNECT_PAUSE
    {
        return Err(EventSinkError::ClusterUnavailable {
            cluster: shared.cluster.clone(),
            operation: SinkOperation::Open,
            source: last_error
                .clone()
                .unwrap_or_else(|| "not connected yet".into())
                .into(),
        });
    }
    if let ConnectionState::Ready(connected) = &*state {
        return Ok(Arc::clone(connected));
    }
    match connect(&shared.options).await {
        Ok(connection) => {
            let connection = Arc::new(connection);
            *state = ConnectionState::Ready(Arc::clone(&connection));
            tracing::info!(cluster = %shared.cluster, "connected to the event cluster");
            Ok(connection)
        }
        Err(error) => {
            *state = ConnectionState::NotYet {
                last_attempt: Some(Instant::now()),
                last_error: Some(error.to_string()),
            };
            Err(error)
        }
    }
}

async fn connect(options: &ScyllaOptions) -> Result<Connected, EventSinkError> {
    let session = options.session(false).await?;
    let found = schema::read_version(&session, options).await?;
    if found != Some(CQL_SCHEMA_VERSION) {
        return Err(EventSinkError::CqlSchemaMismatch {
            cluster: options.known_nodes.join(","),
            keyspace: options.keyspace.clone(),
            found,
            expected: CQL_SCHEMA_VERSION,
        });
    }
    let statements = write::Statements::prepare(&session, options).await?;
    let reads = read::ReadStatements::prepare(&session, options).await?;
    Ok(Connected {
        session,
        statements,
        reads,
    })
}

/// Writes one station's events through a [`ScyllaStore`]. Many sinks share
/// one store.
#[derive(Debug, Clone)]
pub struct ScyllaSink {
    store: ScyllaStore,
}

impl ScyllaSink {
    pub fn store(&self) -> &ScyllaStore {
        &self.store
    }
}

impl EventSink for ScyllaSink {
    fn name(&self) -> &str {
        "scylla"
    }

    /// Writes the batch's rows grouped by partition, all partitions at once;
    /// fails when any of them fails (see the contract: the writer then writes
    /// the batch again, which lands on the same cells).
    fn write_batch(&mut self, events: &[PlayEvent]) -> Result<(), EventSinkError> {
        if events.is_empty() {
            return Ok(());
        }
        let shared = Arc::clone(&self.store.shared);
        let rows = write::rows_of(events)?;
        let limit = self.store.request_limit(2);
        self.store.run(SinkOperation::Write, limit, async move {
            let connection = connected(&shared, false).await?;
            let unmarked: Vec<write::DayMark> = {
                let marked = shared
                    .marked_days
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                rows.day_marks()
                    .iter()
                    .filter(|mark| !marked.contains(&mark.key()))
                    .cloned()
                    .collect()
            };
            write::execute(&connection, &shared.cluster, rows, &unmarked).await?;
            shared
                .marked_days
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(unmarked.iter().map(write::DayMark::key));
            Ok(())
        })
    }
}
