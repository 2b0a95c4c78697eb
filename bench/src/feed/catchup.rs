//! Catch-up reads of a big journal by one client: by pull (`GET /ledger/events`, pages
//! of 1,000, one after the other) and by SSE (one stream from the start), each until it
//! has every event; every event id must come after the one before.

use std::time::Duration;

use reqwest::Client;
use tokio::time::Instant;

use super::receiver::count_events;
use super::sse::SseStream;

/// Events per pull page (the route's maximum).
const PAGE: usize = 1000;

/// One reader's run.
#[derive(Debug, Clone, Copy)]
pub struct Read {
    /// Events read.
    pub events: u64,
    /// Body bytes read.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Requests (pull) or 1 (SSE).
    pub requests: u64,
}

impl Read {
    /// Events per second.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Pages through the whole feed.
pub async fn pull(client: &Client, base: &str, limit: Duration) -> Result<Read, String> {
    let started = Instant::now();
    let mut after: Option<String> = None;
    let (mut events, mut bytes, mut requests) = (0u64, 0u64, 0u64);
    loop {
        let url = match &after {
            Some(a) => format!("{base}/ledger/events?limit={PAGE}&after={a}"),
            None => format!("{base}/ledger/events?limit={PAGE}"),
        };
        let answer = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", crate::phase::chain(&e)))?;
        let status = answer.status();
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (position, at_tip) = (header("feed-position"), header("feed-at-tip"));
        let body = answer
            .bytes()
            .await
            .map_err(|e| format!("GET {url}: {}", crate::phase::chain(&e)))?;
        if !status.is_success() {
            return Err(format!(
                "GET {url} answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        requests += 1;
        events += count_events(&body);
        bytes += body.len() as u64;
        if at_tip.as_deref() == Some("true") {
            break;
        }
        if position.is_none() || position == after {
            return Err(format!(
                "GET {url} did not advance (Feed-Position {position:?})"
            ));
        }
        after = position;
        if started.elapsed() > limit {
            return Err(format!(
                "the pull read {events} events in {limit:?} and stopped"
            ));
        }
    }
    Ok(Read {
        events,
        bytes,
        elapsed: started.elapsed(),
        requests,
    })
}

/// Reads one stream from the start until it has `events` events.
pub async fn stream(
    client: &Client,
    base: &str,
    events: u64,
    limit: Duration,
) -> Result<Read, String> {
    let started = Instant::now();
    let mut stream = SseStream::open(client, &format!("{base}/ledger/events/stream")).await?;
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut last = String::new();
    let read = async {
        while count < events {
            let Some(event) = stream.next().await? else {
                return Err(format!("the stream ended after {count} of {events} events"));
            };
            if let Some(kind) = event.kind {
                return Err(format!(
                    "the stream sent `event: {kind}` after {count} events: {}",
                    String::from_utf8_lossy(&event.data)
                ));
            }
            // Ids are fixed-width, so they sort as text in journal order.
            if event.id <= last {
                return Err(format!("event {} came after {last}", event.id));
            }
            count += 1;
            bytes += event.data.len() as u64;
            last = event.id;
        }
        Ok(())
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| format!("the stream read {count} of {events} events in {limit:?}"))??;
    Ok(Read {
        events: count,
        bytes,
        elapsed: started.elapsed(),
        requests: 1,
    })
}
