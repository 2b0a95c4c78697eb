//! Replay of one ad: re-project its revisions from the journal into both read models.
//!
//! Revisions carry the ad's complete state, so replaying the revisions whose `txTime`
//! lies in `[from, to]` in order leaves each read model holding the last of them: the
//! state live projection had produced at `to`. That state is written with the ports'
//! unconditional `put`, because a replay to an earlier time must be able to replace a
//! newer version (the read models then stay at that past state for this ad until the
//! next replay or rebuild; the report says so).
//!
//! The revisions are read through the journal's per-ad index and their blocks are
//! opened with [`block::open`], so each revision's bytes are checked against the hash
//! its block lists before anything is written.

use serde::Serialize;

use crate::ad::AdKey;
use crate::block;
use crate::error::{Error, Result};
use crate::lookup::revisions_at;
use crate::ports::{AdState, Journal, RevisionRef, SearchIndex, StateStore};
use crate::revision::Revision;
use crate::time::TimeRange;

/// How often a replay without an upper bound re-reads the ad's head to catch a write
/// that landed while it ran (see [`replay_ad`]).
const MAX_HEAD_CHASES: usize = 8;

/// Revisions whose blocks are read in one call.
const REPLAY_READ_BATCH: usize = 256;

/// What a replay wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// The ad's publisher.
    pub publisher_id: String,
    /// The ad.
    pub ad_id: String,
    /// Revisions whose `txTime` lies in the range.
    pub revisions: usize,
    /// The version both read models now hold.
    pub version: u64,
    /// The block of that version.
    pub sequence: u64,
    /// Whether that version is a delete.
    pub deleted: bool,
    /// The ad's newest version in the journal; larger than `version` when the range
    /// ended before it, in which case the read models hold a past state of this ad.
    pub head_version: u64,
}

/// Every revision of `key` with `txTime` in `range`, oldest first, read from the journal
/// and checked against their blocks' hashes. Empty if the ad never existed.
pub async fn revisions_in_range(
    journal: &dyn Journal,
    key: &AdKey,
    range: TimeRange,
) -> Result<Vec<Revision>> {
    let refs = journal.ad_revisions(key).await?;
    revisions_of(journal, key, refs, range).await
}

/// The revisions `refs` name (all of `key`), those with `txTime` in `range`, in order.
pub async fn revisions_of(
    journal: &dyn Journal,
    key: &AdKey,
    refs: Vec<RevisionRef>,
    range: TimeRange,
) -> Result<Vec<Revision>> {
    let mut revisions = Vec::with_capacity(refs.len());
    for chunk in refs.chunks(REPLAY_READ_BATCH) {
        for revision in revisions_at(journal, key, chunk).await? {
            if range.contains(revision.body.metadata.tx_time) {
                revisions.push(revision);
            }
        }
    }
    Ok(revisions)
}

/// Replays one ad over `range` into both read models; see the module docs.
///
/// `NotFound` if the ad has no revision in the range. With no upper bound the result is
/// the ad's current state even when a write to the ad lands during the replay: after
/// writing, the head is read again, and if it moved the replay repeats (a later live
/// projection of that newer revision is applied by version and wins anyway).
/// Checkpoints are not touched: replaying one ad says nothing about the other ads.
pub async fn replay_ad(
    journal: &dyn Journal,
    state: &dyn StateStore,
    search: &dyn SearchIndex,
    key: &AdKey,
    range: TimeRange,
) -> Result<ReplayReport> {
    let mut chases = 0;
    loop {
        let revisions = revisions_in_range(journal, key, range).await?;
        let Some(last) = revisions.last() else {
            return Err(Error::NotFound {
                what: format!(
                    "revisions of ad {} of publisher {} in the requested time range",
                    key.ad_id, key.publisher_id
                ),
            });
        };
        let replayed = AdState::from_revision(last);
        state.put(std::slice::from_ref(&replayed), None).await?;
        search.put(std::slice::from_ref(&replayed), None).await?;
        let head = journal
            .ad_head(key)
            .await?
            .ok_or_else(|| Error::ChainBroken {
                sequence: replayed.sequence,
                detail: format!("ad {} has revisions but no head", key.ad_id),
            })?;
        let chase = range.to.is_none() && head.version != replayed.version;
        if chase && chases < MAX_HEAD_CHASES {
            chases += 1;
            continue;
        }
        return Ok(ReplayReport {
            publisher_id: key.publisher_id.clone(),
            ad_id: key.ad_id.clone(),
            revisions: revisions.len(),
            version: replayed.version,
            sequence: replayed.sequence,
            deleted: replayed.ad.is_none(),
            head_version: head.version,
        });
    }
}

/// Replays every ad with a revision whose `txTime` lies in `range` (see [`replay_ad`]),
/// in the order of their first revision in the range. The blocks in the range are found
/// by binary search over transaction times and read in order.
pub async fn replay_range(
    journal: &dyn Journal,
    state: &dyn StateStore,
    search: &dyn SearchIndex,
    range: TimeRange,
) -> Result<Vec<ReplayReport>> {
    let Some((first, last)) = crate::export::sequence_range(journal, range).await? else {
        return Ok(Vec::new());
    };
    let mut keys: Vec<AdKey> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut next = first;
    while next <= last {
        let want = usize::try_from(last - next + 1).map_or(4096, |n| n.min(4096));
        let blocks = journal.read_blocks(next, want).await?;
        if blocks.is_empty() {
            return Err(Error::ChainBroken {
                sequence: next,
                detail: "the block is missing below the journal's last sequence".into(),
            });
        }
        for stored in blocks.iter().take(want) {
            for revision in block::open(stored)?.revisions {
                let key = revision.key();
                if seen.insert(key.clone()) {
                    keys.push(key);
                }
            }
        }
        next += blocks.len().min(want) as u64;
    }
    let mut reports = Vec::with_capacity(keys.len());
    for key in keys {
        reports.push(replay_ad(journal, state, search, &key, range).await?);
    }
    Ok(reports)
}

/// The key of the ad with id `ad_id` (ids are unique across publishers): looked up in
/// the state store, then, if the store does not know it (it may be the thing being
/// repaired), in the journal, newest block first. `None` if no block holds it.
pub async fn find_ad(
    journal: &dyn Journal,
    state: &dyn StateStore,
    ad_id: &str,
) -> Result<Option<AdKey>> {
    let mut after: Option<AdKey> = None;
    loop {
        let page = state.scan(after.as_ref(), 4096).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        if let Some(found) = page.into_iter().find(|s| s.key.ad_id == ad_id) {
            return Ok(Some(found.key));
        }
    }
    let Some(mut end) = journal.last_sequence().await?.map(|l| l + 1) else {
        return Ok(None);
    };
    while end > 0 {
        let start = end.saturating_sub(4096);
        let blocks = journal
            .read_blocks(start, usize::try_from(end - start).unwrap_or(4096))
            .await?;
        for stored in blocks.iter().rev() {
            let block = block::open(stored)?;
            if let Some(r) = block.revisions.iter().find(|r| r.body.metadata.id == ad_id) {
                return Ok(Some(r.key()));
            }
        }
        end = start;
    }
    Ok(None)
}
