//! The chain checks, written once for every reader that follows the journal block by
//! block: full verification ([`crate::verify`]), the import of an export file
//! ([`crate::import`]) and the rebuild of the read models ([`crate::rebuild`]).
//!
//! # What is checked, per block, in order
//!
//! 1. The block is the one expected next (no gap, no reordering).
//! 2. Its stored bytes split into a header and revisions ([`Frame::parse`]).
//! 3. The header decodes and its `sequenceNo` is the block's position.
//! 4. Its `previousHash` is the hash of the previous block's stored header bytes, and
//!    its `txTime` is not earlier than the previous block's.
//! 5. It lists as many revision hashes as it holds revisions, and each revision's bytes
//!    hash to the hash listed for it.
//! 6. When the caller keeps the Merkle tree, the block hash is pushed into it, and the
//!    caller compares the nodes it completes ([`Chain::completed`]) with what it has.
//!
//! The first failure is a [`VerifyFailure`] naming the sequence, and where it can, the ad,
//! version and header field concerned; callers that answer with [`crate::Error`] convert
//! it (the sequence and sentence survive).
//!
//! # Parallelism
//!
//! Steps 1–3 and 5's hashing need no other block ([`standalone`]): they are nearly all of
//! the work, so a batch of blocks is split over threads ([`par_map`]) while the caller
//! reads the next batch, and only the links (4, 5's comparison, 6) are made in order on
//! one thread. Async callers run a batch with [`check_batch`], which moves the work off
//! the async threads so that other futures (the read of the next batch, a read-model
//! write) keep running.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::block::{EncodedBlock, Frame};
use crate::codec;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::merkle::Frontier;
use crate::ports::MerkleNode;

/// The first place where a journal (or an export of one) does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("journal does not verify at sequence {sequence}: {detail}")]
pub struct VerifyFailure {
    /// The first sequence number that does not verify.
    pub sequence: u64,
    /// The ad of the revision concerned, when the failure is in a revision whose stored
    /// bytes still decode.
    pub ad_id: Option<String>,
    /// That revision's version.
    pub version: Option<u64>,
    /// The header field or stored item that does not match: `frame`, `header`,
    /// `sequenceNo`, `previousHash`, `txTime`, `revisionHashes`, `revisionHashes[i]`,
    /// `merkleNode(level L, index I)`, `merkleRoot`, `digest`; `None` for a missing block.
    pub field: Option<String>,
    /// A sentence saying what was found and what was expected.
    pub detail: String,
}

impl From<VerifyFailure> for Error {
    fn from(failure: VerifyFailure) -> Self {
        Error::ChainBroken {
            sequence: failure.sequence,
            detail: failure.detail,
        }
    }
}

/// A failure at `sequence` that concerns no particular revision.
pub(crate) fn failure(sequence: u64, field: Option<String>, detail: String) -> VerifyFailure {
    VerifyFailure {
        sequence,
        ad_id: None,
        version: None,
        field,
        detail,
    }
}

/// What a block shows on its own, before it is linked to its neighbours: its hash, its
/// header's link, and the first revision whose stored bytes do not hash to the header's
/// entry. Computing it is nearly all of the checking work (every SHA-256 over stored
/// bytes, the header decode) and needs no other block, so batches compute it on all cores.
///
/// It holds no heap data: results cross from worker threads to the linking thread by the
/// million, and freeing on another thread than the one that allocated is slow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Standalone {
    /// SHA-256 of the header bytes.
    pub(crate) hash: Hash,
    /// The header's `previousHash`.
    pub(crate) previous_hash: Hash,
    /// The header's `txTime`.
    pub(crate) tx_time: DateTime<Utc>,
    /// How many revision hashes the header lists.
    pub(crate) listed: usize,
    /// How many revisions the block holds.
    pub(crate) revisions: usize,
    /// The first revision that does not hash to its listed hash: index, actual, listed.
    pub(crate) bad_revision: Option<(usize, Hash, Hash)>,
}

/// The checks of one block that need no other block, in order: it is the block asked
/// for, its bytes split into a frame, its header decodes and names its place, and each
/// revision is hashed.
pub(crate) fn standalone(
    sequence: u64,
    stored: &EncodedBlock,
) -> std::result::Result<Standalone, VerifyFailure> {
    if stored.sequence != sequence {
        let detail = if stored.sequence > sequence {
            format!(
                "block {sequence} is missing: the journal goes on with block {}",
                stored.sequence
            )
        } else {
            format!(
                "the journal returned block {} where block {sequence} belongs",
                stored.sequence
            )
        };
        return Err(failure(sequence, None, detail));
    }
    let frame = Frame::parse(&stored.bytes).map_err(|e| {
        failure(
            sequence,
            Some("frame".into()),
            format!("the stored bytes do not split into header and revisions: {e}"),
        )
    })?;
    let header = codec::decode_header(frame.header).map_err(|e| {
        failure(
            sequence,
            Some("header".into()),
            format!("the block header does not decode: {e}"),
        )
    })?;
    if header.sequence_no != sequence {
        return Err(failure(
            sequence,
            Some("sequenceNo".into()),
            format!(
                "the header says it is block {}, but it is stored as block {sequence} \
                 (blocks moved or swapped)",
                header.sequence_no
            ),
        ));
    }
    let bad_revision = frame
        .revisions
        .iter()
        .zip(&header.revision_hashes)
        .map(|(bytes, listed)| (Hash::of(bytes), listed))
        .position(|(actual, listed)| actual != *listed)
        .map(|i| (i, Hash::of(frame.revisions[i]), header.revision_hashes[i]));
    Ok(Standalone {
        hash: frame.block_hash(),
        previous_hash: header.previous_hash,
        tx_time: header.tx_time,
        listed: header.revision_hashes.len(),
        revisions: frame.revisions.len(),
        bad_revision,
    })
}

/// Below this many blocks per thread, starting threads costs more than it saves.
const MIN_BLOCKS_PER_THREAD: usize = 256;

/// The threads a batch is split over when the caller does not choose: the machine's cores.
pub(crate) fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `check(sequence, block)` for every block of a batch starting at sequence `first`,
/// split over up to `threads` scoped threads. The results are in block order, so the
/// sequential pass after it reports the first failure exactly as a one-thread run would.
pub(crate) fn par_map<T, F>(first: u64, blocks: &[EncodedBlock], threads: usize, check: F) -> Vec<T>
where
    T: Send,
    F: Fn(u64, &EncodedBlock) -> T + Sync,
{
    let per_thread = blocks
        .len()
        .div_ceil(threads.max(1))
        .max(MIN_BLOCKS_PER_THREAD);
    if blocks.len() <= per_thread {
        return (first..).zip(blocks).map(|(s, b)| check(s, b)).collect();
    }
    let check = &check;
    std::thread::scope(|scope| {
        let workers: Vec<_> = blocks
            .chunks(per_thread)
            .enumerate()
            .map(|(i, chunk)| {
                let start = first + (i * per_thread) as u64;
                scope.spawn(move || {
                    (start..)
                        .zip(chunk)
                        .map(|(s, b)| check(s, b))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(results) => results,
                // The checks do not panic (the decoders guard ion-rs); if one ever did,
                // re-raise it here rather than report a journal as verified.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// [`par_map`] for async callers: the batch is checked on the blocking pool, so the
/// future joined with this one (reading the next batch, writing the previous one) runs
/// meanwhile. The blocks come back with their results.
pub(crate) async fn check_batch<T, F>(
    first: u64,
    blocks: Vec<EncodedBlock>,
    threads: usize,
    check: F,
) -> Result<(Vec<EncodedBlock>, Vec<T>)>
where
    T: Send + 'static,
    F: Fn(u64, &EncodedBlock) -> T + Sync + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let results = par_map(first, &blocks, threads, check);
        (blocks, results)
    })
    .await
    .map_err(|e| match e.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(e) => Error::Unavailable(format!("a checking task failed: {e}")),
    })
}

/// The sequential half of the checks: where the chain is, and the tree over it.
#[derive(Debug)]
pub(crate) struct Chain {
    /// The hash of the last block linked ([`Hash::ZERO`] before the first).
    previous_hash: Hash,
    /// The `txTime` of the last block linked (`None` before the first, or when resumed).
    previous_time: Option<DateTime<Utc>>,
    /// The tree over the blocks linked so far, when the caller checks it.
    frontier: Option<Frontier>,
    /// The Merkle nodes the last block completed (a buffer reused across blocks).
    completed: Vec<MerkleNode>,
    revisions: u64,
    bytes: u64,
}

impl Chain {
    /// A chain from its first block, keeping the Merkle tree.
    pub(crate) fn new() -> Chain {
        Chain {
            previous_hash: Hash::ZERO,
            previous_time: None,
            frontier: Some(Frontier::new()),
            completed: Vec::new(),
            revisions: 0,
            bytes: 0,
        }
    }

    /// A chain that resumes after a block hashing to `previous_hash`, without the tree
    /// (a resumed rebuild has no frontier and needs none).
    pub(crate) fn resume(previous_hash: Hash) -> Chain {
        Chain {
            frontier: None,
            previous_hash,
            ..Chain::new()
        }
    }

    /// The hash of the last block linked.
    pub(crate) fn previous_hash(&self) -> Hash {
        self.previous_hash
    }

    /// The tree over the blocks linked so far (`None` for a resumed chain).
    pub(crate) fn frontier(&self) -> Option<&Frontier> {
        self.frontier.as_ref()
    }

    /// The Merkle nodes the last linked block completed, in [`Frontier::push`] order.
    pub(crate) fn completed(&self) -> &[MerkleNode] {
        &self.completed
    }

    /// Revisions linked so far.
    pub(crate) fn revisions(&self) -> u64 {
        self.revisions
    }

    /// Stored bytes linked so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Links block `sequence`, given what [`standalone`] found in it, to the block before,
    /// and extends the tree with it.
    ///
    /// `stored_leaf` is `Some` when the caller reads the journal's stored Merkle tree: it
    /// holds the leaf stored for the block (`None` if absent), and a revision that does
    /// not hash to its listed hash is then explained as an altered revision (the header
    /// still matches its leaf) or an altered header.
    pub(crate) fn link(
        &mut self,
        sequence: u64,
        stored: &EncodedBlock,
        alone: Standalone,
        stored_leaf: Option<Option<Hash>>,
    ) -> std::result::Result<(), VerifyFailure> {
        let Standalone {
            hash,
            previous_hash,
            tx_time,
            listed,
            revisions,
            bad_revision,
        } = alone;
        if previous_hash != self.previous_hash {
            let before = match sequence.checked_sub(1) {
                Some(p) => format!("block {p} hashes to {}", self.previous_hash),
                None => format!("the first block's must be {}", Hash::ZERO),
            };
            return Err(failure(
                sequence,
                Some("previousHash".into()),
                format!("the header's previousHash is {previous_hash}, but {before}"),
            ));
        }
        // The committer never stamps a block earlier than the one before (it holds the
        // time when the wall clock steps back), and `asOf` reads and export time ranges
        // find blocks by binary search on this order: a journal where time goes back was
        // not written by adledger, and would answer those reads wrongly.
        if let Some(before) = self.previous_time
            && tx_time < before
        {
            return Err(failure(
                sequence,
                Some("txTime".into()),
                format!(
                    "the block's txTime {} is earlier than block {}'s {}: block times never \
                     go back in a journal adledger wrote",
                    tx_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    sequence.saturating_sub(1),
                    before.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ),
            ));
        }
        if listed != revisions {
            return Err(failure(
                sequence,
                Some("revisionHashes".into()),
                format!(
                    "the header lists {listed} revision hashes, the block holds {revisions} \
                     revisions"
                ),
            ));
        }
        if let Some((i, actual, listed)) = bad_revision {
            // Only reached for a damaged block: parse its frame again to name the revision.
            let bytes = Frame::parse(&stored.bytes)
                .ok()
                .and_then(|frame| frame.revisions.get(i).copied())
                .unwrap_or_default();
            let leaf = crate::merkle::leaf_hash(&hash);
            let header_matches_leaf = stored_leaf.map(|stored| stored == Some(leaf));
            return Err(revision_mismatch(
                sequence,
                i,
                bytes,
                actual,
                listed,
                header_matches_leaf,
            ));
        }
        self.completed.clear();
        if let Some(frontier) = &mut self.frontier {
            frontier.push_into(&hash, &mut self.completed);
        }
        self.previous_hash = hash;
        self.previous_time = Some(tx_time);
        self.revisions += revisions as u64;
        self.bytes += stored.bytes.len() as u64;
        Ok(())
    }
}

/// Revision `index` of block `sequence` hashes to `actual`, not to the `listed` hash.
/// Decodes the stored bytes, if they still decode, to name the ad and version; says
/// which part was altered when the stored Merkle leaf tells (`header_matches_leaf`).
fn revision_mismatch(
    sequence: u64,
    index: usize,
    bytes: &[u8],
    actual: Hash,
    listed: Hash,
    header_matches_leaf: Option<bool>,
) -> VerifyFailure {
    let decoded = codec::decode_revision(bytes).ok();
    let what = match &decoded {
        Some(body) => format!(
            "revision {index} (ad {} version {})",
            body.metadata.id, body.metadata.version
        ),
        None => format!("revision {index} (which no longer decodes)"),
    };
    let cause = match header_matches_leaf {
        Some(true) => {
            ": the revision's stored bytes were altered (the header still matches its Merkle leaf)"
        }
        Some(false) => ": the header does not match its Merkle leaf either: the header was altered",
        None => "",
    };
    let (ad_id, version) = decoded
        .map(|body| (Some(body.metadata.id), Some(body.metadata.version)))
        .unwrap_or_default();
    VerifyFailure {
        sequence,
        ad_id,
        version,
        field: Some(format!("revisionHashes[{index}]")),
        detail: format!("{what} hashes to {actual}, but the header lists {listed}{cause}"),
    }
}
