//! Delivering feed events to an Amazon EventBridge bus: one `PutEvents` entry per event,
//! at most [`MAX_ENTRIES`] per call, `Detail` = the CloudEvent JSON.
//!
//! EventBridge answers each entry on its own. Entries it failed with `InternalFailure` or
//! `ThrottlingException` (and every entry of a call that failed as a whole) are sent again
//! with the sink's retry schedule; any other per-entry error, an entry over the sink's
//! `maxEntryBytes` (never sent), and an entry whose retries ran out, fail. Outcomes are
//! then applied in journal order: an accepted event moves the checkpoint past it, a failed
//! one is dead-lettered (and the checkpoint moves past it) or blocks the subscription
//! where it stands, per the subscription's failure policy. So the checkpoint only ever
//! moves past events EventBridge accepted or that were dead-lettered. Under `block`,
//! entries of the same call after the blocking one that EventBridge accepted are sent
//! again after a resume (at least once).
//!
//! The SDK client (`sdk`, feature `aws`) takes credentials, region and endpoint from the
//! standard AWS chain, including `AWS_ENDPOINT_URL_EVENTBRIDGE` / `AWS_ENDPOINT_URL`.
//! Without the feature the sink cannot be created, and a stored one blocks, saying why.

#[cfg(feature = "aws")]
mod sdk;

use std::future::Future;

use adledger_engine::feed::{CloudEvent, EventId, Position};
use adledger_engine::subscription::{
    EventBridgeSink, FailurePolicy, Subscription, SubscriptionState, SubscriptionStore,
    save_progress,
};
use adledger_engine::{Error, Result};

use crate::webhook::{self, Delivery};

#[cfg(feature = "aws")]
pub use sdk::Clients;

/// Entries per `PutEvents` call: EventBridge's limit.
pub const MAX_ENTRIES: usize = 10;
/// Bytes EventBridge counts for an entry's `Time`.
const TIME_BYTES: usize = 14;
/// Per-entry error codes worth sending again.
const RETRYABLE: [&str; 2] = ["InternalFailure", "ThrottlingException"];

/// Whether this build can deliver to EventBridge (feature `aws`).
pub const SUPPORTED: bool = cfg!(feature = "aws");

/// One `PutEvents` entry, built from a feed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The bus's name or ARN.
    pub event_bus_name: String,
    /// `Source`.
    pub source: String,
    /// `DetailType`.
    pub detail_type: String,
    /// `Detail`: the CloudEvent, as JSON.
    pub detail: String,
    /// `Time`: the event's `time` (RFC 3339), when it parses.
    pub time: Option<chrono::DateTime<chrono::Utc>>,
}

impl Entry {
    /// The entry built for `event`.
    pub fn new(sink: &EventBridgeSink, event: &CloudEvent) -> std::result::Result<Entry, String> {
        let detail =
            serde_json::to_string(event).map_err(|e| format!("cannot encode the event: {e}"))?;
        Ok(Entry {
            event_bus_name: sink.event_bus_name.clone(),
            source: sink.source.clone().unwrap_or_else(|| event.source.clone()),
            detail_type: sink
                .detail_type
                .clone()
                .unwrap_or_else(|| event.event_type.clone()),
            detail,
            time: chrono::DateTime::parse_from_rfc3339(&event.time)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc)),
        })
    }

    /// The entry's size as EventBridge counts it against its limit: `Time` (14 bytes when
    /// present), and the UTF-8 bytes of `Source`, `DetailType` and `Detail`.
    pub fn size(&self) -> usize {
        let time = if self.time.is_some() { TIME_BYTES } else { 0 };
        time + self.source.len() + self.detail_type.len() + self.detail.len()
    }
}

/// What EventBridge answered for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Accepted (it has an event id).
    Accepted,
    /// Refused, with EventBridge's error code and message.
    Failed {
        /// `ErrorCode`, e.g. `ThrottlingException` or `MalformedDetail`.
        code: String,
        /// `ErrorMessage`.
        message: String,
    },
}

/// A `PutEvents` call: the SDK's, or a script in tests.
pub trait PutEvents: Send + Sync {
    /// Sends `entries` in one call; the answers are in the entries' order, or the call
    /// failed as a whole (in words).
    fn put_events(
        &self,
        entries: &[Entry],
    ) -> impl Future<Output = std::result::Result<Vec<Answer>, String>> + Send;
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// EventBridge accepted it.
    Accepted,
    /// It is not delivered, and why.
    Failed(String),
}

/// Sends `events` (at most [`MAX_ENTRIES`]) to the sink's bus and answers each one's
/// outcome, in order: retryable failures are retried with the sink's schedule, only the
/// entries still pending are sent again.
pub async fn put_chunk<P: PutEvents>(
    put: &P,
    sink: &EventBridgeSink,
    events: &[CloudEvent],
) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
    let mut entries: Vec<Option<Entry>> = Vec::with_capacity(events.len());
    let limit = usize::try_from(sink.max_entry_bytes).unwrap_or(usize::MAX);
    for (i, event) in events.iter().enumerate() {
        match Entry::new(sink, event) {
            Ok(entry) if entry.size() <= limit => entries.push(Some(entry)),
            Ok(entry) => {
                outcomes[i] = Some(Outcome::Failed(format!(
                    "the entry is {} bytes, over maxEntryBytes ({limit}); not sent",
                    entry.size()
                )));
                entries.push(None);
            }
            Err(detail) => {
                outcomes[i] = Some(Outcome::Failed(detail));
                entries.push(None);
            }
        }
    }
    let attempts = sink.retry.attempts.max(1);
    let mut last_failure = vec![String::new(); events.len()];
    for attempt in 1..=attempts {
        let pending: Vec<usize> = (0..events.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        let batch: Vec<Entry> = pending.iter().filter_map(|&i| entries[i].clone()).collect();
        if batch.is_empty() {
            break;
        }
        match put.put_events(&batch).await {
            Ok(answers) if answers.len() == batch.len() => {
                for (&i, answer) in pending.iter().zip(answers) {
                    match answer {
                        Answer::Accepted => outcomes[i] = Some(Outcome::Accepted),
                        Answer::Failed { code, message } if RETRYABLE.contains(&code.as_str()) => {
                            last_failure[i] = format!("{code}: {message}");
                        }
                        Answer::Failed { code, message } => {
                            outcomes[i] = Some(Outcome::Failed(format!(
                                "EventBridge refused the entry: {code}: {message}"
                            )));
                        }
                    }
                }
            }
            Ok(answers) => {
                let detail = format!(
                    "EventBridge answered {} entries for {} sent",
                    answers.len(),
                    batch.len()
                );
                pending
                    .iter()
                    .for_each(|&i| last_failure[i] = detail.clone());
            }
            Err(detail) => pending
                .iter()
                .for_each(|&i| last_failure[i] = detail.clone()),
        }
        let retrying = outcomes.iter().filter(|o| o.is_none()).count();
        let accepted = pending
            .iter()
            .filter(|&&i| outcomes[i] == Some(Outcome::Accepted))
            .count();
        metrics::counter!("adledger_eventbridge_entries_total", "outcome" => "accepted")
            .increment(accepted as u64);
        metrics::counter!("adledger_eventbridge_entries_total", "outcome" => "retryable")
            .increment(retrying as u64);
        if retrying == 0 {
            break;
        }
        if attempt < attempts {
            tracing::warn!(bus = %sink.event_bus_name, attempt, retrying, "EventBridge entries failed; retrying");
            tokio::time::sleep(webhook::backoff(&sink.retry, attempt, None)).await;
        }
    }
    outcomes
        .into_iter()
        .zip(last_failure)
        .map(|(outcome, last)| {
            outcome.unwrap_or_else(|| {
                Outcome::Failed(format!("{attempts} attempts failed; the last: {last}"))
            })
        })
        .collect()
}

/// The position after `event`.
fn after(event: &CloudEvent) -> Result<Position> {
    EventId::parse(&event.id)
        .map(Position::after_event)
        .ok_or_else(|| {
            Error::Corrupt(format!(
                "the feed produced an unparsable event id {:?}",
                event.id
            ))
        })
}

/// Delivers one page of `sub`'s events to its EventBridge sink, saving the checkpoint
/// after each call, then moves it to `next` (past filtered-out blocks). Answers whether
/// delivery goes on (`false`: the subscription is blocked now, or a save found it sought
/// to or deleted: delivery starts again from the store).
pub async fn deliver_page(
    store: &dyn SubscriptionStore,
    clients: &Clients,
    sub: &mut Subscription,
    sink: &EventBridgeSink,
    events: &[CloudEvent],
    next: Position,
) -> Result<bool> {
    let put = match clients.connect(sink).await {
        Ok(put) => put,
        Err(detail) => {
            sub.last_error = Some(detail);
            sub.state = SubscriptionState::Blocked;
            save_progress(store, sub).await?;
            tracing::warn!(subscription = %sub.name, "EventBridge sink unusable; subscription blocked");
            return Ok(false);
        }
    };
    deliver_with(store, &put, sub, sink, events, next).await
}

/// [`deliver_page`] through `put`.
pub async fn deliver_with<P: PutEvents>(
    store: &dyn SubscriptionStore,
    put: &P,
    sub: &mut Subscription,
    sink: &EventBridgeSink,
    events: &[CloudEvent],
    next: Position,
) -> Result<bool> {
    for chunk in events.chunks(MAX_ENTRIES) {
        let outcomes = put_chunk(put, sink, chunk).await;
        for (event, outcome) in chunk.iter().zip(outcomes) {
            match outcome {
                Outcome::Accepted => {
                    sub.checkpoint = after(event)?;
                    sub.last_error = None;
                    metrics::counter!("adledger_subscription_events_delivered_total").increment(1);
                }
                Outcome::Failed(detail) => {
                    tracing::warn!(subscription = %sub.name, event = %event.id, %detail, "EventBridge delivery failed");
                    sub.last_error = Some(format!("event {}: {detail}", event.id));
                    if sub.on_failure == FailurePolicy::Block {
                        sub.state = SubscriptionState::Blocked;
                        save_progress(store, sub).await?;
                        tracing::warn!(subscription = %sub.name, "EventBridge entry failed; subscription blocked");
                        return Ok(false);
                    }
                    sub.dead_letter([event.id.clone()]);
                    sub.checkpoint = after(event)?;
                    metrics::counter!("adledger_subscription_events_dead_lettered_total")
                        .increment(1);
                }
            }
        }
        if !save_progress(store, sub).await? {
            return Ok(false);
        }
    }
    if next > sub.checkpoint {
        sub.checkpoint = next;
        return save_progress(store, sub).await;
    }
    Ok(true)
}

/// Sends one dead-lettered event again (with the sink's retries).
pub async fn redeliver(clients: &Clients, sink: &EventBridgeSink, event: &CloudEvent) -> Delivery {
    let put = match clients.connect(sink).await {
        Ok(put) => put,
        Err(detail) => return Delivery::Failed(detail),
    };
    match put_chunk(&put, sink, std::slice::from_ref(event))
        .await
        .pop()
    {
        Some(Outcome::Accepted) => Delivery::Acknowledged,
        Some(Outcome::Failed(detail)) => Delivery::Failed(detail),
        None => Delivery::Failed("no outcome".into()),
    }
}

/// Without the `aws` feature: no client, and a sink that says so.
#[cfg(not(feature = "aws"))]
#[derive(Debug, Clone, Default)]
pub struct Clients {}

#[cfg(not(feature = "aws"))]
impl Clients {
    /// Never a client: this build has no AWS SDK.
    pub async fn connect(
        &self,
        _sink: &EventBridgeSink,
    ) -> std::result::Result<Unsupported, String> {
        Err(NOT_BUILT.into())
    }
}

/// Why a build without the `aws` feature cannot deliver to EventBridge.
pub const NOT_BUILT: &str =
    "this adledger was built without the `aws` feature, so it cannot deliver to EventBridge";

/// The client of a build without EventBridge support (never built).
#[cfg(not(feature = "aws"))]
#[derive(Debug)]
pub struct Unsupported;

#[cfg(not(feature = "aws"))]
impl PutEvents for Unsupported {
    async fn put_events(&self, _entries: &[Entry]) -> std::result::Result<Vec<Answer>, String> {
        Err(NOT_BUILT.into())
    }
}

#[cfg(test)]
mod tests;
