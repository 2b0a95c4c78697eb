//! `adledger compact [--compression zstd|none]`: rewrites a stopped local ledger's journal
//! into a new sled database, compressed by default, and makes it live only once it has
//! verified against the old one's digest.
//!
//! Why: sled keeps about 2.6× the block bytes on disk for this journal's records, even
//! freshly written; a compressed copy takes about 1.2× (bench/README.md, "The journal
//! on disk"). The price is write CPU: sled compresses every log message it writes, so a
//! server on a compressed journal spent ~1.5× the CPU per create in the same bench. It
//! suits a ledger that is mostly read (an archive, an audit copy); `--compression none`
//! rewrites it plain again.

//! Steps, each of which leaves the old journal live if it fails or is killed:
//!
//! 1. The live journal is opened (a running server holds it: the command then refuses)
//!    and fully verified (`adledger verify`'s checks): a damaged journal is not copied.
//! 2. Its records are copied, as stored, into `<data-dir>/compact-staging/journal`
//!    (module `staging` of the local backend), which is made durable.
//! 3. The copy is fully verified and must give the same digest (sequence and root).
//! 4. It replaces the live journal in one promotion (a marker file and renames; a crash
//!    after the marker is finished by the next open of the data directory).
//!
//! The read models are not touched: the copy holds the same blocks at the same sequences.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use adledger_engine::Hash;
use adledger_engine::verify::{VerifyReport, verify_journal};
use adledger_local::{Compression, SledJournal, Staging, finish_pending};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::cmd_output::{CommandError, Outcome, OutputArgs, bar, finish, runtime};
use crate::config::{BackendKind, StorageArgs};

/// The staging directory of a compaction.
const COMPACT_STAGING: &str = "compact-staging";

/// Flags of `adledger compact`.
#[derive(Debug, Clone, Args)]
pub struct CompactArgs {
    /// Where the stopped ledger is (local backend).
    #[command(flatten)]
    pub storage: StorageArgs,

    /// How to print the result.
    #[command(flatten)]
    pub output: OutputArgs,

    /// How the rewritten journal stores its pages: zstd-compressed (smaller on disk, more
    /// CPU per write) or as they are
    #[arg(long, value_enum, default_value_t = CompressionFlag::Zstd)]
    pub compression: CompressionFlag,
}

/// `--compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionFlag {
    /// zstd (level 1) on every page sled writes
    Zstd,
    /// No compression
    None,
}

impl CompressionFlag {
    fn setting(self) -> Compression {
        match self {
            CompressionFlag::Zstd => Compression::Zstd,
            CompressionFlag::None => Compression::Plain,
        }
    }
}

fn name(compression: Compression) -> &'static str {
    match compression {
        Compression::Zstd => "zstd",
        Compression::Plain => "none",
    }
}

/// Runs `adledger compact`.
pub fn compact_command(args: &CompactArgs) -> ExitCode {
    finish(args.output, run_compact(args))
}

fn run_compact(args: &CompactArgs) -> Outcome {
    let config = args.storage.load()?;
    if config.backend != BackendKind::Local {
        return Err(CommandError::Refused(
            "compact rewrites the local backend's sled journal; the AWS backend's journal is \
             a DynamoDB table, which has nothing to compact (run it with --backend local)"
                .to_string(),
        ));
    }
    let data_dir = &config.data_dir;
    let live_path = data_dir.join("journal");
    if !live_path.join("db").is_file() {
        return Err(CommandError::Refused(format!(
            "no journal in {} (expected {}): give the ledger's --data-dir",
            data_dir.display(),
            live_path.join("db").display()
        )));
    }
    // A promotion a crash interrupted is finished first, as every open of the data
    // directory does, so the journal compacted is the live one.
    finish_pending(data_dir)?;
    let started = Instant::now();
    let live = SledJournal::open(&live_path)?;
    let before = live.compression()?;
    let bytes_before = allocated_bytes(&live_path);
    let staging = Staging::fresh(data_dir, COMPACT_STAGING)?;
    let staged =
        SledJournal::open_with(&staging.dir().join("journal"), args.compression.setting())?;
    let runtime = runtime()?;
    let outcome = runtime.block_on(async {
        let original = verified(&live, None, "the journal", args.output).await?;
        let copied = live.copy_into(&staged).await?;
        let expected = original.last_sequence.zip(original.root);
        let copy = verified(&staged, expected, "the copy", args.output).await?;
        Ok::<_, CommandError>((original, copied, copy))
    });
    drop(runtime);
    drop(live);
    drop(staged);
    let (original, copied, copy) = match outcome {
        Ok(done) => done,
        Err(error) => {
            staging.abandon();
            return Err(error);
        }
    };
    let bytes_copy = allocated_bytes(&staging.dir().join("journal"));
    staging.promote(&["journal"])?;
    let blocks = original.bytes.max(1) as f64;
    let after = args.compression.setting();
    let text = format!(
        "compacted the journal in {:.1} s: {:.1} MB on disk ({:.2}× its {:.1} MB of blocks, \
         compression {}) → {:.1} MB ({:.2}×, compression {}); {} records copied, {} blocks \
         verified before and after, root {}",
        started.elapsed().as_secs_f64(),
        bytes_before as f64 / 1e6,
        bytes_before as f64 / blocks,
        original.bytes as f64 / 1e6,
        name(before),
        bytes_copy as f64 / 1e6,
        bytes_copy as f64 / blocks,
        name(after),
        copied.records,
        copy.blocks,
        copy.root
            .map_or_else(|| "(empty journal)".to_string(), |r| r.to_string()),
    );
    let value = json!({
        "ok": true,
        "blocks": copy.blocks,
        "blockBytes": original.bytes,
        "records": copied.records,
        "before": {"bytesOnDisk": bytes_before, "compression": name(before)},
        "after": {"bytesOnDisk": bytes_copy, "compression": name(after)},
        "lastSequence": copy.last_sequence,
        "root": copy.root,
    });
    Ok((text, value))
}

/// Fully verifies `journal` (against `expected`, when given), or says why not.
async fn verified(
    journal: &SledJournal,
    expected: Option<(u64, Hash)>,
    what: &str,
    output: OutputArgs,
) -> Result<VerifyReport, CommandError> {
    let total = adledger_engine::Journal::last_sequence(journal)
        .await?
        .map_or(0, |last| last + 1);
    let bar = bar(total, "blocks", output);
    bar.set_message(format!("verifying {what}"));
    let mut progress = |done: u64| bar.set_position(done);
    let result = verify_journal(journal, expected, &mut progress).await;
    bar.finish_and_clear();
    result?.map_err(|failure| {
        CommandError::Refused(format!(
            "{what} does not verify at sequence {}: {} — nothing was changed (run `adledger \
             verify` for the details)",
            failure.sequence, failure.detail
        ))
    })
}

/// Bytes allocated on disk under `dir` (what `du` counts), 0 if it cannot be read.
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => allocated_bytes(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
