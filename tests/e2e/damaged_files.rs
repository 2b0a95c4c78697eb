//! Damaged data directories, as an operator meets them: files cut short or garbled
//! behind the server's back, then `adledger serve` and `adledger verify` run on them.
//!
//! - A journal cut to half its length (its read models still at the old length): `serve`
//!   refuses, naming how many blocks the journal holds, how many the read models have
//!   seen, and the recovery (a backup or an export, `adledger import`); `verify` exits 1
//!   saying the same; an export shorter than what was seen is refused by `import`, and
//!   the full export restores the ledger with its digest.
//!
//! Local backend only: the damage is done to sled and tantivy files. (The same check on
//! every backend, DynamoDB included, is the conformance test
//! `ledger_refuses_a_journal_behind_its_read_models`.)

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::support::{Backend, Server, binary, local_only, run_cli};

/// Ads written before the damage; large descriptions make the journal file large enough
/// that half of it holds some blocks but not all.
const ADS: usize = 30;

/// Starts `adledger serve` on `data_dir` and expects it to refuse: it must exit non-zero
/// within 30 s without announcing itself, and without a panic. Returns its stderr.
async fn serve_refused(data_dir: &Path, extra_args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(binary());
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ADLEDGER_") {
            cmd.env_remove(&key);
        }
    }
    let mut child = cmd.spawn().expect("spawn `adledger serve`");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut stderr = child.stderr.take().expect("stderr");
    let mut line = String::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line)).await;
    if line.contains("listening") {
        let _ = child.start_kill();
        let mut err = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stderr.read_to_end(&mut err)).await;
        panic!(
            "`adledger serve` started on a damaged data directory ({line})\n--- stderr ---\n{}",
            String::from_utf8_lossy(&err)
        );
    }
    assert!(
        read.is_ok(),
        "`adledger serve` neither started nor exited in 30 s"
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("`adledger serve` exits after refusing")
        .expect("wait for `adledger serve`");
    let mut err = Vec::new();
    stderr.read_to_end(&mut err).await.expect("read stderr");
    let err = String::from_utf8_lossy(&err).into_owned();
    assert_eq!(
        status.code(),
        Some(1),
        "serve must refuse with exit 1:\n{err}"
    );
    assert!(
        !err.contains("panicked"),
        "a refusal, never a panic:\n{err}"
    );
    err
}

/// `adledger export --data-dir DIR --out FILE`, which must succeed.
async fn export(dir: &str, file: &Path) {
    let out = run_cli(&[
        "export",
        "--data-dir",
        dir,
        "--out",
        &file.to_string_lossy(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
}

/// `adledger import --data-dir DIR FILE`.
async fn import(dir: &str, file: &Path) -> Output {
    run_cli(&["import", "--data-dir", dir, &file.to_string_lossy()]).await
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Cuts `file` to half its length, as a failed copy or a damaged disk would.
fn cut_in_half(file: &Path) -> u64 {
    let len = std::fs::metadata(file).expect("stat").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("open for truncation");
    f.set_len(len / 2).expect("truncate");
    f.sync_all().expect("sync");
    len / 2
}

/// Removes sled's snapshot files (`snap.*`) from a sled database directory.
fn remove_sled_snapshots(db_dir: &Path) {
    for entry in std::fs::read_dir(db_dir).expect("list the sled directory") {
        let entry = entry.expect("a directory entry");
        if entry.file_name().to_string_lossy().starts_with("snap.") {
            std::fs::remove_file(entry.path()).expect("remove a sled snapshot");
        }
    }
}

/// A stopped ledger of [`ADS`] ads; returns the server (stopped) and its digest.
async fn stopped_ledger() -> (Server, Value) {
    let mut server = Server::start(Backend::Local).await;
    let description = "x".repeat(3000);
    for i in 0..ADS {
        server
            .create_ad(
                "acme",
                &json!({"adTitle": format!("Ad {i}"), "adDescription": description}),
            )
            .await;
    }
    // Every ad listed: the read models have seen every block.
    assert_eq!(server.list("acme").await.len(), ADS);
    let digest = server.get("/ledger/digest").await.json();
    server.stop().await;
    (server, digest)
}

async fn a_journal_cut_short_is_refused_until_restored() {
    let (mut server, digest) = stopped_ledger().await;
    let dir = server.data_dir.clone();
    let dir_arg = dir.to_string_lossy().into_owned();
    let scratch = tempfile::tempdir().expect("scratch dir");
    let full_export = scratch.path().join("full.ion");
    export(&dir_arg, &full_export).await;

    cut_in_half(&dir.join("journal").join("db"));
    // sled's snapshot file caches the log's index; a snapshot that points past the cut
    // makes sled refuse to open (that case: `a_damaged_journal_is_refused`). Without it
    // sled recovers the log up to the cut, silently: the case this test is about.
    remove_sled_snapshots(&dir.join("journal"));

    let err = serve_refused(&dir, &[]).await;
    assert!(
        err.contains(&format!("has seen {ADS}"))
            && err.contains("backup")
            && err.contains("adledger import")
            && err.contains("not a repair"),
        "the refusal says what was lost and how to recover:\n{err}"
    );

    let out = run_cli(&["verify", "--data-dir", &dir_arg]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout.contains("FAILED at sequence") && stdout.contains(&format!("has seen {ADS}")),
        "{}",
        text(&out)
    );

    // What is left can be exported, but importing it would make the loss permanent.
    let short_export = scratch.path().join("short.ion");
    export(&dir_arg, &short_export).await;
    std::fs::remove_dir_all(dir.join("journal")).expect("remove the damaged journal");
    let out = import(&dir_arg, &short_export).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("has seen {ADS}")),
        "{}",
        text(&out)
    );

    // The full export restores everything, with the digest served before.
    let out = import(&dir_arg, &full_export).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run_cli(&["verify", "--data-dir", &dir_arg]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    server.restart().await;
    assert_eq!(server.list("acme").await.len(), ADS);
    assert_eq!(server.get("/ledger/digest").await.json(), digest);
    server.stop().await;
}

local_only!(a_journal_cut_short_is_refused_until_restored);
