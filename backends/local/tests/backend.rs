//! The local backend's own tests, against real sled databases in temporary
//! directories. The behaviour every backend shares is checked by the engine's conformance
//! suite (`conformance.rs`); these cover what is specific to this backend: its files,
//! locks and sled's blobs. The tantivy index has its own tests in `backends/tantivy`.
//!
//! One test binary with modules, so the workspace links one executable, not four.

#[path = "backend/data_dir.rs"]
mod data_dir;
#[path = "backend/journal.rs"]
mod journal;
#[path = "backend/state.rs"]
mod state;
#[path = "backend/support.rs"]
mod support;
