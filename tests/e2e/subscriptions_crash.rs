//! Webhook delivery killed with SIGKILL: a journal of many revisions (written straight
//! into the data directory, as `maintenance` does: far faster than commands over HTTP),
//! one webhook subscription from the beginning to a loopback receiver that verifies every
//! signature with the `standardwebhooks` crate, and the server killed
//! with `kill -9` at several random moments while it delivers (seeded: the seed is
//! printed, `ADLEDGER_TEST_SEED` replays it), restarted on the same data directory each
//! time. At the end:
//!
//! - every event of the journal arrived, in journal order, with no gap (compared with the
//!   pull feed, read independently);
//! - the only duplicates are of events at or after the checkpoint saved before each
//!   kill, at most the unsaved acknowledgements (fewer than `MAX_UNSAVED_EVENTS`: saves
//!   of requests in quick succession are coalesced) and one request's worth per kill;
//!   the checkpoint, polled with `GET` throughout, never moved backwards, across kills
//!   included;
//! - the consumer's exactly-once-effect recipe (apply an event only when its id is after
//!   the last one applied) ends with exactly the journal's events, and what it applied
//!   passes the consumer verifier (`FeedVerifier`: hash chain, completeness of every
//!   block, digest consistency proofs).
//!
//! Run unbatched (one event per request) and batched (100 per request). The revision
//! count is `ADLEDGER_TEST_CRASH_REVISIONS`: by default [`DEFAULT_REVISIONS`], which
//! keeps the pair near a minute in a debug build (about 70 s together on a loaded 2-core
//! machine); the 100,000 (`ADLEDGER_TEST_CRASH_REVISIONS=100000`) took about
//! 5 minutes there. Local backend only: the journal is written into sled files before
//! the server starts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adledger_engine::feed::{CloudEvent, EventId, FeedVerifier, Position};
use adledger_engine::subscription::MAX_UNSAVED_EVENTS;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::maintenance::write_journal;
use crate::support::{Rng, Server, json_body, local_only, seed_from_env};

const TOKEN: &str = "subscriptions-crash-admin-token";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Revisions written unless `ADLEDGER_TEST_CRASH_REVISIONS` says otherwise.
const DEFAULT_REVISIONS: u64 = 20_000;
/// Kills per run.
const KILLS: usize = 4;
/// How long the whole delivery may take (kills and restarts included).
const DELIVERY_LIMIT: Duration = Duration::from_secs(900);

/// The consumer: verifies each request's signature, records every acknowledged event id
/// in arrival order, and applies events with the exactly-once-effect recipe.
#[derive(Default)]
struct Consumer {
    /// Every event id acknowledged, in arrival order (duplicates included).
    acked: Vec<EventId>,
    /// The last event applied (the recipe's only state).
    last_applied: Option<EventId>,
    /// The ids applied, in order.
    applied: Vec<EventId>,
    /// Checks what is applied, one event at a time, as a consumer would.
    verifier: FeedVerifier,
    /// The first thing that went wrong (a bad signature or body, a verifier failure).
    failure: Option<String>,
    /// Requests received.
    requests: u64,
}

type Shared = Arc<Mutex<Consumer>>;

fn lock(consumer: &Shared) -> std::sync::MutexGuard<'_, Consumer> {
    consumer.lock().expect("consumer lock")
}

async fn receive(State(consumer): State<Shared>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    let verified = standardwebhooks::Webhook::new(SECRET)
        .and_then(|hook| hook.verify(&body, &headers))
        .is_ok();
    let events: Result<Vec<CloudEvent>, _> = if body.first() == Some(&b'[') {
        serde_json::from_slice(&body)
    } else {
        serde_json::from_slice(&body).map(|e| vec![e])
    };
    let mut c = lock(&consumer);
    c.requests += 1;
    let events = match (verified, events) {
        (true, Ok(events)) => events,
        (false, _) => {
            c.failure
                .get_or_insert("a request's signature did not verify".into());
            return AxumStatus::UNAUTHORIZED;
        }
        (true, Err(e)) => {
            c.failure
                .get_or_insert(format!("a body is not CloudEvents: {e}"));
            return AxumStatus::BAD_REQUEST;
        }
    };
    for event in events {
        let Some(id) = EventId::parse(&event.id) else {
            c.failure
                .get_or_insert(format!("unparsable event id {:?}", event.id));
            return AxumStatus::BAD_REQUEST;
        };
        c.acked.push(id);
        // The recipe: anything at or below the last applied id was applied already.
        if c.last_applied.is_some_and(|last| id <= last) {
            continue;
        }
        if let Err(e) = c.verifier.check(&event) {
            c.failure
                .get_or_insert(format!("the verifier refused {}: {e}", event.id));
        }
        c.last_applied = Some(id);
        c.applied.push(id);
    }
    AxumStatus::OK
}

async fn start_receiver() -> (Shared, String) {
    let consumer: Shared = Arc::new(Mutex::new(Consumer {
        verifier: FeedVerifier::new().starting_at(Position::START),
        ..Consumer::default()
    }));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(consumer.clone());
    let url = format!("{}/hook", crate::support::serve_loopback(app).await);
    (consumer, url)
}

fn revisions() -> u64 {
    match std::env::var("ADLEDGER_TEST_CRASH_REVISIONS") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("ADLEDGER_TEST_CRASH_REVISIONS={text:?} is not a count")),
        Err(_) => DEFAULT_REVISIONS,
    }
}

/// Every event id of the journal, in order, from the pull feed (independent of delivery).
async fn journal_ids(server: &Server) -> Vec<EventId> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let query = match &after {
            Some(a) => format!("/ledger/events?after={a}&limit=1000"),
            None => "/ledger/events?limit=1000".to_string(),
        };
        let resp = server.get(&query).await;
        resp.expect_status(StatusCode::OK);
        let page: Vec<Value> = serde_json::from_str(&resp.text).expect("a CloudEvents batch");
        ids.extend(page.iter().map(|e| {
            EventId::parse(e["id"].as_str().unwrap_or_default()).expect("a feed event id")
        }));
        if resp.must_header("feed-at-tip") == "true" {
            return ids;
        }
        let next = resp.header("feed-position");
        assert!(
            next.is_some() && next != after,
            "a page not at the tip advances"
        );
        after = next;
    }
}

/// The subscription's checkpoint as `GET` answers it (`None`: the server did not answer,
/// e.g. it is being killed).
async fn checkpoint(server: &Server, name: &str) -> Option<Position> {
    let resp = server
        .request(Method::GET, &format!("/ledger/subscriptions/{name}"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if resp.status() != StatusCode::OK {
        return None;
    }
    let sub: Value = resp.json().await.ok()?;
    Some(match sub["checkpoint"].as_str() {
        None | Some("") => Position::START,
        Some(text) => Position::parse(text)
            .unwrap_or_else(|| panic!("the checkpoint {text:?} is not a position")),
    })
}

/// What the test knew at one kill.
#[derive(Debug)]
struct Kill {
    /// Events acknowledged when the killed process was dead (everything after is the
    /// next process's).
    acked_before: usize,
    /// The last checkpoint `GET` answered before the kill.
    checkpoint: Position,
    /// The last event applied before the kill.
    last_applied: Option<EventId>,
}

/// Polls the checkpoint, asserting it never moves backwards; answers the last one seen.
struct CheckpointWatch {
    last: Position,
    polls: u64,
}

impl CheckpointWatch {
    async fn poll(&mut self, server: &Server, name: &str) {
        if let Some(now) = checkpoint(server, name).await {
            assert!(
                now >= self.last,
                "the checkpoint moved backwards: {:?} after {:?}",
                now.token(),
                self.last.token()
            );
            self.last = now;
            self.polls += 1;
        }
    }
}

async fn delivery_survives_kill_9(batch: u32, what: &str) {
    let revisions = revisions();
    let mut rng = Rng::new(seed_from_env("ADLEDGER_TEST_SEED", what));
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    let started = Instant::now();
    write_journal(&data, revisions).await;
    let filled = started.elapsed();
    let args = ["--admin-token".to_string(), TOKEN.to_string()];
    let mut server = Server::start_with(Some(data), &args).await;
    let expected = journal_ids(&server).await;
    assert!(
        expected.len() as u64 > revisions,
        "one event per revision and the digest events: {} for {revisions}",
        expected.len()
    );
    let index: HashMap<EventId, usize> = expected
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i))
        .collect();

    let (consumer, url) = start_receiver().await;
    let resp = server
        .send(json_body(
            server
                .request(Method::POST, "/ledger/subscriptions")
                .bearer_auth(TOKEN),
            &json!({"name": "crash", "start": "beginning", "onFailure": "block",
                    "sink": {"type": "webhook", "url": url, "secret": SECRET, "batchSize": batch,
                             "retry": {"attempts": 20, "initialBackoffMs": 10, "maxBackoffMs": 200}}}),
        ))
        .await;
    resp.expect_status(StatusCode::CREATED);
    let delivery = Instant::now();

    // Kill targets: random distinct moments spread over the delivery.
    let total = expected.len();
    let mut targets: Vec<usize> = (0..KILLS)
        .map(|_| total / 20 + rng.below(total * 17 / 20))
        .collect();
    targets.sort_unstable();
    let mut watch = CheckpointWatch {
        last: Position::START,
        polls: 0,
    };
    let mut kills = Vec::new();
    for target in targets {
        loop {
            watch.poll(&server, "crash").await;
            // Each process acknowledges something before it is killed, so every kill
            // is one mid-delivery.
            let acked = lock(&consumer).acked.len();
            if acked >= target && kills.last().is_none_or(|k: &Kill| acked > k.acked_before) {
                break;
            }
            assert!(
                delivery.elapsed() < DELIVERY_LIMIT,
                "delivery stalled before kill {}: {} of {total} events\n{}",
                kills.len() + 1,
                lock(&consumer).acked.len(),
                server.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A random moment within the next few requests.
        tokio::time::sleep(Duration::from_millis(rng.below(40) as u64)).await;
        watch.poll(&server, "crash").await;
        server.kill_9().await;
        // A request the dead process wrote just before dying is still in the receiver's
        // socket: let it be read, so everything after the mark is the next process's.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (acked_before, last_applied) = {
            let c = lock(&consumer);
            (c.acked.len(), c.last_applied)
        };
        kills.push(Kill {
            acked_before,
            checkpoint: watch.last,
            last_applied,
        });
        server.restart().await;
        watch.poll(&server, "crash").await;
    }
    loop {
        watch.poll(&server, "crash").await;
        if lock(&consumer).last_applied == expected.last().copied() {
            break;
        }
        assert!(
            delivery.elapsed() < DELIVERY_LIMIT,
            "delivery stalled after the kills: {} of {total} events\n{}",
            lock(&consumer).applied.len(),
            server.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered_in = delivery.elapsed();
    // The checkpoint reaches the end of the journal (saved after the last request).
    let last = *expected.last().expect("a journal with events");
    let deadline = Instant::now() + Duration::from_secs(10);
    while watch.last < Position::after_event(last) {
        assert!(
            Instant::now() < deadline,
            "the checkpoint stayed at {:?}",
            watch.last.token()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        watch.poll(&server, "crash").await;
    }

    let c = lock(&consumer);
    assert_eq!(c.failure, None, "the consumer saw something wrong");
    // The recipe applied exactly the journal's events, in order.
    assert_eq!(c.applied.len(), expected.len(), "applied every event once");
    assert!(
        c.applied == expected,
        "applied the journal's events in order"
    );
    let summary = c.verifier.summary();
    assert_eq!(summary.events, expected.len() as u64);
    assert!(
        summary.digests > 0 && summary.blocks_under_digest > 0,
        "{summary:?}"
    );

    // No gap in what arrived: each acknowledged event is the next one or a redelivery.
    let duplicates = crate::support::assert_no_gap(&c.acked, &expected);

    // Duplicates only since the checkpoint saved before each kill: the next process
    // resumes at or after the last checkpoint `GET` showed, and at most one request
    // before the next event to apply.
    let mut explained = 0usize;
    for (n, kill) in kills.iter().enumerate() {
        let Some(&resumed) = c.acked.get(kill.acked_before) else {
            panic!("nothing arrived after kill {}: {kill:?}", n + 1);
        };
        let resumed_at = index[&resumed];
        let next_unapplied = kill.last_applied.map_or(0, |id| index[&id] + 1);
        assert!(
            Position {
                block: resumed.sequence,
                index: resumed.index
            } >= kill.checkpoint,
            "kill {}: delivery resumed at {resumed}, before the checkpoint {:?} it had reported",
            n + 1,
            kill.checkpoint.token()
        );
        assert!(
            resumed_at <= next_unapplied,
            "kill {}: resumed at {resumed}, past the next unapplied event",
            n + 1
        );
        let again = next_unapplied - resumed_at;
        // Saves of requests in quick succession are coalesced: a kill repeats the
        // acknowledged events not saved yet (fewer than `MAX_UNSAVED_EVENTS`) and the
        // request in flight.
        let bound = MAX_UNSAVED_EVENTS as usize - 1 + batch as usize;
        assert!(
            again <= bound,
            "kill {}: {again} events delivered again, more than the {bound} (unsaved \
             acknowledgements and one request of {batch}) a kill may repeat",
            n + 1
        );
        explained += again;
    }
    assert_eq!(
        duplicates, explained,
        "every duplicate is a redelivery after a kill (no retries were scripted)"
    );
    println!(
        "{what}: {revisions} revisions, {total} events, batch {batch}: journal written in \
         {filled:?}, delivered in {delivered_in:?} through {KILLS} kills ({} requests, \
         {duplicates} duplicates, {} checkpoint polls, kills at {:?})",
        c.requests,
        watch.polls,
        kills.iter().map(|k| k.acked_before).collect::<Vec<_>>()
    );
}

async fn unbatched_delivery_survives_kill_9() {
    delivery_survives_kill_9(1, "subscriptions_crash unbatched").await;
}

async fn batched_delivery_survives_kill_9() {
    delivery_survives_kill_9(100, "subscriptions_crash batched").await;
}

local_only!(
    unbatched_delivery_survives_kill_9,
    batched_delivery_survives_kill_9,
);
