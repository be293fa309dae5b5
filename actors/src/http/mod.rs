//! The actix-web application: player pages, the station API, listener streams,
//! metrics and health.

mod console;
mod media;
mod openapi;
mod play_events;
mod playlists;
mod station_events;
mod stations;
mod validation;
mod web_files;

pub use validation::{ApiJson, ApiQuery, cors, json_config, path_config, query_config};

use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use actix::Actor;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Access;
use crate::config::Config;
use crate::listen::{
    CapReached, Handover, HttpListener, ListenerCaps, ListenerOrigin, ListenerSession,
};
use crate::metrics::{ListenerMetrics, Metrics, TRANSPORT_HTTP, TRANSPORT_WEBSOCKET};
use crate::station::{NowPlaying, Station, StationEntry, StationOrigin, Stations};

/// Shared by every request handler.
pub struct AppState {
    pub stations: Arc<Stations>,
    pub metrics: Metrics,
    pub config: Arc<Config>,
    next_serial: AtomicU32,
    /// Salt of the listeners' address hashes in play events.
    pub client_hash_salt: Vec<u8>,
    /// The play-event store's read side, for the history and statistics API.
    pub events: Option<crate::events::SharedReader>,
    /// The media library (uploads and the watched folder), when the server opened one.
    pub media: Option<Arc<crate::media_library::MediaLibrary>>,
    /// Tokens, roles, the rate limit and CORS origins (see [`crate::auth`]).
    pub access: Arc<Access>,
    /// Places for listeners under `[limits] max_listeners` and `max_listeners_per_station`.
    pub listener_caps: Arc<ListenerCaps>,
    /// Adds, stops, starts and removes stations (the station API), when the server
    /// runs them.
    pub station_control: Option<Arc<crate::station_control::StationControl>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("stations", &self.stations.len())
            .field("event_reader", &self.events.is_some())
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        stations: Arc<Stations>,
        metrics: Metrics,
        config: Arc<Config>,
        client_hash_salt: Vec<u8>,
        access: Arc<Access>,
    ) -> Self {
        let listener_caps = Arc::new(ListenerCaps::new(
            config.limits.max_listeners,
            config.limits.max_listeners_per_station,
        ));
        Self {
            stations,
            metrics,
            config,
            next_serial: AtomicU32::new(0x5f0_0001),
            client_hash_salt,
            events: None,
            media: None,
            access,
            listener_caps,
            station_control: None,
        }
    }

    /// Serves the station API (add, stop, start, remove) through `control`.
    pub fn with_station_control(
        mut self,
        control: Arc<crate::station_control::StationControl>,
    ) -> Self {
        self.station_control = Some(control);
        self
    }

    /// Serves the media library API from `library`.
    pub fn with_media_library(mut self, library: Arc<crate::media_library::MediaLibrary>) -> Self {
        self.media = Some(library);
        self
    }

    /// Answers the play-event read API from `reader`.
    pub fn with_event_reader(mut self, reader: crate::events::SharedReader) -> Self {
        self.events = Some(reader);
        self
    }

    /// The running station `id`.
    fn station(&self, id: &str) -> Result<Arc<Station>, ApiError> {
        self.stations.get(id).ok_or_else(|| {
            if self.stations.entry(id).is_some() {
                ApiError::StationStopped(id.to_string())
            } else {
                ApiError::UnknownStation(id.to_string())
            }
        })
    }
}

/// Errors answered to API and stream requests, as JSON.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no station `{0}`")]
    UnknownStation(String),
    #[error("station `{0}` is stopped")]
    StationStopped(String),
    #[error("station `{station}` has no {requested} kb/s rendition")]
    UnknownRendition {
        station: String,
        requested: u32,
        available: Vec<u32>,
    },
    #[error("no such page")]
    NotFound,
    #[error("websocket handshake failed: {0}")]
    Handshake(String),
    #[error("chaos hooks are disabled; set [chaos] enabled = true in the config")]
    ChaosDisabled,
    #[error("nothing killed: {0}")]
    NothingToKill(#[from] crate::supervise::chaos::KillError),
    #[error("{0}; try again later")]
    ListenerCap(#[from] CapReached),
    /// The stream was asked of a server that does not hand connections over.
    #[error("this server cannot hand a connection over to the page writer")]
    NoHandover,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::UnknownStation(_) | Self::NotFound => StatusCode::NOT_FOUND,
            Self::UnknownRendition { .. } | Self::Handshake(_) => StatusCode::BAD_REQUEST,
            Self::ChaosDisabled => StatusCode::FORBIDDEN,
            Self::NothingToKill(_) => StatusCode::CONFLICT,
            Self::ListenerCap(_) | Self::StationStopped(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NoHandover => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let detail = match self {
            Self::UnknownRendition { available, .. } => json!({ "available_kbps": available }),
            Self::ListenerCap(CapReached::Station { limit }) => {
                json!({ "scope": "station", "limit": limit })
            }
            Self::ListenerCap(CapReached::Total { limit }) => {
                json!({ "scope": "total", "limit": limit })
            }
            _ => serde_json::Value::Null,
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, Self::ListenerCap(_)) {
            response.insert_header((header::RETRY_AFTER, LISTENER_CAP_RETRY_SECONDS));
        }
        response.json(json!({ "error": self.to_string(), "detail": detail }))
    }
}

/// Seconds a listener turned away by a cap is asked to wait (`Retry-After`).
const LISTENER_CAP_RETRY_SECONDS: u64 = 5;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(web_files::index))
        .route("/stations/{id}", web::get().to(station_page))
        .route("/stations/{id}/ws", web::get().to(websocket))
        .route("/stations/{id}/stream.opus", web::get().to(http_stream))
        .route("/assets/{file}", web::get().to(web_files::asset))
        .route("/manifest.webmanifest", web::get().to(web_files::manifest))
        .route("/sw.js", web::get().to(web_files::service_worker))
        .route("/api/stations", web::get().to(list_stations))
        .route("/api/stations/{id}", web::get().to(get_station))
        .route(
            "/api/stations/{id}/now-playing",
            web::get().to(play_events::now_playing),
        )
        .route(
            "/api/stations/{id}/history",
            web::get().to(play_events::history),
        )
        .route(
            "/api/stations/{id}/stats",
            web::get().to(play_events::stats),
        )
        .route(
            "/api/tracks/{id}/plays",
            web::get().to(play_events::track_plays),
        )
        .route("/api/admin/chaos", web::post().to(chaos))
        .route("/metrics", web::get().to(metrics))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .default_service(web::to(not_found));
    cfg.configure(station_events::configure);
    cfg.configure(playlists::configure);
    cfg.configure(media::configure);
    cfg.configure(console::configure);
    cfg.configure(openapi::configure);
    cfg.configure(stations::configure);
}

/// Unknown paths: 404. A known path asked with a method it does not take: 405, with
/// the methods it takes in `Allow` (from the OpenAPI document).
async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    match openapi::allowed_methods(req.path()) {
        Some(allowed) => Ok(openapi::method_not_allowed(req.method(), &allowed)),
        None => Err(ApiError::NotFound),
    }
}

/// `GET /stations/{id}`: the player page of a station.
#[utoipa::path(
    get,
    path = "/stations/{id}",
    tag = "pages",
    params(("id" = String, Path, description = "The station's id")),
    responses(
        (status = 200, description = "The player page", content_type = "text/html", body = String),
        (status = 404, description = "No such station", body = openapi::ErrorBody),
        (status = 500, description = "The player page is missing from this build", content_type = "text/plain", body = String),
    )
)]
async fn station_page(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // A stopped station keeps its page: the player shows it off air.
    if state.stations.entry(&id).is_none() {
        return Err(ApiError::UnknownStation(id.into_inner()));
    }
    Ok(web_files::station_page())
}

/// The rendition a listener asks for.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// The rendition's bitrate in kb/s (one of the station's `renditions`); the
    /// station's first rendition when left out.
    bitrate: Option<u32>,
}

fn rendition_index(station: &Station, bitrate: Option<u32>) -> Result<usize, ApiError> {
    let feed = station
        .feed(bitrate)
        .ok_or_else(|| ApiError::UnknownRendition {
            station: station.id().to_string(),
            requested: bitrate.unwrap_or_default(),
            available: station.config.renditions_kbps.clone(),
        })?;
    Ok(station
        .feeds
        .iter()
        .position(|f| f.bitrate_kbps == feed.bitrate_kbps)
        .unwrap_or_default())
}

/// `GET /stations/{id}/ws`: the station's Opus packets over a WebSocket, one binary
/// message per packet (wire format in `sonicforge_engine::codec::wire`).
#[utoipa::path(
    get,
    path = "/stations/{id}/ws",
    tag = "listen",
    params(("id" = String, Path, description = "The station's id"), StreamQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol: a `hello` text message, then one binary message per Opus packet and `now_playing` text messages"),
        (status = 400, description = "No such rendition (`detail.available_kbps`), a bad query or a failed handshake", body = openapi::ErrorBody),
        (status = 404, description = "No such station", body = openapi::ErrorBody),
        (status = 503, description = "A listener cap is reached, or the station is stopped", body = openapi::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait (listener caps)"))),
    )
)]
async fn websocket(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: ApiQuery<StreamQuery>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let station = state.station(&id)?;
    let rendition = rendition_index(&station, query.bitrate)?;
    let slot = state.listener_caps.reserve(station.id())?;
    let (response, session, inbound) =
        actix_ws::handle(&req, body).map_err(|error| ApiError::Handshake(error.to_string()))?;
    let metrics = ListenerMetrics::new(
        &state.metrics,
        station.id(),
        TRANSPORT_WEBSOCKET,
        station.feeds[rendition].bitrate_kbps,
    );
    let origin = ListenerOrigin::of(&req, &state.client_hash_salt);
    ListenerSession::new(station, rendition, session, inbound, metrics, origin, slot).start();
    Ok(response)
}

/// `GET /stations/{id}/stream.opus`: the station as an endless Ogg Opus stream.
#[utoipa::path(
    get,
    path = "/stations/{id}/stream.opus",
    tag = "listen",
    params(("id" = String, Path, description = "The station's id"), StreamQuery),
    responses(
        (status = 200, description = "An endless Ogg Opus stream", content_type = "audio/ogg", body = openapi::Binary),
        (status = 400, description = "No such rendition (`detail.available_kbps`) or a bad query", body = openapi::ErrorBody),
        (status = 404, description = "No such station", body = openapi::ErrorBody),
        (status = 503, description = "A listener cap is reached, or the station is stopped", body = openapi::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait (listener caps)"))),
    )
)]
async fn http_stream(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: ApiQuery<StreamQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let handover = req
        .conn_data::<Rc<Handover>>()
        .ok_or(ApiError::NoHandover)?;
    let station = state.station(&id)?;
    let rendition = rendition_index(&station, query.bitrate)?;
    let slot = state.listener_caps.reserve(station.id())?;
    let metrics = ListenerMetrics::new(
        &state.metrics,
        station.id(),
        TRANSPORT_HTTP,
        station.feeds[rendition].bitrate_kbps,
    );
    let serial = state.next_serial.fetch_add(1, Ordering::Relaxed);
    handover.arm(HttpListener::new(
        station,
        rendition,
        serial,
        metrics,
        ListenerOrigin::of(&req, &state.client_hash_salt),
        slot,
    ));
    // The head only: the connection then leaves actix-http for the page writer,
    // which sends the stream until the connection ends (no length, no chunks).
    let mut response = HttpResponse::Ok()
        .content_type("audio/ogg")
        .insert_header(CacheControl(vec![
            CacheDirective::NoCache,
            CacheDirective::NoStore,
        ]))
        .insert_header((
            header::HeaderName::from_static("x-content-type-options"),
            "nosniff",
        ))
        .force_close()
        .streaming(futures_util::stream::empty::<Result<Bytes, Infallible>>());
    response.head_mut().no_chunking(true);
    Ok(response)
}

/// A station as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StationView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub renditions: Vec<u32>,
    /// Whether the station runs or was stopped through the API.
    pub state: StationRunState,
    /// Where its settings come from: the config file, or the station API.
    pub origin: StationOrigin,
    pub listeners: i64,
    pub on_air: bool,
    /// The playlist the station plays (see `/api/stations/{id}/playlist`).
    pub playlist: Option<String>,
    pub now_playing: Option<NowPlaying>,
    pub up_next: Vec<UpNext>,
}

/// A queued track as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpNext {
    pub track_id: String,
    pub title: String,
    pub prompt: String,
}

/// Whether a station runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StationRunState {
    Running,
    Stopped,
}

impl StationView {
    /// The view of a station, running or stopped.
    pub(crate) fn of_entry(entry: &StationEntry) -> Self {
        match &entry.running {
            Some(station) => Self::of(station, entry.origin),
            None => Self {
                id: entry.config.id.clone(),
                name: entry.config.name.clone(),
                description: entry.config.description.clone(),
                renditions: entry.config.renditions_kbps.clone(),
                state: StationRunState::Stopped,
                origin: entry.origin,
                listeners: 0,
                on_air: false,
                playlist: None,
                now_playing: None,
                up_next: Vec::new(),
            },
        }
    }

    pub(crate) fn of(station: &Station, origin: StationOrigin) -> Self {
        Self {
            id: station.id().to_string(),
            name: station.config.name.clone(),
            description: station.config.description.clone(),
            renditions: station.config.renditions_kbps.clone(),
            state: StationRunState::Running,
            origin,
            listeners: station.listener_count(),
            on_air: station.is_audio_flowing(),
            playlist: station.playlist_name(),
            now_playing: station.now_playing(),
            up_next: station
                .board
                .up_next()
                .iter()
                .map(|t| UpNext {
                    track_id: t.track_id.clone(),
                    title: t.title.clone(),
                    prompt: t.prompt.clone(),
                })
                .collect(),
        }
    }
}

/// Every station.
#[derive(Debug, Serialize, ToSchema)]
struct StationList {
    stations: Vec<StationView>,
}

/// `GET /api/stations`
#[utoipa::path(
    get,
    path = "/api/stations",
    tag = "stations",
    responses((status = 200, description = "Every station", body = StationList))
)]
async fn list_stations(state: web::Data<AppState>) -> HttpResponse {
    let stations: Vec<_> = state
        .stations
        .entries()
        .iter()
        .map(StationView::of_entry)
        .collect();
    HttpResponse::Ok().json(StationList { stations })
}

/// `GET /api/stations/{id}`
#[utoipa::path(
    get,
    path = "/api/stations/{id}",
    tag = "stations",
    params(("id" = String, Path, description = "The station's id")),
    responses(
        (status = 200, description = "The station", body = StationView),
        (status = 404, description = "No such station", body = openapi::ErrorBody),
    )
)]
async fn get_station(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let entry = state
        .stations
        .entry(&id)
        .ok_or_else(|| ApiError::UnknownStation(id.to_string()))?;
    Ok(HttpResponse::Ok().json(StationView::of_entry(&entry)))
}

/// `POST /api/admin/chaos`: which actor of which station to kill, and how.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChaosRequest {
    station: String,
    actor: crate::supervise::chaos::ChaosActor,
    mode: crate::supervise::chaos::ChaosMode,
}

/// `POST /api/admin/chaos`: kills one actor of a station (`[chaos] enabled` only).
#[utoipa::path(
    post,
    path = "/api/admin/chaos",
    tag = "admin",
    request_body = ChaosRequest,
    responses(
        (status = 202, description = "The actor was killed; its supervisor restarts it", body = crate::supervise::chaos::Killed),
        (status = 403, description = "Chaos hooks are disabled, or the token's role is below admin", body = openapi::ErrorBody),
        (status = 404, description = "No such station", body = openapi::ErrorBody),
        (status = 409, description = "Nothing to kill (no listener, or the station is stopped)", body = openapi::ErrorBody),
        (status = 503, description = "The station is stopped", body = openapi::ErrorBody),
    )
)]
async fn chaos(
    state: web::Data<AppState>,
    request: ApiJson<ChaosRequest>,
) -> Result<HttpResponse, ApiError> {
    if !state.config.chaos.enabled {
        return Err(ApiError::ChaosDisabled);
    }
    let station = state.station(&request.station)?;
    let killed = station.kill(request.actor, request.mode)?;
    Ok(HttpResponse::Accepted().json(killed))
}

/// `GET /metrics`: Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "The metrics in Prometheus' text format", content_type = "text/plain", body = String))
)]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

/// The answer of `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
struct Liveness {
    /// Always `alive`.
    status: &'static str,
}

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is alive", body = Liveness))
)]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Liveness { status: "alive" })
}

/// The answer of `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
struct Readiness<'a> {
    /// `ready` or `not ready`.
    status: &'static str,
    /// Stations whose audio does not flow (only when not ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    stations_without_audio: Option<Vec<&'a str>>,
    /// Stations playing their fallback loop or restarting (only when not ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    stations_degraded: Option<Vec<&'a str>>,
}

/// `GET /readyz`: every station's audio flows.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Every station's audio flows", body = Readiness),
        (status = 503, description = "A station has no audio or is degraded", body = Readiness),
    )
)]

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let running = state.stations.running();
    let not_flowing: Vec<&str> = running
        .iter()
        .filter(|s| !s.is_audio_flowing())
        .map(|s| s.id())
        .collect();
    let degraded: Vec<&str> = running
        .iter()
        .filter(|s| s.is_degraded())
        .map(|s| s.id())
        .collect();
    if not_flowing.is_empty() && degraded.is_empty() {
        HttpResponse::Ok().json(Readiness {
            status: "ready",
            stations_without_audio: None,
            stations_degraded: None,
        })
    } else {
        HttpResponse::ServiceUnavailable().json(Readiness {
            status: "not ready",
            stations_without_audio: Some(not_flowing),
            stations_degraded: Some(degraded),
        })
    }
}
