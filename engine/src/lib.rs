//! The adledger engine: an event-sourced, hash-chained ledger of classified ads that is
//! independent of any storage technology.
//!
//! # Layout
//!
//! - Domain: [`ad`] (fields and validation), [`command`], [`revision`], [`actor`] (who
//!   committed a change).
//! - Values: [`hash`] ([`Hash`](struct@Hash)), [`digest`] ([`Digest`], and the digest at a sequence
//!   without a running ledger), [`time`] ([`TimeRange`], millisecond UTC), [`ids`],
//!   [`currency`].
//! - Journal format: [`codec`] (canonical Ion encoding; its one pair of decoders takes a
//!   private fast path for canonical bytes and falls back to ion-rs), [`block`] (framing,
//!   hashing, sealing, and [`block::open`], the one way to read a block), [`merkle`]
//!   (RFC 9162 tree over block hashes), [`proof`] (inclusion and consistency proofs) and
//!   [`evidence`] (a revision with everything an auditor needs to check it).
//! - Chain checks: `chain` (internal) — the per-block checks (sequence, frame, header,
//!   `previousHash`, revision hashes, Merkle frontier), written once and run in parallel
//!   batches with the next batch read meanwhile; [`verify`], [`import`] and [`rebuild`]
//!   all use it.
//! - Ports: [`ports`] — the `Journal`, `StateStore`, `SearchIndex`, `Clock` and
//!   `IdGenerator` traits that backends implement, and `ProjectionLease` with `Sharing`
//!   for storage several server processes share (the AWS backend).
//! - Write path: `committer` (internal; its cache of ad heads, bounded in bytes and count,
//!   is `head_cache`) — the single writer that batches commands into one durable
//!   append (group commit).
//! - Read path: [`projection`] — catch-up projections into the read models.
//! - Startup integrity: [`high_water`] — the journal must still reach what its read models
//!   have seen (a shorter journal lost acknowledged blocks).
//! - Front door: [`ledger`] — commands, reads with read-your-writes, history, digests;
//!   [`history`] — one ad's history in bounded pieces (pages, the revision at a time).
//! - Maintenance, all through the ports so they work on every backend: [`replay`] (one
//!   ad, optionally over a time range), [`rebuild`] (both read models from the journal,
//!   verifying the chain, resumable), [`diff`] (two state stores compared), [`snapshot`]
//!   (state at a sequence plus its digest; restore + tail), [`export`] / [`import`]
//!   (block frames and the digest, Ion or JSON lines), [`verify`] (the whole journal,
//!   naming the first bad sequence, ad, version and field). Internal: `batch` (the
//!   append-batch building the committer and import share) and `lookup` (one revision
//!   read from a reference to it).
//! - Test support: `testkit` (feature `testkit`) — the conformance suite every backend runs;
//!   `memory` (feature `memory`) — the in-memory backend, zero I/O, for unit tests.

#![warn(missing_docs)]

pub mod actor;
pub mod ad;
pub mod ad_view;
mod batch;
pub mod block;
mod chain;
pub mod clock;
pub mod codec;
pub mod command;
mod committer;
pub mod currency;
pub mod diff;
pub mod digest;
pub mod error;
pub mod evidence;
pub mod export;
pub mod feed;
pub mod hash;
mod head_cache;
pub mod high_water;
pub mod history;
pub mod ids;
pub mod import;
pub mod ledger;
mod lookup;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod merkle;
pub mod ports;
pub mod projection;
pub mod proof;
pub mod rebuild;
mod recent;
pub mod replay;
pub mod revision;
pub mod revision_view;
pub mod snapshot;
pub mod subscription;
pub mod time;
pub mod verify;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use actor::Actor;
pub use ad::{Ad, AdDraft, AdKey, AdPatch};
pub use batch::idempotency_record;
pub use command::{Command, Outcome};
pub use digest::Digest;
pub use error::{Error, Result, VersionExpectation};
pub use hash::Hash;
pub use ledger::{Ledger, LedgerOptions, SearchAnswer};
pub use ports::{
    AdState, IndexedVersion, Journal, Ports, SearchIndex, SearchJsonPage, SearchPage, SearchQuery,
    StateStore,
};
pub use revision::{EventKind, Revision};
pub use time::TimeRange;
