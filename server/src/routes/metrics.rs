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
    ),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
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
