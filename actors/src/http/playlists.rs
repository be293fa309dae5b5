//! Playlists and what operators do on air: playlist CRUD under `/api/playlists`,
//! swapping a station's playlist (now or after the current track), skipping, and
//! queueing requests.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::playlists::{Playlist, PlaylistError, PlaylistInput, PlaylistItem};
use crate::station::{QueueRequest, SkipTrack, Station, SwapPlaylist, SwapWhen};

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

fn station<'a>(state: &'a AppState, id: &str) -> Result<&'a Arc<Station>, ControlError> {
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

async fn list(state: web::Data<AppState>) -> HttpResponse {
    let playlists = state.stations.playlists().list();
    let playlists: Vec<&Playlist> = playlists.iter().map(|p| &**p).collect();
    HttpResponse::Ok().json(json!({ "playlists": playlists }))
}

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

async fn create(
    state: web::Data<AppState>,
    body: web::Json<PlaylistInput>,
) -> Result<HttpResponse, ControlError> {
    let input = body.into_inner();
    let name = input.name.clone().unwrap_or_default();
    let playlist = Playlist::from_input(&name, input, &|id| media_exists(&state, id))?;
    let playlist = state.stations.playlists().create(playlist)?;
    Ok(HttpResponse::Created()
        .insert_header(("location", format!("/api/playlists/{}", playlist.name)))
        .json(&*playlist))
}

async fn replace(
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<PlaylistInput>,
) -> Result<HttpResponse, ControlError> {
    let input = body.into_inner();
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

async fn delete(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ControlError> {
    state.stations.playlists().delete(&name)?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/stations/{id}/playlist`: what the station plays from and what comes next.
async fn station_playlist(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ControlError> {
    let station = station(&state, &id)?;
    let up_next = station.board.up_next();
    let up_next: Vec<&crate::station::TrackInfo> = up_next.iter().map(|t| &**t).collect();
    Ok(HttpResponse::Ok().json(json!({
        "station": station.id(),
        "playlist": station.playlist_name(),
        "now_playing": station.now_playing(),
        "up_next": up_next,
        "requests_waiting": station.requests_waiting(),
    })))
}

/// `PUT /api/stations/{id}/playlist`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapBody {
    playlist: String,
    when: SwapWhen,
}

async fn swap(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<SwapBody>,
) -> Result<HttpResponse, ControlError> {
    let station = station(&state, &id)?;
    let SwapBody { playlist, when } = body.into_inner();
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

async fn queue(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<PlaylistItem>,
) -> Result<HttpResponse, ControlError> {
    let station = station(&state, &id)?;
    let item = body.into_inner();
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
