//! The local backend's own tests, against real sled and tantivy in temporary
//! directories. The behaviour every backend shares is checked by the engine's conformance
//! suite (`conformance.rs`); these cover what is specific to this backend: its files,
//! locks, sled's blobs, and tantivy's analyzer and filters.
//!
//! One test binary with modules, so the workspace links one executable, not five.

#[path = "backend/data_dir.rs"]
mod data_dir;
#[path = "backend/journal.rs"]
mod journal;
#[path = "backend/search.rs"]
mod search;
#[path = "backend/state.rs"]
mod state;
#[path = "backend/support.rs"]
mod support;
