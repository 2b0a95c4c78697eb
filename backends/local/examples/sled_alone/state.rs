//! `state`: what a rebuild writes, with sled alone — the storage side of the rebuild
//! row, next to the search index's share of the same writes.
//!
//! It reads every ad state of `<data-dir>/state` (a store a rebuild or a server filled),
//! orders them by the sequence that wrote them (a rebuild's order) and splits them into
//! rebuild batches of `--states` states (25,000 by default; a rebuild's batch ends at
//! `RebuildOptions::batch_bytes` of estimated state, so its size in states depends on the
//! ads). Then, each into fresh stores in a scratch directory beside DATA_DIR, one batch
//! after the other:
//!
//! 1. **sled alone**: the state store's keys and values as stored (`A` key + JSON, the
//!    `L` live marker), in sled batches of 2,048 states (`PUT_CHUNK_STATES`; `--chunk`), the
//!    checkpoint with the last, one `flush` per rebuild batch: what `SledStateStore::put`
//!    asks of sled, without encoding anything.
//! 2. **state store**: `SledStateStore::put` of the same states (adds the JSON encoding).
//! 3. **search index**: `TantivySearchIndex::put` of the same states (one commit per
//!    batch), the rebuild's other writer.
//! 4. **both**: the two `put`s of each batch joined, as `engine::rebuild` runs them.
//!
//! A rebuild is at least as slow as (4) plus reading, checking and decoding the journal;
//! (3) is close to what the bench's tantivy-alone baseline measures.

use std::path::Path;

use adledger_engine::ports::{AdState, SearchIndex, StateStore};
use adledger_local::{SledStateStore, TantivySearchIndex};

use crate::Flags;
use crate::meter::{Cost, Meter, scratch_beside};

/// The state store's chunk (`PUT_CHUNK_STATES` in `src/state.rs`).
const PUT_CHUNK_STATES: usize = 2048;

/// One stored state: its `A` key, its JSON value, and whether the ad is live.
struct Stored {
    sequence: u64,
    key: Vec<u8>,
    value: Vec<u8>,
    live: bool,
}

pub fn run(data_dir: &Path, flags: &Flags) -> Result<(), Box<dyn std::error::Error>> {
    let per_batch = flags.states.unwrap_or(25_000).max(1) as usize;
    let source = data_dir.join("state");
    let mut stored = read_raw(flags, &source)?;
    stored.sort_by_key(|s| s.sequence);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut states = runtime.block_on(read_states(&source))?;
    states.sort_by_key(|s| s.sequence);
    if states.len() != stored.len() {
        return Err(format!(
            "{} raw ad records but {} states",
            stored.len(),
            states.len()
        )
        .into());
    }
    let value_bytes: usize = stored.iter().map(|s| s.key.len() + s.value.len()).sum();
    let batches = states.len().div_ceil(per_batch);
    println!(
        "rebuild's writes alone: {} states ({:.1} MB of state keys and values) in {batches} \
         batches of {per_batch}, sled cache {} MB (the states read are in the RSS: {:.0} MB \
         before the first)",
        states.len(),
        value_bytes as f64 / 1e6,
        flags.cache_mb,
        crate::meter::status_kb("VmRSS:") as f64 / 1024.0
    );
    let count = states.len();
    let rate = |what: &str, cost: &Cost| {
        println!(
            "  {what:<28} {cost} = {:.0} states/s",
            count as f64 / cost.seconds.max(1e-9)
        );
    };

    let step = |name: &str| flags.only.as_deref().is_none_or(|only| only == name);
    let scratch = scratch_beside(data_dir)?;
    if step("sled") {
        let cost = sled_alone(flags, &scratch.path().join("sled"), &stored, per_batch)?;
        rate("sled alone:", &cost);
    }
    drop(stored);

    if step("store") {
        let dir = scratch.path().join("state");
        let cost = runtime.block_on(async {
            let store = SledStateStore::open(&dir)?;
            let meter = Meter::start();
            for (i, batch) in states.chunks(per_batch).enumerate() {
                store.put(batch, Some(checkpoint(batch, i))).await?;
            }
            Ok::<_, adledger_engine::Error>(meter.stop())
        })?;
        rate("SledStateStore::put:", &cost);
    }

    if step("search") {
        let dir = scratch.path().join("search");
        let cost = runtime.block_on(async {
            let index = TantivySearchIndex::open(&dir)?;
            let meter = Meter::start();
            for (i, batch) in states.chunks(per_batch).enumerate() {
                index.put(batch, Some(checkpoint(batch, i))).await?;
            }
            Ok::<_, adledger_engine::Error>(meter.stop())
        })?;
        rate("TantivySearchIndex::put:", &cost);
    }

    if step("both") {
        let (state_dir, search_dir) = (
            scratch.path().join("state-both"),
            scratch.path().join("search-both"),
        );
        let cost = runtime.block_on(async {
            let store = SledStateStore::open(&state_dir)?;
            let index = TantivySearchIndex::open(&search_dir)?;
            let meter = Meter::start();
            for (i, batch) in states.chunks(per_batch).enumerate() {
                let at = Some(checkpoint(batch, i));
                let (s, x) = tokio::join!(store.put(batch, at), index.put(batch, at));
                s.and(x)?;
            }
            Ok::<_, adledger_engine::Error>(meter.stop())
        })?;
        rate("both puts, joined:", &cost);
    }
    Ok(())
}

/// The checkpoint a rebuild would give batch `i`: past its last state's block.
fn checkpoint(batch: &[AdState], i: usize) -> u64 {
    batch.last().map_or(i as u64, |s| s.sequence + 1)
}

/// Every `A` record of the store, as stored.
fn read_raw(flags: &Flags, path: &Path) -> Result<Vec<Stored>, Box<dyn std::error::Error>> {
    let db = flags.sled(path).open()?;
    let mut stored = Vec::new();
    for entry in db.range(&b"A"[..]..&b"B"[..]) {
        let (key, value) = entry?;
        let json: serde_json::Value = serde_json::from_slice(&value)?;
        stored.push(Stored {
            sequence: json["sequence"]
                .as_u64()
                .ok_or("a state without sequence")?,
            key: key.to_vec(),
            value: value.to_vec(),
            live: !json["ad"].is_null(),
        });
    }
    Ok(stored)
}

/// Every state of the store, through the port.
async fn read_states(path: &Path) -> adledger_engine::Result<Vec<AdState>> {
    let store = SledStateStore::open(path)?;
    let mut states: Vec<AdState> = Vec::new();
    loop {
        let page = store.scan(states.last().map(|s| &s.key), 10_000).await?;
        if page.is_empty() {
            return Ok(states);
        }
        states.extend(page);
    }
}

/// Writes `stored` as `SledStateStore::put` would, `per_batch` states per put.
fn sled_alone(
    flags: &Flags,
    path: &Path,
    stored: &[Stored],
    per_batch: usize,
) -> Result<Cost, Box<dyn std::error::Error>> {
    let db = flags.sled(path).open()?;
    let meter = Meter::start();
    for (i, put) in stored.chunks(per_batch).enumerate() {
        let chunk = flags.chunk.map_or(PUT_CHUNK_STATES, |c| c.max(1) as usize);
        let mut chunks = put.chunks(chunk).peekable();
        while let Some(chunk) = chunks.next() {
            let mut batch = sled::Batch::default();
            for state in chunk {
                let mut live = state.key.clone();
                live[0] = b'L';
                if state.live {
                    batch.insert(live, &[][..]);
                } else {
                    batch.remove(live);
                }
                batch.insert(state.key.as_slice(), state.value.as_slice());
            }
            if chunks.peek().is_none() {
                let at = put.last().map_or(i as u64, |s| s.sequence + 1);
                batch.insert(&b"C"[..], &at.to_be_bytes()[..]);
            }
            db.apply_batch(batch)?;
        }
        db.flush()?;
    }
    Ok(meter.stop())
}
