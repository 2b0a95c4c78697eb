//! sled alone, writing what an import writes: the measurement behind issue 13's import
//! and journal-size rows (`bench/README.md`, "Bulk commands").
//!
//! It reads every record of an existing journal (`<data-dir>/journal`, e.g. one
//! `adledger import` built; the server must not be running), groups them into the
//! batches an import makes (`--batch` blocks per batch, 256 by default, as
//! `ImportOptions::batch_blocks`: every record goes with the block that wrote it, found
//! from its value), and writes them into a fresh sled database in a scratch directory beside DATA_DIR (same file system) with
//! the journal's settings: one `apply_batch`, `flush` and `fdatasync` of the `db` file per
//! batch. No checks, no decoding, no hashing: what is left is sled's own cost. It prints
//! the write rate over the block bytes, and the allocated size of the new database after
//! the writes and again after closing and reopening it, and the peak RSS.
//!
//! ```sh
//! cargo run --release -p adledger-local --example sled_alone -- DATA_DIR [--batch N]
//! ```

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

/// One key and its value, owned.
type Record = (Vec<u8>, Vec<u8>);

/// The journal's sled page cache (`SLED_CACHE_BYTES`).
const CACHE_BYTES: u64 = 128 * 1024 * 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let data_dir = args
        .next()
        .ok_or("usage: sled_alone DATA_DIR [--batch N]")?;
    let mut batch_blocks: u64 = 256;
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--batch" => batch_blocks = args.next().ok_or("--batch N")?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let source = sled::Config::new()
        .path(Path::new(&data_dir).join("journal"))
        .cache_capacity(CACHE_BYTES)
        .open()?;
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
            .entry(sequence / batch_blocks.max(1))
            .or_default()
            // Owned copies, as an import's batch holds them (a value read from sled can
            // share its page's buffer).
            .push((key.to_vec(), value.to_vec()));
    }
    drop(source);

    let scratch = tempfile::Builder::new()
        .prefix("sled-alone-")
        .tempdir_in(Path::new(&data_dir).parent().unwrap_or(Path::new(".")))?;
    let path = scratch.path().join("journal");
    let db = sled::Config::new()
        .path(&path)
        .cache_capacity(CACHE_BYTES)
        .open()?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join("db"))?;
    let started = Instant::now();
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
    let seconds = started.elapsed().as_secs_f64();
    let written = allocated(&path)?;
    drop(db);
    let reopened = sled::Config::new()
        .path(&path)
        .cache_capacity(CACHE_BYTES)
        .open()?;
    reopened.flush()?;
    drop(reopened);
    let after_reopen = allocated(&path)?;
    // Peak RSS of this process: the records read (held until written) plus sled's.
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .map(|kb| kb.trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "sled alone: {records} records in {count} batches of {batch_blocks} blocks, {:.1} MB of \
         blocks in {seconds:.2} s = {:.1} MB/s; on disk {:.1} MB = {:.2}x the block bytes \
         ({:.1} MB = {:.2}x after reopening); peak RSS {peak} (the records it read, {:.1} MB \
         of keys and values, included)",
        block_bytes as f64 / 1e6,
        block_bytes as f64 / 1e6 / seconds.max(1e-9),
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

/// Allocated bytes of every file under `dir`.
fn allocated(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            allocated(&entry.path())?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}
