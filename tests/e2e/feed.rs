//! The ledger feed over real HTTP, on each backend: `GET /ledger/events` paging and
//! filters, long-polling woken by a write, `GET /ledger/events/stream` resuming from
//! `Last-Event-ID`, the catch-up/live race (a writer racing a stream reader: gapless, no
//! duplicate), byte-identical pages on every backend for the same deterministic
//! commands, and `adledger feed verify` on a saved and on a tampered feed.
//!
//! Every feed read here is checked with the engine's public consumer verifier, the one a
//! consumer would run.

use std::time::{Duration, Instant};

use adledger_engine::feed::{CloudEvent, FeedVerifier, Position};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Backend, Server, per_backend};

/// The digest interval the servers here run with, so short runs carry digest events.
const EVERY: u64 = 4;

async fn start(backend: Backend, deterministic: Option<u64>) -> Server {
    let mut args = vec!["--feed-digest-every".to_string(), EVERY.to_string()];
    if let Some(seed) = deterministic {
        args.extend(["--deterministic".to_string(), seed.to_string()]);
    }
    Server::start_on(backend, &args).await
}

/// Creates `n` ads alternating between two publishers, updates the even ones and deletes
/// every third; returns the number of revisions written.
async fn write_some(server: &Server, n: usize) -> u64 {
    let mut revisions = 0;
    for i in 0..n {
        let publisher = if i % 2 == 0 { "acme" } else { "globex" };
        let ad = server
            .create_ad(
                publisher,
                &json!({"adTitle": format!("ad {i}"), "price": 19.90}),
            )
            .await;
        revisions += 1;
        let id = ad["adId"].as_str().expect("adId");
        let path = format!("/publisher/{publisher}/ad/{id}");
        if i % 2 == 0 {
            server
                .patch_json(&path, &json!({"category": "bikes"}))
                .await
                .expect_status(StatusCode::OK);
            revisions += 1;
        }
        if i % 3 == 0 {
            server
                .delete(&path)
                .await
                .expect_status(StatusCode::NO_CONTENT);
            revisions += 1;
        }
    }
    revisions
}

/// One page: its raw body, its events, and its two headers.
struct Page {
    text: String,
    events: Vec<CloudEvent>,
    position: Option<String>,
    at_tip: bool,
}

async fn page(server: &Server, query: &str) -> Page {
    let resp = server.get(&format!("/ledger/events?{query}")).await;
    resp.expect_status(StatusCode::OK);
    assert_eq!(
        resp.must_header("content-type"),
        "application/cloudevents-batch+json"
    );
    let events: Vec<CloudEvent> = serde_json::from_str(&resp.text)
        .unwrap_or_else(|e| panic!("not a CloudEvents batch ({e}): {}", resp.text));
    Page {
        events,
        position: resp.header("feed-position"),
        at_tip: match resp.must_header("feed-at-tip").as_str() {
            "true" => true,
            "false" => false,
            other => panic!("Feed-At-Tip is {other:?}"),
        },
        text: resp.text,
    }
}

/// Every event after the start that `filter` (a query fragment) keeps, paging by `limit`.
async fn pull_all(server: &Server, filter: &str, limit: usize) -> (Vec<CloudEvent>, Vec<String>) {
    let mut events = Vec::new();
    let mut texts = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10_000 {
        let query = match &after {
            Some(a) => format!("after={a}&limit={limit}{filter}"),
            None => format!("limit={limit}{filter}"),
        };
        let page = page(server, &query).await;
        assert!(
            page.events.len() <= limit + 1,
            "a page holds about `limit` events"
        );
        events.extend(page.events);
        texts.push(page.text);
        if page.position.is_some() {
            assert_ne!(
                page.position, after,
                "a page not at the tip always advances"
            );
        }
        after = page.position;
        if page.at_tip {
            return (events, texts);
        }
    }
    panic!("the feed never reached the tip");
}

fn verify(events: &[CloudEvent]) {
    let summary = FeedVerifier::with_digest_every(EVERY)
        .starting_at(Position::START)
        .check_all(events)
        .unwrap_or_else(|e| panic!("the feed does not verify: {e}"));
    assert_eq!(summary.events, events.len() as u64);
}

async fn pull_pages_filters_and_bad_parameters(backend: Backend) {
    let server = start(backend, None).await;
    let empty = page(&server, "").await;
    assert!(empty.events.is_empty() && empty.at_tip && empty.position.is_none());

    let revisions = write_some(&server, 12).await;
    let (all, _) = pull_all(&server, "", 5).await;
    let digests = revisions / EVERY;
    assert_eq!(all.len() as u64, revisions + digests);
    verify(&all);
    let (one_by_one, _) = pull_all(&server, "", 1).await;
    assert_eq!(one_by_one, all, "page size does not change the feed");

    // A sparse filter: only globex's deletes; pages still reach the tip.
    let (deletes, _) = pull_all(&server, "&type=adledger.ad.deleted&publisherId=globex", 2).await;
    let expected: Vec<CloudEvent> = all
        .iter()
        .filter(|e| {
            e.event_type == "adledger.ad.deleted"
                && e.subject
                    .as_deref()
                    .is_some_and(|s| s.starts_with("publisher/globex/"))
        })
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(deletes, expected);
    let nothing = page(&server, "publisherId=nobody").await;
    assert!(nothing.events.is_empty() && nothing.at_tip);
    assert_eq!(
        nothing.position.as_deref(),
        Some((revisions - 1).to_string().as_str()),
        "a filter that matches nothing still moves the position to the tip"
    );
    let digests_only = page(&server, "type=adledger.ledger.digest&limit=1000").await;
    assert_eq!(digests_only.events.len() as u64, digests);

    for (query, field) in [
        ("after=x", "after"),
        ("after=999999", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("wait=-1", "wait"),
        ("wait=3600000", "wait"),
        ("type=adledger.ad.exploded", "type"),
        ("publisherId=no%20spaces", "publisherId"),
        ("cursor=1", "cursor"),
    ] {
        let resp = server.get(&format!("/ledger/events?{query}")).await;
        let problem = resp.expect_problem(StatusCode::BAD_REQUEST);
        assert_eq!(problem["field"], json!(field), "{query}: {problem}");
    }
}

async fn long_poll_is_woken_by_a_write(backend: Backend) {
    let server = start(backend, None).await;
    write_some(&server, 1).await;
    let (events, _) = pull_all(&server, "", 100).await;
    let last = events.last().expect("an event").id.clone();
    let query = format!("after={last}&wait=20000&type=adledger.ad.created");
    let started = Instant::now();
    let (polled, ()) = tokio::join!(page(&server, &query), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.create_ad("acme", &json!({"adTitle": "late"})).await;
    });
    let waited = started.elapsed();
    assert_eq!(polled.events.len(), 1, "the write's event: {}", polled.text);
    assert_eq!(polled.events[0].event_type, "adledger.ad.created");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(10),
        "the poll waited for the write and no longer: {waited:?}"
    );
    // With nothing to come, the poll waits for `wait` and answers an empty page.
    let position = polled.position.expect("a position");
    let started = Instant::now();
    let idle = page(&server, &format!("after={position}&wait=400")).await;
    assert!(idle.events.is_empty() && idle.at_tip);
    assert!(started.elapsed() >= Duration::from_millis(350));
}

/// Reads `GET /ledger/events/stream` until `until` says stop (or 20 s pass); returns the
/// events and the raw SSE lines of other kinds (`event: overflow`, comments).
async fn read_stream(
    server: &Server,
    last_event_id: Option<&str>,
    until: impl FnMut(&[CloudEvent]) -> bool,
) -> Vec<CloudEvent> {
    read_stream_at(server, "/ledger/events/stream", last_event_id, until).await
}

/// [`read_stream`] of `path` (the stream's path with a query).
async fn read_stream_at(
    server: &Server,
    path: &str,
    last_event_id: Option<&str>,
    mut until: impl FnMut(&[CloudEvent]) -> bool,
) -> Vec<CloudEvent> {
    let mut request = server.request(reqwest::Method::GET, path);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let mut resp = request.send().await.expect("the stream answers");
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buffer = String::new();
    let mut events: Vec<CloudEvent> = Vec::new();
    while Instant::now() < deadline && !until(&events) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
            .await
            .expect("the stream sends within 5 s")
            .expect("the stream is readable");
        let Some(chunk) = chunk else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let record: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            for line in record.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    id = Some(value.trim().to_string());
                } else if let Some(data) = line.strip_prefix("data:") {
                    let event: CloudEvent = serde_json::from_str(data.trim())
                        .unwrap_or_else(|e| panic!("not a CloudEvent ({e}): {data}"));
                    assert_eq!(
                        id.as_deref(),
                        Some(event.id.as_str()),
                        "SSE id is the event id"
                    );
                    events.push(event);
                } else {
                    assert!(
                        line.is_empty() || line.starts_with(':'),
                        "unexpected SSE line {line:?}"
                    );
                }
            }
        }
    }
    events
}

async fn stream_resumes_from_last_event_id(backend: Backend) {
    let server = start(backend, None).await;
    let revisions = write_some(&server, 6).await;
    let (all, _) = pull_all(&server, "", 100).await;
    let total = all.len();
    let streamed = read_stream(&server, None, |seen| seen.len() >= total).await;
    assert_eq!(
        streamed, all,
        "the stream from the start is the pulled feed"
    );
    let resume_after = &all[total / 2];
    let resumed = read_stream(&server, Some(&resume_after.id), |seen| {
        seen.len() >= total - total / 2 - 1
    })
    .await;
    assert_eq!(resumed.as_slice(), &all[total / 2 + 1..]);
    FeedVerifier::new()
        .starting_at(Position::parse(&resume_after.id).expect("an id"))
        .check_all(&resumed)
        .expect("a resumed stream verifies");
    assert!(revisions > 0);
    let bad = server
        .send(
            server
                .request(reqwest::Method::GET, "/ledger/events/stream")
                .header("last-event-id", "not-an-id"),
        )
        .await;
    let problem = bad.expect_problem(StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], json!("Last-Event-ID"));
}

async fn catch_up_and_live_race_without_gap_or_duplicate(backend: Backend) {
    let server = start(backend, None).await;
    let before = write_some(&server, 20).await;
    let more = 40u64;
    let total_revisions = before + more;
    let total_blocks = total_revisions;
    let expected_events = (total_revisions + total_blocks / EVERY) as usize;
    let (streamed, ()) = tokio::join!(
        read_stream(&server, None, |seen| seen.len() >= expected_events),
        async {
            for i in 0..more {
                server
                    .create_ad("racer", &json!({"adTitle": format!("race {i}")}))
                    .await;
            }
        }
    );
    assert_eq!(
        streamed.len(),
        expected_events,
        "every event of the catch-up and of the live writes, once"
    );
    verify(&streamed);
    let (pulled, _) = pull_all(&server, "", 1000).await;
    assert_eq!(streamed, pulled, "the stream is the feed");
}

/// Several live streams at once, each with its own filter and start, while writes go
/// on: each gets exactly the pulled feed of its filter after its start (the shared live
/// tail hands every stream the same blocks; filters and positions stay per stream).
async fn live_streams_keep_their_own_filters_and_positions(backend: Backend) {
    let server = start(backend, None).await;
    write_some(&server, 4).await;
    let (before, _) = pull_all(&server, "", 100).await;
    let start = before.last().expect("events so far").id.clone();
    let filters = [
        "",
        "&publisherId=acme",
        "&type=adledger.ad.updated,adledger.ad.deleted",
    ];
    // The last write deletes an acme ad: every filter above keeps that event.
    let sentinel = std::sync::OnceLock::<String>::new();
    let done = |seen: &[CloudEvent]| {
        sentinel.get().is_some_and(|subject| {
            seen.iter().any(|e| {
                e.subject.as_ref() == Some(subject) && e.event_type == "adledger.ad.deleted"
            })
        })
    };
    let paths = filters.map(|filter| format!("/ledger/events/stream?after={start}{filter}"));
    let (a, b, c, ()) = tokio::join!(
        read_stream_at(&server, &paths[0], None, done),
        read_stream_at(&server, &paths[1], None, done),
        read_stream_at(&server, &paths[2], None, done),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            write_some(&server, 12).await;
            let ad = server
                .create_ad("acme", &json!({"adTitle": "the last one"}))
                .await;
            let id = ad["adId"].as_str().expect("adId");
            // Known before the delete, whose event may reach a stream before its answer.
            let _ = sentinel.set(format!("publisher/acme/ad/{id}"));
            server
                .delete(&format!("/publisher/acme/ad/{id}"))
                .await
                .expect_status(StatusCode::NO_CONTENT);
        }
    );
    for (streamed, filter) in [a, b, c].into_iter().zip(filters) {
        let (pulled, _) = pull_all(&server, filter, 100).await;
        let expected: Vec<CloudEvent> = pulled.into_iter().filter(|e| e.id > start).collect();
        assert!(!expected.is_empty(), "filter {filter:?} keeps some events");
        assert_eq!(streamed, expected, "the stream with filter {filter:?}");
    }
}

/// The same deterministic commands on `backend` and on the local backend give
/// byte-identical feed pages.
async fn same_commands_give_byte_identical_pages(backend: Backend) {
    let here = start(backend, Some(42)).await;
    let local = start(Backend::Local, Some(42)).await;
    write_some(&here, 9).await;
    write_some(&local, 9).await;
    let (events, here_pages) = pull_all(&here, "", 4).await;
    let (_, local_pages) = pull_all(&local, "", 4).await;
    assert_eq!(
        here_pages, local_pages,
        "{backend:?} and local answer the same bytes"
    );
    verify(&events);
    let filtered_here = pull_all(&here, "&publisherId=acme", 3).await.1;
    let filtered_local = pull_all(&local, "&publisherId=acme", 3).await.1;
    assert_eq!(filtered_here, filtered_local);
}

async fn feed_verify_accepts_a_saved_feed_and_refuses_a_tampered_one(backend: Backend) {
    let server = start(backend, None).await;
    write_some(&server, 8).await;
    let (events, _) = pull_all(&server, "", 1000).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("feed.ndjson");
    let lines: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).expect("event json"))
        .collect();
    std::fs::write(&saved, lines.join("\n")).expect("write the feed");
    let path = saved.to_str().expect("utf-8 path");
    let ok = Server::run_cli(&["feed", "verify", path, "--digest-every", "4"]).await;
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.starts_with("OK:"), "{stdout}");

    // One title changed in one event.
    let mut tampered: Value = serde_json::from_str(&lines[2]).expect("json");
    tampered["data"]["data"]["adTitle"] = json!("not what was written");
    let mut altered = lines.clone();
    altered[2] = tampered.to_string();
    let bad = dir.path().join("tampered.ndjson");
    std::fs::write(&bad, altered.join("\n")).expect("write");
    let out = Server::run_cli(&["feed", "verify", bad.to_str().expect("utf-8")]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&events[2].id) && stdout.contains("altered"),
        "{stdout}"
    );

    // One event dropped.
    let mut dropped = lines.clone();
    dropped.remove(3);
    std::fs::write(&bad, dropped.join("\n")).expect("write");
    let out = Server::run_cli(&["feed", "verify", bad.to_str().expect("utf-8")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("gap"));

    // Not a feed at all.
    std::fs::write(&bad, "hello").expect("write");
    let out = Server::run_cli(&["feed", "verify", bad.to_str().expect("utf-8")]).await;
    assert_eq!(out.status.code(), Some(2));
}

per_backend!(
    pull_pages_filters_and_bad_parameters,
    long_poll_is_woken_by_a_write,
    stream_resumes_from_last_event_id,
    catch_up_and_live_race_without_gap_or_duplicate,
    live_streams_keep_their_own_filters_and_positions,
    same_commands_give_byte_identical_pages,
    feed_verify_accepts_a_saved_feed_and_refuses_a_tampered_one,
);
