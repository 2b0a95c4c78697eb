//! `GET /healthz`: liveness plus how far the journal and the read models have got, so
//! an operator can see a projection falling behind.

use std::collections::BTreeMap;

use adledger_engine::projection::ProjectorRole;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;
use crate::params::{QueryParams, RawPairs};
use crate::state::AppState;

/// The body of `/healthz`.
#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    journal: JournalHealth,
    projections: ProjectionHealth,
    projectors: ProjectorsHealth,
    /// DynamoDB requests this process has sent, by operation (absent when none: the
    /// local backend), so the cost of a write can be measured from outside.
    #[serde(
        rename = "dynamodbRequests",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    dynamodb_requests: BTreeMap<String, u64>,
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

/// Who projects into each read model, as this process knows it.
#[derive(Debug, Serialize)]
struct ProjectorsHealth {
    state: ProjectorHealth,
    search: ProjectorHealth,
}

/// One read model's projector: `exclusive` (no other process writes it), `holder` (this
/// process holds the lease and projects) or `standby` (another process does, or nobody
/// is known to yet).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProjectorHealth {
    role: &'static str,
    /// This process's lease owner id (absent when exclusive).
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    /// The lease holder's owner id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    holder: Option<String>,
}

impl From<ProjectorRole> for ProjectorHealth {
    fn from(role: ProjectorRole) -> Self {
        match role {
            ProjectorRole::Exclusive => ProjectorHealth {
                role: "exclusive",
                owner: None,
                holder: None,
            },
            ProjectorRole::Holder { owner } => ProjectorHealth {
                role: "holder",
                holder: Some(owner.clone()),
                owner: Some(owner),
            },
            ProjectorRole::Standby { owner, holder } => ProjectorHealth {
                role: "standby",
                owner: Some(owner),
                holder,
            },
        }
    }
}

/// `{"status":"ok","journal":{"blocks":N},"projections":{"state":N,"search":N},
/// "projectors":{"state":{"role":"exclusive"},"search":{"role":"exclusive"}}}`; on the AWS
/// backend a state projector's role is `holder` or `standby`, with `owner` and `holder`.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "Alive, with how far the journal and the read models have got", body = crate::wire_schema::Health),
        (status = 400, description = "A query parameter (this route takes none)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
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
        projectors: ProjectorsHealth {
            state: state.ledger.state_projector().into(),
            search: state.ledger.search_projector().into(),
        },
        dynamodb_requests: dynamodb_requests(),
    })
    .into_response())
}

#[cfg(feature = "aws")]
fn dynamodb_requests() -> BTreeMap<String, u64> {
    adledger_aws::metrics::request_counts()
}

#[cfg(not(feature = "aws"))]
fn dynamodb_requests() -> BTreeMap<String, u64> {
    BTreeMap::new()
}
