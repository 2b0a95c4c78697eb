//! `GET /metrics` (see [`crate::metrics`] for what is recorded).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /metrics`.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String),
        (status = 404, description = "Metrics are served on another address (`--metrics-listen`)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    if state.metrics_elsewhere {
        return ApiError::not_found(
            "metrics are served on the address of --metrics-listen, not on this one".into(),
        )
        .into_response();
    }
    render(&state)
}

/// The routes of the separate metrics listener (`--metrics-listen`): `/metrics` only.
pub fn metrics_only(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(state): State<AppState>| async move { render(&state) }),
        )
        .with_state(state)
}

/// The Prometheus text of this process, with the scrape-time gauges refreshed.
fn render(state: &AppState) -> Response {
    let Some(handle) = crate::metrics::install() else {
        return ApiError::from_engine(
            adledger_engine::Error::Unavailable("metrics are not recorded by this process".into()),
            false,
        )
        .into_response();
    };
    let committed = state.ledger.committed();
    let (state_next, search_next) = state.ledger.projected();
    metrics::gauge!("adledger_journal_blocks").set(committed as f64);
    metrics::gauge!("adledger_projection_lag_blocks", "model" => "state")
        .set(committed.saturating_sub(state_next) as f64);
    metrics::gauge!("adledger_projection_lag_blocks", "model" => "search")
        .set(committed.saturating_sub(search_next) as f64);
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
