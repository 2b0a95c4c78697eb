//! The in-memory backend: the journal and both read models held in this process's
//! memory, with zero I/O (feature `memory`).
//!
//! It exists for the same reason as object_store's `InMemory`: a user writing unit tests
//! against a [`Ledger`](crate::Ledger) wants the real engine over storage that needs no
//! directory, no service and no clean-up, and that behaves like the real backends. It
//! passes the whole conformance suite (`engine/tests/memory_conformance.rs`), so a test
//! that passes on it says something about the local and AWS backends too. Nothing
//! survives the process: the journal's durability promise holds only as long as the
//! [`MemoryBackend`] value lives.
//!
//! # Layout
//!
//! - `journal`: [`MemoryJournal`], the `Journal` port: conditional, atomic appends under
//!   one lock; [`MemoryJournal::tamper`] and [`MemoryJournal::inspect`] give tests the
//!   direct access to the stored blocks an operator with database access has.
//! - `state`: [`MemoryStateStore`], the `StateStore` port: an ordered map by ad key.
//! - `search`: [`MemorySearchIndex`], the `SearchIndex` port: a word matcher with the
//!   local backend's tokenisation (words, lower-cased, accents folded), filters and order.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use adledger_engine::memory::MemoryBackend;
//! use adledger_engine::{Ledger, LedgerOptions};
//!
//! let ledger = Ledger::open(MemoryBackend::new().ports(), LedgerOptions::default()).await?;
//! assert!(ledger.digest().await?.is_none());
//! # Ok::<(), adledger_engine::Error>(()) }).unwrap();
//! ```

mod journal;
mod search;
mod state;

use std::sync::Arc;

pub use journal::{MemoryJournal, MerkleReads, StoredBlocks};
pub use search::MemorySearchIndex;
pub use state::MemoryStateStore;

use crate::clock::SystemClock;
use crate::ids::UlidGenerator;
use crate::ports::Ports;

/// The three stores of one in-memory ledger.
///
/// Cloning is cheap and shares the stores: a clone kept by a test outlives a dropped
/// [`Ledger`](crate::Ledger), so the data can be opened again ("restarted") from it.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    /// The journal.
    pub journal: Arc<MemoryJournal>,
    /// The state read model.
    pub state: Arc<MemoryStateStore>,
    /// The search read model.
    pub search: Arc<MemorySearchIndex>,
}

impl MemoryBackend {
    /// Three new, empty stores.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// Ports over these stores with the system clock and random ids, shared with no other
    /// process. A test that needs reproducible times and ids builds [`Ports`] from the
    /// public fields with a [`LogicalClock`](crate::clock::LogicalClock) and a seeded
    /// [`UlidGenerator`] instead.
    pub fn ports(&self) -> Ports {
        Ports {
            journal: self.journal.clone(),
            state: self.state.clone(),
            search: self.search.clone(),
            clock: Arc::new(SystemClock),
            ids: Arc::new(UlidGenerator::random()),
            sharing: Default::default(),
        }
    }
}
