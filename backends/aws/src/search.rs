//! The search read model of the AWS backend, chosen by configuration (`search =
//! "tantivy" | "opensearch"`).
//!
//! - tantivy in a local directory ([`TantivySearchIndex`], from the `adledger-tantivy`
//!   crate the local backend uses too): each server process that projects keeps its own
//!   index, rebuilt from the DynamoDB journal when missing.
//! - OpenSearch ([`OpenSearchIndex`]): one index shared by every server process (see
//!   `opensearch/mod.rs`); `adledger aws init` creates it.

use std::path::Path;
use std::sync::Arc;

use adledger_engine::{Result, SearchIndex};
pub use adledger_tantivy::TantivySearchIndex;

pub use crate::opensearch::{OpenSearchIndex, OpenSearchSettings};

/// Where the search index lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchSettings {
    /// A tantivy index in this directory.
    Tantivy {
        /// The index directory (created if missing).
        dir: std::path::PathBuf,
    },
    /// An OpenSearch index (which must exist: `adledger aws init` creates it).
    OpenSearch(OpenSearchSettings),
}

/// Opens the configured search index.
pub async fn open(settings: &SearchSettings) -> Result<Arc<dyn SearchIndex>> {
    match settings {
        SearchSettings::Tantivy { dir } => Ok(Arc::new(open_tantivy(dir)?)),
        SearchSettings::OpenSearch(settings) => {
            Ok(Arc::new(OpenSearchIndex::open(settings).await?))
        }
    }
}

/// Opens (creating if missing) a tantivy index in `dir`.
pub fn open_tantivy(dir: &Path) -> Result<TantivySearchIndex> {
    TantivySearchIndex::open(dir)
}
