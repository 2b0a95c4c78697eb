//! Search hits are the ads a get returns, byte for byte: the local index serves a page
//! from its stored fields (ad, version, commit time) instead of reading each hit from the
//! state store, and nothing a client sees may change because of it — prices as sent
//! (`19.990`), absent prices, versions after updates, commit times, deleted ads left
//! out; also after the index is rebuilt from the journal (its `put` path).

use crate::maintenance::{cli_ok, dir_arg};
use crate::support::{Backend, Server, per_backend};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Ads with every kind of field the views render; some updated twice, one deleted.
/// Returns the ids of the live ads and of the deleted one.
async fn populate(server: &Server) -> (Vec<(String, String)>, String) {
    let bodies = [
        json!({"adTitle": "lantern brass", "adDescription": "an old lantern", "price": "19.990",
               "currency": "EUR", "category": "home", "tags": ["lantern", "brass"]}),
        json!({"adTitle": "lantern camping", "adDescription": "no price given",
               "category": "outdoor", "tags": []}),
        json!({"adTitle": "Lantern, Café édition", "adDescription": "lantern \"quoted\" \\ text",
               "price": "0.10", "currency": "USD", "category": "", "tags": ["ünïcode", "lantern"]}),
        json!({"adTitle": "lantern big", "adDescription": "x", "price": "1000000.5",
               "currency": "GBP", "category": "home", "tags": ["bargain"]}),
        json!({"adTitle": "lantern doomed", "adDescription": "to be deleted", "price": "5"}),
    ];
    let mut live = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let publisher = if i % 2 == 0 { "acme" } else { "globex" };
        let ad = server.create_ad(publisher, body).await;
        let id = ad["adId"].as_str().expect("adId").to_string();
        live.push((publisher.to_string(), id));
    }
    let (publisher, deleted) = live.pop().expect("five ads");
    server
        .delete(&format!("/publisher/{publisher}/ad/{deleted}"))
        .await
        .expect_status(StatusCode::NO_CONTENT);
    for (n, patch) in [
        json!({"price": "20.000", "tags": ["lantern", "brass", "patched"]}),
        json!({"adTitle": "lantern brass, patched twice"}),
    ]
    .iter()
    .enumerate()
    {
        let (publisher, id) = &live[n % 2 * 2];
        server
            .patch_json(&format!("/publisher/{publisher}/ad/{id}"), patch)
            .await
            .expect_status(StatusCode::OK);
    }
    let (publisher, id) = &live[0];
    server
        .patch_json(
            &format!("/publisher/{publisher}/ad/{id}"),
            &json!({"adDescription": "the third version"}),
        )
        .await
        .expect_status(StatusCode::OK);
    (live, deleted)
}

/// The top-level objects of the JSON array that starts at `text[start]`, as their bytes.
fn raw_array_items(text: &str, start: usize) -> Vec<String> {
    let bytes = text.as_bytes();
    assert_eq!(
        bytes.get(start),
        Some(&b'['),
        "no array at {start} in {text}"
    );
    let mut items = Vec::new();
    let (mut depth, mut in_string, mut escaped, mut item_start) = (0usize, false, false, 0);
    for (i, &b) in bytes.iter().enumerate().skip(start + 1) {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                if depth == 0 {
                    item_start = i;
                }
                depth += 1;
            }
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    items.push(text[item_start..=i].to_string());
                }
            }
            b']' => return items,
            _ => {}
        }
    }
    panic!("unterminated array in {text}");
}

/// The raw items of a `GET /search` page (`{"total":…,"items":[…],…}`).
fn search_items(text: &str) -> Vec<String> {
    let start = text.find("\"items\":[").expect("an items array") + "\"items\":".len();
    raw_array_items(text, start)
}

/// Asserts that each raw item is byte-identical to the body of a get of the same ad;
/// returns the ids in page order.
async fn assert_items_are_gets(server: &Server, items: &[String], context: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for item in items {
        let value: Value = serde_json::from_str(item).expect("an item is JSON");
        let (publisher, id) = (
            value["publisherId"].as_str().expect("publisherId"),
            value["adId"].as_str().expect("adId"),
        );
        let get = server.get(&format!("/publisher/{publisher}/ad/{id}")).await;
        get.expect_status(StatusCode::OK);
        assert_eq!(
            item, &get.text,
            "{context}: the search hit must be the get's body, byte for byte"
        );
        ids.push(id.to_string());
    }
    ids
}

/// Every hit of `/search` (with text, without, with a filter) and of the seed's `/?q=`
/// against the gets of the same ads.
async fn assert_search_matches_gets(server: &Server, live: &[(String, String)], deleted: &str) {
    let text = server.get("/search?q=lantern&limit=100").await;
    text.expect_status(StatusCode::OK);
    let found = assert_items_are_gets(server, &search_items(&text.text), "q=lantern").await;
    let mut expected: Vec<&str> = live.iter().map(|(_, id)| id.as_str()).collect();
    let mut got: Vec<&str> = found.iter().map(String::as_str).collect();
    expected.sort_unstable();
    got.sort_unstable();
    assert_eq!(
        got, expected,
        "every live ad, not the deleted {deleted}: {}",
        text.text
    );

    let newest = server.get("/search?limit=100").await;
    newest.expect_status(StatusCode::OK);
    let found = assert_items_are_gets(server, &search_items(&newest.text), "no text").await;
    assert_eq!(found.len(), live.len(), "{}", newest.text);
    assert!(!found.iter().any(|id| id == deleted), "{}", newest.text);

    let filtered = server
        .get("/search?q=lantern&minPrice=1&category=home")
        .await;
    filtered.expect_status(StatusCode::OK);
    let found = assert_items_are_gets(server, &search_items(&filtered.text), "filtered").await;
    assert_eq!(found.len(), 2, "{}", filtered.text);

    let seed = server.get("/?q=lantern").await;
    seed.expect_status(StatusCode::OK);
    let found = assert_items_are_gets(server, &raw_array_items(&seed.text, 0), "/?q=").await;
    assert_eq!(found.len(), live.len(), "{}", seed.text);
}

/// Search pages render the same bytes as gets of their ads.
async fn search_hits_are_byte_identical_to_gets(backend: Backend) {
    let server = Server::start(backend).await;
    let (live, deleted) = populate(&server).await;
    assert_search_matches_gets(&server, &live, &deleted).await;
}

per_backend!(search_hits_are_byte_identical_to_gets);

/// After `adledger rebuild` (the index rebuilt with `put` from the state it derives), the
/// same searches answer the same bytes as before, and still as the gets do.
async fn rebuilt_index_serves_the_same_bytes() {
    let mut server = Server::start(Backend::Local).await;
    let (live, deleted) = populate(&server).await;
    let paths = [
        "/search?q=lantern&limit=100",
        "/search?limit=100",
        "/?q=lantern",
    ];
    let mut before = Vec::new();
    for path in paths {
        before.push(server.get(path).await.text);
    }
    server.stop().await;
    let data = server.data_dir.clone();
    std::fs::remove_dir_all(data.join("search")).expect("remove the search index");
    let out = cli_ok(&["rebuild", "--data-dir", &dir_arg(&data)]).await;
    assert!(out.contains("rebuilt"), "{out}");
    server.restart().await;
    for (path, before) in paths.iter().zip(&before) {
        let after = server.get(path).await;
        after.expect_status(StatusCode::OK);
        assert_eq!(&after.text, before, "{path} after the rebuild");
    }
    assert_search_matches_gets(&server, &live, &deleted).await;
    server.stop().await;
}

/// The rebuild check needs the local data directory.
mod rebuilt {
    use super::rebuilt_index_serves_the_same_bytes;
    use crate::support::local_only;

    local_only!(rebuilt_index_serves_the_same_bytes);
}
