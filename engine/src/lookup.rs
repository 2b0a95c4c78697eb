//! Reading one revision out of the journal from a reference to it (an ad head, a revision
//! ref, an idempotency record): history, time travel, replay, snapshots and the committer
//! all need it, with the same checks and the same errors.
//!
//! Every block read here is counted in [`BLOCK_READS`], so an operator (and the e2e
//! suite) can see that history, time travel and write answers stay bounded whatever an
//! ad's history holds.

use crate::ad::AdKey;
use crate::block::EncodedBlock;
use crate::error::{Error, Result};
use crate::ports::{Journal, RevisionRef};
use crate::revision::Revision;

/// Counter of the blocks the engine reads to answer history, time-travel and lookup
/// questions (not projection or verification scans, which read every block by design).
pub const BLOCK_READS: &str = "adledger_journal_block_reads_total";

fn count_reads(blocks: usize) {
    metrics::counter!(BLOCK_READS).increment(blocks as u64);
}

/// Revision `version` of `key`, which the journal's indexes say block `sequence` holds.
///
/// The block is opened with every hash checked; a missing block, or a block that does not
/// hold the revision, is a broken chain at `sequence`: the indexes and the blocks disagree.
pub(crate) async fn revision_at(
    journal: &dyn Journal,
    key: &AdKey,
    version: u64,
    sequence: u64,
) -> Result<Revision> {
    let stored = stored_block(journal, key, version, sequence).await?;
    crate::block::open(&stored)?
        .revisions
        .into_iter()
        .find(|rev| rev.key() == *key && rev.version() == version)
        .ok_or_else(|| Error::ChainBroken {
            sequence,
            detail: format!("block lacks ad {} version {version}", key.ad_id),
        })
}

/// The stored bytes of block `sequence`, which the indexes say holds revision `version` of
/// `key`; a missing block is a broken chain at `sequence`.
pub(crate) async fn stored_block(
    journal: &dyn Journal,
    key: &AdKey,
    version: u64,
    sequence: u64,
) -> Result<EncodedBlock> {
    let mut read = journal.read_blocks(sequence, 1).await?;
    count_reads(read.len());
    read.pop()
        .filter(|b| b.sequence == sequence)
        .ok_or_else(|| Error::ChainBroken {
            sequence,
            detail: format!("block of ad {} version {version} is missing", key.ad_id),
        })
}

/// The revisions `refs` name (all of `key`, ascending by version), in that order, read in
/// one [`Journal::read_blocks_at`] call and checked like [`revision_at`].
pub(crate) async fn revisions_at(
    journal: &dyn Journal,
    key: &AdKey,
    refs: &[RevisionRef],
) -> Result<Vec<Revision>> {
    let mut sequences: Vec<u64> = refs.iter().map(|r| r.sequence).collect();
    sequences.dedup();
    let stored = journal.read_blocks_at(&sequences).await?;
    count_reads(stored.len());
    let mut blocks = std::collections::HashMap::with_capacity(stored.len());
    for block in &stored {
        blocks.insert(block.sequence, block);
    }
    let mut opened: Option<(u64, crate::block::Block)> = None;
    let mut revisions = Vec::with_capacity(refs.len());
    for r in refs {
        if opened.as_ref().is_none_or(|(s, _)| *s != r.sequence) {
            let stored = blocks.get(&r.sequence).ok_or_else(|| Error::ChainBroken {
                sequence: r.sequence,
                detail: format!("block of ad {} version {} is missing", key.ad_id, r.version),
            })?;
            opened = Some((r.sequence, crate::block::open(stored)?));
        }
        let block = opened.as_ref().map(|(_, b)| b);
        let revision = block
            .and_then(|b| {
                b.revisions
                    .iter()
                    .find(|rev| rev.key() == *key && rev.version() == r.version)
            })
            .cloned()
            .ok_or_else(|| Error::ChainBroken {
                sequence: r.sequence,
                detail: format!("block lacks ad {} version {}", key.ad_id, r.version),
            })?;
        revisions.push(revision);
    }
    Ok(revisions)
}
