//! `adledger verify [--data-dir DIR] [--config FILE] [--expect-digest SEQ:ROOT] [--json]`:
//! full verification of a stopped data directory's journal.
//!
//! Every block is re-hashed from its stored bytes, every link of the chain and every
//! stored Merkle node is checked, and the Merkle root is recomputed
//! ([`adledger_engine::verify::verify_journal`]); with `--expect-digest`, the journal must
//! still give the root an auditor saved earlier at that sequence.
//!
//! # Output and exit codes
//!
//! - `0`: the journal verifies. One summary line on stdout: blocks, revisions, bytes,
//!   throughput and the root.
//! - `1`: it does not. One line on stdout naming the first bad sequence number and, where
//!   the stored bytes still say, the ad, its version and the field that no longer matches.
//!   A journal that verifies but holds fewer blocks than its read models' checkpoints
//!   have seen has lost acknowledged blocks (cut short, or recovered to an older prefix
//!   after damage): also `1`, naming where the journal ends and what was lost.
//! - `2`: verification could not run (bad configuration, no journal, the directory is in
//!   use by a running server, a storage error). One line on stderr.
//!
//! `--json` prints one JSON object on stdout instead, in all three cases. A progress bar
//! is drawn on stderr only when stderr is a terminal and `--json` is off, so scripts and
//! logs never see control characters.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use adledger_engine::high_water::{check_journal_reaches, read_model_marks};
use adledger_engine::verify::{VerifyFailure, VerifyReport, verify_journal};
use adledger_engine::{Error, Hash};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use crate::backend::{self, BackendError};
use crate::config::{ConfigError, StorageArgs};

/// Flags of `adledger verify`.
#[derive(Debug, Clone, Default, Args)]
pub struct VerifyArgs {
    /// Where the stopped ledger is.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// A digest saved earlier, as SEQUENCE:ROOT (the `sequence` and `root` of `GET
    /// /ledger/digest`): the journal must still give ROOT at SEQUENCE
    #[arg(long, value_name = "SEQ:ROOT")]
    pub expect_digest: Option<SavedDigest>,

    /// Print one JSON object instead of text, and no progress bar
    #[arg(long)]
    pub json: bool,
}

/// A digest an auditor saved: a sequence number and the Merkle root at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SavedDigest {
    /// The last block the digest covers.
    pub sequence: u64,
    /// The Merkle root over blocks `0..=sequence`.
    pub root: Hash,
}

impl FromStr for SavedDigest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "expected SEQUENCE:ROOT, such as 23:{} (the `sequence` and `root` of GET \
                 /ledger/digest), got {text:?}",
                "9f".repeat(32)
            )
        };
        let (sequence, root) = text.split_once(':').ok_or_else(usage)?;
        let sequence = sequence
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{}: the sequence is not a whole number", usage()))?;
        let root = root
            .trim()
            .parse::<Hash>()
            .map_err(|_| format!("{}: the root is not 64 hex digits", usage()))?;
        Ok(SavedDigest { sequence, root })
    }
}

/// Why verification could not run at all (exit code 2).
#[derive(Debug, thiserror::Error)]
enum VerifyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot read the journal: {0}")]
    Read(Error),
}

/// What verification found.
enum Outcome {
    Verified(VerifyReport),
    Failed(Finding),
}

/// A verification failure as reported: located at a sequence whenever the journal says
/// where. Stored data that does not even decode as a journal record may not say.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Finding {
    sequence: Option<u64>,
    ad_id: Option<String>,
    version: Option<u64>,
    field: Option<String>,
    detail: String,
}

impl From<VerifyFailure> for Finding {
    fn from(f: VerifyFailure) -> Self {
        Finding {
            sequence: Some(f.sequence),
            ad_id: f.ad_id,
            version: f.version,
            field: f.field,
            detail: f.detail,
        }
    }
}

/// Runs `adledger verify`; the exit code is the result (see the module docs).
pub fn verify_command(args: &VerifyArgs) -> ExitCode {
    let (code, text, json) = match run(args) {
        Ok((Outcome::Verified(report), took)) => (
            0,
            summary(&report, took, args.expect_digest),
            success_json(&report, took, args.expect_digest),
        ),
        Ok((Outcome::Failed(finding), _)) => (
            1,
            failure_line(&finding),
            json!({ "ok": false, "failure": finding }),
        ),
        Err(error) => (
            2,
            format!("adledger verify: {error}"),
            json!({ "ok": false, "error": error.to_string() }),
        ),
    };
    // Nothing more can be said if stdout or stderr is gone; the exit code still tells.
    if args.json {
        let _ = writeln!(std::io::stdout(), "{json}");
    } else if code == 2 {
        let _ = writeln!(std::io::stderr(), "{text}");
    } else {
        let _ = writeln!(std::io::stdout(), "{text}");
    }
    ExitCode::from(code)
}

/// Opens the journal and verifies it; the time spent verifying (not opening) comes back
/// with the outcome, for the throughput figures.
fn run(args: &VerifyArgs) -> Result<(Outcome, Duration), VerifyError> {
    let config = args.storage.load()?;
    let journal = match backend::open_journal(&config) {
        Ok(journal) => journal,
        // Files that sled cannot even open are a finding, not a failure to run.
        Err(BackendError::DamagedJournal { path, source, .. }) => {
            let detail = format!(
                "the journal at {} cannot be opened, its files are damaged ({source}): \
                 restore the journal directory from a backup, or move it away and \
                 `adledger import` an export into an empty one",
                path.display()
            );
            let finding = Finding {
                sequence: None,
                ad_id: None,
                version: None,
                field: None,
                detail,
            };
            return Ok((Outcome::Failed(finding), Duration::ZERO));
        }
        Err(other) => return Err(other.into()),
    };
    // Opened after the journal, whose lock tells a running server apart; `None` where
    // the ledger has no read models to compare with.
    let read_models = match backend::open_live_read_models(&config) {
        Ok(read_models) => read_models,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "note: the read models could not be opened, so the journal's length is not \
                 compared with their checkpoints: {error}"
            );
            None
        }
    };
    // Verification is one long CPU loop (SHA-256 over every stored byte) between storage
    // reads, which the backend runs on tokio's blocking pool. Nothing else shares this
    // runtime, so a current-thread runtime cannot starve anything: the hashing runs on
    // the main thread, the reads on the pool, and the progress bar is drawn from the
    // callback between batches.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(VerifyError::Runtime)?;
    runtime.block_on(async {
        // Before the journal's tip is read: see `adledger_engine::high_water`.
        let marks = match &read_models {
            Some((state, search)) => read_model_marks(state.as_ref(), search.as_ref())
                .await
                .map_err(VerifyError::Read)?,
            None => Vec::new(),
        };
        let total = journal
            .last_sequence()
            .await
            .map_err(VerifyError::Read)?
            .map_or(0, |last| last.saturating_add(1));
        let bar = progress_bar(total, !args.json && std::io::stderr().is_terminal());
        let mut progress = |done: u64| bar.set_position(done);
        let expected = args.expect_digest.map(|d| (d.sequence, d.root));
        let started = Instant::now();
        let result = verify_journal(journal.as_ref(), expected, &mut progress).await;
        let took = started.elapsed();
        bar.finish_and_clear();
        let outcome = match result {
            Ok(Ok(report)) => match check_journal_reaches(journal.as_ref(), &marks).await {
                Ok(_) => Outcome::Verified(report),
                Err(error @ Error::JournalBehind { blocks, .. }) => Outcome::Failed(Finding {
                    sequence: Some(blocks),
                    ad_id: None,
                    version: None,
                    field: None,
                    detail: error.to_string(),
                }),
                Err(other) => return Err(VerifyError::Read(other)),
            },
            Ok(Err(failure)) => Outcome::Failed(failure.into()),
            // A backend reports some tampering while reading, before the verifier sees
            // the block: a block missing below the tip, or a record that does not decode.
            Err(Error::ChainBroken { sequence, detail }) => Outcome::Failed(Finding {
                sequence: Some(sequence),
                ad_id: None,
                version: None,
                field: None,
                detail,
            }),
            Err(Error::Corrupt(detail)) => Outcome::Failed(Finding {
                sequence: None,
                ad_id: None,
                version: None,
                field: None,
                detail: format!("a stored journal record does not decode: {detail}"),
            }),
            Err(other) => return Err(VerifyError::Read(other)),
        };
        Ok((outcome, took))
    })
}

/// A progress bar over `total` blocks on stderr, or a hidden one.
fn progress_bar(total: u64, visible: bool) -> ProgressBar {
    if !visible || total == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "verifying {bar:40.cyan/blue} {pos}/{len} blocks  {per_sec}  eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Bytes per second in MB/s (10^6 bytes), and items per second; 0 for no time at all.
fn rates(report: &VerifyReport, took: Duration) -> (f64, f64) {
    let seconds = took.as_secs_f64();
    if seconds <= 0.0 {
        return (0.0, 0.0);
    }
    (
        report.bytes as f64 / 1e6 / seconds,
        report.revisions as f64 / seconds,
    )
}

/// The one-line summary of a successful verification.
fn summary(report: &VerifyReport, took: Duration, expected: Option<SavedDigest>) -> String {
    let (Some(last), Some(root)) = (report.last_sequence, report.root) else {
        return "OK: the journal is empty (0 blocks); nothing to verify".to_string();
    };
    let (mb_per_s, revisions_per_s) = rates(report, took);
    let matched = match expected {
        Some(d) => format!("; matches the expected digest at sequence {}", d.sequence),
        None => String::new(),
    };
    format!(
        "OK: verified {} blocks (sequence 0 to {last}), {} revisions, {:.3} MB in {:.3} s \
         ({mb_per_s:.1} MB/s, {revisions_per_s:.0} revisions/s); Merkle root {root} at \
         sequence {last}{matched}",
        report.blocks,
        report.revisions,
        report.bytes as f64 / 1e6,
        took.as_secs_f64(),
    )
}

fn success_json(
    report: &VerifyReport,
    took: Duration,
    expected: Option<SavedDigest>,
) -> serde_json::Value {
    let (mb_per_s, revisions_per_s) = rates(report, took);
    json!({
        "ok": true,
        "blocks": report.blocks,
        "revisions": report.revisions,
        "bytes": report.bytes,
        "lastSequence": report.last_sequence,
        "root": report.root,
        "expectedDigest": expected,
        "seconds": took.as_secs_f64(),
        "mbPerSecond": mb_per_s,
        "revisionsPerSecond": revisions_per_s,
    })
}

/// The one-line report of the first failure.
fn failure_line(f: &Finding) -> String {
    let mut line = match f.sequence {
        Some(sequence) => format!("FAILED at sequence {sequence}"),
        None => "FAILED".to_string(),
    };
    if let Some(ad) = &f.ad_id {
        line.push_str(&format!(": ad {ad}"));
        if let Some(version) = f.version {
            line.push_str(&format!(" version {version}"));
        }
    }
    if let Some(field) = &f.field {
        line.push_str(&format!(", field {field}"));
    }
    line.push_str(&format!(": {}", f.detail));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_digests_parse_and_bad_ones_say_why() {
        let root = "ab".repeat(32);
        let d: SavedDigest = format!("7:{root}").parse().expect("valid");
        assert_eq!(d.sequence, 7);
        assert_eq!(d.root.to_hex(), root);
        for bad in ["", "7", "x:ab", &format!("-1:{root}"), "7:abc"] {
            let err = bad.parse::<SavedDigest>().expect_err(bad);
            assert!(err.contains("SEQUENCE:ROOT"), "{err}");
        }
    }

    #[test]
    fn failure_lines_name_sequence_ad_version_and_field() {
        let line = failure_line(&Finding {
            sequence: Some(3),
            ad_id: Some("01AD".into()),
            version: Some(1),
            field: Some("revisionHashes[0]".into()),
            detail: "altered".into(),
        });
        assert_eq!(
            line,
            "FAILED at sequence 3: ad 01AD version 1, field revisionHashes[0]: altered"
        );
    }
}
