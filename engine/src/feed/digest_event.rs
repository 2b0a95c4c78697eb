//! The periodic digest event: every `digest_every` blocks the feed says what the
//! journal's digest is at that block, and proves it extends the previous digest event's.
//!
//! A consumer that kept the last verified digest checks the consistency proof against
//! it; a consumer that read every block since a digest event pushes their hashes onto
//! that event's `frontier` and must arrive at the next digest's root, which binds every
//! block hash it saw to the journal's Merkle tree.

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, digest_at, stored_frontier};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::ports::Journal;
use crate::proof::{ConsistencyProof, consistency_proof};

/// `data` of a digest event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DigestEventData {
    /// The digest at the event's block.
    pub digest: Digest,
    /// Blocks between two digest events: a digest event follows block `s` exactly when
    /// `(s + 1) % every == 0`.
    pub every: u64,
    /// The roots of the perfect subtrees of the tree of `digest.sequence + 1` leaves,
    /// largest first (RFC 9162 tree, as the journal stores it). They fold to
    /// `digest.root`, and a consumer appends later block hashes to them.
    pub frontier: Vec<Hash>,
    /// The proof that this digest extends the previous digest event's; `null` on the
    /// first digest event of the journal.
    pub consistency: Option<DigestConsistency>,
}

/// A consistency proof from an earlier digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DigestConsistency {
    /// The previous digest event's digest.
    pub from: Digest,
    /// RFC 9162 consistency proof from `from` to this event's digest.
    pub proof: ConsistencyProof,
}

/// Whether block `sequence` is followed by a digest event.
pub fn is_digest_block(sequence: u64, every: u64) -> bool {
    every > 0 && (sequence + 1).is_multiple_of(every)
}

/// The digest event's data for block `sequence`, whose hash is `block_hash`: O(log n)
/// stored Merkle nodes, plus the previous digest's when there is one.
pub(super) async fn digest_event_data(
    journal: &dyn Journal,
    sequence: u64,
    block_hash: Hash,
    every: u64,
) -> Result<DigestEventData> {
    let size = sequence + 1;
    let (frontier, tree) = stored_frontier(journal, size).await?;
    let root = tree
        .root()
        .ok_or_else(|| Error::Corrupt("Merkle frontier mismatch".into()))?;
    let consistency = match sequence.checked_sub(every) {
        Some(previous) => Some(DigestConsistency {
            from: digest_at(journal, previous).await?,
            proof: consistency_proof(journal, previous + 1, size).await?,
        }),
        None => None,
    };
    Ok(DigestEventData {
        digest: Digest {
            sequence,
            root,
            tip_hash: block_hash,
        },
        every,
        frontier,
        consistency,
    })
}
