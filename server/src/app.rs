//! The router: every route of docs/HTTP.md plus the middleware around it.
//!
//! Built by [`app`] from an [`AppState`] (see [`crate::state`]) so handler tests drive it with
//! `tower::ServiceExt::oneshot`, without a socket. Middleware, outermost first:
//!
//! 1. request id: `x-request-id` is taken from the request or generated (a UUID), and
//!    echoed in the response;
//! 2. tracing: one span per request carrying that id, so every log line of a request
//!    (internal errors included) can be found from the id a client reports;
//! 3. problem stamping: fills `instance` and `requestId` into every problem document;
//! 4. body limit: a declared `Content-Length` over 64 KiB is refused before any
//!    handler runs (bodies without one are counted as they are read, see [`crate::body`]).
//!
//! Unknown paths (404) and unserved methods (405, with `Allow`) answer problem JSON too.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::{Level, Span};

use crate::body::{DRAIN_LIMIT_BYTES, MAX_BODY_BYTES, drain};
use crate::error::{ApiError, Problem};
use crate::routes::{ads, health, ledger, search};
pub use crate::state::AppState;

/// The header that carries the request id in both directions.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The complete HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(search::seed_search))
        .route("/search", get(search::search))
        .route("/healthz", get(health::healthz))
        .route(
            "/publisher/{publisher_id}/ad",
            get(ads::list).post(ads::create),
        )
        .route(
            "/publisher/{publisher_id}/ad/{ad_id}",
            get(ads::get).patch(ads::update).delete(ads::delete),
        )
        .route(
            "/publisher/{publisher_id}/ad/{ad_id}/proof",
            get(ledger::proof),
        )
        .route("/ledger/digest", get(ledger::digest))
        .route("/ledger/consistency", get(ledger::consistency))
        .merge(crate::routes::admin::routes())
        .merge(crate::openapi::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(middleware::from_fn(stamp_problem))
                .layer(middleware::from_fn(limit_body)),
        )
}

/// The span of one request; `request_id` ties its log lines to the client's report.
fn request_span(request: &Request<Body>) -> Span {
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
    )
}

/// Re-renders a problem document with the request's path and id.
async fn stamp_problem(request: Request, next: Next) -> Response {
    let instance = request.uri().path().to_string();
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let is_head = request.method() == Method::HEAD;
    let mut response = next.run(request).await;
    if is_head {
        return response;
    }
    if let Some(mut problem) = response.extensions_mut().remove::<Problem>() {
        problem.instance = Some(instance);
        problem.request_id = request_id;
        let bytes = problem.to_body();
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        *response.body_mut() = Body::from(bytes);
    }
    response
}

/// Refuses a declared body over the limit before a handler buffers any of it.
///
/// A body up to [`DRAIN_LIMIT_BYTES`] is read and discarded first, so the client is done
/// sending and reads its 413 (see [`crate::body::drain`]); a bigger one is not read, and
/// the connection is closed after the answer.
async fn limit_body(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > MAX_BODY_BYTES as u64 => {
            let error = ApiError::body_too_large(MAX_BODY_BYTES);
            let drained = length <= DRAIN_LIMIT_BYTES
                && drain(request.into_body().into_data_stream(), length).await;
            if drained {
                error.into_response()
            } else {
                error.closing_connection().into_response()
            }
        }
        _ => next.run(request).await,
    }
}

/// 404 for a path no route serves.
async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no resource at {}; the routes are /publisher/{{publisherId}}/ad[/{{adId}}[/proof]], \
         /search, /?q=, /ledger/digest, /ledger/consistency and /healthz",
        uri.path()
    ))
}

/// 405 for a method a route does not serve; axum adds the `Allow` header.
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(format!(
        "{method} is not served at {}; the Allow header lists the methods that are",
        uri.path()
    ))
}
