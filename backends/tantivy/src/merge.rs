//! The merge policy: tantivy's default (`LogMergePolicy`), with each merge's segments put
//! in ad-id order.
//!
//! A merged segment holds its sources' documents one source after the other, in the
//! order the merge lists them; `LogMergePolicy` lists them by size. Documents are added
//! in journal order and ad ids (ULIDs) grow with time, so ordering each merge by its
//! segments' first ad id keeps a segment of creates in id order after any number of
//! merges, which lets the score ranking stop at ties (see `order.rs`: without it a word
//! search at a million ads scored every match, since thousands tie on the best score).
//! The order never changes what a search returns, only how soon it can stop.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tantivy::index::{SegmentId, SegmentMeta};
use tantivy::indexer::{LogMergePolicy, MergeCandidate, MergePolicy};
use tantivy::{Index, SegmentReader};

use crate::schema::AD_ID;

/// [`LogMergePolicy`], each candidate's segments sorted by their first document's ad id.
#[derive(Debug)]
pub(crate) struct InIdOrder {
    inner: LogMergePolicy,
    index: Index,
    /// The first ad id of each segment seen in a merge (segments are immutable).
    first_ids: Mutex<HashMap<SegmentId, String>>,
}

impl InIdOrder {
    pub(crate) fn new(index: Index) -> InIdOrder {
        InIdOrder {
            inner: LogMergePolicy::default(),
            index,
            first_ids: Mutex::default(),
        }
    }

    /// The ad id of the segment's first document; empty if it cannot be read (the merge
    /// then still happens, only its order is not the best).
    fn first_id(&self, meta: &SegmentMeta) -> String {
        let id = meta.id();
        let mut known = self
            .first_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(first) = known.get(&id) {
            return first.clone();
        }
        let first = SegmentReader::open(&self.index.segment(meta.clone()))
            .ok()
            .and_then(|reader| reader.fast_fields().str(AD_ID).ok().flatten())
            .and_then(|ids| {
                let ord = ids.term_ords(0).next()?;
                let mut text = String::new();
                ids.ord_to_str(ord, &mut text).ok()?.then_some(text)
            })
            .unwrap_or_default();
        known.insert(id, first.clone());
        first
    }
}

impl MergePolicy for InIdOrder {
    fn compute_merge_candidates(&self, segments: &[SegmentMeta]) -> Vec<MergeCandidate> {
        let mut candidates = self.inner.compute_merge_candidates(segments);
        if candidates.is_empty() {
            return candidates;
        }
        let metas: HashMap<SegmentId, &SegmentMeta> =
            segments.iter().map(|meta| (meta.id(), meta)).collect();
        for candidate in &mut candidates {
            let mut keyed: Vec<(String, SegmentId)> = candidate
                .0
                .iter()
                .map(|id| {
                    let first = metas.get(id).map(|m| self.first_id(m)).unwrap_or_default();
                    (first, *id)
                })
                .collect();
            keyed.sort();
            candidate.0 = keyed.into_iter().map(|(_, id)| id).collect();
        }
        // Forget segments that are gone.
        self.first_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| metas.contains_key(id));
        candidates
    }
}
