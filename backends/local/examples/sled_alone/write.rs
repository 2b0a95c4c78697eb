//! `write`: what an import writes, with sled alone — the measurement behind the import
//! and journal-size rows.
//!
//! It reads every record of an existing journal (`<data-dir>/journal`, e.g. one
//! `adledger import` built), groups them into the batches an import makes (`--batch`
//! blocks per batch, 256 by default, as `ImportOptions::batch_blocks`: every record goes
//! with the block that wrote it, found from its value), and writes them into a fresh sled
//! database in a scratch directory beside DATA_DIR (same file system) with the journal's
//! settings: one `apply_batch`, `flush` and `fdatasync` of the `db` file per batch. No
//! checks, no decoding, no hashing: what is left is sled's own cost. It prints the write
//! rate over the block bytes, the allocated size of the new database after the writes
//! and again after closing and reopening it, and the peak RSS.

use std::collections::BTreeMap;
use std::path::Path;

use crate::Flags;
use crate::meter::{Meter, allocated, scratch_beside};

/// One key and its value, owned.
type Record = (Vec<u8>, Vec<u8>);

pub fn run(data_dir: &Path, flags: &Flags) -> Result<(), Box<dyn std::error::Error>> {
    let batch_blocks = flags.batch.unwrap_or(256).max(1);
    let source = flags.sled(&data_dir.join("journal")).open()?;
    // batch number → records, in the order an import's batch holds them (sled sorts a
    // batch by key anyway).
    let mut batches: BTreeMap<u64, Vec<Record>> = BTreeMap::new();
    let (mut block_bytes, mut records, mut read_bytes) = (0u64, 0u64, 0u64);
    for entry in source.iter() {
        let (key, value) = entry?;
        let sequence = written_by(&key, &value).ok_or("a record of unknown layout")?;
        if key.first() == Some(&b'B') {
            block_bytes += value.len() as u64;
        }
        records += 1;
        read_bytes += (key.len() + value.len()) as u64;
        batches
            .entry(sequence / batch_blocks)
            .or_default()
            // Owned copies, as an import's batch holds them (a value read from sled can
            // share its page's buffer).
            .push((key.to_vec(), value.to_vec()));
    }
    drop(source);

    let scratch = scratch_beside(data_dir)?;
    let path = scratch.path().join("journal");
    let db = flags.sled(&path).open()?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join("db"))?;
    let meter = Meter::start();
    let count = batches.len();
    for (_, records) in batches {
        let mut batch = sled::Batch::default();
        for (key, value) in records {
            batch.insert(key.as_slice(), value.as_slice());
        }
        db.apply_batch(batch)?;
        db.flush()?;
        file.sync_data()?;
    }
    let cost = meter.stop();
    let written = allocated(&path)?;
    drop(db);
    let reopened = flags.sled(&path).open()?;
    reopened.flush()?;
    drop(reopened);
    let after_reopen = allocated(&path)?;
    println!(
        "sled alone: {records} records in {count} batches of {batch_blocks} blocks, {:.1} MB of \
         blocks in {cost} = {:.1} MB/s (sled cache {} MB); on disk {:.1} MB = {:.2}x the \
         block bytes ({:.1} MB = {:.2}x after reopening); the records it read, {:.1} MB of \
         keys and values, are in the peak RSS",
        block_bytes as f64 / 1e6,
        block_bytes as f64 / 1e6 / cost.seconds.max(1e-9),
        flags.cache_mb,
        written as f64 / 1e6,
        written as f64 / block_bytes.max(1) as f64,
        after_reopen as f64 / 1e6,
        after_reopen as f64 / block_bytes.max(1) as f64,
        read_bytes as f64 / 1e6,
    );
    Ok(())
}

/// The block whose append wrote this record (layout in `src/journal/keys.rs`).
fn written_by(key: &[u8], value: &[u8]) -> Option<u64> {
    let be = |bytes: &[u8]| <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes);
    match key.first()? {
        b'V' => Some(0),
        b'T' => be(value),
        b'B' => be(key.get(1..)?),
        b'H' => be(value.get(8..16)?),
        b'R' => be(value),
        b'I' => be(value.get(32..40)?),
        b'M' => {
            let level = u32::from(*key.get(1)?);
            let index = be(key.get(2..)?)?;
            // The last leaf under the node: the block whose append completed it.
            Some(((index + 1) << level) - 1)
        }
        _ => None,
    }
}
