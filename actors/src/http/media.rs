//! The media library API.
//!
//! - `GET /api/media`: every file, `{"media": [entry, ...]}`.
//! - `GET /api/media/{id}`: one entry.
//! - `POST /api/media?name=<file name>`: an upload. The body is the file's bytes as
//!   they are (any `Content-Type`); the name's extension (wav, flac, mp3, ogg, oga)
//!   hints the format and its stem is the title when the file has no title tag. The
//!   file is decoded on the blocking pool before it is accepted: 201 with the entry
//!   (200 when the same content was uploaded before), 400 for a bad name
//!   (`detail.field` = "name"), 413 over `[media] max_upload_mb` (`detail.limit_bytes`),
//!   415 for a format that is not read, 422 for a file that does not decode, 503 (with
//!   `Retry-After`) while [`UPLOADS_AT_ONCE`] other uploads are being read and decoded.
//! - `DELETE /api/media/{id}`: 204; 404 for an unknown id; 409 for a file of the
//!   watched folder (remove it there).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sonicforge_engine::media::MediaError;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use crate::media_library::{LibraryError, MediaEntry, MediaLibrary};

/// Uploads read and decoded at once at most: each holds its file and, while it is
/// checked, its decoded audio (about 690 MB for a 30-minute file) in memory.
pub const UPLOADS_AT_ONCE: usize = 2;
/// Seconds a refused upload is told to wait before it tries again.
const UPLOAD_RETRY_AFTER_SECONDS: u32 = 5;

/// The permits of the uploads in progress, shared by every HTTP worker.
static UPLOADS_IN_PROGRESS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(UPLOADS_AT_ONCE);

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/media", web::get().to(list))
        .route("/api/media", web::post().to(upload))
        .route("/api/media/{id}", web::get().to(get))
        .route("/api/media/{id}", web::delete().to(remove));
}

/// Errors of the media API, answered as JSON `{"error": ..., "detail": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum MediaApiError {
    #[error("the server has no media library")]
    NoLibrary,
    #[error("query parameter `name` (the file name) is required")]
    MissingName,
    #[error("the upload body could not be read: {0}")]
    Body(String),
    #[error("the upload was interrupted")]
    Interrupted,
    #[error("{UPLOADS_AT_ONCE} other uploads are being decoded; try again in a few seconds")]
    Busy,
    #[error(transparent)]
    Library(#[from] LibraryError),
}

impl ResponseError for MediaApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NoLibrary | Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::MissingName | Self::Body(_) => StatusCode::BAD_REQUEST,
            Self::Interrupted => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Library(error) => match error {
                LibraryError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                LibraryError::BadName { .. } => StatusCode::BAD_REQUEST,
                LibraryError::NotFound(_) => StatusCode::NOT_FOUND,
                LibraryError::Watched { .. } => StatusCode::CONFLICT,
                LibraryError::Decode(MediaError::Unsupported { .. }) => {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE
                }
                LibraryError::Decode(MediaError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
                // An upload is decoded from memory: every other decode error is about
                // its content.
                LibraryError::Decode(_) => StatusCode::UNPROCESSABLE_ENTITY,
                LibraryError::Io { .. } | LibraryError::Catalog { .. } => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let detail = match self {
            Self::MissingName => json!({ "field": "name" }),
            Self::Library(LibraryError::BadName { reason, .. }) => {
                json!({ "field": "name", "reason": reason })
            }
            Self::Library(LibraryError::TooLarge { limit_bytes }) => {
                json!({ "limit_bytes": limit_bytes })
            }
            Self::Library(LibraryError::Decode(error)) => {
                json!({ "field": "body", "file": error.path().display().to_string() })
            }
            Self::Library(LibraryError::NotFound(id)) => json!({ "id": id }),
            Self::Busy => json!({ "uploads_at_once": UPLOADS_AT_ONCE }),
            _ => serde_json::Value::Null,
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, Self::Busy) {
            response.insert_header((header::RETRY_AFTER, UPLOAD_RETRY_AFTER_SECONDS));
        }
        response.json(json!({ "error": self.to_string(), "detail": detail }))
    }
}

fn library(state: &AppState) -> Result<Arc<MediaLibrary>, MediaApiError> {
    state.media.clone().ok_or(MediaApiError::NoLibrary)
}

/// Every file of the library.
#[derive(Debug, Serialize, ToSchema)]
struct MediaList {
    media: Vec<MediaEntry>,
}

/// `GET /api/media`
#[utoipa::path(
    get,
    path = "/api/media",
    tag = "media",
    responses(
        (status = 200, description = "Every file of the library", body = MediaList),
        (status = 503, description = "The server has no media library", body = super::openapi::ErrorBody),
    )
)]
async fn list(state: web::Data<AppState>) -> Result<HttpResponse, MediaApiError> {
    let library = library(&state)?;
    Ok(HttpResponse::Ok().json(MediaList {
        media: library.list(),
    }))
}

/// `GET /api/media/{id}`
#[utoipa::path(
    get,
    path = "/api/media/{id}",
    tag = "media",
    params(("id" = String, Path, description = "The file's id")),
    responses(
        (status = 200, description = "The file's entry", body = MediaEntry),
        (status = 404, description = "No such file", body = super::openapi::ErrorBody),
        (status = 503, description = "The server has no media library", body = super::openapi::ErrorBody),
    )
)]
async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, MediaApiError> {
    let library = library(&state)?;
    let entry = library
        .get(&id)
        .ok_or_else(|| LibraryError::NotFound(id.into_inner()))?;
    Ok(HttpResponse::Ok().json(entry))
}

/// The name of an upload.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    /// The file's name: its extension (wav, flac, mp3, ogg, oga) hints the format,
    /// its stem is the title when the file has no title tag.
    #[param(
        required = true,
        max_length = 255,
        pattern = r"^[^/\\\x00]+\.(wav|flac|mp3|ogg|oga)$",
        example = "station-id.wav"
    )]
    name: Option<String>,
}

/// `POST /api/media?name=`: an upload; the body is the file's bytes as they are.
#[utoipa::path(
    post,
    path = "/api/media",
    tag = "media",
    params(UploadQuery),
    request_body(description = "The audio file's bytes, with any content type", content(
        (super::openapi::Binary = "application/octet-stream"),
        (super::openapi::Binary = "audio/wav"),
        (super::openapi::Binary = "audio/flac"),
        (super::openapi::Binary = "audio/mpeg"),
        (super::openapi::Binary = "audio/ogg"),
    )),
    responses(
        (status = 201, description = "The file was decoded and added", body = MediaEntry,
            headers(("Location" = String, description = "The entry's URL"))),
        (status = 200, description = "The same content was uploaded before", body = MediaEntry,
            headers(("Location" = String, description = "The entry's URL"))),
        (status = 400, description = "A missing or bad file name (`detail.field` = `name`)", body = super::openapi::ErrorBody),
        (status = 413, description = "The file is over `[media] max_upload_mb` (`detail.limit_bytes`)", body = super::openapi::ErrorBody),
        (status = 415, description = "A format that is not read", body = super::openapi::ErrorBody),
        (status = 422, description = "The file does not decode (`detail.field` = `body`)", body = super::openapi::ErrorBody),
        (status = 500, description = "The file could not be stored", body = super::openapi::ErrorBody),
        (status = 503, description = "Other uploads are being decoded (`Retry-After`), or the server has no media library", body = super::openapi::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn upload(
    state: web::Data<AppState>,
    request: HttpRequest,
    mut body: web::Payload,
) -> Result<HttpResponse, MediaApiError> {
    let library = library(&state)?;
    let query = web::Query::<UploadQuery>::from_query(request.query_string())
        .map_err(|_| MediaApiError::MissingName)?;
    let name = query
        .into_inner()
        .name
        .filter(|name| !name.is_empty())
        .ok_or(MediaApiError::MissingName)?;
    crate::media_library::checked_extension(&name)?;
    let limit = library.max_upload_bytes();
    let too_large = || LibraryError::TooLarge { limit_bytes: limit };
    // Refuse by the declared length before reading anything.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large().into());
    }
    // Held until the upload is decoded and stored (or refused).
    let _permit = UPLOADS_IN_PROGRESS
        .try_acquire()
        .map_err(|_| MediaApiError::Busy)?;
    let _counted = UploadInProgress::count(&state.metrics.media_uploads_in_progress);
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| MediaApiError::Body(error.to_string()))?;
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(too_large().into());
        }
        bytes.extend_from_slice(&chunk);
    }
    // Decoding takes seconds for a long file: never on this async thread.
    let (entry, new) = web::block(move || library.add_upload(&name, &bytes))
        .await
        .map_err(|_| MediaApiError::Interrupted)??;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status)
        .insert_header((header::LOCATION, format!("/api/media/{}", entry.id)))
        .json(entry))
}

/// Counts one upload in `sonicforge_media_uploads_in_progress` for as long as it lives.
struct UploadInProgress<'a>(&'a prometheus::IntGauge);

impl<'a> UploadInProgress<'a> {
    fn count(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for UploadInProgress<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `DELETE /api/media/{id}`
#[utoipa::path(
    delete,
    path = "/api/media/{id}",
    tag = "media",
    params(("id" = String, Path, description = "The file's id")),
    responses(
        (status = 204, description = "The file is gone"),
        (status = 404, description = "No such file", body = super::openapi::ErrorBody),
        (status = 409, description = "A file of the watched folder (remove it there)", body = super::openapi::ErrorBody),
        (status = 500, description = "The file could not be removed", body = super::openapi::ErrorBody),
        (status = 503, description = "The server has no media library", body = super::openapi::ErrorBody),
    )
)]
async fn remove(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, MediaApiError> {
    let library = library(&state)?;
    web::block(move || library.remove(&id))
        .await
        .map_err(|_| MediaApiError::Interrupted)??;
    Ok(HttpResponse::NoContent().finish())
}
