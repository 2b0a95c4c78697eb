//! `adledger replay --ad ID [--publisher P] [--from T] [--to T]`: re-projects one ad's
//! revisions (optionally only those committed in [from, to], RFC 3339) from the journal
//! into the read models of a stopped ledger.

use std::process::ExitCode;

use adledger_engine::replay::{find_ad, replay_ad};
use adledger_engine::{AdKey, TimeRange};
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::json;

use crate::backend;
use crate::cmd_output::{CommandError, Outcome, OutputArgs, finish, parse_time, runtime};
use crate::config::StorageArgs;

/// Flags of `adledger replay`.
#[derive(Debug, Clone, Default, Args)]
pub struct ReplayArgs {
    /// Where the ledger is.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// How to print the result.
    #[command(flatten)]
    pub output: OutputArgs,

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

/// Runs `adledger replay`.
pub fn replay_command(args: &ReplayArgs) -> ExitCode {
    finish(args.output, run_replay(args))
}

fn run_replay(args: &ReplayArgs) -> Outcome {
    let config = args.storage.load()?;
    let ports = backend::open_existing(&config)?;
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
                    CommandError::Refused(format!("no ad {} in the journal", args.ad_id))
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
