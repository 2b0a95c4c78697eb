//! The state read model in memory: each ad's latest state in a map ordered by
//! [`AdKey`], which is the order `scan` promises and, within one publisher, the ad-id
//! order `list` pages by.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use crate::ad::AdKey;
use crate::error::Result;
use crate::ports::{AdState, StateStore};
use crate::revision::Revision;

#[derive(Debug, Default)]
struct Records {
    ads: BTreeMap<AdKey, AdState>,
    checkpoint: u64,
}

/// The state read model, in memory. Each call runs under one lock, so its states and
/// checkpoint become visible together.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    records: RwLock<Records>,
}

impl MemoryStateStore {
    /// A new, empty store.
    pub fn new() -> MemoryStateStore {
        MemoryStateStore::default()
    }

    // Writes do not fail half-way (map inserts only), so a poisoned lock is still sound.
    fn read(&self) -> RwLockReadGuard<'_, Records> {
        self.records.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Records> {
        self.records.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn apply(&self, revisions: &[Revision], checkpoint: u64) -> Result<()> {
        let mut records = self.write();
        for revision in revisions {
            let key = revision.key();
            let stored = records.ads.get(&key).map(|state| state.version);
            if stored.is_some_and(|version| version >= revision.version()) {
                continue;
            }
            records.ads.insert(key, AdState::from_revision(revision));
        }
        records.checkpoint = checkpoint;
        Ok(())
    }

    async fn get(&self, key: &AdKey) -> Result<Option<AdState>> {
        Ok(self.read().ads.get(key).cloned())
    }

    async fn get_many(&self, keys: &[AdKey]) -> Result<Vec<Option<AdState>>> {
        let records = self.read();
        Ok(keys
            .iter()
            .map(|key| records.ads.get(key).cloned())
            .collect())
    }

    async fn list(
        &self,
        publisher_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AdState>> {
        let start = match after {
            Some(ad_id) => Bound::Excluded(AdKey::new(publisher_id, ad_id)),
            None => Bound::Included(AdKey::new(publisher_id, "")),
        };
        Ok(self
            .read()
            .ads
            .range((start, Bound::Unbounded))
            .take_while(|(key, _)| key.publisher_id == publisher_id)
            .filter(|(_, state)| state.ad.is_some())
            .take(limit)
            .map(|(_, state)| state.clone())
            .collect())
    }

    async fn checkpoint(&self) -> Result<u64> {
        Ok(self.read().checkpoint)
    }

    async fn clear(&self) -> Result<()> {
        *self.write() = Records::default();
        Ok(())
    }

    async fn scan(&self, after: Option<&AdKey>, limit: usize) -> Result<Vec<AdState>> {
        let start = after.map_or(Bound::Unbounded, |key| Bound::Excluded(key.clone()));
        Ok(self
            .read()
            .ads
            .range((start, Bound::Unbounded))
            .take(limit)
            .map(|(_, state)| state.clone())
            .collect())
    }

    async fn put(&self, states: &[AdState], checkpoint: Option<u64>) -> Result<()> {
        let mut records = self.write();
        for state in states {
            records.ads.insert(state.key.clone(), state.clone());
        }
        if let Some(checkpoint) = checkpoint {
            records.checkpoint = checkpoint;
        }
        Ok(())
    }
}
