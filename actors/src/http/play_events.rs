//! The play-event read API: what is on air, a station's history and daily figures, and
//! a track's plays, answered from the event store (SQLite or ScyllaDB alike).
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /api/stations/{id}/now-playing` | the play on air, or `null` |
//! | `GET /api/stations/{id}/history?limit=&before=` | plays newest first; `next_before` pages back |
//! | `GET /api/stations/{id}/stats?day=YYYY-MM-DD` | listener-hours, peak listeners, plays, top tracks |
//! | `GET /api/tracks/{id}/plays?month=YYYY-MM` | the track's plays that month, with totals |
//!
//! Store reads may wait on disk or network, so they run on actix's blocking pool. An
//! unreachable store answers 503 with the store's error; bad queries answer 400 naming
//! the field.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sonicforge_engine::events::{
    Day, DayStats, EventReader, EventSinkError, Month, Play, TrackPlays,
};
use utoipa::{IntoParams, ToSchema};

use super::AppState;

/// Plays per history page when `limit` is not given.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;
/// The most plays one history page returns.
pub const MAX_HISTORY_LIMIT: usize = 500;
/// The longest a track id may be.
const MAX_TRACK_ID_LEN: usize = 128;

/// What can go wrong answering a read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no station `{0}`")]
    UnknownStation(String),
    #[error("invalid `{field}`: {message}")]
    BadQuery {
        field: &'static str,
        message: String,
    },
    /// Well-formed, but not a value the store can answer for (a date that does not
    /// exist or is before 1970).
    #[error("invalid `{field}`: {message}")]
    Unanswerable {
        field: &'static str,
        message: String,
    },
    #[error("the event store cannot answer now: {0}")]
    Store(#[from] EventSinkError),
    #[error("the read was cancelled: {0}")]
    Cancelled(String),
    #[error("this engine has no event store to read")]
    NoStore,
}

impl ResponseError for ReadError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::UnknownStation(_) => StatusCode::NOT_FOUND,
            Self::BadQuery { .. } => StatusCode::BAD_REQUEST,
            Self::Unanswerable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Store(_) | Self::Cancelled(_) | Self::NoStore => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let detail = match self {
            Self::BadQuery { field, message } | Self::Unanswerable { field, message } => {
                json!({ "field": field, "message": message })
            }
            _ => serde_json::Value::Null,
        };
        HttpResponse::build(self.status_code())
            .json(json!({ "error": self.to_string(), "detail": detail }))
    }
}

/// Runs a store read on the blocking pool.
async fn read<T: Send + 'static>(
    state: &web::Data<AppState>,
    query: impl FnOnce(&dyn EventReader) -> Result<T, EventSinkError> + Send + 'static,
) -> Result<T, ReadError> {
    let reader = state
        .events
        .as_ref()
        .map(Arc::clone)
        .ok_or(ReadError::NoStore)?;
    web::block(move || query(reader.as_ref()))
        .await
        .map_err(|error| ReadError::Cancelled(error.to_string()))?
        .map_err(ReadError::from)
}

fn known_station(state: &AppState, id: &str) -> Result<String, ReadError> {
    match state.stations.get(id) {
        Some(_) => Ok(id.to_string()),
        None => Err(ReadError::UnknownStation(id.to_string())),
    }
}

/// The play on air, from the event store.
#[derive(Debug, Serialize, ToSchema)]
struct StationNowPlaying {
    station: String,
    /// `null` when nothing is on air.
    now_playing: Option<Play>,
}

/// `GET /api/stations/{id}/now-playing`
#[utoipa::path(
    get,
    path = "/api/stations/{id}/now-playing",
    tag = "history",
    params(("id" = String, Path, description = "The station's id")),
    responses(
        (status = 200, description = "The play on air as the event store has it", body = StationNowPlaying),
        (status = 404, description = "No such station", body = super::openapi::ErrorBody),
        (status = 503, description = "The event store cannot answer now, or there is none", body = super::openapi::ErrorBody),
    )
)]
pub async fn now_playing(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ReadError> {
    let station = known_station(&state, &id)?;
    let key = station.clone();
    let play = read(&state, move |reader| reader.now_playing(&key)).await?;
    Ok(HttpResponse::Ok().json(StationNowPlaying {
        station,
        now_playing: play,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Plays per page (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// Unix milliseconds: only plays that started before it.
    before: Option<u64>,
}

/// A page of a station's plays.
#[derive(Debug, Serialize, ToSchema)]
struct History {
    station: String,
    /// Newest first.
    plays: Vec<Play>,
    /// `before` of the next page back; `null` on the last page.
    next_before: Option<u64>,
}

/// `GET /api/stations/{id}/history?limit=&before=`
#[utoipa::path(
    get,
    path = "/api/stations/{id}/history",
    tag = "history",
    params(("id" = String, Path, description = "The station's id"), HistoryQuery),
    responses(
        (status = 200, description = "Plays newest first", body = History),
        (status = 400, description = "A bad query parameter (`detail.field`)", body = super::openapi::ErrorBody),
        (status = 404, description = "No such station", body = super::openapi::ErrorBody),
        (status = 503, description = "The event store cannot answer now, or there is none", body = super::openapi::ErrorBody),
    )
)]
pub async fn history(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ReadError> {
    let station = known_station(&state, &id)?;
    let limit = query.limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
    if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
        return Err(ReadError::BadQuery {
            field: "limit",
            message: format!("{limit} is outside 1..={MAX_HISTORY_LIMIT}"),
        });
    }
    let before = query.before;
    let key = station.clone();
    let plays = read(&state, move |reader| reader.history(&key, limit, before)).await?;
    let next_before = if plays.len() == limit {
        plays.last().map(|play| play.started_at_unix_ms)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(History {
        station,
        plays,
        next_before,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// `YYYY-MM-DD` (UTC); today when left out.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", example = "2026-11-24")]
    day: Option<String>,
}

/// `GET /api/stations/{id}/stats?day=YYYY-MM-DD`
#[utoipa::path(
    get,
    path = "/api/stations/{id}/stats",
    tag = "history",
    params(("id" = String, Path, description = "The station's id"), StatsQuery),
    responses(
        (status = 200, description = "The station's figures for the day", body = DayStats),
        (status = 400, description = "A bad query parameter (`detail.field`)", body = super::openapi::ErrorBody),
        (status = 422, description = "A day that does not exist or is before 1970 (`detail.field`)", body = super::openapi::ErrorBody),
        (status = 404, description = "No such station", body = super::openapi::ErrorBody),
        (status = 503, description = "The event store cannot answer now, or there is none", body = super::openapi::ErrorBody),
    )
)]
pub async fn stats(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ReadError> {
    let station = known_station(&state, &id)?;
    let day = match &query.day {
        Some(text) => text
            .parse::<Day>()
            .map_err(|error| date_error("day", text, "0000-00-00", &error))?,
        None => Day::of_unix_ms(now_unix_ms()),
    };
    let stats = read(&state, move |reader| reader.day_stats(&station, day)).await?;
    Ok(HttpResponse::Ok().json(stats))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrackPlaysQuery {
    /// `YYYY-MM` (UTC); this month when left out.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}$", example = "2026-11")]
    month: Option<String>,
}

/// `GET /api/tracks/{id}/plays?month=YYYY-MM`
#[utoipa::path(
    get,
    path = "/api/tracks/{id}/plays",
    tag = "history",
    params(("id" = String, Path, description = "The track's id (1 to 128 bytes)"), TrackPlaysQuery),
    responses(
        (status = 200, description = "The track's plays that month, with totals", body = TrackPlays),
        (status = 400, description = "A bad id or query parameter (`detail.field`)", body = super::openapi::ErrorBody),
        (status = 422, description = "A month before 1970 (`detail.field`)", body = super::openapi::ErrorBody),
        (status = 503, description = "The event store cannot answer now, or there is none", body = super::openapi::ErrorBody),
    )
)]
pub async fn track_plays(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<TrackPlaysQuery>,
) -> Result<HttpResponse, ReadError> {
    let track_id = id.into_inner();
    if track_id.is_empty() || track_id.len() > MAX_TRACK_ID_LEN {
        return Err(ReadError::BadQuery {
            field: "id",
            message: format!("a track id is 1 to {MAX_TRACK_ID_LEN} bytes"),
        });
    }
    let month = match &query.month {
        Some(text) => text
            .parse::<Month>()
            .map_err(|error| date_error("month", text, "0000-00", &error))?,
        None => Month::of_unix_ms(now_unix_ms()),
    };
    let plays = read(&state, move |reader| reader.track_plays(&track_id, month)).await?;
    Ok(HttpResponse::Ok().json(plays))
}

/// A date that did not parse: 422 when it has the shape (`0` for a digit), 400 when not.
fn date_error(
    field: &'static str,
    text: &str,
    shape: &str,
    error: &impl std::fmt::Display,
) -> ReadError {
    let shaped = text.len() == shape.len()
        && text.bytes().zip(shape.bytes()).all(|(c, s)| match s {
            b'0' => c.is_ascii_digit(),
            other => c == other,
        });
    let message = error.to_string();
    if shaped {
        ReadError::Unanswerable { field, message }
    } else {
        ReadError::BadQuery { field, message }
    }
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
