//! The router: every route of docs/HTTP.md plus the middleware around it.
//!
//! Built by [`app`] (or [`app_with_limits`]) from an [`AppState`] (see [`crate::state`]) so
//! handler tests drive it with `tower::ServiceExt::oneshot`, without a socket. Middleware,
//! outermost first:
//!
//! 1. request id: `x-request-id` is taken from the request if it is acceptable (one value
//!    of 1 to 128 visible ASCII characters, see [`is_acceptable_request_id`]), otherwise
//!    generated (a UUID), and echoed in the response;
//! 2. tracing: one span per request carrying that id, so every log line of a request
//!    (internal errors included) can be found from the id a client reports;
//! 3. problem stamping: fills `instance` and `requestId` into every problem document;
//! 4. load shedding: past [`HttpLimits::max_in_flight`] requests in flight, a request is
//!    answered 503 with `Retry-After` at once (tower's `LoadShed` outside a concurrency
//!    limit shared by every route; the limit alone would queue it);
//! 5. request timeout: a request not answered within [`HttpLimits::request_timeout`] is
//!    dropped and answered 503 with `Retry-After`;
//! 6. body deadline: a body not complete within [`HttpLimits::body_read_timeout`] of the
//!    head is answered 408 (see [`crate::edge::body_deadline`]);
//! 7. body limit: a declared `Content-Length` over 64 KiB is refused before any
//!    handler runs (bodies without one are counted as they are read, see [`crate::body`]);
//! 8. the read gate of `[auth] reads = "authenticated"` ([`crate::auth::access`]); the
//!    write routes check their caller themselves (the `Writer` extractor).
//!
//! Unknown paths (404) and unserved methods (405, with `Allow`) answer problem JSON too.
//! The connection-level limits (header-read timeout, open connections, shutdown grace)
//! are the accept loop's, in [`crate::edge::serve`].

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, ServiceBuilder};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::{Level, Span};

use crate::body::{DRAIN_LIMIT_BYTES, MAX_BODY_BYTES, drain};
use crate::edge::{HttpLimits, body_deadline, overload_response};
use crate::error::{ApiError, Problem};
use crate::routes::{ads, feed, feed_stream, health, ledger, search};
pub use crate::state::AppState;

/// The header that carries the request id in both directions.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-chosen request id accepted, in characters.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The complete HTTP application with the default [`HttpLimits`].
pub fn app(state: AppState) -> Router {
    app_with_limits(state, &HttpLimits::default())
}

/// The complete HTTP application with the request-level `limits` (the connection-level
/// ones are applied by [`crate::edge::serve`]).
pub fn app_with_limits(state: AppState, limits: &HttpLimits) -> Router {
    let request_timeout = limits.request_timeout.get();
    // One semaphore for the whole router: `Router::layer` wraps each route separately,
    // and a per-route limit would let every route have `max_in_flight` of its own.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight.get()));
    Router::new()
        .route("/", get(search::seed_search))
        .route("/search", get(search::search))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(crate::routes::metrics::metrics))
        .route("/readyz", get(health::readyz))
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
        .route("/ledger/events", get(feed::events))
        .route("/ledger/events/stream", get(feed_stream::stream))
        .merge(crate::routes::admin::routes())
        .merge(crate::routes::subscriptions::routes())
        .merge(crate::openapi::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(crate::metrics::track))
        .layer(middleware::from_fn_with_state(
            state.auth.clone(),
            crate::auth::access::require_reader,
        ))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .map_request(drop_unacceptable_request_id)
                .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(middleware::from_fn(stamp_problem))
                .layer(HandleErrorLayer::new(move |error: BoxError| async move {
                    overload_response(&error, request_timeout)
                }))
                .layer(LoadShedLayer::new())
                .layer(GlobalConcurrencyLimitLayer::with_semaphore(in_flight))
                .layer(TimeoutLayer::new(request_timeout))
                .layer(middleware::from_fn_with_state(
                    limits.body_read_timeout.get(),
                    body_deadline,
                ))
                .layer(middleware::from_fn(limit_body)),
        )
}

/// Whether a client's `x-request-id` value is used as the request's id: 1 to
/// [`MAX_REQUEST_ID_LEN`] visible ASCII characters (`!` to `~`). Anything else — spaces,
/// control or non-ASCII bytes, an empty or overlong value — would put untrusted bytes of
/// unbounded size into every log line and problem document, so it is replaced.
pub fn is_acceptable_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&value.len()) && value.iter().all(u8::is_ascii_graphic)
}

/// Removes the request's `x-request-id` unless it is one acceptable value, so the next
/// layer generates a fresh id.
fn drop_unacceptable_request_id(mut request: Request) -> Request {
    let mut values = request.headers().get_all(&X_REQUEST_ID).iter();
    let acceptable = match (values.next(), values.next()) {
        (Some(value), None) => is_acceptable_request_id(value.as_bytes()),
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    if !acceptable {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    request
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
         /search, /?q=, /ledger/digest, /ledger/consistency, /healthz and /readyz",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_acceptable_only_when_short_and_visible() {
        assert!(is_acceptable_request_id(b"01HV-abc_~!"));
        assert!(is_acceptable_request_id(&[b'x'; MAX_REQUEST_ID_LEN]));
        assert!(!is_acceptable_request_id(&[b'x'; MAX_REQUEST_ID_LEN + 1]));
        assert!(!is_acceptable_request_id(b""));
        assert!(!is_acceptable_request_id(b"two words"));
        assert!(!is_acceptable_request_id(b"tab\there"));
        assert!(!is_acceptable_request_id("café".as_bytes()));
    }

    #[test]
    fn only_a_single_acceptable_request_id_survives() {
        let with = |values: &[&'static str]| {
            let mut request = Request::new(Body::empty());
            for value in values {
                request
                    .headers_mut()
                    .append(X_REQUEST_ID, HeaderValue::from_static(value));
            }
            drop_unacceptable_request_id(request)
                .headers()
                .get_all(X_REQUEST_ID)
                .iter()
                .count()
        };
        assert_eq!(with(&["good-id"]), 1);
        assert_eq!(with(&["bad id"]), 0);
        assert_eq!(with(&["one", "two"]), 0);
        assert_eq!(with(&[]), 0);
    }
}
