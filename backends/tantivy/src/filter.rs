//! The exact filters of a text search (`publisherId`, `category`, `tag`, a price range)
//! as per-segment bitsets, so that a filtered search keeps the pruning of an unfiltered
//! one.
//!
//! tantivy ranks an intersection (text AND filter) by scoring every document of it: block-max
//! WAND prunes a term or a union of terms, not an intersection. At a million ads a
//! filtered one-word search cost about eight times an unfiltered one. Instead, the text is
//! ranked alone, with its WAND, and each document it reports is tested against the
//! segment's filter bitsets ([`Passing::matches`]); a document that fails the test
//! does not raise the ranking's threshold, so every matching document that can make the
//! page is still reported. The total is counted by walking the text's postings (doc ids
//! only, no scores) against the same bitsets.
//!
//! That pays when the filter keeps a fair share of the text's documents. A filter that
//! keeps few documents of a segment ([`RARE`]) would leave the threshold low for long, so
//! there the segment is searched by the intersection of the text with the bitsets
//! ([`Passing::scorers`]), which the rare filter's bitset drives.
//!
//! A bitset costs one bit per document of its segment and is built once per segment and
//! filter value (a segment is immutable): from the term's postings, or from a scan of
//! the `price` column with the range query's own value mapping (so the bounds mean
//! exactly what they meant to the range query). [`FilterCache`] keeps them, bounded in
//! bytes ([`CACHE_BYTES`]), least recently used first out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tantivy::index::SegmentId;
use tantivy::query::{ConstScorer, Scorer};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Searcher, SegmentReader, TERMINATED, Term, f64_to_u64};

/// Bytes of bitsets [`FilterCache`] keeps over all segments: at a million ads a filter
/// value's bitsets take 125 KB, so about 500 values.
const CACHE_BYTES: usize = 64 << 20;

/// A filter that keeps fewer than one document in `RARE` of a segment is rare there: the
/// intersection, driven by the filter's few documents, is cheaper than ranking the text
/// and testing its documents.
const RARE: u64 = 64;

/// Documents scanned at once in the `price` column when building its bitset.
const SCAN_DOCS: u32 = 1 << 16;

/// What a search filters on, besides its text.
#[derive(Debug, Clone)]
pub(crate) struct FilterSpec {
    /// Terms each document must hold (`publisherId`, `categoryExact`, `tagExact`).
    pub(crate) terms: Vec<Term>,
    /// The `price` field and its inclusive bounds, as the range query takes them.
    pub(crate) price: Option<(Field, f64, f64)>,
}

impl FilterSpec {
    fn components(&self) -> impl Iterator<Item = Component> + '_ {
        let terms = self.terms.iter().cloned().map(Component::Term);
        let price = self.price.map(|(field, low, high)| Component::Price {
            field,
            low: f64_to_u64(low),
            high: f64_to_u64(high),
        });
        terms.chain(price)
    }
}

/// One filter of a [`FilterSpec`]: the unit a bitset is cached for. Price bounds are in
/// tantivy's order-preserving u64 mapping of f64, the range query's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Component {
    Term(Term),
    Price { field: Field, low: u64, high: u64 },
}

impl Component {
    /// Bytes of the key and its map entry, charged to the cache besides the bitset.
    fn key_bytes(&self) -> usize {
        let own = match self {
            Component::Term(term) => term.serialized_value_bytes().len(),
            Component::Price { .. } => 0,
        };
        own + 96
    }
}

/// One bit per document of a segment.
pub(crate) struct Bits {
    words: Vec<u64>,
    /// How many bits are set.
    count: u32,
}

impl Bits {
    fn new(max_doc: DocId) -> Bits {
        Bits {
            words: vec![0; (max_doc as usize).div_ceil(64)],
            count: 0,
        }
    }

    /// The first document from `from` on, or `TERMINATED`.
    fn next_from(&self, from: DocId) -> DocId {
        let mut index = (from / 64) as usize;
        let Some(&first) = self.words.get(index) else {
            return TERMINATED;
        };
        let mut word = first & (u64::MAX << (from % 64));
        loop {
            if word != 0 {
                return index as u32 * 64 + word.trailing_zeros();
            }
            index += 1;
            match self.words.get(index) {
                Some(&next) => word = next,
                None => return TERMINATED,
            }
        }
    }

    fn insert(&mut self, doc: DocId) {
        if let Some(word) = self.words.get_mut((doc / 64) as usize) {
            let bit = 1 << (doc % 64);
            if *word & bit == 0 {
                *word |= bit;
                self.count += 1;
            }
        }
    }

    #[inline]
    fn contains(&self, doc: DocId) -> bool {
        self.words
            .get((doc / 64) as usize)
            .is_some_and(|word| (word >> (doc % 64)) & 1 == 1)
    }

    fn bytes(&self) -> usize {
        self.words.len() * 8
    }
}

/// The documents of [`Bits`] in order, for an intersection.
struct BitsDocSet {
    bits: Arc<Bits>,
    doc: DocId,
}

impl DocSet for BitsDocSet {
    fn advance(&mut self) -> DocId {
        if self.doc != TERMINATED {
            self.doc = self.bits.next_from(self.doc + 1);
        }
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if target > self.doc {
            self.doc = self.bits.next_from(target);
        }
        self.doc
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.bits.count
    }
}

/// What one filter component selects in one segment.
#[derive(Clone)]
enum Selection {
    /// No document.
    Nothing,
    Bits(Arc<Bits>),
}

impl Selection {
    fn bytes(&self) -> usize {
        match self {
            Selection::Bits(bits) => bits.bytes(),
            Selection::Nothing => 0,
        }
    }
}

/// What a search's filters select in one segment.
pub(crate) enum SegmentFilter {
    /// No document of the segment passes: nothing to rank or count there.
    Nothing,
    /// Some may pass.
    Bits(Passing),
}

/// The bitsets of a search's filters in one segment.
pub(crate) struct Passing(Vec<Arc<Bits>>);

impl Passing {
    /// Whether `doc` passes every filter.
    #[inline]
    pub(crate) fn matches(&self, doc: DocId) -> bool {
        self.0.iter().all(|bits| bits.contains(doc))
    }

    /// Whether one of the filters keeps few of the segment's documents (see [`RARE`]).
    pub(crate) fn is_rare(&self, max_doc: DocId) -> bool {
        self.0
            .iter()
            .any(|bits| u64::from(bits.count) * RARE < u64::from(max_doc))
    }

    /// Each bitset as a scorer of 0 (it selects, it does not score), to intersect with
    /// the text's scorer: tantivy's intersection is driven by the one with the fewest
    /// documents.
    pub(crate) fn scorers(&self) -> impl Iterator<Item = Box<dyn Scorer>> + '_ {
        self.0.iter().map(|bits| {
            let docs = BitsDocSet {
                doc: bits.next_from(0),
                bits: bits.clone(),
            };
            Box::new(ConstScorer::new(docs, 0.0)) as Box<dyn Scorer>
        })
    }
}

/// A cached selection and when it was last used.
struct Entry {
    selection: Selection,
    used: u64,
    bytes: usize,
}

#[derive(Default)]
struct State {
    segments: HashMap<SegmentId, HashMap<Component, Entry>>,
    bytes: usize,
    clock: u64,
}

impl State {
    /// Drops least recently used entries until the cache fits [`CACHE_BYTES`].
    fn evict(&mut self) {
        while self.bytes > CACHE_BYTES {
            let oldest = self
                .segments
                .iter()
                .flat_map(|(segment, entries)| {
                    entries
                        .iter()
                        .map(move |(component, entry)| (entry.used, *segment, component))
                })
                .min_by_key(|(used, _, _)| *used)
                .map(|(_, segment, component)| (segment, component.clone()));
            let Some((segment, component)) = oldest else {
                self.bytes = 0;
                return;
            };
            if let Some(entries) = self.segments.get_mut(&segment) {
                if let Some(entry) = entries.remove(&component) {
                    self.bytes = self.bytes.saturating_sub(entry.bytes);
                }
                if entries.is_empty() {
                    self.segments.remove(&segment);
                }
            }
        }
    }
}

/// The filter bitsets of recent searches, by segment and filter value (see the module
/// docs); at most [`CACHE_BYTES`].
#[derive(Default)]
pub(crate) struct FilterCache {
    state: Mutex<State>,
}

impl std::fmt::Debug for FilterCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterCache").finish_non_exhaustive()
    }
}

impl FilterCache {
    /// Forgets the segments `searcher` no longer has (merged away).
    pub(crate) fn retain(&self, searcher: &Searcher) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let readers = searcher.segment_readers();
        let gone: Vec<SegmentId> = state
            .segments
            .keys()
            .filter(|id| !readers.iter().any(|r| r.segment_id() == **id))
            .copied()
            .collect();
        for id in gone {
            if let Some(entries) = state.segments.remove(&id) {
                let freed: usize = entries.values().map(|e| e.bytes).sum();
                state.bytes = state.bytes.saturating_sub(freed);
            }
        }
    }

    /// What `spec` selects in `reader`'s segment.
    pub(crate) fn segment(
        &self,
        reader: &SegmentReader,
        spec: &FilterSpec,
    ) -> tantivy::Result<SegmentFilter> {
        let mut bits = Vec::new();
        for component in spec.components() {
            match self.selection(reader, component)? {
                Selection::Nothing => return Ok(SegmentFilter::Nothing),
                Selection::Bits(one) => bits.push(one),
            }
        }
        Ok(SegmentFilter::Bits(Passing(bits)))
    }

    fn selection(
        &self,
        reader: &SegmentReader,
        component: Component,
    ) -> tantivy::Result<Selection> {
        let id = reader.segment_id();
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.clock += 1;
            let now = state.clock;
            if let Some(entry) = state
                .segments
                .get_mut(&id)
                .and_then(|entries| entries.get_mut(&component))
            {
                entry.used = now;
                return Ok(entry.selection.clone());
            }
        }
        // Built outside the lock; two searches may both build a new one.
        let selection = select(reader, &component)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.clock += 1;
        let entry = Entry {
            selection: selection.clone(),
            used: state.clock,
            bytes: selection.bytes() + component.key_bytes(),
        };
        state.bytes += entry.bytes;
        if let Some(old) = state
            .segments
            .entry(id)
            .or_default()
            .insert(component, entry)
        {
            state.bytes = state.bytes.saturating_sub(old.bytes);
        }
        state.evict();
        Ok(selection)
    }
}

/// Reads what `component` selects in `reader`'s segment (deleted documents included:
/// the searches test liveness themselves).
fn select(reader: &SegmentReader, component: &Component) -> tantivy::Result<Selection> {
    let max_doc = reader.max_doc();
    match component {
        Component::Term(term) => {
            let Some(mut postings) = reader
                .inverted_index(term.field())?
                .read_postings(term, IndexRecordOption::Basic)?
            else {
                return Ok(Selection::Nothing);
            };
            let mut bits = Bits::new(max_doc);
            let mut doc = postings.doc();
            while doc != TERMINATED {
                bits.insert(doc);
                doc = postings.advance();
            }
            Ok(if bits.count == 0 {
                Selection::Nothing
            } else {
                Selection::Bits(Arc::new(bits))
            })
        }
        Component::Price { field, low, high } => {
            if low > high {
                return Ok(Selection::Nothing);
            }
            let name = reader.schema().get_field_name(*field).to_owned();
            // A segment without the column has no price to match (as for the range
            // query, which answers nothing there).
            let Some(column) = reader.fast_fields().column_opt::<f64>(&name)? else {
                return Ok(Selection::Nothing);
            };
            let range = tantivy::u64_to_f64(*low)..=tantivy::u64_to_f64(*high);
            let mut bits = Bits::new(max_doc);
            let mut docs = Vec::new();
            let mut start = 0;
            while start < max_doc {
                let end = start.saturating_add(SCAN_DOCS).min(max_doc);
                docs.clear();
                column.get_docids_for_value_range(range.clone(), start..end, &mut docs);
                for &doc in &docs {
                    bits.insert(doc);
                }
                start = end;
            }
            Ok(if bits.count == 0 {
                Selection::Nothing
            } else {
                Selection::Bits(Arc::new(bits))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tantivy::{DocSet as _, TERMINATED};

    use super::{Bits, BitsDocSet};

    #[test]
    fn bits_hold_exactly_what_was_inserted_and_walk_in_order() {
        let mut bits = Bits::new(200);
        for doc in [0, 63, 64, 64, 129, 199] {
            bits.insert(doc);
        }
        let held: Vec<u32> = (0..300).filter(|&doc| bits.contains(doc)).collect();
        assert_eq!(held, [0, 63, 64, 129, 199]);
        assert_eq!((bits.count, bits.bytes()), (5, 32));

        let mut docs = BitsDocSet {
            doc: bits.next_from(0),
            bits: Arc::new(bits),
        };
        let mut walked = vec![docs.doc()];
        while docs.advance() != TERMINATED {
            walked.push(docs.doc());
        }
        assert_eq!(walked, held);
        let mut docs = BitsDocSet {
            doc: 0,
            bits: docs.bits,
        };
        assert_eq!(docs.seek(65), 129);
        assert_eq!(docs.seek(100), 129);
        assert_eq!(docs.seek(130), 199);
        assert_eq!(docs.seek(200), TERMINATED);
    }
}
