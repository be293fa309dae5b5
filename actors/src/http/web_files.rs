//! The web player's static files, embedded in the binary from `actors/web/`.

use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::{HttpResponse, web};
use include_dir::{Dir, include_dir};

use super::ApiError;

static WEB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/web");

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn serve(name: &str, revalidate: bool) -> Result<HttpResponse, ApiError> {
    let file = WEB.get_file(name).ok_or(ApiError::NotFound)?;
    let cache = if revalidate {
        CacheControl(vec![CacheDirective::NoCache])
    } else {
        CacheControl(vec![CacheDirective::Public, CacheDirective::MaxAge(3600)])
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type(name))
        .insert_header(cache)
        .body(file.contents()))
}

/// `GET /`: the station list.
#[utoipa::path(
    get,
    path = "/",
    tag = "pages",
    responses(
        (status = 200, description = "The station list page", content_type = "text/html", body = String),
        (status = 404, description = "Missing from this build", body = super::openapi::ErrorBody),
    )
)]
pub(super) async fn index() -> Result<HttpResponse, ApiError> {
    serve("index.html", true)
}

pub(super) fn station_page() -> HttpResponse {
    serve("station.html", true).unwrap_or_else(|_| {
        HttpResponse::InternalServerError()
            .insert_header(ContentType::plaintext())
            .body("the player page is missing from this build")
    })
}

/// `GET /console`: the operator console.
#[utoipa::path(
    get,
    path = "/console",
    tag = "pages",
    responses(
        (status = 200, description = "The operator console page", content_type = "text/html", body = String),
        (status = 404, description = "Missing from this build", body = super::openapi::ErrorBody),
    )
)]
pub(super) async fn console_page() -> Result<HttpResponse, ApiError> {
    serve("console.html", true)
}

/// `GET /assets/{file}`: a file of the web player or the console.
#[utoipa::path(
    get,
    path = "/assets/{file}",
    tag = "pages",
    params(("file" = String, Path, description = "The file's name, e.g. `player.js`")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "text/html"),
            (String = "image/svg+xml"),
            (super::openapi::Binary = "image/png"),
            (super::openapi::Binary = "image/x-icon"),
            (Object = "application/json"),
            (Object = "application/manifest+json"),
            (super::openapi::Binary = "application/octet-stream"),
        )),
        (status = 404, description = "No such file", body = super::openapi::ErrorBody),
    )
)]
pub(super) async fn asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    if file.contains('/') || file.starts_with('.') {
        return Err(ApiError::NotFound);
    }
    serve(&file, true)
}

/// `GET /manifest.webmanifest`: the web app manifest of the player.
#[utoipa::path(
    get,
    path = "/manifest.webmanifest",
    tag = "pages",
    responses(
        (status = 200, description = "The manifest", content_type = "application/manifest+json", body = Object),
        (status = 404, description = "Missing from this build", body = super::openapi::ErrorBody),
    )
)]
pub(super) async fn manifest() -> Result<HttpResponse, ApiError> {
    serve("manifest.webmanifest", true)
}

/// `GET /sw.js`: the player's service worker.
#[utoipa::path(
    get,
    path = "/sw.js",
    tag = "pages",
    responses(
        (status = 200, description = "The service worker", content_type = "text/javascript", body = String),
        (status = 404, description = "Missing from this build", body = super::openapi::ErrorBody),
    )
)]
pub(super) async fn service_worker() -> Result<HttpResponse, ApiError> {
    serve("sw.js", true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn player_files_are_embedded() {
        for name in [
            "index.html",
            "station.html",
            "console.html",
            "console.js",
            "manifest.webmanifest",
            "sw.js",
        ] {
            assert!(WEB.get_file(name).is_some(), "{name} is not embedded");
        }
        assert_eq!(content_type("player.js"), "text/javascript; charset=utf-8");
    }
}
