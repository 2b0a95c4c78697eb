//! The adledger engine: an event-sourced, hash-chained ledger of classified ads that is
//! independent of any storage technology.
//!
//! # Layout
//!
//! - Domain: [`ad`] (fields and validation), [`command`], [`revision`].
//! - Journal format: [`codec`] (canonical Ion encoding), [`block`] (framing, hashing,
//!   sealing), [`hash`], [`merkle`] (RFC 9162 tree over block hashes).
//! - Ports: [`ports`] — the `Journal`, `StateStore`, `SearchIndex`, `Clock` and
//!   `IdGenerator` traits that backends implement.
//! - Write path: [`committer`] — the single writer that batches commands into one durable
//!   append (group commit).
//! - Read path: [`projection`] — catch-up projections into the read models.
//! - Front door: [`ledger`] — commands, reads with read-your-writes, history, digests.
//! - Test support: `testkit` (feature `testkit`) — the conformance suite every backend runs.

pub mod ad;
pub mod block;
pub mod clock;
pub mod codec;
pub mod command;
mod committer;
pub mod currency;
pub mod error;
pub mod hash;
pub mod ids;
pub mod ledger;
pub mod merkle;
pub mod ports;
pub mod projection;
pub mod proof;
pub mod revision;
pub mod time;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use ad::{Ad, AdDraft, AdKey, AdPatch};
pub use command::{Command, Outcome};
pub use error::{Error, Result, VersionExpectation};
pub use hash::Hash;
pub use ledger::{Digest, Ledger, LedgerOptions, TimeRange};
pub use ports::{AdState, Journal, Ports, SearchIndex, SearchPage, SearchQuery, StateStore};
pub use revision::{EventKind, Revision};
