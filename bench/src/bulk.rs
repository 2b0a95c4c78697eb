//! The bulk rows: the real `adledger` binary's `export`, `verify`, `import`, `rebuild`
//! and `compact` on the ledger the bench made (its server stopped), each timed from outside
//! with its peak memory (see [`crate::child`]), plus the journal's size on disk.
//!
//! Rates are the bytes or revisions the command reports, over the wall time of the whole
//! process (opening the stores included, as a user would time it).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::child::{self, Measured};

/// One command's cost.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// Wall time of the process.
    pub wall: Duration,
    /// Peak RSS, bytes.
    pub max_rss: u64,
}

impl From<&Measured> for Cost {
    fn from(m: &Measured) -> Cost {
        Cost {
            wall: m.wall,
            max_rss: m.max_rss,
        }
    }
}

/// What the bulk commands measured.
#[derive(Debug, Clone)]
pub struct Bulk {
    /// Size of the Ion export, bytes.
    pub export_bytes: u64,
    /// `adledger export`.
    pub export: Cost,
    /// `adledger verify`.
    pub verify: Cost,
    /// Block bytes verify read (its `bytes`).
    pub block_bytes: u64,
    /// Blocks in the journal.
    pub blocks: u64,
    /// Revisions in the journal.
    pub revisions: u64,
    /// `adledger import` of the export into an empty data directory.
    pub import: Cost,
    /// `adledger rebuild` of the imported ledger's read models.
    pub rebuild: Cost,
    /// Revisions the rebuild applied.
    pub rebuilt_revisions: u64,
    /// Allocated bytes of `<data dir>/journal` (the ledger as the server left it).
    pub journal_disk: u64,
    /// `adledger compact` of the imported ledger's journal (zstd).
    pub compact: Cost,
    /// Allocated bytes of that journal after the compaction (its `after.bytesOnDisk`).
    pub compacted_disk: u64,
    /// The export file, for the SHA-256 baseline (in `scratch`).
    pub export_path: PathBuf,
}

/// Runs the commands of `adledger` at `binary` on the stopped ledger in `data_dir`,
/// writing the export and the imported copy under `scratch`.
pub fn run(binary: &Path, data_dir: &Path, scratch: &Path) -> Result<Bulk, String> {
    let journal_disk = allocated_bytes(&data_dir.join("journal"))
        .map_err(|e| format!("cannot measure {}/journal: {e}", data_dir.display()))?;
    let export_path = scratch.join("export.ion");
    crate::progress("bulk: adledger export");
    let (export, exported) = command(
        binary,
        &["export"],
        &[OsStr::new("--out"), export_path.as_os_str()],
        data_dir,
    )?;
    let export_bytes = number(&exported, "bytes", "export")?;

    crate::progress("bulk: adledger verify");
    let (verify, verified) = command(binary, &["verify"], &[], data_dir)?;
    let block_bytes = number(&verified, "bytes", "verify")?;
    let blocks = number(&verified, "blocks", "verify")?;
    let revisions = number(&verified, "revisions", "verify")?;

    crate::progress("bulk: adledger import");
    let imported_dir = scratch.join("imported");
    let (import, _) = command(
        binary,
        &["import"],
        &[export_path.as_os_str()],
        &imported_dir,
    )?;

    crate::progress("bulk: adledger rebuild");
    let (rebuild, rebuilt) = command(binary, &["rebuild"], &[], &imported_dir)?;
    let rebuilt_revisions = rebuilt
        .pointer("/report/revisions")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("adledger rebuild --json has no report.revisions: {rebuilt}"))?;

    crate::progress("bulk: adledger compact");
    let (compact, compacted) = command(binary, &["compact"], &[], &imported_dir)?;
    let compacted_disk = compacted
        .pointer("/after/bytesOnDisk")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("adledger compact --json has no after.bytesOnDisk: {compacted}"))?;
    let _ = std::fs::remove_dir_all(&imported_dir);
    Ok(Bulk {
        export_bytes,
        export,
        verify,
        block_bytes,
        blocks,
        revisions,
        import,
        rebuild,
        rebuilt_revisions,
        journal_disk,
        compact,
        compacted_disk,
        export_path,
    })
}

/// Runs `adledger SUBCOMMAND --json --backend local --data-dir DIR EXTRA…`, requiring
/// exit 0 and a JSON object with `"ok": true`.
pub(crate) fn command(
    binary: &Path,
    words: &[&str],
    extra: &[&OsStr],
    data_dir: &Path,
) -> Result<(Cost, Value), String> {
    let mut args: Vec<&OsStr> = words.iter().map(OsStr::new).collect();
    args.extend(["--json", "--backend", "local", "--data-dir"].map(OsStr::new));
    args.push(data_dir.as_os_str());
    args.extend_from_slice(extra);
    let measured = child::run(binary, &args)?;
    let name = format!("adledger {}", words[0]);
    let json: Value = serde_json::from_str(measured.stdout.trim()).map_err(|e| {
        format!(
            "{name} did not print JSON ({e}): {}{}",
            measured.stdout, measured.stderr
        )
    })?;
    if !measured.success || json["ok"] != Value::Bool(true) {
        return Err(format!("{name} failed: {json} {}", measured.stderr));
    }
    Ok(((&measured).into(), json))
}

fn number(json: &Value, field: &str, command: &str) -> Result<u64, String> {
    json[field]
        .as_u64()
        .ok_or_else(|| format!("adledger {command} --json has no number `{field}`: {json}"))
}

/// Bytes allocated on disk to the files under `dir` (`st_blocks` × 512).
pub fn allocated_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            allocated_bytes(&entry.path())?
        } else {
            metadata.blocks() * 512
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_allocated_bytes_recursively() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("a"), vec![1u8; 10_000]).expect("write");
        std::fs::write(dir.path().join("sub/b"), vec![1u8; 5_000]).expect("write");
        let bytes = allocated_bytes(dir.path()).expect("bytes");
        assert!(bytes >= 15_000, "{bytes}");
        assert!(allocated_bytes(&dir.path().join("missing")).is_err());
    }
}
