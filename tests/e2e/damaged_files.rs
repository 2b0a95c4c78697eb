//! Damaged data directories, as an operator meets them: files cut short or garbled
//! behind the server's back, then `adledger serve` and `adledger verify` run on them.
//!
//! - A journal cut to half its length (its read models still at the old length): `serve`
//!   refuses, naming how many blocks the journal holds, how many the read models have
//!   seen, and the recovery (a backup or an export, `adledger import`); `verify` exits 1
//!   saying the same; an export shorter than what was seen is refused by `import`, and
//!   the full export restores the ledger with its digest.
//! - A journal whose files sled cannot open (cut with its snapshot pointing past the
//!   cut) or that opens empty (garbled): `serve` refuses, naming the journal and `adledger
//!   verify`, whatever the rebuild setting; `verify` exits 1.
//! - A state store cut short: `serve` refuses, naming it and `adledger rebuild`; with
//!   `--rebuild-damaged-read-models` it rebuilds it from the journal and says so.
//! - A missing tantivy segment file, a garbled `search/meta.json`: refused, naming the
//!   index (and the file) and `adledger rebuild`, which repairs it.
//! - A directory of unrelated files as `--data-dir`: refused, nothing created in it.
//! - On the AWS backend (`damaged_files::aws::…`, DynamoDB Local): a data directory whose
//!   tantivy index has seen 5 blocks, pointed at a journal table holding none: `serve`
//!   refuses and `verify` exits 1, naming both.
//!
//! The rest is local only: the damage is done to sled and tantivy files. (The journal
//! check on every backend's ports is also the conformance test
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
    cut_to(file, len / 2);
    len / 2
}

/// Cuts `file` to `len` bytes.
fn cut_to(file: &Path, len: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("open for truncation");
    f.set_len(len).expect("truncate");
    f.sync_all().expect("sync");
}

/// The length of `file`'s cut in damage round `round` (0, 1, …): half of `whole`, then a
/// quarter, and so on. Relative to the undamaged length, not the current one: sled
/// extends its segment back to full length when it opens a cut file, so halving the
/// current length would cut the same place every round.
fn shrinking_cut(whole: u64, round: usize) -> u64 {
    whole >> (round + 1).min(63)
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
    // An export opens every store once more, and sled writes its snapshot file (an
    // index of its log) when it opens a database: the files are then as any ledger's
    // that was restarted once.
    let scratch = tempfile::tempdir().expect("scratch dir");
    export(
        &server.data_dir.to_string_lossy(),
        &scratch.path().join("x.ion"),
    )
    .await;
    (server, digest)
}

async fn a_journal_cut_short_is_refused_until_restored() {
    let (mut server, digest) = stopped_ledger().await;
    let dir = server.data_dir.clone();
    let dir_arg = dir.to_string_lossy().into_owned();
    let scratch = tempfile::tempdir().expect("scratch dir");
    let full_export = scratch.path().join("full.ion");
    export(&dir_arg, &full_export).await;

    // sled's snapshot file caches the log's index; a snapshot that points past the cut
    // makes sled refuse to open (that case: `a_damaged_journal_is_refused`). Without it
    // sled recovers the log up to the cut, silently: the case this test is about. sled
    // allocates ahead of its data, so a cut can miss every block: cut shorter until one is
    // lost.
    let db = dir.join("journal").join("db");
    let whole = std::fs::metadata(&db).expect("stat the journal").len();
    damage_until_verify_fails(&dir, |round| {
        cut_to(&db, shrinking_cut(whole, round));
        remove_sled_snapshots(&dir.join("journal"));
        shrinking_cut(whole, round) > 0
    })
    .await;

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

/// Flips every `step`-th byte of `file` from offset 1000 on, as bad sectors would.
fn garble_every(file: &Path, step: usize) {
    let mut bytes = std::fs::read(file).expect("read the file to garble");
    for at in (1000..bytes.len()).step_by(step) {
        bytes[at] ^= 0xff;
    }
    std::fs::write(file, bytes).expect("write the garbled file");
}

/// Applies `damage(round)` (round 0, 1, …) until `adledger verify` on `dir` no longer
/// passes; `damage` returns whether another, stronger round is possible. A damage that
/// missed everything sled holds leaves a journal that is right to serve, so the tests
/// that need a damaged journal make sure they have one.
async fn damage_until_verify_fails(dir: &Path, mut damage: impl FnMut(usize) -> bool) {
    for round in 0.. {
        let more = damage(round);
        let out = run_cli(&["verify", "--data-dir", &dir.to_string_lossy()]).await;
        if out.status.code() != Some(0) {
            return;
        }
        assert!(
            more,
            "the damage never reached the journal's data: {}",
            text(&out)
        );
    }
}

/// The one file in `dir` whose name starts with `prefix` (a sled snapshot, a tantivy
/// segment file); the test's precondition, so it fails loudly if the layout changed.
fn file_starting_with(dir: &Path, prefix: &str, suffix: &str) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .expect("list the directory")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .unwrap_or_else(|| panic!("no {prefix}*{suffix} in {}", dir.display()))
}

/// The ledger's ads are all listed and all found by search: the read models are whole.
async fn assert_whole(server: &Server) {
    assert_eq!(
        server.list("acme").await.len(),
        ADS,
        "{}",
        server.stderr_tail()
    );
    let found = server.get("/search?q=Ad&limit=100").await.json();
    assert_eq!(found["total"], ADS, "{found}");
}

/// The journal's `db` file cut with sled's snapshot still pointing past the cut (sled
/// refuses it), then garbled (sled recovers nothing): `serve` refuses, naming the
/// journal and `adledger verify`; `verify` exits 1 naming the journal.
async fn a_damaged_journal_is_refused() {
    let (_server, _) = stopped_ledger().await;
    let dir = _server.data_dir.clone();
    let journal = dir.join("journal");
    file_starting_with(&journal, "snap.", "");
    let backup = std::fs::read(journal.join("db")).expect("keep the db file");

    // sled allocates its file ahead of its data, so a cut may land in unused space and
    // leave every block (then serving is right): cut shorter until `verify` sees damage.
    damage_until_verify_fails(&dir, |round| {
        cut_to(
            &journal.join("db"),
            shrinking_cut(backup.len() as u64, round),
        );
        shrinking_cut(backup.len() as u64, round) > 0
    })
    .await;
    let err = serve_refused(&dir, &[]).await;
    assert!(
        err.contains(&journal.display().to_string()) && err.contains("adledger verify"),
        "the refusal names the journal and the command that locates the damage:\n{err}"
    );
    let out = run_cli(&["verify", "--data-dir", &dir.to_string_lossy()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cannot be opened"),
        "{}",
        text(&out)
    );

    std::fs::write(journal.join("db"), &backup).expect("put the db file back");
    // The same for garbling: denser until it hits what sled holds, each round from the
    // undamaged file (an open of a damaged one may rewrite it).
    const STEPS: [usize; 6] = [997, 331, 97, 31, 7, 1];
    damage_until_verify_fails(&dir, |round| {
        std::fs::write(journal.join("db"), &backup).expect("put the db file back");
        garble_every(&journal.join("db"), STEPS[round.min(STEPS.len() - 1)]);
        round + 1 < STEPS.len()
    })
    .await;
    let err = serve_refused(&dir, &["--rebuild-damaged-read-models"]).await;
    assert!(
        err.contains("journal"),
        "a garbled journal is never served, whatever the setting:\n{err}"
    );
    let out = run_cli(&["verify", "--data-dir", &dir.to_string_lossy()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

/// The state store's `db` cut short (sled refuses it): `serve` refuses, naming the state
/// directory and `adledger rebuild`; with `--rebuild-damaged-read-models` it starts,
/// says so in its log, and serves every ad.
async fn a_damaged_state_store_is_refused_or_rebuilt_when_allowed() {
    let (mut server, digest) = stopped_ledger().await;
    let dir = server.data_dir.clone();
    let state = dir.join("state");
    file_starting_with(&state, "snap.", "");
    cut_in_half(&state.join("db"));

    let err = serve_refused(&dir, &[]).await;
    assert!(
        err.contains(&state.display().to_string())
            && err.contains("adledger rebuild")
            && err.contains("--rebuild-damaged-read-models"),
        "the refusal names the state store and the repairs:\n{err}"
    );

    let mut rebuilt =
        Server::start_with(Some(dir.clone()), &["--rebuild-damaged-read-models".into()]).await;
    assert_whole(&rebuilt).await;
    assert_eq!(rebuilt.get("/ledger/digest").await.json(), digest);
    assert!(
        rebuilt
            .stderr_tail()
            .contains("rebuilding it from the journal"),
        "a log line says the read model was rebuilt:\n{}",
        rebuilt.stderr_tail()
    );
    rebuilt.stop().await;
    server.restart().await;
    assert_whole(&server).await;
    server.stop().await;
}

/// A tantivy segment file deleted, then `search/meta.json` garbled: `serve` refuses,
/// naming the search index and `adledger rebuild`; `adledger rebuild` repairs it.
async fn a_damaged_search_index_is_refused_until_rebuilt() {
    let (mut server, _) = stopped_ledger().await;
    let dir = server.data_dir.clone();
    let search = dir.join("search");

    std::fs::remove_file(file_starting_with(&search, "", ".store")).expect("delete a segment file");
    let err = serve_refused(&dir, &[]).await;
    assert!(
        err.contains(&search.display().to_string()) && err.contains("adledger rebuild"),
        "the refusal names the index and the repair:\n{err}"
    );
    let out = run_cli(&["rebuild", "--data-dir", &dir.to_string_lossy()]).await;
    assert!(out.status.success(), "{}", text(&out));
    server.restart().await;
    assert_whole(&server).await;
    server.stop().await;

    std::fs::write(search.join("meta.json"), b"{\"segments\": [garbage").expect("garble meta.json");
    let err = serve_refused(&dir, &[]).await;
    assert!(
        err.contains("meta.json") && err.contains("adledger rebuild"),
        "the refusal names the file and the repair:\n{err}"
    );
    let out = run_cli(&["rebuild", "--data-dir", &dir.to_string_lossy()]).await;
    assert!(out.status.success(), "{}", text(&out));
    server.restart().await;
    assert_whole(&server).await;
    server.stop().await;
}

/// A directory of someone else's files as `--data-dir`: `serve` refuses, naming what it
/// found, and creates nothing in it.
async fn a_foreign_directory_is_refused() {
    let home = tempfile::tempdir().expect("dir");
    let dir = home.path().join("photos");
    std::fs::create_dir_all(dir.join("2024")).expect("a subdirectory");
    std::fs::write(dir.join("notes.txt"), b"not a ledger").expect("a file");
    let err = serve_refused(&dir, &[]).await;
    assert!(
        err.contains("not an adledger data directory") && err.contains("notes.txt"),
        "{err}"
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["2024", "notes.txt"], "nothing was created");
}

/// The AWS backend: a process's tantivy index (in its data directory) has seen 5 blocks,
/// and the process is then pointed at a journal table holding none (as after restoring
/// the tables from an older backup): `serve` refuses, naming both, and `verify` exits 1.
async fn a_journal_behind_the_search_index_is_refused() {
    let mut server = Server::start_on(Backend::Aws, &[]).await;
    for i in 0..5 {
        server
            .create_ad("acme", &json!({"adTitle": format!("Ad {i}")}))
            .await;
    }
    let found = server.get("/search?q=Ad").await.json();
    assert_eq!(found["total"], 5, "{found}");
    server.stop().await;

    let older = Backend::Aws.fresh_ledger("behind").await;
    let mut args: Vec<&str> = older.iter().map(String::as_str).collect();
    args.extend(["--auth", "none"]);
    // The tables are other tables here; as if this ledger's were restored from an older
    // backup, the index says it is this ledger's (else it is refused as another's, below).
    rename_index_owner(&server.data_dir, &older);
    let err = serve_refused(&server.data_dir, &args).await;
    assert!(
        err.contains("holds 0 blocks") && err.contains("search index's checkpoint has seen 5"),
        "{err}"
    );

    let dir = server.data_dir.to_string_lossy().into_owned();
    let mut verify = vec!["verify", "--data-dir", dir.as_str()];
    verify.extend(older.iter().map(String::as_str));
    let out = run_cli(&verify).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("has seen 5"),
        "{}",
        text(&out)
    );
}

/// Points the index's owner file (`search/adledger-ledger.txt`) at the table prefix that
/// `ledger_args` name.
fn rename_index_owner(data_dir: &Path, ledger_args: &[String]) {
    let owner = data_dir.join("search").join("adledger-ledger.txt");
    let text = std::fs::read_to_string(&owner).expect("the index names its ledger");
    let prefix = ledger_args
        .iter()
        .skip_while(|a| *a != "--table-prefix")
        .nth(1)
        .expect("--table-prefix");
    let at = text.find("table prefix \"").expect("a table prefix") + "table prefix ".len();
    std::fs::write(&owner, format!("{}{prefix:?}\n", &text[..at])).expect("rename the owner");
}

/// The AWS backend with a tantivy index: a `--data-dir` whose index was filled from one
/// ledger's tables, given to a server of another ledger, is refused naming both (it would
/// serve the first ledger's ads); with `--rebuild-damaged-read-models` the index is
/// deleted and rebuilt for the new ledger.
async fn a_search_index_of_another_ledger_is_refused() {
    let mut server = Server::start_on(Backend::Aws, &[]).await;
    for i in 0..3 {
        server
            .create_ad("acme", &json!({"adTitle": format!("Ad {i}")}))
            .await;
    }
    server.stop().await;

    let other = Backend::Aws.fresh_ledger("other").await;
    let mut args: Vec<&str> = other.iter().map(String::as_str).collect();
    args.extend(["--auth", "none"]);
    let err = serve_refused(&server.data_dir, &args).await;
    let index = server.data_dir.join("search");
    assert!(
        err.contains("was built for the DynamoDB ledger")
            && err.contains(&index.display().to_string())
            && err.contains("--data-dir of its own"),
        "{err}"
    );

    let mut rebuilt: Vec<String> = other.clone();
    rebuilt.push("--rebuild-damaged-read-models".into());
    let fresh = Server::start_with(Some(server.data_dir.clone()), &rebuilt).await;
    let found = fresh.get("/search?q=Ad").await.json();
    assert_eq!(found["total"], 0, "none of the other ledger's ads: {found}");
}

crate::support::aws_only!(
    a_journal_behind_the_search_index_is_refused,
    a_search_index_of_another_ledger_is_refused,
);

local_only!(
    a_journal_cut_short_is_refused_until_restored,
    a_damaged_journal_is_refused,
    a_damaged_state_store_is_refused_or_rebuilt_when_allowed,
    a_damaged_search_index_is_refused_until_rebuilt,
    a_foreign_directory_is_refused,
);
