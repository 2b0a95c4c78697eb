//! The conformance harness both OpenSearch suites use (`opensearch_live.rs` against a real
//! cluster, `opensearch_model.rs` against a loopback model): the journal and the state
//! store are the local backend's, in a temporary directory, and search is an
//! `OpenSearchIndex` on `url`, created with `create_index` as `adledger aws init` does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use adledger_aws::{OpenSearchAuth, OpenSearchIndex, OpenSearchSettings};
use adledger_engine::testkit::{Harness, Stores};
use adledger_engine::{Error, Result, SearchIndex, StateStore};
use adledger_local::{SledJournal, SledStateStore};
use async_trait::async_trait;

/// An OpenSearch endpoint to run the conformance tests against.
pub struct OpenSearchHarness {
    pub url: String,
    pub auth: OpenSearchAuth,
    /// The index every place uses, or `None` for a fresh, uniquely named one per place
    /// (a shared cluster).
    pub index: Option<&'static str>,
}

/// One ledger: a directory for sled, and the index name.
pub struct Place {
    dir: tempfile::TempDir,
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
        let dir = tempfile::tempdir().map_err(|e| Error::backend("tempdir", e))?;
        let index = self.index.map_or_else(unique_index, str::to_string);
        self.fresh_index(&index).await?;
        Ok(Place { dir, index })
    }

    async fn open(&self, place: &Place) -> Result<Stores> {
        // sled releases its directory lock a moment after the last handle is dropped;
        // the suite drops its stores before reopening, so retry briefly.
        let mut attempt = 0;
        let (journal, state) = loop {
            let opened = SledJournal::open(&place.dir.path().join("journal")).and_then(|j| {
                SledStateStore::open(&place.dir.path().join("state")).map(|s| (j, s))
            });
            match opened {
                Ok(stores) => break stores,
                Err(e) if attempt >= 50 => return Err(e),
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        };
        let search = OpenSearchIndex::open(&self.settings(&place.index)).await?;
        Ok(Stores {
            journal: Arc::new(journal),
            state: Arc::new(state),
            search: Arc::new(search),
        })
    }

    async fn open_read_models(
        &self,
        place: &Place,
        name: &str,
    ) -> Result<(Arc<dyn StateStore>, Arc<dyn SearchIndex>)> {
        let state = SledStateStore::open(&place.dir.path().join(format!("shadow-{name}")))?;
        let index = format!("{}-shadow-{}", place.index, name.to_lowercase());
        let search = self.fresh_index(&index).await?;
        Ok((Arc::new(state), Arc::new(search)))
    }
}
