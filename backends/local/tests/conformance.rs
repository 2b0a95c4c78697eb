//! The engine's conformance suite on the local backend: real sled databases and real
//! tantivy indexes in temporary directories.

use std::sync::Arc;

use adledger_engine::testkit::{Harness, Stores, Tamper};
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

    async fn tamper(&self, place: &Self::Place, action: Tamper) -> Result<()> {
        let path = place.path().join("journal");
        tokio::task::spawn_blocking(move || tamper_sled(&path, action))
            .await
            .map_err(|e| adledger_engine::Error::backend("tokio", e))?
            .map_err(|e| adledger_engine::Error::backend("sled", e))
    }
}

/// The key of block `sequence` in the journal's sled tree: `B` then the sequence as u64
/// big-endian (the layout documented in `backends/local/src/journal/keys.rs`). Written
/// out here on purpose: the tamperer is an outsider editing the database by hand.
fn block_key(sequence: u64) -> Vec<u8> {
    let mut key = vec![b'B'];
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

/// Opens the journal's sled database directly, as an operator with file access would,
/// and alters its block records; the tip, heads and Merkle nodes are left alone.
fn tamper_sled(path: &std::path::Path, action: Tamper) -> std::result::Result<(), String> {
    // sled releases its directory lock a moment after the last handle is dropped.
    let mut attempt = 0;
    let db = loop {
        match sled::Config::new().path(path).open() {
            Ok(db) => break db,
            Err(e) if attempt < 50 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
                if attempt == 50 {
                    return Err(format!("open {}: {e}", path.display()));
                }
            }
            Err(e) => return Err(format!("open {}: {e}", path.display())),
        }
    };
    let stored = |sequence: u64| -> std::result::Result<sled::IVec, String> {
        db.get(block_key(sequence))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("block {sequence} is not stored"))
    };
    match action {
        Tamper::RewriteBlock { sequence, bytes } => {
            stored(sequence)?;
            db.insert(block_key(sequence), bytes)
                .map_err(|e| e.to_string())?;
        }
        Tamper::DeleteBlock { sequence } => {
            stored(sequence)?;
            db.remove(block_key(sequence)).map_err(|e| e.to_string())?;
        }
        Tamper::SwapBlocks { a, b } => {
            let (first, second) = (stored(a)?, stored(b)?);
            db.insert(block_key(a), second).map_err(|e| e.to_string())?;
            db.insert(block_key(b), first).map_err(|e| e.to_string())?;
        }
    }
    db.flush().map_err(|e| e.to_string())?;
    Ok(())
}

adledger_engine::conformance_tests!(Local);

mod subscriptions {
    use std::sync::Arc;

    use adledger_engine::subscription::SubscriptionStore;
    use adledger_local::SledSubscriptionStore;

    // A fresh directory per test; each open retries while sled releases the previous
    // handle's lock.
    adledger_engine::subscription_store_tests!({
        let dir = tempfile::tempdir().expect("a temporary directory");
        move || -> Arc<dyn SubscriptionStore> {
            let mut attempt = 0;
            loop {
                match SledSubscriptionStore::open(dir.path()) {
                    Ok(store) => return Arc::new(store),
                    Err(e) if attempt >= 50 => panic!("cannot reopen: {e}"),
                    Err(_) => {
                        attempt += 1;
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
            }
        }
    });
}
