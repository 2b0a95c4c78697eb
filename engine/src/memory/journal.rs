//! The journal in memory: every record in maps behind one lock.
//!
//! An append takes the write side of the lock, checks every condition of the batch, and
//! only then writes: a refused batch has touched nothing, and no reader ever sees half of
//! one. The checks are the local backend's, in the same order (the tip first, then the
//! batch's shape, then each ad head), so a test sees the same error on every backend.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use crate::ad::AdKey;
use crate::block::EncodedBlock;
use crate::error::{Error, Result, VersionExpectation};
use crate::hash::Hash;
use crate::ports::{AdHead, AppendBatch, IdempotencyRecord, Journal, RevisionRef};

/// The block records as stored: what an operator with direct access to the database
/// could read and rewrite (see [`MemoryJournal::tamper`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredBlocks {
    /// Each block's frame, by sequence.
    pub frames: BTreeMap<u64, Vec<u8>>,
    /// The journal's tip: the sequence of the last block appended.
    pub last: Option<u64>,
}

/// Merkle-node reads since the counts were last taken (see
/// [`MemoryJournal::take_merkle_reads`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MerkleReads {
    /// Calls of [`Journal::merkle_nodes`].
    pub calls: usize,
    /// Nodes asked for in those calls.
    pub nodes: usize,
}

/// Everything the journal holds.
#[derive(Debug, Default)]
struct Records {
    blocks: StoredBlocks,
    heads: HashMap<AdKey, AdHead>,
    /// Each ad's revisions: version → sequence of the block holding it.
    revisions: HashMap<AdKey, BTreeMap<u64, u64>>,
    /// By `(publisher_id, key)`.
    idempotency: HashMap<(String, String), IdempotencyRecord>,
    merkle_nodes: HashMap<(u8, u64), Hash>,
}

/// The hash-chained journal, in memory.
///
/// Appends are atomic and conditional exactly as the [`Journal`] contract says; "durable"
/// means for as long as this value lives.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    records: RwLock<Records>,
    merkle_calls: AtomicUsize,
    merkle_nodes_asked: AtomicUsize,
}

impl MemoryJournal {
    /// A new, empty journal.
    pub fn new() -> MemoryJournal {
        MemoryJournal::default()
    }

    /// Edits the stored blocks directly, bypassing every check of the [`Journal`] port,
    /// as a malicious operator with database access would: the conformance suite's tamper
    /// tests and the verifier's own tests use it to show that verification locates the
    /// damage. Ad heads, revision refs and Merkle nodes stay as they were.
    pub fn tamper<R>(&self, edit: impl FnOnce(&mut StoredBlocks) -> R) -> R {
        edit(&mut self.write().blocks)
    }

    /// Reads the stored blocks in place, without the copy [`Journal::read_blocks`] makes:
    /// a benchmark's baseline (hashing the stored bytes) measures the hashing alone.
    pub fn inspect<R>(&self, read: impl FnOnce(&StoredBlocks) -> R) -> R {
        read(&self.read().blocks)
    }

    /// The Merkle-node reads since the last call (or since the journal was created), and
    /// starts counting again from zero: tests check with it that a proof or a
    /// verification costs the few storage calls it should, the figure that matters on a
    /// network backend.
    pub fn take_merkle_reads(&self) -> MerkleReads {
        MerkleReads {
            calls: self.merkle_calls.swap(0, Ordering::SeqCst),
            nodes: self.merkle_nodes_asked.swap(0, Ordering::SeqCst),
        }
    }

    // A panic cannot leave half a batch behind (`append` checks everything before it
    // writes, and the writes themselves do not fail), so a poisoned lock is still sound.
    fn read(&self) -> RwLockReadGuard<'_, Records> {
        self.records.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Records> {
        self.records.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn expectation(version: Option<u64>) -> VersionExpectation {
    version.map_or(VersionExpectation::Absent, VersionExpectation::Version)
}

/// A batch that breaks the port's preconditions: the engine's bug, not a conflict.
fn bad_batch(detail: String) -> Error {
    Error::backend("memory", format!("invalid append batch: {detail}"))
}

/// Refuses batches that break the port's preconditions, before anything is written.
fn check_shape(batch: &AppendBatch) -> Result<()> {
    let mut next = batch
        .expected_last
        .map_or(Some(0), |last| last.checked_add(1));
    for block in &batch.blocks {
        if Some(block.sequence) != next {
            return Err(bad_batch(format!(
                "block {} does not follow {:?}; blocks must be contiguous after expected_last",
                block.sequence, batch.expected_last
            )));
        }
        next = block.sequence.checked_add(1);
    }
    let mut ads = HashSet::new();
    for update in &batch.heads {
        if !ads.insert(&update.key) {
            return Err(bad_batch(format!(
                "two head updates for ad {} of publisher {}",
                update.key.ad_id, update.key.publisher_id
            )));
        }
    }
    let mut keys = HashSet::new();
    for record in &batch.idempotency {
        if !keys.insert((&record.publisher_id, &record.key)) {
            return Err(bad_batch(format!(
                "two idempotency records for key {:?} of publisher {}",
                record.key, record.publisher_id
            )));
        }
    }
    Ok(())
}

/// An immutable record may be written again only with the same content.
fn check_once<T: PartialEq>(
    existing: Option<&T>,
    new: &T,
    what: impl FnOnce() -> String,
) -> Result<()> {
    match existing {
        Some(existing) if existing != new => Err(Error::Corrupt(format!(
            "{} is already stored with other content; the journal never overwrites it",
            what()
        ))),
        _ => Ok(()),
    }
}

/// Checks every condition of `batch` against `records`; writes nothing.
fn check(records: &Records, batch: &AppendBatch) -> Result<()> {
    // The tip first: a writer that planned against another tip gets the `Conflict` the
    // contract promises (and re-plans), even if its batch is also malformed for the tip
    // it assumed.
    if records.blocks.last != batch.expected_last {
        return Err(Error::Conflict {
            expected: expectation(batch.expected_last),
            actual: expectation(records.blocks.last),
        });
    }
    check_shape(batch)?;
    for update in &batch.heads {
        let actual = records.heads.get(&update.key).map(|h| h.version);
        if actual != update.expected_version {
            return Err(Error::Conflict {
                expected: expectation(update.expected_version),
                actual: expectation(actual),
            });
        }
    }
    // Unreachable unless the blocks were edited behind the journal's back: the tip
    // matched, and new blocks come after it.
    if let (Some(first), Some(tip)) = (batch.blocks.first(), batch.blocks.last())
        && let Some((&sequence, _)) = records
            .blocks
            .frames
            .range(first.sequence..=tip.sequence)
            .next()
    {
        return Err(Error::Corrupt(format!(
            "block {sequence} is already stored although the last sequence is {:?}; the \
             journal never overwrites a block",
            records.blocks.last
        )));
    }
    for reference in &batch.revisions {
        let stored = records
            .revisions
            .get(&reference.key)
            .and_then(|versions| versions.get(&reference.version));
        check_once(stored, &reference.sequence, || {
            format!(
                "revision {} of ad {}",
                reference.version, reference.key.ad_id
            )
        })?;
    }
    for record in &batch.idempotency {
        let id = (record.publisher_id.clone(), record.key.clone());
        if let Some(earlier) = records.idempotency.get(&id) {
            // The key was used by a create this batch's writer did not know about: the
            // same situation as a lost race on an ad head, so the writer re-plans and then
            // finds the earlier outcome. `actual` is the earlier ad's current version.
            let head = records
                .heads
                .get(&AdKey::new(&record.publisher_id, &earlier.ad_id));
            return Err(Error::Conflict {
                expected: VersionExpectation::Absent,
                actual: expectation(head.map(|h| h.version)),
            });
        }
    }
    for node in &batch.merkle_nodes {
        check_once(
            records.merkle_nodes.get(&(node.level, node.index)),
            &node.hash,
            || format!("Merkle node (level {}, index {})", node.level, node.index),
        )?;
    }
    Ok(())
}

/// Writes a checked batch.
fn write(records: &mut Records, batch: AppendBatch) {
    for block in batch.blocks {
        records.blocks.last = Some(block.sequence);
        records.blocks.frames.insert(block.sequence, block.bytes);
    }
    for update in batch.heads {
        records.heads.insert(update.key, update.new_head);
    }
    for reference in batch.revisions {
        records
            .revisions
            .entry(reference.key)
            .or_default()
            .insert(reference.version, reference.sequence);
    }
    for record in batch.idempotency {
        records
            .idempotency
            .insert((record.publisher_id.clone(), record.key.clone()), record);
    }
    for node in batch.merkle_nodes {
        records
            .merkle_nodes
            .insert((node.level, node.index), node.hash);
    }
}

/// Up to `max` blocks from `from`; a gap below the tip is a lost block, reported as the
/// real backends report it.
fn read_blocks(blocks: &StoredBlocks, from: u64, max: usize) -> Result<Vec<EncodedBlock>> {
    let Some(last) = blocks.last else {
        return Ok(Vec::new());
    };
    if from > last || max == 0 {
        return Ok(Vec::new());
    }
    let available = usize::try_from(last - from).map_or(usize::MAX, |n| n.saturating_add(1));
    let wanted = max.min(available);
    let mut out = Vec::with_capacity(wanted.min(1024));
    for sequence in (from..=last).take(wanted) {
        let Some(bytes) = blocks.frames.get(&sequence) else {
            return Err(Error::ChainBroken {
                sequence,
                detail: "the block is missing below the journal's last sequence".into(),
            });
        };
        out.push(EncodedBlock {
            sequence,
            bytes: bytes.clone(),
        });
    }
    Ok(out)
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn append(&self, batch: AppendBatch) -> Result<()> {
        let mut records = self.write();
        check(&records, &batch)?;
        write(&mut records, batch);
        Ok(())
    }

    async fn last_sequence(&self) -> Result<Option<u64>> {
        Ok(self.read().blocks.last)
    }

    async fn read_blocks(&self, from: u64, max: usize) -> Result<Vec<EncodedBlock>> {
        read_blocks(&self.read().blocks, from, max)
    }

    async fn read_blocks_at(&self, sequences: &[u64]) -> Result<Vec<EncodedBlock>> {
        let records = self.read();
        Ok(sequences
            .iter()
            .filter_map(|&sequence| {
                records
                    .blocks
                    .frames
                    .get(&sequence)
                    .map(|bytes| EncodedBlock {
                        sequence,
                        bytes: bytes.clone(),
                    })
            })
            .collect())
    }

    async fn ad_head(&self, key: &AdKey) -> Result<Option<AdHead>> {
        Ok(self.read().heads.get(key).copied())
    }

    async fn ad_revisions(&self, key: &AdKey) -> Result<Vec<RevisionRef>> {
        Ok(self
            .read()
            .revisions
            .get(key)
            .into_iter()
            .flatten()
            .map(|(&version, &sequence)| RevisionRef {
                key: key.clone(),
                version,
                sequence,
            })
            .collect())
    }

    async fn idempotency(
        &self,
        publisher_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        let id = (publisher_id.to_string(), key.to_string());
        Ok(self.read().idempotency.get(&id).cloned())
    }

    async fn merkle_nodes(&self, ids: &[(u8, u64)]) -> Result<Vec<Option<Hash>>> {
        self.merkle_calls.fetch_add(1, Ordering::SeqCst);
        self.merkle_nodes_asked
            .fetch_add(ids.len(), Ordering::SeqCst);
        let records = self.read();
        Ok(ids
            .iter()
            .map(|id| records.merkle_nodes.get(id).copied())
            .collect())
    }

    /// Nothing limits one append but memory; the cap is the local backend's, so bulk
    /// writers (import) batch alike on both.
    fn max_blocks_per_append(&self) -> usize {
        16_384
    }
}
