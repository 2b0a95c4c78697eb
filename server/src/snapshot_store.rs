//! The snapshot directory: where snapshots of the read models are kept, and the one place
//! that names, lists, takes, finds and deletes them. Used by `adledger snapshot`, by
//! `POST|GET /admin/snapshots` and by the [`crate::snapshot_schedule`], so all three
//! agree on file names and on what counts as a snapshot.
//!
//! A snapshot is a file `snapshot-<sequence, 12 digits>-<UTC time>.jsonl` (its id is the
//! name without `.jsonl`), written by [`adledger_engine::snapshot::create`] to a side file
//! and renamed, so a kill never leaves half a snapshot under a snapshot name. Ids sort by
//! sequence, then time. Files that are not snapshots are ignored.

use std::path::{Path, PathBuf};

use adledger_engine::snapshot::{self, SnapshotHeader};
use adledger_engine::{Error, Ports};
use chrono::{DateTime, Utc};

/// Why the snapshot directory could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotStoreError {
    /// The engine failed to take or read a snapshot.
    #[error("{0}")]
    Engine(#[from] Error),
    /// A file or directory could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    File {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No snapshot has this id.
    #[error(
        "no snapshot {id:?} in {}; `adledger snapshot list` shows the ids",
        dir.display()
    )]
    Unknown {
        /// The id asked for.
        id: String,
        /// The directory looked in.
        dir: PathBuf,
    },
}

/// A snapshot's id and header, as listed.
pub type Listed = (String, SnapshotHeader);

/// One snapshot directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStore {
    dir: PathBuf,
}

/// A new snapshot's file name: sortable by sequence, then time.
pub fn snapshot_file_name(sequence: u64, at: DateTime<Utc>) -> String {
    format!(
        "snapshot-{sequence:012}-{}.jsonl",
        at.format("%Y%m%dT%H%M%S%3fZ")
    )
}

impl SnapshotStore {
    /// The default directory of a data directory: `<data_dir>/snapshots`.
    pub fn in_data_dir(data_dir: &Path) -> SnapshotStore {
        SnapshotStore {
            dir: data_dir.join("snapshots"),
        }
    }

    /// A directory given explicitly (`adledger snapshot --dir DIR`).
    pub fn at(dir: impl Into<PathBuf>) -> SnapshotStore {
        SnapshotStore { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The snapshots, oldest sequence first; a missing directory holds none.
    pub fn list(&self) -> Result<Vec<Listed>, SnapshotStoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(SnapshotStoreError::File {
                    what: "cannot list",
                    path: self.dir.clone(),
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

    /// The file of the snapshot `id`; `id` may also be a snapshot file's path.
    pub fn path_of(&self, id: &str) -> Result<PathBuf, SnapshotStoreError> {
        let as_path = Path::new(id);
        if as_path.is_file() {
            return Ok(as_path.to_path_buf());
        }
        let valid = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !id.starts_with('.');
        let path = self.dir.join(format!("{id}.jsonl"));
        if !valid || !path.is_file() {
            return Err(SnapshotStoreError::Unknown {
                id: id.to_string(),
                dir: self.dir.clone(),
            });
        }
        Ok(path)
    }

    /// Takes a snapshot of `ports`' state store at its checkpoint (creating the
    /// directory if needed); returns its id and header.
    pub async fn create(&self, ports: &Ports) -> Result<Listed, SnapshotStoreError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| SnapshotStoreError::File {
            what: "cannot create",
            path: self.dir.clone(),
            source,
        })?;
        let now = Utc::now();
        let checkpoint = ports.state.checkpoint().await?;
        let name = snapshot_file_name(checkpoint.saturating_sub(1), now);
        let path = self.dir.join(&name);
        let header =
            snapshot::create(ports.journal.as_ref(), ports.state.as_ref(), &path, now).await?;
        let id = name.trim_end_matches(".jsonl").to_string();
        Ok((id, header))
    }

    /// Deletes the snapshot `id` (or the snapshot file at that path).
    pub fn delete(&self, id: &str) -> Result<(), SnapshotStoreError> {
        let path = self.path_of(id)?;
        std::fs::remove_file(&path).map_err(|source| SnapshotStoreError::File {
            what: "cannot remove",
            path,
            source,
        })
    }

    /// Deletes the oldest snapshots so that `keep` remain (all count, manual ones
    /// included); returns the deleted ones, oldest first.
    pub fn prune(&self, keep: usize) -> Result<Vec<Listed>, SnapshotStoreError> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(keep);
        let mut deleted = Vec::with_capacity(excess);
        for (id, header) in all.into_iter().take(excess) {
            let path = self.dir.join(format!("{id}.jsonl"));
            std::fs::remove_file(&path).map_err(|source| SnapshotStoreError::File {
                what: "cannot delete the old snapshot",
                path,
                source,
            })?;
            deleted.push((id, header));
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn names_sort_by_sequence_then_time() {
        let at = Utc
            .with_ymd_and_hms(2024, 3, 1, 12, 0, 5)
            .single()
            .expect("valid time");
        assert_eq!(
            snapshot_file_name(42, at),
            "snapshot-000000000042-20240301T120005000Z.jsonl"
        );
        assert!(snapshot_file_name(9, at) < snapshot_file_name(10, at));
    }

    #[test]
    fn unknown_and_unsafe_ids_are_refused_and_a_missing_directory_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SnapshotStore::in_data_dir(dir.path());
        assert_eq!(store.dir(), dir.path().join("snapshots"));
        assert!(store.list().expect("lists").is_empty());
        std::fs::create_dir_all(store.dir()).expect("mkdir");
        std::fs::write(store.dir().join("notes.txt"), "x").expect("write");
        assert!(store.list().expect("lists").is_empty(), "not a snapshot");
        for bad in ["", "../no-such-dir/x", ".hidden", "nope"] {
            let err = store.path_of(bad).expect_err(bad);
            assert!(err.to_string().contains("snapshot list"), "{err}");
        }
        assert!(store.prune(1).expect("nothing to prune").is_empty());
    }
}
