//! `read`: what `adledger verify` reads, with sled alone — the storage side of the
//! verify row.
//!
//! Two ways, each on a freshly opened database (sled's cache cold, the OS page cache as
//! the runs before left it), repeated `--rounds` times:
//!
//! - **verify's reads**, as `SledJournal` serves verify (`engine/src/verify.rs`): per
//!   batch of `--batch` (4,096) blocks, the tip record, one range over the batch's `B`
//!   records (each value copied out, as `read_blocks` does), then one point read per
//!   Merkle node the batch's blocks complete (`M`, about two per block).
//! - **range scans**: one range iterator over every `B` record, then one over every `M`
//!   record: the least sled can do to hand over the same bytes.
//!
//! No frame parsing, no chain, no header decoding; with `--hash` every block's bytes are
//! SHA-256-hashed on the reading thread (verify hashes on every core while it reads).

use std::path::Path;

use adledger_engine::Hash;

use crate::Flags;
use crate::meter::{Meter, allocated};

/// What one way of reading handed over.
#[derive(Debug, Default)]
struct Read {
    blocks: u64,
    block_bytes: u64,
    nodes: u64,
}

pub fn run(data_dir: &Path, flags: &Flags) -> Result<(), Box<dyn std::error::Error>> {
    let path = data_dir.join("journal");
    let batch = flags.batch.unwrap_or(4096).max(1) as usize;
    println!(
        "sled alone, verify's reads: {} (allocated {:.1} MB), sled cache {} MB, {batch} \
         blocks per batch{}",
        path.display(),
        allocated(&path)? as f64 / 1e6,
        flags.cache_mb,
        if flags.hash {
            ", SHA-256 of every block"
        } else {
            ""
        }
    );
    for round in 1..=flags.rounds.max(1) {
        for batched in [true, false] {
            let meter = Meter::start();
            let db = flags.sled(&path).open()?;
            let opened = meter.stop();
            let meter = Meter::start();
            let read = if batched {
                verify_shaped(&db, batch, flags.hash)?
            } else {
                scans(&db, flags.hash)?
            };
            let cost = meter.stop();
            drop(db);
            println!(
                "round {round} {:<15} open {:.2} s; {} blocks ({:.1} MB) and {} Merkle nodes \
                 in {cost} = {:.1} MB/s of blocks",
                if batched {
                    "verify's reads:"
                } else {
                    "range scans:"
                },
                opened.seconds,
                read.blocks,
                read.block_bytes as f64 / 1e6,
                read.nodes,
                read.block_bytes as f64 / 1e6 / cost.seconds.max(1e-9),
            );
        }
    }
    Ok(())
}

fn block_key(sequence: u64) -> [u8; 9] {
    let mut key = [b'B'; 9];
    key[1..].copy_from_slice(&sequence.to_be_bytes());
    key
}

fn merkle_key(level: u8, index: u64) -> [u8; 10] {
    let mut key = [b'M'; 10];
    key[1] = level;
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

fn last_sequence(db: &sled::Db) -> Result<Option<u64>, Box<dyn std::error::Error>> {
    Ok(match db.get(b"T")? {
        Some(bytes) => Some(u64::from_be_bytes(bytes.as_ref().try_into()?)),
        None => None,
    })
}

/// Hashes `bytes` if asked, keeping the result from being optimised away.
fn maybe_hash(hash: bool, bytes: &[u8]) {
    if hash {
        std::hint::black_box(Hash::of(bytes));
    }
}

/// verify's reads through `SledJournal::read_blocks` and `merkle_nodes`.
fn verify_shaped(
    db: &sled::Db,
    batch: usize,
    hash: bool,
) -> Result<Read, Box<dyn std::error::Error>> {
    let size = last_sequence(db)?.map_or(0, |last| last + 1);
    let mut read = Read::default();
    let mut next = 0u64;
    while next < size {
        let want = usize::try_from(size - next).map_or(batch, |left| left.min(batch));
        // `read_blocks` reads the tip first, then the range, copying each value.
        last_sequence(db)?;
        let mut blocks = Vec::with_capacity(want.min(1024));
        for entry in db.range(block_key(next)..).take(want) {
            let (_, bytes) = entry?;
            blocks.push(bytes.to_vec());
        }
        if blocks.len() != want {
            return Err(format!("blocks from {next} are missing").into());
        }
        // `merkle_nodes`: one point read per node the batch's blocks complete.
        for sequence in next..next + want as u64 {
            for level in 0..=sequence.trailing_ones() {
                let node = db.get(merkle_key(level as u8, sequence >> level))?;
                read.nodes += u64::from(node.is_some());
            }
        }
        for bytes in &blocks {
            maybe_hash(hash, bytes);
            read.block_bytes += bytes.len() as u64;
        }
        read.blocks += want as u64;
        next += want as u64;
    }
    Ok(read)
}

/// One range over the `B` records, one over the `M` records.
fn scans(db: &sled::Db, hash: bool) -> Result<Read, Box<dyn std::error::Error>> {
    let mut read = Read::default();
    for entry in db.range(block_key(0)..=block_key(u64::MAX)) {
        let (_, bytes) = entry?;
        maybe_hash(hash, &bytes);
        read.blocks += 1;
        read.block_bytes += bytes.len() as u64;
    }
    for entry in db.range(merkle_key(0, 0)..=merkle_key(u8::MAX, u64::MAX)) {
        entry?;
        read.nodes += 1;
    }
    Ok(read)
}
