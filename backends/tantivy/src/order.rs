//! The order of hits: best match first (newest first when there is no text), ties broken
//! by ad id, the same order as the OpenSearch index's sort.
//!
//! tantivy's `TopDocs` breaks ties by document address, which depends on the index's
//! history: segments, merges, which document an update replaced. Ranked that way, a
//! rebuild or an import of the same journal changed which of several equally relevant
//! ads made a page. [`Ranked`] makes the order a function of the documents alone:
//!
//! | ranking | first | then |
//! |---|---|---|
//! | [`Ranking::Score`] | score, descending | ad id, ascending |
//! | [`Ranking::Newest`] | `createdMs`, descending | ad id, descending (ULIDs made in one millisecond increase, so this is still newest first) |
//!
//! Within a segment the `adId` fast field's term ordinals sort as the ids do (its
//! dictionary is sorted), so a segment keeps its best `offset + limit` hits comparing
//! integers and reads the id strings of those only; the merge compares strings across
//! segments, whose ordinals are unrelated.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, TantivyError};

use crate::schema::{AD_ID, CREATED_MS};

/// What ranks hits before the ad id does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ranking {
    /// Relevance to the text; ties by ascending ad id.
    Score,
    /// Creation time; ties by descending ad id.
    Newest,
}

/// Collects the addresses of hits `offset .. offset + limit` in [`Ranking`] order.
#[derive(Debug, Clone)]
pub(crate) struct Ranked {
    ranking: Ranking,
    offset: usize,
    limit: usize,
}

impl Ranked {
    pub(crate) fn new(ranking: Ranking, offset: usize, limit: usize) -> Ranked {
        Ranked {
            ranking,
            offset,
            limit,
        }
    }
}

/// A hit as a segment reports it: its id is a string, comparable across segments.
#[derive(Debug)]
pub(crate) struct Hit {
    primary: u64,
    ad_id: String,
    address: DocAddress,
}

impl Collector for Ranked {
    type Fruit = Vec<DocAddress>;
    type Child = SegmentRanked;

    fn for_segment(
        &self,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentRanked> {
        let ids = reader.fast_fields().str(AD_ID)?.ok_or_else(|| {
            TantivyError::SchemaError(format!("the search index has no `{AD_ID}` fast field"))
        })?;
        let created = match self.ranking {
            Ranking::Score => None,
            Ranking::Newest => Some(reader.fast_fields().u64(CREATED_MS)?),
        };
        Ok(SegmentRanked {
            segment_ord,
            ids,
            created,
            descending_ids: self.ranking == Ranking::Newest,
            keep: self.offset.saturating_add(self.limit),
            best: BinaryHeap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.ranking == Ranking::Score
    }

    fn merge_fruits(&self, fruits: Vec<Vec<Hit>>) -> tantivy::Result<Vec<DocAddress>> {
        let mut hits: Vec<Hit> = fruits.into_iter().flatten().collect();
        let descending_ids = self.ranking == Ranking::Newest;
        hits.sort_unstable_by(|a, b| {
            let ids = if descending_ids {
                b.ad_id.cmp(&a.ad_id)
            } else {
                a.ad_id.cmp(&b.ad_id)
            };
            b.primary
                .cmp(&a.primary)
                .then(ids)
                .then(a.address.cmp(&b.address))
        });
        Ok(hits
            .into_iter()
            .skip(self.offset)
            .take(self.limit)
            .map(|hit| hit.address)
            .collect())
    }
}

/// One segment's best hits; see [`Ranked`].
pub(crate) struct SegmentRanked {
    segment_ord: SegmentOrdinal,
    ids: StrColumn,
    created: Option<Column<u64>>,
    descending_ids: bool,
    keep: usize,
    /// The best `keep` hits so far, the worst on top.
    best: BinaryHeap<SegmentHit>,
}

/// A hit within a segment; smaller is better, so the max-heap's top is the worst kept.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SegmentHit {
    primary: Reverse<u64>,
    /// The id's term ordinal, bit-inverted when ids rank descending.
    tie: u64,
    doc: DocId,
}

impl SegmentCollector for SegmentRanked {
    type Fruit = Vec<Hit>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if self.keep == 0 {
            return;
        }
        let primary = match &self.created {
            Some(created) => created.first(doc).unwrap_or(0),
            None => score_key(score),
        };
        // Most hits of a large result lose on the primary key alone: skip the id read.
        if self.best.len() >= self.keep
            && self
                .best
                .peek()
                .is_some_and(|worst| primary < worst.primary.0)
        {
            return;
        }
        // Every document carries its id; one without would rank last among its equals.
        let ord = self.ids.term_ords(doc).next().unwrap_or(u64::MAX);
        let tie = if self.descending_ids { !ord } else { ord };
        self.best.push(SegmentHit {
            primary: Reverse(primary),
            tie,
            doc,
        });
        if self.best.len() > self.keep {
            self.best.pop();
        }
    }

    fn harvest(self) -> Vec<Hit> {
        let mut ad_id = String::new();
        self.best
            .into_vec()
            .into_iter()
            .map(|hit| {
                let ord = if self.descending_ids {
                    !hit.tie
                } else {
                    hit.tie
                };
                ad_id.clear();
                // A failed lookup leaves the id empty: the hit still ranks by its
                // primary key and address, and every document carries an id.
                if !matches!(self.ids.ord_to_str(ord, &mut ad_id), Ok(true)) {
                    ad_id.clear();
                }
                Hit {
                    primary: hit.primary.0,
                    ad_id: ad_id.clone(),
                    address: DocAddress::new(self.segment_ord, hit.doc),
                }
            })
            .collect()
    }
}

/// The score as an integer of the same order (IEEE 754's total order), so hits compare
/// exactly and a heap can hold them.
fn score_key(score: Score) -> u64 {
    // +0.0 and -0.0 are the same score.
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    u64::from(if bits & 0x8000_0000 == 0 {
        bits | 0x8000_0000
    } else {
        !bits
    })
}

#[cfg(test)]
mod tests {
    use super::score_key;

    #[test]
    fn score_keys_keep_the_order_of_scores() {
        let scores = [-3.5_f32, -0.5, 0.0, 1e-30, 0.25, 1.0, 7.75, f32::MAX];
        for pair in scores.windows(2) {
            assert!(score_key(pair[0]) < score_key(pair[1]), "{pair:?}");
        }
        assert_eq!(score_key(-0.0), score_key(0.0));
    }
}
