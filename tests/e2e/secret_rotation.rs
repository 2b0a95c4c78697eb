//! Rotating a webhook subscription's secret without a gap: during the grace period every
//! request carries two Standard Webhooks signatures, so a receiver holding only the old
//! secret and one holding only the new one both verify (with the independent
//! `standardwebhooks` crate); after it only the new secret verifies. Secrets are never
//! answered back nor logged; bad rotations are 4xx naming the field. An operator's
//! change right after a delivery (a rotation, a pause) sends no acknowledged event
//! again. Local backend: the AWS backend has no subscription store yet.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, json_body, local_only};

const TOKEN: &str = "rotation-admin-token";
const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW: &str = "whsec_c2VjcmV0LXJvdGF0aW9uLW5ldy1rZXktMDEyMzQ1";
/// The grace period the test asks for, in seconds.
const GRACE: u64 = 4;

/// Every request the receiver got: its headers and body. Answers 200.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    receiver
        .seen
        .lock()
        .expect("receiver lock")
        .push((headers, body));
    AxumStatus::OK
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

    /// Waits for request number `n` (from 1) and answers it.
    async fn request(&self, n: usize) -> (HeaderMap, Bytes) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(request) = self.seen.lock().expect("receiver lock").get(n - 1) {
                return request.clone();
            }
            assert!(Instant::now() < deadline, "request {n} never came");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether a receiver holding only `secret` accepts the request.
fn verifies(secret: &str, (headers, body): &(HeaderMap, Bytes)) -> bool {
    standardwebhooks::Webhook::new(secret)
        .expect("a valid secret")
        .verify(body, headers)
        .is_ok()
}

fn signatures(headers: &HeaderMap) -> usize {
    headers
        .get("webhook-signature")
        .and_then(|v| v.to_str().ok())
        .map_or(0, |v| v.split(' ').count())
}

fn admin(server: &Server, method: Method, path: &str) -> reqwest::RequestBuilder {
    server.request(method, path).bearer_auth(TOKEN)
}

async fn rotate(server: &Server, name: &str, body: &Value) -> crate::support::Resp {
    server
        .send(json_body(
            admin(
                server,
                Method::POST,
                &format!("/ledger/subscriptions/{name}/rotate-secret"),
            ),
            body,
        ))
        .await
}

async fn create_ad(server: &Server, title: &str) {
    server
        .create_ad("rot", &json!({"adTitle": title, "price": "1.00"}))
        .await;
}

/// A server with subscription `rot` delivering to a new receiver, signed with `OLD`.
async fn subscribed_with_old_secret() -> (Server, Receiver) {
    let server = Server::start_with(None, &["--admin-token".to_string(), TOKEN.to_string()]).await;
    let (receiver, url) = Receiver::start().await;
    let resp = server
        .send(json_body(
            admin(&server, Method::POST, "/ledger/subscriptions"),
            &json!({"name": "rot", "sink": {"type": "webhook", "url": url, "secret": OLD}}),
        ))
        .await;
    resp.expect_status(StatusCode::CREATED);
    (server, receiver)
}

/// Both secrets verify during the grace period, only the new one after it.
async fn both_secrets_verify_during_the_grace_period_then_only_the_new_one() {
    let (server, receiver) = subscribed_with_old_secret().await;

    create_ad(&server, "before").await;
    let before = receiver.request(1).await;
    assert!(verifies(OLD, &before) && !verifies(NEW, &before));
    assert_eq!(signatures(&before.0), 1);

    let resp = rotate(
        &server,
        "rot",
        &json!({"secret": NEW, "graceSeconds": GRACE}),
    )
    .await;
    resp.expect_status(StatusCode::OK);
    let rotated_at = Instant::now();
    let view = resp.json();
    assert!(
        view["sink"]["previousSecretUntil"].is_string(),
        "the grace period is shown: {view}"
    );
    for secret in [OLD, NEW] {
        assert!(
            !resp.text.contains(&secret[6..]),
            "no secret is answered back: {}",
            resp.text
        );
    }
    assert!(
        view["sink"]["secret"]
            .as_str()
            .is_some_and(|s| NEW.starts_with(s.trim_end_matches('…')))
    );

    create_ad(&server, "during").await;
    let during = receiver.request(2).await;
    assert!(
        rotated_at.elapsed() < Duration::from_secs(GRACE),
        "the request during the grace period came too late to tell"
    );
    assert_eq!(signatures(&during.0), 2, "{:?}", during.0);
    assert!(
        verifies(OLD, &during),
        "a receiver with the old secret verifies"
    );
    assert!(
        verifies(NEW, &during),
        "a receiver with the new secret verifies"
    );

    tokio::time::sleep(Duration::from_secs(GRACE).saturating_sub(rotated_at.elapsed())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    create_ad(&server, "after").await;
    let after = receiver.request(3).await;
    assert_eq!(signatures(&after.0), 1);
    assert!(verifies(NEW, &after), "the new secret verifies");
    assert!(!verifies(OLD, &after), "the old secret no longer does");
    let resp = server
        .send(admin(&server, Method::GET, "/ledger/subscriptions/rot"))
        .await;
    resp.expect_status(StatusCode::OK);
    assert_eq!(resp.json()["sink"]["previousSecretUntil"], Value::Null);

    let logs = server.stderr_tail();
    for secret in [OLD, NEW] {
        assert!(
            !logs.contains(&secret[6..]),
            "a secret in the logs:\n{logs}"
        );
    }
}

/// Bad rotations: 4xx naming the field, and nothing changes.
async fn bad_rotations_are_refused_naming_the_field() {
    let server = Server::start_with(None, &["--admin-token".to_string(), TOKEN.to_string()]).await;
    let resp = server
        .send(json_body(
            admin(&server, Method::POST, "/ledger/subscriptions"),
            &json!({"name": "rot", "start": "end",
                    "sink": {"url": "http://127.0.0.1:9/hook", "secret": OLD}}),
        ))
        .await;
    resp.expect_status(StatusCode::CREATED);
    rotate(&server, "rot", &json!({"secret": "nope"}))
        .await
        .expect_invalid_field("secret");
    rotate(&server, "rot", &json!({"secret": "whsec_AAAA"}))
        .await
        .expect_invalid_field("secret");
    rotate(&server, "rot", &json!({"secret": OLD}))
        .await
        .expect_invalid_field("secret");
    rotate(
        &server,
        "rot",
        &json!({"secret": NEW, "graceSeconds": 604_801}),
    )
    .await
    .expect_invalid_field("graceSeconds");
    rotate(&server, "rot", &json!({"secret": NEW, "graceSeconds": -1}))
        .await
        .expect_problem(StatusCode::BAD_REQUEST);
    rotate(&server, "rot", &json!({"secret": NEW, "grace": 5}))
        .await
        .expect_problem(StatusCode::BAD_REQUEST);
    rotate(&server, "nobody", &json!({"secret": NEW}))
        .await
        .expect_problem(StatusCode::NOT_FOUND);
    let resp = server
        .send(json_body(
            server.request(Method::POST, "/ledger/subscriptions/rot/rotate-secret"),
            &json!({"secret": NEW}),
        ))
        .await;
    resp.expect_problem(StatusCode::UNAUTHORIZED);
    // Nothing changed: the old secret still signs alone.
    let resp = server
        .send(admin(&server, Method::GET, "/ledger/subscriptions/rot"))
        .await;
    let view = resp.json();
    assert_eq!(view["sink"]["previousSecretUntil"], Value::Null, "{view}");
    assert!(
        view["sink"]["secret"]
            .as_str()
            .is_some_and(|s| OLD.starts_with(s.trim_end_matches('…')))
    );
    // A grace of 0 switches at once.
    let resp = rotate(&server, "rot", &json!({"secret": NEW, "graceSeconds": 0})).await;
    resp.expect_status(StatusCode::OK);
    assert_eq!(resp.json()["sink"]["previousSecretUntil"], Value::Null);
}

/// Rotations and pauses that land while an event's request is being answered (the
/// receiver records a request before it answers it) make nothing go out twice: the
/// deliverer settles the request in flight and saves it before its successor starts,
/// and its save is rebased onto the operator's write.
async fn operator_changes_right_after_a_delivery_send_nothing_twice() {
    const ROUNDS: usize = 12;
    let (server, receiver) = subscribed_with_old_secret().await;
    for round in 0..ROUNDS {
        create_ad(&server, &format!("round-{round}")).await;
        receiver.request(round + 1).await;
        if round % 2 == 0 {
            let secret = if round % 4 == 0 { NEW } else { OLD };
            rotate(
                &server,
                "rot",
                &json!({"secret": secret, "graceSeconds": 0}),
            )
            .await
            .expect_status(StatusCode::OK);
        } else {
            for action in ["pause", "resume"] {
                let path = format!("/ledger/subscriptions/rot/{action}");
                server
                    .send(admin(&server, Method::POST, &path))
                    .await
                    .expect_status(StatusCode::OK);
            }
        }
    }
    // Anything sent twice would arrive within this.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = receiver.seen.lock().expect("receiver lock").clone();
    let titles: Vec<String> = seen
        .iter()
        .map(|(_, body)| {
            let event: Value = serde_json::from_slice(body).expect("a CloudEvent");
            event["data"]["data"]["adTitle"]
                .as_str()
                .map_or_else(|| event.to_string(), str::to_string)
        })
        .collect();
    let expected: Vec<String> = (0..ROUNDS).map(|r| format!("round-{r}")).collect();
    assert_eq!(titles, expected, "each ad once, in order");
}

local_only!(
    both_secrets_verify_during_the_grace_period_then_only_the_new_one,
    bad_rotations_are_refused_naming_the_field,
    operator_changes_right_after_a_delivery_send_nothing_twice,
);
