//! Turns a `SearchQuery` into a tantivy query.
//!
//! User text is plain text: words and `"quoted phrases"`, nothing else. [`parts`] keeps
//! only those (letters and digits; every other character separates words, and words are
//! lower-cased so `AND`/`OR`/`NOT`/`TO`/`IN` are words, not operators), so no input can
//! name a field (`status:…`), a range that walks the term dictionary (`[a TO z]`), a
//! wildcard or a boost.
//!
//! Each part is analysed with the text field's analyzer and becomes one clause on the
//! `text` field (title, description, category and tags together, see `schema.rs`): a term
//! query for one token, a phrase query for several. A one-word search is then a single
//! term query, which tantivy ranks with block-max WAND over one posting list; with one
//! clause per field (four posting lists a word, summed), WAND over their union was the
//! largest cost of a search. Scores are BM25 of the word in the ad's whole text. Several
//! words sit flat in one `Should` list, a pure union of term queries that WAND prunes too.
//!
//! tantivy runs block-max WAND only when every clause of the union has postings in the
//! segment: a word that one segment lacks made each search score every match. So a union
//! of terms is a [`PresentTerms`] query, which keeps in each segment only the clauses
//! whose term the segment holds; the scores are the same (a missing term adds nothing),
//! computed with the index-wide statistics.
//!
//! Filters are term and range queries built from values, wrapped in `ConstScoreQuery(0)`
//! so that they select without changing the ranking. `status:live` is required only when
//! there is no text: a tombstone has no text field, so text never matches one. With
//! text, a filtered search is a [`Filtered`] query: the text ranked with its own pruning
//! and tested against per-segment filter bitsets (`filter.rs`), the same hits and scores
//! as the intersection, which tantivy would rank by scoring every match.

use std::ops::Bound;
use std::sync::Arc;

use adledger_engine::ports::SearchQuery;
use tantivy::Term;
use tantivy::query::{
    BooleanQuery, BooleanWeight, ConstScoreQuery, EmptyQuery, EmptyScorer, EnableScoring,
    Explanation, Occur, PhraseQuery, Query, RangeQuery, Scorer, SumCombiner, TermQuery, Weight,
    intersect_scorers,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::{TextAnalyzer, TokenStream as _};
use tantivy::{
    COLLECT_BLOCK_BUFFER_LEN, DocId, DocSet as _, Score, SegmentReader, TERMINATED, TantivyError,
};

use crate::filter::{FilterCache, FilterSpec, Passing, SegmentFilter};
use crate::schema::{AdSchema, LIVE, price_to_f64};

/// The queries for `search`; `has_text` tells the caller to rank by score, not by age.
pub(crate) fn build(
    schema: &AdSchema,
    analyzer: &mut TextAnalyzer,
    search: &SearchQuery,
    cache: &Arc<FilterCache>,
) -> Built {
    let parts = parts(&search.text);
    // Text with no word in it (`::`) searches like no text: the newest ads.
    let has_text = !parts.is_empty();
    // `status:live` aside, any filter makes the query an intersection.
    let filtered = search.publisher_id.is_some()
        || search.category.is_some()
        || search.tag.is_some()
        || search.min_price.is_some()
        || search.max_price.is_some();
    let mut filters: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    if !has_text {
        filters.push(filter(schema.status, LIVE));
    }
    // The filters twice: as queries (for searches without text) and as what
    // `Filtered` caches bitsets of (for text searches).
    let mut spec = FilterSpec {
        terms: Vec::new(),
        price: None,
    };
    for (field, value) in [
        (schema.publisher_id, &search.publisher_id),
        (schema.category_exact, &search.category),
        (schema.tag_exact, &search.tag),
    ] {
        if let Some(value) = value {
            filters.push(filter(field, value));
            spec.terms.push(Term::from_field_text(field, value));
        }
    }
    if search.min_price.is_some() || search.max_price.is_some() {
        // An open lower bound is the lowest finite f64, above `NO_PRICE`: an ad without
        // a price never matches a price filter.
        let low = search.min_price.map_or(f64::MIN, price_to_f64);
        let high = search.max_price.map_or(f64::MAX, price_to_f64);
        let range = RangeQuery::new(
            Bound::Included(Term::from_field_f64(schema.price, low)),
            Bound::Included(Term::from_field_f64(schema.price, high)),
        );
        filters.push((
            Occur::Must,
            Box::new(ConstScoreQuery::new(Box::new(range), 0.0)),
        ));
        spec.price = Some((schema.price, low, high));
    }
    if !has_text {
        let query = combined(filters);
        return Built {
            count: query.box_clone(),
            query,
            has_text,
            filtered,
        };
    }
    let tokens: Vec<Vec<(usize, String)>> = parts.iter().map(|p| tokens(analyzer, p)).collect();
    let text = text_clauses(schema, &tokens);
    if text.is_empty() {
        // Every word was dropped by the analyzer (longer than 40 bytes): nothing
        // matches, as with the parser's empty query.
        return Built {
            query: Box::new(EmptyQuery),
            count: Box::new(EmptyQuery),
            has_text,
            filtered: false,
        };
    }
    // Without phrases, the words counted without scores or positions (a single term in
    // a segment without deletes is its document frequency).
    let count_text = tokens.iter().all(|t| t.len() <= 1).then(|| {
        let mut words: Vec<&str> = tokens.iter().flatten().map(|(_, t)| t.as_str()).collect();
        words.sort_unstable();
        words.dedup();
        words
            .into_iter()
            .map(|word| {
                let term = Term::from_field_text(schema.text, word);
                let query: Box<dyn Query> =
                    Box::new(TermQuery::new(term, IndexRecordOption::Basic));
                (Occur::Should, query)
            })
            .collect::<Vec<_>>()
    });
    let count_text = match count_text {
        Some(words) => combined(words),
        None => combined(text.iter().map(|(o, q)| (*o, q.box_clone())).collect()),
    };
    let query = combined(present_terms(text));
    if !filtered {
        return Built {
            query,
            count: count_text,
            has_text,
            filtered: false,
        };
    }
    let count = Filtered {
        text: count_text,
        spec: spec.clone(),
        cache: cache.clone(),
    };
    Built {
        query: Box::new(Filtered {
            text: query,
            spec,
            cache: cache.clone(),
        }),
        count: Box::new(count),
        has_text,
        // Ranked with the text's pruning and counted on its own (see `Filtered`).
        filtered: false,
    }
}

/// The text's matches that pass every filter, ranked by the text's score alone (the
/// filters score nothing), as the intersection `filters AND text` would rank them but
/// with the text's own pruning: see `filter.rs`.
#[derive(Debug)]
pub(crate) struct Filtered {
    text: Box<dyn Query>,
    spec: FilterSpec,
    cache: Arc<FilterCache>,
}

impl Clone for Filtered {
    fn clone(&self) -> Filtered {
        Filtered {
            text: self.text.box_clone(),
            spec: self.spec.clone(),
            cache: self.cache.clone(),
        }
    }
}

impl Query for Filtered {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(FilteredWeight {
            text: self.text.weight(enable_scoring)?,
            spec: self.spec.clone(),
            cache: self.cache.clone(),
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.text.query_terms(visitor);
    }
}

/// The weight of [`Filtered`]: per segment, the text's own weight tested against the
/// filters' bitsets, or, where a filter is rare, the intersection of the text's scorer
/// with the bitsets.
struct FilteredWeight {
    text: Box<dyn Weight>,
    spec: FilterSpec,
    cache: Arc<FilterCache>,
}

/// How a segment is searched.
enum Route {
    /// No document passes the filters.
    Nothing,
    /// The text's documents tested against the bitsets.
    Text(Passing),
    /// The intersection of the text and the bitsets (a filter is rare).
    Intersection(Box<dyn Scorer>),
}

impl FilteredWeight {
    fn route(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Route> {
        Ok(match self.cache.segment(reader, &self.spec)? {
            SegmentFilter::Nothing => Route::Nothing,
            SegmentFilter::Bits(passing) if passing.is_rare(reader.max_doc()) => {
                let mut scorers = vec![self.text.scorer(reader, boost)?];
                scorers.extend(passing.scorers());
                Route::Intersection(intersect_scorers(scorers))
            }
            SegmentFilter::Bits(passing) => Route::Text(passing),
        })
    }
}

impl Weight for FilteredWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        match self.cache.segment(reader, &self.spec)? {
            SegmentFilter::Nothing => Ok(Box::new(EmptyScorer)),
            SegmentFilter::Bits(passing) => {
                let mut scorers = vec![self.text.scorer(reader, boost)?];
                scorers.extend(passing.scorers());
                Ok(intersect_scorers(scorers))
            }
        }
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let passes = match self.cache.segment(reader, &self.spec)? {
            SegmentFilter::Nothing => false,
            SegmentFilter::Bits(passing) => passing.matches(doc),
        };
        if !passes {
            return Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not pass the filters"
            )));
        }
        self.text.explain(reader, doc)
    }

    /// Live documents of the text that pass the filters, without scores.
    fn count(&self, reader: &SegmentReader) -> tantivy::Result<u32> {
        let alive = reader.alive_bitset();
        match self.route(reader, 1.0)? {
            Route::Nothing => Ok(0),
            Route::Intersection(mut scorer) => Ok(match alive {
                Some(alive) => scorer.count(alive),
                None => scorer.count_including_deleted(),
            }),
            Route::Text(passing) => {
                let mut count = 0u32;
                self.text.for_each_no_score(reader, &mut |docs| {
                    for &doc in docs {
                        if passing.matches(doc) && alive.is_none_or(|alive| alive.is_alive(doc)) {
                            count += 1;
                        }
                    }
                })?;
                Ok(count)
            }
        }
    }

    fn for_each(
        &self,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score),
    ) -> tantivy::Result<()> {
        match self.route(reader, 1.0)? {
            Route::Nothing => Ok(()),
            Route::Intersection(mut scorer) => {
                let mut doc = scorer.doc();
                while doc != TERMINATED {
                    callback(doc, scorer.score());
                    doc = scorer.advance();
                }
                Ok(())
            }
            Route::Text(passing) => self.text.for_each(reader, &mut |doc, score| {
                if passing.matches(doc) {
                    callback(doc, score);
                }
            }),
        }
    }

    fn for_each_no_score(
        &self,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(&[DocId]),
    ) -> tantivy::Result<()> {
        match self.route(reader, 1.0)? {
            Route::Nothing => Ok(()),
            Route::Intersection(mut scorer) => {
                let mut buffer = [0; COLLECT_BLOCK_BUFFER_LEN];
                loop {
                    let filled = scorer.fill_buffer(&mut buffer);
                    if filled > 0 {
                        callback(&buffer[..filled]);
                    }
                    if filled < COLLECT_BLOCK_BUFFER_LEN {
                        return Ok(());
                    }
                }
            }
            Route::Text(passing) => {
                let mut kept = Vec::new();
                self.text.for_each_no_score(reader, &mut |docs| {
                    kept.clear();
                    kept.extend(docs.iter().copied().filter(|&doc| passing.matches(doc)));
                    if !kept.is_empty() {
                        callback(&kept);
                    }
                })
            }
        }
    }

    /// The text's own pruning (block-max WAND for a term or a union of terms); a
    /// document that fails a filter leaves the threshold where it was, so every passing
    /// document scoring above it is still reported. Where a filter is rare, every
    /// document of the intersection is scored.
    fn for_each_pruning(
        &self,
        threshold: Score,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) -> tantivy::Result<()> {
        match self.route(reader, 1.0)? {
            Route::Nothing => Ok(()),
            Route::Intersection(mut scorer) => {
                let mut threshold = threshold;
                let mut doc = scorer.doc();
                while doc != TERMINATED {
                    let score = scorer.score();
                    if score > threshold {
                        threshold = callback(doc, score);
                    }
                    doc = scorer.advance();
                }
                Ok(())
            }
            Route::Text(passing) => {
                let mut current = threshold;
                self.text
                    .for_each_pruning(threshold, reader, &mut |doc, score| {
                        if passing.matches(doc) {
                            current = callback(doc, score);
                        }
                        current
                    })
            }
        }
    }
}

/// The text clauses as one [`PresentTerms`] query when all are term queries (the
/// common case: no phrase).
fn present_terms(text: Vec<(Occur, Box<dyn Query>)>) -> Vec<(Occur, Box<dyn Query>)> {
    let terms: Option<Vec<TermQuery>> = text
        .iter()
        .map(|(_, q)| q.downcast_ref::<TermQuery>().cloned())
        .collect();
    match terms {
        Some(terms) if terms.len() > 1 => vec![(Occur::Should, Box::new(PresentTerms { terms }))],
        _ => text,
    }
}

/// A union of term queries (`Should`, scores summed, like a `BooleanQuery` of them) that
/// in each segment leaves out the terms the segment does not hold, so that tantivy's
/// block-max WAND applies (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct PresentTerms {
    terms: Vec<TermQuery>,
}

impl Query for PresentTerms {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let weights = self
            .terms
            .iter()
            .map(|q| Ok((q.term().clone(), Arc::from(q.weight(enable_scoring)?))))
            .collect::<tantivy::Result<_>>()?;
        Ok(Box::new(PresentTermsWeight {
            weights,
            scoring: enable_scoring.is_scoring_enabled(),
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        for term in &self.terms {
            term.query_terms(visitor);
        }
    }
}

/// The weight of [`PresentTerms`]: per segment, a boolean union of the present terms'
/// weights (which carry the index-wide BM25 statistics).
struct PresentTermsWeight {
    weights: Vec<(Term, Arc<dyn Weight>)>,
    scoring: bool,
}

impl PresentTermsWeight {
    /// The weights of the terms `reader`'s segment holds.
    fn present(&self, reader: &SegmentReader) -> tantivy::Result<Vec<Arc<dyn Weight>>> {
        let mut present = Vec::with_capacity(self.weights.len());
        for (term, weight) in &self.weights {
            if reader
                .inverted_index(term.field())?
                .get_term_info(term)?
                .is_some()
            {
                present.push(weight.clone());
            }
        }
        Ok(present)
    }

    /// The segment's union: one term's weight alone (its own block-max pruning), or a
    /// boolean union of several.
    fn for_segment(&self, reader: &SegmentReader) -> tantivy::Result<Box<dyn Weight>> {
        let mut present = self.present(reader)?;
        if present.len() == 1 {
            return Ok(Box::new(Shared(present.remove(0))));
        }
        let clauses = present
            .into_iter()
            .map(|w| (Occur::Should, Box::new(Shared(w)) as Box<dyn Weight>))
            .collect();
        Ok(Box::new(BooleanWeight::new(
            clauses,
            self.scoring,
            Box::new(SumCombiner::default),
        )))
    }
}

impl Weight for PresentTermsWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        self.for_segment(reader)?.scorer(reader, boost)
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.for_segment(reader)?.explain(reader, doc)
    }

    fn count(&self, reader: &SegmentReader) -> tantivy::Result<u32> {
        self.for_segment(reader)?.count(reader)
    }

    fn for_each(
        &self,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score),
    ) -> tantivy::Result<()> {
        self.for_segment(reader)?.for_each(reader, callback)
    }

    fn for_each_no_score(
        &self,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(&[DocId]),
    ) -> tantivy::Result<()> {
        self.for_segment(reader)?
            .for_each_no_score(reader, callback)
    }

    fn for_each_pruning(
        &self,
        threshold: Score,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) -> tantivy::Result<()> {
        self.for_segment(reader)?
            .for_each_pruning(threshold, reader, callback)
    }
}

/// A weight shared by the per-segment unions of [`PresentTermsWeight`]; its scorer is
/// the term's own (a `TermScorer`, which tantivy's union recognises for block-max WAND).
struct Shared(Arc<dyn Weight>);

impl Weight for Shared {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        self.0.scorer(reader, boost)
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.0.explain(reader, doc)
    }

    fn count(&self, reader: &SegmentReader) -> tantivy::Result<u32> {
        self.0.count(reader)
    }

    fn for_each(
        &self,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score),
    ) -> tantivy::Result<()> {
        self.0.for_each(reader, callback)
    }

    fn for_each_no_score(
        &self,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(&[DocId]),
    ) -> tantivy::Result<()> {
        self.0.for_each_no_score(reader, callback)
    }

    fn for_each_pruning(
        &self,
        threshold: Score,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) -> tantivy::Result<()> {
        self.0.for_each_pruning(threshold, reader, callback)
    }
}

/// The clauses combined (all `Should`: any of them; all `Must`: all of them); a single
/// clause alone, so that tantivy's shortcuts for one query (a term's document count)
/// apply.
fn combined(mut clauses: Vec<(Occur, Box<dyn Query>)>) -> Box<dyn Query> {
    match clauses.pop() {
        Some((_, only)) if clauses.is_empty() => only,
        Some(last) => {
            clauses.push(last);
            Box::new(BooleanQuery::new(clauses))
        }
        None => Box::new(EmptyQuery),
    }
}

/// The analysed tokens of one part, with their positions.
fn tokens(analyzer: &mut TextAnalyzer, part: &str) -> Vec<(usize, String)> {
    let mut tokens = Vec::new();
    let mut stream = analyzer.token_stream(part);
    while let Some(token) = stream.next() {
        tokens.push((token.position, token.text.clone()));
    }
    tokens
}

/// One `Should` clause per part on the `text` field: a term query for a part that
/// analyses to one token, a phrase query for one that analyses to several, none for none.
fn text_clauses(schema: &AdSchema, parts: &[Vec<(usize, String)>]) -> Vec<(Occur, Box<dyn Query>)> {
    let field = schema.text;
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(parts.len());
    for tokens in parts {
        let query: Box<dyn Query> = match tokens.as_slice() {
            [] => continue,
            [(_, token)] => Box::new(TermQuery::new(
                Term::from_field_text(field, token),
                IndexRecordOption::WithFreqs,
            )),
            several => Box::new(PhraseQuery::new_with_offset_and_slop(
                several
                    .iter()
                    .map(|(position, token)| (*position, Term::from_field_text(field, token)))
                    .collect(),
                0,
            )),
        };
        clauses.push((Occur::Should, query));
    }
    clauses
}

/// The words and quoted phrases of `text` (see the module docs): each part is one word,
/// or the words of a quoted phrase joined by spaces.
pub(crate) fn parts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, part) in text.split('"').enumerate() {
        let words: Vec<String> = part
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        // Odd parts are between quotes (an unclosed quote runs to the end).
        if i % 2 == 1 && words.len() > 1 {
            out.push(words.join(" "));
        } else {
            out.extend(words);
        }
    }
    out
}

/// A built query.
pub(crate) struct Built {
    /// What ranks the hits.
    pub(crate) query: Box<dyn Query>,
    /// Matches the same documents as `query`, cheaper to count.
    pub(crate) count: Box<dyn Query>,
    pub(crate) has_text: bool,
    /// A search without text, filtered: ranking by age visits every match anyway, so
    /// the total is best counted in the same pass instead of by walking the matches a
    /// second time. (A filtered text search is a [`Filtered`] query, ranked with the
    /// text's pruning and counted on its own.)
    pub(crate) filtered: bool,
}

fn filter(field: Field, value: &str) -> (Occur, Box<dyn Query>) {
    let term = TermQuery::new(
        Term::from_field_text(field, value),
        IndexRecordOption::Basic,
    );
    (
        Occur::Must,
        Box::new(ConstScoreQuery::new(Box::new(term), 0.0)),
    )
}

#[cfg(test)]
mod tests {
    use super::parts;

    #[test]
    fn only_words_and_phrases_reach_the_index() {
        assert_eq!(parts("Red bike"), ["red", "bike"]);
        assert_eq!(parts("\"red bike\" cheap"), ["red bike", "cheap"]);
        assert_eq!(parts("status:tombstone"), ["status", "tombstone"]);
        assert_eq!(parts("adId:[0 TO z]"), ["adid", "0", "to", "z"]);
        assert_eq!(
            parts("* OR title:x^10 AND -y"),
            ["or", "title", "x", "10", "and", "y"]
        );
        assert_eq!(parts("café \"unclosed phrase"), ["café", "unclosed phrase"]);
        assert_eq!(parts("\"one\""), ["one"]);
        assert!(parts("  ::  ").is_empty());
    }
}
