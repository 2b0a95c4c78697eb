//! The subscription record: filter, start, sink, state, checkpoint and failure policy.

use serde::{Deserialize, Serialize};

use crate::feed::{FeedFilter, Position};

use super::sink::Sink;

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
