//! Full verification throughput next to raw SHA-256 over the same stored bytes, and
//! inclusion-proof latency, over a journal of 1,000,000 one-revision blocks built in
//! memory (`ADLEDGER_BENCH_BLOCKS` sets another size).
//!
//! ```text
//! cargo bench -p adledger-engine --bench verify
//! ```
//!
//! Besides criterion's own report it prints one summary line per measure, the figures
//! quoted in reviews: verification MB/s and revisions/s, raw SHA-256 MB/s over the stored
//! frames, their ratio, and p50/p99/max of proof generation.
//!
//! The journal is a test double holding sealed frames and the Merkle nodes
//! `Frontier::push` completes, exactly what a backend stores; reads copy the bytes out,
//! as a real backend does. Storage I/O is therefore not measured here: `adledger verify`
//! on a real data directory adds the backend's read cost.

use std::hint::black_box;
use std::time::{Duration, Instant};

use adledger_engine::Hash;
use adledger_engine::TimeRange;
use adledger_engine::ad::{AdDraft, AdKey};
use adledger_engine::block::{self, EncodedBlock};
use adledger_engine::codec;
use adledger_engine::error::{Error, Result};
use adledger_engine::export::{ExportFormat, export};
use adledger_engine::merkle::Frontier;
use adledger_engine::ports::{AdHead, AppendBatch, IdempotencyRecord, Journal, RevisionRef};
use adledger_engine::proof::inclusion_proof;
use adledger_engine::revision::{EventKind, RevisionBody, RevisionMetadata};
use adledger_engine::verify::verify_journal;
use async_trait::async_trait;
use chrono::{Duration as Millis, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rust_decimal::Decimal;

/// A journal in memory: the stored frames and Merkle nodes (by level, then index: a
/// lookup as cheap as the benchmark can make it, so it measures the engine), nothing else.
#[derive(Debug, Default)]
struct MemJournal {
    blocks: Vec<EncodedBlock>,
    nodes: Vec<Vec<Hash>>,
}

#[async_trait]
impl Journal for MemJournal {
    async fn append(&self, _batch: AppendBatch) -> Result<()> {
        Err(Error::Unavailable("read-only benchmark journal".into()))
    }
    async fn last_sequence(&self) -> Result<Option<u64>> {
        Ok((self.blocks.len() as u64).checked_sub(1))
    }
    async fn read_blocks(&self, from: u64, max: usize) -> Result<Vec<EncodedBlock>> {
        let from = usize::try_from(from)
            .unwrap_or(usize::MAX)
            .min(self.blocks.len());
        let to = from.saturating_add(max).min(self.blocks.len());
        Ok(self.blocks[from..to].to_vec())
    }
    async fn ad_head(&self, _key: &AdKey) -> Result<Option<AdHead>> {
        Ok(None)
    }
    async fn ad_revisions(&self, _key: &AdKey) -> Result<Vec<RevisionRef>> {
        Ok(Vec::new())
    }
    async fn idempotency(&self, _p: &str, _k: &str) -> Result<Option<IdempotencyRecord>> {
        Ok(None)
    }
    async fn merkle_nodes(&self, ids: &[(u8, u64)]) -> Result<Vec<Option<Hash>>> {
        Ok(ids
            .iter()
            .map(|&(level, index)| {
                let index = usize::try_from(index).ok()?;
                self.nodes.get(usize::from(level))?.get(index).copied()
            })
            .collect())
    }
    fn max_blocks_per_append(&self) -> usize {
        usize::MAX
    }
}

/// `n` chained blocks of one realistic revision each (a create with a 200-character
/// description, a price and three tags), with their Merkle nodes.
fn build(n: u64) -> MemJournal {
    let started = Instant::now();
    let origin = Utc
        .with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .single()
        .expect("valid time");
    let mut journal = MemJournal::default();
    let mut frontier = Frontier::new();
    let mut previous = Hash::ZERO;
    for sequence in 0..n {
        let ad_id = ulid::Ulid::from_parts(1_600_000_000_000 + sequence, u128::from(sequence));
        let draft = AdDraft {
            ad_title: format!("Road bike, 56 cm frame, number {sequence}"),
            ad_description: "Aluminium frame, carbon fork, 2x11 gears, new tyres and chain; \
                             serviced last month, always kept indoors, pick-up only, cash or \
                             transfer, no trades please. Pedals and bottle cage included."
                .to_string(),
            price: Some(Decimal::new(45_000 + (sequence % 1000) as i64, 2)),
            currency: "EUR".into(),
            category: "bicycles".into(),
            tags: vec!["road".into(), "aluminium".into(), "56cm".into()],
        };
        let tx_time = origin + Millis::milliseconds(sequence as i64);
        let tx_id = ulid::Ulid::from_parts(1_700_000_000_000 + sequence, 7).to_string();
        let body = RevisionBody {
            data: Some(draft.into_ad("acme", &ad_id.to_string())),
            metadata: RevisionMetadata {
                id: ad_id.to_string(),
                publisher_id: "acme".into(),
                version: 0,
                tx_id: tx_id.clone(),
                tx_time,
            },
            event: EventKind::AdCreated,
        };
        let (sealed, encoded) =
            block::seal(sequence, &tx_id, tx_time, previous, vec![body]).expect("seal");
        for node in frontier.push(&sealed.hash) {
            let level = usize::from(node.level);
            if journal.nodes.len() <= level {
                journal.nodes.resize(level + 1, Vec::new());
            }
            // Nodes of a level complete in index order.
            assert_eq!(journal.nodes[level].len() as u64, node.index);
            journal.nodes[level].push(node.hash);
        }
        previous = sealed.hash;
        journal.blocks.push(encoded);
    }
    println!(
        "built {n} blocks ({:.1} MB of frames) in {:.1} s",
        stored_bytes(&journal) as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    journal
}

fn stored_bytes(journal: &MemJournal) -> u64 {
    journal.blocks.iter().map(|b| b.bytes.len() as u64).sum()
}

/// Writes the journal as an `adledger export` file (Ion binary), so the same blocks can be
/// imported into a real data directory and checked with `adledger verify`:
///
/// ```text
/// ADLEDGER_BENCH_EXPORT=/tmp/1m.ion cargo bench -p adledger-engine --bench verify -- --test
/// adledger import --data-dir /tmp/1m /tmp/1m.ion && adledger verify --data-dir /tmp/1m
/// ```
fn write_export(journal: &MemJournal, path: &std::path::Path) {
    let started = Instant::now();
    let file = std::fs::File::create(path).expect("create the export file");
    let mut out = std::io::BufWriter::new(file);
    let report = runtime()
        .block_on(export(
            journal,
            TimeRange::default(),
            ExportFormat::default(),
            &mut out,
            &mut |_, _| {},
        ))
        .expect("export");
    std::io::Write::flush(&mut out).expect("flush the export file");
    println!(
        "exported {} blocks to {} in {:.1} s",
        report.blocks,
        path.display(),
        started.elapsed().as_secs_f64()
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// One timed pass of each, printed as the summary quoted in reviews.
fn summary(journal: &MemJournal) {
    let rt = runtime();
    let bytes = stored_bytes(journal) as f64;
    let revisions = journal.blocks.len() as f64;

    let started = Instant::now();
    let report = rt
        .block_on(verify_journal(journal, None, &mut |_| {}))
        .expect("readable")
        .expect("verifies");
    let verify = started.elapsed().as_secs_f64();
    assert_eq!(report.revisions as f64, revisions);

    let started = Instant::now();
    for block in &journal.blocks {
        black_box(Hash::of(black_box(&block.bytes)));
    }
    let raw = started.elapsed().as_secs_f64();

    // Where the rest goes: the one header decode per block verification does.
    let started = Instant::now();
    for block in &journal.blocks {
        let frame = block::Frame::parse(&block.bytes).expect("frame");
        black_box(codec::decode_header(frame.header).expect("header"));
    }
    let decode = started.elapsed().as_secs_f64();

    println!(
        "verify_journal: {:.0} MB/s, {:.0} revisions/s ({verify:.2} s); raw SHA-256 over the \
         same frames: {:.0} MB/s ({raw:.2} s); verification runs at {:.0}% of raw SHA-256",
        bytes / 1e6 / verify,
        revisions / verify,
        bytes / 1e6 / raw,
        100.0 * raw / verify
    );
    println!(
        "of which decoding the {} block headers alone takes {decode:.2} s ({:.0}%)",
        journal.blocks.len(),
        100.0 * decode / verify
    );

    // Proof latency: random leaves of the full tree.
    let n = journal.blocks.len() as u64;
    let mut samples: Vec<Duration> = Vec::with_capacity(20_000);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let leaf = x % n;
        let started = Instant::now();
        black_box(
            rt.block_on(inclusion_proof(journal, leaf, n))
                .expect("proof"),
        );
        samples.push(started.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "inclusion_proof over {n} blocks: p50 {:?}, p99 {:?}, max {:?} ({} proofs)",
        at(0.50),
        at(0.99),
        at(1.0),
        samples.len()
    );
}

fn benches(c: &mut Criterion) {
    let n = std::env::var("ADLEDGER_BENCH_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000u64);
    let journal = build(n);
    if let Some(path) = std::env::var_os("ADLEDGER_BENCH_EXPORT") {
        write_export(&journal, std::path::Path::new(&path));
    }
    summary(&journal);
    let rt = runtime();

    let mut group = c.benchmark_group(format!("journal of {n} blocks"));
    group.sample_size(10);
    group.throughput(Throughput::Bytes(stored_bytes(&journal)));
    group.bench_function("verify_journal", |b| {
        b.iter(|| {
            rt.block_on(verify_journal(&journal, None, &mut |_| {}))
                .expect("readable")
                .expect("verifies")
        })
    });
    group.bench_function("raw SHA-256 over the frames", |b| {
        b.iter(|| {
            for block in &journal.blocks {
                black_box(Hash::of(black_box(&block.bytes)));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group(format!("proofs over {n} blocks"));
    group.bench_function("inclusion_proof (last leaf)", |b| {
        b.iter(|| {
            rt.block_on(inclusion_proof(&journal, n - 1, n))
                .expect("proof")
        })
    });
    group.bench_function("inclusion_proof (middle leaf)", |b| {
        b.iter(|| {
            rt.block_on(inclusion_proof(&journal, n / 2 + 1, n))
                .expect("proof")
        })
    });
    group.finish();
}

criterion_group!(verify, benches);
criterion_main!(verify);
