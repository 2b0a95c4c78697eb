//! The maintenance subcommands, all on a stopped data directory (they open the storage
//! through [`crate::backend`], and the local backend locks it to one process):
//!
//! ```text
//! adledger rebuild  [--shadow] [--swap] [--batch N]
//! adledger replay   --ad ID [--publisher P] [--from T] [--to T]
//! adledger snapshot create | list | restore ID | delete ID   [--dir DIR]
//! adledger export   [--from T] [--to T] --out FILE [--format ion|jsonl]
//! adledger import   FILE
//! ```
//!
//! Each also takes `--data-dir` and `--config` as `serve` does. Times are RFC 3339. A
//! result is one line on stdout (`--json`: one JSON object); an error is one line on
//! stderr and exit code 1. Progress bars (rate and ETA) are drawn on stderr only when it
//! is a terminal.
//!
//! # Rebuild
//!
//! In place, `rebuild` writes a marker file `rebuild.in-progress` into the data
//! directory, clears both read models, rebuilds them (verifying the chain) and removes
//! the marker. If it is interrupted (crash, Ctrl-C, kill -9), the next `rebuild` finds the
//! marker and resumes from the read models' checkpoint instead of clearing again.
//!
//! With `--shadow` it builds into fresh read models (`shadow-rebuild/` in the data
//! directory), which always resume from their own checkpoint, then prints how the live
//! state store differs (ads missing, extra, or different by field). `--swap` then copies
//! the shadow read models over the live ones (clear, copy, checkpoint last: an
//! interrupted swap is finished by running the same command again) and deletes the
//! shadow.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use adledger_engine::diff::{StateDiff, diff_states};
use adledger_engine::export::{ExportFormat, export};
use adledger_engine::import::{ImportOptions, ImportProgress, import};
use adledger_engine::rebuild::{
    RebuildOptions, RebuildProgress, RebuildReport, clear_read_models, rebuild,
};
use adledger_engine::replay::{find_ad, replay_ad};
use adledger_engine::snapshot::{self, SnapshotHeader};
use adledger_engine::{AdKey, Error, Ports, SearchIndex, StateStore, TimeRange};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::backend::{self, BackendError};
use crate::config::{BackendKind, Config, ConfigError, Overrides};

/// Where a stopped server's data is: the flags every maintenance command shares.
#[derive(Debug, Clone, Default, Args)]
pub struct DataArgs {
    /// Data directory of the stopped server [env: ADLEDGER_DATA_DIR] [default:
    /// ./adledger-data]
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// TOML config file, as for `serve` [env: ADLEDGER_CONFIG]
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Print one JSON object instead of text, and no progress bar
    #[arg(long, global = true)]
    pub json: bool,

    /// Storage backend [env: ADLEDGER_BACKEND] [default: local]
    #[arg(long, value_enum, value_name = "BACKEND", global = true)]
    pub backend: Option<BackendKind>,

    /// The AWS backend's settings, as for `serve`.
    #[command(flatten)]
    pub aws: crate::aws_init::AwsFlags,
}

/// Flags of `adledger rebuild`.
#[derive(Debug, Clone, Default, Args)]
pub struct RebuildArgs {
    /// Where the data is.
    #[command(flatten)]
    pub data: DataArgs,

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

/// Flags of `adledger replay`.
#[derive(Debug, Clone, Default, Args)]
pub struct ReplayArgs {
    /// Where the data is.
    #[command(flatten)]
    pub data: DataArgs,

    /// The ad to replay
    #[arg(long = "ad", value_name = "ID")]
    pub ad_id: String,

    /// The ad's publisher (looked up when not given)
    #[arg(long, value_name = "P")]
    pub publisher: Option<String>,

    /// Only revisions committed at or after this time (RFC 3339)
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,

    /// Only revisions committed at or before this time (RFC 3339): the read models end
    /// at the ad's state as of then
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub to: Option<DateTime<Utc>>,
}

/// `adledger snapshot …`.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// Where the data is.
    #[command(flatten)]
    pub data: DataArgs,

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
    /// Where the data is.
    #[command(flatten)]
    pub data: DataArgs,

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

/// Flags of `adledger import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Where the data is (its journal must be empty).
    #[command(flatten)]
    pub data: DataArgs,

    /// An export written by `adledger export` (either format)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    adledger_engine::time::parse_rfc3339(text)
        .ok_or_else(|| format!("{text:?} is not an RFC 3339 time such as 2024-05-01T12:00:00Z"))
}

/// Why a maintenance command failed.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The storage could not be opened.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The engine refused or failed.
    #[error("{0}")]
    Engine(#[from] Error),
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    File {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The command cannot do what was asked.
    #[error("{0}")]
    Refused(String),
}

type Outcome = Result<(String, serde_json::Value), MaintenanceError>;

fn config_of(data: &DataArgs) -> Result<Config, MaintenanceError> {
    let env = Overrides::from_env(|name| match std::env::var(name) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(raw)) => Some(raw.to_string_lossy().into_owned()),
    })?;
    let flags = Overrides {
        data_dir: data.data_dir.clone(),
        config: data.config.clone(),
        backend: data.backend,
        ..data.aws.overrides()
    };
    Ok(Config::load(&env, &flags)?)
}

/// Opens the storage of an existing data directory (never creating an empty journal by
/// mistake), or of a new one when `create` is set (import).
fn open_ports(config: &Config, create: bool) -> Result<Ports, MaintenanceError> {
    if config.backend == BackendKind::Local && !create && !config.data_dir.join("journal").is_dir()
    {
        return Err(BackendError::NoJournal {
            dir: config.data_dir.clone(),
        }
        .into());
    }
    Ok(backend::open(config)?)
}

fn runtime() -> Result<tokio::runtime::Runtime, MaintenanceError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| MaintenanceError::File {
            what: "cannot start the async runtime for",
            path: PathBuf::from("adledger"),
            source,
        })
}

/// Prints the outcome (text or JSON) and turns it into the exit code.
fn finish(json: bool, outcome: Outcome) -> std::process::ExitCode {
    // Nothing more can be said if stdout or stderr is gone; the exit code still tells.
    match outcome {
        Ok((text, value)) => {
            if json {
                let _ = writeln!(std::io::stdout(), "{value}");
            } else {
                let _ = writeln!(std::io::stdout(), "{text}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            if json {
                let _ = writeln!(
                    std::io::stdout(),
                    "{}",
                    json!({"ok": false, "error": error.to_string()})
                );
            }
            let _ = writeln!(std::io::stderr(), "adledger: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A bar on stderr when it is a terminal (and not `--json`), else hidden.
fn bar(total: u64, unit: &str, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let template = format!(
        "{{msg}} {{bar:40.cyan/blue}} {{human_pos}}/{{human_len}} {unit}  {{per_sec}}  eta {{eta}}"
    );
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

// -- rebuild --

const MARKER: &str = "rebuild.in-progress";
const SHADOW: &str = "rebuild";

/// Runs `adledger rebuild`.
pub fn rebuild_command(args: &RebuildArgs) -> std::process::ExitCode {
    finish(args.data.json, run_rebuild(args))
}

fn run_rebuild(args: &RebuildArgs) -> Outcome {
    let config = config_of(&args.data)?;
    let ports = open_ports(&config, false)?;
    let options = RebuildOptions {
        batch_blocks: args.batch.max(1),
        ..RebuildOptions::default()
    };
    runtime()?.block_on(async {
        if !args.shadow {
            let marker = config.data_dir.join(MARKER);
            let resuming = marker.exists();
            if !resuming {
                write_marker(&marker)?;
                clear_read_models(ports.state.as_ref(), ports.search.as_ref()).await?;
            }
            let report =
                rebuild_with_bar(&ports, ports.state.as_ref(), ports.search.as_ref(), &options, args.data.json)
                    .await?;
            remove_file(&marker)?;
            let text = format!(
                "rebuilt the state store and the search index in place{}: {}",
                if resuming { " (resumed an interrupted rebuild)" } else { "" },
                report_line(&report)
            );
            return Ok((text, json!({"ok": true, "mode": "in-place", "resumed": resuming, "report": report})));
        }

        let (state, search) = backend::open_read_models(&config, SHADOW)?;
        let report = rebuild_with_bar(&ports, state.as_ref(), search.as_ref(), &options, args.data.json).await?;
        let diff = diff_states(ports.state.as_ref(), state.as_ref(), 20).await?;
        let mut text = format!("shadow rebuild: {}\n{}", report_line(&report), diff_text(&diff));
        let mut swapped = false;
        if args.swap {
            copy_read_models(state.as_ref(), ports.state.as_ref(), ports.search.as_ref()).await?;
            swapped = true;
            text.push_str("\nswapped: the live read models now hold the rebuilt ones");
        } else if !diff.is_empty() {
            text.push_str("\nthe live read models are unchanged; run again with --swap to replace them");
        }
        drop((state, search));
        if swapped {
            let dir = backend::read_models_dir(&config, SHADOW)?;
            // The shadow is only a copy now; failing to delete it loses nothing.
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                text.push_str(&format!("\n(could not delete {}: {e})", dir.display()));
            }
        }
        Ok((text, json!({"ok": true, "mode": "shadow", "report": report, "diff": diff, "swapped": swapped})))
    })
}

async fn rebuild_with_bar(
    ports: &Ports,
    state: &dyn StateStore,
    search: &dyn SearchIndex,
    options: &RebuildOptions,
    json: bool,
) -> Result<RebuildReport, MaintenanceError> {
    let total = ports.journal.last_sequence().await?.map_or(0, |l| l + 1);
    // Said before any work, so an operator (or a test) sees whether a rerun resumed.
    let (from_state, from_search) = tokio::join!(state.checkpoint(), search.checkpoint());
    let from = from_state?.min(from_search?);
    if !json {
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
    let bar = bar(total, "blocks", json);
    bar.set_message("rebuilding");
    // Without a terminal there is no bar: one plain line per checkpointed batch instead,
    // so logs show the progress (and the checkpoint a rerun would resume from).
    let lines = !json && !std::io::stderr().is_terminal();
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

/// Replaces the live read models' content with the shadow state store's: clear, copy in
/// pages, checkpoint with the last page (an interrupted copy leaves checkpoint 0).
async fn copy_read_models(
    from: &dyn StateStore,
    state: &dyn StateStore,
    search: &dyn SearchIndex,
) -> Result<(), MaintenanceError> {
    let checkpoint = from.checkpoint().await?;
    clear_read_models(state, search).await?;
    let mut after: Option<AdKey> = None;
    loop {
        let page = from.scan(after.as_ref(), 4096).await?;
        let last = page.len() < 4096;
        let at = last.then_some(checkpoint);
        let (s, i) = tokio::join!(state.put(&page, at), search.put(&page, at));
        s.and(i)?;
        match page.last() {
            Some(entry) if !last => after = Some(entry.key.clone()),
            _ => return Ok(()),
        }
    }
}

fn report_line(r: &RebuildReport) -> String {
    let seconds = r.elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        r.revisions as f64 / seconds
    } else {
        0.0
    };
    format!(
        "{} blocks, {} revisions from sequence {} to {} in {:.2} s ({:.0} revisions/s); the \
         hash chain verified",
        r.blocks, r.revisions, r.resumed_from, r.next, seconds, rate
    )
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

fn write_marker(path: &Path) -> Result<(), MaintenanceError> {
    let file = std::fs::File::create(path).and_then(|f| f.sync_all());
    file.map_err(|source| MaintenanceError::File {
        what: "cannot write the rebuild marker",
        path: path.to_path_buf(),
        source,
    })
}

fn remove_file(path: &Path) -> Result<(), MaintenanceError> {
    std::fs::remove_file(path).map_err(|source| MaintenanceError::File {
        what: "cannot remove",
        path: path.to_path_buf(),
        source,
    })
}

// -- replay --

/// Runs `adledger replay`.
pub fn replay_command(args: &ReplayArgs) -> std::process::ExitCode {
    finish(args.data.json, run_replay(args))
}

fn run_replay(args: &ReplayArgs) -> Outcome {
    let config = config_of(&args.data)?;
    let ports = open_ports(&config, false)?;
    let range = TimeRange {
        from: args.from,
        to: args.to,
    };
    runtime()?.block_on(async {
        let key = match &args.publisher {
            Some(p) => AdKey::new(p, &args.ad_id),
            None => find_ad(ports.journal.as_ref(), ports.state.as_ref(), &args.ad_id)
                .await?
                .ok_or_else(|| {
                    MaintenanceError::Refused(format!("no ad {} in the journal", args.ad_id))
                })?,
        };
        let report = replay_ad(
            ports.journal.as_ref(),
            ports.state.as_ref(),
            ports.search.as_ref(),
            &key,
            range,
        )
        .await?;
        let mut text = format!(
            "replayed {} revision(s) of ad {} (publisher {}): the read models hold version {}{}",
            report.revisions,
            report.ad_id,
            report.publisher_id,
            report.version,
            if report.deleted { " (deleted)" } else { "" }
        );
        if report.head_version != report.version {
            text.push_str(&format!(
                "; the journal's newest version is {}, so this ad is shown as of {} until the \
                 next replay or rebuild",
                report.head_version,
                args.to
                    .map(|t| adledger_engine::time::format_rfc3339_millis(&t))
                    .unwrap_or_default()
            ));
        }
        Ok((text, json!({"ok": true, "report": report})))
    })
}

// -- snapshots --

/// The directory snapshots live in.
pub fn snapshot_dir(config: &Config, dir: Option<&Path>) -> PathBuf {
    dir.map(Path::to_path_buf)
        .unwrap_or_else(|| config.data_dir.join("snapshots"))
}

/// A new snapshot's file name: sortable by sequence, then time.
pub fn snapshot_file_name(sequence: u64, at: DateTime<Utc>) -> String {
    format!(
        "snapshot-{sequence:012}-{}.jsonl",
        at.format("%Y%m%dT%H%M%S%3fZ")
    )
}

/// The headers of every snapshot in `dir`, oldest sequence first; a file that is not a
/// snapshot is skipped.
pub fn list_snapshots(dir: &Path) -> Result<Vec<(String, SnapshotHeader)>, MaintenanceError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(MaintenanceError::File {
                what: "cannot list",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jsonl"))
        else {
            continue;
        };
        if let Ok(header) = snapshot::read_header(&path) {
            out.push((id.to_string(), header));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The path of the snapshot `id` in `dir`; `id` may also be a path.
pub fn snapshot_path(dir: &Path, id: &str) -> Result<PathBuf, MaintenanceError> {
    let as_path = Path::new(id);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    let valid = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.');
    let path = dir.join(format!("{id}.jsonl"));
    if !valid || !path.is_file() {
        return Err(MaintenanceError::Refused(format!(
            "no snapshot {id:?} in {}; `adledger snapshot list` shows the ids",
            dir.display()
        )));
    }
    Ok(path)
}

/// Runs `adledger snapshot …`.
pub fn snapshot_command(args: &SnapshotArgs) -> std::process::ExitCode {
    finish(args.data.json, run_snapshot(args))
}

fn header_json(id: &str, h: &SnapshotHeader) -> serde_json::Value {
    json!({"id": id, "header": h})
}

fn run_snapshot(args: &SnapshotArgs) -> Outcome {
    let config = config_of(&args.data)?;
    let dir = snapshot_dir(&config, args.dir.as_deref());
    match &args.action {
        SnapshotAction::List => {
            let all = list_snapshots(&dir)?;
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
                lines.push(format!("no snapshots in {}", dir.display()));
            }
            let items: Vec<_> = all.iter().map(|(id, h)| header_json(id, h)).collect();
            Ok((lines.join("\n"), json!({"ok": true, "snapshots": items})))
        }
        SnapshotAction::Delete { id } => {
            let path = snapshot_path(&dir, id)?;
            remove_file(&path)?;
            Ok((
                format!("deleted snapshot {id}"),
                json!({"ok": true, "deleted": id}),
            ))
        }
        SnapshotAction::Create => {
            let ports = open_ports(&config, false)?;
            std::fs::create_dir_all(&dir).map_err(|source| MaintenanceError::File {
                what: "cannot create",
                path: dir.clone(),
                source,
            })?;
            runtime()?.block_on(async {
                let (id, header) = create_snapshot(&ports, &dir).await?;
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
            let path = snapshot_path(&dir, id)?;
            let ports = open_ports(&config, false)?;
            runtime()?.block_on(async {
                let total = ports.journal.last_sequence().await?.map_or(0, |l| l + 1);
                let bar = bar(total, "blocks", args.data.json);
                bar.set_message("replaying the tail");
                let mut progress = |p: &RebuildProgress| {
                    bar.set_length(p.target);
                    bar.set_position(p.next);
                };
                let report = snapshot::restore(
                    ports.journal.as_ref(),
                    ports.state.as_ref(),
                    ports.search.as_ref(),
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
            })
        }
    }
}

/// Takes a snapshot of `ports`' state store into `dir`; returns its id and header.
pub async fn create_snapshot(
    ports: &Ports,
    dir: &Path,
) -> Result<(String, SnapshotHeader), MaintenanceError> {
    let now = Utc::now();
    let checkpoint = ports.state.checkpoint().await?;
    let name = snapshot_file_name(checkpoint.saturating_sub(1), now);
    let path = dir.join(&name);
    let header = snapshot::create(ports.journal.as_ref(), ports.state.as_ref(), &path, now).await?;
    let id = name.trim_end_matches(".jsonl").to_string();
    Ok((id, header))
}

// -- export / import --

/// Runs `adledger export`.
pub fn export_command(args: &ExportArgs) -> std::process::ExitCode {
    finish(args.data.json, run_export(args))
}

fn run_export(args: &ExportArgs) -> Outcome {
    let config = config_of(&args.data)?;
    let ports = open_ports(&config, false)?;
    if args.out.exists() {
        return Err(MaintenanceError::Refused(format!(
            "{} exists already; choose another --out",
            args.out.display()
        )));
    }
    let partial = {
        let mut name = args.out.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        args.out.with_file_name(name)
    };
    let file_error = |what, source| MaintenanceError::File {
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
        let bar = bar(total, "blocks", args.data.json);
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
        Ok::<_, MaintenanceError>(report)
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

/// Runs `adledger import`.
pub fn import_command(args: &ImportArgs) -> std::process::ExitCode {
    finish(args.data.json, run_import(args))
}

fn run_import(args: &ImportArgs) -> Outcome {
    let config = config_of(&args.data)?;
    if !args.file.is_file() {
        return Err(MaintenanceError::Refused(format!(
            "no file {}",
            args.file.display()
        )));
    }
    let ports = open_ports(&config, true)?;
    let size = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
    let started = Instant::now();
    runtime()?.block_on(async {
        let bar = bar(size, "bytes", args.data.json);
        let mut progress = |p: &ImportProgress| {
            bar.set_message(if p.appending {
                "importing"
            } else {
                "verifying"
            });
            bar.set_position(p.bytes);
        };
        let summary = import(
            ports.journal.as_ref(),
            &args.file,
            &ImportOptions::default(),
            &mut progress,
        )
        .await;
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
    })
}
