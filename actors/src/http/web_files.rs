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

pub(super) async fn console_page() -> Result<HttpResponse, ApiError> {
    serve("console.html", true)
}

pub(super) async fn asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    if file.contains('/') || file.starts_with('.') {
        return Err(ApiError::NotFound);
    }
    serve(&file, true)
}

pub(super) async fn manifest() -> Result<HttpResponse, ApiError> {
    serve("manifest.webmanifest", true)
}

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
