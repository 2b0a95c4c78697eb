//! Turns a `SearchQuery` into an OpenSearch search body, and a search response into a
//! page of ads.
//!
//! The body is built as a `serde_json::Value` from the query's values: user text is a
//! JSON string inside a `multi_match`, never spliced into query syntax, so quotes,
//! colons or brackets in the input never fail a search (the seed's search spliced text
//! into JSON by hand). Filters go into `bool.filter`, so they select without changing
//! the ranking, as the tantivy index's constant-score filters do.
//!
//! Order and paging match the tantivy index: best match first when there is text,
//! newest first when there is none; the cursor is an offset (`from`). A tie-break on
//! `adId` makes the order total, so paging never repeats or skips a hit between two
//! equally ranked ads. `track_total_hits` makes `total` exact beyond 10,000.

use adledger_engine::Ad;
use adledger_engine::ports::{SearchPage, SearchQuery};
use serde_json::{Value, json};

use super::error::OpenSearchError;
use super::mapping::{LIVE, price_number};

/// OpenSearch's default `index.max_result_window`: `from + size` may not exceed it.
pub(crate) const MAX_RESULT_WINDOW: usize = 10_000;

/// The text fields the `multi_match` runs over.
pub(crate) const TEXT_FIELDS: [&str; 4] = ["title", "description", "category", "tags"];

/// The body of `POST /<index>/_search` for `search`.
///
/// Fails with [`OpenSearchError::PageTooDeep`] when the page starts beyond
/// [`MAX_RESULT_WINDOW`]; a page that starts inside it but would end beyond it is cut
/// at the window.
pub(crate) fn search_body(search: &SearchQuery) -> Result<Value, OpenSearchError> {
    if search.offset >= MAX_RESULT_WINDOW {
        return Err(OpenSearchError::PageTooDeep(format!(
            "the OpenSearch index pages through the first {MAX_RESULT_WINDOW} hits only; \
             narrow the search with text or filters instead of paging further"
        )));
    }
    let size = search.limit.min(MAX_RESULT_WINDOW - search.offset);
    let mut filter = vec![json!({ "term": { "status": LIVE } })];
    if let Some(publisher_id) = &search.publisher_id {
        filter.push(json!({ "term": { "publisherId": publisher_id } }));
    }
    if let Some(category) = &search.category {
        filter.push(json!({ "term": { "categoryExact": category } }));
    }
    if let Some(tag) = &search.tag {
        filter.push(json!({ "term": { "tagExact": tag } }));
    }
    if search.min_price.is_some() || search.max_price.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(min) = search.min_price {
            range.insert("gte".into(), Value::Number(price_number(min)?));
        }
        if let Some(max) = search.max_price {
            range.insert("lte".into(), Value::Number(price_number(max)?));
        }
        filter.push(json!({ "range": { "price": range } }));
    }
    let text = search.text.trim();
    let mut query = json!({ "bool": { "filter": filter } });
    let sort = if text.is_empty() {
        json!([{ "createdMs": "desc" }, { "adId": "desc" }])
    } else {
        query["bool"]["must"] = json!([{
            "multi_match": {
                "query": text,
                "fields": TEXT_FIELDS,
                "type": "best_fields",
                "operator": "or"
            }
        }]);
        json!([{ "_score": "desc" }, { "adId": "asc" }])
    };
    Ok(json!({
        "from": search.offset,
        "size": size,
        "track_total_hits": true,
        "query": query,
        "sort": sort,
    }))
}

/// The page in a search response: `hits.total.value` and each hit's `_source.ad`.
pub(crate) fn page_of(response: &Value, index: &str) -> Result<SearchPage, OpenSearchError> {
    let bad = |detail: String| OpenSearchError::Response {
        operation: "search",
        index: index.to_string(),
        detail,
    };
    let hits = &response["hits"];
    let total = hits["total"]["value"]
        .as_u64()
        .ok_or_else(|| bad("no hits.total.value".into()))?;
    let list = hits["hits"]
        .as_array()
        .ok_or_else(|| bad("no hits.hits array".into()))?;
    let ads = list
        .iter()
        .map(|hit| {
            let ad = &hit["_source"]["ad"];
            serde_json::from_value::<Ad>(ad.clone()).map_err(|e| {
                bad(format!(
                    "hit {} does not hold an ad: {e}",
                    hit["_id"].as_str().unwrap_or("(no _id)")
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The documents carry no commit time: the server reads each hit's version and time
    // from the state store.
    Ok(SearchPage {
        total,
        ads,
        versions: None,
    })
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    #[test]
    fn no_text_means_newest_first_and_only_live_ads() {
        let body = search_body(&SearchQuery {
            limit: 10,
            ..SearchQuery::default()
        })
        .expect("body");
        assert_eq!(body["query"]["bool"]["filter"][0]["term"]["status"], "live");
        assert!(body["query"]["bool"].get("must").is_none());
        assert_eq!(body["sort"][0]["createdMs"], "desc");
    }

    #[test]
    fn hostile_text_stays_a_json_string() {
        let text = "\"}} OR {\"match_all\":{}} (";
        let body = search_body(&SearchQuery {
            text: text.into(),
            limit: 5,
            ..SearchQuery::default()
        })
        .expect("body");
        assert_eq!(
            body["query"]["bool"]["must"][0]["multi_match"]["query"],
            text
        );
    }

    #[test]
    fn price_bounds_are_inclusive_exact_numbers() {
        let body = search_body(&SearchQuery {
            min_price: Some(Decimal::new(1999, 2)),
            limit: 5,
            ..SearchQuery::default()
        })
        .expect("body");
        let range = &body["query"]["bool"]["filter"][1]["range"]["price"];
        assert_eq!(range["gte"].to_string(), "19.99");
        assert!(range.get("lte").is_none());
    }

    #[test]
    fn pages_stop_at_the_result_window() {
        let near = search_body(&SearchQuery {
            offset: MAX_RESULT_WINDOW - 3,
            limit: 25,
            ..SearchQuery::default()
        })
        .expect("body");
        assert_eq!(near["size"], 3);
        let beyond = search_body(&SearchQuery {
            offset: MAX_RESULT_WINDOW,
            limit: 25,
            ..SearchQuery::default()
        });
        assert!(matches!(beyond, Err(OpenSearchError::PageTooDeep(_))));
    }
}
