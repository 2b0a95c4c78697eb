//! The search read model of the AWS backend.
//!
//! For now the index is tantivy in a local directory ([`adledger_local::TantivySearchIndex`],
//! `search = "tantivy"`): each server process that projects keeps its own index, rebuilt
//! from the DynamoDB journal when missing. The OpenSearch adapter (`search =
//! "opensearch"`) is not written yet.

use std::path::Path;
use std::sync::Arc;

use adledger_engine::{Result, SearchIndex};
pub use adledger_local::TantivySearchIndex;

/// Where the search index lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchSettings {
    /// A tantivy index in this directory.
    Tantivy {
        /// The index directory (created if missing).
        dir: std::path::PathBuf,
    },
}

/// Opens the configured search index.
pub fn open(settings: &SearchSettings) -> Result<Arc<dyn SearchIndex>> {
    match settings {
        SearchSettings::Tantivy { dir } => Ok(Arc::new(open_tantivy(dir)?)),
    }
}

/// Opens (creating if missing) a tantivy index in `dir`.
pub fn open_tantivy(dir: &Path) -> Result<TantivySearchIndex> {
    TantivySearchIndex::open(dir)
}
