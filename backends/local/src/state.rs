//! The state read model in sled: each ad's latest revision, and the projection checkpoint.
//!
//! It lives in its own sled database, not the journal's, so the journal's fsync after
//! each append never also carries read-model writes.
//!
//! | key | value |
//! |---|---|
//! | `A` publisher `00` adId | JSON [`StoredAd`] (a deleted ad's is a tombstone) |
//! | `L` publisher `00` adId | empty: the ad is live (not deleted) |
//! | `C` | checkpoint, `u64` BE (absent: 0) |
//! | `F` | layout version, `2` since the `L` index (absent: a store from before it) |
//!
//! Why `L`: a publisher's list walks only its live ads, so a publisher that deleted
//! thousands of ads lists as fast as one that never did (walking `A` decoded every
//! tombstone). A store without `F` gets its `L` entries built once, at open.
//!
//! `apply` keeps the newest version per ad; `put` overwrites (restore, replay, rebuild).
//!
//! Publisher ids contain no `00` byte, so one publisher's ads are exactly the keys under
//! `A` publisher `00`, in ad-id order (ULIDs sort by bytes).
//!
//! Nothing here is fsynced per write (sled's own flusher syncs about twice a second; the
//! directory is synced at open, see `journal::durability::sync_after_open`): `apply` writes
//! ads and checkpoint in one batch, so after a crash or a power cut the store is at some
//! earlier checkpoint with exactly that checkpoint's ads, and catches up from the journal. A `put` with a checkpoint
//! (rebuild, restore) is flushed to the OS, so it survives a process kill.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use adledger_engine::ports::{AdState, StateStore};
use adledger_engine::{Ad, AdKey, Result, Revision};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::blocking;
use crate::error::{LocalError, corrupt};
use crate::reopen::Reopenable;
use crate::sled_store::open_reopenable;

const AD: u8 = b'A';
const LIVE: u8 = b'L';
const CHECKPOINT_KEY: &[u8] = b"C";
const LAYOUT_KEY: &[u8] = b"F";
/// The layout with the `L` index of live ads.
const LAYOUT_LIVE_INDEX: u8 = 2;

/// The state read model, in a sled database of its own.
///
/// Cloning is cheap and shares the database.
#[derive(Clone)]
pub struct SledStateStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Closed after a failed write (a full disk) and reopened from disk (`reopen`).
    store: Reopenable<sled::Db>,
    /// Held across "read the stored version, then write", so two concurrent `apply` calls
    /// cannot both decide their revision is the newer one.
    writer: Mutex<()>,
}

impl std::fmt::Debug for SledStateStore {
    // sled's own `Debug` walks the whole tree; the path is what identifies a store.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStateStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// What is stored per ad; `AdState` minus the key, which is in the sled key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredAd {
    version: u64,
    sequence: u64,
    updated_at: DateTime<Utc>,
    /// `None`: a tombstone.
    ad: Option<Ad>,
}

/// [`StoredAd`] borrowed from an [`AdState`], so a bulk `put` serializes without
/// copying each ad first (the same JSON).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredAdRef<'a> {
    version: u64,
    sequence: u64,
    updated_at: DateTime<Utc>,
    ad: Option<&'a Ad>,
}

fn publisher_prefix(publisher_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(publisher_id.len() + 2);
    out.push(AD);
    out.extend_from_slice(publisher_id.as_bytes());
    out.push(0);
    out
}

/// The `L` key of the ad stored under `A` key `ad_key`.
fn live_key(ad_key: &[u8]) -> Vec<u8> {
    let mut out = ad_key.to_vec();
    out[0] = LIVE;
    out
}

/// Records in `batch` whether the ad under `ad_key` is live.
fn mark_live(batch: &mut sled::Batch, ad_key: &[u8], live: bool) {
    if live {
        batch.insert(live_key(ad_key), &[][..]);
    } else {
        batch.remove(live_key(ad_key));
    }
}

/// Builds the `L` index of a store written before it existed, or whose clear was cut
/// short (once: `F` says it is done). New stores get `F` at once.
fn ensure_live_index(db: &sled::Db) -> Result<(), LocalError> {
    if db.get(LAYOUT_KEY)?.is_some() {
        return Ok(());
    }
    // Entries left by a clear cut short first: the index is rebuilt from `A` alone.
    for key in
        db.range::<Vec<u8>, _>((Bound::Included(vec![LIVE]), Bound::Excluded(vec![LIVE + 1])))
    {
        db.remove(key?.0)?;
    }
    let mut batch = sled::Batch::default();
    let mut pending = 0usize;
    for entry in db.range::<Vec<u8>, _>((Bound::Included(vec![AD]), Bound::Excluded(vec![AD + 1])))
    {
        let (key, bytes) = entry?;
        mark_live(&mut batch, &key, decode(&key, &bytes)?.ad.is_some());
        pending += 1;
        if pending == 10_000 {
            db.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    batch.insert(LAYOUT_KEY, &[LAYOUT_LIVE_INDEX][..]);
    db.apply_batch(batch)?;
    Ok(())
}

fn ad_key(key: &AdKey) -> Vec<u8> {
    let mut out = publisher_prefix(&key.publisher_id);
    out.extend_from_slice(key.ad_id.as_bytes());
    out
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<StoredAd, LocalError> {
    serde_json::from_slice(bytes).map_err(|e| {
        corrupt(format!(
            "state store entry {}: {e}",
            String::from_utf8_lossy(key)
        ))
    })
}

fn into_state(key: AdKey, stored: StoredAd) -> AdState {
    AdState {
        key,
        version: stored.version,
        sequence: stored.sequence,
        updated_at: stored.updated_at,
        ad: stored.ad,
    }
}

impl SledStateStore {
    /// Opens (creating if missing) a state store in `path`.
    ///
    /// Fails with a backend error naming `path` if another process (or another open
    /// store in this process) holds it.
    pub fn open(path: &Path) -> Result<SledStateStore> {
        let store = open_reopenable("state store", path, ensure_live_index)?;
        Ok(SledStateStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                store,
                writer: Mutex::new(()),
            }),
        })
    }

    /// Runs `work` on the blocking pool. A sled error closes the store, which is opened
    /// again from disk: sled refuses every write after a failed flush (a full disk) until
    /// it is reopened, and a store at an older checkpoint is caught up by its projector.
    async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &sled::Db) -> Result<T, LocalError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking::run("sled", move || {
            let result = inner.store.read(|db| work(&inner, db));
            if let Err(LocalError::Sled(_)) = &result {
                inner.store.close();
            }
            result
        })
        .await
    }
}

fn apply_blocking(
    inner: &Inner,
    db: &sled::Db,
    revisions: &[Revision],
    checkpoint: u64,
) -> Result<(), LocalError> {
    // The guarded data is `()`: a poisoned lock protects nothing that could be torn.
    let _writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
    let mut batch = sled::Batch::default();
    // Versions written earlier in this same batch, which `get` cannot see yet.
    let mut pending: HashMap<Vec<u8>, u64> = HashMap::new();
    for revision in revisions {
        let key = ad_key(&revision.key());
        let current = match pending.get(&key) {
            Some(&version) => Some(version),
            None => match db.get(&key)? {
                Some(bytes) => Some(decode(&key, &bytes)?.version),
                None => None,
            },
        };
        if current.is_some_and(|v| v >= revision.version()) {
            continue;
        }
        let stored = StoredAd {
            version: revision.version(),
            sequence: revision.sequence(),
            updated_at: revision.body.metadata.tx_time,
            ad: revision.body.data.clone(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| {
            corrupt(format!(
                "cannot encode ad {}: {e}",
                revision.body.metadata.id
            ))
        })?;
        mark_live(&mut batch, &key, revision.body.data.is_some());
        batch.insert(key.as_slice(), bytes);
        pending.insert(key, revision.version());
    }
    batch.insert(CHECKPOINT_KEY, &checkpoint.to_be_bytes()[..]);
    db.apply_batch(batch)?;
    Ok(())
}

fn list_blocking(
    db: &sled::Db,
    publisher_id: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<AdState>, LocalError> {
    let prefix = publisher_prefix(publisher_id);
    let live_prefix = live_key(&prefix);
    let start = match after {
        Some(ad_id) => {
            let mut key = live_prefix.clone();
            key.extend_from_slice(ad_id.as_bytes());
            Bound::Excluded(key)
        }
        None => Bound::Included(live_prefix.clone()),
    };
    let mut ads = Vec::with_capacity(limit.min(1024));
    if limit == 0 {
        return Ok(ads);
    }
    // Only live ads have an `L` entry: tombstones are never read.
    for entry in db.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
        let (key, _) = entry?;
        let Some(ad_id) = key.strip_prefix(live_prefix.as_slice()) else {
            break;
        };
        let ad_id = std::str::from_utf8(ad_id).map_err(|_| {
            corrupt(format!(
                "state store key {} is not UTF-8",
                hex::encode(&key)
            ))
        })?;
        let mut stored_key = prefix.clone();
        stored_key.extend_from_slice(ad_id.as_bytes());
        let Some(bytes) = db.get(&stored_key)? else {
            return Err(corrupt(format!(
                "state store: ad {publisher_id}/{ad_id} is listed as live but not stored"
            )));
        };
        let stored = decode(&stored_key, &bytes)?;
        if stored.ad.is_none() {
            return Err(corrupt(format!(
                "state store: ad {publisher_id}/{ad_id} is listed as live but deleted"
            )));
        }
        ads.push(into_state(AdKey::new(publisher_id, ad_id), stored));
        if ads.len() == limit {
            break;
        }
    }
    Ok(ads)
}

/// The key an entry is stored under, back from its sled key.
fn key_of(sled_key: &[u8]) -> Result<AdKey, LocalError> {
    let bad = || {
        corrupt(format!(
            "state store key {} is not `A` publisher NUL adId in UTF-8",
            hex::encode(sled_key)
        ))
    };
    let rest = sled_key.strip_prefix(&[AD]).ok_or_else(bad)?;
    let split = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
    let publisher = std::str::from_utf8(&rest[..split]).map_err(|_| bad())?;
    let ad_id = std::str::from_utf8(&rest[split + 1..]).map_err(|_| bad())?;
    Ok(AdKey::new(publisher, ad_id))
}

/// Entries in key order after `after`. The sled key `A publisher 00 adId` sorts exactly
/// as `AdKey` does (publisher ids hold no `00`, and `00` sorts before every other byte),
/// so sled's own order is the contract's order.
fn scan_blocking(
    db: &sled::Db,
    after: Option<&AdKey>,
    limit: usize,
) -> Result<Vec<AdState>, LocalError> {
    let start = match after {
        Some(key) => Bound::Excluded(ad_key(key)),
        None => Bound::Included(vec![AD]),
    };
    let mut states = Vec::with_capacity(limit.min(4096));
    if limit == 0 {
        return Ok(states);
    }
    for entry in db.range::<Vec<u8>, _>((start, Bound::Excluded(vec![AD + 1]))) {
        let (key, bytes) = entry?;
        states.push(into_state(key_of(&key)?, decode(&key, &bytes)?));
        if states.len() == limit {
            break;
        }
    }
    Ok(states)
}

/// States per sled batch in a `put`.
///
/// sled 0.34 copies a leaf node for every key a batch inserts, and one `apply_batch`
/// stays pinned to its epoch until the last key, so nothing it replaces is freed before
/// the end. Measured: while one batch of a rebuild's ~110,000 states was applied the
/// process grew by ~1.4 GB (`adledger rebuild` of 200,000 ads peaked at 2.0 GB; with
/// batches of this size, 1.0 GB, and less CPU).
const PUT_CHUNK_STATES: usize = 2048;

fn put_blocking(
    inner: &Inner,
    db: &sled::Db,
    states: &[AdState],
    checkpoint: Option<u64>,
) -> Result<(), LocalError> {
    // Under the writer lock, so a concurrent `apply` cannot decide on a version this
    // put is about to replace.
    let _writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
    // The states in chunks, in order (a later entry for a key overwrites an earlier
    // one), then the checkpoint with the last chunk: a crash part-way leaves the old
    // checkpoint with some of the new states, which the port allows (the rebuild resumes
    // from the old checkpoint and writes them again), never a checkpoint ahead of them.
    let mut chunks = states.chunks(PUT_CHUNK_STATES).peekable();
    loop {
        let chunk = chunks.next().unwrap_or(&[]);
        let mut batch = sled::Batch::default();
        for state in chunk {
            let stored = StoredAdRef {
                version: state.version,
                sequence: state.sequence,
                updated_at: state.updated_at,
                ad: state.ad.as_ref(),
            };
            let bytes = serde_json::to_vec(&stored)
                .map_err(|e| corrupt(format!("cannot encode ad {}: {e}", state.key.ad_id)))?;
            // A later entry for the same key overwrites an earlier one in the batch.
            let key = ad_key(&state.key);
            mark_live(&mut batch, &key, state.ad.is_some());
            batch.insert(key, bytes);
        }
        let last = chunks.peek().is_none();
        if last && let Some(checkpoint) = checkpoint {
            batch.insert(CHECKPOINT_KEY, &checkpoint.to_be_bytes()[..]);
        }
        db.apply_batch(batch)?;
        if last {
            break;
        }
    }
    if checkpoint.is_some() {
        // sled keeps recent writes in its own buffers for up to half a second; a killed
        // process loses them. A checkpointed bulk write (a rebuild batch, a restore)
        // hands them to the OS now, so a checkpoint a rebuild reported survives a kill
        // -9 and the rerun resumes from there. One flush per batch of thousands of
        // states; not an fsync: read models need not survive a power loss.
        db.flush()?;
    }
    Ok(())
}

fn checkpoint_blocking(db: &sled::Db) -> Result<u64, LocalError> {
    match db.get(CHECKPOINT_KEY)? {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| corrupt("state store checkpoint: malformed value")),
    }
}

fn clear_blocking(inner: &Inner, db: &sled::Db) -> Result<(), LocalError> {
    let _writer = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
    // Checkpoint first: `clear` removes keys one by one, and a crash half-way must leave
    // a store that replays from 0 (leftover ads are then re-applied or superseded), never
    // one whose checkpoint claims ads that are gone.
    db.remove(CHECKPOINT_KEY)?;
    // The layout key next: a store whose clear was cut short rebuilds its `L` index from
    // scratch at the next open, so no `L` entry can outlive its ad.
    db.remove(LAYOUT_KEY)?;
    db.clear()?;
    Ok(())
}

#[async_trait]
impl StateStore for SledStateStore {
    async fn apply(&self, revisions: &[Revision], checkpoint: u64) -> Result<()> {
        let revisions = revisions.to_vec();
        self.run(move |inner, db| apply_blocking(inner, db, &revisions, checkpoint))
            .await
    }

    /// One key, read right here rather than on the blocking pool: a point read from
    /// sled's cache or the OS page cache costs microseconds, less than the hop to the
    /// pool and back, and a search page does one per hit. (No lock to wait for: the
    /// writer's mutex only orders writers.)
    async fn get(&self, key: &AdKey) -> Result<Option<AdState>> {
        let read = |db: &sled::Db| -> Result<Option<AdState>, LocalError> {
            let sled_key = ad_key(key);
            match db.get(&sled_key)? {
                Some(bytes) => Ok(Some(into_state(key.clone(), decode(&sled_key, &bytes)?))),
                None => Ok(None),
            }
        };
        if let Some(gate) = self.inner.store.try_read_now()
            && let Some(db) = gate.as_ref()
        {
            return read(db).map_err(Into::into);
        }
        // Being reopened after a failed write: wait for it on the pool.
        let key = key.clone();
        self.run(move |_, db| {
            let sled_key = ad_key(&key);
            match db.get(&sled_key)? {
                Some(bytes) => Ok(Some(into_state(key.clone(), decode(&sled_key, &bytes)?))),
                None => Ok(None),
            }
        })
        .await
    }

    async fn get_many(&self, keys: &[AdKey]) -> Result<Vec<Option<AdState>>> {
        // sled reads are in-process lookups: one at a time costs no round trip.
        let mut states = Vec::with_capacity(keys.len());
        for key in keys {
            states.push(self.get(key).await?);
        }
        Ok(states)
    }

    async fn list(
        &self,
        publisher_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AdState>> {
        let publisher_id = publisher_id.to_string();
        let after = after.map(str::to_string);
        self.run(move |_, db| list_blocking(db, &publisher_id, after.as_deref(), limit))
            .await
    }

    async fn checkpoint(&self) -> Result<u64> {
        self.run(|_, db| checkpoint_blocking(db)).await
    }

    async fn clear(&self) -> Result<()> {
        self.run(clear_blocking).await
    }

    async fn scan(&self, after: Option<&AdKey>, limit: usize) -> Result<Vec<AdState>> {
        let after = after.cloned();
        self.run(move |_, db| scan_blocking(db, after.as_ref(), limit))
            .await
    }

    async fn put(&self, states: &[AdState], checkpoint: Option<u64>) -> Result<()> {
        let states = states.to_vec();
        self.run(move |inner, db| put_blocking(inner, db, &states, checkpoint))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ad of publisher `p`.
    fn ad(ad_id: &str) -> Ad {
        Ad {
            ad_id: ad_id.into(),
            publisher_id: "p".into(),
            ad_title: "t".into(),
            ad_description: String::new(),
            price: None,
            currency: String::new(),
            category: String::new(),
            tags: Vec::new(),
        }
    }

    fn stored(version: u64, live: bool) -> Vec<u8> {
        let ad: Option<Ad> = live.then(|| ad("01X"));
        serde_json::to_vec(&StoredAd {
            version,
            sequence: version,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
            ad,
        })
        .expect("encodes")
    }

    /// A store written before the `L` index (only `A` entries, no layout key) lists its
    /// live ads, and only those, once opened: the index is built at open.
    #[tokio::test]
    async fn a_store_from_before_the_live_index_gets_it_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = sled::open(dir.path()).expect("sled");
            for (ad_id, live) in [("01A", true), ("01B", false), ("01C", true)] {
                db.insert(ad_key(&AdKey::new("p", ad_id)), stored(1, live))
                    .expect("insert");
            }
            // A tombstone of another publisher, and a stale `L` entry a cut-short clear
            // could leave: neither may show up.
            db.insert(ad_key(&AdKey::new("q", "01D")), stored(2, false))
                .expect("insert");
            db.insert(live_key(&ad_key(&AdKey::new("q", "01E"))), &[][..])
                .expect("insert");
            db.flush().expect("flush");
        }
        let store = SledStateStore::open(dir.path()).expect("opens");
        let listed: Vec<String> = store
            .list("p", None, 10)
            .await
            .expect("lists")
            .into_iter()
            .map(|s| s.key.ad_id)
            .collect();
        assert_eq!(listed, ["01A", "01C"]);
        assert!(store.list("q", None, 10).await.expect("lists").is_empty());
        // Paging walks the index too.
        let after: Vec<String> = store
            .list("p", Some("01A"), 10)
            .await
            .expect("lists")
            .into_iter()
            .map(|s| s.key.ad_id)
            .collect();
        assert_eq!(after, ["01C"]);
    }

    /// A put bigger than one sled batch ([`PUT_CHUNK_STATES`]) writes every state, ends
    /// with the last state of a key given in two chunks (and its `L` entry to match), and
    /// stores the checkpoint.
    #[tokio::test]
    async fn a_put_of_several_chunks_writes_every_state_and_the_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStateStore::open(dir.path()).expect("opens");
        let state = |i: usize, version: u64, live: bool| AdState {
            key: AdKey::new("p", format!("01A{i:06}")),
            version,
            sequence: version,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
            ad: live.then(|| ad(&format!("01A{i:06}"))),
        };
        let count = PUT_CHUNK_STATES * 2 + 5;
        let mut states: Vec<AdState> = (0..count).map(|i| state(i, 0, true)).collect();
        // Ad 0 again in the last chunk: deleted at version 1.
        states.push(state(0, 1, false));
        store.put(&states, Some(77)).await.expect("put");
        assert_eq!(store.checkpoint().await.expect("checkpoint"), 77);
        let last = store
            .get(&AdKey::new("p", format!("01A{:06}", count - 1)))
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(last.version, 0);
        let first = store
            .get(&AdKey::new("p", "01A000000"))
            .await
            .expect("get")
            .expect("stored");
        assert_eq!((first.version, first.ad.is_none()), (1, true));
        let listed = store.list("p", None, count + 10).await.expect("lists");
        assert_eq!(listed.len(), count - 1);
        assert!(listed.iter().all(|s| s.key.ad_id != "01A000000"));
    }
}
