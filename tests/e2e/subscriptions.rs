//! Durable subscriptions with a webhook sink, over real HTTP: a loopback receiver (axum,
//! in the test) verifies every request's Standard Webhooks signature with an independent
//! implementation (the `standardwebhooks` crate) and answers from a script of failures.
//! Delivery must come in journal order with no gap, duplicates only from retries or
//! since the last saved checkpoint (after kill -9), and the checkpoint never regresses.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Backend, Server, json_body, per_durable_backend};

const TOKEN: &str = "subscriptions-admin-token";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What the receiver answers to one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// 429 with `Retry-After: seconds`.
    RetryAfter(u64),
    /// Waits this long, then 200 (longer than the sink's timeout: the server gives up).
    Hang(Duration),
}

/// One request the receiver saw.
#[derive(Debug, Clone)]
struct Seen {
    event_ids: Vec<String>,
    verified: bool,
    answered: u16,
    at: Instant,
}

#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Applied to every 200 when set (a slow consumer).
    delay: Arc<Mutex<Option<Duration>>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        let url = format!("{}/hook", crate::support::serve_loopback(app).await);
        (receiver, url)
    }

    fn script(&self, answers: &[Answer]) {
        self.script
            .lock()
            .expect("receiver state lock")
            .extend(answers.iter().copied());
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("receiver state lock").clone()
    }

    /// Ids acknowledged (answered 200), in the order received.
    fn acknowledged(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| s.answered == 200)
            .flat_map(|s| s.event_ids)
            .collect()
    }

    async fn wait_for_acks(&self, distinct: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let mut ids = self.acknowledged();
            ids.sort();
            ids.dedup();
            if ids.len() >= distinct {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {distinct} events acknowledged in {within:?}: {:?}",
                ids.len(),
                self.seen()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let verified = standardwebhooks::Webhook::new(SECRET)
        .and_then(|hook| hook.verify(&body, &headers))
        .is_ok();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let event_ids: Vec<String> = match &parsed {
        Value::Array(events) => events
            .iter()
            .map(|e| e["id"].as_str().unwrap_or("").to_string())
            .collect(),
        event => vec![event["id"].as_str().unwrap_or("").to_string()],
    };
    let answer = receiver
        .script
        .lock()
        .expect("receiver state lock")
        .pop_front();
    let delay = *receiver.delay.lock().expect("receiver state lock");
    let (answered, response) = match answer {
        Some(Answer::Status(code)) => (
            code,
            AxumStatus::from_u16(code)
                .expect("subscriptions test step")
                .into_response(),
        ),
        Some(Answer::RetryAfter(seconds)) => (
            429,
            (
                AxumStatus::TOO_MANY_REQUESTS,
                [("retry-after", seconds.to_string())],
            )
                .into_response(),
        ),
        Some(Answer::Hang(d)) => {
            // Recorded as a timeout: the server stops waiting before this answers.
            receiver
                .seen
                .lock()
                .expect("receiver state lock")
                .push(Seen {
                    event_ids,
                    verified,
                    answered: 0,
                    at: Instant::now(),
                });
            tokio::time::sleep(d).await;
            return AxumStatus::OK.into_response();
        }
        None => (200, AxumStatus::OK.into_response()),
    };
    receiver
        .seen
        .lock()
        .expect("receiver state lock")
        .push(Seen {
            event_ids,
            verified,
            answered,
            at: Instant::now(),
        });
    if answered == 200
        && let Some(delay) = delay
    {
        tokio::time::sleep(delay).await;
    }
    response
}

/// A server with the admin token on a fresh ledger of `backend`.
async fn start_server_on(backend: Backend) -> Server {
    Server::start_on(backend, &["--admin-token".to_string(), TOKEN.to_string()]).await
}

fn admin(server: &Server, method: Method, path: &str) -> reqwest::RequestBuilder {
    server.request(method, path).bearer_auth(TOKEN)
}

async fn subscribe(server: &Server, body: Value) -> Value {
    let resp = server
        .send(json_body(
            admin(server, Method::POST, "/ledger/subscriptions"),
            &body,
        ))
        .await;
    resp.expect_status(StatusCode::CREATED);
    resp.json()
}

async fn subscription(server: &Server, name: &str) -> Value {
    let resp = server
        .send(admin(
            server,
            Method::GET,
            &format!("/ledger/subscriptions/{name}"),
        ))
        .await;
    resp.expect_status(StatusCode::OK);
    resp.json()
}

async fn wait_for_state(server: &Server, name: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sub = subscription(server, name).await;
        if sub["state"] == state {
            return sub;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {state}: {sub}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every ad event id of the journal, in order, from the pull feed.
async fn feed_ids(server: &Server) -> Vec<String> {
    let resp = server.get("/ledger/events?limit=1000").await;
    resp.expect_status(StatusCode::OK);
    let page = resp.json();
    let events = page
        .as_array()
        .cloned()
        .or_else(|| page["events"].as_array().cloned());
    events
        .expect("a batch of events")
        .iter()
        .map(|e| {
            e["id"]
                .as_str()
                .expect("subscriptions test step")
                .to_string()
        })
        .collect()
}

async fn create_ads(server: &Server, n: usize) {
    for i in 0..n {
        server
            .create_ad(
                "subs",
                &json!({"adTitle": format!("ad {i}"), "price": "1.00"}),
            )
            .await;
    }
}

fn retry(attempts: u32) -> Value {
    json!({"attempts": attempts, "initialBackoffMs": 20, "maxBackoffMs": 3000})
}

async fn webhook_delivers_in_order_through_failures(backend: Backend) {
    let server = start_server_on(backend).await;
    let (receiver, url) = Receiver::start().await;
    create_ads(&server, 3).await;
    receiver.script(&[
        Answer::Status(500),
        Answer::Status(500),
        Answer::Status(500),
        Answer::Status(200),
        Answer::RetryAfter(1),
        Answer::Status(200),
        Answer::Hang(Duration::from_secs(2)),
    ]);
    let created = subscribe(
        &server,
        json!({"name": "orders", "start": "beginning",
               "sink": {"type": "webhook", "url": url, "secret": SECRET, "timeoutMs": 500, "retry": retry(6)}}),
    )
    .await;
    assert_eq!(created["state"], "active");
    assert!(
        !created.to_string().contains(&SECRET[6..]),
        "the secret is never answered back"
    );
    create_ads(&server, 4).await;
    let expected = feed_ids(&server).await;
    assert_eq!(expected.len(), 7);
    receiver
        .wait_for_acks(expected.len(), Duration::from_secs(30))
        .await;

    let seen = receiver.seen();
    assert!(
        seen.iter().all(|s| s.verified),
        "every request verifies: {seen:?}"
    );
    // The first event: three 500s, then delivered; the retries are the only duplicates.
    let answers: Vec<u16> = seen.iter().map(|s| s.answered).collect();
    assert_eq!(&answers[..4], &[500, 500, 500, 200]);
    assert!(seen[..4].iter().all(|s| s.event_ids == seen[0].event_ids));
    // 429 with Retry-After: 1 → the next attempt waits at least a second.
    let limited = seen
        .iter()
        .position(|s| s.answered == 429)
        .expect("subscriptions test step");
    assert_eq!(seen[limited + 1].event_ids, seen[limited].event_ids);
    assert!(seen[limited + 1].at.duration_since(seen[limited].at) >= Duration::from_millis(950));
    // The timeout is retried with the same event.
    let hung = seen
        .iter()
        .position(|s| s.answered == 0)
        .expect("subscriptions test step");
    assert_eq!(seen[hung + 1].event_ids, seen[hung].event_ids);
    // Order and no gap; every duplicate is a retry of a failed attempt.
    let all: Vec<String> = seen.iter().flat_map(|s| s.event_ids.clone()).collect();
    let duplicates = crate::support::assert_no_gap(&receiver.acknowledged(), &expected);
    assert_eq!(duplicates, 0, "nothing acknowledged twice");
    assert_eq!(
        all.len() - expected.len(),
        3 + 1 + 1,
        "only retries repeat events"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sub = subscription(&server, "orders").await;
        if sub["lag"]["blocks"] == 0 {
            // After the last block: its bare sequence (the last event's block).
            let last_block: u64 = expected
                .last()
                .expect("subscriptions test step")
                .split('-')
                .next()
                .expect("subscriptions test step")
                .parse()
                .expect("subscriptions test step");
            assert_eq!(sub["checkpoint"], json!(last_block.to_string()));
            assert_eq!(sub["lag"]["seconds"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "lag never reached 0: {sub}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn failures_dead_letter_block_and_gone(backend: Backend) {
    let server = start_server_on(backend).await;
    let (receiver, url) = Receiver::start().await;
    // Dead-letter: the first event fails its two attempts and is set aside.
    receiver.script(&[Answer::Status(500), Answer::Status(503)]);
    subscribe(
        &server,
        json!({"name": "dl", "onFailure": "deadLetter",
               "sink": {"type": "webhook", "url": url, "secret": SECRET, "retry": retry(2)}}),
    )
    .await;
    create_ads(&server, 3).await;
    let expected = feed_ids(&server).await;
    receiver.wait_for_acks(2, Duration::from_secs(20)).await;
    let resp = server
        .send(admin(
            &server,
            Method::GET,
            "/ledger/subscriptions/dl/dead-letters",
        ))
        .await;
    resp.expect_status(StatusCode::OK);
    assert_eq!(resp.json()["ids"], json!([expected[0]]));
    assert_eq!(receiver.acknowledged(), expected[1..]);
    let resp = server
        .send(admin(
            &server,
            Method::POST,
            "/ledger/subscriptions/dl/dead-letters/redeliver",
        ))
        .await;
    resp.expect_status(StatusCode::OK);
    assert_eq!(resp.json()["redelivered"], json!([expected[0]]));
    let resp = server
        .send(admin(
            &server,
            Method::GET,
            "/ledger/subscriptions/dl/dead-letters",
        ))
        .await;
    assert_eq!(resp.json()["ids"], json!([]));
    assert_eq!(receiver.acknowledged().last(), Some(&expected[0]));

    // 410 Gone disables the subscription.
    receiver.script(&[Answer::Status(410)]);
    create_ads(&server, 1).await;
    let gone = wait_for_state(&server, "dl", "disabled").await;
    assert!(
        gone["lastError"]
            .as_str()
            .expect("subscriptions test step")
            .contains("410")
    );

    // Block: retries run out and the subscription stops at the event; resume retries it.
    let (blocked_receiver, blocked_url) = Receiver::start().await;
    blocked_receiver.script(&[Answer::Status(500)]);
    subscribe(
        &server,
        json!({"name": "strict", "onFailure": "block", "start": "beginning",
               "sink": {"type": "webhook", "url": blocked_url, "secret": SECRET, "retry": retry(1)}}),
    )
    .await;
    wait_for_state(&server, "strict", "blocked").await;
    assert!(blocked_receiver.acknowledged().is_empty());
    let resp = server
        .send(admin(
            &server,
            Method::POST,
            "/ledger/subscriptions/strict/resume",
        ))
        .await;
    resp.expect_status(StatusCode::OK);
    let all = feed_ids(&server).await;
    blocked_receiver
        .wait_for_acks(all.len(), Duration::from_secs(20))
        .await;
    assert_eq!(
        blocked_receiver.acknowledged(),
        all,
        "nothing skipped under `block`"
    );

    // Without the admin token: 401; a bad secret: 422 naming the field.
    let resp = server.get("/ledger/subscriptions").await;
    resp.expect_problem(StatusCode::UNAUTHORIZED);
    let resp = server
        .send(json_body(
            admin(&server, Method::POST, "/ledger/subscriptions"),
            &json!({"name": "bad", "sink": {"type": "webhook", "url": url, "secret": "nope"}}),
        ))
        .await;
    resp.expect_invalid_field("sink.secret");
}

async fn kill_9_mid_delivery_resumes_from_the_checkpoint(backend: Backend) {
    let mut server = start_server_on(backend).await;
    let (receiver, url) = Receiver::start().await;
    *receiver.delay.lock().expect("receiver state lock") = Some(Duration::from_millis(15));
    create_ads(&server, 120).await;
    let expected = feed_ids(&server).await;
    // 120 ad events and the digest event after block 99.
    assert_eq!(expected.len(), 121);
    subscribe(
        &server,
        json!({"name": "durable", "start": "beginning",
               "sink": {"type": "webhook", "url": url, "secret": SECRET, "retry": retry(5)}}),
    )
    .await;
    receiver.wait_for_acks(40, Duration::from_secs(30)).await;
    server.kill_9().await;
    let before = receiver.acknowledged().len();
    server.restart().await;
    *receiver.delay.lock().expect("receiver state lock") = None;
    receiver
        .wait_for_acks(expected.len(), Duration::from_secs(60))
        .await;
    let acked = receiver.acknowledged();
    let duplicates = crate::support::assert_no_gap(&acked, &expected);
    // Each request takes longer than the 10 ms that coalesces checkpoint saves, so each
    // acknowledgement is saved: at most the request in flight at the kill comes again.
    assert!(
        duplicates <= 1,
        "{duplicates} duplicates after kill -9 at {before} acks"
    );
    let sub = subscription(&server, "durable").await;
    assert_eq!(sub["state"], "active");
    assert!(receiver.seen().iter().all(|s| s.verified));
}

// On AWS a restarted server waits for the killed one's projector lease to lapse (10 s by
// default) before it delivers again: the kill -9 test's 60 s wait covers it.
per_durable_backend!(
    webhook_delivers_in_order_through_failures,
    failures_dead_letter_block_and_gone,
    kill_9_mid_delivery_resumes_from_the_checkpoint,
    a_taken_name_is_a_conflict,
);

/// A name is taken once: a second create is a 409 problem naming `name`.
async fn a_taken_name_is_a_conflict(backend: Backend) {
    let server = start_server_on(backend).await;
    let body = json!({"name": "dup", "start": "end",
                      "sink": {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": SECRET}});
    subscribe(&server, body.clone()).await;
    let again = server
        .send(json_body(
            admin(&server, Method::POST, "/ledger/subscriptions"),
            &body,
        ))
        .await;
    let problem = again.expect_problem(StatusCode::CONFLICT);
    assert_eq!(problem["field"], "name", "{problem}");
}

mod two_servers;
