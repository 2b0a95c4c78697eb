//! Makes the journal's sled database durable, which sled 0.34 alone does not.
//!
//! What sled 0.34.7 does (read in its source):
//!
//! - `Db::flush` writes the log buffers to `<dir>/db` with `pwrite` and then calls
//!   `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` (`pagecache/iobuf.rs`). That
//!   starts and waits for write-back of those pages but flushes neither the file's
//!   metadata (its size, when the log grew) nor the drive's volatile cache: after a power
//!   loss the data may be gone. Only its background thread calls `sync_all`, every 500 ms,
//!   which is too late to acknowledge a write.
//! - A log message larger than `segment_size / 4 - 20` bytes (131,052 with the default
//!   512 KiB segments) is written to its own file `<dir>/blobs/<lsn>`
//!   (`pagecache/blob_io.rs::write_blob`) with `write_all` and **no fsync at all**, and the
//!   new directory entry is never synced either. A leaf node is split only above 16
//!   entries, so a few large blocks (revisions carry descriptions up to 10,000 characters)
//!   are enough for a node to go to a blob.
//! - `<dir>/conf` is written once, at creation, without fsync.
//!
//! So after `flush` this module fdatasyncs every blob file not yet synced and the
//! `blobs/` directory, then the `db` file itself; and at open it syncs whatever exists,
//! including the directories, so the database's own creation is durable.
//!
//! Test-only switch: `ADLEDGER_UNSAFE_SKIP_FDATASYNC=1` makes [`Durability::sync`] skip
//! every fsync after `flush` (see [`UNSAFE_SKIP_FDATASYNC_VAR`]). It exists so the
//! power-loss test (`tests/e2e/power_loss.rs`) can prove that it catches a journal that
//! acknowledges writes it has not made durable. Never set it anywhere else: with it,
//! every acknowledged write can vanish in a power cut. A loud warning goes to stderr
//! when it is set.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::LocalError;

/// The files that must be synced for the journal to be durable, and whether an earlier
/// sync failed.
pub(super) struct Durability {
    /// `<dir>/db`, kept open so each append costs one `fdatasync` and no `open`.
    db_file: File,
    db_path: PathBuf,
    blobs_dir: PathBuf,
    /// Blob files already synced; blobs never change once written (sled writes them with
    /// `create_new`), so each is synced once.
    synced_blobs: HashSet<OsString>,
    /// `ADLEDGER_UNSAFE_SKIP_FDATASYNC` was set: acknowledge without syncing (tests only).
    unsafe_skip_sync: bool,
}

/// Makes a freshly opened sled database's files and directory entries durable.
///
/// Why every sled database this crate opens needs it, not only the journal: sled 0.34
/// writes a new snapshot of its page table at every open and renames it into place
/// without syncing the directory. After a power cut the directory can come back with the
/// *previous* snapshot, whose view of the log no longer matches the segments sled has
/// reused since — pages come back stale. The power-loss test found exactly that in the
/// state store: a publisher's newest ads missing from its list while the store's
/// checkpoint was past them. The journal always synced at open; the read models and the
/// subscription store did not.
pub(crate) fn sync_after_open(dir: &Path, db: &sled::Db) -> Result<(), LocalError> {
    Durability::open(dir)?.sync(db)
}

impl Durability {
    /// Syncs everything sled created or left unsynced in `dir`, and keeps the db file open.
    pub(super) fn open(dir: &Path) -> Result<Durability, LocalError> {
        let db_path = dir.join("db");
        let db_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&db_path)
            .map_err(|source| LocalError::Sync {
                path: db_path.clone(),
                source,
            })?;
        let mut durability = Durability {
            db_file,
            db_path,
            blobs_dir: dir.join("blobs"),
            synced_blobs: HashSet::new(),
            unsafe_skip_sync: unsafe_skip_fdatasync(),
        };
        durability.sync_new_blobs()?;
        sync_path(&dir.join("conf"))?;
        sync_dir(&durability.blobs_dir)?;
        durability.sync_db_file()?;
        sync_dir(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
            // `create_dir_all` may have created the data directory too (first start): its
            // own entry lives in *its* parent, and without this sync a power cut after the
            // first acknowledged writes could take the whole data directory away (found by
            // the power-loss test). Ancestors further up existed before us, but syncing
            // them is cheap and harmless; one we cannot open was not created by us.
            for ancestor in parent.ancestors().skip(1) {
                if !ancestor.as_os_str().is_empty() {
                    let _ = sync_dir(ancestor);
                }
            }
        }
        Ok(durability)
    }

    /// Makes everything written to `db` so far durable.
    ///
    /// After a failure the journal must not be written through this `Db` again: the
    /// kernel may have dropped the dirty pages and cleared the error, so a later fsync
    /// could succeed without the data being on disk. The journal closes its database and
    /// opens it again from disk (`crate::reopen`), with a new `Durability`.
    pub(super) fn sync(&mut self, db: &sled::Db) -> Result<(), LocalError> {
        let started = std::time::Instant::now();
        let result = self.sync_inner(db);
        metrics::histogram!("adledger_journal_sync_seconds").record(started.elapsed());
        result
    }

    fn sync_inner(&mut self, db: &sled::Db) -> Result<(), LocalError> {
        // Writes the log buffers (and any blob files they reference) to the OS.
        db.flush()?;
        if self.unsafe_skip_sync {
            return Ok(());
        }
        // Blobs first: a log record on disk that points at a blob not on disk would be
        // worse than a missing record.
        if self.sync_new_blobs()? {
            sync_dir(&self.blobs_dir)?;
        }
        self.sync_db_file()
    }

    fn sync_db_file(&self) -> Result<(), LocalError> {
        self.db_file.sync_data().map_err(|source| LocalError::Sync {
            path: self.db_path.clone(),
            source,
        })
    }

    /// Syncs blob files not synced yet; returns whether there was any.
    fn sync_new_blobs(&mut self) -> Result<bool, LocalError> {
        let entries = match std::fs::read_dir(&self.blobs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(source) => {
                return Err(LocalError::Sync {
                    path: self.blobs_dir.clone(),
                    source,
                });
            }
        };
        let mut present = HashSet::new();
        let mut synced_any = false;
        for entry in entries {
            let entry = entry.map_err(|source| LocalError::Sync {
                path: self.blobs_dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                match File::open(entry.path()) {
                    Ok(file) => file.sync_data().map_err(|source| LocalError::Sync {
                        path: entry.path(),
                        source,
                    })?,
                    // Removed by sled's garbage collection since the listing: nothing to keep.
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(source) => {
                        return Err(LocalError::Sync {
                            path: entry.path(),
                            source,
                        });
                    }
                }
                synced_any = true;
            }
            present.insert(name);
        }
        // Forget blobs sled has since removed, so the set does not grow forever.
        self.synced_blobs = present;
        Ok(synced_any)
    }
}

/// The variable of the test-only switch that disables the journal's fsyncs after writes
/// (not those at open). Only the power-loss test sets it, to prove it detects the loss.
const UNSAFE_SKIP_FDATASYNC_VAR: &str = "ADLEDGER_UNSAFE_SKIP_FDATASYNC";

/// Whether the test-only switch is on (`1`); warns loudly on stderr, once per journal
/// opened, if so (this crate does not log; stderr reaches the operator all the same).
fn unsafe_skip_fdatasync() -> bool {
    let on = std::env::var_os(UNSAFE_SKIP_FDATASYNC_VAR).is_some_and(|v| v == "1");
    if on {
        eprintln!(
            "WARNING: {UNSAFE_SKIP_FDATASYNC_VAR}=1 — journal fsync disabled (test-only switch); \
             acknowledged writes will be lost on power failure"
        );
    }
    on
}

fn sync_path(path: &Path) -> Result<(), LocalError> {
    match File::open(path) {
        Ok(file) => file.sync_all().map_err(|source| LocalError::Sync {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LocalError::Sync {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Syncs a directory, so the entries created in it survive a power loss.
#[cfg(unix)]
fn sync_dir(path: &Path) -> Result<(), LocalError> {
    sync_path(path)
}

/// Directories cannot be opened as files off Unix; their entries are the file system's job.
#[cfg(not(unix))]
fn sync_dir(_path: &Path) -> Result<(), LocalError> {
    Ok(())
}
