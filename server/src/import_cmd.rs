//! `adledger import FILE`: verifies an export written by `adledger export` (either
//! format) and imports it into an empty journal; the read models catch up when the
//! server starts or on `adledger rebuild`.
//!
//! Local backend: the journal is built in `<data-dir>/import-staging/journal` while the
//! live (empty) one stays open, so no server can start on the data directory meanwhile;
//! once the import is complete and its digest equals the file's, it is made live by
//! [`Staging::promote`]. A kill at any moment leaves the empty journal (and a staging
//! directory the rerun deletes) or the whole import.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use adledger_engine::Journal;
use adledger_engine::high_water::read_model_marks;
use adledger_engine::import::{ImportOptions, ImportProgress, import};
use adledger_local::{SledJournal, Staging};
use clap::Args;
use serde_json::json;

use crate::backend;
use crate::cmd_output::{CommandError, Outcome, OutputArgs, bar, finish, runtime};
use crate::config::{BackendKind, StorageArgs};

/// The staging directory of a local import (see the module docs).
const IMPORT_STAGING: &str = "import-staging";

/// Flags of `adledger import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Where the ledger is (its journal must be empty).
    #[command(flatten)]
    pub storage: StorageArgs,

    /// How to print the result.
    #[command(flatten)]
    pub output: OutputArgs,

    /// An export written by `adledger export` (either format)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Runs `adledger import`.
pub fn import_command(args: &ImportArgs) -> ExitCode {
    finish(args.output, run_import(args))
}

fn run_import(args: &ImportArgs) -> Outcome {
    let config = args.storage.load()?;
    if !args.file.is_file() {
        return Err(CommandError::Refused(format!(
            "no file {}",
            args.file.display()
        )));
    }
    let ports = backend::open(&config)?;
    let size = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
    let started = Instant::now();
    let runtime = runtime()?;
    // Local: the live journal stays open (and locked) until the staged one replaces it.
    let staging = if config.backend == BackendKind::Local {
        if let Some(last) = runtime.block_on(ports.journal.last_sequence())? {
            return Err(CommandError::Refused(format!(
                "an import needs an empty journal, and this one holds {} blocks; import \
                 into a new data directory",
                last + 1
            )));
        }
        let staging = Staging::fresh(&config.data_dir, IMPORT_STAGING)?;
        let journal = SledJournal::open(&staging.dir().join("journal"))?;
        Some((staging, journal))
    } else {
        None
    };
    let outcome = runtime.block_on(async {
        let journal: &dyn Journal = match &staging {
            Some((_, staged)) => staged,
            None => ports.journal.as_ref(),
        };
        let bar = bar(size, "bytes", args.output);
        let mut progress = |p: &ImportProgress| {
            bar.set_message(if p.appending {
                "importing"
            } else {
                "verifying"
            });
            bar.set_position(p.bytes);
        };
        // The read models may remember a longer journal than the one lost: an export
        // shorter than that is refused before anything is written.
        let options = ImportOptions {
            must_reach: read_model_marks(ports.state.as_ref(), ports.search.as_ref()).await?,
            ..ImportOptions::default()
        };
        let summary = import(journal, &args.file, &options, &mut progress).await;
        bar.finish_and_clear();
        let summary = summary?;
        let seconds = started.elapsed().as_secs_f64();
        let digest = summary
            .digest
            .map(|d| json!({"sequence": d.sequence, "root": d.root, "tipHash": d.tip_hash}));
        let text = match summary.digest {
            Some(d) => format!(
                "imported and verified {} blocks ({} revisions, {:.1} MB/s); digest at {}: root \
                 {} tip hash {}; the read models catch up when the server starts (or run \
                 `adledger rebuild`)",
                summary.blocks,
                summary.revisions,
                size as f64 / 1e6 / seconds.max(1e-9),
                d.sequence,
                d.root,
                d.tip_hash
            ),
            None => "the export holds no block; nothing imported".to_string(),
        };
        Ok((
            text,
            json!({"ok": true, "summary": summary, "digest": digest}),
        ))
    });
    drop(runtime);
    drop(ports);
    if let Some((staging, journal)) = staging {
        drop(journal);
        match &outcome {
            Ok(_) => staging.promote(&["journal"])?,
            // What was staged is useless; the rerun would delete it anyway.
            Err(_) => staging.abandon(),
        }
    }
    outcome
}
