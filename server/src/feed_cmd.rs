//! `adledger feed verify FILE [--digest-every N] [--json]`: what a consumer runs to check
//! a feed it saved, fully offline.
//!
//! FILE holds feed events as a JSON array (a saved `GET /ledger/events` page, or several
//! concatenated into one array) or as NDJSON (one event per line, as a consumer appends
//! them); `-` reads standard input. The events must be the unfiltered feed, in the order
//! received. [`FeedVerifier`] checks them: no gap, no duplicate, no reordering, every
//! block linked to the one before, every event's content matching the hashes that cover
//! it, and every digest event consistent with the previous one and with the blocks seen.
//!
//! Exit codes: 0 verified, 1 does not verify (a line naming the event and why), 2 the
//! file cannot be read.

use std::io::{Read, Write};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use adledger_engine::feed::{CloudEvent, FeedVerifier};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// `adledger feed …`.
#[derive(Debug, Clone, Args)]
pub struct FeedArgs {
    /// What to do with a feed.
    #[command(subcommand)]
    pub command: FeedCommand,
}

/// The subcommands of `adledger feed`.
#[derive(Debug, Clone, Subcommand)]
pub enum FeedCommand {
    /// Check a saved feed (a JSON array or NDJSON of events from GET /ledger/events or
    /// the stream), offline.
    ///
    /// Exits 0 when it verifies, 1 when it does not (naming the event and why), 2 when
    /// the file cannot be read.
    Verify(FeedVerifyArgs),
}

/// Flags of `adledger feed verify`.
#[derive(Debug, Clone, Args)]
pub struct FeedVerifyArgs {
    /// The saved events; `-` reads standard input
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// The server's digest interval (`feed.digest_every`), so a dropped digest event is
    /// caught even before the first one [default: learned from the first digest event]
    #[arg(long, value_name = "N")]
    pub digest_every: Option<NonZeroU64>,

    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs `adledger feed …`.
pub fn feed_command(args: &FeedArgs) -> ExitCode {
    match &args.command {
        FeedCommand::Verify(verify) => verify_command(verify),
    }
}

fn verify_command(args: &FeedVerifyArgs) -> ExitCode {
    let events = match read_events(&args.file) {
        Ok(events) => events,
        Err(error) => return report(args.json, 2, &error, json!({ "ok": false, "error": error })),
    };
    let verifier = match args.digest_every {
        Some(every) => FeedVerifier::with_digest_every(every.get()),
        None => FeedVerifier::new(),
    };
    match verifier.check_all(&events) {
        Ok(summary) => {
            let range = summary
                .range
                .as_ref()
                .map_or("no events".to_string(), |(a, b)| {
                    format!("events {a} to {b}")
                });
            let text = format!(
                "OK: {} events ({range}) are gapless, in order and unaltered; {} digest \
                 events verified, {} blocks checked against a digest root",
                summary.events, summary.digests, summary.blocks_under_digest
            );
            let detail = json!({
                "ok": true,
                "events": summary.events,
                "digests": summary.digests,
                "blocksUnderDigest": summary.blocks_under_digest,
                "first": summary.range.as_ref().map(|r| r.0.clone()),
                "last": summary.range.as_ref().map(|r| r.1.clone()),
            });
            report(args.json, 0, &text, detail)
        }
        Err(failure) => report(
            args.json,
            1,
            &format!("FAIL: {failure}"),
            json!({ "ok": false, "failure": failure.to_string() }),
        ),
    }
}

/// The events of a JSON array or of NDJSON, in file order.
fn read_events(path: &Path) -> Result<Vec<CloudEvent>, String> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a JSON array of feed events: {e}", path.display()));
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: not a feed event: {e}", path.display(), i + 1))
        })
        .collect()
}

fn report(as_json: bool, code: u8, text: &str, detail: Value) -> ExitCode {
    // Nothing more can be said if the output is gone; the exit code still tells.
    let _ = if as_json {
        writeln!(std::io::stdout(), "{detail}")
    } else if code == 2 {
        writeln!(std::io::stderr(), "adledger feed verify: {text}")
    } else {
        writeln!(std::io::stdout(), "{text}")
    };
    ExitCode::from(code)
}
