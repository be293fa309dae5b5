//! The operator console: the page at `/console` and `GET /api/session`, which tells
//! the console whether a token is valid and which role it carries.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::{AppState, web_files};
use crate::auth::TokenError;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(web_files::console_page))
        .route("/api/session", web::get().to(session));
}

/// Why `GET /api/session` refused the request's token.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("send the token as `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("the bearer token is not a valid token")]
    Malformed,
    #[error("the token was refused: {0}")]
    Refused(TokenError),
}

impl ResponseError for SessionError {
    fn status_code(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"sonicforge\""))
            .json(json!({ "error": self.to_string(), "detail": { "field": "authorization" } }))
    }
}

/// The token of the request's `Authorization: Bearer` header.
fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Who a token speaks for.
#[derive(Debug, Serialize, ToSchema)]
struct SessionInfo {
    /// `false` when `[auth] enabled = false`: every route is open.
    auth_enabled: bool,
    role: crate::auth::Role,
    /// Whom the token was issued to; `null` without auth.
    subject: Option<String>,
    /// When the token expires, in seconds since the Unix epoch; `null` without auth.
    expires_unix: Option<u64>,
}

/// `GET /api/session`: the role, subject and expiry of the bearer token, or 401.
/// With `[auth] enabled = false` every route is open, so anyone is an admin.
#[utoipa::path(
    get,
    path = "/api/session",
    tag = "operations",
    responses(
        (status = 200, description = "The token's role, subject and expiry", body = SessionInfo),
        (status = 401, description = "No bearer token, or one that is not accepted", body = super::openapi::ErrorBody),
    )
)]
async fn session(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, SessionError> {
    let Some(keys) = &state.access.keys else {
        return Ok(HttpResponse::Ok().json(SessionInfo {
            auth_enabled: false,
            role: crate::auth::Role::Admin,
            subject: None,
            expires_unix: None,
        }));
    };
    let token = bearer_token(&req).ok_or(SessionError::MissingToken)?;
    let claims = keys.verify(token).map_err(|error| match error {
        TokenError::Malformed(_) => SessionError::Malformed,
        other => SessionError::Refused(other),
    })?;
    Ok(HttpResponse::Ok().json(SessionInfo {
        auth_enabled: true,
        role: claims.role,
        subject: Some(claims.sub),
        expires_unix: Some(claims.exp),
    }))
}
