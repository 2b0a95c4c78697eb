//! Benchmark of rebuild, export and import on the local backend (a measurement, not a
//! test: nothing here asserts a speed).
//!
//! ```text
//! cargo run --release -p adledger --example maintenance_bench -- [REVISIONS] [DIR]
//! ```
//!
//! Builds a journal of REVISIONS revisions (default 1,000,000; one revision per block;
//! `ADLEDGER_BENCH_REVISIONS_PER_AD` revisions per ad, default 4: a create, then updates,
//! cycling through the ads) in DIR (default a temporary directory), then measures, in the
//! same run, so that a busy machine slows the baselines and the subject alike:
//!
//! - the raw journal read rate (`read_blocks` in chunks, no decoding);
//! - decoding and hash-checking blocks on one thread (`block::open`, what rebuild
//!   and import use);
//! - the read models' bulk write rates on their own, the baselines of a rebuild: one
//!   sled `put` of up to 262,144 states without a checkpoint (no flush), and one tantivy
//!   `put` of the same states (one commit);
//! - `rebuild` of both read models from the journal (revisions/s);
//! - `export` (Ion and JSON lines) and `import` (MB/s of the export file).
//!
//! `ADLEDGER_BENCH_NO_IMPORT=1` skips the imports (minutes on a large journal).
//!
//! It ends with the ratios of the subjects to their baselines and the load average at
//! start and end (`/proc/loadavg`).

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

/// The 1, 5 and 15 minute load averages, for the record.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn rate(count: u64, seconds: f64) -> f64 {
    count as f64 / seconds.max(1e-9)
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
    let per_ad: u64 = std::env::var("ADLEDGER_BENCH_REVISIONS_PER_AD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .max(1);
    let load_at_start = load_average();
    println!(
        "adledger maintenance benchmark: {revisions} revisions ({per_ad} per ad) in {}; load \
         average {load_at_start}",
        dir.display()
    );
    let backend = LocalBackend::open(&dir.join("data"))?;
    let journal: Arc<dyn Journal> = backend.journal.clone();

    // -- the journal --
    let started = Instant::now();
    let ads = (revisions / per_ad).max(1);
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
    const SAMPLE: usize = 262_144;
    let started = Instant::now();
    let (mut next, mut bytes, mut stored) = (0u64, 0u64, Vec::new());
    while next < size {
        let blocks = journal.read_blocks(next, 16_384).await?;
        next += blocks.len() as u64;
        bytes += blocks.iter().map(|b| b.bytes.len() as u64).sum::<u64>();
        if stored.len() < SAMPLE {
            stored.extend(blocks);
        }
    }
    let read_seconds = started.elapsed().as_secs_f64();
    line(
        "journal read_blocks (raw)",
        size,
        "blocks",
        read_seconds,
        Some(bytes),
    );
    let read_mb = bytes as f64 / 1e6 / read_seconds.max(1e-9);
    stored.truncate(SAMPLE);
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

    // -- the read models' own bulk rates: the rebuild's baselines --
    let bulk = dir.join("bulk");
    let state = SledStateStore::open(&bulk.join("state"))?;
    let search = TantivySearchIndex::open(&bulk.join("search"))?;
    let started = Instant::now();
    state.put(&states, None).await?;
    let sled_seconds = started.elapsed().as_secs_f64();
    line(
        "sled state put (one batch, no flush)",
        states.len() as u64,
        "states",
        sled_seconds,
        None,
    );
    let sled_rate = rate(states.len() as u64, sled_seconds);
    let started = Instant::now();
    search.put(&states, Some(1)).await?;
    let tantivy_seconds = started.elapsed().as_secs_f64();
    line(
        "tantivy search put (one commit)",
        states.len() as u64,
        "docs",
        tantivy_seconds,
        None,
    );
    let tantivy_rate = rate(states.len() as u64, tantivy_seconds);
    drop(states);
    drop((state, search));

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
    println!(
        "  (it wrote {} states per read model: the last state of each ad per batch)",
        report.states
    );
    let rebuild_rate = rate(report.revisions, report.elapsed.as_secs_f64());
    let mut transfers = Vec::new();

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
        let seconds = started.elapsed().as_secs_f64();
        line(
            &format!("export {name}"),
            report.blocks,
            "blocks",
            seconds,
            Some(file),
        );
        transfers.push((
            format!("export {name}"),
            file as f64 / 1e6 / seconds.max(1e-9),
        ));

        if std::env::var_os("ADLEDGER_BENCH_NO_IMPORT").is_some() {
            continue;
        }
        let fresh = LocalBackend::open(&dir.join(format!("imported-{name}")))?;
        let started = Instant::now();
        let summary = import(
            fresh.journal.as_ref(),
            &path,
            &ImportOptions::default(),
            &mut |_| {},
        )
        .await?;
        let seconds = started.elapsed().as_secs_f64();
        line(
            &format!("import {name} (verify pass + append pass)"),
            summary.blocks,
            "blocks",
            seconds,
            Some(file),
        );
        transfers.push((
            format!("import {name}"),
            file as f64 / 1e6 / seconds.max(1e-9),
        ));
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

    println!("\nratios (same run):");
    println!(
        "  rebuild {rebuild_rate:.0} revisions/s = {:.2} x tantivy bulk ({tantivy_rate:.0} docs/s), \
         {:.2} x sled bulk ({sled_rate:.0} states/s); target 50,000 revisions/s",
        rebuild_rate / tantivy_rate.max(1e-9),
        rebuild_rate / sled_rate.max(1e-9)
    );
    for (what, mb) in transfers {
        println!(
            "  {what:<13} {mb:>7.1} MB/s = {:.2} x raw journal read ({read_mb:.1} MB/s); target 100 MB/s",
            mb / read_mb.max(1e-9)
        );
    }
    println!(
        "load average: {load_at_start} at start, {} at end",
        load_average()
    );
    Ok(())
}
