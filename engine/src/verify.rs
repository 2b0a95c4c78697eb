//! Full verification of a stored journal: every byte of every block is re-hashed, the
//! chain is followed from the first block, and the Merkle tree is rebuilt and compared
//! with the stored nodes and, optionally, with a digest saved earlier.
//!
//! # What is checked, per block, in order
//!
//! 1. The journal returned the block for the sequence expected next (no gap, no reordering).
//! 2. The stored bytes split into a header and revisions ([`Frame::parse`]).
//! 3. The header decodes (the only Ion decoding on the happy path: revisions are hashed
//!    as stored, never decoded), and its `sequenceNo` is the block's position.
//! 4. Its `previousHash` is the hash of the previous block's stored header bytes.
//! 5. Each revision's bytes hash to the hash the header lists for it (`revisionHashes[i]`).
//! 6. The block hash, fed into a fresh [`Frontier`], completes Merkle nodes equal to the
//!    stored ones.
//!
//! At the end, the stored frontier must give the recomputed root, no Merkle leaf may be
//! stored past the last block, and the expected digest `(sequence, root)`, if given, must
//! equal the recomputed root at its sequence.
//!
//! The first failure stops verification and names its sequence, and where it can, the ad,
//! version and header field concerned ([`VerifyFailure`]). A failed check is explained
//! with whatever evidence is at hand: a revision whose hash does not match is decoded to
//! name its ad; a block hash that does not match its stored leaf is compared with the
//! next block's `previousHash` to tell an altered header from an altered node.
//!
//! # Cost
//!
//! Blocks are read in batches of `BATCH` (4096); the Merkle nodes a batch completes are read in
//! one [`Journal::merkle_nodes`] call. Work per block is one SHA-256 over its stored bytes
//! and one small header decode.

use serde::Serialize;

use crate::block::{EncodedBlock, Frame};
use crate::chain::{self, Chain, Standalone, failure};
use crate::codec;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::merkle::{Frontier, frontier_ids, leaf_hash};
use crate::ports::Journal;

pub use crate::chain::VerifyFailure;

/// Blocks read per [`Journal::read_blocks`] call.
pub(crate) const BATCH: usize = 4096;

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Blocks verified.
    pub blocks: u64,
    /// Revisions verified.
    pub revisions: u64,
    /// Stored bytes hashed (block frames).
    pub bytes: u64,
    /// The last block verified (`None` for an empty journal).
    pub last_sequence: Option<u64>,
    /// The recomputed Merkle root over every block (`None` for an empty journal).
    pub root: Option<Hash>,
}

/// Verifies the whole journal (see the module docs), calling `progress` with the number of
/// blocks verified so far after each batch.
///
/// `expected` is a digest `(sequence, root)` saved earlier; the journal must still reach
/// `sequence` and give `root` there.
///
/// The outer `Result` fails only when the journal cannot be read (backend errors); a
/// journal that was read and does not verify is `Ok(Err(failure))`, including a block
/// the backend reports missing ([`Error::ChainBroken`] from a read), which fails at its
/// sequence. Blocks appended while verification runs are not covered: it verifies up to
/// the last sequence at its start.
pub async fn verify_journal(
    journal: &dyn Journal,
    expected: Option<(u64, Hash)>,
    progress: &mut dyn FnMut(u64),
) -> Result<Result<VerifyReport, VerifyFailure>> {
    verify_in_batches(journal, expected, progress, BATCH).await
}

/// [`verify_journal`] with a chosen batch size (tests use small ones to cross batch
/// boundaries).
async fn verify_in_batches(
    journal: &dyn Journal,
    expected: Option<(u64, Hash)>,
    progress: &mut dyn FnMut(u64),
    batch: usize,
) -> Result<Result<VerifyReport, VerifyFailure>> {
    let mut run = Run {
        journal,
        expected,
        chain: Chain::new(),
    };
    run.all(progress, batch.max(1)).await
}

/// The state of one verification run.
struct Run<'a> {
    journal: &'a dyn Journal,
    expected: Option<(u64, Hash)>,
    /// The blocks verified so far and the tree over them.
    chain: Chain,
}

/// Why a block did not verify: a failure, or an outcome that needs the next block to be
/// explained.
enum Finding {
    Failure(VerifyFailure),
    /// The block hash does not match its stored Merkle leaf; every other check passed.
    LeafMismatch {
        sequence: u64,
        hash: Hash,
        stored_leaf: Hash,
    },
}

impl From<VerifyFailure> for Finding {
    fn from(failure: VerifyFailure) -> Self {
        Finding::Failure(failure)
    }
}

fn node_field(level: u8, index: u64) -> String {
    format!("merkleNode(level {level}, index {index})")
}

/// The `(level, index)` of the Merkle nodes that appending leaf `sequence` completes, in
/// the order [`Frontier::push`] returns them: the leaf, then one node per trailing one bit.
fn completed_ids(sequence: u64) -> impl Iterator<Item = (u8, u64)> {
    (0..=sequence.trailing_ones()).map(move |level| (level as u8, sequence >> level))
}

impl Run<'_> {
    /// Verifies batch after batch, reading the next batch while the current one is
    /// checked: storage reads run on the backend's I/O threads, checking on the cores
    /// [`chain::check_batch`] uses, so neither waits for the other.
    async fn all(
        &mut self,
        progress: &mut dyn FnMut(u64),
        batch: usize,
    ) -> Result<Result<VerifyReport, VerifyFailure>> {
        let journal = self.journal;
        let last = journal.last_sequence().await?;
        let size = last.map_or(0, |l| l.saturating_add(1));
        let mut next = 0u64;
        let mut fetched = fetch(journal, next, size, batch).await?;
        while let Some(current) = fetched {
            let (blocks, stored) = match current {
                Fetched::Batch { blocks, nodes } => (blocks, nodes),
                Fetched::Missing(failure) => return Ok(Err(failure)),
            };
            let after = next + blocks.len() as u64;
            // `join!` polls the read first, so it is under way before the checks start.
            let (following, checked) = futures::join!(fetch(journal, after, size, batch), async {
                let threads = chain::available_threads();
                let (blocks, alone) =
                    chain::check_batch(next, blocks, threads, chain::standalone).await?;
                Ok::<_, Error>(self.batch(next, &blocks, alone, &stored))
            });
            if let Err(finding) = checked? {
                return Ok(Err(self.explain(finding).await));
            }
            next = after;
            progress(next);
            fetched = following?;
        }
        Ok(self.finish(size).await?.map(|root| VerifyReport {
            blocks: size,
            revisions: self.chain.revisions(),
            bytes: self.chain.bytes(),
            last_sequence: last,
            root,
        }))
    }

    /// Links the blocks of one batch, starting at sequence `first`, given what
    /// [`chain::standalone`] found in each, and checks the Merkle nodes they complete
    /// (`stored`, in [`completed_ids`] order).
    fn batch(
        &mut self,
        first: u64,
        blocks: &[EncodedBlock],
        alone: Vec<std::result::Result<Standalone, VerifyFailure>>,
        stored: &[Option<Hash>],
    ) -> std::result::Result<(), Finding> {
        let mut stored = stored;
        for ((sequence, block), alone) in (first..).zip(blocks).zip(alone) {
            let count = sequence.trailing_ones() as usize + 1;
            let (nodes, rest) = stored.split_at(count.min(stored.len()));
            stored = rest;
            match alone {
                Ok(alone) => self.block(sequence, block, alone, nodes)?,
                Err(failure) => return Err(failure.into()),
            }
        }
        Ok(())
    }

    /// Checks one block against its predecessor and its stored Merkle nodes (`nodes`, in
    /// [`completed_ids`] order), given what [`chain::standalone`] found in it, then
    /// extends the tree with it.
    fn block(
        &mut self,
        sequence: u64,
        stored: &EncodedBlock,
        alone: Standalone,
        nodes: &[Option<Hash>],
    ) -> std::result::Result<(), Finding> {
        let hash = alone.hash;
        self.chain.link(
            sequence,
            stored,
            alone,
            Some(nodes.first().copied().flatten()),
        )?;
        for (j, node) in self.chain.completed().iter().enumerate() {
            let field = node_field(node.level, node.index);
            match nodes.get(j).copied().flatten() {
                None => {
                    return Err(failure(
                        sequence,
                        Some(field),
                        format!(
                            "the Merkle node (level {}, index {}) that block {sequence} \
                             completes is not stored",
                            node.level, node.index
                        ),
                    )
                    .into());
                }
                Some(found) if found == node.hash => {}
                Some(found) if node.level == 0 => {
                    return Err(Finding::LeafMismatch {
                        sequence,
                        hash,
                        stored_leaf: found,
                    });
                }
                Some(found) => {
                    let first = node.index << node.level;
                    return Err(failure(
                        sequence,
                        Some(field),
                        format!(
                            "the stored Merkle node (level {}, index {}) is {found}, but blocks \
                             {first}..={sequence}, which all verify, give {}: the node was altered",
                            node.level, node.index, node.hash
                        ),
                    )
                    .into());
                }
            }
        }

        if let Some((at, root)) = self.expected
            && at == sequence
        {
            let computed = self
                .chain
                .frontier()
                .and_then(Frontier::root)
                .unwrap_or_default();
            if computed != root {
                return Err(failure(
                    sequence,
                    Some("digest".into()),
                    format!(
                        "the Merkle root over blocks 0..={sequence} is {computed}, but the \
                         expected digest says {root}: the journal was rewritten up to here"
                    ),
                )
                .into());
            }
        }
        Ok(())
    }

    /// Turns a finding into a failure, reading the next block when that tells an altered
    /// header from an altered Merkle leaf.
    async fn explain(&self, finding: Finding) -> VerifyFailure {
        let (sequence, hash, stored_leaf) = match finding {
            Finding::Failure(failure) => return failure,
            Finding::LeafMismatch {
                sequence,
                hash,
                stored_leaf,
            } => (sequence, hash, stored_leaf),
        };
        let next_previous = self.next_previous_hash(sequence).await;
        match next_previous {
            Some(recorded) if recorded == hash => failure(
                sequence,
                Some(node_field(0, sequence)),
                format!(
                    "the stored Merkle leaf of block {sequence} is {stored_leaf}, but the block \
                     hashes to {hash}, as block {}'s previousHash confirms: the leaf was altered",
                    sequence + 1
                ),
            ),
            Some(recorded) if leaf_hash(&recorded) == stored_leaf => failure(
                sequence,
                Some("header".into()),
                format!(
                    "the header hashes to {hash}, but the stored Merkle leaf and block {}'s \
                     previousHash both record {recorded}: the header was altered",
                    sequence + 1
                ),
            ),
            _ => failure(
                sequence,
                Some(node_field(0, sequence)),
                format!(
                    "the block hashes to {hash}, which its stored Merkle leaf {stored_leaf} does \
                     not record: the header or the leaf was altered"
                ),
            ),
        }
    }

    /// The `previousHash` of block `sequence + 1`, if it can be read and decoded.
    async fn next_previous_hash(&self, sequence: u64) -> Option<Hash> {
        let next = sequence.checked_add(1)?;
        let block = self.journal.read_blocks(next, 1).await.ok()?.pop()?;
        if block.sequence != next {
            return None;
        }
        let frame = Frame::parse(&block.bytes).ok()?;
        codec::decode_header(frame.header)
            .ok()
            .map(|h| h.previous_hash)
    }

    /// The end-of-journal checks; the recomputed root on success.
    async fn finish(&self, size: u64) -> Result<Result<Option<Hash>, VerifyFailure>> {
        let root = self.chain.frontier().and_then(Frontier::root);
        if let Some((at, _)) = self.expected
            && at >= size
        {
            let detail = match size.checked_sub(1) {
                Some(last) => format!(
                    "the expected digest covers blocks 0..={at}, but the journal ends at \
                     block {last}: blocks {size}..={at} are missing"
                ),
                None => {
                    format!("the expected digest covers blocks 0..={at}, but the journal is empty")
                }
            };
            return Ok(Err(failure(size, Some("digest".into()), detail)));
        }
        let mut ids = frontier_ids(size);
        ids.push((0, size));
        let stored = self.journal.merkle_nodes(&ids).await?;
        let (past_end, frontier) = match stored.split_last() {
            Some((past_end, frontier)) if frontier.len() + 1 == ids.len() => (past_end, frontier),
            _ => {
                return Err(Error::Corrupt(format!(
                    "asked the journal for {} Merkle nodes and got {}",
                    ids.len(),
                    stored.len()
                )));
            }
        };
        let last = size.saturating_sub(1);
        let mut hashes = Vec::with_capacity(frontier.len());
        for (found, &(level, index)) in frontier.iter().zip(&ids) {
            let Some(found) = found else {
                return Ok(Err(failure(
                    last,
                    Some(node_field(level, index)),
                    format!(
                        "the stored frontier lacks the Merkle node (level {level}, index {index})"
                    ),
                )));
            };
            hashes.push(*found);
        }
        let stored_root = Frontier::from_nodes(size, &hashes).and_then(|f| f.root());
        if stored_root != root {
            return Ok(Err(failure(
                last,
                Some("merkleRoot".into()),
                format!("the stored frontier gives root {stored_root:?}, the blocks give {root:?}"),
            )));
        }
        if past_end.is_some() && self.journal.read_blocks(size, 1).await?.is_empty() {
            return Ok(Err(failure(
                size,
                None,
                format!(
                    "block {size} is missing: the Merkle tree records it (its leaf is stored), \
                     but the journal ends before it: blocks were removed from the end"
                ),
            )));
        }
        Ok(Ok(root))
    }
}

/// One batch read from the journal, or the failure of a read that came back short.
enum Fetched {
    Batch {
        blocks: Vec<EncodedBlock>,
        /// The stored Merkle nodes the blocks complete, in [`completed_ids`] order.
        nodes: Vec<Option<Hash>>,
    },
    Missing(VerifyFailure),
}

/// Reads the batch of up to `batch` blocks from `next` (of a journal of `size` blocks)
/// and the Merkle nodes they complete; `None` past the end.
async fn fetch(
    journal: &dyn Journal,
    next: u64,
    size: u64,
    batch: usize,
) -> Result<Option<Fetched>> {
    if next >= size {
        return Ok(None);
    }
    let want = usize::try_from(size - next).map_or(batch, |left| left.min(batch));
    let missing = |reason: String| {
        Some(Fetched::Missing(failure(
            next,
            None,
            format!(
                "block {next} is missing: the journal's last sequence is {}, but {reason}",
                size - 1
            ),
        )))
    };
    // The blocks and the nodes they complete are read at once (on two of the backend's
    // I/O threads, for the local one): the nodes' keys follow from the sequences asked
    // for, and only those of the blocks returned are kept.
    let ids: Vec<(u8, u64)> = (next..next + want as u64).flat_map(completed_ids).collect();
    let (blocks, nodes) =
        futures::join!(journal.read_blocks(next, want), journal.merkle_nodes(&ids));
    let mut blocks = match blocks {
        Ok(blocks) => blocks,
        // The local, AWS and in-memory backends report a block missing below the tip
        // instead of returning a short page. The blocks before it are read again and
        // verified first, so that an earlier failure still wins; the next read starts at
        // the missing block and reports it here.
        Err(Error::ChainBroken { sequence, detail }) if sequence == next => {
            return Ok(missing(format!("the journal reports: {detail}")));
        }
        Err(Error::ChainBroken { sequence, .. })
            if sequence > next && sequence - next < want as u64 =>
        {
            journal
                .read_blocks(next, (sequence - next) as usize)
                .await?
        }
        Err(e) => return Err(e),
    };
    if blocks.is_empty() {
        return Ok(missing(format!("reading stops before block {next}")));
    }
    blocks.truncate(want);
    let mut nodes = nodes?;
    if nodes.len() != ids.len() {
        return Err(Error::Corrupt(format!(
            "asked the journal for {} Merkle nodes and got {}",
            ids.len(),
            nodes.len()
        )));
    }
    // The ids are in sequence order: those of the blocks returned come first.
    let kept: usize = (next..next + blocks.len() as u64)
        .map(|sequence| sequence.trailing_ones() as usize + 1)
        .sum();
    nodes.truncate(kept);
    Ok(Some(Fetched::Batch { blocks, nodes }))
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use async_trait::async_trait;
    use chrono::{TimeZone, Utc};
    use futures::FutureExt;

    use super::*;
    use crate::ad::{Ad, AdKey};
    use crate::block;
    use crate::memory::MemoryJournal;
    use crate::merkle::root_of;
    use crate::ports::{AdHead, AppendBatch, IdempotencyRecord, MerkleNode, RevisionRef};
    use crate::revision::{EventKind, RevisionBody, RevisionMetadata};

    /// The in-memory journal read through a backend that loses block `hidden` from its
    /// reads without reporting it, as a plain range scan would: it skips the block
    /// (`stop: false`) or ends the page before it (`stop: true`, a short page). The real
    /// backends report the gap instead ([`Error::ChainBroken`]); the verifier must
    /// locate it either way.
    #[derive(Debug)]
    struct Hiding {
        inner: MemoryJournal,
        hidden: u64,
        stop: bool,
    }

    #[async_trait]
    impl Journal for Hiding {
        async fn read_blocks(&self, from: u64, max: usize) -> Result<Vec<EncodedBlock>> {
            let mut blocks = self.inner.read_blocks(from, max.saturating_add(1)).await?;
            if let Some(at) = blocks.iter().position(|b| b.sequence == self.hidden) {
                if self.stop {
                    blocks.truncate(at);
                } else {
                    blocks.remove(at);
                }
            }
            blocks.truncate(max);
            Ok(blocks)
        }
        async fn append(&self, batch: AppendBatch) -> Result<()> {
            self.inner.append(batch).await
        }
        async fn last_sequence(&self) -> Result<Option<u64>> {
            self.inner.last_sequence().await
        }
        async fn ad_head(&self, key: &AdKey) -> Result<Option<AdHead>> {
            self.inner.ad_head(key).await
        }
        async fn ad_revisions(&self, key: &AdKey) -> Result<Vec<RevisionRef>> {
            self.inner.ad_revisions(key).await
        }
        async fn idempotency(&self, p: &str, k: &str) -> Result<Option<IdempotencyRecord>> {
            self.inner.idempotency(p, k).await
        }
        async fn merkle_nodes(&self, ids: &[(u8, u64)]) -> Result<Vec<Option<Hash>>> {
            self.inner.merkle_nodes(ids).await
        }
        fn max_blocks_per_append(&self) -> usize {
            self.inner.max_blocks_per_append()
        }
        fn max_bytes_per_append(&self) -> usize {
            self.inner.max_bytes_per_append()
        }
    }

    const ADS_PER_BLOCK: u64 = 3;

    /// Block `sequence` updates ads `ad-0`..`ad-2` to version `sequence`.
    fn bodies(sequence: u64, salt: &str) -> Vec<RevisionBody> {
        let tx_time = Utc
            .timestamp_millis_opt(1_700_000_000_000 + sequence as i64 * 1_000)
            .single()
            .expect("valid time");
        (0..ADS_PER_BLOCK)
            .map(|j| RevisionBody {
                data: Some(Ad {
                    ad_id: format!("ad-{j}"),
                    publisher_id: "acme".into(),
                    ad_title: format!("Title {sequence:04}-{j}{salt}"),
                    ad_description: "A bicycle in good condition.".into(),
                    price: Some(rust_decimal::Decimal::new(1999, 2)),
                    currency: "EUR".into(),
                    category: "bikes".into(),
                    tags: vec!["red".into(), "city".into()],
                }),
                metadata: RevisionMetadata {
                    id: format!("ad-{j}"),
                    publisher_id: "acme".into(),
                    version: sequence,
                    tx_id: format!("tx-{sequence:06}"),
                    tx_time,
                    actor: None,
                },
                event: if sequence == 0 {
                    EventKind::AdCreated
                } else {
                    EventKind::AdUpdated
                },
            })
            .collect()
    }

    /// A journal of `n` sealed blocks with its Merkle nodes, appended through the port as
    /// one batch; blocks from `fork_at` on carry different titles (a consistently
    /// rewritten journal). `edit` changes the Merkle nodes before they are stored, as an
    /// operator who altered the stored tree would have (the port never overwrites a node).
    /// `n` sealed blocks one second apart, rewritten from `fork_at` on, with the clock
    /// stepped back by 2 s at block `back_at` (`u64::MAX`: never).
    fn journal_with(
        n: u64,
        fork_at: u64,
        back_at: u64,
        edit: impl FnOnce(&mut Vec<MerkleNode>),
    ) -> (MemoryJournal, Vec<Hash>) {
        let mut frontier = Frontier::new();
        let mut previous = Hash::ZERO;
        let mut hashes = Vec::new();
        let mut blocks = Vec::new();
        let mut merkle_nodes = Vec::new();
        for sequence in 0..n {
            let salt = if sequence >= fork_at {
                " (rewritten)"
            } else {
                ""
            };
            let tx_id = format!("tx-{sequence:06}");
            let back = if sequence >= back_at { 2_000 } else { 0 };
            let tx_time = Utc
                .timestamp_millis_opt(1_700_000_000_000 + sequence as i64 * 1_000 - back)
                .single()
                .expect("valid time");
            let (sealed, encoded) =
                block::seal(sequence, &tx_id, tx_time, previous, bodies(sequence, salt))
                    .expect("seals");
            previous = sealed.hash;
            hashes.push(sealed.hash);
            merkle_nodes.extend(frontier.push(&sealed.hash));
            blocks.push(encoded);
        }
        edit(&mut merkle_nodes);
        let journal = MemoryJournal::new();
        if !blocks.is_empty() {
            journal
                .append(AppendBatch {
                    blocks,
                    merkle_nodes,
                    expected_last: None,
                    ..Default::default()
                })
                .now_or_never()
                .expect("the in-memory journal never waits")
                .expect("appends");
        }
        (journal, hashes)
    }

    fn journal_forked(n: u64, fork_at: u64) -> (MemoryJournal, Vec<Hash>) {
        journal_with(n, fork_at, u64::MAX, |_| {})
    }

    fn sealed(n: u64) -> (MemoryJournal, Vec<Hash>) {
        journal_forked(n, u64::MAX)
    }

    /// [`sealed`] with the stored Merkle node `(level, index)` replaced by `hash`, or
    /// removed when `hash` is `None`.
    fn sealed_with_node(n: u64, level: u8, index: u64, hash: Option<Hash>) -> MemoryJournal {
        let mut found = false;
        let (journal, _) = journal_with(n, u64::MAX, u64::MAX, |nodes| {
            nodes.retain_mut(|node| {
                if (node.level, node.index) != (level, index) {
                    return true;
                }
                found = true;
                hash.map(|h| node.hash = h).is_some()
            });
        });
        assert!(
            found,
            "{n} blocks complete no node (level {level}, index {index})"
        );
        journal
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    fn run(
        journal: &dyn Journal,
        batch: usize,
    ) -> std::result::Result<VerifyReport, VerifyFailure> {
        run_expecting(journal, None, batch)
    }

    fn run_expecting(
        journal: &dyn Journal,
        expected: Option<(u64, Hash)>,
        batch: usize,
    ) -> std::result::Result<VerifyReport, VerifyFailure> {
        block_on(verify_in_batches(journal, expected, &mut |_| {}, batch)).expect("readable")
    }

    /// The failure, checking that small and default batches report the same one.
    fn fails(journal: &dyn Journal) -> VerifyFailure {
        let small = run(journal, 7).expect_err("must not verify");
        let large = run(journal, BATCH).expect_err("must not verify");
        assert_eq!(small, large, "batch size changed the verdict");
        small
    }

    /// Where a part of block `sequence` lies in its stored bytes: the header, or revision
    /// `i`.
    fn part(journal: &MemoryJournal, sequence: u64, revision: Option<usize>) -> Range<usize> {
        journal.inspect(|stored| {
            let bytes = &stored.frames[&sequence];
            let frame = Frame::parse(bytes).expect("intact");
            let slice = match revision {
                None => frame.header,
                Some(i) => frame.revisions[i],
            };
            let start = slice.as_ptr() as usize - bytes.as_ptr() as usize;
            start..start + slice.len()
        })
    }

    /// The position of `needle` inside `range` of block `sequence`.
    fn find(journal: &MemoryJournal, sequence: u64, range: Range<usize>, needle: &[u8]) -> usize {
        journal.inspect(|stored| {
            let haystack = &stored.frames[&sequence][range.clone()];
            range.start
                + haystack
                    .windows(needle.len())
                    .position(|w| w == needle)
                    .expect("needle present")
        })
    }

    fn flip(journal: &MemoryJournal, sequence: u64, at: usize, mask: u8) {
        journal.tamper(|stored| {
            stored.frames.get_mut(&sequence).expect("block")[at] ^= mask;
        });
    }

    fn remove(journal: &MemoryJournal, sequence: u64) {
        journal.tamper(|stored| stored.frames.remove(&sequence).expect("block"));
    }

    fn frame_len(journal: &MemoryJournal, sequence: u64) -> usize {
        journal.inspect(|stored| stored.frames[&sequence].len())
    }

    #[test]
    fn completed_ids_are_the_nodes_frontier_push_completes() {
        let mut frontier = Frontier::new();
        for sequence in 0..300u64 {
            let pushed: Vec<(u8, u64)> = frontier
                .push(&Hash::of(&sequence.to_be_bytes()))
                .iter()
                .map(|node| (node.level, node.index))
                .collect();
            let expected: Vec<(u8, u64)> = completed_ids(sequence).collect();
            assert_eq!(pushed, expected, "sequence {sequence}");
        }
    }

    // -- Intact journals --

    #[test]
    fn a_block_earlier_than_the_one_before_fails_on_txtime() {
        let (journal, _) = journal_with(20, u64::MAX, 12, |_| {});
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 12, "{failure:?}");
        assert_eq!(failure.field.as_deref(), Some("txTime"), "{failure:?}");
        assert!(failure.detail.contains("never go back"), "{failure:?}");
    }

    #[test]
    fn an_intact_journal_verifies_with_any_batch_size() {
        let (journal, hashes) = sealed(50);
        let bytes: u64 =
            journal.inspect(|stored| stored.frames.values().map(|f| f.len() as u64).sum());
        for batch in [1, 7, 49, 50, BATCH] {
            journal.take_merkle_reads();
            let mut seen = Vec::new();
            let report = block_on(verify_in_batches(
                &journal,
                None,
                &mut |n| seen.push(n),
                batch,
            ))
            .expect("readable")
            .expect("verifies");
            assert_eq!(
                report,
                VerifyReport {
                    blocks: 50,
                    revisions: 50 * ADS_PER_BLOCK,
                    bytes,
                    last_sequence: Some(49),
                    root: root_of(&hashes),
                }
            );
            let batches = 50usize.div_ceil(batch);
            assert_eq!(seen.len(), batches, "one progress call per batch");
            assert_eq!(seen.last(), Some(&50));
            assert!(seen.windows(2).all(|w| w[0] < w[1]));
            // One node read per batch, plus one for the end-of-journal checks.
            assert_eq!(journal.take_merkle_reads().calls, batches + 1);
        }
    }

    #[test]
    fn an_empty_journal_verifies() {
        let journal = MemoryJournal::new();
        let report = run(&journal, BATCH).expect("verifies");
        assert_eq!(
            report,
            VerifyReport {
                blocks: 0,
                revisions: 0,
                bytes: 0,
                last_sequence: None,
                root: None,
            }
        );
    }

    #[test]
    fn a_matching_expected_digest_verifies() {
        let (journal, hashes) = sealed(50);
        for at in [0, 20, 49] {
            let root = root_of(&hashes[..=at as usize]).expect("non-empty");
            run_expecting(&journal, Some((at, root)), 7).expect("verifies");
        }
    }

    // -- Tampering --

    #[test]
    fn a_flipped_byte_in_a_revision_names_the_ad_and_version() {
        let (journal, _) = sealed(50);
        let range = part(&journal, 17, Some(1));
        let at = find(&journal, 17, range, b"Title 0017-1");
        flip(&journal, 17, at, 0x01); // "Title" → "Uitle": still valid Ion
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 17);
        assert_eq!(failure.field.as_deref(), Some("revisionHashes[1]"));
        assert_eq!(failure.ad_id.as_deref(), Some("ad-1"));
        assert_eq!(failure.version, Some(17));
        assert!(
            failure
                .detail
                .contains("revision's stored bytes were altered"),
            "{failure}"
        );
    }

    #[test]
    fn a_revision_that_no_longer_decodes_is_still_located() {
        let (journal, _) = sealed(50);
        let range = part(&journal, 30, Some(2));
        flip(&journal, 30, range.start, 0xff); // the Ion version marker
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 30);
        assert_eq!(failure.field.as_deref(), Some("revisionHashes[2]"));
        assert_eq!(failure.ad_id, None);
        assert_eq!(failure.version, None);
    }

    #[test]
    fn a_flipped_byte_in_a_header_field_is_reported_at_its_block() {
        let (journal, _) = sealed(50);
        let range = part(&journal, 17, None);
        let at = find(&journal, 17, range, b"tx-000017");
        flip(&journal, 17, at + 8, 0x01); // txId "tx-000017" → "tx-000016"
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 17);
        assert_eq!(failure.field.as_deref(), Some("header"));
        assert!(
            failure.detail.contains("the header was altered"),
            "{failure}"
        );
    }

    #[test]
    fn a_flipped_byte_in_the_last_header_is_reported_at_the_last_block() {
        let (journal, _) = sealed(50);
        let range = part(&journal, 49, None);
        let at = find(&journal, 49, range, b"tx-000049");
        flip(&journal, 49, at + 8, 0x01);
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 49);
        // No next block to tell the header from the leaf: both are named.
        assert_eq!(
            failure.field.as_deref(),
            Some("merkleNode(level 0, index 49)")
        );
        assert!(
            failure.detail.contains("the header or the leaf"),
            "{failure}"
        );
    }

    #[test]
    fn a_flipped_byte_in_previous_hash_is_reported_as_previous_hash() {
        let (journal, hashes) = sealed(50);
        let range = part(&journal, 12, None);
        let at = find(&journal, 12, range, hashes[11].as_bytes());
        flip(&journal, 12, at + 5, 0x80);
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 12);
        assert_eq!(failure.field.as_deref(), Some("previousHash"));
    }

    #[test]
    fn a_flipped_byte_in_a_listed_revision_hash_blames_the_header() {
        let (journal, _) = sealed(50);
        let revision = part(&journal, 9, Some(0));
        let listed = journal.inspect(|stored| Hash::of(&stored.frames[&9][revision]));
        let range = part(&journal, 9, None);
        let at = find(&journal, 9, range, listed.as_bytes());
        flip(&journal, 9, at, 0x01);
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 9);
        assert_eq!(failure.field.as_deref(), Some("revisionHashes[0]"));
        assert_eq!(failure.ad_id.as_deref(), Some("ad-0"));
        assert!(
            failure.detail.contains("the header was altered"),
            "{failure}"
        );
    }

    #[test]
    fn a_header_that_no_longer_decodes_is_reported_as_header() {
        let (journal, _) = sealed(50);
        let range = part(&journal, 3, None);
        flip(&journal, 3, range.start, 0xff);
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 3);
        assert_eq!(failure.field.as_deref(), Some("header"));
    }

    #[test]
    fn a_damaged_frame_is_reported_as_frame() {
        let (journal, _) = sealed(50);
        assert!(frame_len(&journal, 21) > 40);
        journal.tamper(|stored| stored.frames.get_mut(&21).expect("block").truncate(40));
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 21);
        assert_eq!(failure.field.as_deref(), Some("frame"));
    }

    #[test]
    fn a_deleted_block_is_reported_at_its_sequence() {
        // The backend reports the gap when a read crosses it.
        let (journal, _) = sealed(50);
        remove(&journal, 23);
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 23);
        assert_eq!(failure.field, None);
        assert!(failure.detail.contains("block 23 is missing"), "{failure}");
        assert!(failure.detail.contains("the journal reports"), "{failure}");
    }

    #[test]
    fn a_block_a_backend_skips_or_stops_before_is_reported_at_its_sequence() {
        for stop in [false, true] {
            let (inner, _) = sealed(50);
            let journal = Hiding {
                inner,
                hidden: 23,
                stop,
            };
            let failure = fails(&journal);
            assert_eq!(failure.sequence, 23, "stop at gap: {stop}");
            assert_eq!(failure.field, None);
            assert!(failure.detail.contains("block 23 is missing"), "{failure}");
        }
    }

    #[test]
    fn a_deleted_first_block_is_reported_at_zero() {
        let (journal, _) = sealed(10);
        remove(&journal, 0);
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 0);
        assert_eq!(failure.field, None);

        for stop in [false, true] {
            let (inner, _) = sealed(10);
            let journal = Hiding {
                inner,
                hidden: 0,
                stop,
            };
            assert_eq!(fails(&journal).sequence, 0, "stop at gap: {stop}");
        }
    }

    #[test]
    fn blocks_removed_from_the_end_are_reported() {
        // The tip still says 49: the last block is simply gone.
        let (journal, _) = sealed(50);
        remove(&journal, 49);
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 49);
        assert_eq!(failure.field, None);
        assert!(failure.detail.contains("block 49 is missing"), "{failure}");

        // The tip was moved back too; the Merkle leaves of the removed blocks remain.
        let (journal, _) = sealed(50);
        remove(&journal, 49);
        remove(&journal, 48);
        journal.tamper(|stored| stored.last = Some(47));
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 48);
        assert!(failure.detail.contains("removed from the end"), "{failure}");
    }

    #[test]
    fn a_truncation_that_also_removed_the_nodes_fails_only_against_a_digest() {
        let (journal, hashes) = journal_with(50, u64::MAX, u64::MAX, |nodes| {
            let removed: Vec<(u8, u64)> = (40..50).flat_map(completed_ids).collect();
            nodes.retain(|node| !removed.contains(&(node.level, node.index)));
        });
        for sequence in 40..50 {
            remove(&journal, sequence);
        }
        journal.tamper(|stored| stored.last = Some(39));
        run(&journal, 7).expect("a consistent prefix verifies on its own");
        let root = root_of(&hashes).expect("non-empty");
        let failure = run_expecting(&journal, Some((49, root)), 7).expect_err("must not verify");
        assert_eq!(failure.sequence, 40);
        assert_eq!(failure.field.as_deref(), Some("digest"));
    }

    #[test]
    fn swapped_blocks_are_reported_at_the_first() {
        let (journal, _) = sealed(50);
        journal.tamper(|stored| {
            let a = stored.frames.remove(&10).expect("block");
            let b = stored.frames.insert(11, a).expect("block");
            stored.frames.insert(10, b);
        });
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 10);
        assert_eq!(failure.field.as_deref(), Some("sequenceNo"));
    }

    #[test]
    fn an_altered_merkle_node_is_reported_at_the_block_completing_it() {
        let journal = sealed_with_node(50, 1, 2, Some(Hash([7; 32]))); // leaves 4..=5
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 5);
        assert_eq!(
            failure.field.as_deref(),
            Some("merkleNode(level 1, index 2)")
        );

        let journal = sealed_with_node(50, 4, 1, Some(Hash([7; 32]))); // leaves 16..=31
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 31);
        assert_eq!(
            failure.field.as_deref(),
            Some("merkleNode(level 4, index 1)")
        );
    }

    #[test]
    fn an_altered_merkle_leaf_is_told_from_an_altered_header() {
        let journal = sealed_with_node(50, 0, 8, Some(Hash([7; 32])));
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 8);
        assert_eq!(
            failure.field.as_deref(),
            Some("merkleNode(level 0, index 8)")
        );
        assert!(failure.detail.contains("the leaf was altered"), "{failure}");
    }

    #[test]
    fn a_missing_merkle_node_is_reported() {
        let journal = sealed_with_node(50, 2, 1, None); // leaves 4..=7
        let failure = fails(&journal);
        assert_eq!(failure.sequence, 7);
        assert_eq!(
            failure.field.as_deref(),
            Some("merkleNode(level 2, index 1)")
        );
        assert!(failure.detail.contains("not stored"), "{failure}");
    }

    #[test]
    fn a_consistently_rewritten_journal_fails_against_an_earlier_digest() {
        let (original, hashes) = sealed(50);
        let (rewritten, _) = journal_forked(50, 30);
        run(&original, 7).expect("verifies");
        run(&rewritten, 7).expect("internally consistent");
        let at = 40;
        let root = root_of(&hashes[..=at as usize]).expect("non-empty");
        let failure = run_expecting(&rewritten, Some((at, root)), 7).expect_err("rewritten");
        assert_eq!(failure.sequence, at);
        assert_eq!(failure.field.as_deref(), Some("digest"));
        // A digest taken before the rewrite still matches.
        let root = root_of(&hashes[..30]).expect("non-empty");
        run_expecting(&rewritten, Some((29, root)), 7).expect("prefix unchanged");
    }

    #[test]
    fn the_first_bad_sequence_wins() {
        let journal = sealed_with_node(50, 0, 40, Some(Hash([7; 32])));
        let range = part(&journal, 25, Some(0));
        flip(&journal, 25, range.end - 1, 0x01);
        remove(&journal, 33);
        assert_eq!(fails(&journal).sequence, 25);
    }

    proptest::proptest! {
        /// DESIGN: "a single flipped byte anywhere in stored journal data is reported with
        /// its location" — in a block's frame, header or revisions, or in a Merkle node.
        #[test]
        fn any_flipped_byte_is_reported_at_its_block(
            sequence in 0u64..20,
            offset in proptest::prelude::any::<proptest::sample::Index>(),
            mask in 1u8..,
        ) {
            let (journal, _) = sealed(20);
            let at = offset.index(frame_len(&journal, sequence));
            flip(&journal, sequence, at, mask);
            let failure = run(&journal, 7).expect_err("a flipped byte must not verify");
            proptest::prop_assert_eq!(failure.sequence, sequence, "{}", failure);
        }

        #[test]
        fn any_flipped_merkle_node_is_reported_at_the_block_completing_it(
            pick in proptest::prelude::any::<proptest::sample::Index>(),
            byte in 0usize..32,
            mask in 1u8..,
        ) {
            let mut picked = None;
            let (journal, _) = journal_with(20, u64::MAX, u64::MAX, |nodes| {
                nodes.sort_by_key(|node| (node.level, node.index));
                let i = pick.index(nodes.len());
                let node = &mut nodes[i];
                node.hash.0[byte] ^= mask;
                picked = Some((node.level, node.index));
            });
            let (level, index) = picked.expect("a node was altered");
            let failure = run(&journal, 7).expect_err("an altered node must not verify");
            let completing = ((index + 1) << level) - 1;
            proptest::prop_assert_eq!(failure.sequence, completing, "{}", failure);
            proptest::prop_assert_eq!(failure.field, Some(node_field(level, index)));
        }
    }

    #[test]
    fn a_failure_converts_to_a_chain_broken_error() {
        let failure = failure(4, Some("previousHash".into()), "mismatch".into());
        match Error::from(failure) {
            Error::ChainBroken { sequence, detail } => {
                assert_eq!(sequence, 4);
                assert_eq!(detail, "mismatch");
            }
            other => panic!("expected ChainBroken, got {other:?}"),
        }
    }
}
