//! `adledger export [--from T] [--to T] --out FILE [--format ion|jsonl]`: writes a
//! stopped ledger's journal blocks (all, or those committed in [from, to]) with the
//! digest at the end, to a side file renamed into place when complete.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use adledger_engine::TimeRange;
use adledger_engine::export::{ExportFormat, export};
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::backend;
use crate::cmd_output::{CommandError, Outcome, OutputArgs, bar, finish, parse_time, runtime};
use crate::config::StorageArgs;

/// Formats of `adledger export`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Amazon Ion binary
    #[default]
    Ion,
    /// JSON lines
    Jsonl,
}

/// Flags of `adledger export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Where the ledger is.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// How to print the result.
    #[command(flatten)]
    pub output: OutputArgs,

    /// Only blocks committed at or after this time (RFC 3339)
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,

    /// Only blocks committed at or before this time (RFC 3339)
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub to: Option<DateTime<Utc>>,

    /// The file to write (refused if it exists)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// File format
    #[arg(long, value_enum, default_value_t = FormatArg::Ion)]
    pub format: FormatArg,
}

/// Runs `adledger export`.
pub fn export_command(args: &ExportArgs) -> ExitCode {
    finish(args.output, run_export(args))
}

fn run_export(args: &ExportArgs) -> Outcome {
    let config = args.storage.load()?;
    let ports = backend::open_existing(&config)?;
    if args.out.exists() {
        return Err(CommandError::Refused(format!(
            "{} exists already; choose another --out",
            args.out.display()
        )));
    }
    let partial = {
        let mut name = args.out.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        args.out.with_file_name(name)
    };
    let file_error = |what, source| CommandError::File {
        what,
        path: args.out.clone(),
        source,
    };
    let file = std::fs::File::create(&partial).map_err(|e| file_error("cannot create", e))?;
    let format = match args.format {
        FormatArg::Ion => ExportFormat::Ion,
        FormatArg::Jsonl => ExportFormat::Jsonl,
    };
    let range = TimeRange {
        from: args.from,
        to: args.to,
    };
    let started = Instant::now();
    let result = runtime()?.block_on(async {
        let total = ports.journal.last_sequence().await?.map_or(0, |l| l + 1);
        let bar = bar(total, "blocks", args.output);
        bar.set_message("exporting");
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let report = export(
            ports.journal.as_ref(),
            range,
            format,
            &mut out,
            &mut |blocks, _| bar.set_position(blocks),
        )
        .await;
        bar.finish_and_clear();
        let report = report?;
        let file = out
            .into_inner()
            .map_err(|e| file_error("cannot write", e.into_error()))?;
        file.sync_all().map_err(|e| file_error("cannot sync", e))?;
        Ok::<_, CommandError>(report)
    });
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, &args.out).map_err(|e| file_error("cannot rename to", e))?;
    let seconds = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    let digest = report
        .digest
        .map(|d| json!({"sequence": d.sequence, "root": d.root, "tipHash": d.tip_hash}));
    let text = match report.digest {
        Some(d) => format!(
            "exported blocks {}..={} ({} blocks, {} bytes, {:.1} MB/s) to {}; digest at {}: root {} tip hash {}",
            report.first_sequence.unwrap_or_default(),
            d.sequence,
            report.blocks,
            size,
            size as f64 / 1e6 / seconds.max(1e-9),
            args.out.display(),
            d.sequence,
            d.root,
            d.tip_hash
        ),
        None => format!(
            "no block in the range; wrote an empty export to {}",
            args.out.display()
        ),
    };
    Ok((
        text,
        json!({"ok": true, "report": report, "digest": digest, "bytes": size}),
    ))
}
