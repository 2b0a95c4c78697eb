//! Verification end to end, with the real binary, as an operator and an auditor would:
//!
//! - `adledger verify` on a stopped data directory: exit 0 and a summary; after a price
//!   byte is changed directly in the sled journal (the server stopped, as a malicious
//!   operator with file access would), exit 1 naming the sequence and the ad;
//! - `adledger proof verify` on a bundle saved before the tamper still verifies offline
//!   (the auditor's copy), while a fresh bundle fetched after a restart fails against the
//!   digest saved earlier;
//! - usage and I/O errors exit 2, a data directory held by a running server is a clear
//!   error;
//! - the journal committed under `fixtures/journal-v1/` (written by an earlier version)
//!   still verifies against its pinned digest.
//!
//! Local backend only: the tamper is a byte changed in the sled journal's files, and the
//! committed fixture is a sled journal. (`adledger verify` on an AWS journal is checked
//! by `crash.rs` and `aws_two_servers.rs`.)

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::{Backend, Server, fixtures_dir, local_only, run_cli};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Ion binary of the decimal 4242.42 inside a revision: exponent -2 (`c2`), coefficient
/// 424242 (`06 79 32`). Changing the last byte to `33` makes it 4242.43 and keeps the
/// revision decodable: the quietest possible edit of a price.
pub(crate) const PRICE_BYTES: [u8; 4] = [0xc2, 0x06, 0x79, 0x32];
pub(crate) const TAMPERED_PRICE_BYTES: [u8; 4] = [0xc2, 0x06, 0x79, 0x33];

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn both(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status.code(),
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn expect_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", both(out));
}

/// Opens a sled database the way an operator would, retrying while the stopped server's
/// lock is released.
fn open_sled(dir: &Path) -> sled::Db {
    for _ in 0..100 {
        if let Ok(db) = sled::Config::new().path(dir).open() {
            return db;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("cannot open the sled journal at {}", dir.display());
}

/// Replaces `from` with `to` in the one stored block that contains it; returns that
/// block's sequence number. Block keys are `B` followed by the sequence as u64 big-endian
/// (backends/local/src/journal/keys.rs).
pub(crate) fn tamper_block_bytes(journal: &Path, from: &[u8], to: &[u8]) -> u64 {
    let db = open_sled(journal);
    let mut hits = Vec::new();
    for entry in db.scan_prefix(b"B") {
        let (key, value) = entry.expect("read a block record");
        if let Some(at) = value.windows(from.len()).position(|w| w == from) {
            hits.push((key, value.to_vec(), at));
        }
    }
    assert_eq!(hits.len(), 1, "exactly one block holds the price bytes");
    let (key, mut value, at) = hits.remove(0);
    value[at..at + to.len()].copy_from_slice(to);
    db.insert(&key, value).expect("rewrite the block");
    db.flush().expect("flush");
    let sequence = <[u8; 8]>::try_from(&key[1..]).expect("a block key");
    u64::from_be_bytes(sequence)
}

fn write_json(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).expect("write a bundle");
    path.to_string_lossy().into_owned()
}

async fn verify_locates_a_tampered_price_and_saved_proofs_keep_verifying_offline() {
    let mut server = Server::start(Backend::Local).await;
    let target = server
        .create_ad(
            "acme",
            &json!({"adTitle": "Bike", "price": "4242.42", "currency": "EUR"}),
        )
        .await;
    let target_id = target["adId"].as_str().expect("adId").to_string();
    let other = server
        .create_ad("acme", &json!({"adTitle": "Car", "price": 10}))
        .await;
    let other_id = other["adId"].as_str().expect("adId");
    server
        .patch_json(
            &format!("/publisher/acme/ad/{other_id}"),
            &json!({"price": 11}),
        )
        .await
        .expect_status(StatusCode::OK);
    server
        .create_ad("globex", &json!({"adTitle": "Boat", "price": "99.50"}))
        .await;

    // The auditor saves today's digest and a proof of the target's first version.
    let digest = server.get("/ledger/digest").await;
    digest.expect_status(StatusCode::OK);
    let digest = digest.json();
    let saved = format!(
        "{}:{}",
        digest["sequence"],
        digest["root"].as_str().expect("root")
    );
    let before = server
        .get(&format!(
            "/publisher/acme/ad/{target_id}/proof?version=0&digestSequence={}",
            digest["sequence"]
        ))
        .await;
    before.expect_status(StatusCode::OK);
    let home = tempfile::tempdir().expect("tempdir");
    let before_file = write_json(home.path(), "before.json", &before.json());
    let data_dir = server.data_dir.to_string_lossy().into_owned();

    // While the server runs, its data directory is locked: a clear error, exit 2.
    let out = run_cli(&["verify", "--data-dir", &data_dir]).await;
    expect_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another process"),
        "a clear lock error: {}",
        both(&out)
    );

    server.stop().await;

    // Untampered: exit 0, one summary line, with and without the saved digest.
    let out = run_cli(&["verify", "--data-dir", &data_dir]).await;
    expect_exit(&out, 0);
    let summary = stdout(&out);
    assert_eq!(summary.lines().count(), 1, "{}", both(&out));
    assert!(
        summary.starts_with("OK: verified 4 blocks"),
        "{}",
        both(&out)
    );
    for needle in [
        "4 revisions",
        "MB/s",
        "revisions/s",
        digest["root"].as_str().expect("root"),
    ] {
        assert!(summary.contains(needle), "{needle:?} in {summary}");
    }
    let out = run_cli(&["verify", "--data-dir", &data_dir, "--expect-digest", &saved]).await;
    expect_exit(&out, 0);
    assert!(
        stdout(&out).contains("matches the expected digest"),
        "{}",
        both(&out)
    );
    let out = run_cli(&["verify", "--data-dir", &data_dir, "--json"]).await;
    expect_exit(&out, 0);
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["ok"], json!(true));
    assert_eq!(report["blocks"], json!(4));
    assert_eq!(report["root"], digest["root"]);

    // The operator edits one price byte in the stored journal.
    let journal = server.data_dir.join("journal");
    let sequence = tamper_block_bytes(&journal, &PRICE_BYTES, &TAMPERED_PRICE_BYTES);
    assert_eq!(sequence, 0, "the target was the first write");

    let out = run_cli(&["verify", "--data-dir", &data_dir]).await;
    expect_exit(&out, 1);
    let line = stdout(&out);
    assert!(
        line.starts_with("FAILED at sequence 0: ad ") && line.contains(&target_id),
        "names the sequence and the ad: {}",
        both(&out)
    );
    assert!(line.contains("version 0"), "{line}");
    assert!(
        line.contains("revisionHashes[0]"),
        "names the field: {line}"
    );
    let out = run_cli(&["verify", "--data-dir", &data_dir, "--json"]).await;
    expect_exit(&out, 1);
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["ok"], json!(false));
    assert_eq!(report["failure"]["sequence"], json!(0));
    assert_eq!(report["failure"]["adId"], json!(target_id));

    // The auditor's copy, fetched before the tamper, still verifies offline.
    let out = run_cli(&["proof", "verify", &before_file, "--digest", &saved]).await;
    expect_exit(&out, 0);
    assert!(stdout(&out).starts_with("OK: ad "), "{}", both(&out));

    // After a restart the server serves the altered bytes; against the saved digest the
    // fresh bundle fails, and says why.
    server.restart().await;
    let after = server
        .get(&format!(
            "/publisher/acme/ad/{target_id}/proof?version=0&digestSequence={}",
            digest["sequence"]
        ))
        .await;
    after.expect_status(StatusCode::OK);
    assert_eq!(
        after.raw_member("price").as_deref(),
        Some("4242.43"),
        "the server shows the altered price: {}",
        after.text
    );
    let after_file = write_json(home.path(), "after.json", &after.json());
    let out = run_cli(&["proof", "verify", &after_file, "--digest", &saved]).await;
    expect_exit(&out, 1);
    let line = stdout(&out);
    assert!(line.starts_with("FAIL: "), "{}", both(&out));
    assert!(
        line.contains("not the bytes that were committed"),
        "{}",
        both(&out)
    );
    server.stop().await;
}

async fn usage_and_io_errors_exit_2() {
    let home = tempfile::tempdir().expect("tempdir");
    let missing = home
        .path()
        .join("no-such-dir")
        .to_string_lossy()
        .into_owned();
    let out = run_cli(&["verify", "--data-dir", &missing]).await;
    expect_exit(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no journal in data directory"),
        "{}",
        both(&out)
    );
    assert!(
        !home.path().join("no-such-dir").exists(),
        "verify must not create a data directory"
    );
    let out = run_cli(&["verify", "--data-dir", &missing, "--json"]).await;
    expect_exit(&out, 2);
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["ok"], json!(false));

    let out = run_cli(&["verify", "--expect-digest", "12"]).await;
    expect_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("SEQUENCE:ROOT"));

    let out = run_cli(&["proof", "verify", &missing]).await;
    expect_exit(&out, 2);
    let not_json = write_json(home.path(), "x.json", &json!("x"));
    std::fs::write(&not_json, "{ not json").expect("write");
    let out = run_cli(&["proof", "verify", &not_json]).await;
    expect_exit(&out, 2);
    let not_a_bundle = write_json(home.path(), "y.json", &json!({"digest": 1}));
    let out = run_cli(&["proof", "verify", &not_a_bundle]).await;
    expect_exit(&out, 1);
    assert!(
        stdout(&out).starts_with("FAIL: this is not a proof bundle"),
        "{}",
        both(&out)
    );
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn journal_v1() -> PathBuf {
    fixtures_dir().join("journal-v1")
}

/// A journal written by an earlier version (committed under `fixtures/journal-v1/`) must
/// verify, with the digest pinned next to it, in every later version: a format change
/// that breaks it must keep a reader for the old format.
async fn committed_journal_v1_still_verifies_against_its_pinned_digest() {
    let pinned: Value = serde_json::from_str(
        &std::fs::read_to_string(journal_v1().join("digest.json")).expect("digest.json"),
    )
    .expect("digest.json is JSON");
    let saved = format!(
        "{}:{}",
        pinned["sequence"],
        pinned["root"].as_str().expect("root")
    );
    // Verify a copy: opening a sled database writes to it.
    let home = tempfile::tempdir().expect("tempdir");
    let copy = home.path().join("data");
    copy_dir(&journal_v1().join("journal"), &copy.join("journal"));
    let dir = copy.to_string_lossy().into_owned();
    let out = run_cli(&[
        "verify",
        "--data-dir",
        &dir,
        "--expect-digest",
        &saved,
        "--json",
    ])
    .await;
    expect_exit(&out, 0);
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["lastSequence"], pinned["sequence"], "{report}");
    assert_eq!(report["root"], pinned["root"], "{report}");
    assert_eq!(report["revisions"], pinned["revisions"], "{report}");
}

local_only!(
    verify_locates_a_tampered_price_and_saved_proofs_keep_verifying_offline,
    usage_and_io_errors_exit_2,
    committed_journal_v1_still_verifies_against_its_pinned_digest,
);
