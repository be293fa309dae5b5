//! Starting the engine: stations first, then the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use actix_service::{IntoServiceFactory, ServiceFactoryExt};
use actix_web::{App, web};

use crate::config::Config;
use crate::http::{self, AppState};
use crate::listen::{ListenerIo, tune_listener_socket};
use crate::metrics::Metrics;
use crate::station::{ALIVE_EVERY, AliveMarker, StationError, Stations};
use crate::station_control::{
    LISTENERS_LEAVE_WITHIN, StationControl, StationControlError, StoredStations,
};
use crate::station_events::StationEvents;
use crate::supervise::root::RootSupervisor;

/// Errors while starting the engine.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Station(#[from] StationError),
    #[error(transparent)]
    StationControl(#[from] StationControlError),
    #[error(transparent)]
    Mastering(#[from] crate::mastering::MasteringSetupError),
    #[error(transparent)]
    Events(#[from] crate::events::EventStoreError),
    #[error(transparent)]
    Webhooks(#[from] crate::webhooks::WebhookError),
    #[error(transparent)]
    Playlists(#[from] crate::playlists::PlaylistError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error(
        "chaos hooks are enabled but the server listens on {addr}, which is not loopback; \
         set [chaos] allow_non_loopback = true to allow it"
    )]
    ChaosOnPublicAddress { addr: SocketAddr },
    /// The media library cannot be opened.
    #[error("media library: {0}")]
    Media(#[source] crate::media_library::LibraryError),
}

/// Pending connections the listening socket queues (a reconnect storm must not overflow it).
const LISTEN_BACKLOG: i32 = 4096;
/// Time connections get to finish when the engine shuts down.
const SHUTDOWN_SECONDS: u64 = 3;
/// Time a client gets to send a request's head.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client gets to close its side once the server closed a connection.
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A started engine: its stations and the bound HTTP server.
pub struct Engine {
    pub stations: Arc<Stations>,
    pub addrs: Vec<SocketAddr>,
    server: actix_web::dev::Server,
    /// The root of the supervision tree; its station supervisors run while it lives.
    root: Addr<RootSupervisor>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("addrs", &self.addrs)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts every station and binds the HTTP server. Must run inside an actix system.
    pub fn start(config: Config) -> Result<Self, ServerError> {
        let addr = config.server.listen;
        if config.chaos.enabled && !config.chaos.allow_non_loopback && !addr.ip().is_loopback() {
            return Err(ServerError::ChaosOnPublicAddress { addr });
        }
        let access = Arc::new(crate::auth::Access::from_config(&config, |key| {
            std::env::var(key).ok()
        })?);
        let metrics = Metrics::new();
        let mastering = crate::mastering::choose(&config.mastering)?;
        let event_reader = open_event_reader(&config);
        let stored = StoredStations::load(&config.server.data_dir)?;
        let station_configs = stored.with_config_file(&config);
        let all_configs: Vec<_> = station_configs
            .iter()
            .map(|(station, _)| station.clone())
            .collect();
        let playlists = Arc::new(crate::playlists::PlaylistStore::open(
            &config.server.data_dir,
            &all_configs,
        )?);
        let stations = Arc::new(Stations::new(Arc::clone(&playlists)));
        let root = RootSupervisor::default().start();
        let station_events = Arc::new(StationEvents::default());
        let config = Arc::new(config);
        let control = Arc::new(StationControl::new(
            Arc::clone(&stations),
            Arc::clone(&config),
            mastering,
            metrics.clone(),
            event_reader.clone(),
            root.clone(),
            Arc::clone(&station_events),
        ));
        for (station_config, origin) in station_configs {
            if stored.stopped.contains(&station_config.id) {
                control.keep_stopped(station_config, origin);
            } else {
                control.launch(station_config, origin)?;
            }
        }
        record_stations_alive(&stations, &config.server.data_dir);
        crate::webhooks::start(
            &config.webhooks,
            |key| std::env::var(key).ok(),
            &metrics,
            station_events.subscribe_all(),
        )?;
        let station_events = web::Data::from(station_events);
        let salt = client_hash_salt(&config.server.data_dir);
        let mut app_state = AppState::new(
            Arc::clone(&stations),
            metrics,
            Arc::clone(&config),
            salt,
            access,
        )
        .with_station_control(control);
        if let Some(reader) = event_reader {
            app_state = app_state.with_event_reader(reader);
        }
        let media = Arc::new(
            crate::media_library::MediaLibrary::open(&config.media, &config.server.data_dir)
                .map_err(ServerError::Media)?,
        );
        media.start_watching().map_err(ServerError::Media)?;
        stations.use_media_library(&media);
        app_state = app_state.with_media_library(media);
        let state = web::Data::new(app_state);
        let listener_config = config.listeners;
        let workers = match config.server.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let json_limit = config.limits.json_body_kb as usize * 1024;
        let cors_origins = config.limits.cors_origins.clone();
        let app = move || {
            App::new()
                .app_data(state.clone())
                .app_data(station_events.clone())
                .app_data(http::query_config())
                .app_data(http::path_config())
                .app_data(http::json_config(json_limit))
                .configure(http::configure)
                .wrap(actix_web::middleware::from_fn(crate::auth::enforce))
                .wrap(actix_web::middleware::Condition::new(
                    !cors_origins.is_empty(),
                    http::cors(&cors_origins),
                ))
                .wrap(actix_web::middleware::from_fn(
                    crate::auth::reject_foreign_preflight,
                ))
                .wrap(actix_web::middleware::from_fn(
                    crate::http_metrics::count_requests,
                ))
        };
        let listening = bind_listener(addr).map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listening
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let builder = actix_server::Server::build();
        let shutdown = builder.graceful_shutdown_signal();
        let builder = builder
            .workers(workers)
            .disable_signals()
            .shutdown_timeout(SHUTDOWN_SECONDS)
            .listen("sonicforge-http", listening, move || {
                let shutdown = shutdown.clone();
                let http = actix_http::HttpService::build()
                    .keep_alive(actix_http::KeepAlive::default())
                    .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
                    .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                    .h1_allow_half_closed(true)
                    .local_addr(local_addr)
                    // Idle keep-alive connections close as soon as the server stops.
                    .graceful_shutdown_signal(move || {
                        let shutdown = shutdown.clone();
                        async move { shutdown.notified().await }
                    })
                    .on_connect_ext(|io: &ListenerIo, extensions| {
                        extensions.insert(io.handover());
                    })
                    .finish(actix_service::map_config(
                        app()
                            .into_factory()
                            .map_err(|error: actix_web::Error| error.error_response()),
                        |()| actix_web::dev::AppConfig::default(),
                    ));
                actix_service::fn_service(move |stream: actix_web::rt::net::TcpStream| {
                    tune_listener_socket(&stream, &listener_config);
                    let peer = stream.peer_addr().ok();
                    std::future::ready(Ok::<_, actix_http::error::DispatchError>((
                        ListenerIo::new(stream),
                        actix_http::Protocol::Http1,
                        peer,
                    )))
                })
                .and_then(http)
            })
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addrs = vec![local_addr];
        let server = builder.run();
        Ok(Self {
            stations,
            addrs,
            server,
            root,
        })
    }

    /// Serves until the server stops (Ctrl-C or SIGTERM), then stops the stations.
    pub async fn serve(self) -> Result<(), ServerError> {
        let handle = self.server.handle();
        let stations = Arc::clone(&self.stations);
        let signals = actix_web::rt::spawn(async move {
            wait_for_shutdown_signal().await;
            tracing::info!("shutting down");
            // Ending the stations ends every listener's stream, so the server can drain.
            stations.stop_all();
            // HTTP listeners are no longer the server's connections: their page writers
            // end them, and the server stops once they have left.
            let running = stations.running();
            futures_util::future::join_all(
                running
                    .iter()
                    .map(|station| station.listeners_left(LISTENERS_LEAVE_WITHIN)),
            )
            .await;
            handle.stop(true).await;
        });
        let result = self.server.await.map_err(ServerError::Serve);
        signals.abort();
        self.stations.stop_all();
        // Listeners have left (the server drained): their last events are queued.
        for station in self.stations.running() {
            station.flush_events(Duration::from_secs(5)).await;
        }
        result
    }
}

/// The listening socket: reusable at once after a restart, with a queue deep enough
/// for a reconnect storm.
fn bind_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The read side of the event store, for the read API and the lookup of sessions left
/// open; `None` (logged) when the store cannot be read now.
fn open_event_reader(config: &Config) -> Option<crate::events::SharedReader> {
    let opened = crate::events::shared_store(&config.events, &config.server.data_dir)
        .map_err(|error| error.to_string())
        .and_then(|store| store.reader().map_err(|error| error.to_string()));
    match opened {
        Ok(reader) => Some(reader),
        Err(error) => {
            tracing::warn!(%error, "the event store cannot be read: the history API answers 503 and sessions left open by an earlier run stay open");
            None
        }
    }
}

/// Writes every station's [`AliveMarker`] every [`ALIVE_EVERY`], off the audio path,
/// for as long as the engine runs.
fn record_stations_alive(stations: &Arc<Stations>, data_dir: &std::path::Path) {
    let stations = Arc::clone(stations);
    let data_dir = data_dir.to_path_buf();
    actix::spawn(async move {
        let mut every = tokio::time::interval(ALIVE_EVERY);
        loop {
            every.tick().await;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis() as u64);
            for station in stations.running() {
                let marker = AliveMarker::new(&data_dir, station.id());
                if let Err(error) = marker.touch(now) {
                    tracing::warn!(%error, ?marker, "cannot record that the station is alive");
                }
            }
        }
    });
}

/// The salt of listener address hashes, kept in the data directory so that a
/// listener's hash stays the same across restarts; made on first use.
fn client_hash_salt(data_dir: &std::path::Path) -> Vec<u8> {
    use std::hash::{BuildHasher, Hasher};
    let path = data_dir.join("client-hash-salt");
    if let Ok(salt) = std::fs::read(&path)
        && salt.len() >= 16
    {
        return salt;
    }
    let mut salt = Vec::with_capacity(32);
    for part in 0..4u64 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(part);
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos()),
        );
        salt.extend_from_slice(&hasher.finish().to_le_bytes());
    }
    let stored = std::fs::create_dir_all(data_dir).and_then(|()| std::fs::write(&path, &salt));
    if let Err(error) = stored {
        tracing::warn!(path = %path.display(), %error, "cannot store the client hash salt; listener hashes change at restart");
    }
    salt
}

async fn wait_for_shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
