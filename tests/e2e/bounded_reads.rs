//! Reads that stay bounded whatever was written, measured on the real binary through
//! `adledger_journal_block_reads_total` on `/metrics`: an ad with thousands of versions
//! pages through `?versions=true` (every version once, in order, the `Link` chain ends),
//! answers `asOf` with O(log n) block reads, and answers a no-op PATCH and an idempotent
//! replay with at most two. Local and memory (the engine counts, not the backend; AWS
//! would need tens of thousands of DynamoDB Local writes for the same shape).

use std::time::Instant;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Backend, Server, next_link, parse_time, seed_create_body};

/// Versions of the big ad (the create and `VERSIONS - 1` updates).
const VERSIONS: usize = 20_000;
/// Updates in flight at once while building it.
const WRITERS: usize = 8;
/// The counter under test.
const BLOCK_READS: &str = "adledger_journal_block_reads_total";

/// The engine's block reads so far, from `/metrics` (0 before the first).
async fn block_reads(server: &Server) -> u64 {
    let resp = server.get("/metrics").await;
    resp.expect_status(StatusCode::OK);
    resp.text
        .lines()
        .find_map(|l| l.strip_prefix(BLOCK_READS)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Creates an ad and gives it `versions` versions with `WRITERS` concurrent PATCHes.
async fn ad_with_versions(server: &Server, versions: usize) -> String {
    let ad = server.create_ad("acme", &seed_create_body()).await;
    let ad_id = ad["adId"].as_str().expect("adId").to_string();
    let path = format!("/publisher/acme/ad/{ad_id}");
    let started = Instant::now();
    let statuses: Vec<StatusCode> = futures::stream::iter(1..versions)
        .map(|i| {
            let rb = server
                .request(reqwest::Method::PATCH, &path)
                .json(&json!({ "adTitle": format!("title {i}") }));
            async move { rb.send().await.map(|r| r.status()) }
        })
        .buffer_unordered(WRITERS)
        .map(|r| r.expect("a PATCH got no response"))
        .collect()
        .await;
    eprintln!(
        "bounded_reads: {} updates with {WRITERS} in flight took {:.1?}",
        versions - 1,
        started.elapsed()
    );
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "a PATCH failed: {:?}",
        statuses.iter().find(|s| **s != StatusCode::OK)
    );
    ad_id
}

async fn bounded_history_and_as_of(backend: Backend) {
    let server = Server::start(backend).await;
    let ad_id = ad_with_versions(&server, VERSIONS).await;
    let path = format!("/publisher/acme/ad/{ad_id}");

    // Page through with the Link chain: every version once, in order; the chain ends.
    let started = Instant::now();
    let before = block_reads(&server).await;
    let mut next = Some(format!("{path}?versions=true&limit=1000"));
    let mut times = Vec::with_capacity(VERSIONS);
    let mut pages = 0;
    while let Some(target) = next {
        let resp = server.get(&target).await;
        resp.expect_status(StatusCode::OK);
        let page = resp.json();
        let page = page.as_array().expect("a page is an array");
        assert!(page.len() <= 1000, "a page of {} revisions", page.len());
        for revision in page {
            assert_eq!(revision["version"], json!(times.len()), "out of order");
            times.push(parse_time(revision["txTime"].as_str().expect("txTime")));
        }
        pages += 1;
        next = next_link(resp.header("link").as_deref());
        assert!(pages <= VERSIONS / 1000 + 1, "the Link chain does not end");
    }
    let paged_reads = block_reads(&server).await - before;
    eprintln!(
        "bounded_reads: {VERSIONS} versions paged in {pages} pages, {:.1?}, {paged_reads} block reads",
        started.elapsed()
    );
    assert_eq!(times.len(), VERSIONS, "every version appears once");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "txTime decreases");
    // Each page reads its own blocks and one more.
    assert!(
        paged_reads <= (VERSIONS + pages) as u64,
        "{paged_reads} block reads to page {VERSIONS} versions"
    );

    // The default page is 100, and a page with `from` starts at the first revision at or
    // after it.
    let resp = server.get(&format!("{path}?versions=true")).await;
    assert_eq!(resp.json().as_array().map(Vec::len), Some(100));
    assert!(next_link(resp.header("link").as_deref()).is_some());

    // asOf at several times: the last version committed at or before it, in O(log n).
    let bound = 2 * (VERSIONS as f64).log2().ceil() as u64 + 4;
    let mut most = 0;
    for v in [0, 1, 7, 999, 5_000, 12_345, VERSIONS - 2, VERSIONS - 1] {
        let at = times[v];
        let expected = times.partition_point(|t| *t <= at) - 1;
        let before = block_reads(&server).await;
        let resp = server
            .get(&format!(
                "{path}?asOf={}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ))
            .await;
        resp.expect_status(StatusCode::OK);
        let reads = block_reads(&server).await - before;
        most = most.max(reads);
        assert_eq!(resp.json()["version"], json!(expected), "asOf {at}");
        assert!(reads <= bound, "asOf read {reads} blocks (bound {bound})");
    }
    eprintln!("bounded_reads: asOf at {VERSIONS} versions read at most {most} blocks");
    let before_first = times[0] - chrono::Duration::seconds(1);
    server
        .get(&format!(
            "{path}?asOf={}",
            before_first.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ))
        .await
        .expect_problem(StatusCode::NOT_FOUND);

    // A PATCH that changes nothing reads the one revision it answers with.
    let current: Value = server.get(&path).await.json();
    let before = block_reads(&server).await;
    let resp = server
        .patch_json(&path, &json!({ "adTitle": current["adTitle"] }))
        .await;
    resp.expect_status(StatusCode::OK);
    let reads = block_reads(&server).await - before;
    assert_eq!(resp.json()["version"], json!(VERSIONS - 1));
    assert!(reads <= 2, "a no-op PATCH read {reads} blocks");
}

async fn bounded_write_answers(backend: Backend) {
    let server = Server::start(backend).await;
    let ad_id = ad_with_versions(&server, 300).await;
    let path = format!("/publisher/acme/ad/{ad_id}");
    let current: Value = server.get(&path).await.json();
    let before = block_reads(&server).await;
    let resp = server
        .patch_json(&path, &json!({ "category": current["category"] }))
        .await;
    resp.expect_status(StatusCode::OK);
    assert_eq!(resp.json()["updatedAt"], current["updatedAt"]);
    let reads = block_reads(&server).await - before;
    assert!(reads <= 2, "a no-op PATCH read {reads} blocks");

    // An idempotent replay answers from its record: the create's block only.
    let create = |key: &'static str| {
        crate::support::json_body(
            server
                .request(reqwest::Method::POST, "/publisher/acme/ad")
                .header("Idempotency-Key", key),
            &seed_create_body(),
        )
    };
    let first = server.send(create("k-1")).await;
    first.expect_status(StatusCode::CREATED);
    let before = block_reads(&server).await;
    let again = server.send(create("k-1")).await;
    again.expect_status(StatusCode::CREATED);
    assert_eq!(
        again.header("idempotency-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(again.json()["updatedAt"], first.json()["updatedAt"]);
    let reads = block_reads(&server).await - before;
    assert!(reads <= 2, "an idempotent replay read {reads} blocks");

    // Paging parameters belong to a history.
    server
        .get(&format!("{path}?limit=5"))
        .await
        .expect_problem(StatusCode::BAD_REQUEST);
    server
        .get(&format!("{path}?versions=true&cursor=abc"))
        .await
        .expect_problem(StatusCode::BAD_REQUEST);
    server
        .get(&format!("{path}?versions=true&limit=1001"))
        .await
        .expect_problem(StatusCode::BAD_REQUEST);
    // A page composed with `from`/`to` keeps the range in its Link.
    let all: Vec<Value> = server
        .get(&format!("{path}?versions=true&limit=1000"))
        .await
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(all.len(), 300);
    let (from, to) = (&all[10]["txTime"], &all[250]["txTime"]);
    let (from, to) = (from.as_str().unwrap_or(""), to.as_str().unwrap_or(""));
    let expected: Vec<&Value> = all
        .iter()
        .filter(|r| {
            let t = parse_time(r["txTime"].as_str().unwrap_or(""));
            t >= parse_time(from) && t <= parse_time(to)
        })
        .collect();
    let mut next = Some(format!("{path}?versions=true&limit=7&from={from}&to={to}"));
    let mut got = Vec::new();
    while let Some(target) = next {
        let resp = server.get(&target).await;
        resp.expect_status(StatusCode::OK);
        got.extend(resp.json().as_array().cloned().unwrap_or_default());
        next = next_link(resp.header("link").as_deref());
        if let Some(n) = &next {
            assert!(n.contains("from=") && n.contains("to="), "{n}");
        }
    }
    let got: Vec<&Value> = got.iter().collect();
    assert_eq!(got, expected);
}

/// The suite on the local backend.
mod local {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bounded_history_and_as_of() {
        super::bounded_history_and_as_of(crate::support::Backend::Local).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bounded_write_answers() {
        super::bounded_write_answers(crate::support::Backend::Local).await
    }
}

/// The suite on the in-memory backend.
mod memory {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bounded_history_and_as_of() {
        super::bounded_history_and_as_of(crate::support::Backend::Memory).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bounded_write_answers() {
        super::bounded_write_answers(crate::support::Backend::Memory).await
    }
}
