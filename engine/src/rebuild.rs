//! Rebuild: the read models from the journal alone, in sequence order, verifying the
//! hash chain as it reads.
//!
//! # What is checked
//!
//! Every block goes through the chain checks of the `chain` module that need no Merkle tree
//! (it is the block expected next, the frame parses, the header's `sequenceNo` is the
//! block's position, its `previousHash` is the hash of the block before it, each
//! revision's bytes hash to the hash the header lists) before its revisions are decoded. The
//! first failure stops the rebuild with [`Error::ChainBroken`] naming the sequence; the
//! batches before it stay applied and checkpointed. (`adledger verify` additionally
//! checks the stored Merkle nodes.)
//!
//! # Resuming
//!
//! Each batch is written to both read models with its checkpoint (`put` stores states
//! and checkpoint together), so a rebuild that stops — a crash, Ctrl-C, a broken chain,
//! [`RebuildOptions::max_batches`] — resumes from `min(state checkpoint, search
//! checkpoint)`: nothing is cleared here, and a model that is ahead gets a few blocks
//! written again, which converges because they are written in journal order. Starting
//! over is the caller's decision ([`clear_read_models`]). The link check resumes too: the
//! block before the checkpoint is read to learn the hash the next one must name.
//!
//! # Speed
//!
//! A batch is the unit of writing and of checkpointing. It is read from the journal in
//! chunks of `READ_CHUNK` (16,384) blocks, each checked and decoded on
//! [`RebuildOptions::decode_threads`] threads (the `chain` module's batches) and folded into one map holding the last state
//! of each ad, and it ends when it reaches [`RebuildOptions::batch_blocks`] blocks or
//! its states reach [`RebuildOptions::batch_bytes`] (an estimate of their memory). Only
//! those last states are written: a journal where ads are updated many times writes each
//! ad once per batch, not once per revision, and each read model makes one write (one
//! sled batch, one tantivy commit) per batch. The two read models are written
//! concurrently with each other and with reading and decoding the next batch.
//!
//! The sizes trade memory and the work a crash repeats (at most one batch) against
//! speed: two batches are in memory at most (one written, one being built).
//!
//! # Shadow rebuilds
//!
//! A rebuild into fresh read models beside the live ones leaves the live ledger's
//! untouched until [`copy_read_models`] (module `swap`) replaces their content.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::ad::AdKey;
use crate::block::{self, EncodedBlock, Frame};
use crate::chain::{self, Chain, Standalone};
use crate::codec;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::ports::{AdState, Journal, SearchIndex, StateStore};

mod swap;

pub use swap::copy_read_models;

/// Most blocks per batch (one write per read model, one search commit, one checkpoint).
/// A search commit costs ~0.4 s on the local backend whatever its size, so batches are
/// large; the blocks themselves are only held one read chunk at a time.
pub const DEFAULT_BATCH_BLOCKS: usize = 1 << 20;

/// Most estimated bytes of decoded ad states per batch (see [`RebuildOptions::batch_bytes`]).
///
/// The bigger, the more updates of one ad collapse into one write; the price is memory:
/// at most two batches exist (one written, one being built) and the write hands each
/// read model a copy, so a rebuild peaks near four times this on a journal with more
/// distinct ads than fit, and the estimate undercounts the heap. Measured on 200,000
/// single-revision ads (`adledger rebuild`, peak RSS, after the state store wrote its
/// puts in chunks): 64 MB peaked at 0.99–1.07 GB, 16 MB at 0.70 GB, 8 MB at 0.66 GB, at
/// the same speed within the noise; what remains is not the batch (see `bench/README.md`).
pub const DEFAULT_BATCH_BYTES: usize = 16 << 20;

/// Blocks per `read_blocks` call: the frames of one chunk are in memory at a time.
pub(crate) const READ_CHUNK: usize = 16_384;

/// How a rebuild runs.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// Most blocks per batch.
    pub batch_blocks: usize,
    /// Most estimated bytes of decoded states per batch (the batch's memory): a batch
    /// ends at whichever of the two limits it reaches first.
    pub batch_bytes: usize,
    /// Stop after this many batches, as an interruption would (tests of resumption);
    /// `None` runs to the end of the journal.
    pub max_batches: Option<usize>,
    /// Threads decoding one batch in parallel.
    pub decode_threads: usize,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        RebuildOptions {
            batch_blocks: DEFAULT_BATCH_BLOCKS,
            batch_bytes: DEFAULT_BATCH_BYTES,
            max_batches: None,
            decode_threads: 2,
        }
    }
}

/// Where a running rebuild is; passed to the progress callback after every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebuildProgress {
    /// The sequence the rebuild started (or resumed) from.
    pub resumed_from: u64,
    /// The next sequence not yet applied to both read models.
    pub next: u64,
    /// The journal's size when the rebuild started (grows if blocks are appended
    /// meanwhile).
    pub target: u64,
    /// Revisions read so far in this run.
    pub revisions: u64,
    /// Block bytes read so far in this run.
    pub bytes: u64,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebuildReport {
    /// The checkpoint it resumed from (0 for a rebuild from scratch).
    pub resumed_from: u64,
    /// The checkpoint both read models now hold.
    pub next: u64,
    /// Blocks applied in this run.
    pub blocks: u64,
    /// Revisions applied in this run.
    pub revisions: u64,
    /// Ad states written per read model (after keeping the last state per ad per batch).
    pub states: u64,
    /// `false` when it stopped at [`RebuildOptions::max_batches`] before the end.
    pub complete: bool,
    /// Time spent.
    #[serde(skip)]
    pub elapsed: Duration,
}

/// Empties both read models, so the next [`rebuild`] starts from sequence 0.
pub async fn clear_read_models(state: &dyn StateStore, search: &dyn SearchIndex) -> Result<()> {
    let (s, i) = tokio::join!(state.clear(), search.clear());
    s.and(i)
}

/// One decoded, verified batch.
struct Decoded {
    /// The next sequence after the batch.
    next: u64,
    blocks: u64,
    revisions: u64,
    bytes: u64,
    /// The hash of the batch's last block (what the next block must name).
    last_hash: Hash,
    /// The last state of each ad the batch touches.
    states: Vec<AdState>,
}

/// Rebuilds both read models from their checkpoint to the end of the journal; see the
/// module docs. `progress` is called after every batch.
pub async fn rebuild(
    journal: &dyn Journal,
    state: &dyn StateStore,
    search: &dyn SearchIndex,
    options: &RebuildOptions,
    progress: &mut (dyn FnMut(&RebuildProgress) + Send),
) -> Result<RebuildReport> {
    let started = std::time::Instant::now();
    let (state_checkpoint, search_checkpoint) =
        tokio::join!(state.checkpoint(), search.checkpoint());
    let from = state_checkpoint?.min(search_checkpoint?);
    let size = journal.last_sequence().await?.map_or(0, |l| l + 1);
    if from > size {
        return Err(Error::invalid(
            "checkpoint",
            format!(
                "the read models claim to have applied {from} blocks, but the journal holds \
                 {size}: they were built from another journal; clear them and rebuild from scratch"
            ),
        ));
    }
    let previous =
        match from.checked_sub(1) {
            None => Hash::ZERO,
            Some(before) => {
                let stored = journal.read_blocks(before, 1).await?.pop().ok_or_else(|| {
                    Error::ChainBroken {
                        sequence: before,
                        detail: "the block before the read models' checkpoint is missing".into(),
                    }
                })?;
                block::open(&stored)?.hash
            }
        };
    let mut report = RebuildReport {
        resumed_from: from,
        next: from,
        blocks: 0,
        revisions: 0,
        states: 0,
        complete: true,
        elapsed: Duration::ZERO,
    };
    let mut at = RebuildProgress {
        resumed_from: from,
        next: from,
        target: size,
        revisions: 0,
        bytes: 0,
    };
    let mut current = read_batch(journal, from, previous, options).await?;
    let mut batches = 0usize;
    while current.blocks > 0 {
        let write = async {
            let (s, i) = tokio::join!(
                state.put(&current.states, Some(current.next)),
                search.put(&current.states, Some(current.next))
            );
            s.and(i)
        };
        let read = read_batch(journal, current.next, current.last_hash, options);
        let (written, next) = tokio::join!(write, read);
        written?;
        report.next = current.next;
        report.blocks += current.blocks;
        report.revisions += current.revisions;
        report.states += current.states.len() as u64;
        at.next = current.next;
        at.target = at.target.max(current.next);
        at.revisions += current.revisions;
        at.bytes += current.bytes;
        progress(&at);
        batches += 1;
        if options.max_batches.is_some_and(|max| batches >= max) {
            report.complete = next.as_ref().is_ok_and(|n| n.blocks == 0);
            break;
        }
        current = next?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Reads one batch from `from` (see the module docs): verifies every block (links
/// across chunks too) and keeps the last state of each ad.
async fn read_batch(
    journal: &dyn Journal,
    from: u64,
    previous: Hash,
    options: &RebuildOptions,
) -> Result<Decoded> {
    let max_blocks = options.batch_blocks.max(1) as u64;
    let max_bytes = options.batch_bytes.max(1);
    let threads = options.decode_threads.max(1);
    let mut batch = Decoded {
        next: from,
        blocks: 0,
        revisions: 0,
        bytes: 0,
        last_hash: previous,
        states: Vec::new(),
    };
    let mut chain = Chain::resume(previous);
    let mut index: HashMap<AdKey, usize> = HashMap::new();
    let mut state_bytes = 0usize;
    while batch.blocks < max_blocks && state_bytes < max_bytes {
        let want =
            usize::try_from(max_blocks - batch.blocks).map_or(READ_CHUNK, |n| n.min(READ_CHUNK));
        let stored = journal.read_blocks(batch.next, want).await?;
        if stored.is_empty() {
            break;
        }
        batch.blocks += stored.len() as u64;
        batch.next += stored.len() as u64;
        batch.bytes += stored.iter().map(|b| b.bytes.len() as u64).sum::<u64>();
        // Checked and decoded in parallel off the async threads; links are checked here,
        // in order, across chunks and batches too.
        let first = batch.next - stored.len() as u64;
        let (stored, opened) = chain::check_batch(first, stored, threads, open).await?;
        for ((sequence, block), opened) in (first..).zip(&stored).zip(opened) {
            let (alone, states) = opened?;
            chain.link(sequence, block, alone, None)?;
            batch.revisions += states.len() as u64;
            for state in states {
                let size = state_size(&state);
                match index.get(&state.key) {
                    Some(&i) => {
                        state_bytes =
                            state_bytes.saturating_sub(state_size(&batch.states[i])) + size;
                        batch.states[i] = state;
                    }
                    None => {
                        state_bytes +=
                            size + state.key.publisher_id.len() + state.key.ad_id.len() + 48;
                        index.insert(state.key.clone(), batch.states.len());
                        batch.states.push(state);
                    }
                }
            }
        }
    }
    batch.last_hash = chain.previous_hash();
    Ok(batch)
}

/// Roughly the heap and inline bytes one state holds (for [`RebuildOptions::batch_bytes`]).
fn state_size(state: &AdState) -> usize {
    std::mem::size_of::<AdState>()
        + state.key.publisher_id.len()
        + state.key.ad_id.len()
        + state.ad.as_ref().map_or(0, crate::ad::Ad::heap_bytes)
}

/// Block `sequence` checked on its own ([`chain::standalone`]) and its revisions decoded
/// into the states they leave. A block whose revisions do not match their hashes is not
/// decoded: linking it reports the mismatch.
fn open(sequence: u64, stored: &EncodedBlock) -> Result<(Standalone, Vec<AdState>)> {
    let alone = chain::standalone(sequence, stored)?;
    if alone.bad_revision.is_some() || alone.listed != alone.revisions {
        return Ok((alone, Vec::new()));
    }
    let broken = |detail: String| Error::ChainBroken { sequence, detail };
    let frame = Frame::parse(&stored.bytes).map_err(|e| broken(e.to_string()))?;
    let states = frame
        .revisions
        .iter()
        .map(|bytes| {
            let body = codec::decode_revision(bytes).map_err(|e| broken(e.to_string()))?;
            Ok(AdState {
                key: AdKey::new(body.metadata.publisher_id, body.metadata.id),
                version: body.metadata.version,
                sequence,
                updated_at: body.metadata.tx_time,
                ad: body.data,
            })
        })
        .collect::<Result<_>>()?;
    Ok((alone, states))
}
