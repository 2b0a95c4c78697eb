//! The ledger feed: every committed revision as a CloudEvents 1.0 event, in journal
//! order, gapless and replayable from any position, with periodic digest events, and a
//! verifier a consumer runs to check that what it received is the journal.
//!
//! The journal is the outbox: events are derived from committed blocks on every read and
//! nothing is written for them, so commits never wait for a reader.
//!
//! # Layout
//!
//! - [`event`](CloudEvent): the event type and its `type` names.
//! - [`position`](Position): event ids and where a reader stands.
//! - `read`: events from stored blocks, one bounded page at a time ([`read_page`]).
//! - `digest_event`: the periodic digest event ([`DigestEventData`]).
//! - `verify`: the consumer's verifier ([`FeedVerifier`]).

mod digest_event;
mod event;
mod position;
mod read;
mod verify;

pub use digest_event::{DigestConsistency, DigestEventData, is_digest_block};
pub use event::{
    AD_CREATED, AD_DELETED, AD_UPDATED, CloudEvent, EVENT_TYPES, LEDGER_DIGEST, SPEC_VERSION,
};
pub use position::{EventId, MAX_EVENT_INDEX, Position};
pub use read::{
    DEFAULT_DIGEST_EVERY, DEFAULT_MAX_SCAN_BLOCKS, FeedFilter, FeedOptions, FeedPage, event_type,
    ledger_source, read_page,
};
pub use verify::{FeedError, FeedSummary, FeedVerifier};

#[cfg(test)]
mod tests;
