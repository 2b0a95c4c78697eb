//! The engine's conformance suite on the in-memory backend: every behaviour the local
//! and AWS backends are held to, with no I/O. Runs under a plain `cargo test`: the
//! engine's dev-dependency on itself turns on the `testkit` and `memory` features.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use adledger_engine::memory::MemoryBackend;
use adledger_engine::testkit::{Harness, Stores, Tamper};
use adledger_engine::{Error, Result, SearchIndex, StateStore};
use async_trait::async_trait;

/// Each place is a fresh set of stores; "reopening" it hands out the same stores, as a
/// data directory would hand back the same data.
struct Memory;

/// One ledger's stores, and the named read models opened next to them (each pair in a
/// backend of its own, whose journal stays empty).
#[derive(Default)]
struct Place {
    backend: MemoryBackend,
    read_models: Mutex<HashMap<String, MemoryBackend>>,
}

#[async_trait]
impl Harness for Memory {
    type Place = Place;

    async fn place(&self) -> Result<Place> {
        Ok(Place::default())
    }

    async fn open(&self, place: &Place) -> Result<Stores> {
        let backend = place.backend.clone();
        Ok(Stores {
            journal: backend.journal,
            state: backend.state,
            search: backend.search,
        })
    }

    async fn open_read_models(
        &self,
        place: &Place,
        name: &str,
    ) -> Result<(Arc<dyn StateStore>, Arc<dyn SearchIndex>)> {
        let mut read_models = place
            .read_models
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let models = read_models.entry(name.to_string()).or_default();
        Ok((models.state.clone(), models.search.clone()))
    }

    /// An operator with access to the process's memory: only the stored block frames
    /// change (see `MemoryJournal::tamper`).
    async fn tamper(&self, place: &Place, action: Tamper) -> Result<()> {
        place.backend.journal.tamper(|stored| {
            let missing =
                |sequence: u64| Error::Corrupt(format!("no block {sequence} to tamper with"));
            match action {
                Tamper::RewriteBlock { sequence, bytes } => {
                    let frame = stored.frames.get_mut(&sequence).ok_or(missing(sequence))?;
                    *frame = bytes;
                }
                Tamper::DeleteBlock { sequence } => {
                    stored.frames.remove(&sequence).ok_or(missing(sequence))?;
                }
                Tamper::SwapBlocks { a, b } => {
                    let first = stored.frames.get(&a).ok_or(missing(a))?.clone();
                    let second = stored.frames.get(&b).ok_or(missing(b))?.clone();
                    stored.frames.insert(a, second);
                    stored.frames.insert(b, first);
                }
            }
            Ok(())
        })
    }
}

adledger_engine::conformance_tests!(Memory);

mod subscriptions {
    use std::sync::Arc;

    use adledger_engine::subscription::{MemorySubscriptionStore, SubscriptionStore};

    // One store per test; "opening again" hands back the same store, as a memory ledger's
    // subscriptions live as long as its process.
    adledger_engine::subscription_store_tests!({
        let store: Arc<dyn SubscriptionStore> = Arc::new(MemorySubscriptionStore::default());
        move || store.clone()
    });
}
