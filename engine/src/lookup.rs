//! Reading one revision out of the journal from a reference to it (an ad head, a revision
//! ref, an idempotency record): history, time travel, replay, snapshots and the committer
//! all need it, with the same checks and the same errors.

use crate::ad::AdKey;
use crate::block::EncodedBlock;
use crate::error::{Error, Result};
use crate::ports::Journal;
use crate::revision::Revision;

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
    journal
        .read_blocks(sequence, 1)
        .await?
        .pop()
        .filter(|b| b.sequence == sequence)
        .ok_or_else(|| Error::ChainBroken {
            sequence,
            detail: format!("block of ad {} version {version} is missing", key.ad_id),
        })
}
