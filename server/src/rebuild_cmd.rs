//! `adledger rebuild [--shadow] [--swap] [--batch N]`: rebuilds the state store and the
//! search index of a stopped ledger from its journal alone, verifying the hash chain.
//!
//! In place, it writes a [`RebuildMarker`] (`rebuild.in-progress` in the data directory),
//! clears both read models, rebuilds them and removes the marker. If it is interrupted
//! (crash, Ctrl-C, kill -9), the next `rebuild` finds the marker and resumes from the read
//! models' checkpoint instead of clearing again.
//!
//! With `--shadow` it builds into fresh read models (`shadow-rebuild/` in the data
//! directory), which always resume from their own checkpoint, then prints how the live
//! state store differs (ads missing, extra, or different by field). `--swap` then makes
//! the shadow read models the live ones in one promotion ([`Staging::promote`]): a kill
//! leaves the old read models or the rebuilt ones, never a mix, and a rerun gives the
//! same result as an uninterrupted run.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use adledger_engine::diff::{StateDiff, diff_states};
use adledger_engine::rebuild::{
    RebuildOptions, RebuildProgress, RebuildReport, clear_read_models, rebuild,
};
use adledger_engine::{Ports, SearchIndex, StateStore};
use adledger_local::Staging;
use clap::Args;
use serde_json::json;

use crate::backend;
use crate::cmd_output::{CommandError, Outcome, OutputArgs, bar, finish, report_line, runtime};
use crate::config::StorageArgs;

/// Flags of `adledger rebuild`.
#[derive(Debug, Clone, Default, Args)]
pub struct RebuildArgs {
    /// Where the ledger is.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// How to print the result.
    #[command(flatten)]
    pub output: OutputArgs,

    /// Build into fresh read models and print how the live ones differ; the live ones
    /// are untouched unless --swap is given too
    #[arg(long)]
    pub shadow: bool,

    /// With --shadow: replace the live read models with the rebuilt ones
    #[arg(long, requires = "shadow")]
    pub swap: bool,

    /// Blocks per batch
    #[arg(long, value_name = "N", default_value_t = adledger_engine::rebuild::DEFAULT_BATCH_BLOCKS)]
    pub batch: usize,
}

/// The name of the shadow read models a `--shadow` rebuild builds into.
const SHADOW: &str = "rebuild";

/// The file that says an in-place rebuild has cleared the read models and not finished
/// rebuilding them: while it exists, the read models are incomplete, and the next
/// rebuild resumes from their checkpoint instead of clearing them again.
#[derive(Debug, Clone)]
pub struct RebuildMarker {
    path: PathBuf,
}

impl RebuildMarker {
    /// The marker of the ledger in `data_dir`: `<data_dir>/rebuild.in-progress`.
    pub fn in_data_dir(data_dir: &Path) -> RebuildMarker {
        RebuildMarker {
            path: data_dir.join("rebuild.in-progress"),
        }
    }

    /// Whether an in-place rebuild was interrupted.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Marks a rebuild as started, durably, before the read models are cleared.
    pub fn write(&self) -> Result<(), CommandError> {
        let file = std::fs::File::create(&self.path).and_then(|f| f.sync_all());
        file.map_err(|source| CommandError::File {
            what: "cannot write the rebuild marker",
            path: self.path.clone(),
            source,
        })
    }

    /// Marks the rebuild as finished.
    pub fn remove(&self) -> Result<(), CommandError> {
        std::fs::remove_file(&self.path).map_err(|source| CommandError::File {
            what: "cannot remove",
            path: self.path.clone(),
            source,
        })
    }
}

/// Runs `adledger rebuild`.
pub fn rebuild_command(args: &RebuildArgs) -> ExitCode {
    finish(args.output, run_rebuild(args))
}

fn run_rebuild(args: &RebuildArgs) -> Outcome {
    let mut config = args.storage.load()?;
    // A rebuild replaces the read models: ones whose files cannot even be opened are
    // deleted and started empty rather than stopping the repair meant for them.
    config.rebuild_damaged_read_models = true;
    let ports = backend::open_existing(&config)?;
    let options = RebuildOptions {
        batch_blocks: args.batch.max(1),
        ..RebuildOptions::default()
    };
    let outcome: Outcome = runtime()?.block_on(async {
        if !args.shadow {
            let marker = RebuildMarker::in_data_dir(&config.data_dir);
            let resuming = marker.exists();
            if !resuming {
                marker.write()?;
                clear_read_models(ports.state.as_ref(), ports.search.as_ref()).await?;
            }
            let report =
                rebuild_with_bar(&ports, ports.state.as_ref(), ports.search.as_ref(), &options, args.output)
                    .await?;
            marker.remove()?;
            let text = format!(
                "rebuilt the state store and the search index in place{}: {}",
                if resuming { " (resumed an interrupted rebuild)" } else { "" },
                report_line(&report)
            );
            return Ok((text, json!({"ok": true, "mode": "in-place", "resumed": resuming, "report": report})));
        }

        let (state, search) = backend::open_read_models(&config, SHADOW)?;
        let report = rebuild_with_bar(&ports, state.as_ref(), search.as_ref(), &options, args.output).await?;
        let diff = diff_states(ports.state.as_ref(), state.as_ref(), 20).await?;
        let mut text = format!("shadow rebuild: {}\n{}", report_line(&report), diff_text(&diff));
        if !args.swap && !diff.is_empty() {
            text.push_str("\nthe live read models are unchanged; run again with --swap to replace them");
        }
        Ok((text, json!({"ok": true, "mode": "shadow", "report": report, "diff": diff, "swapped": args.swap})))
    });
    let (mut text, value) = outcome?;
    if args.swap {
        // Every store is closed (`ports` and the shadow's were dropped with the runtime's
        // task): the shadow's directories replace the live ones in one promotion, so a
        // kill leaves the old read models or the rebuilt ones, and a rerun redoes it.
        drop(ports);
        let dir = backend::read_models_dir(&config, SHADOW)?;
        let name = dir.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            CommandError::Refused(format!("no shadow directory {}", dir.display()))
        })?;
        Staging::resume(&config.data_dir, name)?.promote(&["state", "search"])?;
        text.push_str("\nswapped: the live read models now hold the rebuilt ones");
    }
    Ok((text, value))
}

async fn rebuild_with_bar(
    ports: &Ports,
    state: &dyn StateStore,
    search: &dyn SearchIndex,
    options: &RebuildOptions,
    output: OutputArgs,
) -> Result<RebuildReport, CommandError> {
    let total = ports.journal.last_sequence().await?.map_or(0, |l| l + 1);
    // Said before any work, so an operator (or a test) sees whether a rerun resumed.
    let (from_state, from_search) = tokio::join!(state.checkpoint(), search.checkpoint());
    let from = from_state?.min(from_search?);
    if !output.json {
        let _ = writeln!(
            std::io::stderr(),
            "{} from sequence {from} of {total}",
            if from > 0 {
                "rebuild: resuming"
            } else {
                "rebuild: starting"
            }
        );
    }
    let bar = bar(total, "blocks", output);
    bar.set_message("rebuilding");
    // Without a terminal there is no bar: one plain line per checkpointed batch instead,
    // so logs show the progress (and the checkpoint a rerun would resume from).
    let lines = !output.json && !std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut progress = |p: &RebuildProgress| {
        bar.set_length(p.target);
        bar.set_position(p.next);
        if lines {
            let rate = p.revisions as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let _ = writeln!(
                std::io::stderr(),
                "rebuild: checkpoint {} of {} ({rate:.0} revisions/s)",
                p.next,
                p.target
            );
        }
    };
    let report = rebuild(
        ports.journal.as_ref(),
        state,
        search,
        options,
        &mut progress,
    )
    .await;
    bar.finish_and_clear();
    Ok(report?)
}

fn diff_text(diff: &StateDiff) -> String {
    if diff.is_empty() {
        return format!(
            "no difference: the live state store equals the rebuilt one ({} ads)",
            diff.equal
        );
    }
    let mut lines = vec![format!(
        "differences: {} missing from the live state store, {} extra in it, {} different ({} equal)",
        diff.missing_count, diff.extra_count, diff.different_count, diff.equal
    )];
    for k in &diff.missing {
        lines.push(format!("  missing   {}/{}", k.publisher_id, k.ad_id));
    }
    for k in &diff.extra {
        lines.push(format!("  extra     {}/{}", k.publisher_id, k.ad_id));
    }
    for d in &diff.different {
        for f in &d.fields {
            lines.push(format!(
                "  different {}/{} {}: live {} rebuilt {}",
                d.publisher_id, d.ad_id, f.field, f.left, f.right
            ));
        }
    }
    lines.join("\n")
}
