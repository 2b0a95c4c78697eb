//! One ad's history read in bounded pieces: a page of revisions, or the revision in
//! force at a time, whatever the number of versions the ad has.
//!
//! The journal's per-ad index ([`Journal::ad_revisions`]) lists where each version is
//! (small references, no block bytes). Blocks' `txTime` never decreases along the journal
//! (the committer takes the later of the clock and the previous block's time), and an
//! ad's versions lie in ascending blocks, so along the index times are sorted too: a
//! time bound is found by binary search, reading O(log n) blocks, and a page reads only
//! its own blocks, in one [`Journal::read_blocks_at`] call.

use chrono::{DateTime, Utc};

use crate::ad::AdKey;
use crate::error::Result;
use crate::lookup::{revision_at, revisions_at};
use crate::ports::{Journal, RevisionRef};
use crate::revision::Revision;
use crate::time::TimeRange;

/// One page of an ad's revisions, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The page's revisions, by ascending version.
    pub revisions: Vec<Revision>,
    /// Whether more revisions in the range follow the last one (the next page starts
    /// after its version).
    pub more: bool,
}

/// Up to `limit` revisions of `refs` (one ad's index, ascending by version) whose version
/// is above `after` and whose `txTime` lies in `range`: O(log n) block reads to find the
/// start when `range.from` is set, then the page's blocks and one more (to tell whether
/// more follow), read together.
pub(crate) async fn page(
    journal: &dyn Journal,
    key: &AdKey,
    refs: &[RevisionRef],
    range: TimeRange,
    after: Option<u64>,
    limit: usize,
) -> Result<HistoryPage> {
    let mut start = after.map_or(0, |a| refs.partition_point(|r| r.version <= a));
    if let Some(from) = range.from {
        start += partition_by_time(journal, key, &refs[start..], |t| t >= from).await?;
    }
    let end = refs
        .len()
        .min(start.saturating_add(limit).saturating_add(1));
    let mut revisions = revisions_at(journal, key, &refs[start..end]).await?;
    if let Some(to) = range.to {
        let kept = revisions.partition_point(|r| r.body.metadata.tx_time <= to);
        revisions.truncate(kept);
    }
    let more = revisions.len() > limit;
    revisions.truncate(limit);
    Ok(HistoryPage { revisions, more })
}

/// The last revision of `refs` committed at or before `at` (`None`: the ad did not exist
/// yet), found by binary search: at most ⌈log2(n + 1)⌉ block reads.
pub(crate) async fn in_force_at(
    journal: &dyn Journal,
    key: &AdKey,
    refs: &[RevisionRef],
    at: DateTime<Utc>,
) -> Result<Option<Revision>> {
    let (mut lo, mut hi) = (0usize, refs.len());
    // The last probe that was in force is the answer: `lo` only moves past a probe that
    // was committed at or before `at`.
    let mut found = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let r = &refs[mid];
        let revision = revision_at(journal, key, r.version, r.sequence).await?;
        if revision.body.metadata.tx_time <= at {
            lo = mid + 1;
            found = Some(revision);
        } else {
            hi = mid;
        }
    }
    Ok(found)
}

/// The first index of `refs` whose revision's `txTime` satisfies `after` (false, then
/// true along the index), or `refs.len()`; one block read per halving.
async fn partition_by_time(
    journal: &dyn Journal,
    key: &AdKey,
    refs: &[RevisionRef],
    after: impl Fn(DateTime<Utc>) -> bool,
) -> Result<usize> {
    let (mut lo, mut hi) = (0usize, refs.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let r = &refs[mid];
        let revision = revision_at(journal, key, r.version, r.sequence).await?;
        if after(revision.body.metadata.tx_time) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}
