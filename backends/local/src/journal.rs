//! The journal in sled: one tree, appended to by conditional, atomic, fsynced batches.
//!
//! The record layout is in [`keys`]; what it takes to make sled durable is in
//! [`durability`].
//!
//! # Concurrency
//!
//! sled locks its directory to one process, so every writer of this journal is in this
//! process and a lock is enough to make "check the conditions, then write" atomic: an
//! append holds the write side of `gate` across the check, the `apply_batch` and the
//! fsync. Reads hold the read side, so they never see a batch before it is durable —
//! otherwise a projection could apply a block that a power loss then takes back, leaving
//! a read model ahead of the journal.

mod compression;
mod copy;
pub(crate) mod durability;
mod keys;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use adledger_engine::block::EncodedBlock;
use adledger_engine::ports::{AdHead, AppendBatch, IdempotencyRecord, Journal, RevisionRef};
use adledger_engine::{AdKey, Hash, Result, VersionExpectation};
use async_trait::async_trait;

pub use self::compression::Compression;
pub use self::copy::CopyReport;
use self::durability::Durability;
use crate::blocking;
use crate::error::{LocalError, corrupt, sled_open_error};
use crate::reopen::Reopenable;

/// The hash-chained journal, stored in a sled database of its own.
///
/// Cloning is cheap and shares the database.
#[derive(Clone)]
pub struct SledJournal {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Write side: one append (or a reopen after a failed one). Read side: every read.
    /// See the module docs, and `reopen` for what a failed append does.
    store: Reopenable<Open>,
}

/// The open database and what makes it durable.
struct Open {
    db: sled::Db,
    durability: Durability,
}

impl std::fmt::Debug for SledJournal {
    // sled's own `Debug` walks the whole tree; the path is what identifies a journal.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledJournal")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SledJournal {
    /// Opens the journal in `path`, creating it if missing.
    ///
    /// Fails with a backend error naming `path` if another process (or another open
    /// journal in this process) holds it, or if it was written in a format this build
    /// does not read.
    pub fn open(path: &Path) -> Result<SledJournal> {
        Self::open_local(path, Compression::Plain).map_err(Into::into)
    }

    /// Opens the journal in `path` like [`SledJournal::open`], creating a missing one
    /// with `compression`; an existing journal keeps the compression it was created with
    /// (module `compression`).
    pub fn open_with(path: &Path, compression: Compression) -> Result<SledJournal> {
        Self::open_local(path, compression).map_err(Into::into)
    }

    /// Whether this journal's database compresses what it writes.
    pub fn compression(&self) -> Result<Compression> {
        compression::effective(&self.inner.path, Compression::Plain).map_err(Into::into)
    }

    fn open_local(path: &Path, new: Compression) -> Result<SledJournal, LocalError> {
        std::fs::create_dir_all(path).map_err(|e| LocalError::Open {
            backend: "sled",
            what: "journal",
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        let at = path.to_path_buf();
        let store = Reopenable::new("journal", move || open_store(&at, new))?;
        Ok(SledJournal {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                store,
            }),
        })
    }

    async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&sled::Db) -> Result<T, LocalError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking::run("sled", move || inner.store.read(|open| work(&open.db))).await
    }

    /// A read of a few keys: done right here when no append holds the gate, on the
    /// blocking pool otherwise.
    ///
    /// A point read costs microseconds (sled serves it from its cache or the OS page
    /// cache), less than the hop to the blocking pool and back, which under load is
    /// where a proof or a GET spent most of its time. `try_read` never waits: while an
    /// append holds the gate (through its fdatasync), the read takes the pool like any
    /// other storage call, so a worker thread never blocks on a writer.
    async fn read_point<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&sled::Db) -> Result<T, LocalError> + Send + 'static,
    {
        match self.read_if_open(work) {
            Ok(done) => done,
            Err(work) => self.read(work).await,
        }
    }

    /// Runs `work` now if the gate is free and the journal open; hands it back otherwise.
    fn read_if_open<T, F>(&self, work: F) -> std::result::Result<Result<T>, F>
    where
        F: FnOnce(&sled::Db) -> Result<T, LocalError>,
    {
        let Some(gate) = self.inner.store.try_read_now() else {
            return Err(work);
        };
        match gate.as_ref() {
            Some(open) => Ok(work(&open.db).map_err(Into::into)),
            None => Err(work),
        }
    }
}

/// Opens the sled database in `path`, checks its format and makes it durable as found.
fn open_store(path: &Path, new: Compression) -> Result<Open, LocalError> {
    // A journal's `db` file that holds bytes but opens as an empty database was damaged
    // (sled recovers a log up to its first unreadable record, which can be none): it
    // must not be stamped and served as a new, empty journal.
    let existing = std::fs::metadata(path.join("db")).map_or(0, |m| m.len());
    let compressed = compression::effective(path, new)? == Compression::Zstd;
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(crate::SLED_CACHE_BYTES)
        .use_compression(compressed)
        .compression_factor(compression::ZSTD_LEVEL)
        .open()
        .map_err(|e| sled_open_error("journal", path.to_path_buf(), e))?;
    if existing > 0 && db.is_empty() {
        return Err(corrupt(format!(
            "{} holds {existing} bytes but no readable journal record: the file is \
             damaged (or the first start of a new ledger was interrupted: then delete \
             the directory)",
            path.join("db").display()
        )));
    }
    check_format(&db, path)?;
    let mut durability = Durability::open(path)?;
    durability.sync(&db)?;
    Ok(Open { db, durability })
}

/// Largest `read_blocks` / `merkle_nodes` request served as a point read.
const POINT_READ_BLOCKS: usize = 8;
const POINT_READ_NODES: usize = 128;

/// Stamps a new journal with the format version, or checks an existing one's.
fn check_format(db: &sled::Db, path: &Path) -> Result<(), LocalError> {
    match db.get(keys::FORMAT_KEY)? {
        Some(bytes) => {
            let version = <[u8; 4]>::try_from(bytes.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| {
                    corrupt(format!(
                        "journal at {}: malformed format marker",
                        path.display()
                    ))
                })?;
            if version != keys::FORMAT_VERSION {
                return Err(corrupt(format!(
                    "journal at {} is in format {version}; this build reads format {}",
                    path.display(),
                    keys::FORMAT_VERSION
                )));
            }
            Ok(())
        }
        None if db.is_empty() => {
            db.insert(keys::FORMAT_KEY, &keys::FORMAT_VERSION.to_be_bytes())?;
            Ok(())
        }
        None => Err(corrupt(format!(
            "{} holds a sled database without an adledger journal format marker",
            path.display()
        ))),
    }
}

fn sequence_expectation(sequence: Option<u64>) -> VersionExpectation {
    sequence.map_or(VersionExpectation::Absent, VersionExpectation::Version)
}

fn read_last(db: &sled::Db) -> Result<Option<u64>, LocalError> {
    db.get(keys::LAST_KEY)?
        .map(|v| keys::decode_u64("last sequence", &v))
        .transpose()
}

fn read_head(db: &sled::Db, key: &AdKey) -> Result<Option<AdHead>, LocalError> {
    db.get(keys::head(key))?
        .map(|v| keys::decode_head(&v))
        .transpose()
}

/// Refuses batches that break the port's preconditions, before anything is written.
fn check_shape(batch: &AppendBatch) -> Result<(), LocalError> {
    let mut next = batch
        .expected_last
        .map_or(Some(0), |last| last.checked_add(1));
    for block in &batch.blocks {
        if Some(block.sequence) != next {
            return Err(LocalError::BadBatch(format!(
                "block {} does not follow {:?}; blocks must be contiguous after expected_last",
                block.sequence, batch.expected_last
            )));
        }
        next = block.sequence.checked_add(1);
    }
    let mut ads = HashSet::new();
    for update in &batch.heads {
        keys::check_part("publisher id", &update.key.publisher_id)?;
        keys::check_part("ad id", &update.key.ad_id)?;
        if !ads.insert(&update.key) {
            return Err(LocalError::BadBatch(format!(
                "two head updates for ad {} of publisher {}",
                update.key.ad_id, update.key.publisher_id
            )));
        }
    }
    for reference in &batch.revisions {
        keys::check_part("publisher id", &reference.key.publisher_id)?;
        keys::check_part("ad id", &reference.key.ad_id)?;
    }
    let mut idempotency = HashSet::new();
    for record in &batch.idempotency {
        keys::check_part("publisher id", &record.publisher_id)?;
        if !idempotency.insert((&record.publisher_id, &record.key)) {
            return Err(LocalError::BadBatch(format!(
                "two idempotency records for key {:?} of publisher {}",
                record.key, record.publisher_id
            )));
        }
    }
    Ok(())
}

/// Adds an immutable record unless an identical one exists; a different one is refused.
fn insert_once(
    db: &sled::Db,
    write: &mut sled::Batch,
    key: &[u8],
    value: &[u8],
    what: impl FnOnce() -> String,
) -> Result<(), LocalError> {
    match db.get(key)? {
        None => {
            write.insert(key, value);
            Ok(())
        }
        Some(existing) if existing == value => Ok(()),
        Some(_) => Err(corrupt(format!(
            "{} is already stored with other content; the journal never overwrites it",
            what()
        ))),
    }
}

/// Checks every condition of `batch` and builds the one sled batch that writes it.
fn plan_write(db: &sled::Db, batch: &AppendBatch) -> Result<sled::Batch, LocalError> {
    // The tip first: a writer that planned against another tip gets the `Conflict` the
    // contract promises (and re-plans), even if its batch is also malformed relative to
    // the tip it assumed.
    let last = read_last(db)?;
    if last != batch.expected_last {
        return Err(LocalError::Conflict {
            expected: sequence_expectation(batch.expected_last),
            actual: sequence_expectation(last),
        });
    }
    check_shape(batch)?;

    let mut write = sled::Batch::default();
    for update in &batch.heads {
        let actual = read_head(db, &update.key)?.map(|h| h.version);
        if actual != update.expected_version {
            return Err(LocalError::Conflict {
                expected: sequence_expectation(update.expected_version),
                actual: sequence_expectation(actual),
            });
        }
        write.insert(
            keys::head(&update.key),
            &keys::encode_head(&update.new_head)[..],
        );
    }

    // Unreachable unless the tree was altered behind the journal's back: the tip
    // matched, and new blocks come after it. One range lookup for the whole batch (the
    // blocks are contiguous), not one per block.
    if let (Some(first), Some(tip)) = (batch.blocks.first(), batch.blocks.last())
        && let Some(entry) = db
            .range(keys::block(first.sequence)..=keys::block(tip.sequence))
            .next()
    {
        let (key, _) = entry?;
        return Err(corrupt(format!(
            "block {:?} is already stored although the last sequence is {last:?}; \
             the journal never overwrites a block",
            keys::block_sequence(&key)
        )));
    }
    for block in &batch.blocks {
        write.insert(&keys::block(block.sequence)[..], block.bytes.as_slice());
    }
    if let Some(tip) = batch.blocks.last() {
        write.insert(keys::LAST_KEY, &keys::encode_u64(tip.sequence)[..]);
    }

    for reference in &batch.revisions {
        insert_once(
            db,
            &mut write,
            &keys::revision(&reference.key, reference.version),
            &keys::encode_u64(reference.sequence),
            || {
                format!(
                    "revision {} of ad {}",
                    reference.version, reference.key.ad_id
                )
            },
        )?;
    }

    for record in &batch.idempotency {
        let key = keys::idempotency(&record.publisher_id, &record.key);
        if let Some(bytes) = db.get(&key)? {
            // The key was used by a create this batch's writer did not know about: the
            // same situation as a lost race on an ad head, so the writer re-plans and then
            // finds the earlier outcome. `actual` is the earlier ad's current version.
            let earlier = keys::decode_idempotency(&record.publisher_id, &record.key, &bytes)?;
            let head = read_head(db, &AdKey::new(&record.publisher_id, &earlier.ad_id))?;
            return Err(LocalError::Conflict {
                expected: VersionExpectation::Absent,
                actual: sequence_expectation(head.map(|h| h.version)),
            });
        }
        write.insert(key, keys::encode_idempotency(record));
    }

    // New nodes lie past every stored one, so a level whose index range holds nothing
    // needs no lookup per node (one range lookup per level instead: a big batch completes
    // thousands of nodes on ~20 levels). Only a level with a stored node in the range
    // is checked node by node, accepting identical ones as `insert_once` does.
    let mut ranges: std::collections::BTreeMap<u8, (u64, u64)> = Default::default();
    for node in &batch.merkle_nodes {
        let range = ranges.entry(node.level).or_insert((node.index, node.index));
        range.0 = range.0.min(node.index);
        range.1 = range.1.max(node.index);
    }
    let mut occupied = HashSet::new();
    for (level, (low, high)) in ranges {
        if db
            .range(keys::merkle(level, low)..=keys::merkle(level, high))
            .next()
            .transpose()?
            .is_some()
        {
            occupied.insert(level);
        }
    }
    for node in &batch.merkle_nodes {
        let key = keys::merkle(node.level, node.index);
        if occupied.contains(&node.level) {
            insert_once(db, &mut write, &key, node.hash.as_bytes(), || {
                format!("Merkle node (level {}, index {})", node.level, node.index)
            })?;
        } else {
            write.insert(&key[..], node.hash.as_bytes());
        }
    }
    Ok(write)
}

fn append_blocking(inner: &Inner, batch: &AppendBatch) -> Result<(), LocalError> {
    // A panic while holding the gate happened either before `apply_batch` (nothing
    // written) or after it, and then the next append's sync covers it. A failed write or
    // sync closes the journal before the gate is released: the batch may be in sled's
    // memory without being on disk, and no read may see it (see `reopen`).
    inner.store.write(|open| {
        let write = plan_write(&open.db, batch).map_err(|e| (e, false))?;
        open.db
            .apply_batch(write)
            .map_err(|e| (LocalError::from(e), true))?;
        open.durability.sync(&open.db).map_err(|e| (e, true))
    })
}

fn read_blocks_blocking(
    db: &sled::Db,
    from: u64,
    max: usize,
) -> Result<Vec<EncodedBlock>, LocalError> {
    let Some(last) = read_last(db)? else {
        return Ok(Vec::new());
    };
    if from > last || max == 0 {
        return Ok(Vec::new());
    }
    // Every sequence up to `last` must be there: a gap is a lost block, not the end.
    let available = usize::try_from(last - from).map_or(usize::MAX, |n| n.saturating_add(1));
    let wanted = max.min(available);
    let mut blocks = Vec::with_capacity(wanted.min(1024));
    let mut expected = from;
    for entry in db.range(keys::block(from)..).take(wanted) {
        let (key, bytes) = entry?;
        if keys::block_sequence(&key) != Some(expected) {
            break;
        }
        blocks.push(EncodedBlock {
            sequence: expected,
            bytes: bytes.to_vec(),
        });
        expected += 1;
    }
    if blocks.len() < wanted {
        return Err(LocalError::MissingBlock { sequence: expected });
    }
    Ok(blocks)
}

fn ad_revisions_blocking(db: &sled::Db, key: &AdKey) -> Result<Vec<RevisionRef>, LocalError> {
    let prefix = keys::revision_prefix(key);
    db.scan_prefix(&prefix)
        .map(|entry| {
            let (k, v) = entry?;
            Ok(RevisionRef {
                key: key.clone(),
                version: keys::revision_version(&prefix, &k)?,
                sequence: keys::decode_u64("revision sequence", &v)?,
            })
        })
        .collect()
}

/// Fewest nodes of one level, with consecutive indexes, read by one range scan instead
/// of a point read each.
const RANGE_READ_NODES: usize = 16;

/// The stored hash of each node in `ids`, in order.
///
/// The nodes a run of blocks completes (what verify asks for, thousands at a time) have
/// consecutive indexes on each level: those are read with one range scan per level,
/// which costs sled much less than a point read per node (`examples/sled_alone`, `read`
/// mode: about 0.4 s of CPU less over the 400,000 nodes of 200,000 blocks).
fn merkle_nodes_blocking(
    db: &sled::Db,
    ids: &[(u8, u64)],
) -> Result<Vec<Option<Hash>>, LocalError> {
    let decode = |level: u8, index: u64, bytes: &[u8]| match Hash::from_slice(bytes) {
        Some(hash) => Ok(hash),
        // The label is only formatted for a malformed node.
        None => keys::decode_hash(&format!("Merkle node ({level}, {index})"), bytes),
    };
    let mut found = vec![None; ids.len()];
    // Level → (index, position in `ids`).
    let mut levels: std::collections::BTreeMap<u8, Vec<(u64, usize)>> = Default::default();
    for (at, &(level, index)) in ids.iter().enumerate() {
        levels.entry(level).or_default().push((index, at));
    }
    for (level, mut wanted) in levels {
        wanted.sort_unstable();
        let consecutive = wanted
            .windows(2)
            .all(|w| w[0].0.checked_add(1) == Some(w[1].0));
        match (wanted.first(), wanted.last()) {
            (Some(&(low, _)), Some(&(high, _)))
                if consecutive && wanted.len() >= RANGE_READ_NODES =>
            {
                for entry in db.range(keys::merkle(level, low)..=keys::merkle(level, high)) {
                    let (key, bytes) = entry?;
                    // Only node keys lie in the range; anything else is not a node, and
                    // a point read would not have returned it either.
                    let Some((_, index)) = keys::merkle_id(&key) else {
                        continue;
                    };
                    let Some(&(_, at)) = index
                        .checked_sub(low)
                        .and_then(|i| usize::try_from(i).ok())
                        .and_then(|i| wanted.get(i))
                    else {
                        continue;
                    };
                    found[at] = Some(decode(level, index, &bytes)?);
                }
            }
            _ => {
                for (index, at) in wanted {
                    found[at] = db
                        .get(keys::merkle(level, index))?
                        .map(|bytes| decode(level, index, &bytes))
                        .transpose()?;
                }
            }
        }
    }
    Ok(found)
}

#[async_trait]
impl Journal for SledJournal {
    async fn append(&self, batch: AppendBatch) -> Result<()> {
        let inner = self.inner.clone();
        blocking::run("sled", move || append_blocking(&inner, &batch)).await
    }

    async fn last_sequence(&self) -> Result<Option<u64>> {
        self.read_point(read_last).await
    }

    async fn read_blocks(&self, from: u64, max: usize) -> Result<Vec<EncodedBlock>> {
        let work = move |db: &sled::Db| read_blocks_blocking(db, from, max);
        if max <= POINT_READ_BLOCKS {
            self.read_point(work).await
        } else {
            self.read(work).await
        }
    }

    async fn read_blocks_at(&self, sequences: &[u64]) -> Result<Vec<EncodedBlock>> {
        let point = sequences.len() <= POINT_READ_BLOCKS;
        let sequences = sequences.to_vec();
        let work = move |db: &sled::Db| {
            let mut blocks = Vec::with_capacity(sequences.len());
            for sequence in sequences {
                if let Some(bytes) = db.get(keys::block(sequence))? {
                    blocks.push(EncodedBlock {
                        sequence,
                        bytes: bytes.to_vec(),
                    });
                }
            }
            Ok(blocks)
        };
        if point {
            self.read_point(work).await
        } else {
            self.read(work).await
        }
    }

    async fn ad_head(&self, key: &AdKey) -> Result<Option<AdHead>> {
        let key = key.clone();
        self.read_point(move |db| read_head(db, &key)).await
    }

    async fn ad_revisions(&self, key: &AdKey) -> Result<Vec<RevisionRef>> {
        let key = key.clone();
        self.read_point(move |db| ad_revisions_blocking(db, &key))
            .await
    }

    async fn idempotency(
        &self,
        publisher_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        let (publisher_id, key) = (publisher_id.to_string(), key.to_string());
        self.read_point(move |db| {
            db.get(keys::idempotency(&publisher_id, &key))?
                .map(|v| keys::decode_idempotency(&publisher_id, &key, &v))
                .transpose()
        })
        .await
    }

    async fn merkle_nodes(&self, ids: &[(u8, u64)]) -> Result<Vec<Option<Hash>>> {
        let point = ids.len() <= POINT_READ_NODES;
        let ids = ids.to_vec();
        let work = move |db: &sled::Db| merkle_nodes_blocking(db, &ids);
        if point {
            self.read_point(work).await
        } else {
            self.read(work).await
        }
    }

    /// One sled batch takes any number of blocks; the cap only bounds one write's memory
    /// (16,384 blocks of a few hundred bytes to a few KB). Bulk writers (import) batch up
    /// to it, and each append costs one fdatasync, so it is large.
    fn max_blocks_per_append(&self) -> usize {
        16_384
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes read by range scans (long runs of consecutive indexes) and by point reads
    /// (anything else) come back the same, in the order asked, absent ones as `None`.
    #[test]
    fn merkle_nodes_by_range_and_by_point_agree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("sled");
        let hash = |level: u8, index: u64| Hash([level ^ (index as u8); 32]);
        for index in (0..100u64).filter(|i| i % 17 != 5) {
            db.insert(keys::merkle(0, index), &hash(0, index).0[..])
                .expect("insert");
        }
        for index in 0..10u64 {
            db.insert(keys::merkle(3, index), &hash(3, index).0[..])
                .expect("insert");
        }
        // Not a node, inside a scanned range: never returned.
        let mut junk = keys::merkle(0, 40).to_vec();
        junk.push(1);
        db.insert(junk, &[9u8; 32][..]).expect("insert");

        let point = |ids: &[(u8, u64)]| -> Vec<Option<Hash>> {
            ids.iter()
                .map(|&(level, index)| {
                    db.get(keys::merkle(level, index))
                        .expect("get")
                        .map(|v| Hash::from_slice(&v).expect("32 bytes"))
                })
                .collect()
        };
        // Level 0 by one range (40 consecutive indexes, asked in reverse), the others
        // node by node.
        let mut ids: Vec<(u8, u64)> = (30..70).rev().map(|i| (0, i)).collect();
        ids.extend([(3, 2), (3, 9), (3, 50), (7, 0)]);
        let ranged = merkle_nodes_blocking(&db, &ids).expect("reads");
        assert_eq!(ranged, point(&ids));
        assert_eq!(ranged[0], Some(hash(0, 69)));
        assert_eq!(ranged[69 - 39], None, "node (0, 39) was never stored");
        assert_eq!(
            ranged[40..],
            [Some(hash(3, 2)), Some(hash(3, 9)), None, None]
        );

        // A level asked with a gap or a repeat is read node by node.
        let mut gappy: Vec<(u8, u64)> = (0..40).filter(|i| i % 2 == 0).map(|i| (0, i)).collect();
        gappy.extend([(0, 3), (0, 3), (0, 99)]);
        let nodes = merkle_nodes_blocking(&db, &gappy).expect("reads");
        assert_eq!(nodes, point(&gappy));
        assert_eq!(nodes[1], Some(hash(0, 2)));
    }
}
