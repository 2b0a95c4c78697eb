//! The local backend of adledger: the journal and the state read model in sled, the
//! search read model in tantivy. It needs no network and no account, so it serves
//! development, deterministic tests and single-node use.
//!
//! # Layout
//!
//! A data directory holds three stores, each in its own subdirectory:
//!
//! ```text
//! <dir>/journal/   sled database: blocks, tip, ad heads, revision refs, idempotency
//!                  records, Merkle nodes (format in `journal/keys.rs`)
//! <dir>/state/     sled database: each ad's latest state, and the projection checkpoint
//! <dir>/search/    tantivy index (the `adledger-tantivy` crate); the checkpoint is in
//!                  the commit payload
//! <dir>/*-staging/ while `import`, `snapshot restore` or `rebuild --shadow --swap`
//!                  runs: the stores it builds, made live by `promote.pending` (module
//!                  `staging`)
//! ```
//!
//! The journal and the state store are separate sled databases because every append
//! fsyncs the journal's database file: read-model writes in the same file would ride along
//! on every journal fsync. The read models are never fsynced; they are rebuilt from the
//! journal. sled and tantivy each lock their directory, so a data directory is used by one
//! process at a time; a second `open` fails with an error naming the directory.
//!
//! Code:
//!
//! - `journal`: [`SledJournal`], the `Journal` port: conditional atomic appends, made
//!   durable with fdatasync (sled's own flush is not).
//! - `state`: [`SledStateStore`], the `StateStore` port.
//! - `subscriptions`: [`SledSubscriptionStore`], the `SubscriptionStore` port, in its own
//!   database `<dir>/subscriptions/` (opened by the server, not by [`LocalBackend`]).
//! - [`TantivySearchIndex`], the `SearchIndex` port, comes from the `adledger-tantivy`
//!   crate, which the AWS backend shares without compiling sled.
//! - `error`: the backend's error type and its mapping into `adledger_engine::Error`.
//! - `reopen`: a sled database closed after a failed write (a full disk) and opened
//!   again from disk by the next call, so the server continues once space is freed.
//! - `staging`: [`Staging`], stores built beside the live ones (import, restore, swap)
//!   and made live at once; [`finish_pending`] completes a promotion a crash interrupted.
//! - `blocking`: runs sled calls on tokio's blocking pool.

mod blocking;
mod error;
mod journal;
mod reopen;
mod sled_store;
mod staging;
mod state;
mod subscriptions;

use std::path::Path;
use std::sync::Arc;

/// The page cache of each sled database (journal, state store), in bytes.
///
/// sled's default is 1 GiB per database, which a server with two of them reaches as the
/// ledger grows: its memory would track the data's size, not the load. The operating
/// system's page cache still holds the files, so a smaller sled cache costs decoding, not
/// disk reads.
const SLED_CACHE_BYTES: u64 = 128 * 1024 * 1024;

pub use adledger_tantivy::TantivySearchIndex;
pub use error::is_in_use;
pub use journal::{Compression, CopyReport, SledJournal};
pub use staging::{PROMOTE_MARKER, Staging, finish_pending};
pub use state::SledStateStore;
pub use subscriptions::SledSubscriptionStore;

use crate::error::LocalError;

/// The three stores of one data directory.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    /// The journal, in `<dir>/journal/`.
    pub journal: Arc<SledJournal>,
    /// The state read model, in `<dir>/state/`.
    pub state: Arc<SledStateStore>,
    /// The search read model, in `<dir>/search/`.
    pub search: Arc<TantivySearchIndex>,
}

impl LocalBackend {
    /// Opens the stores in `data_dir`, creating the directory and the stores if missing.
    ///
    /// Fails with an error naming the directory if another process is using it.
    pub fn open(data_dir: &Path) -> adledger_engine::Result<LocalBackend> {
        std::fs::create_dir_all(data_dir).map_err(|e| LocalError::Open {
            backend: "sled",
            what: "data directory",
            path: data_dir.to_path_buf(),
            source: Box::new(e),
        })?;
        staging::finish_pending(data_dir)?;
        Ok(LocalBackend {
            journal: Arc::new(SledJournal::open(&data_dir.join("journal"))?),
            state: Arc::new(SledStateStore::open(&data_dir.join("state"))?),
            search: Arc::new(TantivySearchIndex::open(&data_dir.join("search"))?),
        })
    }
}
