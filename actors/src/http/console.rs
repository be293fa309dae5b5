//! The operator console: the page at `/console` and `GET /api/session`, which tells
//! the console whether a token is valid and which role it carries.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;

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

/// `GET /api/session`: the role, subject and expiry of the bearer token, or 401.
/// With `[auth] enabled = false` every route is open, so anyone is an admin.
async fn session(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, SessionError> {
    let Some(keys) = &state.access.keys else {
        return Ok(HttpResponse::Ok().json(json!({
            "auth_enabled": false,
            "role": crate::auth::Role::Admin.name(),
            "subject": null,
            "expires_unix": null,
        })));
    };
    let token = bearer_token(&req).ok_or(SessionError::MissingToken)?;
    let claims = keys.verify(token).map_err(|error| match error {
        TokenError::Malformed(_) => SessionError::Malformed,
        other => SessionError::Refused(other),
    })?;
    Ok(HttpResponse::Ok().json(json!({
        "auth_enabled": true,
        "role": claims.role.name(),
        "subject": claims.sub,
        "expires_unix": claims.exp,
    })))
}
