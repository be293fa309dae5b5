//! Bad requests answered as JSON naming the field: `{"error": ..., "detail":
//! {"field": ..., "message": ...}}`, never a panic or a 500.
//!
//! - malformed JSON: 400 (`detail.line`, `detail.column`);
//! - well-formed JSON with an unknown, missing or mistyped field: 400, the field in
//!   `detail.field`;
//! - a body over `[limits] json_body_kb`: 413 (`detail.limit_bytes`);
//! - a body that is not `application/json`: 415;
//! - a bad query string or path: 400.
//!
//! `web::Json`, `web::Query` and `web::Path` get these answers through the configs
//! below; their field is the one serde names (unknown, missing, duplicate), otherwise
//! `body` or `query`. The extractors [`ApiJson`] and [`ApiQuery`] name the exact field
//! of every error, mistyped ones included (`detail.field` like `items[2].seed`): use
//! them in new handlers.

use actix_web::dev::Payload;
use actix_web::error::{InternalError, JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::mime;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use futures_util::StreamExt as _;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::AppState;

/// Largest JSON body when the app has no state to say otherwise.
const DEFAULT_JSON_LIMIT: usize = 64 * 1024;

/// An error answer as an actix error, whatever handler it came from.
fn reject(status: StatusCode, error: &str, detail: serde_json::Value) -> actix_web::Error {
    let response = HttpResponse::build(status).json(json!({ "error": error, "detail": detail }));
    InternalError::from_response(error.to_string(), response).into()
}

/// The field a serde message names (`unknown field `x``, `missing field `x``,
/// `duplicate field `x``).
fn named_field(message: &str) -> Option<&str> {
    ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|marker| {
            let start = message.find(marker)? + marker.len();
            let length = message[start..].find('`')?;
            Some(&message[start..start + length])
        })
}

/// The message without serde_json's position suffix.
fn without_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |at| &message[..at])
}

/// The answer to a body serde_json could not take; `path` is where it failed, when known.
fn json_error(error: &serde_json::Error, path: Option<&str>) -> actix_web::Error {
    let message = error.to_string();
    let position = json!({ "line": error.line(), "column": error.column() });
    if error.is_syntax() || error.is_eof() {
        return reject(
            StatusCode::BAD_REQUEST,
            "the request body is not well-formed JSON",
            json!({
                "field": "body",
                "message": without_position(&message),
                "line": position["line"],
                "column": position["column"],
            }),
        );
    }
    let path = path.filter(|path| !path.is_empty() && *path != ".");
    let field = match (path, named_field(&message)) {
        (Some(path), Some(name)) if message.contains("missing field") => format!("{path}.{name}"),
        (Some(path), _) => path.to_string(),
        (None, Some(name)) => name.to_string(),
        (None, None) => "body".to_string(),
    };
    reject(
        StatusCode::BAD_REQUEST,
        &format!("invalid field `{field}` in the request body"),
        json!({
            "field": field,
            "message": without_position(&message),
            "line": position["line"],
            "column": position["column"],
        }),
    )
}

fn too_large(limit: usize, length: Option<usize>) -> actix_web::Error {
    reject(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request body is larger than {limit} bytes"),
        json!({ "field": "body", "limit_bytes": limit, "length_bytes": length }),
    )
}

fn not_json() -> actix_web::Error {
    reject(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "the request body must be JSON (Content-Type: application/json)",
        json!({ "field": "content-type", "expected": "application/json" }),
    )
}

/// Request-body errors of `web::Json` handlers; bodies over `limit` bytes are refused.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|error, _req| match error {
            JsonPayloadError::OverflowKnownLength { length, limit } => {
                too_large(limit, Some(length))
            }
            JsonPayloadError::Overflow { limit } => too_large(limit, None),
            JsonPayloadError::ContentType => not_json(),
            JsonPayloadError::Deserialize(error) => json_error(&error, None),
            other => reject(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
                json!({ "field": "body", "message": other.to_string() }),
            ),
        })
}

/// Query-string errors of `web::Query` handlers.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _req| {
        let QueryPayloadError::Deserialize(error) = &error else {
            return reject(
                StatusCode::BAD_REQUEST,
                "invalid query string",
                json!({ "field": "query", "message": error.to_string() }),
            );
        };
        let message = error.to_string();
        let field = named_field(&message).unwrap_or("query").to_string();
        reject(
            StatusCode::BAD_REQUEST,
            &format!("invalid query parameter `{field}`"),
            json!({ "field": field, "message": message }),
        )
    })
}

/// Path errors of `web::Path` handlers.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error, _req| {
        let PathError::Deserialize(error) = &error else {
            return reject(
                StatusCode::BAD_REQUEST,
                "invalid path",
                json!({ "field": "path", "message": error.to_string() }),
            );
        };
        reject(
            StatusCode::BAD_REQUEST,
            "invalid path",
            json!({ "field": "path", "message": error.to_string() }),
        )
    })
}

/// CORS for the configured origins: the API's methods and the headers a page sends.
pub fn cors(origins: &[String]) -> actix_cors::Cors {
    use actix_web::http::Method;
    let mut cors = actix_cors::Cors::default()
        .allowed_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
        .max_age(3600)
        // Other origins' requests go through without CORS headers (the browser keeps
        // the answer from the page); their preflights are refused before this runs.
        .block_on_origin_mismatch(false);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// Whether the request says its body is JSON (`application/json` or `+json`).
fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<mime::Mime>().ok())
        .is_some_and(|mime| {
            mime.type_() == mime::APPLICATION
                && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
        })
}

/// A JSON body whose errors name the exact field (see the module documentation).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T> std::ops::Deref for ApiJson<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(DEFAULT_JSON_LIMIT, |state| {
                state.config.limits.json_body_kb as usize * 1024
            });
        let is_json = is_json(req);
        let length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if !is_json {
                return Err(not_json());
            }
            if let Some(length) = length
                && length > limit
            {
                return Err(too_large(limit, Some(length)));
            }
            let mut body = bytes::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|error| {
                    reject(
                        StatusCode::BAD_REQUEST,
                        "the request body could not be read",
                        json!({ "field": "body", "message": error.to_string() }),
                    )
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit, None));
                }
                body.extend_from_slice(&chunk);
            }
            let mut json: serde_json::Value =
                serde_json::from_slice(&body).map_err(|error| json_error(&error, None))?;
            integral_numbers_as_integers(&mut json);
            let value: T = serde_path_to_error::deserialize(json).map_err(|error| {
                let path = error.path().to_string();
                json_error(error.inner(), Some(&path))
            })?;
            Ok(Self(value))
        })
    }
}

/// Numbers with no fraction written as floats (`282.0`) become integers, so that an
/// integer field takes them: JSON Schema, and so the OpenAPI document, counts them
/// as integers. Numbers outside the 64-bit integers stay as they are.
fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    /// 2^64 and -2^63, exactly representable as `f64`.
    const U64_END: f64 = 18_446_744_073_709_551_616.0;
    const I64_START: f64 = -9_223_372_036_854_775_808.0;
    match value {
        Value::Number(number) => {
            let Some(float) = number.as_f64().filter(|_| number.is_f64()) else {
                return;
            };
            if float.fract() != 0.0 {
                return;
            }
            if (0.0..U64_END).contains(&float) {
                *number = serde_json::Number::from(float as u64);
            } else if (I64_START..0.0).contains(&float) {
                *number = serde_json::Number::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers_as_integers),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

/// A query string whose errors name the exact parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T> std::ops::Deref for ApiQuery<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiQuery<T> {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let query = req.query_string();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        std::future::ready(
            serde_path_to_error::deserialize(deserializer)
                .map(Self)
                .map_err(|error| {
                    let message = error.inner().to_string();
                    let path = error.path().to_string();
                    let field = if path.is_empty() || path == "." {
                        named_field(&message).unwrap_or("query").to_string()
                    } else {
                        path
                    };
                    reject(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid query parameter `{field}`"),
                        json!({ "field": field, "message": message }),
                    )
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, test as actix_test};
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        seed: u64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        title: String,
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Page {
        limit: u32,
    }

    async fn exact(body: ApiJson<Body>) -> HttpResponse {
        HttpResponse::Ok().body(body.title.clone())
    }

    async fn plain(body: web::Json<Body>) -> HttpResponse {
        HttpResponse::Ok().body(body.title.clone())
    }

    async fn page(query: ApiQuery<Page>) -> HttpResponse {
        HttpResponse::Ok().body(query.limit.to_string())
    }

    async fn answer(path: &str, body: &str, content_type: &str) -> (u16, serde_json::Value) {
        let app = actix_test::init_service(
            App::new()
                .app_data(json_config(256))
                .app_data(query_config())
                .route("/exact", web::post().to(exact))
                .route("/plain", web::post().to(plain))
                .route("/page", web::get().to(page)),
        )
        .await;
        let request = if path == "/page" || path.starts_with("/page?") {
            actix_test::TestRequest::get().uri(path).to_request()
        } else {
            actix_test::TestRequest::post()
                .uri(path)
                .insert_header((header::CONTENT_TYPE, content_type))
                .set_payload(body.to_string())
                .to_request()
        };
        let response = actix_test::call_service(&app, request).await;
        let status = response.status().as_u16();
        let body = actix_test::read_body(response).await;
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    const JSON: &str = "application/json";

    #[actix_web::test]
    async fn mistyped_nested_field_is_named_exactly() {
        let (status, body) = answer(
            "/exact",
            r#"{"title":"a","items":[{"name":"x","seed":1},{"name":"y","seed":"two"}]}"#,
            JSON,
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["detail"]["field"], "items[1].seed", "{body}");
    }

    #[actix_web::test]
    async fn missing_and_unknown_fields_are_named() {
        let (status, body) = answer("/exact", r#"{"items":[]}"#, JSON).await;
        assert_eq!(
            (status, body["detail"]["field"].as_str()),
            (400, Some("title"))
        );
        let (status, body) =
            answer("/exact", r#"{"title":"a","items":[{"name":"x"}]}"#, JSON).await;
        assert_eq!(
            (status, body["detail"]["field"].as_str()),
            (400, Some("items[0].seed")),
            "{body}"
        );
        let (status, body) = answer("/plain", r#"{"title":"a","items":[],"colour":1}"#, JSON).await;
        assert_eq!(
            (status, body["detail"]["field"].as_str()),
            (400, Some("colour"))
        );
        let (status, body) = answer("/exact", r#"{"title":"a","items":[],"colour":1}"#, JSON).await;
        assert_eq!(status, 400);
        assert!(
            body["detail"]["field"].as_str().unwrap().contains("colour"),
            "{body}"
        );
    }

    #[actix_web::test]
    async fn malformed_json_is_400_with_its_position() {
        for path in ["/exact", "/plain"] {
            let (status, body) = answer(path, r#"{"title": "a", "#, JSON).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert_eq!(body["detail"]["field"], "body");
            assert_eq!(body["detail"]["line"], 1);
            let (status, _) = answer(path, r#"{"title":"a","items":[]} trailing"#, JSON).await;
            assert_eq!(status, 400, "{path}: trailing characters");
        }
    }

    #[actix_web::test]
    async fn wrong_content_type_and_oversize_bodies_are_refused() {
        for path in ["/exact", "/plain"] {
            let (status, body) = answer(path, r#"{"title":"a","items":[]}"#, "text/plain").await;
            assert_eq!(status, 415, "{path}: {body}");
            assert_eq!(body["detail"]["field"], "content-type");
        }
        let big = format!(r#"{{"title":"{}","items":[]}}"#, "a".repeat(64 * 1024 + 1));
        let (status, body) = answer("/exact", &big, JSON).await;
        assert_eq!(status, 413, "{body}");
        let (status, body) = answer("/plain", &big, JSON).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["detail"]["limit_bytes"], 256);
    }

    #[actix_web::test]
    async fn bad_query_parameters_are_named() {
        let (status, body) = answer("/page?limit=ten", "", JSON).await;
        assert_eq!(
            (status, body["detail"]["field"].as_str()),
            (400, Some("limit")),
            "{body}"
        );
        let (status, body) = answer("/page?limit=1&colour=red", "", JSON).await;
        assert_eq!(
            (status, body["detail"]["field"].as_str()),
            (400, Some("colour")),
            "{body}"
        );
        let (status, body) = answer("/page", "", JSON).await;
        assert_eq!(
            (status, body["detail"]["field"].as_str()),
            (400, Some("limit")),
            "{body}"
        );
        let (status, _) = answer("/page?limit=7", "", JSON).await;
        assert_eq!(status, 200);
    }

    #[actix_web::test]
    async fn integral_floats_are_integers() {
        let (status, body) = answer(
            "/exact",
            r#"{"title":"a","items":[{"name":"x","seed":282.0}]}"#,
            JSON,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // Exactly this integer only when floats are parsed correctly rounded.
        let (status, body) = answer(
            "/exact",
            r#"{"title":"a","items":[{"name":"x","seed":2099209259406883.0}]}"#,
            JSON,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = answer(
            "/exact",
            r#"{"title":"a","items":[{"name":"x","seed":2.5}]}"#,
            JSON,
        )
        .await;
        assert_eq!(
            (status, body["detail"]["field"].as_str()),
            (400, Some("items[0].seed")),
            "{body}"
        );
        let (status, _) = answer(
            "/exact",
            r#"{"title":"a","items":[{"name":"x","seed":-1.0}]}"#,
            JSON,
        )
        .await;
        assert_eq!(status, 400);
    }

    #[test]
    fn serde_messages_give_their_field() {
        assert_eq!(
            named_field("unknown field `colour`, expected one of `a`, `b`"),
            Some("colour")
        );
        assert_eq!(
            named_field("missing field `title` at line 1"),
            Some("title")
        );
        assert_eq!(named_field("invalid type: string"), None);
    }
}
