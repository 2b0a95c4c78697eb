//! [`SledSubscriptionStore`], the `SubscriptionStore` port: one JSON record per
//! subscription, keyed by name, in its own sled database (`<dir>/subscriptions/`).
//!
//! Its own database, not a tree of the journal's: the journal fsyncs its file on every
//! append and checkpoint writes would ride along; and not the state store's, which is a
//! read model that rebuilds may throw away. Every write is a sled compare-and-swap on
//! the bytes that were read (so the engine's [`check_replace`] rules hold without a lock)
//! followed by a flush, so an acknowledged write survives kill -9.
//!
//! sled makes a write visible to readers before its flush has made it durable. A reader
//! that saw a checkpoint during that flush, and then a kill -9, would see the checkpoint
//! move backwards after the restart. So writes hold [`SledSubscriptionStore::durable`]
//! exclusively from before their swap until their flush returns, and reads share it:
//! a read waits out at most one flush, and never answers what a crash could take back.

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use adledger_engine::subscription::{Subscription, SubscriptionStore, check_replace};
use adledger_engine::{Error, Result};
use async_trait::async_trait;

use crate::blocking;
use crate::error::{LocalError, corrupt};
use crate::reopen::Reopenable;
use crate::sled_store::open_reopenable;

/// Subscriptions in a sled database.
#[derive(Clone)]
pub struct SledSubscriptionStore {
    /// Closed after a failed write (a full disk) and reopened from disk (`reopen`).
    store: Arc<Reopenable<sled::Db>>,
    /// Held by a write until its flush returns, shared by reads (see the module docs).
    durable: Arc<RwLock<()>>,
}

impl std::fmt::Debug for SledSubscriptionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledSubscriptionStore")
            .finish_non_exhaustive()
    }
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<Subscription, LocalError> {
    serde_json::from_slice(bytes).map_err(|e| {
        corrupt(format!(
            "subscription {}: {e}",
            String::from_utf8_lossy(key)
        ))
    })
}

fn encode(subscription: &Subscription) -> Result<Vec<u8>, LocalError> {
    serde_json::to_vec(subscription).map_err(|e| corrupt(format!("encoding a subscription: {e}")))
}

fn sled(e: sled::Error) -> LocalError {
    LocalError::from(e)
}

impl SledSubscriptionStore {
    /// Opens (creating if missing) the store in `path`; fails naming `path` if another
    /// process holds it.
    pub fn open(path: &Path) -> Result<SledSubscriptionStore> {
        let store = open_reopenable("subscription store", path, |_| Ok(()))?;
        Ok(SledSubscriptionStore {
            store: Arc::new(store),
            durable: Arc::new(RwLock::new(())),
        })
    }

    /// Runs `work` on the blocking pool. A sled error closes the database, which is
    /// opened again from disk: a write whose flush failed (a full disk) must not stay
    /// visible, and sled refuses every later write until it is reopened.
    async fn run<T, F>(&self, access: Access, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&sled::Db) -> Result<T, LocalError> + Send + 'static,
    {
        let store = self.store.clone();
        let durable = self.durable.clone();
        blocking::run("sled", move || {
            // The lock guards no data (the unit), so a panic that poisoned it left
            // nothing inconsistent behind: go on with the guard.
            let result = match access {
                Access::Read => {
                    let _shared = durable.read().unwrap_or_else(PoisonError::into_inner);
                    store.read(work)
                }
                Access::Write => {
                    let _exclusive = durable.write().unwrap_or_else(PoisonError::into_inner);
                    store.read(work)
                }
            };
            if let Err(LocalError::Sled(_)) = &result {
                store.close();
            }
            result
        })
        .await
    }
}

/// Whether a store operation writes (and flushes) or only reads.
#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

/// Swaps `old` for `new` under `key` and flushes; `false` if someone else wrote first.
fn swap(
    db: &sled::Db,
    key: &[u8],
    old: Option<&[u8]>,
    new: Option<Vec<u8>>,
) -> Result<bool, LocalError> {
    match db.compare_and_swap(key, old, new).map_err(sled)? {
        Ok(()) => {
            db.flush().map_err(sled)?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

#[async_trait]
impl SubscriptionStore for SledSubscriptionStore {
    async fn create(&self, subscription: &Subscription) -> Result<bool> {
        let mut stored = subscription.clone();
        stored.revision = 0;
        self.run(Access::Write, move |db| {
            let bytes = encode(&stored)?;
            swap(db, stored.name.as_bytes(), None, Some(bytes))
        })
        .await
    }

    async fn get(&self, name: &str) -> Result<Option<Subscription>> {
        let name = name.to_owned();
        self.run(Access::Read, move |db| {
            match db.get(name.as_bytes()).map_err(sled)? {
                Some(bytes) => decode(name.as_bytes(), &bytes).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list(&self) -> Result<Vec<Subscription>> {
        self.run(Access::Read, |db| {
            db.iter()
                .map(|entry| {
                    let (key, bytes) = entry.map_err(sled)?;
                    decode(&key, &bytes)
                })
                .collect()
        })
        .await
    }

    async fn replace(&self, new: &Subscription) -> Result<Subscription> {
        let new = new.clone();
        self.run(Access::Write, move |db| {
            let key = new.name.as_bytes();
            let Some(old) = db.get(key).map_err(sled)? else {
                return Ok(Err(Error::NotFound {
                    what: format!("subscription {:?}", new.name),
                }));
            };
            let stored = decode(key, &old)?;
            if let Err(refused) = check_replace(&stored, &new) {
                return Ok(Err(refused));
            }
            let mut next = new.clone();
            next.revision += 1;
            if swap(db, key, Some(&old), Some(encode(&next)?))? {
                Ok(Ok(next))
            } else {
                // Written between our read and our swap: the revision moved on.
                Ok(Err(Error::Conflict {
                    expected: adledger_engine::VersionExpectation::Version(new.revision),
                    actual: adledger_engine::VersionExpectation::Version(new.revision + 1),
                }))
            }
        })
        .await?
    }

    async fn delete(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.run(Access::Write, move |db| {
            let removed = db.remove(name.as_bytes()).map_err(sled)?.is_some();
            db.flush().map_err(sled)?;
            Ok(removed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use adledger_engine::subscription::Sink;

    use super::*;

    /// A record exactly as stores wrote it before sinks had a `type` and webhooks a
    /// previous secret.
    const BEFORE_SINK_TYPES: &[u8] = br#"{"name":"crm","types":["adledger.ad.created"],"publisherId":null,"sink":{"url":"https://hooks.example/ads","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","batchSize":1,"timeoutMs":10000,"retry":{"attempts":8,"initialBackoffMs":500,"maxBackoffMs":300000}},"state":"active","onFailure":"deadLetter","checkpoint":"00000000000000000004-0001","epoch":2,"revision":7,"deadLetters":["00000000000000000001-0000"],"lastError":null}"#;

    #[test]
    fn a_record_stored_before_sink_types_loads_as_a_webhook() {
        let sub = decode(b"crm", BEFORE_SINK_TYPES).expect("an old record loads");
        let Sink::Webhook(hook) = &sub.sink else {
            panic!("not a webhook: {:?}", sub.sink);
        };
        assert_eq!(hook.url, "https://hooks.example/ads");
        assert_eq!(hook.previous_secret, None);
        assert_eq!((sub.epoch, sub.revision), (2, 7));
        // Written back, it says its type, and reads back the same.
        let bytes = encode(&sub).expect("encode");
        assert!(String::from_utf8_lossy(&bytes).contains(r#""type":"webhook""#));
        assert_eq!(decode(b"crm", &bytes).expect("decode"), sub);
    }
}
