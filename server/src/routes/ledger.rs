//! `/ledger/digest`, `/ledger/consistency` and `/publisher/{p}/ad/{adId}/proof`: what a
//! client needs to check, without trusting this server, that the ledger holds a revision
//! and that its history was only ever appended to.
//!
//! # What the proof route vouches for
//!
//! Nothing, on purpose. It serves the stored bytes of the block header and of the
//! revision *as they are*, without first checking them against each other: if the
//! journal was altered, the bundle shows it and the verifier (`adledger proof verify`, or
//! any RFC 9162 client) rejects it. A route that refused to answer would hide the very
//! evidence an auditor asks for.

use adledger_engine::ad::{is_well_formed_ad_id, validate_publisher_id};
use adledger_engine::evidence::revision_evidence;
use adledger_engine::proof::consistency_proof;
use adledger_engine::{AdKey, Digest, Error, Ledger};
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::params::{QueryParams, RawPairs};
use crate::state::AppState;
use crate::views::{ConsistencyView, DigestView, ProofBundleView};

/// `GET /ledger/digest`: the digest of everything committed so far; 404 while the
/// journal is empty (there is no tree head of zero blocks to save).
#[utoipa::path(
    get, path = "/ledger/digest", tag = "ledger",
    responses(
        (status = 200, description = "The digest of everything committed so far", body = crate::wire_schema::Digest),
        (status = 400, description = "A query parameter (this route takes none)", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The journal is empty", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn digest(State(state): State<AppState>, query: RawPairs) -> Result<Response, ApiError> {
    QueryParams::parse(query, &[])?;
    let digest = tip(&state.ledger).await?;
    Ok(Json(DigestView::from(digest)).into_response())
}

/// `GET /ledger/consistency?from=M[&to=N]`: the RFC 9162 consistency proof from the tree
/// of blocks `0..=M` to the tree of blocks `0..=N` (`N` defaults to the tip), with both
/// digests.
#[utoipa::path(
    get, path = "/ledger/consistency", tag = "ledger",
    params(
        ("from" = u64, Query, description = "The sequence of the earlier digest"),
        ("to" = Option<u64>, Query, description = "The sequence of the later digest (default: the tip)"),
    ),
    responses(
        (status = 200, description = "Proof that the digest at `from` is a prefix of the digest at `to`", body = crate::wire_schema::Consistency),
        (status = 400, description = "a malformed, unknown or repeated query parameter, `from` missing, `from > to` or `to` past the tip", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The journal is empty", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn consistency(
    State(state): State<AppState>,
    query: RawPairs,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query, &["from", "to"])?;
    let from = sequence_param(&params, "from")?.ok_or_else(|| {
        ApiError::invalid_parameter(
            "from",
            "`from` is required: the sequence of the digest you saved earlier".into(),
        )
    })?;
    let to = sequence_param(&params, "to")?;
    let tip = tip(&state.ledger).await?;
    let to = to.unwrap_or(tip.sequence);
    if to > tip.sequence {
        return Err(beyond_tip("to", to, tip.sequence));
    }
    if from > to {
        return Err(ApiError::invalid_parameter(
            "from",
            format!(
                "`from` ({from}) is after `to` ({to}): a consistency proof goes from an \
                 earlier digest to a later one"
            ),
        ));
    }
    let engine = |e| ApiError::from_engine(e, false);
    let journal = state.ledger.ports().journal.as_ref();
    let proof = consistency_proof(journal, from + 1, to + 1)
        .await
        .map_err(engine)?;
    let from = digest_at(&state.ledger, &tip, from).await?;
    let to = digest_at(&state.ledger, &tip, to).await?;
    Ok(Json(ConsistencyView {
        from: from.into(),
        to: to.into(),
        proof,
    })
    .into_response())
}

/// `GET /publisher/{publisherId}/ad/{adId}/proof[?version=V][&digestSequence=N]`: the
/// revision at version `V` (default: the latest), its block's stored bytes, the digest at
/// `N` (default: the tip) and the inclusion proof of the block under that digest.
#[utoipa::path(
    get, path = "/publisher/{publisherId}/ad/{adId}/proof", tag = "ledger",
    params(
        ("publisherId" = String, Path, description = "1–128 characters of letters, digits, `_`, `.` or `-`", pattern = "^[A-Za-z0-9_.-]{1,128}$"),
        ("adId" = String, Path, description = "The ad's id (a 26-character ULID)", pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
        ("version" = Option<u64>, Query, description = "The ad's version (default: the latest)"),
        ("digestSequence" = Option<u64>, Query, description = "The digest to prove against (default: the tip); at least the revision's block"),
    ),
    responses(
        (status = 200, description = "The proof bundle", body = crate::wire_schema::ProofBundle),
        (status = 400, description = "a malformed, unknown or repeated query parameter, or a `digestSequence` past the tip or before the revision's block", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown ad or version", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn proof(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: RawPairs,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query, &["version", "digestSequence"])?;
    let version = sequence_param(&params, "version")?;
    let digest_sequence = sequence_param(&params, "digestSequence")?;
    let key = readable_key(path)?;
    let journal = state.ledger.ports().journal.clone();
    let evidence = revision_evidence(journal.as_ref(), &key, version, digest_sequence)
        .await
        .map_err(|e| match e {
            // The engine names the parameter; here it is a query parameter (400), not a
            // field of a request body (422).
            Error::Invalid { field, reason } => ApiError::invalid_parameter(&field, reason),
            other => ApiError::from_engine(other, false),
        })?;
    Ok(Json(ProofBundleView::from(evidence)).into_response())
}

/// The digest at the tip; 404 while the journal is empty.
async fn tip(ledger: &Ledger) -> Result<Digest, ApiError> {
    ledger
        .digest()
        .await
        .map_err(|e| ApiError::from_engine(e, false))?
        .ok_or_else(|| {
            ApiError::not_found(
                "the journal is empty: there is no digest before the first write".into(),
            )
        })
}

/// The digest at `sequence ≤ tip.sequence`, reusing the tip when it is the one asked for.
async fn digest_at(ledger: &Ledger, tip: &Digest, sequence: u64) -> Result<Digest, ApiError> {
    if sequence == tip.sequence {
        return Ok(*tip);
    }
    ledger
        .digest_at(sequence)
        .await
        .map_err(|e| ApiError::from_engine(e, false))
}

/// A journal sequence number (or version) parameter; `None` when absent.
fn sequence_param(params: &QueryParams, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    // `u64::from_str` accepts a leading `+`; a sequence is digits only.
    match text.parse::<u64>() {
        Ok(n) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
        _ => Err(ApiError::invalid_parameter(
            name,
            format!("`{name}` must be a whole number from 0 up, got {text:?}"),
        )),
    }
}

/// 400: a sequence past the journal's last block.
fn beyond_tip(name: &str, asked: u64, last: u64) -> ApiError {
    ApiError::invalid_parameter(
        name,
        format!(
            "`{name}` is {asked}, but the journal's last block is {last}; ask for a \
             sequence from 0 to {last}"
        ),
    )
}

/// The ad named by the path; 404 when a segment cannot name an ad, without asking the
/// storage (the same rule as the other ad routes).
fn readable_key(path: Result<Path<(String, String)>, PathRejection>) -> Result<AdKey, ApiError> {
    let Ok(Path((publisher_id, ad_id))) = path else {
        return Err(ApiError::not_found(
            "the ad path is not valid UTF-8 text".into(),
        ));
    };
    if validate_publisher_id(&publisher_id).is_err() {
        return Err(ApiError::not_found(format!(
            "publisher {publisher_id:?} cannot exist: publisher ids are 1 to 128 characters of \
             letters, digits, '_', '.' or '-'"
        )));
    }
    if !is_well_formed_ad_id(&ad_id) {
        return Err(ApiError::not_found(format!(
            "ad {ad_id:?} not found: ad ids are 26-character ULIDs assigned by the server"
        )));
    }
    Ok(AdKey::new(publisher_id, ad_id))
}
