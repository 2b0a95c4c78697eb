//! Latency of proof generation on a real data directory (a measurement, not a test).
//!
//! ```text
//! cargo run --release -p adledger --example proof_bench -- DATA_DIR [SAMPLES]
//! ```
//!
//! DATA_DIR is a stopped local data directory (for instance one filled by `adledger
//! import` of an export; `cargo bench -p adledger-engine --bench verify` writes a
//! 1,000,000-block export when `ADLEDGER_BENCH_EXPORT=FILE` is set). For SAMPLES
//! (default 20,000) blocks picked at random, it times the two things the proof route
//! does, separately and together:
//!
//! - `inclusion_proof` of the block under the digest at the tip (O(log n) Merkle nodes);
//! - `revision_evidence` of the block's first revision: the ad's revision refs, the block,
//!   the digest and the proof — everything `GET …/proof` serves, without HTTP.
//!
//! It prints p50, p99 and max of each, next to a baseline measured in the same run: one
//! `read_blocks` of a single block (the cheapest journal read), so a busy machine slows
//! the baseline and the subject alike. The load average is printed at start and end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use adledger_engine::block;
use adledger_engine::evidence::revision_evidence;
use adledger_engine::ports::Journal;
use adledger_engine::proof::inclusion_proof;
use adledger_local::SledJournal;

type Failure = Box<dyn std::error::Error>;

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// p50, p99 and max of `samples` (sorted in place), as text.
fn quantiles(samples: &mut [Duration]) -> String {
    samples.sort();
    if samples.is_empty() {
        return "no samples".into();
    }
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    format!(
        "p50 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}",
        at(0.50),
        at(0.99),
        at(1.0)
    )
}

/// A deterministic pseudo-random sequence (xorshift): the same blocks on every run.
fn picks(n: u64, count: usize) -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        })
        .collect()
}

async fn run(dir: PathBuf, samples: usize) -> Result<(), Failure> {
    let journal = SledJournal::open(&dir.join("journal"))?;
    let Some(last) = journal.last_sequence().await? else {
        return Err(format!("{} holds an empty journal", dir.display()).into());
    };
    let size = last + 1;
    println!(
        "journal of {size} blocks in {}; {samples} samples; load average {}",
        dir.display(),
        load_average()
    );
    let picked = picks(size, samples);

    let mut read = Vec::with_capacity(samples);
    let mut proofs = Vec::with_capacity(samples);
    let mut bundles = Vec::with_capacity(samples);
    for &sequence in &picked {
        let started = Instant::now();
        let stored = journal.read_blocks(sequence, 1).await?;
        read.push(started.elapsed());
        let Some(stored) = stored.first() else {
            return Err(format!("block {sequence} is missing").into());
        };
        let key = block::open(stored)?
            .revisions
            .first()
            .map(|r| (r.key(), r.version()))
            .ok_or_else(|| format!("block {sequence} holds no revision"))?;

        let started = Instant::now();
        let proof = inclusion_proof(&journal, sequence, size).await?;
        proofs.push(started.elapsed());
        std::hint::black_box(proof);

        let started = Instant::now();
        let evidence = revision_evidence(&journal, &key.0, Some(key.1), None).await?;
        bundles.push(started.elapsed());
        std::hint::black_box(evidence);
    }
    println!(
        "{:<48} {}",
        "baseline: read_blocks(one block)",
        quantiles(&mut read)
    );
    println!(
        "{:<48} {}",
        "inclusion_proof under the tip digest",
        quantiles(&mut proofs)
    );
    println!(
        "{:<48} {}",
        "revision_evidence (what GET …/proof serves)",
        quantiles(&mut bundles)
    );
    println!("load average at the end {}", load_average());
    Ok(())
}

fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        return Err("usage: proof_bench DATA_DIR [SAMPLES]".into());
    };
    let samples = match args.next() {
        Some(text) => text
            .parse()
            .map_err(|_| format!("SAMPLES must be a whole number, got {text:?}"))?,
        None => 20_000,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(dir, samples))
}
