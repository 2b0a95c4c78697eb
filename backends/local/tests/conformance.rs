//! The engine's conformance suite on the local backend: real sled databases and real
//! tantivy indexes in temporary directories.

use std::sync::Arc;

use adledger_engine::testkit::{Harness, Stores};
use adledger_engine::{Result, SearchIndex, StateStore};
use adledger_local::{LocalBackend, SledStateStore, TantivySearchIndex};
use async_trait::async_trait;

/// Each place is a fresh temporary data directory, deleted when the test ends.
struct Local;

#[async_trait]
impl Harness for Local {
    type Place = tempfile::TempDir;

    async fn place(&self) -> Result<Self::Place> {
        tempfile::tempdir().map_err(|e| adledger_engine::Error::backend("tempdir", e))
    }

    async fn open(&self, place: &Self::Place) -> Result<Stores> {
        // sled releases its directory lock a moment after the last handle is dropped;
        // the suite drops its stores before reopening, so retry briefly.
        let mut attempt = 0;
        let backend = loop {
            match LocalBackend::open(place.path()) {
                Ok(backend) => break backend,
                Err(e) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    if attempt == 50 {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Stores {
            journal: backend.journal,
            state: backend.state,
            search: backend.search,
        })
    }

    async fn open_read_models(
        &self,
        place: &Self::Place,
        name: &str,
    ) -> Result<(Arc<dyn StateStore>, Arc<dyn SearchIndex>)> {
        let dir = place.path().join(format!("shadow-{name}"));
        let state = SledStateStore::open(&dir.join("state"))?;
        let search = TantivySearchIndex::open(&dir.join("search"))?;
        Ok((Arc::new(state), Arc::new(search)))
    }
}

adledger_engine::conformance_tests!(Local);
