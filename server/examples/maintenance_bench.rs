//! Benchmark of rebuild, export and import on the local backend (a measurement, not a
//! test: nothing here asserts a speed).
//!
//! ```text
//! cargo run --release -p adledger --example maintenance_bench -- [REVISIONS] [DIR]
//! ```
//!
//! Builds a journal of REVISIONS revisions (default 1,000,000; one revision per block,
//! a quarter of them creates, the rest updates of those ads) in DIR (default a temporary
//! directory), then measures, in the same run:
//!
//! - the raw journal read rate (`read_blocks` in batches, no decoding);
//! - decoding and hash-checking every block (`block::open`);
//! - the read models' bulk write rates on their own: sled `put` and tantivy `put` of
//!   every ad's final state in batches of 8,192 (one tantivy commit per batch);
//! - `rebuild` of both read models from the journal (revisions/s);
//! - `export` (Ion and JSON lines) and `import` (MB/s of the export file).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use adledger_engine::block;
use adledger_engine::export::{ExportFormat, export};
use adledger_engine::import::{ImportOptions, import};
use adledger_engine::ports::{AdState, Journal, SearchIndex, StateStore};
use adledger_engine::rebuild::{RebuildOptions, rebuild};
use adledger_engine::testkit::{ChainBuilder, ad_id, draft};
use adledger_engine::{AdKey, TimeRange};
use adledger_local::{LocalBackend, SledStateStore, TantivySearchIndex};

type Failure = Box<dyn std::error::Error>;

fn line(what: &str, count: u64, unit: &str, seconds: f64, bytes: Option<u64>) {
    let rate = count as f64 / seconds.max(1e-9);
    match bytes {
        Some(b) => println!(
            "{what:<44} {count:>10} {unit:<10} {seconds:>8.2} s {rate:>12.0} {unit}/s {:>8.1} MB/s",
            b as f64 / 1e6 / seconds.max(1e-9)
        ),
        None => {
            println!("{what:<44} {count:>10} {unit:<10} {seconds:>8.2} s {rate:>12.0} {unit}/s")
        }
    }
}

fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let revisions: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let keep = args.next().map(PathBuf::from);
    let temp = tempfile::tempdir()?;
    let dir = keep.unwrap_or_else(|| temp.path().to_path_buf());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(revisions, dir))
}

async fn run(revisions: u64, dir: PathBuf) -> Result<(), Failure> {
    println!(
        "adledger maintenance benchmark: {revisions} revisions in {}",
        dir.display()
    );
    let backend = LocalBackend::open(&dir.join("data"))?;
    let journal: Arc<dyn Journal> = backend.journal.clone();

    // -- the journal --
    let started = Instant::now();
    let ads = (revisions / 4).max(1);
    let mut chain = ChainBuilder::new();
    let mut written = 0u64;
    while written < revisions {
        let n = (revisions - written).min(2_000);
        let changes = (written..written + n)
            .map(|i| {
                let ad = i % ads;
                let key = AdKey::new(format!("pub{}", ad % 1000), ad_id(ad as u32));
                let title = format!("Bicycle {ad} for sale, revision {}", i / ads);
                let ad = draft(&title, Some("120.50"), "bikes", &["red", "sport"])
                    .into_ad(&key.publisher_id, &key.ad_id);
                (key, Some(ad))
            })
            .collect();
        let (batch, _) = chain.batch(changes)?;
        journal.append(batch).await?;
        written += n;
    }
    line(
        "build the journal (seal + append)",
        revisions,
        "revisions",
        started.elapsed().as_secs_f64(),
        None,
    );
    let size = journal.last_sequence().await?.map_or(0, |l| l + 1);

    // -- raw read, decode --
    let started = Instant::now();
    let (mut next, mut bytes, mut stored) = (0u64, 0u64, Vec::new());
    while next < size {
        let blocks = journal.read_blocks(next, 8192).await?;
        next += blocks.len() as u64;
        bytes += blocks.iter().map(|b| b.bytes.len() as u64).sum::<u64>();
        if stored.len() < 200_000 {
            stored.extend(blocks);
        }
    }
    line(
        "journal read_blocks (raw)",
        size,
        "blocks",
        started.elapsed().as_secs_f64(),
        Some(bytes),
    );
    let started = Instant::now();
    let mut states = Vec::with_capacity(stored.len());
    for encoded in &stored {
        for revision in block::open(encoded)?.revisions {
            states.push(AdState::from_revision(&revision));
        }
    }
    line(
        "block::open (decode + hash check, 1 thread)",
        stored.len() as u64,
        "blocks",
        started.elapsed().as_secs_f64(),
        None,
    );
    drop(stored);

    // -- the read models' own bulk rates --
    let bulk = dir.join("bulk");
    let state = SledStateStore::open(&bulk.join("state"))?;
    let search = TantivySearchIndex::open(&bulk.join("search"))?;
    let started = Instant::now();
    for (i, chunk) in states.chunks(8192).enumerate() {
        state.put(chunk, Some(i as u64)).await?;
    }
    line(
        "sled state put (bulk)",
        states.len() as u64,
        "states",
        started.elapsed().as_secs_f64(),
        None,
    );
    let started = Instant::now();
    let chunk_size: usize = std::env::var("ADLEDGER_BENCH_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8192);
    for (i, chunk) in states.chunks(chunk_size).enumerate() {
        search.put(chunk, Some(i as u64)).await?;
    }
    line(
        "tantivy search put (bulk, 1 commit/8192)",
        states.len() as u64,
        "docs",
        started.elapsed().as_secs_f64(),
        None,
    );
    drop(states);

    if std::env::var_os("ADLEDGER_BENCH_SEARCH_ONLY").is_some() {
        return Ok(());
    }
    // -- rebuild --
    let target = dir.join("rebuilt");
    let (state, search): (Arc<dyn StateStore>, Arc<dyn SearchIndex>) = (
        Arc::new(SledStateStore::open(&target.join("state"))?),
        Arc::new(TantivySearchIndex::open(&target.join("search"))?),
    );
    let report = rebuild(
        journal.as_ref(),
        state.as_ref(),
        search.as_ref(),
        &RebuildOptions::default(),
        &mut |_| {},
    )
    .await?;
    line(
        "rebuild (verify chain, both read models)",
        report.revisions,
        "revisions",
        report.elapsed.as_secs_f64(),
        None,
    );

    // -- export / import --
    for (format, name) in [(ExportFormat::Ion, "ion"), (ExportFormat::Jsonl, "jsonl")] {
        let path = dir.join(format!("export.{name}"));
        let started = Instant::now();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        let report = export(
            journal.as_ref(),
            TimeRange::default(),
            format,
            &mut out,
            &mut |_, _| {},
        )
        .await?;
        drop(out);
        let file = std::fs::metadata(&path)?.len();
        line(
            &format!("export {name}"),
            report.blocks,
            "blocks",
            started.elapsed().as_secs_f64(),
            Some(file),
        );

        let fresh = LocalBackend::open(&dir.join(format!("imported-{name}")))?;
        let started = Instant::now();
        let summary = import(
            fresh.journal.as_ref(),
            &path,
            &ImportOptions::default(),
            &mut |_| {},
        )
        .await?;
        line(
            &format!("import {name} (verify pass + append pass)"),
            summary.blocks,
            "blocks",
            started.elapsed().as_secs_f64(),
            Some(file),
        );
        let started = Instant::now();
        adledger_engine::import::verify_export(&path, &mut |_| {})?;
        line(
            &format!("  of which the verify pass ({name})"),
            summary.blocks,
            "blocks",
            started.elapsed().as_secs_f64(),
            Some(file),
        );
    }
    Ok(())
}
