//! The ad heads pass 2 of an import re-derives, in memory that does not grow with the
//! ledger.
//!
//! Each revision must continue its ad's head: version 0 for a new ad, the head's version
//! plus one after, nothing after a delete. Keeping every ad's head would cost one entry
//! per ad of the ledger. [`Heads`] keeps at most about `kept` of them, plus those of the
//! ads the batches not yet appended touch, and forgets the others once their batches are
//! in the journal being written: for an ad it no longer holds, the journal's stored head
//! answers. Such a revision is [`Unchecked`] when its batch is built, and checked
//! ([`first_problem`]) right before that batch is appended, when every batch before it
//! is in the journal.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ad::AdKey;
use crate::error::Result;
use crate::ports::Journal;

/// Heads kept in memory by default (about 150 bytes each): a revision of an ad not
/// touched within about this many ads costs one read of the journal.
pub const DEFAULT_HEADS_KEPT: usize = 1 << 16;

/// One ad's head as the import has re-derived it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) version: u64,
    pub(super) deleted: bool,
}

#[derive(Debug)]
struct Entry {
    head: Head,
    /// The block that last moved the head: once the journal holds it, the entry may go.
    sequence: u64,
}

/// The heads pass 2 holds; see the module docs.
#[derive(Debug)]
pub(super) struct Heads {
    map: HashMap<AdKey, Entry>,
    kept: usize,
    /// The map's size that triggers the next eviction.
    evict_at: usize,
    /// Whether any head was dropped: until then an ad not in the map has none.
    forgot: bool,
    /// Blocks the journal holds (appended batches); written by the appending task.
    appended: Arc<AtomicU64>,
}

impl Heads {
    /// Heads kept to about `kept` (at least 1); `appended` counts the blocks appended.
    pub(super) fn new(kept: usize, appended: Arc<AtomicU64>) -> Heads {
        Heads {
            map: HashMap::new(),
            kept: kept.max(1),
            evict_at: kept.max(1),
            forgot: false,
            appended,
        }
    }

    /// The ad's head before the revision being added: `Some(None)` for an ad with none,
    /// `None` when this map no longer knows (the journal does).
    pub(super) fn get(&self, key: &AdKey) -> Option<Option<Head>> {
        match self.map.get(key) {
            Some(entry) => Some(Some(entry.head)),
            None if self.forgot => None,
            None => Some(None),
        }
    }

    /// Records the ad's head after a revision of block `sequence`.
    pub(super) fn set(&mut self, key: AdKey, head: Head, sequence: u64) {
        self.map.insert(key, Entry { head, sequence });
        if self.map.len() >= self.evict_at {
            self.evict();
        }
    }

    /// Drops the heads the journal already holds (moved by appended blocks). The heads
    /// of batches in flight stay; if they alone fill the map, the next eviction waits
    /// until it has doubled, so that evicting never costs more than adding.
    fn evict(&mut self) {
        let appended = self.appended.load(Ordering::Acquire);
        let before = self.map.len();
        self.map.retain(|_, entry| entry.sequence >= appended);
        self.forgot |= self.map.len() < before;
        self.evict_at = self.kept.max(self.map.len().saturating_mul(2));
    }
}

/// Why a revision of version `version` does not continue `head` (`None`: the ad has
/// none), if it does not.
pub(super) fn problem(key: &AdKey, head: Option<Head>, version: u64) -> Option<String> {
    if head.is_some_and(|h| h.deleted) {
        return Some(format!("ad {} has a revision after its delete", key.ad_id));
    }
    let expected = head.map_or(0, |h| h.version + 1);
    (version != expected).then(|| {
        format!(
            "ad {} jumps to version {version}, version {expected} comes next",
            key.ad_id
        )
    })
}

/// A revision whose ad's head [`Heads`] had dropped: the first of its ad in its batch.
#[derive(Debug, Clone)]
pub(super) struct Unchecked {
    pub(super) key: AdKey,
    pub(super) version: u64,
    pub(super) sequence: u64,
}

/// The first of `unchecked` (before block `before`) that does not continue its ad's
/// head as the journal stores it: its block and the problem. Call it when the journal
/// holds every batch before theirs and none after. Creates (version 0) are skipped
/// unless `creates`: an append's own condition refuses a create of an ad that exists,
/// so they need a read only to name the culprit.
pub(super) async fn first_problem(
    journal: &dyn Journal,
    unchecked: &[Unchecked],
    creates: bool,
    before: u64,
) -> Result<Option<(u64, String)>> {
    for revision in unchecked
        .iter()
        .filter(|r| r.sequence < before && (creates || r.version > 0))
    {
        let head = journal.ad_head(&revision.key).await?.map(|h| Head {
            version: h.version,
            deleted: h.deleted,
        });
        if let Some(problem) = problem(&revision.key, head, revision.version) {
            return Ok(Some((revision.sequence, problem)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> AdKey {
        AdKey::new("p", format!("ad-{i}"))
    }

    const LIVE: Head = Head {
        version: 0,
        deleted: false,
    };

    #[test]
    fn heads_of_appended_blocks_are_forgotten_past_the_bound() {
        let appended = Arc::new(AtomicU64::new(0));
        let mut heads = Heads::new(4, appended.clone());
        for i in 0..3 {
            heads.set(key(i), LIVE, i);
        }
        assert_eq!(heads.get(&key(9)), Some(None), "nothing forgotten yet");
        // Blocks 0 and 1 are in the journal; 2 and 3 are not.
        appended.store(2, Ordering::Release);
        heads.set(key(3), LIVE, 3);
        assert_eq!(heads.map.len(), 2);
        assert_eq!(heads.get(&key(0)), None, "the journal knows it now");
        assert_eq!(
            heads.get(&key(9)),
            None,
            "an unseen ad may be a forgotten one"
        );
        assert_eq!(heads.get(&key(2)), Some(Some(LIVE)), "in flight: kept");
    }

    #[test]
    fn heads_in_flight_are_never_dropped() {
        let appended = Arc::new(AtomicU64::new(0));
        let mut heads = Heads::new(2, appended);
        for i in 0..100 {
            heads.set(key(i), LIVE, i);
        }
        assert_eq!(heads.map.len(), 100);
        assert!((0..100).all(|i| heads.get(&key(i)) == Some(Some(LIVE))));
        assert!(heads.evict_at >= 100, "no eviction per insert");
    }

    #[test]
    fn problems_are_named() {
        let k = key(1);
        assert_eq!(problem(&k, None, 0), None);
        assert_eq!(problem(&k, Some(LIVE), 1), None);
        assert!(problem(&k, None, 3).is_some_and(|p| p.contains("version 0 comes next")));
        assert!(problem(&k, Some(LIVE), 0).is_some_and(|p| p.contains("version 1 comes next")));
        let deleted = Head {
            version: 4,
            deleted: true,
        };
        assert!(problem(&k, Some(deleted), 5).is_some_and(|p| p.contains("after its delete")));
    }
}
