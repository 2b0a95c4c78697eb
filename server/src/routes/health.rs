//! `GET /healthz`: liveness plus how far the journal and the read models have got, so
//! an operator can see a projection falling behind; `GET /readyz`: whether the shared
//! stores answer now.
//!
//! `/healthz` is what a load balancer polls, so it answers from memory: the blocks this
//! process has committed or seen, and, when the state store is shared with other
//! processes (the AWS backend), the checkpoint and journal tip this process last wrote or
//! read, with their age (`observed`), instead of asking DynamoDB on every call. Only the
//! first call of a process that has not yet learned its state checkpoint reads it. A
//! search index of this process's own (tantivy) is read directly: that costs no request.
//!
//! `/readyz` reads the journal's tip and the state checkpoint from the stores (two
//! `GetItem`s on AWS) — at most once a second per process: calls within a second of the
//! last check share its answer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use adledger_engine::projection::ProjectorRole;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;
use crate::params::{QueryParams, RawPairs};
use crate::readiness::Readiness;
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
    /// DynamoDB capacity units this process's requests consumed, by operation, as
    /// DynamoDB reported them (absent when none), so a workload can be priced from a run.
    #[serde(
        rename = "dynamodbCapacity",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    dynamodb_capacity: BTreeMap<&'static str, CapacityUnits>,
    /// Values learned from the shared stores, with their age (absent on a backend whose
    /// stores are this process's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    observed: Option<ObservedHealth>,
}

/// What this process last learned from the shared stores.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ObservedHealth {
    /// The journal's next sequence as last read or written.
    #[serde(skip_serializing_if = "Option::is_none")]
    journal_tip: Option<Observed>,
    /// The state checkpoint as last read or written.
    #[serde(skip_serializing_if = "Option::is_none")]
    state_checkpoint: Option<Observed>,
}

/// A value and how long ago this process learned it.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
struct Observed {
    value: u64,
    age_ms: u64,
}

impl Observed {
    /// Only the AWS backend learns values from shared stores.
    #[cfg(feature = "aws")]
    fn at(value: u64, at: Instant) -> Observed {
        Observed {
            value,
            age_ms: u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }
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
/// backend a state projector's role is `holder` or `standby`, with `owner` and `holder`,
/// and `observed` gives the last known journal tip and state checkpoint with their age.
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
    let shared_state = ports.sharing.state.is_some();
    let (state_checkpoint, observed) = if shared_state {
        let checkpoint = match last_state_checkpoint() {
            Some(observed) => observed.value,
            // Nothing learned yet: one read, remembered from then on.
            None => ports.state.checkpoint().await.map_err(engine)?,
        };
        let observed = ObservedHealth {
            journal_tip: last_journal_tip(),
            state_checkpoint: last_state_checkpoint(),
        };
        (checkpoint, Some(observed))
    } else {
        (ports.state.checkpoint().await.map_err(engine)?, None)
    };
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
        dynamodb_capacity: dynamodb_capacity(),
        observed,
    })
    .into_response())
}

/// How long a `/readyz` answer is reused.
const READY_FOR: Duration = Duration::from_secs(1);

/// `GET /readyz`: 200 `{"status":"ready","journalTip":N,"stateCheckpoint":N,"ageMs":N}`
/// when the journal and the state store answer, else 503 with `error` (which store; the
/// backend's error is logged, not sent); checked at most once a second.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The journal and the state store answer (checked at most once a second)", body = crate::wire_schema::Readiness),
        (status = 400, description = "A query parameter (this route takes none)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store did not answer; `error` says which", body = crate::wire_schema::Readiness),
    ),
)]
pub async fn readyz(State(state): State<AppState>, query: RawPairs) -> Result<Response, ApiError> {
    QueryParams::parse(query, &[])?;
    let mut cached = state.readiness.lock().await;
    let fresh = cached
        .as_ref()
        .filter(|(at, _)| at.elapsed() < READY_FOR)
        .map(|(at, ready)| (*at, ready.clone()));
    let (at, mut ready) = match fresh {
        Some(fresh) => fresh,
        None => {
            let ready = check(&state).await;
            let now = Instant::now();
            *cached = Some((now, ready.clone()));
            (now, ready)
        }
    };
    drop(cached);
    ready.age_ms = u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX);
    let status = if ready.error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(ready)).into_response())
}

/// Reads the journal's tip and the state checkpoint from the stores. A failure is logged
/// with the backend's error; the answer only names the store, since backend error text
/// is not for clients.
async fn check(state: &AppState) -> Readiness {
    let unavailable = |store: &str, error: adledger_engine::Error| {
        tracing::warn!(%error, "readiness: the {store} did not answer");
        Readiness {
            status: "unavailable",
            journal_tip: None,
            state_checkpoint: None,
            error: Some(format!("the {store} did not answer")),
            age_ms: 0,
        }
    };
    let tip = match state.ledger.read_point().await {
        Ok(tip) => tip,
        Err(error) => return unavailable("journal", error),
    };
    match state.ledger.ports().state.checkpoint().await {
        Ok(checkpoint) => Readiness {
            status: "ready",
            journal_tip: Some(tip),
            state_checkpoint: Some(checkpoint),
            error: None,
            age_ms: 0,
        },
        Err(error) => unavailable("state store", error),
    }
}

#[cfg(feature = "aws")]
fn last_state_checkpoint() -> Option<Observed> {
    adledger_aws::metrics::state_checkpoint().map(|o| Observed::at(o.value, o.at))
}

#[cfg(feature = "aws")]
fn last_journal_tip() -> Option<Observed> {
    adledger_aws::metrics::journal_tip().map(|o| Observed::at(o.value, o.at))
}

#[cfg(not(feature = "aws"))]
fn last_state_checkpoint() -> Option<Observed> {
    None
}

#[cfg(not(feature = "aws"))]
fn last_journal_tip() -> Option<Observed> {
    None
}

#[cfg(feature = "aws")]
fn dynamodb_requests() -> BTreeMap<String, u64> {
    adledger_aws::metrics::request_counts()
}

#[cfg(not(feature = "aws"))]
fn dynamodb_requests() -> BTreeMap<String, u64> {
    BTreeMap::new()
}

/// Read and write capacity units consumed by one kind of DynamoDB operation.
#[derive(Debug, Serialize)]
struct CapacityUnits {
    read: f64,
    write: f64,
}

#[cfg(feature = "aws")]
fn dynamodb_capacity() -> BTreeMap<&'static str, CapacityUnits> {
    adledger_aws::capacity::consumed()
        .into_iter()
        .map(|(op, u)| {
            (
                op,
                CapacityUnits {
                    read: u.read,
                    write: u.write,
                },
            )
        })
        .collect()
}

#[cfg(not(feature = "aws"))]
fn dynamodb_capacity() -> BTreeMap<&'static str, CapacityUnits> {
    BTreeMap::new()
}
