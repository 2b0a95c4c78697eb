//! Building an [`AppendBatch`] from sealed blocks: the one place that decides which
//! Merkle nodes, revision refs, head updates and idempotency records a block brings.
//!
//! Two writers use it: the committer, which seals new blocks from commands, and import,
//! which re-derives the same records from blocks read from an export. Sharing the code
//! is what makes an imported journal answer exactly like the one it was exported from.

use std::collections::HashMap;

use crate::ad::AdKey;
use crate::block::{Block, EncodedBlock};
use crate::hash::Hash;
use crate::merkle::Frontier;
use crate::ports::{AdHead, AppendBatch, HeadUpdate, IdempotencyRecord, RevisionRef};

/// Adds a sealed block and the Merkle nodes its hash completes.
pub(crate) fn add_block(
    batch: &mut AppendBatch,
    frontier: &mut Frontier,
    hash: &Hash,
    encoded: EncodedBlock,
) {
    batch.merkle_nodes.extend(frontier.push(hash));
    batch.blocks.push(encoded);
}

/// Where each ad's head update is in a batch's `heads`, so adding a revision costs the
/// same in a batch of thousands of blocks (import) as in a small one.
#[derive(Debug, Default)]
pub(crate) struct HeadIndex(HashMap<AdKey, usize>);

/// Adds one revision: its ref, and the move of its ad's head.
///
/// `before` is the ad's head version before the batch (`None`: the ad did not exist);
/// it becomes the head update's condition the first time the batch touches the ad, and
/// later revisions of the same ad in the batch only move the new head. `index` must
/// have been used for every head of this batch (start each batch with a new one).
pub(crate) fn add_revision(
    batch: &mut AppendBatch,
    index: &mut HeadIndex,
    key: AdKey,
    version: u64,
    sequence: u64,
    deleted: bool,
    before: Option<u64>,
) {
    batch.revisions.push(RevisionRef {
        key: key.clone(),
        version,
        sequence,
    });
    let new_head = AdHead {
        version,
        sequence,
        deleted,
    };
    match index.0.get(&key).and_then(|&i| batch.heads.get_mut(i)) {
        Some(update) => update.new_head = new_head,
        None => {
            index.0.insert(key.clone(), batch.heads.len());
            batch.heads.push(HeadUpdate {
                key,
                expected_version: before,
                new_head,
            });
        }
    }
}

/// The idempotency record a block's header implies: a block whose header carries an
/// idempotency key commits the create that carried it, which is its one version-0
/// revision.
pub fn idempotency_record(block: &Block) -> Option<IdempotencyRecord> {
    let tag = block.header.idempotency.as_ref()?;
    let created = block.revisions.iter().find(|r| r.version() == 0)?;
    Some(IdempotencyRecord {
        publisher_id: created.body.metadata.publisher_id.clone(),
        key: tag.key.clone(),
        request_hash: tag.request_hash,
        ad_id: created.body.metadata.id.clone(),
        sequence: block.sequence(),
    })
}
