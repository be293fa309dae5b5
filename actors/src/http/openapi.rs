//! `GET /api/openapi.json`: the OpenAPI 3.1 document of every route the engine
//! serves, made by utoipa from the handlers' `#[utoipa::path]` annotations and the
//! `ToSchema` types they read and answer.
//!
//! What every route shares is added here, from the code that does it, so that the
//! document cannot drift from it:
//! - the bearer security and the role of each operation come from
//!   [`crate::auth::required_role`], the rule the access middleware applies; with it
//!   the 401 (no usable token), 403 (role too low) and 429 (rate limit) answers;
//! - operations with a JSON body answer 400 (malformed or a bad field), 413 (over
//!   `[limits] json_body_kb`) and 415 (not JSON), from [`super::validation`];
//! - operations with query parameters answer 400 for a bad one.
//!
//! The test `every_route_is_documented` compares the document with the routes the
//! application really answers, so a route added without an annotation fails it.

use std::sync::LazyLock;

use actix_web::http::Method;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder, Schema,
    schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type},
};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::auth::{Role, is_listener_stream, required_role};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/openapi.json", web::get().to(openapi_json));
}

/// The name of the bearer security scheme in the document.
pub const BEARER: &str = "bearer";

/// Every error answer: `{"error": ..., "detail": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub error: String,
    /// More about it, or `null`. For bad input `field` names the field (`body`,
    /// `content-type`, a query parameter, or a body field's path such as
    /// `items[2].seed`); other keys depend on the error (`limit_bytes`,
    /// `required_role`, `retry_after_seconds`, ...).
    #[schema(required)]
    pub detail: Option<ErrorDetail>,
}

/// The details of an error answer; keys other than these depend on the error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The request field that was wrong.
    pub field: Option<String>,
    /// What was wrong with it.
    pub message: Option<String>,
}

/// Bytes of a file or a stream (`type: string, format: binary`).
#[derive(Debug)]
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SonicForge",
        description = "The HTTP API of the SonicForge engine: stations, playlists, the media library, play history, listener streams and operations. Reads are open unless `[auth] require_listener_token` is set; every other method needs a bearer token (`sonicforge token --role ROLE`) of the role each operation names in its security requirement.",
        license(name = "Apache-2.0")
    ),
    paths(
        super::web_files::index,
        super::station_page,
        super::websocket,
        super::http_stream,
        super::web_files::asset,
        super::web_files::manifest,
        super::web_files::service_worker,
        super::list_stations,
        super::get_station,
        super::play_events::now_playing,
        super::play_events::history,
        super::play_events::stats,
        super::play_events::track_plays,
        super::chaos,
        super::metrics,
        super::healthz,
        super::readyz,
        super::station_events::station_events,
        super::playlists::list,
        super::playlists::create,
        super::playlists::get,
        super::playlists::replace,
        super::playlists::delete,
        super::playlists::station_playlist,
        super::playlists::swap,
        super::playlists::skip,
        super::playlists::queue,
        super::media::list,
        super::media::upload,
        super::media::get,
        super::media::remove,
        super::console::session,
        super::stations::add,
        super::stations::remove,
        super::stations::stop,
        super::stations::start,
        super::web_files::console_page,
        openapi_json,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&SharedAnswers),
    tags(
        (name = "stations", description = "Stations and what they play"),
        (name = "playlists", description = "Playlists, swaps, skips and requests"),
        (name = "media", description = "The media library"),
        (name = "history", description = "Play history and figures from the event store"),
        (name = "listen", description = "Listener streams: endless, so not fetched to their end by API tests"),
        (name = "pages", description = "The web player, the console and their files"),
        (name = "admin", description = "Admin-only hooks"),
        (name = "operations", description = "Health, readiness, metrics, this document and the token check"),
    )
)]
struct ApiDoc;

/// The document, made once.
static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// The OpenAPI document of every route.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    &DOCUMENT
}

/// `GET /api/openapi.json`
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object))
)]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

/// The operations of a path item with their methods.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (Method, &mut Operation)> {
    [
        (Method::GET, item.get.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
        (Method::OPTIONS, item.options.as_mut()),
        (Method::HEAD, item.head.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
        (Method::TRACE, item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.map(|operation| (method, operation)))
}

/// The methods a documented path template answers.
pub fn methods(item: &PathItem) -> Vec<Method> {
    [
        (Method::GET, item.get.is_some()),
        (Method::PUT, item.put.is_some()),
        (Method::POST, item.post.is_some()),
        (Method::DELETE, item.delete.is_some()),
        (Method::OPTIONS, item.options.is_some()),
        (Method::HEAD, item.head.is_some()),
        (Method::PATCH, item.patch.is_some()),
        (Method::TRACE, item.trace.is_some()),
    ]
    .into_iter()
    .filter_map(|(method, present)| present.then_some(method))
    .collect()
}

/// A path of the template with every `{parameter}` filled in.
pub fn sample_path(template: &str) -> String {
    let mut path = String::with_capacity(template.len());
    let mut in_parameter = false;
    for c in template.chars() {
        match c {
            '{' => in_parameter = true,
            '}' => {
                in_parameter = false;
                path.push_str("sample");
            }
            _ if !in_parameter => path.push(c),
            _ => {}
        }
    }
    path
}

/// Whether a concrete path matches a template (`{x}` matches one non-empty segment).
fn matches_template(template: &str, path: &str) -> bool {
    let mut template = template.split('/');
    let mut path = path.split('/');
    loop {
        match (template.next(), path.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) if t.starts_with('{') && t.ends_with('}') => {
                if p.is_empty() {
                    return false;
                }
            }
            (Some(t), Some(p)) if t == p => {}
            _ => return false,
        }
    }
}

/// The methods of the documented route `path` answers, or `None` when no route has
/// this path.
pub fn allowed_methods(path: &str) -> Option<Vec<Method>> {
    document()
        .paths
        .paths
        .iter()
        .find(|(template, _)| matches_template(template, path))
        .map(|(_, item)| methods(item))
}

/// The answer to a known path asked with a method it does not take: 405 with
/// `Allow`.
pub fn method_not_allowed(method: &Method, allowed: &[Method]) -> HttpResponse {
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow.clone()))
        .json(serde_json::json!({
            "error": format!("this path does not take {method}"),
            "detail": { "allowed_methods": allowed.iter().map(Method::as_str).collect::<Vec<_>>() },
        }))
}

/// A JSON error answer of the document's components.
fn error_response(description: &str, retry_after: bool) -> Response {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if retry_after {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait before trying again"))
                .build(),
        );
    }
    response.build()
}

/// The shared answers of the module documentation, as components.
const SHARED_RESPONSES: &[(&str, &str, bool)] = &[
    (
        "BadRequest",
        "The request is malformed: `detail.field` names the body field, query parameter or path segment",
        false,
    ),
    (
        "Unauthorized",
        "No usable bearer token (missing, malformed, signed with another secret or expired); `WWW-Authenticate: Bearer`",
        false,
    ),
    (
        "Forbidden",
        "The token's role is below the one the operation needs (`detail.required_role`)",
        false,
    ),
    (
        "PayloadTooLarge",
        "The body is over `[limits] json_body_kb` (`detail.limit_bytes`)",
        false,
    ),
    (
        "UnsupportedMediaType",
        "The body is not `application/json`",
        false,
    ),
    (
        "TooManyRequests",
        "Too many connection attempts from this address (`[limits] connections_per_second`)",
        true,
    ),
];

/// Adds the bearer scheme, each operation's security and the answers every route
/// shares (see the module documentation).
struct SharedAnswers;

impl Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An HS256 token from `sonicforge token --role listener|operator|admin`; \
                         the requirement's list names the lowest role that may call the operation",
                    ))
                    .build(),
            ),
        );
        for (name, description, retry_after) in SHARED_RESPONSES {
            components.responses.insert(
                name.to_string(),
                RefOr::T(error_response(description, *retry_after)),
            );
        }
        for (template, item) in openapi.paths.paths.iter_mut() {
            let path = sample_path(template);
            let rate_limited = path.starts_with("/api/") || is_listener_stream(&path);
            for (method, operation) in operations_mut(item) {
                let always = required_role(&method, &path, false);
                let with_listener_tokens = required_role(&method, &path, true);
                let mut shared: Vec<(&str, &str)> = Vec::new();
                operation.security = Some(match (always, with_listener_tokens) {
                    (Some(role), _) => {
                        shared.extend([("401", "Unauthorized"), ("403", "Forbidden")]);
                        vec![SecurityRequirement::new(BEARER, [role.name()])]
                    }
                    (None, Some(role)) => {
                        shared.push(("401", "Unauthorized"));
                        if role > Role::Listener {
                            shared.push(("403", "Forbidden"));
                        }
                        vec![
                            SecurityRequirement::default(),
                            SecurityRequirement::new(BEARER, [role.name()]),
                        ]
                    }
                    (None, None) => vec![SecurityRequirement::default()],
                });
                if rate_limited {
                    shared.push(("429", "TooManyRequests"));
                }
                let json_body = operation.request_body.as_ref().is_some_and(|body| {
                    body.content
                        .keys()
                        .any(|content| content == "application/json")
                });
                if json_body {
                    shared.extend([
                        ("400", "BadRequest"),
                        ("413", "PayloadTooLarge"),
                        ("415", "UnsupportedMediaType"),
                    ]);
                }
                let has_query = operation.parameters.as_ref().is_some_and(|parameters| {
                    parameters
                        .iter()
                        .any(|parameter| parameter.parameter_in == ParameterIn::Query)
                });
                if has_query {
                    shared.push(("400", "BadRequest"));
                }
                for (status, name) in shared {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;
    use actix_web::{App, HttpRequest, test as actix_test};
    use std::collections::BTreeSet;

    /// Marks answers of the default service: no route took the request.
    const UNROUTED: &str = "x-unrouted";
    /// The path whose answer lists the application's resources.
    const RESOURCE_DUMP: &str = "/__resources__";

    async fn unrouted(req: HttpRequest) -> HttpResponse {
        let body = if req.path() == RESOURCE_DUMP {
            format!("{:?}", req.resource_map())
        } else {
            String::new()
        };
        HttpResponse::build(StatusCode::NOT_FOUND)
            .insert_header((UNROUTED, "1"))
            .body(body)
    }

    /// The path patterns of every resource in a `ResourceMap`'s debug text.
    fn patterns(resource_map: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut rest = resource_map;
        while let Some(at) = rest.find("Single(\"") {
            rest = &rest[at + "Single(\"".len()..];
            if let Some(end) = rest.find('"') {
                found.insert(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
        found.retain(|pattern| !pattern.is_empty());
        found
    }

    const METHODS: [Method; 6] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];

    /// Every (method, path pattern) the application answers with a route of its own,
    /// found by asking it: the patterns come from its resource map, the methods from
    /// whether a request reaches a handler or falls through to the default service.
    async fn routes_the_app_answers() -> BTreeSet<(String, String)> {
        let app = actix_test::init_service(
            App::new()
                .configure(super::super::configure)
                .default_service(web::to(unrouted)),
        )
        .await;
        let dump = actix_test::call_and_read_body(
            &app,
            actix_test::TestRequest::get()
                .uri(RESOURCE_DUMP)
                .to_request(),
        )
        .await;
        let patterns = patterns(&String::from_utf8_lossy(&dump));
        assert!(
            patterns.len() > 10,
            "the resource map lists too few patterns: {patterns:?}"
        );
        let mut routes = BTreeSet::new();
        for pattern in patterns {
            for method in METHODS {
                let request = actix_test::TestRequest::default()
                    .method(method.clone())
                    .uri(&sample_path(&pattern))
                    .to_request();
                let response = actix_test::call_service(&app, request).await;
                if !response.headers().contains_key(UNROUTED) {
                    routes.insert((method.to_string(), pattern.clone()));
                }
            }
        }
        routes
    }

    fn documented_routes() -> BTreeSet<(String, String)> {
        document()
            .paths
            .paths
            .iter()
            .flat_map(|(template, item)| {
                methods(item)
                    .into_iter()
                    .map(move |method| (method.to_string(), template.clone()))
            })
            .collect()
    }

    #[actix_web::test]
    async fn every_route_is_documented() {
        let answered = routes_the_app_answers().await;
        let documented = documented_routes();
        let undocumented: Vec<_> = answered.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&answered).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the OpenAPI document: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "documented routes the application does not answer: {unrouted:?}"
        );
    }

    #[test]
    fn each_operation_names_the_role_the_middleware_requires() {
        let document = serde_json::to_value(document()).unwrap();
        for (template, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let path = sample_path(template);
                let security = operation["security"].as_array().unwrap();
                let named: Vec<&str> = security
                    .iter()
                    .filter_map(|requirement| requirement[BEARER].as_array())
                    .flatten()
                    .filter_map(|role| role.as_str())
                    .collect();
                let open = security
                    .iter()
                    .any(|requirement| requirement.as_object().unwrap().is_empty());
                match required_role(&method, &path, false) {
                    Some(role) => {
                        assert_eq!(named, [role.name()], "{method} {template}");
                        assert!(!open, "{method} {template} is open in the document");
                        assert!(operation["responses"]["401"].is_object());
                        assert!(operation["responses"]["403"].is_object());
                    }
                    None => assert!(open, "{method} {template} needs a token in the document"),
                }
            }
        }
        let chaos = &document["paths"]["/api/admin/chaos"]["post"]["security"];
        assert_eq!(chaos, &serde_json::json!([{ BEARER: ["admin"] }]));
        let swap = &document["paths"]["/api/stations/{id}/playlist"]["put"]["security"];
        assert_eq!(swap, &serde_json::json!([{ BEARER: ["operator"] }]));
    }

    #[test]
    fn json_bodies_and_errors_have_their_schemas() {
        let document = serde_json::to_value(document()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let create = &document["paths"]["/api/playlists"]["post"];
        assert_eq!(
            create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/PlaylistInput"
        );
        for status in ["400", "413", "415", "422", "409"] {
            assert!(create["responses"][status].is_object(), "{status}");
        }
        let error = &document["components"]["schemas"]["ErrorBody"];
        assert_eq!(error["required"], serde_json::json!(["error", "detail"]));
        let stream = &document["paths"]["/stations/{id}/stream.opus"]["get"];
        assert!(stream["responses"]["200"]["content"]["audio/ogg"].is_object());
        let events = &document["paths"]["/api/stations/{id}/events"]["get"];
        assert!(events["responses"]["200"]["content"]["text/event-stream"].is_object());
    }

    #[test]
    fn paths_match_their_templates() {
        assert!(matches_template("/api/stations/{id}", "/api/stations/main"));
        assert!(!matches_template("/api/stations/{id}", "/api/stations/"));
        assert!(!matches_template("/api/stations/{id}", "/api/stations/a/b"));
        assert_eq!(
            sample_path("/api/stations/{id}/skip"),
            "/api/stations/sample/skip"
        );
        assert_eq!(
            allowed_methods("/api/playlists/x"),
            Some(vec![Method::GET, Method::PUT, Method::DELETE])
        );
        assert_eq!(allowed_methods("/nowhere"), None);
    }
}
