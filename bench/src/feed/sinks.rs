//! The webhook rows: creates/s with no subscription and with three active webhook
//! sinks (A, then B, then A again, so drift over the run does not favour either), and
//! one sink's delivery rate over a backlog, unbatched and batched, next to the rate at
//! which one sequential client of the bench POSTs the same bodies to the same receiver
//! (the ceiling for a deliverer that sends one request at a time).

use std::sync::Arc;
use std::time::Duration;

use reqwest::Client;
use tokio::time::Instant;

use super::admin::{subscribe, unsubscribe};
use super::receiver::{Receiver, count_events};
use crate::operations::Create;
use crate::phase::Plan;
use crate::report::Report;

/// Creates/s without and with three sinks.
#[derive(Debug, Clone)]
pub struct SinkCost {
    /// The two runs without a subscription.
    pub without: [f64; 2],
    /// The run with three.
    pub with_three: f64,
    /// Events the receiver got during the run with three (of 3 × creates).
    pub delivered_during: u64,
    /// Requests that carried them.
    pub requests_during: u64,
    /// Creates per run.
    pub creates: u64,
}

/// Runs the three create phases; `batch` is the sinks' batch size.
pub async fn cost(
    report: &mut Report,
    base: &str,
    plan: &Plan,
    seed: u64,
    receiver: &Receiver,
    batch: u32,
) -> Result<SinkCost, String> {
    let rate = |report: &Report| report.phases.last().map_or(0.0, |p| p.throughput());
    crate::measure(
        report,
        "sinks0-a",
        Arc::new(Create::measured(base, seed)),
        plan,
    )
    .await;
    let first = rate(report);
    let names = ["bench-sink-0", "bench-sink-1", "bench-sink-2"];
    for name in names {
        subscribe(&plan.client, base, name, &receiver.url, "end", batch).await?;
    }
    let (before, requests_before) = (receiver.events(), receiver.requests());
    crate::measure(
        report,
        "sinks3",
        Arc::new(Create::preload(base, seed)),
        plan,
    )
    .await;
    let with_three = rate(report);
    let delivered_during = receiver.events() - before;
    let requests_during = receiver.requests() - requests_before;
    for name in names {
        unsubscribe(&plan.client, base, name).await?;
    }
    crate::measure(report, "sinks0-b", Arc::new(Create::soak(base, seed)), plan).await;
    let second = rate(report);
    Ok(SinkCost {
        without: [first, second],
        with_three,
        delivered_during,
        requests_during,
        creates: plan.requests,
    })
}

/// One sink's delivery of a backlog.
#[derive(Debug, Clone, Copy)]
pub struct Delivered {
    /// Events counted.
    pub events: u64,
    /// From the subscription's creation to the last of them received.
    pub elapsed: Duration,
    /// Requests the receiver got meanwhile.
    pub requests: u64,
}

impl Delivered {
    /// Events per second.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Subscribes from the beginning with batches of `batch` and times the receipt of the
/// first `events` events.
pub async fn backlog(
    client: &Client,
    base: &str,
    receiver: &Receiver,
    batch: u32,
    events: u64,
    limit: Duration,
) -> Result<Delivered, String> {
    let name = format!("bench-backlog-{batch}");
    // Late requests of an earlier subscription must not count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (before, requests_before) = (receiver.events(), receiver.requests());
    let started = Instant::now();
    subscribe(client, base, &name, &receiver.url, "beginning", batch).await?;
    let deadline = started + limit;
    let outcome = loop {
        let got = receiver.events() - before;
        if got >= events {
            break Ok(Delivered {
                events: got,
                elapsed: started.elapsed(),
                requests: receiver.requests() - requests_before,
            });
        }
        if Instant::now() >= deadline {
            break Err(format!(
                "subscription {name} delivered {got} of {events} events in {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    unsubscribe(client, base, &name).await?;
    outcome
}

/// The same bodies POSTed by one sequential client: `requests` requests of the first
/// `batch` events of the feed (one event alone when `batch` is 1, as a sink sends it).
pub async fn sequential_posts(
    base: &str,
    receiver: &Receiver,
    batch: u32,
    requests: u64,
) -> Result<Delivered, String> {
    let client = crate::phase::client(1)?;
    let page = client
        .get(format!("{base}/ledger/events?limit={batch}"))
        .send()
        .await
        .map_err(|e| format!("GET /ledger/events: {}", crate::phase::chain(&e)))?
        .bytes()
        .await
        .map_err(|e| format!("GET /ledger/events: {}", crate::phase::chain(&e)))?;
    let (body, content_type) = if batch == 1 {
        let text = page.strip_prefix(b"[").and_then(|t| t.strip_suffix(b"]"));
        (
            text.map(<[u8]>::to_vec)
                .ok_or("the feed page is not an array")?,
            "application/cloudevents+json",
        )
    } else {
        (page.to_vec(), "application/cloudevents-batch+json")
    };
    let per_request = count_events(&body);
    let started = Instant::now();
    for _ in 0..requests {
        let answer = client
            .post(&receiver.url)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .map_err(|e| format!("POST to the receiver: {}", crate::phase::chain(&e)))?;
        if !answer.status().is_success() {
            return Err(format!("the receiver answered {}", answer.status()));
        }
    }
    Ok(Delivered {
        events: per_request * requests,
        elapsed: started.elapsed(),
        requests,
    })
}
