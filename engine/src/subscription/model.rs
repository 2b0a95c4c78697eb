//! The subscription record: filter, start, sink, state, checkpoint and failure policy.

use serde::{Deserialize, Serialize};

use crate::feed::{FeedFilter, Position};

use super::sink::{PreviousSecret, Sink};

/// Events sent in one webhook request unless the subscription says otherwise.
pub const DEFAULT_BATCH_SIZE: u32 = 1;
/// How long one webhook request may take unless the subscription says otherwise.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Attempts per delivery (the first one included) unless the subscription says otherwise.
pub const DEFAULT_ATTEMPTS: u32 = 8;
/// Event ids a dead-letter list keeps; older ones are dropped first (the journal still
/// holds every payload, so a seek can replay them).
pub const MAX_DEAD_LETTERS: usize = 10_000;

/// A durable named reader of the feed and where it delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// Unique; 1–64 characters of `[A-Za-z0-9_.-]` (see [`valid_name`]).
    pub name: String,
    /// Only these event `type`s (empty: all).
    #[serde(default)]
    pub types: Vec<String>,
    /// Only this publisher's ad events.
    #[serde(default)]
    pub publisher_id: Option<String>,
    /// Where events go.
    pub sink: Sink,
    /// Whether it delivers.
    pub state: SubscriptionState,
    /// What happens to an event whose retries ran out.
    pub on_failure: FailurePolicy,
    /// The next event not yet acknowledged by the sink (text form of [`Position`]).
    #[serde(with = "position_text")]
    pub checkpoint: Position,
    /// Raised by every seek; a checkpoint write from an older epoch is refused, so a
    /// delivery running across a seek cannot undo it.
    pub epoch: u64,
    /// Raised by every stored write; writes name the revision they read (optimistic
    /// concurrency, a conditional write on DynamoDB).
    pub revision: u64,
    /// Ids of events given up on (policy `deadLetter`), oldest first; the journal holds
    /// their payloads.
    #[serde(default)]
    pub dead_letters: Vec<String>,
    /// Why the sink last failed, for operators.
    #[serde(default)]
    pub last_error: Option<String>,
}

impl Subscription {
    /// The feed filter of this subscription.
    pub fn filter(&self) -> FeedFilter {
        FeedFilter {
            types: self.types.clone(),
            publisher_id: self.publisher_id.clone(),
        }
    }

    /// Adds ids to the dead-letter list, keeping it at most [`MAX_DEAD_LETTERS`] long.
    pub fn dead_letter(&mut self, ids: impl IntoIterator<Item = String>) {
        self.dead_letters.extend(ids);
        let excess = self.dead_letters.len().saturating_sub(MAX_DEAD_LETTERS);
        self.dead_letters.drain(..excess);
    }
}

/// Whether a subscription's name is acceptable: it appears in URLs and storage keys.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A Standard Webhooks endpoint.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSink {
    /// `http://` or `https://` URL events are POSTed to.
    pub url: String,
    /// `whsec_` followed by the base64 key; signs every request.
    pub secret: String,
    /// Events per request: 1 sends one CloudEvent (`application/cloudevents+json`), more
    /// send a batch (`application/cloudevents-batch+json`).
    pub batch_size: u32,
    /// Request timeout in milliseconds.
    pub timeout_ms: u64,
    /// Retries of a failed request.
    pub retry: RetrySchedule,
    /// The secret the last rotation replaced, signing too until its grace period ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.url)
            .field("batch_size", &self.batch_size)
            .field("timeout_ms", &self.timeout_ms)
            .field("retry", &self.retry)
            .field("previous_secret", &self.previous_secret)
            .finish_non_exhaustive()
    }
}

/// Exponential backoff with jitter: attempt `n` (from 1) waits a random time in
/// `[d/2, d]` with `d = min(initial * 2^(n-1), max)` before the next one, or the sink's
/// `Retry-After` if that is longer (capped at `max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RetrySchedule {
    /// Attempts in all, the first one included (at least 1).
    pub attempts: u32,
    /// The first backoff, in milliseconds.
    pub initial_backoff_ms: u64,
    /// The longest backoff, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule {
            attempts: DEFAULT_ATTEMPTS,
            initial_backoff_ms: 500,
            max_backoff_ms: 300_000,
        }
    }
}

/// Whether a subscription delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SubscriptionState {
    /// Delivering.
    Active,
    /// Stopped by an operator (resume to continue).
    Paused,
    /// Stopped because an event's retries ran out under policy `block` (resume retries it).
    Blocked,
    /// Stopped because the sink answered 410 Gone (resume to start again).
    Disabled,
}

/// What happens to an event whose retries ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum FailurePolicy {
    /// Its id goes to the dead-letter list and delivery goes on.
    #[default]
    DeadLetter,
    /// The subscription stops at it (state `blocked`), so nothing is ever skipped.
    Block,
}

/// A [`Position`] stored as its text (`""` at the start of the journal).
mod position_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use crate::feed::Position;

    pub fn serialize<S: Serializer>(position: &Position, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&position.token().unwrap_or_default())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Position, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(Position::START);
        }
        Position::parse(&text).ok_or_else(|| D::Error::custom(format!("bad position {text:?}")))
    }
}
