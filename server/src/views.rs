//! The JSON shapes the API answers with (docs/HTTP.md): an ad, a QLDB-shaped revision,
//! a page of search results, digests and proofs.
//!
//! These are separate from the engine's types so the wire format is written down in one
//! place and cannot change by accident when the engine's structs do. The ad's and the
//! revision's shapes live in the engine (`ad_view`, `revision_view`): a search index
//! stores ads in the first, the feed carries the second.

pub use adledger_engine::ad_view::AdView;
use adledger_engine::evidence::RevisionEvidence;
use adledger_engine::proof::{ConsistencyProof, InclusionProof};
pub use adledger_engine::revision_view::RevisionView;
use adledger_engine::time::format_rfc3339_millis;
use adledger_engine::{Digest, Hash};
use serde::Serialize;

/// A page of `GET /search`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResultsView {
    /// How many ads match in all.
    pub total: u64,
    /// This page.
    pub items: Vec<AdView>,
    /// The `cursor` of the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// A digest of the journal: the RFC 9162 Merkle tree head over blocks `0..=sequence`,
/// and the hash of block `sequence`. This is what an auditor saves and later checks
/// proofs against.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestView {
    /// The last block covered.
    pub sequence: u64,
    /// The Merkle tree head, 64 hex digits.
    pub root: Hash,
    /// The hash of block `sequence`, 64 hex digits.
    pub tip_hash: Hash,
}

impl From<Digest> for DigestView {
    fn from(digest: Digest) -> Self {
        DigestView {
            sequence: digest.sequence,
            root: digest.root,
            tip_hash: digest.tip_hash,
        }
    }
}

/// The block that holds a proved revision: its header fields, for people to read, and
/// the exact stored bytes of the header and of the revision, for a verifier to hash.
///
/// The decoded fields are a convenience; a verifier must trust only the bytes:
/// `hash = SHA-256(headerBytes)`, `SHA-256(revisionBytes)` must be listed in the header's
/// `revisionHashes`, and the header must decode to the fields shown here.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockView {
    /// Where the block is stored (the inclusion proof's leaf index).
    pub sequence_no: u64,
    /// SHA-256 of the header bytes: the Merkle leaf is `SHA-256(0x00 ‖ hash)`.
    pub hash: Hash,
    /// The transaction id, as the header records it.
    pub tx_id: String,
    /// The commit time, as the header records it.
    pub tx_time: String,
    /// The previous block's hash, as the header records it.
    pub previous_hash: Hash,
    /// The hashes of the block's revisions, as the header records them.
    pub revision_hashes: Vec<Hash>,
    /// The position of the proved revision among the block's revisions.
    pub revision_index: usize,
    /// The header's canonical Ion bytes, as stored, in lower-case hex.
    pub header_bytes: String,
    /// The proved revision's canonical Ion bytes, as stored, in lower-case hex.
    pub revision_bytes: String,
}

/// `GET …/ad/{adId}/proof`: everything an auditor needs to check offline that a revision
/// is under a digest.
#[derive(Debug, Clone, Serialize)]
pub struct ProofBundleView {
    /// The proved revision, in the shape of `?versions=true`.
    pub revision: RevisionView,
    /// Its block.
    pub block: BlockView,
    /// The digest the proof leads to.
    pub digest: DigestView,
    /// The RFC 9162 inclusion proof of the block under the digest.
    pub proof: InclusionProof,
}

impl From<RevisionEvidence> for ProofBundleView {
    fn from(evidence: RevisionEvidence) -> Self {
        let block = BlockView {
            sequence_no: evidence.sequence(),
            hash: evidence.block_hash(),
            tx_id: evidence.header.tx_id,
            tx_time: format_rfc3339_millis(&evidence.header.tx_time),
            previous_hash: evidence.header.previous_hash,
            revision_hashes: evidence.header.revision_hashes,
            revision_index: evidence.revision_index,
            header_bytes: hex::encode(&evidence.header_bytes),
            revision_bytes: hex::encode(&evidence.revision_bytes),
        };
        ProofBundleView {
            revision: RevisionView::from(evidence.revision),
            block,
            digest: evidence.digest.into(),
            proof: evidence.proof,
        }
    }
}

/// `GET /ledger/consistency`: proof that the digest `from` is a prefix of the digest `to`.
#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyView {
    /// The earlier digest.
    pub from: DigestView,
    /// The later digest.
    pub to: DigestView,
    /// The RFC 9162 consistency proof between their trees.
    pub proof: ConsistencyProof,
}

#[cfg(test)]
mod tests {
    use super::*;
    use adledger_engine::AdDraft;
    use chrono::{TimeZone, Utc};

    #[test]
    fn ad_view_matches_the_documented_shape() {
        let body = serde_json::from_str(
            r#"{"adTitle":"awesome title","price":19.99,"tags":["a"],"currency":"EUR"}"#,
        )
        .unwrap_or_default();
        let Ok(draft) = AdDraft::from_json(&body) else {
            panic!("valid draft");
        };
        let at = Utc.timestamp_millis_opt(1_577_836_800_003).single();
        let Some(at) = at else {
            panic!("valid time");
        };
        let view = AdView::new(draft.into_ad("acme", "01HV4Z0J8Q2W3E4R5T6Y7U8I9O"), 1, &at);
        let json = serde_json::to_string(&view).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"adId":"01HV4Z0J8Q2W3E4R5T6Y7U8I9O","publisherId":"acme","adTitle":"awesome title","adDescription":"","price":19.99,"currency":"EUR","category":"","tags":["a"],"version":1,"updatedAt":"2020-01-01T00:00:00.003Z"}"#
        );
    }
}
