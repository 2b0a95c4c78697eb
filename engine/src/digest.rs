//! The digest of a journal at a sequence number, from its stored Merkle nodes alone.
//!
//! [`Ledger::digest_at`](crate::Ledger::digest_at) needs a running ledger; snapshots,
//! exports and imports work on a stopped data directory, so they use this function,
//! which reads the same O(log n) stored subtree roots and computes the same digest.

use crate::block::Frame;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::merkle::{self, Frontier};
use crate::ports::Journal;

/// The digest of the journal at a sequence number. Its JSON form (`{sequence, root,
/// tipHash}`) is the one the HTTP API serves and the ledger feed's digest events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    /// The last block covered.
    pub sequence: u64,
    /// The Merkle tree head over blocks `0..=sequence`.
    pub root: Hash,
    /// The hash of block `sequence`.
    pub tip_hash: Hash,
}

/// The digest over blocks `0..=sequence`: the Merkle root and the hash of block
/// `sequence`. `NotFound` when the journal does not reach `sequence`.
pub async fn digest_at(journal: &dyn Journal, sequence: u64) -> Result<Digest> {
    let size = sequence.checked_add(1).ok_or_else(|| Error::NotFound {
        what: format!("block {sequence}"),
    })?;
    let (_, frontier) = stored_frontier(journal, size).await?;
    let root = frontier
        .root()
        .ok_or_else(|| Error::Corrupt("Merkle frontier mismatch".into()))?;
    let stored = journal
        .read_blocks(sequence, 1)
        .await?
        .pop()
        .ok_or_else(|| Error::NotFound {
            what: format!("block {sequence}"),
        })?;
    let tip_hash = Frame::parse(&stored.bytes)
        .map_err(|e| Error::ChainBroken {
            sequence,
            detail: e.to_string(),
        })?
        .block_hash();
    Ok(Digest {
        sequence,
        root,
        tip_hash,
    })
}

/// The stored roots of the perfect subtrees of the tree of `size` blocks (largest
/// first), and the frontier they form: O(log n) nodes read in one call. A missing node is
/// [`Error::ChainBroken`] at the last block of the tree.
pub(crate) async fn stored_frontier(
    journal: &dyn Journal,
    size: u64,
) -> Result<(Vec<Hash>, Frontier)> {
    let ids = merkle::frontier_ids(size);
    let hashes = journal
        .merkle_nodes(&ids)
        .await?
        .into_iter()
        .zip(&ids)
        .map(|(hash, (level, index))| {
            hash.ok_or_else(|| Error::ChainBroken {
                sequence: size.saturating_sub(1),
                detail: format!("Merkle node (level {level}, index {index}) is missing"),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let frontier = Frontier::from_nodes(size, &hashes)
        .ok_or_else(|| Error::Corrupt("Merkle frontier does not match the tree size".into()))?;
    Ok((hashes, frontier))
}
