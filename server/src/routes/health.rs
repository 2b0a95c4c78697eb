//! `GET /healthz`: liveness plus how far the journal and the read models have got, so
//! an operator can see a projection falling behind.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;
use crate::error::ApiError;
use crate::params::{QueryParams, RawPairs};

/// The body of `/healthz`.
#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    journal: JournalHealth,
    projections: ProjectionHealth,
}

/// Committed blocks.
#[derive(Debug, Serialize)]
struct JournalHealth {
    blocks: u64,
}

/// Blocks each read model has applied.
#[derive(Debug, Serialize)]
struct ProjectionHealth {
    state: u64,
    search: u64,
}

/// `{"status":"ok","journal":{"blocks":N},"projections":{"state":N,"search":N}}`.
pub async fn healthz(State(state): State<AppState>, query: RawPairs) -> Result<Response, ApiError> {
    QueryParams::parse(query, &[])?;
    let engine = |e| ApiError::from_engine(e, false);
    let ports = state.ledger.ports();
    let blocks = state.ledger.committed();
    let state_checkpoint = ports.state.checkpoint().await.map_err(engine)?;
    let search_checkpoint = ports.search.checkpoint().await.map_err(engine)?;
    Ok(Json(Health {
        status: "ok",
        journal: JournalHealth { blocks },
        projections: ProjectionHealth {
            state: state_checkpoint,
            search: search_checkpoint,
        },
    })
    .into_response())
}
