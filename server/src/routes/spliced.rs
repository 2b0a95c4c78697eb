//! Search responses written around hits that are already the API's JSON (an index that
//! stores each ad's `AdView` bytes, see `SearchIndex::search_json`): the same bytes
//! `Json` of the parsed views would give, without parsing the ads and serializing them
//! again, which took about a tenth of a search's CPU at a million ads.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::json_array;

/// The response of `GET /search`: what [`SearchResultsView`](crate::views::SearchResultsView)
/// serializes to, with `hits` as its items.
pub fn results(total: u64, hits: &[String], next_cursor: Option<&str>) -> Response {
    let mut body = Vec::with_capacity(json_array::len(hits) + 64);
    body.extend_from_slice(b"{\"total\":");
    body.extend_from_slice(total.to_string().as_bytes());
    body.extend_from_slice(b",\"items\":");
    json_array::push(&mut body, hits);
    body.extend_from_slice(b",\"nextCursor\":");
    match next_cursor {
        // A JSON string, escaped by serde_json (a cursor is digits, but this is the
        // one place the escaping would otherwise be assumed).
        Some(cursor) => {
            body.extend_from_slice(serde_json::Value::from(cursor).to_string().as_bytes())
        }
        None => body.extend_from_slice(b"null"),
    }
    body.push(b'}');
    json(body)
}

/// The response of the seed's `GET /?q=`: a bare array of the hits.
pub fn array(hits: &[String]) -> Response {
    let mut body = Vec::with_capacity(json_array::len(hits));
    json_array::push(&mut body, hits);
    json(body)
}

fn json(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use adledger_engine::Ad;
    use axum::Json;
    use chrono::{TimeZone, Utc};
    use rust_decimal::Decimal;

    use super::*;
    use crate::views::{AdView, SearchResultsView};

    fn view(id: &str, price: Option<&str>, tags: &[&str]) -> AdView {
        let ad = Ad {
            ad_id: id.into(),
            publisher_id: "acme".into(),
            ad_title: "Caf\u{e9} \"table\"\n".into(),
            ad_description: String::new(),
            price: price.map(|p| Decimal::from_str(p).expect("decimal")),
            currency: "EUR".into(),
            category: "furniture".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        };
        let at = Utc
            .timestamp_opt(1_700_000_000, 123_456_789)
            .single()
            .expect("time");
        AdView::new(ad, 3, &at)
    }

    async fn bytes(response: Response) -> (Option<HeaderValue>, Vec<u8>) {
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (content_type, body.to_vec())
    }

    #[tokio::test]
    async fn spliced_pages_are_the_bytes_of_the_parsed_views() {
        let views = vec![
            view("01A", Some("19.990"), &["oak", "x"]),
            view("01B", None, &[]),
        ];
        let hits: Vec<String> = views
            .iter()
            .map(|v| serde_json::to_string(v).expect("json"))
            .collect();
        for (items, next_cursor) in [
            (views.clone(), Some("2".to_string())),
            (views.clone(), None),
            (Vec::new(), None),
        ] {
            let hits = &hits[..items.len()];
            let expected = bytes(
                Json(SearchResultsView {
                    total: 7,
                    items: items.clone(),
                    next_cursor: next_cursor.clone(),
                })
                .into_response(),
            )
            .await;
            let got = bytes(results(7, hits, next_cursor.as_deref())).await;
            assert_eq!(got, expected);
            let expected = bytes(Json(items).into_response()).await;
            assert_eq!(bytes(array(hits)).await, expected);
        }
    }
}
