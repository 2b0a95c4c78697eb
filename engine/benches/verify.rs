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
//! The journal is the in-memory backend's (`adledger_engine::memory`), holding sealed
//! frames and the Merkle nodes `Frontier::push` completes, exactly what a backend stores;
//! reads copy the bytes out, as a real backend does. Storage I/O is therefore not
//! measured here: `adledger verify` on a real data directory adds the backend's read
//! cost. Raw SHA-256 hashes the stored frames in place (`MemoryJournal::inspect`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use adledger_engine::Hash;
use adledger_engine::TimeRange;
use adledger_engine::ad::AdDraft;
use adledger_engine::block;
use adledger_engine::codec;
use adledger_engine::export::{ExportFormat, export};
use adledger_engine::memory::MemoryJournal;
use adledger_engine::merkle::Frontier;
use adledger_engine::ports::{AppendBatch, Journal};
use adledger_engine::proof::inclusion_proof;
use adledger_engine::revision::{EventKind, RevisionBody, RevisionMetadata};
use adledger_engine::verify::verify_journal;
use chrono::{Duration as Millis, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::FutureExt;
use rust_decimal::Decimal;

/// `n` chained blocks of one realistic revision each (a create with a 200-character
/// description, a price and three tags), with their Merkle nodes.
fn build(n: u64) -> MemoryJournal {
    let started = Instant::now();
    let origin = Utc
        .with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .single()
        .expect("valid time");
    let journal = MemoryJournal::new();
    let mut batch = AppendBatch::default();
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
                actor: None,
            },
            event: EventKind::AdCreated,
        };
        let (sealed, encoded) =
            block::seal(sequence, &tx_id, tx_time, previous, vec![body]).expect("seal");
        batch.merkle_nodes.extend(frontier.push(&sealed.hash));
        previous = sealed.hash;
        batch.blocks.push(encoded);
        if batch.blocks.len() == journal.max_blocks_per_append() || sequence + 1 == n {
            let next = AppendBatch {
                expected_last: Some(sequence),
                ..AppendBatch::default()
            };
            journal
                .append(std::mem::replace(&mut batch, next))
                .now_or_never()
                .expect("an in-memory append completes at once")
                .expect("append");
        }
    }
    println!(
        "built {n} blocks ({:.1} MB of frames) in {:.1} s",
        stored_bytes(&journal) as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    journal
}

fn stored_bytes(journal: &MemoryJournal) -> u64 {
    journal.inspect(|stored| stored.frames.values().map(|f| f.len() as u64).sum())
}

/// SHA-256 of every stored frame, in place: the floor verification is measured against.
fn hash_frames(journal: &MemoryJournal) {
    journal.inspect(|stored| {
        for frame in stored.frames.values() {
            black_box(Hash::of(black_box(frame)));
        }
    });
}

/// Writes the journal as an `adledger export` file (Ion binary), so the same blocks can be
/// imported into a real data directory and checked with `adledger verify`:
///
/// ```text
/// ADLEDGER_BENCH_EXPORT=/tmp/1m.ion cargo bench -p adledger-engine --bench verify -- --test
/// adledger import --data-dir /tmp/1m /tmp/1m.ion && adledger verify --data-dir /tmp/1m
/// ```
fn write_export(journal: &MemoryJournal, path: &std::path::Path) {
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
fn summary(journal: &MemoryJournal) {
    let rt = runtime();
    let bytes = stored_bytes(journal) as f64;
    let blocks = journal.inspect(|stored| stored.frames.len());
    let revisions = blocks as f64;

    let started = Instant::now();
    let report = rt
        .block_on(verify_journal(journal, None, &mut |_| {}))
        .expect("readable")
        .expect("verifies");
    let verify = started.elapsed().as_secs_f64();
    assert_eq!(report.revisions as f64, revisions);

    let started = Instant::now();
    hash_frames(journal);
    let raw = started.elapsed().as_secs_f64();

    // Where the rest goes: the one header decode per block verification does.
    let started = Instant::now();
    journal.inspect(|stored| {
        for bytes in stored.frames.values() {
            let frame = block::Frame::parse(bytes).expect("frame");
            black_box(codec::decode_header(frame.header).expect("header"));
        }
    });
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
        blocks,
        100.0 * decode / verify
    );

    // Proof latency: random leaves of the full tree.
    let n = blocks as u64;
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
        b.iter(|| hash_frames(&journal))
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
