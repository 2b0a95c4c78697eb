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
//! integers. Across segments ordinals are unrelated: the merge reads id strings, but only
//! of hits that tie with another segment's on the primary key (each read decodes a
//! block of the id dictionary; reading every kept hit's id was a fifth of a search).
//!
//! By score, the collector asks the query for documents scoring above just below its
//! worst kept hit (tantivy's block-max WAND for a union of terms skips whole blocks under
//! it), so a document tying with the worst kept hit still arrives and can win on its id —
//! unless no later document of the segment can have a smaller id ([`LaterIds`]): then
//! only a strictly better score can enter, and WAND skips the ties too. Documents are
//! added in journal order and ad ids (ULIDs) grow with time, so in a segment of creates
//! that holds from the start; without it a search of a common word in a large index
//! walked every block, since thousands of ads tie on the best score.
//!
//! What the ranking reads of a segment besides the query's postings (its id and
//! creation-time columns, [`LaterIds`], its smallest and largest id) is opened once per
//! segment and kept in a [`SegmentCache`]: opening the columns at every search was a
//! tenth of a search's CPU. The id range settles most cross-segment ties without
//! reading an id: segments hold ranges of ids that rarely overlap (documents arrive in
//! id order and merges keep it, see `merge.rs`), and reading the tied hits' ids was the
//! largest single cost of a search once the query was one posting list.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::index::SegmentId;
use tantivy::query::Weight;
use tantivy::{DocAddress, DocId, Score, Searcher, SegmentOrdinal, SegmentReader, TantivyError};

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
    segments: Arc<SegmentCache>,
    /// By score: the best `offset + limit` primary keys of the segments collected so far
    /// (best first). A later segment's documents must reach the worst of them to matter,
    /// so its WAND starts there instead of at nothing (tantivy collects the segments of a
    /// search one after the other).
    found: Arc<Mutex<Vec<u64>>>,
}

impl Ranked {
    pub(crate) fn new(
        ranking: Ranking,
        offset: usize,
        limit: usize,
        segments: Arc<SegmentCache>,
    ) -> Ranked {
        Ranked {
            ranking,
            offset,
            limit,
            segments,
            found: Arc::default(),
        }
    }

    /// The score a document must exceed to enter the page given the segments collected
    /// so far: just below the worst of the best `offset + limit` of them (a tie may win
    /// on its id), or any score before there are that many.
    fn floor(&self) -> Score {
        let keep = self.offset.saturating_add(self.limit);
        let found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        match keep.checked_sub(1).and_then(|last| found.get(last)) {
            Some(&worst) => score_of_key(worst).next_down(),
            None => Score::MIN,
        }
    }

    /// Adds a segment's hits to [`Ranked::found`].
    fn record(&self, hits: &SegmentHits) {
        let keep = self.offset.saturating_add(self.limit);
        let mut found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        found.extend(hits.hits.iter().map(|hit| hit.primary.0));
        found.sort_unstable_by(|a, b| b.cmp(a));
        found.truncate(keep);
    }
}

/// For one segment, the smallest ad-id ordinal among the documents from each one on: a
/// lower bound of the ids of every document after a given one, which tells the score
/// ranking when a tie with its worst kept hit can no longer win. Four bytes a document.
#[derive(Debug)]
pub(crate) struct LaterIds {
    suffix_min: Vec<u32>,
}

impl LaterIds {
    /// One pass over the segment's id column (a segment is immutable, so once per
    /// segment: see [`SegmentCache`]). Deleted documents count too, which only lowers
    /// the bound.
    fn of(ids: &StrColumn, max_doc: DocId) -> LaterIds {
        let mut suffix_min = vec![u32::MAX; max_doc as usize];
        let mut min = u32::MAX;
        for doc in (0..max_doc).rev() {
            // A document without an id ranks last among its equals, as in `collect`; an
            // ordinal past u32 (not in a segment of fewer documents) saturates there too.
            let ord = ids.term_ords(doc).next().unwrap_or(u64::MAX);
            min = min.min(u32::try_from(ord).unwrap_or(u32::MAX));
            suffix_min[doc as usize] = min;
        }
        LaterIds { suffix_min }
    }

    /// A lower bound of the id ordinals of the documents after `doc`; `u64::MAX` when
    /// none follows.
    fn after(&self, doc: DocId) -> u64 {
        self.suffix_min
            .get(doc as usize + 1)
            .map_or(u64::MAX, |&min| u64::from(min))
    }
}

/// What the ranking reads of one segment, opened once (a segment is immutable).
pub(crate) struct SegmentColumns {
    ids: StrColumn,
    /// `None` for a segment without the column (no document has it).
    created: Option<Column<u64>>,
    later: LaterIds,
    /// The smallest and the largest ad id of the segment (deleted documents included,
    /// which only widens it); `None` for a segment without ids.
    id_range: Option<(String, String)>,
}

impl SegmentColumns {
    fn open(reader: &SegmentReader) -> tantivy::Result<SegmentColumns> {
        let ids = reader.fast_fields().str(AD_ID)?.ok_or_else(|| {
            TantivyError::SchemaError(format!("the search index has no `{AD_ID}` fast field"))
        })?;
        let created = reader.fast_fields().u64(CREATED_MS).ok();
        let later = LaterIds::of(&ids, reader.max_doc());
        let id_range = match ids.num_terms() {
            0 => None,
            terms => {
                let (mut first, mut last) = (String::new(), String::new());
                let found = ids.ord_to_str(0, &mut first)?
                    && ids.ord_to_str(terms as u64 - 1, &mut last)?;
                found.then_some((first, last))
            }
        };
        Ok(SegmentColumns {
            ids,
            created,
            later,
            id_range,
        })
    }
}

/// [`SegmentColumns`] of the segments searched lately, by segment id. Its size follows
/// the index's: four bytes a document ([`LaterIds`]) besides tantivy's own columns,
/// which are memory-mapped.
#[derive(Default)]
pub(crate) struct SegmentCache {
    segments: Mutex<HashMap<SegmentId, Arc<SegmentColumns>>>,
}

impl std::fmt::Debug for SegmentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentCache").finish_non_exhaustive()
    }
}

impl SegmentCache {
    /// Forgets the segments `searcher` no longer has (merged away).
    pub(crate) fn retain(&self, searcher: &Searcher) {
        let mut segments = self.segments.lock().unwrap_or_else(PoisonError::into_inner);
        if segments.len() > searcher.segment_readers().len() {
            let live: Vec<SegmentId> = searcher
                .segment_readers()
                .iter()
                .map(SegmentReader::segment_id)
                .collect();
            segments.retain(|id, _| live.contains(id));
        }
    }

    fn of(&self, reader: &SegmentReader) -> tantivy::Result<Arc<SegmentColumns>> {
        let id = reader.segment_id();
        if let Some(found) = self
            .segments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            return Ok(found.clone());
        }
        // Opened outside the lock; two searches may both open a new segment's once.
        let columns = Arc::new(SegmentColumns::open(reader)?);
        self.segments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, columns.clone());
        Ok(columns)
    }
}

/// One segment's best hits, best first, and the column that turns their term ordinals
/// into ids (ordinals of different segments are unrelated).
pub(crate) struct SegmentHits {
    segment_ord: SegmentOrdinal,
    columns: Arc<SegmentColumns>,
    descending_ids: bool,
    hits: Vec<SegmentHit>,
}

impl SegmentHits {
    /// The ad id of `hit`; empty if the lookup fails (every document carries an id, so
    /// the hit then still ranks by its primary key and address).
    fn ad_id(&self, hit: &SegmentHit) -> String {
        let ord = if self.descending_ids {
            !hit.tie
        } else {
            hit.tie
        };
        let mut ad_id = String::new();
        if !matches!(self.columns.ids.ord_to_str(ord, &mut ad_id), Ok(true)) {
            ad_id.clear();
        }
        ad_id
    }

    /// How every id of this segment compares with every id of `other`, when their id
    /// ranges do not overlap.
    fn id_order(&self, other: &SegmentHits) -> Option<Ordering> {
        let (first, last) = self.columns.id_range.as_ref()?;
        let (other_first, other_last) = other.columns.id_range.as_ref()?;
        if last < other_first {
            Some(Ordering::Less)
        } else if other_last < first {
            Some(Ordering::Greater)
        } else {
            None
        }
    }
}

/// A segment's next hit in the merge, with its id once a comparison needed it.
struct Head {
    fruit: usize,
    position: usize,
    ad_id: Option<String>,
}

impl Head {
    fn hit<'a>(&self, fruits: &'a [SegmentHits]) -> &'a SegmentHit {
        &fruits[self.fruit].hits[self.position]
    }

    fn address(&self, fruits: &[SegmentHits]) -> DocAddress {
        DocAddress::new(fruits[self.fruit].segment_ord, self.hit(fruits).doc)
    }

    fn read_id(&mut self, fruits: &[SegmentHits]) {
        if self.ad_id.is_none() {
            let fruit = &fruits[self.fruit];
            self.ad_id = Some(fruit.ad_id(&fruit.hits[self.position]));
        }
    }
}

impl Collector for Ranked {
    type Fruit = Vec<DocAddress>;
    type Child = SegmentRanked;

    fn for_segment(
        &self,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentRanked> {
        let columns = self.segments.of(reader)?;
        let created = match self.ranking {
            Ranking::Score => None,
            Ranking::Newest => Some(columns.created.clone().ok_or_else(|| {
                TantivyError::SchemaError(format!(
                    "the search index has no `{CREATED_MS}` fast field"
                ))
            })?),
        };
        Ok(SegmentRanked {
            segment_ord,
            later_ids: (self.ranking == Ranking::Score).then(|| columns.clone()),
            columns,
            created,
            floor: Score::MIN,
            descending_ids: self.ranking == Ranking::Newest,
            keep: self.offset.saturating_add(self.limit),
            best: BinaryHeap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.ranking == Ranking::Score
    }

    /// By score, the weight only reports documents that score above the worst kept hit
    /// (block-max WAND for a union of terms skips whole blocks that cannot); by age,
    /// every match, as tantivy's default does.
    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentHits> {
        let mut segment = self.for_segment(segment_ord, reader)?;
        let alive = reader.alive_bitset();
        match self.ranking {
            Ranking::Score => {
                segment.floor = self.floor();
                weight.for_each_pruning(segment.floor, reader, &mut |doc, score| {
                    if alive.is_none_or(|alive| alive.is_alive(doc)) {
                        segment.collect(doc, score);
                    }
                    segment.threshold(doc)
                })?;
                let hits = segment.harvest();
                self.record(&hits);
                return Ok(hits);
            }
            Ranking::Newest => {
                weight.for_each_no_score(reader, &mut |docs| {
                    for &doc in docs {
                        if alive.is_none_or(|alive| alive.is_alive(doc)) {
                            segment.collect(doc, 0.0);
                        }
                    }
                })?;
            }
        }
        Ok(segment.harvest())
    }

    /// A k-way merge of the segments' lists, which are each in final order already
    /// (equal primary keys by term ordinal, which sorts as the ids do). A head's id is
    /// read only when it ties with another segment's head on the primary key, so a page
    /// reads about `offset + limit` ids, not every segment's best.
    fn merge_fruits(&self, fruits: Vec<SegmentHits>) -> tantivy::Result<Vec<DocAddress>> {
        let want = self.offset.saturating_add(self.limit);
        let descending_ids = self.ranking == Ranking::Newest;
        let mut heads: Vec<Head> = (0..fruits.len())
            .filter(|&fruit| !fruits[fruit].hits.is_empty())
            .map(|fruit| Head {
                fruit,
                position: 0,
                ad_id: None,
            })
            .collect();
        let mut merged = Vec::with_capacity(want.min(1024));
        while merged.len() < want && !heads.is_empty() {
            let mut best = 0;
            for i in 1..heads.len() {
                let mut order = heads[i]
                    .hit(&fruits)
                    .primary
                    .cmp(&heads[best].hit(&fruits).primary);
                if order == Ordering::Equal {
                    // Segments whose ids do not overlap settle it without an id read.
                    order = fruits[heads[i].fruit]
                        .id_order(&fruits[heads[best].fruit])
                        .map_or(Ordering::Equal, |o| {
                            if descending_ids { o.reverse() } else { o }
                        });
                }
                if order == Ordering::Equal {
                    heads[i].read_id(&fruits);
                    heads[best].read_id(&fruits);
                    let (a, b) = (
                        heads[i].ad_id.as_deref().unwrap_or_default(),
                        heads[best].ad_id.as_deref().unwrap_or_default(),
                    );
                    order = if descending_ids { b.cmp(a) } else { a.cmp(b) }
                        .then_with(|| heads[i].address(&fruits).cmp(&heads[best].address(&fruits)));
                }
                if order == Ordering::Less {
                    best = i;
                }
            }
            merged.push(heads[best].address(&fruits));
            let head = &mut heads[best];
            head.position += 1;
            head.ad_id = None;
            if head.position == fruits[head.fruit].hits.len() {
                heads.swap_remove(best);
            }
        }
        Ok(merged.into_iter().skip(self.offset).collect())
    }
}

/// One segment's best hits; see [`Ranked`].
pub(crate) struct SegmentRanked {
    segment_ord: SegmentOrdinal,
    columns: Arc<SegmentColumns>,
    created: Option<Column<u64>>,
    /// By score: the columns whose [`LaterIds`] bound the ids still to come, see
    /// [`SegmentRanked::threshold`].
    later_ids: Option<Arc<SegmentColumns>>,
    /// By score: what the segments collected before this one already demand
    /// ([`Ranked::floor`]).
    floor: Score,
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

impl SegmentRanked {
    /// The score a document after `doc` must exceed to be worth reporting, once `keep`
    /// hits are kept: the worst kept hit's if every later document's id ranks after its
    /// id (a tie would lose on the id), else just below it, so that a tie still comes
    /// and may win on its id; any score before. Never below [`SegmentRanked::floor`].
    fn threshold(&self, doc: DocId) -> Score {
        let own = match self.best.peek() {
            Some(worst) if self.best.len() >= self.keep => {
                let score = score_of_key(worst.primary.0);
                let ties_lose = self
                    .later_ids
                    .as_ref()
                    .is_some_and(|columns| columns.later.after(doc) > worst.tie);
                if ties_lose { score } else { score.next_down() }
            }
            _ => Score::MIN,
        };
        own.max(self.floor)
    }
}

impl SegmentCollector for SegmentRanked {
    type Fruit = SegmentHits;

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
        let ord = self.columns.ids.term_ords(doc).next().unwrap_or(u64::MAX);
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

    fn harvest(self) -> SegmentHits {
        let mut hits = self.best.into_vec();
        hits.sort_unstable();
        SegmentHits {
            segment_ord: self.segment_ord,
            columns: self.columns,
            descending_ids: self.descending_ids,
            hits,
        }
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

/// The score whose [`score_key`] is `key`.
fn score_of_key(key: u64) -> Score {
    // Keys come from `score_key`, which fills the low 32 bits only.
    let bits = u32::try_from(key).unwrap_or(u32::MAX);
    Score::from_bits(if bits & 0x8000_0000 != 0 {
        bits & 0x7fff_ffff
    } else {
        !bits
    })
}

#[cfg(test)]
mod tests {
    use super::{score_key, score_of_key};

    #[test]
    fn score_keys_keep_the_order_of_scores() {
        let scores = [-3.5_f32, -0.5, 0.0, 1e-30, 0.25, 1.0, 7.75, f32::MAX];
        for pair in scores.windows(2) {
            assert!(score_key(pair[0]) < score_key(pair[1]), "{pair:?}");
        }
        assert_eq!(score_key(-0.0), score_key(0.0));
        for score in scores {
            assert_eq!(score_of_key(score_key(score)), score);
        }
    }
}
