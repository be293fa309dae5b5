//! Playlists and what operators do on air: playlist CRUD under `/api/playlists`,
//! swapping a station's playlist (now or after the current track), skipping, and
//! queueing requests.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::{ApiJson, AppState};
use crate::playlists::{Playlist, PlaylistError, PlaylistInput, PlaylistItem};
use crate::station::{
    NowPlaying, QueueOutcome, QueueRequest, SkipOutcome, SkipTrack, Station, SwapOutcome,
    SwapPlaylist, SwapWhen, TrackInfo,
};

/// How long a request waits for the station's scheduler to answer.
const SCHEDULER_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/playlists", web::get().to(list))
        .route("/api/playlists", web::post().to(create))
        .route("/api/playlists/{name}", web::get().to(get))
        .route("/api/playlists/{name}", web::put().to(replace))
        .route("/api/playlists/{name}", web::delete().to(delete))
        .route(
            "/api/stations/{id}/playlist",
            web::get().to(station_playlist),
        )
        .route("/api/stations/{id}/playlist", web::put().to(swap))
        .route("/api/stations/{id}/skip", web::post().to(skip))
        .route("/api/stations/{id}/queue", web::post().to(queue));
}

/// Errors of the playlist and on-air routes, as JSON.
#[derive(Debug, thiserror::Error)]
enum ControlError {
    #[error(transparent)]
    Playlist(#[from] PlaylistError),
    #[error("no station `{0}`")]
    UnknownStation(String),
    #[error("station `{0}` is not running")]
    StationDown(String),
    #[error("station `{0}` did not answer in time")]
    NoAnswer(String),
    #[error(transparent)]
    QueueFull(#[from] crate::station::QueueFull),
    #[error("the playlist name in the body (`{body}`) differs from the one in the path (`{path}`)")]
    NameMismatch { path: String, body: String },
}

impl ResponseError for ControlError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Playlist(PlaylistError::Invalid { .. }) | Self::NameMismatch { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Playlist(PlaylistError::NotFound(_)) | Self::UnknownStation(_) => {
                StatusCode::NOT_FOUND
            }
            Self::Playlist(PlaylistError::Exists(_) | PlaylistError::InUse { .. })
            | Self::QueueFull(_) => StatusCode::CONFLICT,
            Self::Playlist(PlaylistError::Persist { .. } | PlaylistError::Load { .. }) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::StationDown(_) | Self::NoAnswer(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let detail = match self {
            Self::Playlist(PlaylistError::Invalid { field, message }) => {
                json!({ "field": field, "message": message })
            }
            Self::Playlist(PlaylistError::NotFound(name)) => {
                json!({ "field": "playlist", "playlist": name })
            }
            Self::Playlist(PlaylistError::Exists(name)) => {
                json!({ "field": "name", "playlist": name })
            }
            Self::Playlist(PlaylistError::InUse { name, station }) => {
                json!({ "playlist": name, "station": station })
            }
            Self::NameMismatch { .. } => json!({ "field": "name" }),
            Self::QueueFull(_) => json!({ "limit": crate::station::MAX_REQUESTS }),
            _ => serde_json::Value::Null,
        };
        if self.status_code().is_server_error() {
            tracing::error!(error = %self, "playlist request failed");
        }
        HttpResponse::build(self.status_code())
            .json(json!({ "error": self.to_string(), "detail": detail }))
    }
}

fn station(state: &AppState, id: &str) -> Result<Arc<Station>, ControlError> {
    state
        .stations
        .get(id)
        .ok_or_else(|| ControlError::UnknownStation(id.to_string()))
}

/// Whether `id` names a file of the media library.
fn media_exists(state: &AppState, id: &str) -> bool {
    state
        .media
        .as_ref()
        .is_some_and(|library| library.get(id).is_some())
}

/// Every playlist.
#[derive(Debug, Serialize, ToSchema)]
struct PlaylistList {
    playlists: Vec<Playlist>,
}

/// `GET /api/playlists`
#[utoipa::path(
    get,
    path = "/api/playlists",
    tag = "playlists",
    responses((status = 200, description = "Every playlist", body = PlaylistList))
)]
async fn list(state: web::Data<AppState>) -> HttpResponse {
    let playlists = state.stations.playlists().list();
    let playlists = playlists.iter().map(|p| Playlist::clone(p)).collect();
    HttpResponse::Ok().json(PlaylistList { playlists })
}

/// `GET /api/playlists/{name}`
#[utoipa::path(
    get,
    path = "/api/playlists/{name}",
    tag = "playlists",
    params(("name" = String, Path, description = "The playlist's name")),
    responses(
        (status = 200, description = "The playlist", body = Playlist),
        (status = 404, description = "No such playlist", body = super::openapi::ErrorBody),
    )
)]
async fn get(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ControlError> {
    let playlist = state
        .stations
        .playlists()
        .get(&name)
        .ok_or_else(|| PlaylistError::NotFound(name.into_inner()))?;
    Ok(HttpResponse::Ok().json(&*playlist))
}

/// `POST /api/playlists`: a new playlist, named in the body.
#[utoipa::path(
    post,
    path = "/api/playlists",
    tag = "playlists",
    request_body = PlaylistInput,
    responses(
        (status = 201, description = "The playlist was made", body = Playlist,
            headers(("Location" = String, description = "The playlist's URL"))),
        (status = 409, description = "A playlist of this name exists", body = super::openapi::ErrorBody),
        (status = 422, description = "A field is invalid (`detail.field`)", body = super::openapi::ErrorBody),
        (status = 500, description = "The playlists could not be saved", body = super::openapi::ErrorBody),
    )
)]
async fn create(
    state: web::Data<AppState>,
    body: ApiJson<PlaylistInput>,
) -> Result<HttpResponse, ControlError> {
    let input = body.0;
    let name = input.name.clone().unwrap_or_default();
    let playlist = Playlist::from_input(&name, input, &|id| media_exists(&state, id))?;
    let playlist = state.stations.playlists().create(playlist)?;
    Ok(HttpResponse::Created()
        .insert_header(("location", format!("/api/playlists/{}", playlist.name)))
        .json(&*playlist))
}

/// `PUT /api/playlists/{name}`: replaces a playlist.
#[utoipa::path(
    put,
    path = "/api/playlists/{name}",
    tag = "playlists",
    params(("name" = String, Path, description = "The playlist's name")),
    request_body = PlaylistInput,
    responses(
        (status = 200, description = "The playlist as stored", body = Playlist),
        (status = 404, description = "No such playlist", body = super::openapi::ErrorBody),
        (status = 422, description = "A field is invalid, or the body names another playlist (`detail.field`)", body = super::openapi::ErrorBody),
        (status = 500, description = "The playlists could not be saved", body = super::openapi::ErrorBody),
    )
)]
async fn replace(
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: ApiJson<PlaylistInput>,
) -> Result<HttpResponse, ControlError> {
    let input = body.0;
    if let Some(body_name) = &input.name
        && body_name != name.as_str()
    {
        return Err(ControlError::NameMismatch {
            path: name.into_inner(),
            body: body_name.clone(),
        });
    }
    let playlist = Playlist::from_input(&name, input, &|id| media_exists(&state, id))?;
    let playlist = state.stations.playlists().replace(playlist)?;
    Ok(HttpResponse::Ok().json(&*playlist))
}

/// `DELETE /api/playlists/{name}`
#[utoipa::path(
    delete,
    path = "/api/playlists/{name}",
    tag = "playlists",
    params(("name" = String, Path, description = "The playlist's name")),
    responses(
        (status = 204, description = "The playlist is gone"),
        (status = 404, description = "No such playlist", body = super::openapi::ErrorBody),
        (status = 409, description = "A station plays it", body = super::openapi::ErrorBody),
        (status = 500, description = "The playlists could not be saved", body = super::openapi::ErrorBody),
    )
)]
async fn delete(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ControlError> {
    state.stations.playlists().delete(&name)?;
    Ok(HttpResponse::NoContent().finish())
}

/// What a station plays from and what comes next.
#[derive(Debug, Serialize, ToSchema)]
struct StationPlaylist {
    station: String,
    /// The playlist the station plays.
    playlist: Option<String>,
    now_playing: Option<NowPlaying>,
    /// Rendered tracks waiting for air, next first.
    up_next: Vec<TrackInfo>,
    /// Requests waiting to be rendered.
    requests_waiting: usize,
}

/// `GET /api/stations/{id}/playlist`: what the station plays from and what comes next.
#[utoipa::path(
    get,
    path = "/api/stations/{id}/playlist",
    tag = "playlists",
    params(("id" = String, Path, description = "The station's id")),
    responses(
        (status = 200, description = "The station's playlist and queue", body = StationPlaylist),
        (status = 404, description = "No such station", body = super::openapi::ErrorBody),
    )
)]
async fn station_playlist(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ControlError> {
    let station = station(&state, &id)?;
    let up_next = station.board.up_next();
    Ok(HttpResponse::Ok().json(StationPlaylist {
        station: station.id().to_string(),
        playlist: station.playlist_name(),
        now_playing: station.now_playing(),
        up_next: up_next.iter().map(|t| TrackInfo::clone(t)).collect(),
        requests_waiting: station.requests_waiting(),
    }))
}

/// `PUT /api/stations/{id}/playlist`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SwapBody {
    playlist: String,
    when: SwapWhen,
}

/// `PUT /api/stations/{id}/playlist`: swaps the station's playlist, now (a crossfade
/// into the new playlist's first track) or after the track on air.
#[utoipa::path(
    put,
    path = "/api/stations/{id}/playlist",
    tag = "playlists",
    params(("id" = String, Path, description = "The station's id")),
    request_body = SwapBody,
    responses(
        (status = 200, description = "The swap is under way", body = SwapOutcome),
        (status = 404, description = "No such station or playlist (`detail.field`)", body = super::openapi::ErrorBody),
        (status = 503, description = "The station is not running or did not answer in time", body = super::openapi::ErrorBody),
    )
)]
async fn swap(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<SwapBody>,
) -> Result<HttpResponse, ControlError> {
    let station = station(&state, &id)?;
    let SwapBody { playlist, when } = body.0;
    let scheduler = station
        .scheduler()
        .ok_or_else(|| ControlError::StationDown(station.id().to_string()))?;
    let store = state.stations.playlists();
    let previous = station.playlist_name();
    let playlist = store.claim(station.id(), &playlist)?;
    let answer = scheduler
        .send(SwapPlaylist { playlist, when })
        .timeout(SCHEDULER_TIMEOUT)
        .await;
    match answer {
        Ok(Some(outcome)) => Ok(HttpResponse::Ok().json(outcome)),
        _ => {
            // The swap did not happen: the station still plays the old playlist.
            if let Some(previous) = previous {
                let _ = store.claim(station.id(), &previous);
            }
            Err(ControlError::NoAnswer(station.id().to_string()))
        }
    }
}

/// `POST /api/stations/{id}/skip`: crossfades into the next track now.
#[utoipa::path(
    post,
    path = "/api/stations/{id}/skip",
    tag = "playlists",
    params(("id" = String, Path, description = "The station's id")),
    responses(
        (status = 200, description = "The skip is under way", body = SkipOutcome),
        (status = 404, description = "No such station", body = super::openapi::ErrorBody),
        (status = 503, description = "The station is not running or did not answer in time", body = super::openapi::ErrorBody),
    )
)]
async fn skip(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ControlError> {
    let station = station(&state, &id)?;
    let scheduler = station
        .scheduler()
        .ok_or_else(|| ControlError::StationDown(station.id().to_string()))?;
    match scheduler.send(SkipTrack).timeout(SCHEDULER_TIMEOUT).await {
        Ok(Some(outcome)) => Ok(HttpResponse::Ok().json(outcome)),
        _ => Err(ControlError::NoAnswer(station.id().to_string())),
    }
}

/// `POST /api/stations/{id}/queue`: plays a request after the track on air.
#[utoipa::path(
    post,
    path = "/api/stations/{id}/queue",
    tag = "playlists",
    params(("id" = String, Path, description = "The station's id")),
    request_body = PlaylistItem,
    responses(
        (status = 202, description = "The request waits in the queue", body = QueueOutcome),
        (status = 404, description = "No such station", body = super::openapi::ErrorBody),
        (status = 409, description = "The request queue is full (`detail.limit`)", body = super::openapi::ErrorBody),
        (status = 422, description = "A field is invalid (`detail.field`)", body = super::openapi::ErrorBody),
        (status = 503, description = "The station is not running or did not answer in time", body = super::openapi::ErrorBody),
    )
)]
async fn queue(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<PlaylistItem>,
) -> Result<HttpResponse, ControlError> {
    let station = station(&state, &id)?;
    let item = body.0;
    item.validate("", &|media| media_exists(&state, media))?;
    let scheduler = station
        .scheduler()
        .ok_or_else(|| ControlError::StationDown(station.id().to_string()))?;
    match scheduler
        .send(QueueRequest(item))
        .timeout(SCHEDULER_TIMEOUT)
        .await
    {
        Ok(Some(outcome)) => Ok(HttpResponse::Accepted().json(outcome?)),
        _ => Err(ControlError::NoAnswer(station.id().to_string())),
    }
}
