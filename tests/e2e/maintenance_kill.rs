//! Maintenance killed with SIGKILL at random moments: `import`, `snapshot restore` and
//! `rebuild --shadow --swap` each run as the real binary and are killed after a random
//! delay within their uninterrupted run time (seeded; the seed is printed, and
//! `ADLEDGER_TEST_SEED` replays it). After every kill the data directory holds either the
//! old stores or the whole new ones — never a part — as the next process to open it sees
//! them (`LocalBackend::open`, which `serve` calls); a rerun then succeeds and gives what
//! an uninterrupted run gives; `adledger verify` passes and `serve` serves it.
//!
//! Local backend only: the staging directories and the stores are files in the data
//! directory (on AWS these commands write through the tables, see `maintenance`).

use std::path::Path;
use std::time::{Duration, Instant};

use adledger_engine::diff::diff_states;
use adledger_engine::ports::{Journal, SearchIndex, SearchQuery, StateStore};
use adledger_local::LocalBackend;
use reqwest::StatusCode;
use serde_json::Value;

use crate::maintenance::{cli_fails, cli_ok, copy_dir, dir_arg, write_journal};
use crate::support::{Server, local_only};

/// Revisions (one per block) of the ledgers these tests build: enough for each command
/// to run long enough in a debug build for kills to land at different steps.
const REVISIONS: u64 = 12_000;
/// Ads in those ledgers (four revisions each).
const ADS: u64 = REVISIONS / 4;
/// Kills per command.
const TRIALS: usize = 6;

/// A small seeded generator (splitmix64): no dependency for a few random delays.
pub(crate) struct Rng(u64);

impl Rng {
    /// The seed from `ADLEDGER_TEST_SEED`, or from the clock; printed either way.
    pub(crate) fn from_env(test: &str) -> Rng {
        Rng(crate::support::seed_from_env("ADLEDGER_TEST_SEED", test))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A delay in `[0, 1.1 × full)`: most kills land inside the run, some after it.
    pub(crate) fn delay(&mut self, full: Duration) -> Duration {
        let span = (full.as_millis() as u64 * 11 / 10).max(1);
        Duration::from_millis(self.next() % span)
    }
}

/// Runs `adledger ARGS`, SIGKILLs it after `delay` (unless it ended before), and says
/// whether the kill landed.
pub(crate) async fn run_and_kill(args: &[&str], delay: Duration) -> bool {
    let mut child = crate::support::spawn_cli_quiet(args);
    tokio::time::sleep(delay).await;
    let killed = child.start_kill().is_ok();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("adledger did not end within 30 s of SIGKILL")
        .expect("wait");
    killed && !status.success()
}

/// Writes a journal of `revisions` revisions in `home/source` and exports it to
/// `home/ledger.ion`: its verified root, and the export's path as an argument.
pub(crate) async fn exported_journal(home: &Path, revisions: u64) -> (String, String) {
    let source = home.join("source");
    write_journal(&source, revisions).await;
    let root = verified_root(&source).await;
    let file = dir_arg(&home.join("ledger.ion"));
    cli_ok(&["export", "--data-dir", &dir_arg(&source), "--out", &file]).await;
    (root, file)
}

/// What an interrupted `adledger import FILE` left in `target`, as the next open sees it:
/// an empty journal (then `interrupted` must be true, and a rerun imports the file) or
/// all `revisions` blocks (then a rerun is refused: the journal is not empty). Returns
/// whether it was empty; fails the test on a part.
pub(crate) async fn import_outcome(
    target: &Path,
    file: &str,
    revisions: u64,
    interrupted: bool,
    what: &str,
) -> bool {
    let t = dir_arg(target);
    let last = {
        let live = LocalBackend::open(target).expect("open after the interruption");
        live.journal.last_sequence().await.expect("tip")
    };
    match last {
        None => {
            assert!(interrupted, "{what}: an import that ended imported nothing");
            cli_ok(&["import", file, "--data-dir", &t]).await;
            true
        }
        Some(last) => {
            assert_eq!(last + 1, revisions, "{what}: a part of the import is live");
            let err = cli_fails(&["import", file, "--data-dir", &t]).await;
            assert!(err.contains("empty journal"), "{what}: {err}");
            false
        }
    }
}

/// Runs `adledger ARGS` to the end and returns how long it took.
async fn timed(args: &[&str]) -> Duration {
    let started = Instant::now();
    cli_ok(args).await;
    started.elapsed()
}

/// The root `adledger verify --json` reports for the data directory; fails the test if
/// it does not verify.
pub(crate) async fn verified_root(dir: &Path) -> String {
    let out = cli_ok(&["verify", "--json", "--data-dir", &dir_arg(dir)]).await;
    let report: Value = serde_json::from_str(out.trim()).expect("verify --json");
    report
        .pointer("/report/root")
        .or_else(|| report.get("root"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no root in {report}"))
        .to_string()
}

/// The live read models as the next process to open the data directory sees them (a
/// promotion a kill interrupted is finished by this open, as by `serve`): their
/// checkpoints and how many ads of the state store equal `clean`'s, checking that it
/// holds no ad `clean` lacks or has differently.
async fn live_read_models(dir: &Path, clean: &Path) -> (u64, u64, u64) {
    let live = LocalBackend::open(dir).expect("open the data directory");
    let clean = LocalBackend::open(clean).expect("open the clean copy");
    let state = live.state.checkpoint().await.expect("state checkpoint");
    let search = live.search.checkpoint().await.expect("search checkpoint");
    let diff = diff_states(live.state.as_ref(), clean.state.as_ref(), 5)
        .await
        .expect("diff");
    assert_eq!(
        (diff.extra_count, diff.different_count),
        (0, 0),
        "no ad that the clean run lacks: {diff:?}"
    );
    (state, search, diff.equal)
}

/// Checks that the read models in `dir` equal those in `clean` (whole state store, one
/// search's hits), both at checkpoint `REVISIONS`.
async fn same_read_models(dir: &Path, clean: &Path, trial: usize) {
    let a = LocalBackend::open(dir).expect("open");
    let b = LocalBackend::open(clean).expect("open clean");
    let diff = diff_states(a.state.as_ref(), b.state.as_ref(), 5)
        .await
        .expect("diff");
    assert!(diff.is_empty(), "trial {trial}: differs: {diff:?}");
    assert_eq!(
        diff.equal,
        REVISIONS / 4,
        "trial {trial}: every ad is there"
    );
    for models in [&a, &b] {
        assert_eq!(models.state.checkpoint().await.expect("cp"), REVISIONS);
        assert_eq!(models.search.checkpoint().await.expect("cp"), REVISIONS);
    }
    let query = SearchQuery {
        text: "bicycle".into(),
        publisher_id: Some("pub7".into()),
        limit: 1000,
        ..SearchQuery::default()
    };
    let (x, y) = (
        a.search.search(&query).await.expect("search"),
        b.search.search(&query).await.expect("search"),
    );
    assert!(x.total > 0, "trial {trial}: the search finds ads");
    assert_eq!(x.total, y.total, "trial {trial}: same hits");
}

/// What `serve` answers on `dir`: the digest's root and the number of ads of `pub7`.
async fn served(dir: &Path) -> (String, usize) {
    let mut server = Server::start_with(Some(dir.to_path_buf()), &[]).await;
    let digest = server.get("/ledger/digest").await;
    digest.expect_status(StatusCode::OK);
    let root = digest.json()["root"].as_str().expect("root").to_string();
    // The server catches its read models up before it lists; wait for them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ads = server.list("pub7").await.len();
    while ads < (REVISIONS / 4 / 50) as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ads = server.list("pub7").await.len();
    }
    server.stop().await;
    (root, ads)
}

async fn an_import_killed_at_random_moments_leaves_no_journal_or_all_of_it() {
    let mut rng = Rng::from_env("import");
    let home = tempfile::tempdir().expect("tempdir");
    let (root, f) = exported_journal(home.path(), REVISIONS).await;
    let full = timed(&[
        "import",
        &f,
        "--data-dir",
        &dir_arg(&home.path().join("clean")),
    ])
    .await;

    let mut outcomes = (0, 0);
    for trial in 0..TRIALS {
        let target = home.path().join(format!("target-{trial}"));
        let t = dir_arg(&target);
        // The old state: a data directory a server has opened, with an empty journal.
        drop(LocalBackend::open(&target).expect("an empty ledger"));
        let delay = rng.delay(full);
        let killed = run_and_kill(&["import", &f, "--data-dir", &t], delay).await;

        if import_outcome(&target, &f, REVISIONS, killed, &format!("trial {trial}")).await {
            outcomes.0 += 1;
        } else {
            outcomes.1 += 1;
        }
        assert_eq!(
            verified_root(&target).await,
            root,
            "trial {trial} (killed after {delay:?})"
        );
        assert!(!target.join("import-staging").exists(), "trial {trial}");
    }
    println!("import: {TRIALS} kills in {full:?} runs: {outcomes:?} (old, whole)");
    let (served_root, ads) = served(&home.path().join(format!("target-{}", TRIALS - 1))).await;
    assert_eq!(served_root, root);
    assert_eq!(ads as u64, REVISIONS / 4 / 50, "every ad of pub7 is listed");
}

/// A copy of `data` whose read models are lost, so the old state (empty read models at
/// checkpoint 0) and the new one (complete) cannot be confused.
fn trial_copy(data: &Path, target: &Path) {
    copy_dir(data, target);
    for store in ["state", "search"] {
        std::fs::remove_dir_all(target.join(store)).expect("remove a read model");
    }
}

/// A ledger with read models at `REVISIONS` in `<home>/data` (and a snapshot of them);
/// returns the snapshot's id.
async fn ledger_with_snapshot(home: &Path) -> String {
    let data = dir_arg(&home.join("data"));
    write_journal(&home.join("data"), REVISIONS).await;
    cli_ok(&["rebuild", "--data-dir", &data]).await;
    let out = cli_ok(&["snapshot", "create", "--json", "--data-dir", &data]).await;
    let created: Value = serde_json::from_str(out.trim()).expect("json");
    created["snapshot"]["id"].as_str().expect("id").to_string()
}

/// Runs `command` (with `--data-dir`) uninterrupted on a copy of `<home>/data`, then
/// `TRIALS` times on copies whose read models are lost, killed at random: after each
/// kill the read models are the old (empty) ones or the whole new ones, a rerun gives
/// what the uninterrupted run gave, `staging` is gone; `verify` and `serve` agree.
async fn kill_a_read_model_command(test: &str, home: &Path, command: &[&str], staging: &str) {
    let mut rng = Rng::from_env(test);
    let data = home.join("data");
    let clean = home.join("clean");
    copy_dir(&data, &clean);
    let c = dir_arg(&clean);
    let full = timed(&[command, &["--data-dir", &c]].concat()).await;

    let mut outcomes = (0, 0);
    for trial in 0..TRIALS {
        let target = home.join(format!("target-{trial}"));
        let t = dir_arg(&target);
        let args = [command, &["--data-dir", &t]].concat();
        trial_copy(&data, &target);
        let delay = rng.delay(full);
        run_and_kill(&args, delay).await;
        match live_read_models(&target, &clean).await {
            (0, 0, 0) => outcomes.0 += 1,
            (REVISIONS, REVISIONS, ADS) => outcomes.1 += 1,
            other => panic!("trial {trial} (killed after {delay:?}): read models at {other:?}"),
        }
        cli_ok(&args).await;
        same_read_models(&target, &clean, trial).await;
        assert!(!target.join(staging).exists(), "trial {trial}");
    }
    println!("{test}: {TRIALS} kills in {full:?} runs: {outcomes:?} (old, whole)");
    let target = home.join(format!("target-{}", TRIALS - 1));
    verified_root(&target).await;
    let (_, ads) = served(&target).await;
    assert_eq!(ads as u64, REVISIONS / 4 / 50, "every ad of pub7 is listed");
}

async fn a_killed_restore_leaves_the_old_read_models_or_the_restored_ones() {
    let home = tempfile::tempdir().expect("tempdir");
    let id = ledger_with_snapshot(home.path()).await;
    let restore = ["snapshot", "restore", id.as_str()];
    kill_a_read_model_command("restore", home.path(), &restore, "restore-staging").await;
}

async fn a_killed_swap_leaves_the_old_read_models_or_the_rebuilt_ones() {
    let home = tempfile::tempdir().expect("tempdir");
    ledger_with_snapshot(home.path()).await;
    let swap = ["rebuild", "--shadow", "--swap"];
    kill_a_read_model_command("swap", home.path(), &swap, "shadow-rebuild").await;
}

local_only!(
    an_import_killed_at_random_moments_leaves_no_journal_or_all_of_it,
    a_killed_restore_leaves_the_old_read_models_or_the_restored_ones,
    a_killed_swap_leaves_the_old_read_models_or_the_rebuilt_ones,
);
