//! Commit acknowledgement → SSE receipt: `clients` streams open at the journal's tip
//! while a writer commits ads at a fixed rate; each stream notes when each ad's event
//! arrives, the writer when each create was acknowledged (its whole answer read).
//!
//! The baseline, measured in the same window on the same loaded machine, is the latency
//! of `GET /healthz` by one more client probing every 10 ms: one round trip to the
//! server under this load, the least any notification can take, so the ratio says how
//! much the feed adds to the server simply answering. (The commit latency itself is
//! reported beside it but is no baseline: it is dominated by the fsync the event comes
//! after.)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Client;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::sse::{SseStream, subject_ad_id};
use crate::rng::Rng;
use crate::workload;

/// How much of it to run.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// SSE clients.
    pub clients: usize,
    /// Creates per second.
    pub rate: u64,
    /// How long the writer runs.
    pub duration: Duration,
    /// Seed of the ads.
    pub seed: u64,
}

/// What the window measured.
#[derive(Debug, Clone)]
pub struct Latencies {
    /// Ack → receipt of every (client, event) pair received, sorted; a receipt that
    /// came before the writer had read the create's answer counts as zero.
    pub receipts: Vec<Duration>,
    /// Of them, receipts before the ack.
    pub early: u64,
    /// (client, event) pairs never received.
    pub missing: u64,
    /// Commits acknowledged, and the rate achieved.
    pub commits: u64,
    /// Commits per second achieved.
    pub commit_rate: f64,
    /// Their latency (send → answer read), sorted.
    pub commit_latencies: Vec<Duration>,
    /// `/healthz` latencies in the same window, sorted.
    pub healthz: Vec<Duration>,
    /// Creates that failed.
    pub errors: u64,
}

/// The stream tasks' ends: when each ad's event arrived.
type Receipts = Vec<(u128, Instant)>;

/// Runs the window against the server at `base`.
pub async fn measure(client: &Client, base: &str, load: Load) -> Result<Latencies, String> {
    let (blocks, _, _) = super::admin::progress(client, base).await?;
    let stream_url = match blocks.checked_sub(1) {
        Some(last) => format!("{base}/ledger/events/stream?after={last}"),
        None => format!("{base}/ledger/events/stream"),
    };
    let streams_client = crate::phase::client(load.clients + 1)?;
    let (stop, stopped) = watch::channel(false);
    let mut readers = Vec::with_capacity(load.clients);
    let mut counters = Vec::with_capacity(load.clients);
    for _ in 0..load.clients {
        let mut stream = SseStream::open(&streams_client, &stream_url).await?;
        let counter = Arc::new(AtomicU64::new(0));
        counters.push(counter.clone());
        let mut stopped = stopped.clone();
        readers.push(tokio::spawn(async move {
            let mut seen: Receipts = Vec::new();
            loop {
                let next = tokio::select! {
                    next = stream.next() => next,
                    _ = stopped.changed() => return Ok(seen),
                };
                match next? {
                    None => return Ok(seen),
                    Some(event) if event.kind.is_some() => {
                        return Err(format!(
                            "a stream ended with `event: {}`: {}",
                            event.kind.unwrap_or_default(),
                            String::from_utf8_lossy(&event.data)
                        ));
                    }
                    Some(event) => {
                        let at = Instant::now();
                        if let Some(id) = subject_ad_id(&event.data).and_then(ulid_bits) {
                            seen.push((id, at));
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    crate::progress(&format!(
        "feed: {} SSE clients at the tip; {} creates/s for {:.0} s",
        load.clients,
        load.rate,
        load.duration.as_secs_f64()
    ));

    let (stop_probe, probe_stopped) = watch::channel(false);
    let probe = tokio::spawn(probe_healthz(
        client.clone(),
        base.to_string(),
        probe_stopped,
    ));
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / load.rate.max(1) as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = load.rate * load.duration.as_secs();
    let mut writes = Vec::with_capacity(total as usize);
    for index in 0..total {
        ticks.tick().await;
        let client = client.clone();
        let url = format!("{base}/publisher/{}/ad", workload::publisher_of(index));
        let body = workload::ad_body(&mut Rng::for_request(load.seed, 21, index));
        writes.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = client.post(url).json(&body).send().await.ok()?;
            if !answer.status().is_success() {
                return None;
            }
            let ad: Value = answer.json().await.ok()?;
            let acked = Instant::now();
            let id = ad.get("adId").and_then(Value::as_str).and_then(ulid_bits)?;
            Some((id, acked, acked - sent))
        }));
    }
    let mut acks = HashMap::with_capacity(writes.len());
    let mut commit_latencies = Vec::with_capacity(writes.len());
    let mut errors = 0;
    for write in writes {
        match write.await {
            Ok(Some((id, acked, latency))) => {
                acks.insert(id, acked);
                commit_latencies.push(latency);
            }
            _ => errors += 1,
        }
    }
    let commit_rate = acks.len() as f64 / started.elapsed().as_secs_f64();
    let _ = stop_probe.send(true);

    // Every stream should see every acknowledged commit; give them a moment.
    let wanted = acks.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && counters.iter().any(|c| c.load(Ordering::Relaxed) < wanted) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let mut healthz = probe
        .await
        .map_err(|e| format!("the /healthz probe: {e}"))?;
    let mut receipts = Vec::with_capacity(acks.len() * load.clients);
    let mut early = 0;
    let mut received = 0u64;
    for reader in readers {
        let seen = reader
            .await
            .map_err(|e| format!("an SSE client task: {e}"))??;
        for (id, at) in seen {
            if let Some(acked) = acks.get(&id) {
                received += 1;
                if at < *acked {
                    early += 1;
                }
                receipts.push(at.saturating_duration_since(*acked));
            }
        }
    }
    receipts.sort_unstable();
    commit_latencies.sort_unstable();
    healthz.sort_unstable();
    Ok(Latencies {
        receipts,
        early,
        missing: (wanted * load.clients as u64).saturating_sub(received),
        commits: wanted,
        commit_rate,
        commit_latencies,
        healthz,
        errors,
    })
}

/// `GET /healthz` every 10 ms until told to stop; the latencies.
async fn probe_healthz(
    client: Client,
    base: String,
    mut stopped: watch::Receiver<bool>,
) -> Vec<Duration> {
    let url = format!("{base}/healthz");
    let mut latencies = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => return latencies,
        }
        let sent = Instant::now();
        if let Ok(answer) = client.get(&url).send().await
            && answer.status().is_success()
            && answer.bytes().await.is_ok()
        {
            latencies.push(sent.elapsed());
        }
    }
}

/// An ad id as its 128 bits (cheaper to keep and compare than the text).
fn ulid_bits(text: &str) -> Option<u128> {
    ulid::Ulid::from_string(text).ok().map(u128::from)
}
