//! Turns a `SearchQuery` into a tantivy query.
//!
//! User text goes through `QueryParser::parse_query_lenient`, never through string
//! building, so stray quotes, colons or brackets in the input never fail a search; what
//! the parser cannot use it drops. Filters are term and range queries built from values,
//! wrapped in `ConstScoreQuery(0)` so that they select without changing the ranking.

use std::ops::Bound;

use adledger_engine::ports::SearchQuery;
use tantivy::Term;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};

use crate::schema::{AdSchema, LIVE, price_to_f64};

/// The query for `search`; `has_text` tells the caller to rank by score, not by age.
pub(crate) fn build(schema: &AdSchema, parser: &QueryParser, search: &SearchQuery) -> Built {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![filter(schema.status, LIVE)];
    let text = search.text.trim();
    if !text.is_empty() {
        // The errors list what was dropped; a search box answers with what it understood.
        let (query, _dropped) = parser.parse_query_lenient(text);
        clauses.push((Occur::Must, query));
    }
    if let Some(publisher_id) = &search.publisher_id {
        clauses.push(filter(schema.publisher_id, publisher_id));
    }
    if let Some(category) = &search.category {
        clauses.push(filter(schema.category_exact, category));
    }
    if let Some(tag) = &search.tag {
        clauses.push(filter(schema.tag_exact, tag));
    }
    if search.min_price.is_some() || search.max_price.is_some() {
        let bound = |price: Option<rust_decimal::Decimal>| match price {
            Some(p) => Bound::Included(Term::from_field_f64(schema.price, price_to_f64(p))),
            None => Bound::Unbounded,
        };
        let range = RangeQuery::new(bound(search.min_price), bound(search.max_price));
        clauses.push((
            Occur::Must,
            Box::new(ConstScoreQuery::new(Box::new(range), 0.0)),
        ));
    }
    Built {
        query: Box::new(BooleanQuery::new(clauses)),
        has_text: !text.is_empty(),
    }
}

/// A built query.
pub(crate) struct Built {
    pub(crate) query: Box<dyn Query>,
    pub(crate) has_text: bool,
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
