//! The DynamoDB backend under injected faults: two `adledger serve --backend aws`
//! processes reach DynamoDB Local through a loopback proxy (`support::fault_proxy`) that
//! drops connections before and after DynamoDB applied a request, delays requests, and
//! answers 500 and throttling at random, while writers create and update ads through both.
//!
//! What must hold, whatever the faults:
//!
//! - no write is acknowledged (2xx) that is not there afterwards, at its acknowledged
//!   version and content, through both servers;
//! - no request is answered 500: a fault DynamoDB's retries did not absorb is a 503 with
//!   `Retry-After` (the client retries; a create carries an `Idempotency-Key`, so a retry of
//!   a create that was applied is answered from the journal);
//! - no duplicate block: the journal holds exactly one block per change present (no
//!   phantom ads, versions without gaps), so an append retried after a lost answer never
//!   appended twice;
//! - the chain verifies (`adledger verify` against the digest both servers serve, which
//!   must be equal).
//!
//! An `If-Match` update whose answer was lost (503) may have been applied: its retry then
//! gets 412, and the client reads the ad to learn the outcome, as a client of any HTTP
//! API must after a lost answer. Those are counted, and checked to be whole.
//!
//! AWS only by nature; needs `ADLEDGER_TEST_DYNAMODB_ENDPOINT` (`scripts/dynamodb-local.sh`
//! sets it) and fails loudly without it. `ADLEDGER_FAULT_SEED` reproduces a run's faults
//! (the interleaving of two servers still varies); `ADLEDGER_FAULT_ADS` (default 5) sets
//! the ads per writer, for a longer run.

use std::sync::Arc;
use std::time::Duration;

use crate::support::aws::{self as dynamodb, KnownAd};
use crate::support::fault_proxy::{FaultProxy, Faults};
use crate::support::{Resp, Server, aws_only, fetch, json_body};
use reqwest::{Method, StatusCode};
use serde_json::json;

const WRITERS_PER_SERVER: usize = 3;
/// Ads each writer creates (`ADLEDGER_FAULT_ADS` for a longer run; 5 keeps CI near 90 s).
fn ads_per_writer() -> usize {
    std::env::var("ADLEDGER_FAULT_ADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}
/// Updates of each ad after its create, alternating between the two servers.
const UPDATES_PER_AD: u64 = 2;
/// Attempts of one request answered 503 or not answered at all.
const ATTEMPTS: usize = 40;

/// The fault mix, per thousand DynamoDB requests.
const FAULTS: Faults = Faults {
    drop_before: 60,
    drop_after: 60,
    server_error: 50,
    throttle: 50,
    delay: 80,
    max_delay: Duration::from_millis(150),
    // Of the batches (state projection, journal ad index, search hits, appenders'
    // checks): answered with half their items unprocessed.
    unprocessed: 150,
};

#[derive(Debug, Default)]
struct Tally {
    acknowledged: usize,
    /// Requests retried after a 503 or no answer.
    retried: usize,
    /// Updates answered 503 (or not at all) whose retry found them applied.
    applied_unacknowledged: usize,
}

/// Sends what `build` builds until it gets an answer other than 503 (or no answer);
/// never accepts a 500.
async fn send_retrying(
    server: &Server,
    tally: &mut Tally,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Resp {
    for attempt in 1..=ATTEMPTS {
        match fetch(build()).await {
            Ok(resp) if resp.status == StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    resp.headers.contains_key("retry-after"),
                    "a 503 says when to retry: {}",
                    resp.text
                );
            }
            Ok(resp) => {
                assert!(
                    !resp.status.is_server_error(),
                    "a DynamoDB fault surfaced as {}: {}\n--- server stderr ---\n{}",
                    resp.status,
                    resp.text,
                    server.stderr_tail()
                );
                return resp;
            }
            Err(e) => assert!(
                attempt < ATTEMPTS,
                "no answer after {ATTEMPTS} attempts: {e}\n{}",
                server.stderr_tail()
            ),
        }
        tally.retried += 1;
        tokio::time::sleep(Duration::from_millis(20 * attempt.min(10) as u64)).await;
    }
    panic!(
        "still 503 after {ATTEMPTS} attempts\n--- server stderr ---\n{}",
        server.stderr_tail()
    )
}

/// One writer: creates ads through `near`, then updates each through both servers in turn.
async fn writer(near: Arc<Server>, far: Arc<Server>, id: usize) -> (Vec<KnownAd>, Tally) {
    let mut known = Vec::new();
    let mut tally = Tally::default();
    let publisher = format!("pub-{}", id % 3);
    for n in 0..ads_per_writer() {
        let title = format!("writer {id} ad {n}");
        let body = json!({"adTitle": title, "price": format!("{}.50", n + 1), "currency": "EUR",
                          "category": "bikes", "tags": ["faults"]});
        let path = format!("/publisher/{publisher}/ad");
        let key = format!("faults-{id}-{n}");
        let created = send_retrying(&near, &mut tally, || {
            json_body(near.request(Method::POST, &path), &body)
                .header("idempotency-key", key.as_str())
        })
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let ad_id = created.json()["adId"].as_str().expect("adId").to_string();
        tally.acknowledged += 1;
        let mut ad = KnownAd {
            publisher: publisher.clone(),
            ad_id,
            version: 0,
            title,
        };
        for u in 1..=UPDATES_PER_AD {
            let server = if u % 2 == 1 { &far } else { &near };
            let new_title = format!("{} u{u}", ad.title);
            let path = format!("/publisher/{publisher}/ad/{}", ad.ad_id);
            let body = json!({"adTitle": new_title});
            let expected = format!("\"{}\"", ad.version);
            let retried_before = tally.retried;
            let updated = send_retrying(server, &mut tally, || {
                json_body(server.request(Method::PATCH, &path), &body)
                    .header("if-match", expected.as_str())
            })
            .await;
            if updated.status == StatusCode::OK {
                assert_eq!(
                    updated.json()["version"],
                    ad.version + 1,
                    "{}",
                    updated.text
                );
                tally.acknowledged += 1;
            } else {
                // No one else writes this ad: a 412 means an earlier attempt, answered 503
                // or not at all, was applied. It must be there whole.
                assert_eq!(
                    updated.status,
                    StatusCode::PRECONDITION_FAILED,
                    "{}",
                    updated.text
                );
                assert!(
                    tally.retried > retried_before,
                    "a 412 on the first attempt, with no other writer: {}",
                    updated.text
                );
                let read =
                    send_retrying(server, &mut tally, || server.request(Method::GET, &path)).await;
                read.expect_status(StatusCode::OK);
                let now = read.json();
                assert_eq!(now["version"], ad.version + 1, "{}", read.text);
                assert_eq!(now["adTitle"], new_title.as_str(), "{}", read.text);
                tally.applied_unacknowledged += 1;
            }
            ad.version += 1;
            ad.title = new_title;
        }
        known.push(ad);
    }
    (known, tally)
}

async fn faults_lose_no_write_and_duplicate_no_block() {
    let endpoint = dynamodb::endpoint();
    let prefix = dynamodb::unique_prefix("faults");
    dynamodb::init(&endpoint, &prefix).await;
    let seed = crate::support::seed_from_env("ADLEDGER_FAULT_SEED", "fault");
    let proxy = FaultProxy::start(&endpoint, FAULTS, seed).await;
    // The servers start on a quiet network (start-up is not what is tested here).
    proxy.set_enabled(false);
    let args = dynamodb::serve_args(proxy.endpoint(), &prefix);
    let first = Arc::new(Server::start_with(None, &args).await);
    let second = Arc::new(Server::start_with(None, &args).await);
    proxy.set_enabled(true);

    let mut known: Vec<KnownAd> = Vec::new();
    let mut tally = Tally::default();
    for (k, t) in dynamodb::crossed_writers(&first, &second, WRITERS_PER_SERVER, writer).await {
        known.extend(k);
        tally.acknowledged += t.acknowledged;
        tally.retried += t.retried;
        tally.applied_unacknowledged += t.applied_unacknowledged;
    }
    let injected = proxy.counts().injected();
    // The SDK's retries are visible to an operator: `adledger_dynamodb_retries_total`.
    let mut retries = 0.0;
    for server in [&first, &second] {
        let text = server.get("/metrics").await.text;
        retries += text
            .lines()
            .filter(|l| l.starts_with("adledger_dynamodb_retries_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    println!("DynamoDB retries reported by the two servers' /metrics: {retries}");
    assert!(
        retries > 0.0,
        "faults were injected ({}) but /metrics counts no DynamoDB retry",
        proxy.counts().summary()
    );
    println!("{}", proxy.counts().summary());
    assert!(
        proxy
            .counts()
            .partial_batches
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "no batch was left partly unprocessed, so the retry of unprocessed items went \
         untested: {}",
        proxy.counts().summary()
    );
    proxy.set_enabled(false);
    assert!(
        injected >= 20,
        "too few faults for the test to mean anything: {}",
        proxy.counts().summary()
    );

    // Every write is there, as its writer last knew it, through both servers; the lists
    // (read models) converge to exactly those ads; both serve one digest.
    let da = dynamodb::assert_servers_agree(&[&first, &second], &known).await;
    let blocks = da["sequence"].as_u64().expect("sequence") + 1;
    let changes: u64 = known.iter().map(|a| a.version + 1).sum();
    assert_eq!(
        blocks, changes,
        "one block per change present ({} acknowledged, {} applied though their answer \
         was lost): a different count means an append was applied twice or lost",
        tally.acknowledged, tally.applied_unacknowledged
    );

    // The chain verifies, against the digest the servers serve, reading DynamoDB directly.
    dynamodb::verify_against(&endpoint, &prefix, &da).await;
    println!(
        "faults: {injected} injected; {} writes acknowledged, {} applied though their answer \
         was lost, {} requests retried; {blocks} blocks, chain verified; acknowledged writes \
         lost: 0",
        tally.acknowledged, tally.applied_unacknowledged, tally.retried
    );
}

/// DynamoDB failing every request for a while (500, throttling, dropped connections):
/// what the SDK's retries cannot absorb.
const OUTAGE: Faults = Faults {
    drop_before: 250,
    drop_after: 0,
    server_error: 375,
    throttle: 375,
    delay: 0,
    max_delay: Duration::ZERO,
    unprocessed: 0,
};

/// A read, and a create's retry, during a DynamoDB outage are answered 503 with
/// `Retry-After` (the outage passes), never 500; once it passed, both succeed. Reads are
/// not behind the committer (which answers any failed write 503), so this is where a
/// transient DynamoDB error that surfaced as a backend error showed as a 500.
async fn an_outage_is_503_with_retry_after_never_500() {
    let endpoint = dynamodb::endpoint();
    let prefix = dynamodb::unique_prefix("outage");
    dynamodb::init(&endpoint, &prefix).await;
    let seed = crate::support::seed_from_env("ADLEDGER_FAULT_SEED", "outage");
    let proxy = FaultProxy::start(&endpoint, OUTAGE, seed).await;
    proxy.set_enabled(false);
    let server = Server::start_with(None, &dynamodb::serve_args(proxy.endpoint(), &prefix)).await;
    let body = json!({"adTitle": "outage", "price": "1.50", "currency": "EUR",
                      "category": "bikes"});
    let create = || {
        json_body(server.request(Method::POST, "/publisher/acme/ad"), &body)
            .header("idempotency-key", "outage-1")
    };
    let created = fetch(create()).await.expect("create");
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let path = format!(
        "/publisher/acme/ad/{}",
        created.json()["adId"].as_str().expect("adId")
    );

    proxy.set_enabled(true);
    for (what, request) in [
        ("a read", server.request(Method::GET, &path)),
        ("a create's retry", create()),
    ] {
        let resp = fetch(request).await.expect("an answer during the outage");
        assert_eq!(
            resp.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what} during a DynamoDB outage ({}): {}\n--- server stderr ---\n{}",
            proxy.counts().summary(),
            resp.text,
            server.stderr_tail()
        );
        assert!(
            resp.headers.contains_key("retry-after"),
            "a 503 says when to retry: {}",
            resp.text
        );
    }
    assert!(
        proxy.counts().injected() > 0,
        "no fault injected: {}",
        proxy.counts().summary()
    );

    proxy.set_enabled(false);
    let mut tally = Tally::default();
    let read = send_retrying(&server, &mut tally, || server.request(Method::GET, &path)).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    let replayed = send_retrying(&server, &mut tally, create).await;
    assert_eq!(replayed.status, StatusCode::CREATED, "{}", replayed.text);
    assert_eq!(
        replayed.json()["adId"],
        read.json()["adId"],
        "{}",
        replayed.text
    );
}

aws_only!(
    faults_lose_no_write_and_duplicate_no_block,
    an_outage_is_503_with_retry_after_never_500
);
