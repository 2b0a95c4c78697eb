//! The seed README's curl flows, replayed against the real binary over HTTP on each
//! backend, plus the contract's additions (search filters and paging, list paging,
//! `asOf`, exact decimals, idempotent creates). Written from `docs/HTTP.md`, not from the
//! implementation.

use std::collections::BTreeSet;

use crate::support::{
    Backend, SEED_CREATE_BODY, SEED_UPDATE_BODY, Server, format_time, is_ulid, next_link,
    parse_time, per_backend, raw_member, raw_members, seed_create_body,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Asserts the common response headers of a successful JSON response.
fn assert_json_ok(resp: &crate::support::Resp, status: StatusCode) {
    resp.expect_status(status);
    resp.assert_json_content_type();
    resp.request_id();
}

/// The ids of a JSON array of ads.
fn ids(ads: &Value) -> Vec<String> {
    ads.as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {ads}"))
        .iter()
        .map(|ad| {
            ad["adId"]
                .as_str()
                .unwrap_or_else(|| panic!("an item without adId: {ad}"))
                .to_string()
        })
        .collect()
}

fn id_set(ads: &Value) -> BTreeSet<String> {
    ids(ads).into_iter().collect()
}

fn set_of(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn ad_id(ad: &Value) -> String {
    ad["adId"]
        .as_str()
        .unwrap_or_else(|| panic!("no adId in {ad}"))
        .to_string()
}

/// Asserts the seed ad's fields (everything but id, version, time and price).
fn assert_seed_fields(ad: &Value, publisher: &str) {
    assert_eq!(ad["publisherId"], json!(publisher), "publisherId in {ad}");
    assert_eq!(ad["adTitle"], json!("awesome title"), "adTitle in {ad}");
    assert_eq!(
        ad["adDescription"],
        json!("awesome description"),
        "adDescription in {ad}"
    );
    assert_eq!(ad["currency"], json!(""), "currency in {ad}");
    assert_eq!(
        ad["category"],
        json!("awesome category"),
        "category in {ad}"
    );
    assert_eq!(ad["tags"], json!(["awesome", "category"]), "tags in {ad}");
}

fn price_text(ad: &Value) -> String {
    match &ad["price"] {
        Value::Number(n) => n.to_string(),
        other => panic!("price must be a JSON number, got {other} in {ad}"),
    }
}

/// The seed's flow: create, get, update, get, delete, get (410), list, versions, search —
/// every status, header and body field.
async fn seed_curl_flow_create_update_delete_list_get_versions_search(backend: Backend) {
    let server = Server::start(backend).await;

    // ---- Create Ad (the seed's exact body) ----
    let created = server
        .send(
            server
                .request(Method::POST, "/publisher/acme/ad")
                .header("content-type", "application/json")
                .body(SEED_CREATE_BODY),
        )
        .await;
    assert_json_ok(&created, StatusCode::CREATED);
    let seq_create = created.ledger_sequence();
    let ad0 = created.json();
    let id = ad_id(&ad0);
    assert!(is_ulid(&id), "adId must be a ULID, got {id:?}");
    assert_seed_fields(&ad0, "acme");
    assert_eq!(created.raw_member("price").as_deref(), Some("10"));
    assert_eq!(ad0["version"], json!(0));
    let t0 = parse_time(ad0["updatedAt"].as_str().expect("updatedAt string"));
    assert!(
        ad0["updatedAt"].as_str().is_some_and(|s| s.ends_with('Z')),
        "updatedAt is UTC with Z: {ad0}"
    );
    let location = created.must_header("location");
    let path = format!("/publisher/acme/ad/{id}");
    assert!(
        location == path || location == server.url(&path),
        "Location must be {path}, got {location:?}"
    );
    assert_eq!(created.must_header("etag"), "\"0\"");

    // ---- Get specific Ad: read-your-writes, no sleep ----
    let got = server.get(&path).await;
    assert_json_ok(&got, StatusCode::OK);
    assert_eq!(
        got.json(),
        ad0,
        "GET must return the ad the create returned"
    );
    assert_eq!(got.must_header("etag"), "\"0\"");

    // If-None-Match with the current version → 304 with no body.
    let not_modified = server
        .send(
            server
                .request(Method::GET, &path)
                .header("if-none-match", "\"0\""),
        )
        .await;
    not_modified.expect_status(StatusCode::NOT_MODIFIED);
    assert!(not_modified.text.is_empty(), "a 304 has no body");

    // Search sees the write immediately.
    let found = server.get("/?q=awesome").await;
    assert_json_ok(&found, StatusCode::OK);
    assert!(
        ids(&found.json()).contains(&id),
        "search right after create must find the ad: {}",
        found.text
    );

    // A second ad of the same publisher, to check the list after the delete.
    let other = server
        .create_ad("acme", &json!({"adTitle": "another ad"}))
        .await;
    let other_id = ad_id(&other);

    // ---- Update Ad (the seed's exact body) ----
    let updated = server
        .send(
            server
                .request(Method::PATCH, &path)
                .header("content-type", "application/json")
                .body(SEED_UPDATE_BODY),
        )
        .await;
    assert_json_ok(&updated, StatusCode::OK);
    let seq_update = updated.ledger_sequence();
    assert!(
        seq_update > seq_create,
        "X-Ledger-Sequence grows: {seq_create} then {seq_update}"
    );
    let ad1 = updated.json();
    assert_eq!(ad_id(&ad1), id);
    assert_seed_fields(&ad1, "acme");
    assert_eq!(updated.raw_member("price").as_deref(), Some("150"));
    assert_eq!(ad1["version"], json!(1));
    assert_eq!(updated.must_header("etag"), "\"1\"");
    let t1 = parse_time(ad1["updatedAt"].as_str().expect("updatedAt string"));
    assert!(t1 >= t0, "updatedAt must not go backwards: {t0} then {t1}");

    let got = server.get(&path).await;
    assert_json_ok(&got, StatusCode::OK);
    assert_eq!(got.json(), ad1, "GET right after PATCH must see the update");
    assert_eq!(got.raw_member("price").as_deref(), Some("150"));
    assert_eq!(got.must_header("etag"), "\"1\"");

    // The same update again changes nothing: 200, still version 1, nothing appended.
    let noop = server
        .send(
            server
                .request(Method::PATCH, &path)
                .header("content-type", "application/json")
                .body(SEED_UPDATE_BODY),
        )
        .await;
    assert_json_ok(&noop, StatusCode::OK);
    assert_eq!(
        noop.json()["version"],
        json!(1),
        "a no-op PATCH appends nothing"
    );

    // ---- Delete Ad ----
    let deleted = server.delete(&path).await;
    deleted.expect_status(StatusCode::NO_CONTENT);
    assert!(
        deleted.text.is_empty(),
        "a 204 has no body: {:?}",
        deleted.text
    );
    deleted.request_id();
    let seq_delete = deleted.ledger_sequence();
    assert!(seq_delete > seq_update, "{seq_update} then {seq_delete}");

    let gone = server.get(&path).await;
    gone.expect_problem(StatusCode::GONE);

    // ---- Get All Ads for a publisher: the deleted ad is not listed ----
    let list = server.get("/publisher/acme/ad").await;
    assert_json_ok(&list, StatusCode::OK);
    assert_eq!(
        ids(&list.json()),
        vec![other_id.clone()],
        "the list holds the other ad only: {}",
        list.text
    );
    assert!(list.header("link").is_none(), "one page only: no Link");

    // ---- Get specific Ad with versions ----
    let versions = server.get(&format!("{path}?versions=true")).await;
    assert_json_ok(&versions, StatusCode::OK);
    let revs = versions.json();
    let revs = revs.as_array().expect("versions is an array");
    assert_eq!(
        revs.len(),
        3,
        "create, update, delete (the no-op PATCH appended nothing): {}",
        versions.text
    );
    let events = ["AdCreated", "AdUpdated", "AdDeleted"];
    let seqs = [seq_create, seq_update, seq_delete];
    let mut hashes = BTreeSet::new();
    for (v, rev) in revs.iter().enumerate() {
        assert_eq!(rev["version"], json!(v), "oldest first: {rev}");
        assert_eq!(
            rev["event"],
            json!(events[v]),
            "event of version {v}: {rev}"
        );
        assert_eq!(
            rev["metadata"]["version"],
            json!(v),
            "metadata.version: {rev}"
        );
        assert_eq!(rev["metadata"]["id"], json!(id), "metadata.id: {rev}");
        assert_eq!(rev["metadata"]["publisherId"], json!("acme"), "{rev}");
        assert!(
            rev["metadata"]["txId"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "metadata.txId: {rev}"
        );
        assert_eq!(
            rev["txTime"], rev["metadata"]["txTime"],
            "txTime is metadata.txTime: {rev}"
        );
        parse_time(rev["txTime"].as_str().expect("txTime string"));
        let hash = rev["hash"].as_str().expect("hash string");
        assert!(
            hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "hash is 64 hex digits: {hash:?}"
        );
        assert!(hashes.insert(hash.to_string()), "revision hashes differ");
        assert!(
            rev["blockAddress"]["strandId"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "blockAddress.strandId: {rev}"
        );
        assert_eq!(
            rev["blockAddress"]["sequenceNo"],
            json!(seqs[v]),
            "blockAddress.sequenceNo is the write's X-Ledger-Sequence: {rev}"
        );
    }
    assert_eq!(revs[0]["txTime"], ad0["updatedAt"], "v0 txTime = updatedAt");
    assert_eq!(revs[1]["txTime"], ad1["updatedAt"], "v1 txTime = updatedAt");
    for (v, price) in [(0, "10"), (1, "150")] {
        let data = &revs[v]["data"];
        assert_seed_fields(data, "acme");
        assert_eq!(price_text(data), price, "data.price of version {v}");
    }
    assert!(
        revs[2]["data"].is_null(),
        "the delete's data is null: {}",
        revs[2]
    );

    // ---- Search Ads: the deleted ad is gone from search too ----
    let found = server.get("/?q=awesome").await;
    assert_json_ok(&found, StatusCode::OK);
    assert!(
        !ids(&found.json()).contains(&id),
        "search must not return a deleted ad: {}",
        found.text
    );
}

/// `GET /?q=` finds by a title word, a tag and a category; `/search` filters and pages.
async fn search_by_text_filters_and_cursor_paging(backend: Backend) {
    let server = Server::start(backend).await;
    let a = ad_id(
        &server
            .create_ad(
                "acme",
                &json!({"adTitle": "vintage bicycle for sale", "category": "sports",
                        "tags": ["retro", "twowheels"], "price": 19.99}),
            )
            .await,
    );
    let b = ad_id(
        &server
            .create_ad(
                "acme",
                &json!({"adTitle": "mountain bicycle", "category": "sports",
                        "tags": ["offroad"], "price": 20}),
            )
            .await,
    );
    let c = ad_id(
        &server
            .create_ad(
                "globex",
                &json!({"adTitle": "oak dining table", "category": "furniture",
                        "tags": ["retro", "wood"], "price": 150}),
            )
            .await,
    );
    let d = ad_id(
        &server
            .create_ad(
                "globex",
                &json!({"adTitle": "kitchen chair", "category": "furniture",
                        "tags": ["wood"], "price": 19.98}),
            )
            .await,
    );
    let e = ad_id(
        &server
            .create_ad(
                "globex",
                &json!({"adTitle": "free kittens", "category": "pets", "tags": []}),
            )
            .await,
    );
    let f = ad_id(
        &server
            .create_ad(
                "acme",
                &json!({"adTitle": "bicycle helmet", "category": "sports",
                        "tags": ["safety"], "price": 5}),
            )
            .await,
    );

    // The seed's search: title word, tag only, category only, no match.
    for (q, expected) in [
        ("bicycle", set_of(&[&a, &b, &f])),
        ("twowheels", set_of(&[&a])),
        ("furniture", set_of(&[&c, &d])),
        ("xylophone", set_of(&[])),
    ] {
        let resp = server.get(&format!("/?q={q}")).await;
        assert_json_ok(&resp, StatusCode::OK);
        assert_eq!(id_set(&resp.json()), expected, "GET /?q={q}: {}", resp.text);
    }

    // `/search` filters: category and tag are exact, price bounds inclusive.
    let cases: Vec<(&str, BTreeSet<String>)> = vec![
        ("category=sports", set_of(&[&a, &b, &f])),
        ("tag=retro", set_of(&[&a, &c])),
        ("tag=wood&category=furniture", set_of(&[&c, &d])),
        ("minPrice=19.99&maxPrice=20", set_of(&[&a, &b])),
        ("minPrice=19.99", set_of(&[&a, &b, &c])),
        ("maxPrice=19.99", set_of(&[&a, &d, &f])),
        ("q=bicycle&maxPrice=19.99", set_of(&[&a, &f])),
        ("publisherId=globex", set_of(&[&c, &d, &e])),
        ("category=pets&tag=wood", set_of(&[])),
    ];
    for (query, expected) in cases {
        let resp = server.get(&format!("/search?{query}")).await;
        assert_json_ok(&resp, StatusCode::OK);
        let page = resp.json();
        assert_eq!(
            id_set(&page["items"]),
            expected,
            "/search?{query}: {}",
            resp.text
        );
        assert_eq!(
            page["total"],
            json!(expected.len()),
            "/search?{query} total: {}",
            resp.text
        );
        assert!(page["nextCursor"].is_null(), "one page: {}", resp.text);
    }

    // Paging: limit + nextCursor until null; every match seen once.
    for (query, limit, total, pages) in [
        ("category=sports", 2, 3, 2),
        ("publisherId=acme", 2, 3, 2),
        ("minPrice=0", 4, 5, 2),
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut n_pages = 0;
        loop {
            n_pages += 1;
            assert!(n_pages <= 10, "paging /search?{query} does not end");
            let mut rb = server
                .request(Method::GET, "/search")
                .query(&[("limit", limit.to_string())]);
            for pair in query.split('&') {
                let (k, v) = pair.split_once('=').expect("k=v");
                rb = rb.query(&[(k, v)]);
            }
            if let Some(c) = &cursor {
                rb = rb.query(&[("cursor", c)]);
            }
            let resp = server.send(rb).await;
            assert_json_ok(&resp, StatusCode::OK);
            let page = resp.json();
            assert_eq!(
                page["total"],
                json!(total),
                "total on every page: {}",
                resp.text
            );
            let items = ids(&page["items"]);
            assert!(items.len() <= limit, "at most `limit` items: {}", resp.text);
            seen.extend(items);
            match &page["nextCursor"] {
                Value::Null => break,
                Value::String(c) => cursor = Some(c.clone()),
                other => panic!("nextCursor must be a string or null, got {other}"),
            }
        }
        assert_eq!(n_pages, pages, "/search?{query}&limit={limit}: pages");
        let unique: BTreeSet<_> = seen.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "no duplicates across pages: {seen:?}"
        );
        assert_eq!(unique.len(), total, "every match once: {seen:?}");
    }

    // Read-your-writes for search: an update and a delete are seen at once.
    let resp = server
        .patch_json(
            &format!("/publisher/globex/ad/{d}"),
            &json!({"adTitle": "kitchen chair and bicycle rack"}),
        )
        .await;
    assert_json_ok(&resp, StatusCode::OK);
    server
        .delete(&format!("/publisher/acme/ad/{b}"))
        .await
        .expect_status(StatusCode::NO_CONTENT);
    let resp = server.get("/?q=bicycle").await;
    assert_json_ok(&resp, StatusCode::OK);
    assert_eq!(id_set(&resp.json()), set_of(&[&a, &d, &f]), "{}", resp.text);
    let resp = server.get("/search?category=sports").await;
    assert_json_ok(&resp, StatusCode::OK);
    assert_eq!(resp.json()["total"], json!(2), "{}", resp.text);
    assert_eq!(id_set(&resp.json()["items"]), set_of(&[&a, &f]));
}

/// `GET /?q=` returns at most 25 ads; an empty `q` returns the newest ones.
async fn seed_search_is_capped_at_25_and_empty_q_gives_newest(backend: Backend) {
    let server = Server::start(backend).await;
    let mut created = Vec::new();
    // No pause between creates: ads created in one millisecond are ordered by their ids,
    // which one server's generator makes strictly increasing, so "newest" is exact.
    for i in 0..30 {
        let ad = server
            .create_ad("acme", &json!({"adTitle": format!("gadget number {i}")}))
            .await;
        created.push(ad_id(&ad));
    }
    let resp = server.get("/?q=gadget").await;
    assert_json_ok(&resp, StatusCode::OK);
    let found = ids(&resp.json());
    assert_eq!(found.len(), 25, "at most 25 results: {}", resp.text);
    assert_eq!(
        found.iter().collect::<BTreeSet<_>>().len(),
        25,
        "no duplicates"
    );

    let resp = server.get("/?q=").await;
    assert_json_ok(&resp, StatusCode::OK);
    let newest = id_set(&resp.json());
    let expected: BTreeSet<String> = created[5..].iter().cloned().collect();
    assert_eq!(newest, expected, "empty q: the 25 newest ads");
}

/// The publisher's list pages through a `Link: <…>; rel="next"` header, in adId order.
async fn list_paging_follows_link_header_in_ad_id_order(backend: Backend) {
    let server = Server::start(backend).await;
    let mut created = Vec::new();
    for i in 0..7 {
        let ad = server
            .create_ad("acme", &json!({"adTitle": format!("ad {i}")}))
            .await;
        created.push(ad_id(&ad));
    }
    // Another publisher's ad never shows up in acme's list.
    let foreign = ad_id(&server.create_ad("globex", &json!({"adTitle": "x"})).await);
    created.sort();

    let mut next = Some("/publisher/acme/ad?limit=3".to_string());
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    while let Some(target) = next.take() {
        assert!(sizes.len() < 10, "paging does not end");
        let resp = server.get(&target).await;
        assert_json_ok(&resp, StatusCode::OK);
        let page = ids(&resp.json());
        sizes.push(page.len());
        seen.extend(page);
        let link = resp.header("link");
        next = next_link(link.as_deref());
        if let Some(t) = &next {
            assert!(
                t.starts_with("/publisher/acme/ad?")
                    && t.contains("limit=3")
                    && t.contains("cursor="),
                "Link target must be </publisher/acme/ad?limit=3&cursor=C>, got {link:?}"
            );
        } else if let Some(l) = &link {
            panic!("a Link header without rel=\"next\": {l:?}");
        }
    }
    assert_eq!(sizes, vec![3, 3, 1], "pages of 3, 3 and 1");
    assert_eq!(seen, created, "every ad once, ordered by adId");
    assert!(!seen.contains(&foreign));

    // Default limit: one page, no Link.
    let resp = server.get("/publisher/acme/ad").await;
    assert_json_ok(&resp, StatusCode::OK);
    assert_eq!(ids(&resp.json()), created);
    assert!(resp.header("link").is_none(), "no Link on the last page");
}

/// Creates throw-away ads until the server's commit time has reached `at_least`
/// (bounded), so two versions of the ad under test get distinct, separated times.
async fn advance_server_clock(server: &Server, at_least: chrono::DateTime<chrono::Utc>) {
    for i in 0..2000 {
        let ad = server
            .create_ad("filler", &json!({"adTitle": format!("filler {i}")}))
            .await;
        if parse_time(ad["updatedAt"].as_str().expect("updatedAt")) >= at_least {
            return;
        }
    }
    panic!("the server's clock did not reach {at_least} after 2000 commits");
}

/// `?asOf=`: before creation 404, between versions the older one, after delete 410.
async fn as_of_reads_the_past(backend: Backend) {
    let server = Server::start(backend).await;
    let ms = chrono::Duration::milliseconds;
    let ad0 = server
        .create_ad("acme", &json!({"adTitle": "first title", "price": 1}))
        .await;
    let id = ad_id(&ad0);
    let path = format!("/publisher/acme/ad/{id}");
    let t0 = parse_time(ad0["updatedAt"].as_str().expect("updatedAt"));
    advance_server_clock(&server, t0 + ms(2)).await;

    let resp = server
        .patch_json(&path, &json!({"adTitle": "second title", "price": 2}))
        .await;
    resp.expect_status(StatusCode::OK);
    let ad1 = resp.json();
    let t1 = parse_time(ad1["updatedAt"].as_str().expect("updatedAt"));
    assert!(t1 >= t0 + ms(2), "{t0} then {t1}");
    advance_server_clock(&server, t1 + ms(2)).await;

    server
        .delete(&path)
        .await
        .expect_status(StatusCode::NO_CONTENT);
    let revs = server.get(&format!("{path}?versions=true")).await.json();
    let t2 = parse_time(revs[2]["txTime"].as_str().expect("delete txTime"));
    assert!(t2 >= t1 + ms(2), "{t1} then {t2}");

    let as_of = |t: chrono::DateTime<chrono::Utc>| {
        server
            .request(Method::GET, &path)
            .query(&[("asOf", format_time(t))])
    };
    // Before creation.
    server
        .send(as_of(t0 - ms(1)))
        .await
        .expect_problem(StatusCode::NOT_FOUND);
    server
        .send(
            server
                .request(Method::GET, &path)
                .query(&[("asOf", "2000-01-01T00:00:00Z")]),
        )
        .await
        .expect_problem(StatusCode::NOT_FOUND);
    // Between version 0 and version 1.
    let resp = server.send(as_of(t0 + ms(1))).await;
    assert_json_ok(&resp, StatusCode::OK);
    let past = resp.json();
    assert_eq!(past["version"], json!(0), "{}", resp.text);
    assert_eq!(past["adTitle"], json!("first title"));
    assert_eq!(resp.raw_member("price").as_deref(), Some("1"));
    // Between version 1 and the delete.
    let resp = server.send(as_of(t1 + ms(1))).await;
    assert_json_ok(&resp, StatusCode::OK);
    assert_eq!(resp.json()["version"], json!(1), "{}", resp.text);
    assert_eq!(resp.json()["adTitle"], json!("second title"));
    // After the delete.
    server
        .send(as_of(t2 + ms(1)))
        .await
        .expect_problem(StatusCode::GONE);
    server
        .send(as_of(t2 + chrono::Duration::days(365)))
        .await
        .expect_problem(StatusCode::GONE);
}

/// Prices are exact decimals end to end: `19.99` comes back as the JSON number `19.99`
/// in every read path (raw text checked, never an f64).
async fn decimal_prices_are_exact_in_every_read_path(backend: Backend) {
    let server = Server::start(backend).await;
    for (sent, expected) in [
        (r#"19.99"#, "19.99"),
        (r#""19.99""#, "19.99"),
        (r#"0.30000000000000001"#, "0.30000000000000001"),
        (r#"1234567890123.45"#, "1234567890123.45"),
        (r#"0"#, "0"),
    ] {
        let body = format!(r#"{{"adTitle": "exact price {expected}", "price": {sent}}}"#);
        let resp = server
            .send(
                server
                    .request(Method::POST, "/publisher/prices/ad")
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        assert_json_ok(&resp, StatusCode::CREATED);
        assert_eq!(
            resp.raw_member("price").as_deref(),
            Some(expected),
            "create with price {sent}: {}",
            resp.text
        );
        let id = ad_id(&resp.json());
        let path = format!("/publisher/prices/ad/{id}");

        let got = server.get(&path).await;
        assert_eq!(
            got.raw_member("price").as_deref(),
            Some(expected),
            "GET: {}",
            got.text
        );

        let versions = server.get(&format!("{path}?versions=true")).await;
        assert_eq!(
            raw_members(&versions.text, "price"),
            vec![expected.to_string()],
            "versions: {}",
            versions.text
        );

        let search = server
            .send(
                server
                    .request(Method::GET, "/search")
                    .query(&[("minPrice", expected), ("maxPrice", expected)]),
            )
            .await;
        assert_json_ok(&search, StatusCode::OK);
        assert!(
            ids(&search.json()["items"]).contains(&id),
            "an exact price range [{expected}, {expected}] finds this ad: {}",
            search.text
        );
        let prices = raw_members(&search.text, "price");
        assert!(
            !prices.is_empty() && prices.iter().all(|p| p == expected),
            "only ads priced exactly {expected}: {}",
            search.text
        );
    }
    let list = server.get("/publisher/prices/ad").await;
    let mut prices = raw_members(&list.text, "price");
    prices.sort();
    let mut expected = vec![
        "0",
        "0.30000000000000001",
        "1234567890123.45",
        "19.99",
        "19.99",
    ];
    expected.sort();
    assert_eq!(prices, expected, "list: {}", list.text);

    let found = server.get("/?q=exact").await;
    let mut prices = raw_members(&found.text, "price");
    prices.sort();
    assert_eq!(prices, expected, "seed search: {}", found.text);

    // PATCH: `null` clears the price, a new decimal is exact.
    let id = ad_id(&server.list("prices").await[0]);
    let path = format!("/publisher/prices/ad/{id}");
    let resp = server.patch_json(&path, &json!({"price": null})).await;
    assert_json_ok(&resp, StatusCode::OK);
    assert!(
        resp.json().get("price").is_none_or(Value::is_null),
        "null clears the price: {}",
        resp.text
    );
    let resp = server
        .send(
            server
                .request(Method::PATCH, &path)
                .header("content-type", "application/json")
                .body(r#"{"price": 99.95}"#),
        )
        .await;
    assert_json_ok(&resp, StatusCode::OK);
    assert_eq!(resp.raw_member("price").as_deref(), Some("99.95"));
    assert_eq!(
        raw_member(&server.get(&path).await.text, "price").as_deref(),
        Some("99.95")
    );
}

/// `Idempotency-Key`: same key and body → the same ad, once; same key, other body → 422.
async fn idempotency_key_replays_the_same_ad(backend: Backend) {
    let server = Server::start(backend).await;
    let post = |key: &str, body: &str| {
        server
            .request(Method::POST, "/publisher/acme/ad")
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.to_string())
    };
    let first = server.send(post("order-7f3a", SEED_CREATE_BODY)).await;
    assert_json_ok(&first, StatusCode::CREATED);
    assert_ne!(
        first.header("idempotency-replayed").as_deref(),
        Some("true"),
        "the first request is not a replay"
    );
    let second = server.send(post("order-7f3a", SEED_CREATE_BODY)).await;
    assert_json_ok(&second, StatusCode::CREATED);
    assert_eq!(
        second.header("idempotency-replayed").as_deref(),
        Some("true"),
        "a retry carries Idempotency-Replayed: true"
    );
    assert_eq!(ad_id(&first.json()), ad_id(&second.json()), "same adId");
    assert_eq!(first.json(), second.json(), "the same ad");
    assert_eq!(
        server.list("acme").await.len(),
        1,
        "only one ad was created"
    );

    // Same key, different body.
    let mut other = seed_create_body();
    other["price"] = json!(11);
    let conflict = server.send(post("order-7f3a", &other.to_string())).await;
    conflict.expect_invalid_field("Idempotency-Key");
    assert_eq!(
        server.list("acme").await.len(),
        1,
        "nothing created by the 422"
    );

    // Another key: a new ad.
    let third = server.send(post("order-8b1c", SEED_CREATE_BODY)).await;
    assert_json_ok(&third, StatusCode::CREATED);
    assert_ne!(ad_id(&third.json()), ad_id(&first.json()));
    assert_eq!(server.list("acme").await.len(), 2);
}

/// `GET /healthz` reports the journal and projections.
async fn healthz_counts_blocks(backend: Backend) {
    let server = Server::start(backend).await;
    let before = server.get("/healthz").await;
    assert_json_ok(&before, StatusCode::OK);
    let before = before.json();
    assert_eq!(before["status"], json!("ok"), "{before}");
    let blocks0 = before["journal"]["blocks"]
        .as_u64()
        .expect("journal.blocks");
    assert_eq!(blocks0, 0, "a fresh ledger has no blocks: {before}");
    assert!(before["projections"]["state"].is_u64(), "{before}");
    assert!(before["projections"]["search"].is_u64(), "{before}");
    let ad = server.create_ad("acme", &json!({"adTitle": "t"})).await;
    let path = format!("/publisher/acme/ad/{}", ad_id(&ad));
    server
        .patch_json(&path, &json!({"adTitle": "u"}))
        .await
        .expect_status(StatusCode::OK);
    server
        .delete(&path)
        .await
        .expect_status(StatusCode::NO_CONTENT);
    let after = server.get("/healthz").await.json();
    assert_eq!(
        after["journal"]["blocks"].as_u64(),
        Some(blocks0 + 3),
        "three writes, three blocks: {after}"
    );
}

per_backend!(
    seed_curl_flow_create_update_delete_list_get_versions_search,
    search_by_text_filters_and_cursor_paging,
    seed_search_is_capped_at_25_and_empty_q_gives_newest,
    list_paging_follows_link_header_in_ad_id_order,
    as_of_reads_the_past,
    decimal_prices_are_exact_in_every_read_path,
    idempotency_key_replays_the_same_ad,
    healthz_counts_blocks,
);
