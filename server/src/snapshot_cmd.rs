//! `adledger snapshot create | list | restore ID | delete ID [--dir DIR]`: snapshots of a
//! stopped ledger's read models, in its snapshot directory ([`SnapshotStore`]).

use std::path::PathBuf;
use std::process::ExitCode;

use adledger_engine::rebuild::{RebuildOptions, RebuildProgress};
use adledger_engine::snapshot::{self, SnapshotHeader};
use adledger_engine::{SearchIndex, StateStore};
use adledger_local::{SledStateStore, Staging, TantivySearchIndex};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::backend;
use crate::cmd_output::{Outcome, OutputArgs, bar, finish, report_line, runtime};
use crate::config::{BackendKind, StorageArgs};

/// Where a local restore builds its read models (see `adledger_local::Staging`).
const RESTORE_STAGING: &str = "restore-staging";
use crate::snapshot_store::SnapshotStore;

/// `adledger snapshot …`.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// Where the ledger is.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// How to print the result.
    #[command(flatten)]
    pub output: OutputArgs,

    /// Directory of snapshot files [default: <data-dir>/snapshots]
    #[arg(long, value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub action: SnapshotAction,
}

/// The snapshot actions.
#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotAction {
    /// Snapshot the state store at its checkpoint, with the journal's digest there
    Create,
    /// List the snapshots, oldest first
    List,
    /// Check a snapshot against the journal, load it into both read models, then
    /// replay the journal after it
    Restore {
        /// The snapshot's id (its file name without `.jsonl`) or its path
        id: String,
    },
    /// Delete a snapshot
    Delete {
        /// The snapshot's id
        id: String,
    },
}

/// Runs `adledger snapshot …`.
pub fn snapshot_command(args: &SnapshotArgs) -> ExitCode {
    finish(args.output, run_snapshot(args))
}

fn header_json(id: &str, h: &SnapshotHeader) -> serde_json::Value {
    json!({"id": id, "header": h})
}

fn run_snapshot(args: &SnapshotArgs) -> Outcome {
    let config = args.storage.load()?;
    let store = match &args.dir {
        Some(dir) => SnapshotStore::at(dir),
        None => SnapshotStore::in_data_dir(&config.data_dir),
    };
    match &args.action {
        SnapshotAction::List => {
            let all = store.list()?;
            let mut lines: Vec<String> = all
                .iter()
                .map(|(id, h)| {
                    format!(
                        "{id}  sequence {}  {} ads  taken {}  root {}",
                        h.sequence,
                        h.count,
                        adledger_engine::time::format_rfc3339_millis(&h.created_at),
                        h.root
                    )
                })
                .collect();
            if lines.is_empty() {
                lines.push(format!("no snapshots in {}", store.dir().display()));
            }
            let items: Vec<_> = all.iter().map(|(id, h)| header_json(id, h)).collect();
            Ok((lines.join("\n"), json!({"ok": true, "snapshots": items})))
        }
        SnapshotAction::Delete { id } => {
            store.delete(id)?;
            Ok((
                format!("deleted snapshot {id}"),
                json!({"ok": true, "deleted": id}),
            ))
        }
        SnapshotAction::Create => {
            let ports = backend::open_existing(&config)?;
            runtime()?.block_on(async {
                let (id, header) = store.create(&ports).await?;
                Ok((
                    format!(
                        "created snapshot {id}: {} ads at sequence {} (root {})",
                        header.count, header.sequence, header.root
                    ),
                    json!({"ok": true, "snapshot": header_json(&id, &header)}),
                ))
            })
        }
        SnapshotAction::Restore { id } => {
            let path = store.path_of(id)?;
            let ports = backend::open_existing(&config)?;
            // Local: restored into staged read models, made live only when complete, so
            // a kill leaves the old read models or the restored ones (module docs of
            // `adledger_local::Staging`).
            let staged = if config.backend == BackendKind::Local {
                let staging = Staging::fresh(&config.data_dir, RESTORE_STAGING)?;
                let state = SledStateStore::open(&staging.dir().join("state"))?;
                let search = TantivySearchIndex::open(&staging.dir().join("search"))?;
                Some((staging, state, search))
            } else {
                None
            };
            let runtime = runtime()?;
            let outcome = runtime.block_on(async {
                let (state, search): (&dyn StateStore, &dyn SearchIndex) = match &staged {
                    Some((_, state, search)) => (state, search),
                    None => (ports.state.as_ref(), ports.search.as_ref()),
                };
                let total = ports.journal.last_sequence().await?.map_or(0, |l| l + 1);
                let bar = bar(total, "blocks", args.output);
                bar.set_message("replaying the tail");
                let mut progress = |p: &RebuildProgress| {
                    bar.set_length(p.target);
                    bar.set_position(p.next);
                };
                let report = snapshot::restore(
                    ports.journal.as_ref(),
                    state,
                    search,
                    &path,
                    &RebuildOptions::default(),
                    &mut progress,
                )
                .await;
                bar.finish_and_clear();
                let report = report?;
                Ok((
                    format!(
                        "restored snapshot {id}: {} ads at sequence {}, digest checked against \
                         the journal; then {}",
                        report.restored,
                        report.snapshot.sequence,
                        report_line(&report.tail)
                    ),
                    json!({"ok": true, "report": report}),
                ))
            });
            drop(runtime);
            drop(ports);
            if let Some((staging, state, search)) = staged {
                drop((state, search));
                match &outcome {
                    Ok(_) => staging.promote(&["state", "search"])?,
                    Err(_) => staging.abandon(),
                }
            }
            outcome
        }
    }
}
