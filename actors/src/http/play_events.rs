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
use serde::Deserialize;
use serde_json::json;
use sonicforge_engine::events::{Day, EventReader, EventSinkError, Month};

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
            Self::Store(_) | Self::Cancelled(_) | Self::NoStore => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let detail = match self {
            Self::BadQuery { field, .. } => json!({ "field": field }),
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

/// `GET /api/stations/{id}/now-playing`
pub async fn now_playing(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ReadError> {
    let station = known_station(&state, &id)?;
    let key = station.clone();
    let play = read(&state, move |reader| reader.now_playing(&key)).await?;
    Ok(HttpResponse::Ok().json(json!({ "station": station, "now_playing": play })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    limit: Option<usize>,
    /// Unix milliseconds: only plays that started before it.
    before: Option<u64>,
}

/// `GET /api/stations/{id}/history?limit=&before=`
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
    Ok(HttpResponse::Ok().json(json!({
        "station": station,
        "plays": plays,
        "next_before": next_before,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// `YYYY-MM-DD` (UTC); today when left out.
    day: Option<String>,
}

/// `GET /api/stations/{id}/stats?day=YYYY-MM-DD`
pub async fn stats(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ReadError> {
    let station = known_station(&state, &id)?;
    let day = match &query.day {
        Some(text) => text.parse::<Day>().map_err(|error| ReadError::BadQuery {
            field: "day",
            message: error.to_string(),
        })?,
        None => Day::of_unix_ms(now_unix_ms()),
    };
    let stats = read(&state, move |reader| reader.day_stats(&station, day)).await?;
    Ok(HttpResponse::Ok().json(stats))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackPlaysQuery {
    /// `YYYY-MM` (UTC); this month when left out.
    month: Option<String>,
}

/// `GET /api/tracks/{id}/plays?month=YYYY-MM`
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
        Some(text) => text.parse::<Month>().map_err(|error| ReadError::BadQuery {
            field: "month",
            message: error.to_string(),
        })?,
        None => Month::of_unix_ms(now_unix_ms()),
    };
    let plays = read(&state, move |reader| reader.track_plays(&track_id, month)).await?;
    Ok(HttpResponse::Ok().json(plays))
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
