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
use adledger_engine::block::{EncodedBlock, Frame};
use adledger_engine::codec::{self, BlockHeader};
use adledger_engine::proof::{consistency_proof, inclusion_proof};
use adledger_engine::revision::{BlockAddress, RevisionBody, STRAND_ID};
use adledger_engine::time::format_rfc3339_millis;
use adledger_engine::{AdKey, Digest, Error, Hash, Ledger, Revision};
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::params::{QueryParams, RawPairs};
use crate::views::{BlockView, ConsistencyView, DigestView, ProofBundleView, RevisionView};

/// `GET /ledger/digest`: the digest of everything committed so far; 404 while the
/// journal is empty (there is no tree head of zero blocks to save).
pub async fn digest(State(state): State<AppState>, query: RawPairs) -> Result<Response, ApiError> {
    QueryParams::parse(query, &[])?;
    let digest = tip(&state.ledger).await?;
    Ok(Json(DigestView::from(digest)).into_response())
}

/// `GET /ledger/consistency?from=M[&to=N]`: the RFC 9162 consistency proof from the tree
/// of blocks `0..=M` to the tree of blocks `0..=N` (`N` defaults to the tip), with both
/// digests.
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
pub async fn proof(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: RawPairs,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query, &["version", "digestSequence"])?;
    let version = sequence_param(&params, "version")?;
    let digest_sequence = sequence_param(&params, "digestSequence")?;
    let key = readable_key(path)?;
    let engine = |e| ApiError::from_engine(e, false);
    let journal = state.ledger.ports().journal.clone();

    // The journal itself, not the read models: a proof is about what is committed, and
    // a committed write is in the journal before it is acknowledged.
    let refs = journal.ad_revisions(&key).await.map_err(engine)?;
    let Some(latest) = refs.iter().map(|r| r.version).max() else {
        return Err(ApiError::not_found(format!(
            "ad {} of publisher {} not found",
            key.ad_id, key.publisher_id
        )));
    };
    let version = version.unwrap_or(latest);
    let Some(found) = refs.iter().find(|r| r.version == version) else {
        return Err(ApiError::not_found(format!(
            "ad {} has no version {version}; its versions are 0 to {latest}",
            key.ad_id
        )));
    };
    let sequence = found.sequence;

    let tip = tip(&state.ledger).await?;
    let at = digest_sequence.unwrap_or(tip.sequence);
    if at > tip.sequence {
        return Err(beyond_tip("digestSequence", at, tip.sequence));
    }
    if at < sequence {
        return Err(ApiError::invalid_parameter(
            "digestSequence",
            format!(
                "version {version} of ad {} was committed in block {sequence}, after the \
                 digest at {at}; ask for a digestSequence of {sequence} or later",
                key.ad_id
            ),
        ));
    }
    let digest = digest_at(&state.ledger, &tip, at).await?;
    let stored = journal
        .read_blocks(sequence, 1)
        .await
        .map_err(engine)?
        .pop()
        .filter(|b| b.sequence == sequence)
        .ok_or_else(|| {
            engine(Error::ChainBroken {
                sequence,
                detail: format!("the block of ad {} version {version} is missing", key.ad_id),
            })
        })?;
    let evidence = Evidence::find(&stored, &key, version).map_err(engine)?;
    let proof = inclusion_proof(journal.as_ref(), sequence, at + 1)
        .await
        .map_err(engine)?;
    Ok(Json(ProofBundleView {
        revision: evidence.revision_view(sequence),
        block: evidence.block_view(sequence),
        digest: digest.into(),
        proof,
    })
    .into_response())
}

/// The stored parts of one block that prove one revision.
struct Evidence {
    header: BlockHeader,
    header_bytes: Vec<u8>,
    revision_index: usize,
    revision_bytes: Vec<u8>,
    body: RevisionBody,
}

impl Evidence {
    /// Finds the revision of `key` at `version` among the block's stored revisions.
    ///
    /// Hashes are deliberately not checked here (see the module docs); only bytes that no
    /// longer decode at all, or a block without the revision, are errors.
    fn find(stored: &EncodedBlock, key: &AdKey, version: u64) -> Result<Evidence, Error> {
        let frame = Frame::parse(&stored.bytes)?;
        let header = codec::decode_header(frame.header)?;
        let found = frame.revisions.iter().enumerate().find_map(|(i, bytes)| {
            codec::decode_revision(bytes)
                .ok()
                .filter(|body| body.key() == *key && body.metadata.version == version)
                .map(|body| (i, bytes, body))
        });
        let Some((revision_index, bytes, body)) = found else {
            return Err(Error::ChainBroken {
                sequence: stored.sequence,
                detail: format!(
                    "the block holds no revision of ad {} version {version}",
                    key.ad_id
                ),
            });
        };
        Ok(Evidence {
            header,
            header_bytes: frame.header.to_vec(),
            revision_index,
            revision_bytes: bytes.to_vec(),
            body,
        })
    }

    fn revision_view(&self, sequence: u64) -> RevisionView {
        RevisionView::from(Revision {
            block_address: BlockAddress {
                strand_id: STRAND_ID.to_string(),
                sequence_no: sequence,
            },
            hash: Hash::of(&self.revision_bytes),
            body: self.body.clone(),
        })
    }

    fn block_view(&self, sequence: u64) -> BlockView {
        BlockView {
            sequence_no: sequence,
            hash: Hash::of(&self.header_bytes),
            tx_id: self.header.tx_id.clone(),
            tx_time: format_rfc3339_millis(&self.header.tx_time),
            previous_hash: self.header.previous_hash,
            revision_hashes: self.header.revision_hashes.clone(),
            revision_index: self.revision_index,
            header_bytes: hex::encode(&self.header_bytes),
            revision_bytes: hex::encode(&self.revision_bytes),
        }
    }
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
