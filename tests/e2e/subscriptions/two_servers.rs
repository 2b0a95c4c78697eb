//! Subscriptions on two `adledger serve --backend aws` processes sharing one DynamoDB
//! ledger: exactly one delivers (the holder of the projector lease, which
//! each says in `/metrics`), and when it is killed the other takes over.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{Receiver, SECRET, TOKEN, feed_ids, retry, subscribe, subscription};
use crate::support::assert_no_gap;
use crate::support::{Backend, Server, aws_only, json_body};

/// Whether `server` says (`/metrics`) it delivers subscriptions (holds the projector lease).
async fn delivers(server: &Server) -> bool {
    let resp = server.get("/metrics").await;
    resp.expect_status(StatusCode::OK);
    resp.text
        .lines()
        .any(|line| line.trim() == "adledger_subscription_delivery_holder 1")
}

/// Polls until exactly one of `servers` delivers; answers its index.
async fn single_deliverer(servers: &[&Server], limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let mut holding = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            if delivers(server).await {
                holding.push(i);
            }
        }
        assert!(
            holding.len() <= 1,
            "two processes deliver at once: {holding:?}"
        );
        if let [one] = holding[..] {
            return one;
        }
        assert!(
            Instant::now() < deadline,
            "no process took the projector lease within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates `n` ads through `servers` in turn, retrying a 503 (the two processes race for
/// the journal's tip; the loser appended nothing) a bounded number of times.
async fn create_ads_through(servers: &[&Server], n: usize, tag: &str) {
    for i in 0..n {
        let server = servers[i % servers.len()];
        let body = json!({"adTitle": format!("{tag} {i}"), "price": "1.00"});
        let key = format!("{tag}-{i}");
        let mut attempt = 0;
        loop {
            let resp = server
                .send(
                    json_body(server.request(Method::POST, "/publisher/subs/ad"), &body)
                        .header("idempotency-key", key.as_str()),
                )
                .await;
            if resp.status == StatusCode::SERVICE_UNAVAILABLE && attempt < 10 {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                continue;
            }
            resp.expect_status(StatusCode::CREATED);
            break;
        }
    }
}

/// The journal's ad events, in order, read through `server`; waits (bounded) until it
/// has seen `at_least` of them (a server learns the other's writes by its tip poll).
async fn journal_ids(server: &Server, at_least: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ids = feed_ids(server).await;
        if ids.len() >= at_least {
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "the feed shows {} of {at_least} events",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The lease of the two-server test, short so the takeover is quick.
const LEASE: Duration = Duration::from_secs(3);

/// Two servers on one DynamoDB ledger and one webhook subscription: exactly one process
/// delivers; writes through both arrive in journal order with no gap and no duplicate;
/// after kill -9 of the delivering process the other takes over within the lease (plus
/// its retry and supervision), keeping order, with duplicates only since the last saved
/// checkpoint.
async fn two_servers_deliver_once_and_take_over_after_kill_9() {
    let mut args = Backend::Aws.fresh_ledger("subs-two").await;
    for arg in [
        "--admin-token",
        TOKEN,
        "--lease-ms",
        &LEASE.as_millis().to_string(),
    ] {
        args.push(arg.to_string());
    }
    let mut servers = [
        Server::start_with(None, &args).await,
        Server::start_with(None, &args).await,
    ];
    let (receiver, url) = Receiver::start().await;
    subscribe(
        &servers[1],
        json!({"name": "shared", "start": "beginning",
               "sink": {"type": "webhook", "url": url, "secret": SECRET, "retry": retry(5)}}),
    )
    .await;
    let holder = single_deliverer(&[&servers[0], &servers[1]], Duration::from_secs(20)).await;
    println!("server {holder} delivers");

    // Both live: every event once, in journal order.
    create_ads_through(&[&servers[0], &servers[1]], 30, "live").await;
    let expected = journal_ids(&servers[0], 30).await;
    receiver
        .wait_for_acks(expected.len(), Duration::from_secs(30))
        .await;
    let acked = receiver.acknowledged();
    assert_eq!(
        assert_no_gap(&acked, &expected),
        0,
        "no duplicate while both live"
    );
    assert_eq!(acked, expected);
    assert_eq!(
        single_deliverer(&[&servers[0], &servers[1]], Duration::from_secs(1)).await,
        holder,
        "the delivering process kept its lease"
    );

    // Kill the deliverer mid-delivery (a slow receiver keeps it busy).
    *receiver.delay.lock().expect("receiver state lock") = Some(Duration::from_millis(100));
    create_ads_through(&[&servers[0], &servers[1]], 40, "busy").await;
    receiver
        .wait_for_acks(expected.len() + 5, Duration::from_secs(30))
        .await;
    servers[holder].kill_9().await;
    let killed = Instant::now();
    let acked_at_kill = receiver.seen().len();
    let survivor = &servers[1 - holder];
    *receiver.delay.lock().expect("receiver state lock") = None;
    create_ads_through(&[survivor], 10, "after").await;
    let expected = journal_ids(survivor, 80).await;
    assert_eq!(
        expected.len(),
        80,
        "80 ad events (the first digest event is at block 100)"
    );
    receiver
        .wait_for_acks(expected.len(), Duration::from_secs(60))
        .await;
    let seen = receiver.seen();
    let resumed = seen[acked_at_kill..]
        .iter()
        .find(|s| s.at > killed)
        .map(|s| s.at.duration_since(killed))
        .expect("deliveries after the kill");
    println!("first delivery by the survivor {resumed:?} after kill -9 (lease {LEASE:?})");
    // The killed grant lapses at most LEASE after the kill; the survivor tries again at
    // that moment (at least every 2 s) and its supervisor starts at once.
    assert!(
        resumed <= LEASE + Duration::from_secs(3),
        "took over {resumed:?} after the kill"
    );
    assert!(delivers(survivor).await, "the survivor holds the lease");
    let acked = receiver.acknowledged();
    let duplicates = assert_no_gap(&acked, &expected);
    // One event per request, each slower than the 10 ms that coalesces checkpoint saves
    // (the receiver waits 100 ms): at most the request in flight at the kill is repeated.
    assert!(duplicates <= 1, "{duplicates} duplicates after kill -9");
    assert!(receiver.seen().iter().all(|s| s.verified));
    let sub = subscription(survivor, "shared").await;
    assert_eq!(sub["state"], "active");
    println!("{duplicates} duplicate(s) after the takeover");
}

aws_only!(two_servers_deliver_once_and_take_over_after_kill_9);
