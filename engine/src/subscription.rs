//! Durable named subscriptions to the ledger feed: what a subscription is, and the port
//! that keeps subscriptions beside the journal.
//!
//! A subscription is a reader of the feed whose position (its checkpoint) the server
//! keeps, so delivery to its sink resumes where it stopped after a restart or a crash.
//! The rules every store enforces are written once here ([`check_replace`]): writes are
//! conditional on the record's `revision`, and the checkpoint never moves backwards
//! except through an explicit seek, which raises the `epoch`.
//!
//! # Layout
//!
//! - `model`: [`Subscription`], its sink, state and failure policy.
//! - `sink`: [`Sink`]: a webhook or an EventBridge bus, their retry schedule; a webhook
//!   secret being rotated.
//! - `store`: the [`SubscriptionStore`] port and its contract.
//! - `memory`: `MemorySubscriptionStore`, for tests and the `memory` backend.
//! - `saving`: [`CheckpointSaves`], when a deliverer saves its checkpoint.
//! - `rebase`: [`rebase`] and [`save_progress`]: a deliverer's progress kept across an
//!   operator's change.

#[cfg(any(test, feature = "memory"))]
mod memory;
mod model;
mod rebase;
mod saving;
mod sink;
mod store;

pub use model::{FailurePolicy, MAX_DEAD_LETTERS, Subscription, SubscriptionState, valid_name};
pub use rebase::{rebase, save_progress};
pub use saving::{CheckpointSaves, MAX_UNSAVED_EVENTS, SAVE_INTERVAL, SLOW_REQUEST};
pub use sink::{
    DEFAULT_ATTEMPTS, DEFAULT_BATCH_SIZE, DEFAULT_MAX_ENTRY_BYTES, DEFAULT_TIMEOUT_MS,
    EventBridgeSink, PreviousSecret, RetrySchedule, Sink, WebhookSink,
};
pub use store::{SubscriptionStore, check_replace};

#[cfg(any(test, feature = "memory"))]
pub use memory::MemorySubscriptionStore;
