//! `adledger compact` end to end, with the real binary, as an operator would run it on a
//! stopped ledger:
//!
//! - the journal is rewritten compressed: smaller on disk, the same digest, `verify`
//!   passes, and `serve` serves it, appends to it and reopens it; `--compression none`
//!   rewrites it plain again; the journal committed under `fixtures/journal-v1/` compacts
//!   and keeps its pinned digest;
//! - a journal held by a running server, or one that does not verify, is refused and left
//!   as it was;
//! - killed at random moments, it leaves the old journal or the whole compacted one.
//!
//! Local backend only: the journal compacted is the local backend's sled database.

use std::path::Path;
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::maintenance::{cli_fails, cli_ok, copy_dir, dir_arg, write_journal};
use crate::maintenance_kill::{Rng, run_and_kill, verified_root};
use crate::support::{Server, fixtures_dir, local_only};

/// Revisions of the journals these tests write (one per block).
const REVISIONS: u64 = 3_000;

/// `adledger compact --json` on `dir` with `extra` flags; its JSON report.
async fn compact(dir: &Path, extra: &[&str]) -> Value {
    let d = dir_arg(dir);
    let mut args = vec!["compact", "--json", "--data-dir", &d];
    args.extend_from_slice(extra);
    let out = cli_ok(&args).await;
    let report: Value = serde_json::from_str(out.trim()).expect("compact --json");
    assert_eq!(report["ok"], json!(true), "{report}");
    report
}

fn on_disk(report: &Value, when: &str) -> u64 {
    report[when]["bytesOnDisk"]
        .as_u64()
        .unwrap_or_else(|| panic!("no {when}.bytesOnDisk in {report}"))
}

async fn compact_shrinks_the_journal_keeps_its_digest_and_serve_appends_to_it() {
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path().join("data");
    write_journal(&dir, REVISIONS).await;
    let root = verified_root(&dir).await;

    let report = compact(&dir, &[]).await;
    assert_eq!(report["before"]["compression"], json!("none"), "{report}");
    assert_eq!(report["after"]["compression"], json!("zstd"), "{report}");
    assert_eq!(report["blocks"], json!(REVISIONS), "{report}");
    assert_eq!(report["root"], json!(root), "{report}");
    let (before, after) = (on_disk(&report, "before"), on_disk(&report, "after"));
    assert!(
        after * 10 < before * 7,
        "compressed: {after} bytes against {before} plain ({report})"
    );
    assert_eq!(verified_root(&dir).await, root, "the digest is unchanged");
    for leftover in ["compact-staging", "journal.replaced", "promote.pending"] {
        assert!(!dir.join(leftover).exists(), "{leftover} was left behind");
    }

    // The server serves the compressed journal, appends to it, and reopens it.
    let mut server = Server::start_with(Some(dir.clone()), &[]).await;
    let digest = server.get("/ledger/digest").await;
    digest.expect_status(StatusCode::OK);
    assert_eq!(digest.json()["root"], json!(root));
    let created = server
        .create_ad("acme", &json!({"adTitle": "After compaction", "price": 5}))
        .await;
    let id = created["adId"].as_str().expect("adId").to_string();
    server.restart().await;
    let read = server.get(&format!("/publisher/acme/ad/{id}")).await;
    read.expect_status(StatusCode::OK);
    assert_eq!(read.json()["adTitle"], json!("After compaction"));
    let digest = server.get("/ledger/digest").await.json();
    assert_eq!(digest["sequence"], json!(REVISIONS), "one block appended");
    server.stop().await;
    let grown = verified_root(&dir).await;
    assert_ne!(grown, root);

    // And back to plain pages.
    let report = compact(&dir, &["--compression", "none"]).await;
    assert_eq!(report["before"]["compression"], json!("zstd"), "{report}");
    assert_eq!(report["after"]["compression"], json!("none"), "{report}");
    assert_eq!(report["root"], json!(grown), "{report}");
    assert_eq!(verified_root(&dir).await, grown);
}

/// The journal an earlier version wrote compacts and keeps the digest pinned beside it.
async fn the_committed_journal_v1_compacts_to_its_pinned_digest() {
    let fixture = fixtures_dir().join("journal-v1");
    let pinned: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.join("digest.json")).expect("digest.json"),
    )
    .expect("digest.json is JSON");
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path().join("data");
    copy_dir(&fixture.join("journal"), &dir.join("journal"));
    let report = compact(&dir, &[]).await;
    assert_eq!(report["lastSequence"], pinned["sequence"], "{report}");
    assert_eq!(report["root"], pinned["root"], "{report}");
    let saved = format!(
        "{}:{}",
        pinned["sequence"],
        pinned["root"].as_str().expect("root")
    );
    cli_ok(&[
        "verify",
        "--data-dir",
        &dir_arg(&dir),
        "--expect-digest",
        &saved,
    ])
    .await;
}

async fn a_running_servers_journal_and_a_damaged_one_are_refused_and_left_alone() {
    let mut server = Server::start(crate::support::Backend::Local).await;
    server
        .create_ad("acme", &json!({"adTitle": "Bike", "price": "4242.42"}))
        .await;
    let d = dir_arg(&server.data_dir);
    let err = cli_fails(&["compact", "--data-dir", &d]).await;
    assert!(err.contains("in use by another process"), "{err}");
    server.stop().await;
    assert!(!server.data_dir.join("compact-staging").exists());
    let root = verified_root(&server.data_dir).await;

    // A journal that does not verify is not copied, whatever the flag.
    let sequence = crate::verify::tamper_block_bytes(
        &server.data_dir.join("journal"),
        &crate::verify::PRICE_BYTES,
        &crate::verify::TAMPERED_PRICE_BYTES,
    );
    let err = cli_fails(&["compact", "--data-dir", &d]).await;
    assert!(
        err.contains(&format!("does not verify at sequence {sequence}")),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(!server.data_dir.join("compact-staging").exists());
    // Still the plain, damaged journal: put the byte back and it verifies as before.
    crate::verify::tamper_block_bytes(
        &server.data_dir.join("journal"),
        &crate::verify::TAMPERED_PRICE_BYTES,
        &crate::verify::PRICE_BYTES,
    );
    assert_eq!(verified_root(&server.data_dir).await, root);

    let out = cli_fails(&["compact", "--data-dir", &d, "--backend", "aws"]).await;
    assert!(out.contains("nothing to compact"), "{out}");
}

/// SIGKILLs `adledger compact` after a random delay within its run time, six times: the
/// data directory always verifies to the same root (the old journal or the whole
/// compacted one), the server serves it, and a rerun succeeds.
async fn a_compaction_killed_at_random_moments_leaves_the_old_journal_or_the_new_one() {
    let home = tempfile::tempdir().expect("tempdir");
    let source = home.path().join("source");
    write_journal(&source, REVISIONS * 4).await;
    let root = verified_root(&source).await;
    let clean = home.path().join("clean");
    copy_dir(&source, &clean);
    let started = Instant::now();
    compact(&clean, &[]).await;
    let full = started.elapsed();

    let mut rng = Rng::from_env("compact");
    let mut outcomes = (0, 0);
    for trial in 0..6 {
        let target = home.path().join(format!("target-{trial}"));
        copy_dir(&source, &target);
        let delay = rng.delay(full);
        run_and_kill(&["compact", "--data-dir", &dir_arg(&target)], delay).await;
        // `verify` opens the data directory as `serve` would (finishing a promotion the
        // kill interrupted after its commit point).
        assert_eq!(
            verified_root(&target).await,
            root,
            "trial {trial}, killed after {delay:?}"
        );
        let conf = std::fs::read(target.join("journal").join("conf")).expect("conf");
        let compressed = conf.windows(21).any(|w| w == b"use_compression: true");
        if compressed {
            outcomes.1 += 1;
        } else {
            outcomes.0 += 1;
        }
        let report = compact(&target, &[]).await;
        assert_eq!(report["root"], json!(root), "trial {trial}: the rerun");
    }
    println!("compact: 6 kills in {full:?} runs: {outcomes:?} (old, compacted)");
    let mut server = Server::start_with(Some(home.path().join("target-5")), &[]).await;
    let digest = server.get("/ledger/digest").await;
    digest.expect_status(StatusCode::OK);
    assert_eq!(digest.json()["root"], json!(root));
    server.stop().await;
}

local_only!(
    compact_shrinks_the_journal_keeps_its_digest_and_serve_appends_to_it,
    the_committed_journal_v1_compacts_to_its_pinned_digest,
    a_running_servers_journal_and_a_damaged_one_are_refused_and_left_alone,
    a_compaction_killed_at_random_moments_leaves_the_old_journal_or_the_new_one,
);
