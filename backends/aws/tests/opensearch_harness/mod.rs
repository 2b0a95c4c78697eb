//! The conformance harness both OpenSearch suites use (`opensearch_live.rs` against a real
//! cluster, `opensearch_model.rs` against a loopback model): search is an
//! `OpenSearchIndex` on `url`, created with `create_index` as `adledger aws init` does;
//! the journal and the state store are the engine's in-memory backend, so the only outside
//! service these suites need is the OpenSearch under test (DynamoDB's own suite is
//! `conformance.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use adledger_aws::{OpenSearchAuth, OpenSearchIndex, OpenSearchSettings};
use adledger_engine::memory::{MemoryBackend, MemoryStateStore};
use adledger_engine::testkit::{Harness, Stores};
use adledger_engine::{Result, SearchIndex, StateStore};
use async_trait::async_trait;

/// An OpenSearch endpoint to run the conformance tests against.
pub struct OpenSearchHarness {
    pub url: String,
    pub auth: OpenSearchAuth,
    /// The index every place uses, or `None` for a fresh, uniquely named one per place
    /// (a shared cluster).
    pub index: Option<&'static str>,
}

/// One ledger: its journal and state store (kept across reopens, as a data directory
/// would be), the named shadow state stores, and the index name.
pub struct Place {
    stores: MemoryBackend,
    shadow_states: Mutex<HashMap<String, Arc<MemoryStateStore>>>,
    index: String,
}

impl OpenSearchHarness {
    fn settings(&self, index: &str) -> OpenSearchSettings {
        OpenSearchSettings {
            url: self.url.clone(),
            index: index.to_string(),
            auth: self.auth.clone(),
        }
    }

    /// Creates a fresh index and opens it.
    async fn fresh_index(&self, index: &str) -> Result<OpenSearchIndex> {
        let search = OpenSearchIndex::connect(&self.settings(index)).await?;
        search.create_index().await?;
        Ok(search)
    }
}

/// `adledger-test-<pid>-<nanos>-<n>-ads`: no two places, runs or machines collide.
fn unique_index() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "adledger-test-{}-{nanos}-{}-ads",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[async_trait]
impl Harness for OpenSearchHarness {
    type Place = Place;

    async fn place(&self) -> Result<Place> {
        let index = self.index.map_or_else(unique_index, str::to_string);
        self.fresh_index(&index).await?;
        Ok(Place {
            stores: MemoryBackend::new(),
            shadow_states: Mutex::default(),
            index,
        })
    }

    async fn open(&self, place: &Place) -> Result<Stores> {
        let search = OpenSearchIndex::open(&self.settings(&place.index)).await?;
        Ok(Stores {
            journal: place.stores.journal.clone(),
            state: place.stores.state.clone(),
            search: Arc::new(search),
        })
    }

    async fn open_read_models(
        &self,
        place: &Place,
        name: &str,
    ) -> Result<(Arc<dyn StateStore>, Arc<dyn SearchIndex>)> {
        let state = place
            .shadow_states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_string())
            .or_default()
            .clone();
        let index = format!("{}-shadow-{}", place.index, name.to_lowercase());
        let search = self.fresh_index(&index).await?;
        Ok((state, Arc::new(search)))
    }
}
