//! The access middleware (actix-web `from_fn`): the per-address rate limit, then the
//! role a request needs by method and path ([`super::required_role`]).
//!
//! Answers, all JSON `{"error": ..., "detail": {...}}`:
//! - 429 with `Retry-After` (seconds) when the address is over its rate;
//! - 401 with `WWW-Authenticate: Bearer` when the token is missing, malformed, signed
//!   with another secret or expired;
//! - 403 when the token is valid but its role is too low (`detail.required_role`).
//!
//! A `token` query parameter is taken out of the query before the handlers see it.

use std::net::IpAddr;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode, Uri};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage as _, HttpResponse, web};
use serde_json::json;

use super::{Access, Claims, RateDecision, Role, TokenError, is_listener_stream, required_role};
use crate::http::AppState;

/// A JSON error answer.
fn error_response(status: StatusCode, error: &str, detail: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": error, "detail": detail }))
}

/// The 401 answer: no usable token.
fn unauthorized(required: Role, problem: &str, error_code: Option<&str>) -> HttpResponse {
    let mut response = error_response(
        StatusCode::UNAUTHORIZED,
        problem,
        json!({ "required_role": required.name() }),
    );
    let challenge = match error_code {
        Some(code) => format!(
            "Bearer realm=\"sonicforge\", error=\"{code}\", error_description=\"{}\"",
            problem.replace('"', "'")
        ),
        None => "Bearer realm=\"sonicforge\"".to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Checks the rate limit and the token of every request.
pub async fn enforce(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let access: &Access = &state.access;
    let path = req.path().to_string();
    let method = req.method().clone();

    if let Some(limiter) = &access.rate_limiter
        && (path.starts_with("/api/") || is_listener_stream(&path))
        && let Some(address) = req.peer_addr().map(|peer| peer.ip())
        && !is_exempt(access, address)
        && let RateDecision::Limited { retry_after } = limiter.check(address, Instant::now())
    {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "too many connection attempts from this address",
            json!({ "retry_after_seconds": seconds }),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return Ok(req.into_response(response));
    }

    let is_read = method == Method::GET || method == Method::HEAD;
    let query_token = if is_read {
        take_query_token(&mut req)
    } else {
        None
    };

    let Some(required) = required_role(&method, &path, access.require_listener_token) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let Some(keys) = &access.keys else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let header_token = match bearer_token(&req) {
        Ok(token) => token,
        Err(problem) => {
            let response = unauthorized(required, problem, Some("invalid_request"));
            return Ok(req.into_response(response));
        }
    };
    // A token in the query is accepted only for reads that need no more than a
    // listener: browsers cannot set headers on a WebSocket or an EventSource.
    let token = header_token.or(query_token.filter(|_| required == Role::Listener));
    let Some(token) = token else {
        let problem = format!("a bearer token with role {required} or higher is needed");
        return Ok(req.into_response(unauthorized(required, &problem, None)));
    };
    let claims: Claims = match keys.verify(&token) {
        Ok(claims) => claims,
        Err(error) => {
            let problem = match &error {
                TokenError::Malformed(_) => "the bearer token is not a valid token".to_string(),
                other => other.to_string(),
            };
            tracing::debug!(%error, %path, "token refused");
            return Ok(req.into_response(unauthorized(required, &problem, Some("invalid_token"))));
        }
    };
    if claims.role < required {
        let response = error_response(
            StatusCode::FORBIDDEN,
            &format!(
                "role {} may not do this; role {required} or higher is needed",
                claims.role
            ),
            json!({ "required_role": required.name(), "role": claims.role.name() }),
        );
        return Ok(req.into_response(response));
    }
    req.extensions_mut().insert(claims);
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Answers a CORS preflight from an origin that may not call the API with a JSON 403
/// (the CORS middleware answers the allowed ones).
pub async fn reject_foreign_preflight(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let is_preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if is_preflight
        && let Some(origin) = req.headers().get(header::ORIGIN)
        && let Some(state) = req.app_data::<web::Data<AppState>>()
    {
        let origin = origin.to_str().unwrap_or("");
        if !state.access.allows_origin(origin) {
            let response = error_response(
                StatusCode::FORBIDDEN,
                "this origin may not call the API (limits.cors_origins)",
                json!({ "field": "origin", "origin": origin }),
            );
            return Ok(req.into_response(response));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

fn is_exempt(access: &Access, address: IpAddr) -> bool {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    };
    access.rate_limit_exempt.contains(&address)
}

/// The token of an `Authorization: Bearer` header; `Err` when the header is there but
/// is not a bearer token.
fn bearer_token(req: &ServiceRequest) -> Result<Option<String>, &'static str> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not text")?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or("the Authorization header must be `Bearer <token>`")?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err("the Authorization header must be `Bearer <token>`");
    }
    Ok(Some(token.trim().to_string()))
}

/// Removes `token=` from the query string (so handlers never see it) and returns it.
fn take_query_token(req: &mut ServiceRequest) -> Option<String> {
    let query = req.query_string();
    if !query
        .split('&')
        .any(|pair| pair.starts_with("token=") || pair == "token")
    {
        return None;
    }
    let mut token = None;
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "token" {
            token = Some(value.into_owned());
        } else {
            rest.append_pair(&key, &value);
        }
    }
    let rest = rest.finish();
    let path_and_query = if rest.is_empty() {
        req.path().to_string()
    } else {
        format!("{}?{rest}", req.path())
    };
    let mut parts = req.head().uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        req.match_info_mut().get_mut().update(&uri);
        req.head_mut().uri = uri;
    }
    token.filter(|token| !token.is_empty())
}
