//! A record-for-record copy of one journal into another, new one: how `adledger compact`
//! rewrites a journal with another compression (module `compression`) and without the
//! dead space sled's log keeps.
//!
//! The records are copied as stored, in key order, so the copy holds exactly the same
//! blocks, heads, revision refs, idempotency records and Merkle nodes; the caller then
//! verifies it against the original's digest before it replaces anything.

use serde::Serialize;

use super::{Inner, SledJournal};
use crate::blocking;
use crate::error::{LocalError, corrupt};

/// Keys and values per `apply_batch` of the copy. The size of the result depends on it
/// (sled 0.34, zstd level 1, a journal of 220,000 blocks, 142 MB of block bytes): 4 MB
/// batches left 195.5 MB on disk, 1 MB 176.7 MB, 512 KB 173.0 MB (1.21×).
const COPY_BATCH_BYTES: usize = 512 << 10;

/// What a copy wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyReport {
    /// Records copied (every key of the journal's tree).
    pub records: u64,
    /// Bytes of keys and values copied.
    pub bytes: u64,
}

impl SledJournal {
    /// Copies every record of this journal into `dest`, which must be new (nothing but its
    /// format marker), and makes the copy durable (fdatasync) before returning.
    ///
    /// Appends to this journal wait until the copy is done.
    pub async fn copy_into(&self, dest: &SledJournal) -> adledger_engine::Result<CopyReport> {
        let (from, to) = (self.inner.clone(), dest.inner.clone());
        blocking::run("sled", move || copy_blocking(&from, &to)).await
    }
}

fn copy_blocking(from: &Inner, to: &Inner) -> Result<CopyReport, LocalError> {
    from.store.read(|source| {
        to.store.write(|dest| {
            // A new journal holds its format marker only: a copy must not merge two.
            if dest.db.len() > 1 {
                return Err((
                    corrupt(format!(
                        "{} is not a new journal: a copy goes into an empty directory",
                        to.path.display()
                    )),
                    false,
                ));
            }
            let mut report = CopyReport {
                records: 0,
                bytes: 0,
            };
            let mut batch = sled::Batch::default();
            let mut pending = 0;
            for entry in source.db.iter() {
                let (key, value) = entry.map_err(|e| (LocalError::from(e), false))?;
                pending += key.len() + value.len();
                report.records += 1;
                report.bytes += (key.len() + value.len()) as u64;
                batch.insert(key, value);
                if pending >= COPY_BATCH_BYTES {
                    dest.db
                        .apply_batch(std::mem::take(&mut batch))
                        .map_err(|e| (LocalError::from(e), true))?;
                    pending = 0;
                }
            }
            dest.db
                .apply_batch(batch)
                .map_err(|e| (LocalError::from(e), true))?;
            dest.durability.sync(&dest.db).map_err(|e| (e, true))?;
            Ok(report)
        })
    })
}
