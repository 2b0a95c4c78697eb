//! Snapshots: the state store's entries at a journal sequence, with the digest at that
//! sequence, in one file; and restoring from one.
//!
//! # File format (JSON lines, format version 1)
//!
//! ```text
//! {"format":"adledger-snapshot","formatVersion":1,"sequence":N,"root":HEX,"tipHash":HEX,
//!  "count":C,"contentSha256":HEX,"createdAt":RFC3339}          ← header, one line
//! {"publisherId":…,"adId":…,"version":…,"sequence":…,"updatedAt":…,"ad":{…}|null}  ← C lines
//! ```
//!
//! `sequence` is the last journal block the entries reflect; `root` and `tipHash` are the
//! journal's digest there; `contentSha256` is the SHA-256 of every byte after the header
//! line (newlines included), so an altered, truncated or extended body is detected.
//! Entries are in key order and include tombstones. The header is written last (the body
//! goes to a side file first) and the file appears under its name only once complete
//! (write, fsync, rename), so a crash never leaves a half snapshot that looks whole.
//!
//! The content hash detects damage and naive edits, not a forger who also rewrites the
//! header's hash: a snapshot is as trustworthy as the directory it is kept in. What a
//! forger cannot fake is the digest: restore refuses a snapshot whose `(sequence, root,
//! tipHash)` is not the journal's.
//!
//! # Consistency
//!
//! A snapshot of a store that a live projection is writing is still consistent: entries
//! whose `sequence` is past the checkpoint read at the start were written during the
//! scan, and are replaced by the ad's state at the snapshot's sequence, read from the
//! journal (or left out, for an ad created later).
//!
//! # Restore
//!
//! Check the header and content hash, check the recorded digest against the journal
//! (a mismatch is refused, naming the sequence), clear both read models, put the entries
//! into both with the checkpoint `sequence + 1`, then catch up the tail with
//! [`crate::rebuild::rebuild`], which verifies the chain from there. A restore
//! plus its tail equals a full rebuild.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ad::{Ad, AdKey};
use crate::digest::digest_at;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::lookup::revision_at;
use crate::ports::{AdState, Journal, SearchIndex, StateStore};
use crate::rebuild::{RebuildOptions, RebuildProgress, RebuildReport, clear_read_models, rebuild};

/// The `format` field of every snapshot header.
pub const SNAPSHOT_FORMAT: &str = "adledger-snapshot";
/// The snapshot format version this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// Entries per `scan` page and per `put` on restore.
const CHUNK: usize = 4096;

/// The first line of a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotHeader {
    /// Always [`SNAPSHOT_FORMAT`].
    pub format: String,
    /// [`SNAPSHOT_FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// The last journal block the entries reflect.
    pub sequence: u64,
    /// The journal's Merkle root over blocks `0..=sequence`.
    pub root: Hash,
    /// The hash of block `sequence`.
    pub tip_hash: Hash,
    /// Entries in the body.
    pub count: u64,
    /// SHA-256 of the body bytes.
    pub content_sha256: Hash,
    /// When the snapshot was taken.
    #[serde(with = "crate::time::rfc3339_millis")]
    pub created_at: DateTime<Utc>,
}

/// One body line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    publisher_id: String,
    ad_id: String,
    version: u64,
    sequence: u64,
    #[serde(with = "crate::time::rfc3339_millis")]
    updated_at: DateTime<Utc>,
    ad: Option<Ad>,
}

impl From<AdState> for Entry {
    fn from(s: AdState) -> Self {
        Entry {
            publisher_id: s.key.publisher_id,
            ad_id: s.key.ad_id,
            version: s.version,
            sequence: s.sequence,
            updated_at: s.updated_at,
            ad: s.ad,
        }
    }
}

impl From<Entry> for AdState {
    fn from(e: Entry) -> Self {
        AdState {
            key: AdKey::new(e.publisher_id, e.ad_id),
            version: e.version,
            sequence: e.sequence,
            updated_at: e.updated_at,
            ad: e.ad,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    /// The snapshot's header.
    pub snapshot: SnapshotHeader,
    /// Entries put into each read model.
    pub restored: u64,
    /// The tail caught up after the snapshot's sequence.
    pub tail: RebuildReport,
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::backend("file", format!("cannot {what} {}: {e}", path.display()))
}

fn side_path(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes a snapshot of `state` to `path` (replacing nothing: an existing file is an
/// error); see the module docs. `NotFound` when the store has applied no block.
pub async fn create(
    journal: &dyn Journal,
    state: &dyn StateStore,
    path: &Path,
    created_at: DateTime<Utc>,
) -> Result<SnapshotHeader> {
    if path.exists() {
        return Err(Error::invalid(
            "snapshot",
            format!(
                "{} exists already; snapshots are never overwritten",
                path.display()
            ),
        ));
    }
    // The file keeps milliseconds; the returned header must equal the one read back.
    let created_at =
        DateTime::from_timestamp_millis(created_at.timestamp_millis()).unwrap_or(created_at);
    let checkpoint = state.checkpoint().await?;
    let Some(sequence) = checkpoint.checked_sub(1) else {
        return Err(Error::NotFound {
            what: "anything to snapshot (the state store has applied no block yet)".into(),
        });
    };
    let digest = digest_at(journal, sequence).await?;

    let body_path = side_path(path, ".body.partial");
    let body = File::create(&body_path).map_err(|e| io_error(&body_path, "create", e))?;
    let mut body = BufWriter::with_capacity(1 << 20, body);
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    let mut after: Option<AdKey> = None;
    let written: Result<()> = async {
        loop {
            let page = state.scan(after.as_ref(), CHUNK).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for entry in page {
                let entry = if entry.sequence >= checkpoint {
                    match state_at(journal, &entry.key, checkpoint).await? {
                        Some(earlier) => earlier,
                        None => continue,
                    }
                } else {
                    entry
                };
                let mut line = serde_json::to_vec(&Entry::from(entry))
                    .map_err(|e| Error::Corrupt(format!("snapshot entry as JSON: {e}")))?;
                line.push(b'\n');
                hasher.update(&line);
                body.write_all(&line)
                    .map_err(|e| io_error(&body_path, "write", e))?;
                count += 1;
            }
        }
        body.flush().map_err(|e| io_error(&body_path, "write", e))
    }
    .await;
    drop(body);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&body_path);
        return Err(e);
    }

    let header = SnapshotHeader {
        format: SNAPSHOT_FORMAT.into(),
        format_version: SNAPSHOT_FORMAT_VERSION,
        sequence,
        root: digest.root,
        tip_hash: digest.tip_hash,
        count,
        content_sha256: Hash(hasher.finalize().into()),
        created_at,
    };
    let assembled = assemble(path, &body_path, &header);
    let _ = std::fs::remove_file(&body_path);
    assembled?;
    Ok(header)
}

/// Makes `path`'s directory entry durable (a rename is in the directory, not the file):
/// without it a power cut can take back a snapshot that was reported taken. Also syncs
/// the directory's own parent, for a snapshot directory created just now.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    File::open(dir)?.sync_all()?;
    if let Some(up) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(up)?.sync_all()?;
    }
    Ok(())
}

/// Writes header + body to a side file, syncs it, renames it to `path`, and syncs the
/// directory so the rename survives a power cut.
fn assemble(path: &Path, body_path: &Path, header: &SnapshotHeader) -> Result<()> {
    let partial = side_path(path, ".partial");
    let result = (|| {
        let mut out = BufWriter::new(File::create(&partial)?);
        serde_json::to_writer(&mut out, header).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        std::io::copy(&mut File::open(body_path)?, &mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&partial, path)?;
        sync_parent(path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        io_error(path, "write snapshot", e)
    })
}

/// The ad's state as of just before `next` (its newest revision in a block before
/// `next`), from the journal; `None` if it was created at or after `next`.
async fn state_at(journal: &dyn Journal, key: &AdKey, next: u64) -> Result<Option<AdState>> {
    let Some(r) = journal
        .ad_revisions(key)
        .await?
        .into_iter()
        .filter(|r| r.sequence < next)
        .max_by_key(|r| r.version)
    else {
        return Ok(None);
    };
    let revision = revision_at(journal, key, r.version, r.sequence).await?;
    Ok(Some(AdState::from_revision(&revision)))
}

fn refused(path: &Path, reason: String) -> Error {
    Error::invalid(
        "snapshot",
        format!("{} is refused: {reason}", path.display()),
    )
}

/// Reads and checks a snapshot's header line (format and version only).
pub fn read_header(path: &Path) -> Result<SnapshotHeader> {
    let file = File::open(path).map_err(|e| io_error(path, "open", e))?;
    let mut reader = BufReader::new(file);
    header_of(path, &mut reader)
}

fn header_of(path: &Path, reader: &mut impl BufRead) -> Result<SnapshotHeader> {
    let mut line = Vec::new();
    reader
        .read_until(b'\n', &mut line)
        .map_err(|e| io_error(path, "read", e))?;
    let header: SnapshotHeader = serde_json::from_slice(&line).map_err(|e| {
        refused(
            path,
            format!("its header line is not a snapshot header ({e})"),
        )
    })?;
    if header.format != SNAPSHOT_FORMAT || header.format_version != SNAPSHOT_FORMAT_VERSION {
        return Err(refused(
            path,
            format!(
                "it is format {:?} version {}; this build reads {SNAPSHOT_FORMAT:?} version \
                 {SNAPSHOT_FORMAT_VERSION}",
                header.format, header.format_version
            ),
        ));
    }
    Ok(header)
}

/// Checks a snapshot file on its own — header, entry count, content hash, every line
/// parses — without touching any store. Returns the header.
pub fn check_file(path: &Path) -> Result<SnapshotHeader> {
    let file = File::open(path).map_err(|e| io_error(path, "open", e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let header = header_of(path, &mut reader)?;
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| io_error(path, "read", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&line);
        count += 1;
        serde_json::from_slice::<Entry>(&line)
            .map_err(|e| refused(path, format!("entry {count} is not a snapshot entry ({e})")))?;
    }
    let content = Hash(hasher.finalize().into());
    if content != header.content_sha256 || count != header.count {
        return Err(refused(
            path,
            format!(
                "its content was altered: the header records {} entries with SHA-256 {}, \
                 the file holds {count} with SHA-256 {content}",
                header.count, header.content_sha256
            ),
        ));
    }
    Ok(header)
}

/// Restores both read models from a snapshot and catches up the tail; see the module
/// docs. The snapshot is checked in full before anything is cleared.
pub async fn restore(
    journal: &dyn Journal,
    state: &dyn StateStore,
    search: &dyn SearchIndex,
    path: &Path,
    options: &RebuildOptions,
    progress: &mut (dyn FnMut(&RebuildProgress) + Send),
) -> Result<RestoreReport> {
    let header = check_file(path)?;
    let digest = match digest_at(journal, header.sequence).await {
        Ok(digest) => digest,
        Err(Error::NotFound { .. }) => {
            return Err(refused(
                path,
                format!(
                    "it was taken at sequence {}, which this journal does not reach",
                    header.sequence
                ),
            ));
        }
        Err(e) => return Err(e),
    };
    if digest.root != header.root || digest.tip_hash != header.tip_hash {
        return Err(refused(
            path,
            format!(
                "it records root {} and tip hash {} at sequence {}, but the journal's digest \
                 there is root {} and tip hash {}: the snapshot belongs to another journal",
                header.root, header.tip_hash, header.sequence, digest.root, digest.tip_hash
            ),
        ));
    }

    clear_read_models(state, search).await?;
    let file = File::open(path).map_err(|e| io_error(path, "open", e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    header_of(path, &mut reader)?;
    let checkpoint = header.sequence + 1;
    let mut chunk: Vec<AdState> = Vec::with_capacity(CHUNK);
    let mut restored = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| io_error(path, "read", e))?;
        if n > 0 {
            let entry: Entry = serde_json::from_slice(&line).map_err(|e| {
                refused(
                    path,
                    format!("entry {} changed while restoring ({e})", restored + 1),
                )
            })?;
            chunk.push(entry.into());
            restored += 1;
        }
        if chunk.len() == CHUNK || n == 0 {
            // The checkpoint goes with the last chunk: until then a crash leaves
            // checkpoint 0, and the next restore (or rebuild) starts over.
            let at = (n == 0).then_some(checkpoint);
            let (s, i) = tokio::join!(state.put(&chunk, at), search.put(&chunk, at));
            s.and(i)?;
            chunk.clear();
        }
        if n == 0 {
            break;
        }
    }
    let tail = rebuild(journal, state, search, options, progress).await?;
    Ok(RestoreReport {
        snapshot: header,
        restored,
        tail,
    })
}
