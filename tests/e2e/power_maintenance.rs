//! Power cuts during maintenance: `adledger import` and `adledger rebuild --shadow --swap`
//! run on `adledger-powerfs` (the FUSE file system that forgets what was not synced, see
//! `power_loss`), and the power is cut at a random moment of each. After the "reboot":
//!
//! - the import left an empty journal or the whole ledger — never a part — and a rerun
//!   (when it was empty) imports it; `adledger verify` gives the export's root;
//! - the swap left the old read models (empty, checkpoint 0) or the whole rebuilt ones;
//!   a rerun ends as an uninterrupted run does, and `serve` then lists every ad and finds
//!   them by search.
//!
//! Local backend only; needs root and `/dev/fuse` (fails saying so without them).
//! `ADLEDGER_POWER_MAINTENANCE_CUTS` (default 8) sets the number of cut pairs,
//! `ADLEDGER_POWER_SEED` the seed (printed either way).

use std::time::{Duration, Instant};

use adledger_engine::ports::{SearchIndex, StateStore};
use adledger_local::LocalBackend;

use crate::maintenance::{cli_ok, dir_arg};
use crate::maintenance_kill::{exported_journal, import_outcome, verified_root};
use crate::support::{Rng, Server, local_only};

/// Revisions (one per block, four per ad) of the ledger imported.
const REVISIONS: u64 = 4_000;

/// Runs `adledger ARGS` with the power cut after `delay` (unless it ended before): the
/// file system dies first, then the process is killed, as at a real power loss. Returns
/// whether the cut came before the command ended, and what survived.
async fn run_and_cut(
    args: &[String],
    fs: adledger_powerfs::Mounted,
    delay: Duration,
) -> (bool, adledger_powerfs::CutReport) {
    let mut child = crate::support::spawn_cli_quiet(args);
    let ended = tokio::time::timeout(delay, child.wait()).await.is_ok();
    fs.cut();
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let report = fs.restore().expect("restore what survived the cut");
    (!ended, report)
}

async fn import_and_swap_survive_power_cuts() {
    crate::support::require_root("the power-cut tests mount a FUSE file system");
    let cuts = std::env::var("ADLEDGER_POWER_MAINTENANCE_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8usize);
    let mut rng = Rng::new(crate::support::seed_from_env(
        "ADLEDGER_POWER_SEED",
        "power-cut",
    ));
    let home = tempfile::tempdir().expect("tempdir");
    let (root, f) = exported_journal(home.path(), REVISIONS).await;

    // How long an uninterrupted import and swap take on this file system.
    let (import_time, swap_time) = {
        let backing = home.path().join("backing-timing");
        let mnt = home.path().join("mnt-timing");
        std::fs::create_dir_all(&backing).expect("mkdir backing");
        std::fs::create_dir_all(&mnt).expect("mkdir mnt");
        let fs = adledger_powerfs::mount(&backing, &mnt).unwrap_or_else(|e| panic!("{e}"));
        let data = dir_arg(&mnt.join("data"));
        let started = Instant::now();
        cli_ok(&["import", &f, "--data-dir", &data]).await;
        let import = started.elapsed();
        let started = Instant::now();
        cli_ok(&["rebuild", "--shadow", "--swap", "--data-dir", &data]).await;
        let swap = started.elapsed();
        drop(fs);
        (import, swap)
    };
    println!(
        "uninterrupted on the power-loss file system: import {import_time:?}, swap {swap_time:?}"
    );
    // A cut at a random moment of the run (the first third of an import mostly verifies
    // the file, which writes nothing, so cuts land after it).
    let between = |rng: &mut Rng, from: Duration, to: Duration| {
        let span = (to.saturating_sub(from).as_millis() as usize).max(1);
        from + Duration::from_millis(rng.below(span) as u64)
    };
    let mut outcomes = (0, 0, 0, 0);
    let mut discarded = 0;
    for trial in 0..cuts {
        let backing = home.path().join(format!("backing-{trial}"));
        let mnt = home.path().join(format!("mnt-{trial}"));
        std::fs::create_dir_all(&backing).expect("mkdir backing");
        std::fs::create_dir_all(&mnt).expect("mkdir mnt");
        let data = mnt.join("data");
        let d = dir_arg(&data);

        // Import, cut at a random moment within an uninterrupted run's time.
        let import = |d: &str| -> Vec<String> {
            ["import", f.as_str(), "--data-dir", d]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        let fs = adledger_powerfs::mount(&backing, &mnt).unwrap_or_else(|e| panic!("{e}"));
        drop(LocalBackend::open(&data).expect("an empty ledger, the old state"));
        let delay = between(&mut rng, import_time / 3, import_time);
        let (cut_early, report) = run_and_cut(&import(&d), fs, delay).await;
        discarded += report.unsynced_writes;

        let fs = adledger_powerfs::mount(&backing, &mnt).unwrap_or_else(|e| panic!("{e}"));
        let what = format!("trial {trial} (cut after {delay:?})");
        if import_outcome(&data, &f, REVISIONS, cut_early, &what).await {
            outcomes.0 += 1;
        } else {
            outcomes.1 += 1;
        }
        assert_eq!(verified_root(&data).await, root, "trial {trial}");
        assert!(!data.join("import-staging").exists(), "trial {trial}");

        // Rebuild the (empty) read models beside the live ones and swap, cut at random.
        drop(fs);
        let fs = adledger_powerfs::mount(&backing, &mnt).unwrap_or_else(|e| panic!("{e}"));
        let swap: Vec<String> = ["rebuild", "--shadow", "--swap", "--data-dir", d.as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let delay = between(&mut rng, Duration::ZERO, swap_time);
        let (_, report) = run_and_cut(&swap, fs, delay).await;
        discarded += report.unsynced_writes;
        let fs = adledger_powerfs::mount(&backing, &mnt).unwrap_or_else(|e| panic!("{e}"));
        {
            let live = LocalBackend::open(&data).expect("open after the cut");
            let state = live.state.checkpoint().await.expect("state checkpoint");
            let search = live.search.checkpoint().await.expect("search checkpoint");
            match (state, search) {
                (0, 0) => outcomes.2 += 1,
                (REVISIONS, REVISIONS) => outcomes.3 += 1,
                other => panic!(
                    "trial {trial} (swap cut after {delay:?}): read models at {other:?}, \
                     neither the old (0, 0) nor the rebuilt ({REVISIONS}, {REVISIONS})"
                ),
            }
        }
        // A rerun of the swap ends where an uninterrupted one does, and leaves no staging.
        cli_ok(&swap.iter().map(String::as_str).collect::<Vec<_>>()).await;
        {
            let live = LocalBackend::open(&data).expect("open after the rerun");
            assert_eq!(live.state.checkpoint().await.expect("cp"), REVISIONS);
            assert_eq!(live.search.checkpoint().await.expect("cp"), REVISIONS);
        }
        assert!(!data.join("shadow-rebuild").exists(), "trial {trial}");
        // The server catches up whatever the swap left, and serves every ad.
        let mut server = Server::start_with(Some(data.clone()), &[]).await;
        let listed = server.list("pub7").await.len() as u64;
        assert_eq!(
            listed,
            REVISIONS / 4 / 50,
            "trial {trial}: pub7's ads listed"
        );
        let found = server.get("/search?publisherId=pub7&limit=100").await;
        assert_eq!(
            found.json()["total"].as_u64(),
            Some(listed),
            "trial {trial}: {}",
            found.text
        );
        server.stop().await;
        drop(fs);
    }
    println!(
        "power cuts in maintenance: {cuts} imports cut (left empty and rerun: {}, whole: \
         {}), {cuts} swaps cut (old read models: {}, rebuilt: {}); {discarded} unsynced \
         writes discarded; acknowledged bytes lost: 0",
        outcomes.0, outcomes.1, outcomes.2, outcomes.3
    );
    assert!(discarded > 0, "the file system never discarded anything");
}

local_only!(import_and_swap_survive_power_cuts);
