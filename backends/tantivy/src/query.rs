//! Turns a `SearchQuery` into a tantivy query.
//!
//! User text is plain text: words and `"quoted phrases"`, nothing else. [`plain_text`]
//! keeps only those (letters and digits; every other character separates words, and
//! words are lower-cased so `AND`/`OR`/`NOT`/`TO`/`IN` are words, not operators) before
//! `QueryParser::parse_query_lenient` sees them, so no input can name a field
//! (`status:…`), a range that walks the term dictionary (`[a TO z]`), a wildcard or a
//! boost. Filters are term and range queries built from values, wrapped in
//! `ConstScoreQuery(0)` so that they select without changing the ranking.

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
    // Text with no word in it (`::`) searches like no text: the newest ads.
    let text = plain_text(&search.text);
    if !text.is_empty() {
        // The errors list what was dropped; a search box answers with what it understood.
        let (query, _dropped) = parser.parse_query_lenient(&text);
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

/// The words and quoted phrases of `text`, in the query parser's syntax and nothing else
/// (see the module docs).
pub(crate) fn plain_text(text: &str) -> String {
    let mut out = Vec::new();
    for (i, part) in text.split('"').enumerate() {
        let words: Vec<String> = part
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        // Odd parts are between quotes (an unclosed quote runs to the end).
        if i % 2 == 1 && words.len() > 1 {
            out.push(format!("\"{}\"", words.join(" ")));
        } else {
            out.extend(words);
        }
    }
    out.join(" ")
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

#[cfg(test)]
mod tests {
    use super::plain_text;

    #[test]
    fn only_words_and_phrases_reach_the_parser() {
        assert_eq!(plain_text("Red bike"), "red bike");
        assert_eq!(plain_text("\"red bike\" cheap"), "\"red bike\" cheap");
        assert_eq!(plain_text("status:tombstone"), "status tombstone");
        assert_eq!(plain_text("adId:[0 TO z]"), "adid 0 to z");
        assert_eq!(plain_text("* OR title:x^10 AND -y"), "or title x 10 and y");
        assert_eq!(
            plain_text("café \"unclosed phrase"),
            "café \"unclosed phrase\""
        );
        assert_eq!(plain_text("\"one\""), "one");
        assert_eq!(plain_text("  ::  "), "");
    }
}
