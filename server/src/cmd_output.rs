//! What the offline maintenance commands (`rebuild`, `replay`, `snapshot`, `export`,
//! `import`) share: the `--json` flag, their error, how a result is printed and becomes
//! the exit code, progress bars, and the runtime they drive the engine on.
//!
//! A result is one line on stdout (`--json`: one JSON object); an error is one line on
//! stderr and exit code 1 (with `--json`, also `{"ok": false, "error": …}` on stdout).
//! Progress bars (rate and ETA) are drawn on stderr only when it is a terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use adledger_engine::Error;
use adledger_engine::rebuild::RebuildReport;
use chrono::{DateTime, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::backend::BackendError;
use crate::config::ConfigError;
use crate::snapshot_store::SnapshotStoreError;

/// How a maintenance command prints its result.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct OutputArgs {
    /// Print one JSON object instead of text, and no progress bar
    #[arg(long, global = true)]
    pub json: bool,
}

/// Why a maintenance command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The storage could not be opened.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The engine refused or failed.
    #[error("{0}")]
    Engine(#[from] Error),
    /// The snapshot directory refused or failed.
    #[error(transparent)]
    Snapshots(#[from] SnapshotStoreError),
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

/// A command's result: the text line(s) and the JSON object that say the same.
pub type Outcome = Result<(String, serde_json::Value), CommandError>;

/// Parses an RFC 3339 time flag.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    adledger_engine::time::parse_rfc3339(text)
        .ok_or_else(|| format!("{text:?} is not an RFC 3339 time such as 2024-05-01T12:00:00Z"))
}

/// The async runtime a command drives the engine on.
pub fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| CommandError::File {
            what: "cannot start the async runtime for",
            path: PathBuf::from("adledger"),
            source,
        })
}

/// Prints the outcome (text or JSON) and turns it into the exit code.
pub fn finish(output: OutputArgs, outcome: Outcome) -> ExitCode {
    // Nothing more can be said if stdout or stderr is gone; the exit code still tells.
    match outcome {
        Ok((text, value)) => {
            if output.json {
                let _ = writeln!(std::io::stdout(), "{value}");
            } else {
                let _ = writeln!(std::io::stdout(), "{text}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            if output.json {
                let _ = writeln!(
                    std::io::stdout(),
                    "{}",
                    json!({"ok": false, "error": error.to_string()})
                );
            }
            let _ = writeln!(std::io::stderr(), "adledger: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A bar on stderr when it is a terminal (and not `--json`), else hidden.
pub fn bar(total: u64, unit: &str, output: OutputArgs) -> ProgressBar {
    if output.json || !std::io::stderr().is_terminal() {
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

/// One line on a rebuild (or a restore's replay of the journal's tail).
pub fn report_line(r: &RebuildReport) -> String {
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
