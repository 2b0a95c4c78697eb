//! [`MemorySubscriptionStore`]: subscriptions in a map, for tests and the `memory` backend.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::model::Subscription;
use super::store::{SubscriptionStore, check_replace};
use crate::error::{Error, Result};

/// Subscriptions held in memory; they end with the process, like the rest of the
/// `memory` backend.
#[derive(Debug, Default)]
pub struct MemorySubscriptionStore {
    records: Mutex<BTreeMap<String, Subscription>>,
}

impl MemorySubscriptionStore {
    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Subscription>> {
        // Every write below is a single map operation: a poisoned lock guards no torn state.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl SubscriptionStore for MemorySubscriptionStore {
    async fn create(&self, subscription: &Subscription) -> Result<bool> {
        let mut records = self.records();
        if records.contains_key(&subscription.name) {
            return Ok(false);
        }
        let mut stored = subscription.clone();
        stored.revision = 0;
        records.insert(stored.name.clone(), stored);
        Ok(true)
    }

    async fn get(&self, name: &str) -> Result<Option<Subscription>> {
        Ok(self.records().get(name).cloned())
    }

    async fn list(&self) -> Result<Vec<Subscription>> {
        Ok(self.records().values().cloned().collect())
    }

    async fn replace(&self, new: &Subscription) -> Result<Subscription> {
        let mut records = self.records();
        let stored = records.get_mut(&new.name).ok_or_else(|| Error::NotFound {
            what: format!("subscription {:?}", new.name),
        })?;
        check_replace(stored, new)?;
        let mut next = new.clone();
        next.revision += 1;
        *stored = next.clone();
        Ok(next)
    }

    async fn delete(&self, name: &str) -> Result<bool> {
        Ok(self.records().remove(name).is_some())
    }
}
