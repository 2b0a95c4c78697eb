//! The search read model of adledger in a tantivy index on local disk: the
//! `SearchIndex` port for the local backend (next to its sled journal) and for the AWS
//! backend's `search = "tantivy"` (next to DynamoDB). It depends on the engine and
//! tantivy only, so neither backend compiles the other's storage engine.
//!
//! # Layout
//!
//! An index is one directory, which tantivy locks for its one writer (a second `open`
//! fails with an error naming the directory):
//!
//! ```text
//! <dir>/meta.json       tantivy's segment list; its commit payload holds the
//!                       projection checkpoint (`{"checkpoint": n}`)
//! <dir>/<segment>.*     tantivy segments (document layout in `schema.rs`)
//! ```
//!
//! Code:
//!
//! - `index`: [`TantivySearchIndex`], the `SearchIndex` port: one commit per `apply`,
//!   idempotent by version, tombstones for deleted ads.
//! - `schema`: how an ad maps to a document and back.
//! - `query`: a `SearchQuery` as a tantivy query (lenient user text, exact filters), and
//!   a cheaper query that matches the same documents, for the count.
//! - `filter`: a search's filters as per-segment bitsets, cached, so that a filtered
//!   text search keeps the text's pruning.
//! - `merge`: tantivy's merge policy, keeping merged segments in ad-id order.
//! - `order`: the collector that ranks hits by score (or age), then by ad id, so that
//!   equal hits come back in the same order whatever the index's history.
//! - `error`: the crate's error type and its mapping into `adledger_engine::Error`.
//! - `blocking`: runs tantivy calls on tokio's blocking pool.

mod blocking;
mod error;
mod filter;
mod index;
mod merge;
mod order;
mod query;
mod schema;

pub use error::is_in_use;
pub use index::TantivySearchIndex;
