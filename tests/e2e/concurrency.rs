//! Concurrency over real HTTP, on each backend: optimistic concurrency with `If-Match`
//! lets exactly one of several racing updates win; unconditional concurrent updates of
//! one ad are all applied, one version each; many concurrent creates all succeed with
//! distinct ids, one journal block each.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::support::{Backend, Server, json_body, per_backend};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// 8 concurrent PATCHes with the same `If-Match: "0"`: one 200, seven 412, version 1.
async fn occ_race_exactly_one_if_match_wins(backend: Backend) {
    let server = Arc::new(Server::start(backend).await);
    // A few ads, each raced independently, so a lucky schedule cannot pass by chance.
    for round in 0..3 {
        let ad = server
            .create_ad(
                "acme",
                &json!({"adTitle": format!("race {round}"), "price": 1}),
            )
            .await;
        let id = ad["adId"].as_str().expect("adId").to_string();
        let path = format!("/publisher/acme/ad/{id}");
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = Vec::new();
        for i in 0..8u32 {
            let server = Arc::clone(&server);
            let barrier = Arc::clone(&barrier);
            let path = path.clone();
            tasks.push(tokio::spawn(async move {
                let rb = json_body(
                    server
                        .request(Method::PATCH, &path)
                        .header("if-match", "\"0\""),
                    &json!({"price": 100 + i, "adTitle": format!("winner {i}")}),
                );
                barrier.wait().await;
                (i, server.send(rb).await)
            }));
        }
        let mut winners = Vec::new();
        let mut failed = 0;
        for task in tasks {
            let (i, resp) = task.await.expect("task");
            match resp.status {
                StatusCode::OK => {
                    assert_eq!(resp.json()["version"], json!(1), "{}", resp.text);
                    winners.push(i);
                }
                StatusCode::PRECONDITION_FAILED => {
                    resp.expect_problem(StatusCode::PRECONDITION_FAILED);
                    failed += 1;
                }
                other => panic!("round {round}: PATCH #{i} gave {other}: {}", resp.text),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one winner, got {winners:?}"
        );
        assert_eq!(failed, 7, "round {round}: seven 412s");

        let now = server.get(&path).await;
        now.expect_status(StatusCode::OK);
        let now = now.json();
        assert_eq!(now["version"], json!(1), "final version 1: {now}");
        assert_eq!(
            now["adTitle"],
            json!(format!("winner {}", winners[0])),
            "the winner's update is the one stored"
        );
        let history = server.get(&format!("{path}?versions=true")).await.json();
        assert_eq!(
            history.as_array().map(Vec::len),
            Some(2),
            "create + one update: {history}"
        );
    }
}

/// 8 concurrent PATCHes without `If-Match` through one server: its single writer applies
/// them one after the other, so every one succeeds, each at its own version (1..=8), and
/// the final version is 8. (A 409 is only for a race with another process's writer.)
async fn unconditional_concurrent_updates_serialize(backend: Backend) {
    let server = Arc::new(Server::start(backend).await);
    let ad = server
        .create_ad("acme", &json!({"adTitle": "counter"}))
        .await;
    let path = format!("/publisher/acme/ad/{}", ad["adId"].as_str().expect("adId"));
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let server = Arc::clone(&server);
        let barrier = Arc::clone(&barrier);
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let rb = json_body(
                server.request(Method::PATCH, &path),
                &json!({"price": 1000 + i}),
            );
            barrier.wait().await;
            server.send(rb).await
        }));
    }
    let mut versions = BTreeSet::new();
    for task in tasks {
        let resp = task.await.expect("task");
        match resp.status {
            StatusCode::OK => {
                let v = resp.json()["version"].as_u64().expect("version");
                assert!(versions.insert(v), "two updates got version {v}");
            }
            other => panic!(
                "an unconditional PATCH through one server gave {other}: {}",
                resp.text
            ),
        }
    }
    assert_eq!(
        versions,
        (1..=8).collect::<BTreeSet<u64>>(),
        "the 8 updates get versions 1..=8, one each"
    );
    let now = server.get(&path).await.json();
    assert_eq!(now["version"], json!(8), "final version = 8 updates: {now}");
    let history = server.get(&format!("{path}?versions=true")).await.json();
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(9),
        "create + 8 updates: {history}"
    );
}

/// 200 concurrent creates over 4 publishers on a fresh ledger: all 201, distinct ids,
/// one journal block each (sequences 0..=199), lists match.
async fn many_concurrent_creates_all_succeed(backend: Backend) {
    let server = Arc::new(Server::start(backend).await);
    let publishers = ["p0", "p1", "p2", "p3"];
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let server = Arc::clone(&server);
        let publisher = publishers[i % publishers.len()];
        tasks.push(tokio::spawn(async move {
            let resp = server
                .post_json(
                    &format!("/publisher/{publisher}/ad"),
                    &json!({"adTitle": format!("concurrent {i}"), "price": i}),
                )
                .await;
            (publisher, i, resp)
        }));
    }
    let mut ids = BTreeSet::new();
    let mut per_publisher = std::collections::BTreeMap::<&str, BTreeSet<String>>::new();
    let mut sequences = BTreeSet::new();
    for task in tasks {
        let (publisher, i, resp) = task.await.expect("task");
        resp.expect_status(StatusCode::CREATED);
        let ad = resp.json();
        assert_eq!(ad["adTitle"], json!(format!("concurrent {i}")));
        assert_eq!(ad["version"], json!(0));
        let id = ad["adId"].as_str().expect("adId").to_string();
        assert!(ids.insert(id.clone()), "duplicate adId {id}");
        per_publisher.entry(publisher).or_default().insert(id);
        let sequence = resp.ledger_sequence();
        assert!(
            sequences.insert(sequence),
            "two creates in block {sequence}"
        );
    }
    assert_eq!(ids.len(), 200);
    assert_eq!(
        sequences,
        (0..200).collect::<BTreeSet<u64>>(),
        "each create is its own block of the fresh journal"
    );
    for publisher in publishers {
        let listed: BTreeSet<String> = server
            .list(publisher)
            .await
            .iter()
            .map(|ad| ad["adId"].as_str().expect("adId").to_string())
            .collect();
        assert_eq!(
            Some(&listed),
            per_publisher.get(publisher),
            "{publisher}'s list holds exactly its acknowledged ads"
        );
    }
    let health = server.get("/healthz").await.json();
    assert_eq!(health["journal"]["blocks"], json!(200), "{health}");
}

per_backend!(
    occ_race_exactly_one_if_match_wins,
    unconditional_concurrent_updates_serialize,
    many_concurrent_creates_all_succeed,
);
