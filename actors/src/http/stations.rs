//! The station API: add, stop, start and remove stations while the engine runs.
//!
//! | route | role | answer |
//! | --- | --- | --- |
//! | `POST /api/stations` | admin | 201 and the started station; 400/422 for bad settings, 409 for an id in use |
//! | `DELETE /api/stations/{id}` | admin | 204; 409 for a station of the config file |
//! | `POST /api/stations/{id}/stop` | operator | 200 and the stopped station |
//! | `POST /api/stations/{id}/start` | operator | 200 and the running station |

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError, web};
use serde_json::json;

use super::{ApiJson, AppState, StationView};
use crate::config::StationConfig;
use crate::station::StationOrigin;
use crate::station_control::{StationControl, StationControlError};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/stations", web::post().to(add))
        .route("/api/stations/{id}", web::delete().to(remove))
        .route("/api/stations/{id}/stop", web::post().to(stop))
        .route("/api/stations/{id}/start", web::post().to(start));
}

/// Errors of the station API, as JSON.
#[derive(Debug, thiserror::Error)]
enum StationApiError {
    #[error(transparent)]
    Control(#[from] StationControlError),
    #[error("this server does not manage its stations through the API")]
    NoControl,
}

impl ResponseError for StationApiError {
    fn status_code(&self) -> StatusCode {
        use StationControlError as E;
        match self {
            Self::Control(E::Invalid(_) | E::UnknownPlaylist { .. }) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Control(E::Unknown(_)) => StatusCode::NOT_FOUND,
            Self::Control(
                E::Exists(_) | E::InConfigFile(_) | E::TooMany { .. } | E::PlaylistNameTaken(_),
            ) => StatusCode::CONFLICT,
            Self::Control(
                E::Playlists { .. } | E::Start(_) | E::Events(_) | E::Store { .. } | E::Load { .. },
            ) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NoControl => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        use StationControlError as E;
        let detail = match self {
            Self::Control(E::Invalid(invalid)) => {
                json!({ "field": invalid.field, "message": invalid.message })
            }
            Self::Control(E::UnknownPlaylist { playlist, .. }) => {
                json!({ "field": "playlist_name", "playlist": playlist })
            }
            Self::Control(E::Exists(id) | E::PlaylistNameTaken(id)) => {
                json!({ "field": "id", "station": id })
            }
            Self::Control(E::Unknown(id) | E::InConfigFile(id)) => json!({ "station": id }),
            Self::Control(E::TooMany { limit }) => json!({ "limit": limit }),
            _ => serde_json::Value::Null,
        };
        if self.status_code().is_server_error() {
            tracing::error!(error = %self, "station request failed");
        }
        HttpResponse::build(self.status_code())
            .json(json!({ "error": self.to_string(), "detail": detail }))
    }
}

fn control(state: &AppState) -> Result<&Arc<StationControl>, StationApiError> {
    state
        .station_control
        .as_ref()
        .ok_or(StationApiError::NoControl)
}

/// The view of station `id` as it is now.
fn view(state: &AppState, id: &str) -> Result<StationView, StationApiError> {
    state
        .stations
        .entry(id)
        .map(|entry| StationView::of_entry(&entry))
        .ok_or_else(|| StationControlError::Unknown(id.to_string()).into())
}

/// `POST /api/stations`: adds a station and starts it.
#[utoipa::path(
    post,
    path = "/api/stations",
    tag = "stations",
    request_body = StationConfig,
    responses(
        (status = 201, description = "The station was added and started", body = StationView,
            headers(("Location" = String, description = "The station's URL"))),
        (status = 409, description = "The id is in use, the playlist name is taken, or there are too many stations", body = super::openapi::ErrorBody),
        (status = 422, description = "A setting is invalid, or the playlist is unknown (`detail.field`)", body = super::openapi::ErrorBody),
        (status = 500, description = "The station could not be started or saved", body = super::openapi::ErrorBody),
        (status = 503, description = "This server does not manage its stations through the API", body = super::openapi::ErrorBody),
    )
)]
async fn add(
    state: web::Data<AppState>,
    body: ApiJson<StationConfig>,
) -> Result<HttpResponse, StationApiError> {
    let station = control(&state)?.add(body.0).await?;
    let location = format!("/api/stations/{}", station.id());
    let view = StationView::of(&station, StationOrigin::Api);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(view))
}

/// `DELETE /api/stations/{id}`: stops a station added through the API and forgets it.
#[utoipa::path(
    delete,
    path = "/api/stations/{id}",
    tag = "stations",
    params(("id" = String, Path, description = "The station's id")),
    responses(
        (status = 204, description = "The station is gone"),
        (status = 404, description = "No such station", body = super::openapi::ErrorBody),
        (status = 409, description = "A station of the config file", body = super::openapi::ErrorBody),
        (status = 500, description = "The station could not be removed", body = super::openapi::ErrorBody),
        (status = 503, description = "This server does not manage its stations through the API", body = super::openapi::ErrorBody),
    )
)]
async fn remove(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, StationApiError> {
    control(&state)?.remove(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/stations/{id}/stop`
#[utoipa::path(
    post,
    path = "/api/stations/{id}/stop",
    tag = "stations",
    params(("id" = String, Path, description = "The station's id")),
    responses(
        (status = 200, description = "The station is stopped", body = StationView),
        (status = 404, description = "No such station", body = super::openapi::ErrorBody),
        (status = 500, description = "The station could not be stopped", body = super::openapi::ErrorBody),
        (status = 503, description = "This server does not manage its stations through the API", body = super::openapi::ErrorBody),
    )
)]
async fn stop(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, StationApiError> {
    control(&state)?.stop(&id).await?;
    Ok(HttpResponse::Ok().json(view(&state, &id)?))
}

/// `POST /api/stations/{id}/start`
#[utoipa::path(
    post,
    path = "/api/stations/{id}/start",
    tag = "stations",
    params(("id" = String, Path, description = "The station's id")),
    responses(
        (status = 200, description = "The station runs", body = StationView),
        (status = 404, description = "No such station", body = super::openapi::ErrorBody),
        (status = 409, description = "Too many stations run", body = super::openapi::ErrorBody),
        (status = 500, description = "The station could not be started", body = super::openapi::ErrorBody),
        (status = 503, description = "This server does not manage its stations through the API", body = super::openapi::ErrorBody),
    )
)]
async fn start(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, StationApiError> {
    control(&state)?.start(&id).await?;
    Ok(HttpResponse::Ok().json(view(&state, &id)?))
}
