//! `GET /openapi.json` (the OpenAPI 3.1 description of every route, generated from the
//! handlers' `#[utoipa::path]` annotations) and the Swagger UI at `/docs`.
//!
//! The schemas of the wire format are in [`crate::wire_schema`].
//!
//! The Swagger UI is a vendored build of the npm package `swagger-ui-dist` (see
//! `server/assets/swagger-ui/README.md`), compiled into the binary: `/docs` loads
//! nothing from the network.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, HeaderBuilder, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::PROBLEM_JSON;
use crate::state::AppState;
use crate::wire_schema::Problem;

/// The regular expression of a publisher id (`validate_publisher_id`).
pub const PUBLISHER_ID_PATTERN: &str = "^[A-Za-z0-9_.-]{1,128}$";
/// The regular expression of an ad id: a ULID in Crockford base 32.
pub const AD_ID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$";

/// The whole API description; `ApiDoc::openapi()` builds it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "adledger",
        description = "A verifiable ledger of classified ads. Errors are RFC 9457 problem \
                       documents (`application/problem+json`). See docs/HTTP.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        crate::routes::ads::create,
        crate::routes::ads::list,
        crate::routes::ads::get,
        crate::routes::ads::update,
        crate::routes::ads::delete,
        crate::routes::ledger::proof,
        crate::routes::ledger::digest,
        crate::routes::ledger::consistency,
        crate::routes::feed::events,
        crate::routes::feed_stream::stream,
        crate::routes::search::search,
        crate::routes::search::seed_search,
        crate::routes::health::healthz,
        crate::routes::metrics::metrics,
        crate::routes::health::readyz,
        crate::routes::admin::replay,
        crate::routes::admin::rebuild_shadow,
        crate::routes::admin::snapshot_create,
        crate::routes::admin::snapshot_list,
        crate::routes::subscriptions::create,
        crate::routes::subscriptions::list,
        crate::routes::subscriptions::show,
        crate::routes::subscriptions::remove,
        crate::routes::subscriptions::pause,
        crate::routes::subscriptions::resume,
        crate::routes::subscriptions::seek,
        crate::routes::subscriptions::rotate_secret,
        crate::routes::subscriptions::dead_letters,
        crate::routes::subscriptions::redeliver,
        openapi_json,
        docs_page,
        docs_asset,
    ),
    components(schemas(Problem)),
    modifiers(&EveryOperation),
    tags(
        (name = "ads", description = "A publisher's ads: create, list, read, update, delete"),
        (name = "search", description = "Full-text and filtered search"),
        (name = "ledger", description = "Digests and proofs: verify the ledger without trusting the server"),
        (name = "feed", description = "The ledger feed: every revision as a CloudEvent, in journal order, verifiable"),
        (name = "operations", description = "Health, admin jobs and this description"),
    )
)]
pub struct ApiDoc;

/// Adds what every operation can answer, whatever its route: 503 when the server is
/// shutting down, shedding load or the read models did not catch up in time; 401 on the
/// reads `[auth] reads = "authenticated"` gates; and the `bearer` security scheme the
/// write routes name.
struct EveryOperation;

impl Modify for EveryOperation {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "A JWT from the configured issuer (`--auth hs256` or `--auth jwks`); \
                             not needed with `--auth none`, the offline default",
                        ))
                        .build(),
                ),
            );
        let gated_read =
            challenge_response("With `[auth] reads = \"authenticated\"`: no valid bearer token");
        // Every write under a publisher checks its caller the same way (the `Writer`
        // extractor of `crate::auth::access`): described once here.
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/publisher/") {
                continue;
            }
            for operation in [&mut item.post, &mut item.patch, &mut item.delete]
                .into_iter()
                .flatten()
            {
                let responses = &mut operation.responses.responses;
                responses.entry("401".into()).or_insert_with(|| {
                    RefOr::T(challenge_response(
                        "Caller identity is required (`--auth hs256|jwks`) and the request has \
                         no valid bearer token; `WWW-Authenticate` says `Bearer \
                         realm=\"adledger\"`, with `error=\"invalid_token\"` and \
                         `error_description` when a token was refused",
                    ))
                });
                responses.entry("403".into()).or_insert_with(|| {
                    problem_response(
                        "The token does not grant this publisher (its `publishers` claim, a \
                         `publisher:<id>` group, or admin rights)",
                    )
                });
                responses.entry("507".into()).or_insert_with(|| {
                    problem_response(
                        "The disk holding the journal is full (`/problems/storage-full`): \
                         the write was not acknowledged; retry after `Retry-After` seconds, \
                         writes resume once space is freed",
                    )
                });
            }
        }
        // Every subscription route answers these the same way (see
        // `crate::routes::subscriptions`): described once here, not on each handler.
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/ledger/subscriptions") {
                continue;
            }
            for operation in operations(item) {
                for (status, description) in SUBSCRIPTION_ANSWERS {
                    operation
                        .responses
                        .responses
                        .entry(status.into())
                        .or_insert_with(|| problem_response(description));
                }
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let public = matches!(
                path.as_str(),
                "/healthz" | "/readyz" | "/metrics" | "/openapi.json"
            ) || path.starts_with("/docs")
                || path.starts_with("/admin");
            if let (false, Some(get)) = (public, item.get.as_mut()) {
                get.responses
                    .responses
                    .entry("401".into())
                    .or_insert_with(|| RefOr::T(gated_read.clone()));
            }
        }
        let unavailable = ResponseBuilder::new()
            .description(
                "Shutting down, too many requests in flight, or the read models did not \
                 catch up in time; retry after `Retry-After` seconds",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(0)),
                    )
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            )
            .content(PROBLEM_JSON, Content::new(Some(problem_ref())))
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                operation
                    .responses
                    .responses
                    .entry("503".into())
                    .or_insert_with(|| RefOr::T(unavailable.clone()));
            }
        }
    }
}

/// What every `/ledger/subscriptions` route can answer besides its own statuses.
const SUBSCRIPTION_ANSWERS: [(&str, &str); 2] = [
    ("401", "No `Authorization: Bearer` header"),
    ("403", "Not an admin"),
];

/// The operations of a path item.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.patch,
        &mut item.delete,
    ]
    .into_iter()
    .flatten()
}

/// A 401: a problem document with a `WWW-Authenticate` challenge.
fn challenge_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .build(),
        )
        .content(PROBLEM_JSON, Content::new(Some(problem_ref())))
        .build()
}

/// A response with a problem document and `description`.
fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(PROBLEM_JSON, Content::new(Some(problem_ref())))
            .build(),
    )
}

fn problem_ref() -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Problem"))
}

/// The generated document, serialized once.
pub fn document() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        // Serializing a document made of strings, maps and numbers cannot fail.
        ApiDoc::openapi().to_pretty_json().unwrap_or_default()
    })
}

/// The routes of this module, to be merged into the application.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs_page))
        .route("/docs/{asset}", get(docs_asset))
}

/// `GET /openapi.json`.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document(),
    )
        .into_response()
}

/// The Swagger UI page; its scripts and styles are served from `/docs/{asset}`.
const INDEX_HTML: &str = include_str!("../assets/swagger-ui/index.html");
/// Swagger UI's settings: where the document is.
const INITIALIZER_JS: &str = include_str!("../assets/swagger-ui/swagger-initializer.js");
/// The vendored Swagger UI build.
const BUNDLE_JS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
/// The vendored Swagger UI styles.
const STYLES_CSS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");

/// `GET /docs`.
#[utoipa::path(
    get, path = "/docs", tag = "operations",
    responses((status = 200, description = "The Swagger UI page, reading /openapi.json", content_type = "text/html", body = String)),
)]
pub async fn docs_page() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        INDEX_HTML,
    )
        .into_response()
}

/// `GET /docs/{asset}`: the Swagger UI's script and styles.
#[utoipa::path(
    get, path = "/docs/{asset}", tag = "operations",
    params(("asset" = String, Path, description = "`swagger-ui-bundle.js`, `swagger-initializer.js` or `swagger-ui.css`")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "No such file", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn docs_asset(axum::extract::Path(asset): axum::extract::Path<String>) -> Response {
    let (content_type, body): (&'static str, &'static [u8]) = match asset.as_str() {
        "swagger-ui-bundle.js" => ("text/javascript", BUNDLE_JS),
        "swagger-initializer.js" => ("text/javascript", INITIALIZER_JS.as_bytes()),
        "swagger-ui.css" => ("text/css", STYLES_CSS),
        _ => {
            return crate::error::ApiError::not_found(format!(
                "no file {asset:?} under /docs; the Swagger UI page is /docs"
            ))
            .into_response();
        }
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every `(METHOD, path)` the router's source registers with `.route(…)`, parameter
    /// names blanked (`{}`). Read from the source files themselves, so a route added
    /// anywhere in the server is seen without anyone remembering to list it.
    fn routes_in_source() -> BTreeSet<(String, String)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut files = vec![];
        let mut pending = vec![std::path::PathBuf::from(dir)];
        while let Some(path) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                panic!("cannot list {}", path.display());
            };
            for entry in entries.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    pending.push(p);
                } else if p.extension().is_some_and(|e| e == "rs") {
                    files.push(p);
                }
            }
        }
        let mut routes = BTreeSet::new();
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap_or_default();
            let mut rest = source.as_str();
            while let Some(at) = rest.find(".route(") {
                rest = &rest[at + ".route(".len()..];
                // The call's arguments: up to the parenthesis that closes `.route(`.
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map_or(rest.len(), |(i, _)| i);
                let call = &rest[..end];
                // A route's first argument is a path literal; anything else (this scanner's
                // own text) is not a route.
                let Some(path) = call
                    .trim_start()
                    .strip_prefix("\"/")
                    .and_then(|p| p.split('"').next())
                    .map(|p| format!("/{p}"))
                else {
                    continue;
                };
                let router_args = &call[call.find(',').unwrap_or(0)..];
                for method in ["get", "post", "put", "patch", "delete"] {
                    let used = router_args
                        .match_indices(&format!("{method}("))
                        .any(|(i, _)| {
                            i == 0
                                || !router_args.as_bytes()[i - 1].is_ascii_alphanumeric()
                                    && router_args.as_bytes()[i - 1] != b'_'
                        });
                    if used {
                        routes.insert((method.to_uppercase(), blank_params(&path)));
                    }
                }
            }
        }
        routes
    }

    fn blank_params(path: &str) -> String {
        let mut out = String::new();
        let mut inside = false;
        for c in path.chars() {
            match c {
                '{' => {
                    inside = true;
                    out.push_str("{}");
                }
                '}' => inside = false,
                _ if !inside => out.push(c),
                _ => {}
            }
        }
        out
    }

    fn routes_in_document() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap_or_default();
        let mut routes = BTreeSet::new();
        if let Some(paths) = doc["paths"].as_object() {
            for (path, item) in paths {
                for method in ["get", "post", "put", "patch", "delete"] {
                    if item.get(method).is_some() {
                        routes.insert((method.to_uppercase(), blank_params(path)));
                    }
                }
            }
        }
        routes
    }

    #[test]
    fn every_route_of_the_router_is_described() {
        let source = routes_in_source();
        // The scan itself must see the routes, or the comparison proves nothing.
        assert!(
            source.contains(&("PATCH".into(), "/publisher/{}/ad/{}".into())),
            "the source scan found no PATCH route: {source:?}"
        );
        assert!(
            source.len() >= 17,
            "the source scan found too few routes: {source:?}"
        );
        let documented = routes_in_document();
        let undocumented: Vec<_> = source.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "routes the OpenAPI document does not describe (add #[utoipa::path] to the \
             handler and list it in ApiDoc's paths): {undocumented:?}"
        );
        let phantom: Vec<_> = documented.difference(&source).collect();
        assert!(
            phantom.is_empty(),
            "the OpenAPI document describes routes the router does not have: {phantom:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_and_errors_are_problem_json() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap_or_default();
        assert_eq!(doc["openapi"], "3.1.0");
        let create = &doc["paths"]["/publisher/{publisherId}/ad"]["post"];
        assert!(
            create["responses"]["422"]["content"][PROBLEM_JSON]["schema"]["$ref"]
                .as_str()
                .is_some_and(|r| r.ends_with("/Problem")),
            "422 of a create is not a problem document: {}",
            create["responses"]["422"]
        );
        assert!(create["responses"]["503"]["headers"]["Retry-After"].is_object());
        let problem = &doc["components"]["schemas"]["Problem"];
        assert!(problem["properties"]["type"].is_object(), "{problem}");
        assert!(problem["properties"]["requestId"].is_object(), "{problem}");
        let mut subscription_operations = 0;
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            if !path.starts_with("/ledger/subscriptions") {
                continue;
            }
            for (method, operation) in item.as_object().into_iter().flatten() {
                subscription_operations += 1;
                for status in ["401", "403"] {
                    assert!(
                        operation["responses"][status]["content"][PROBLEM_JSON].is_object(),
                        "{method} {path} does not describe its {status}"
                    );
                }
            }
        }
        assert!(subscription_operations >= 9, "{subscription_operations}");
        for (path, method) in [
            ("/publisher/{publisherId}/ad", "post"),
            ("/publisher/{publisherId}/ad/{adId}", "patch"),
            ("/publisher/{publisherId}/ad/{adId}", "delete"),
        ] {
            let responses = &doc["paths"][path][method]["responses"];
            assert!(
                responses["401"]["headers"]["WWW-Authenticate"].is_object(),
                "{method} {path}: {responses}"
            );
            assert!(
                responses["403"]["content"][PROBLEM_JSON].is_object(),
                "{method} {path}"
            );
            assert!(
                responses["507"]["content"][PROBLEM_JSON].is_object(),
                "{method} {path}: a full disk"
            );
        }
    }
}
