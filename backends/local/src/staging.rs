//! Maintenance that replaces stores (an import's journal, a restored or rebuilt pair of
//! read models) builds them in a staging directory beside the live ones and makes them
//! live all at once, so a crash at any moment leaves either the old stores or the whole
//! new ones — never a half-written store that `serve` would serve.
//!
//! # Protocol
//!
//! 1. [`Staging::fresh`]: `<data_dir>/<name>/` is emptied (what an abandoned run left is
//!    deleted) and the new stores are written inside it, named like the live ones
//!    (`journal`, `state`, `search`). Until step 3 nothing outside it changes: a crash
//!    leaves the old stores, and a rerun starts over.
//! 2. [`Staging::promote`]: every file and directory under the staging directory is
//!    fsynced, then the marker `<data_dir>/promote.pending` (the staging directory's name
//!    and the stores to move, one per line) is written, fsynced and renamed into place,
//!    and the data directory is fsynced. That rename is the commit point.
//! 3. Roll forward ([`finish_pending`]), idempotent so it can be repeated after a crash
//!    at any step: for each store, the live one is renamed to `<store>.replaced`, the
//!    staged one renamed to `<store>`; the data directory is fsynced; the replaced stores,
//!    the staging directory and the marker are deleted.
//!
//! [`LocalBackend::open`](crate::LocalBackend::open) calls [`finish_pending`] before it
//! opens anything, so whichever process comes next (`serve`, a rerun, any tool) finishes
//! a promotion that a crash interrupted after its commit point.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::LocalError;

/// The marker that says a staging directory is complete and its stores are being moved
/// into place (see the module docs).
pub const PROMOTE_MARKER: &str = "promote.pending";

/// A staging directory of one data directory: new stores built beside the live ones.
#[derive(Debug)]
pub struct Staging {
    data_dir: PathBuf,
    name: String,
    dir: PathBuf,
}

impl Staging {
    /// Finishes any pending promotion, then empties `<data_dir>/<name>/` (deleting what an
    /// interrupted run left there) and creates it.
    ///
    /// The caller must hold the data directory (have its live stores open, so sled's
    /// lock keeps another maintenance run out) while it builds the staged stores.
    pub fn fresh(data_dir: &Path, name: &str) -> adledger_engine::Result<Staging> {
        Staging::open(data_dir, name, true)
    }

    /// Finishes any pending promotion, then opens `<data_dir>/<name>/` as it is, creating
    /// it if missing: for stores that resume from their own checkpoint (a shadow rebuild),
    /// which a rerun keeps rather than deletes.
    pub fn resume(data_dir: &Path, name: &str) -> adledger_engine::Result<Staging> {
        Staging::open(data_dir, name, false)
    }

    fn open(data_dir: &Path, name: &str, empty: bool) -> adledger_engine::Result<Staging> {
        check_name(name)?;
        finish_pending(data_dir)?;
        let dir = data_dir.join(name);
        if empty && dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        Ok(Staging {
            data_dir: data_dir.to_path_buf(),
            name: name.to_string(),
            dir,
        })
    }

    /// The staging directory; a staged store goes in `dir().join(<store name>)`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Deletes the staging directory of a run that failed, best effort: a directory left
    /// behind is deleted by the next [`Staging::fresh`] anyway.
    pub fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Makes the staged `stores` live, replacing the live ones of the same names (see the
    /// module docs). Every store opened in the staging directory must be closed first,
    /// and so must the live stores it replaces.
    pub fn promote(self, stores: &[&str]) -> adledger_engine::Result<()> {
        for store in stores {
            check_name(store)?;
        }
        sync_tree(&self.dir)?;
        let marker = self.data_dir.join(PROMOTE_MARKER);
        let temporary = self.data_dir.join(format!("{PROMOTE_MARKER}.tmp"));
        let mut text = format!("{}\n", self.name);
        for store in stores {
            text.push_str(store);
            text.push('\n');
        }
        let written = File::create(&temporary)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
        written.map_err(|e| io(&temporary, e))?;
        std::fs::rename(&temporary, &marker).map_err(|e| io(&marker, e))?;
        sync_dir(&self.data_dir)?;
        finish_pending(&self.data_dir)?;
        Ok(())
    }
}

/// Finishes a promotion that was committed (its marker exists) but not completed;
/// returns whether there was one. A staging directory without a marker is left alone:
/// it is an unfinished run, which its rerun deletes.
pub fn finish_pending(data_dir: &Path) -> adledger_engine::Result<bool> {
    let marker = data_dir.join(PROMOTE_MARKER);
    let text = match std::fs::read_to_string(&marker) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(&marker, e)),
    };
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let Some(name) = lines.next() else {
        // Written with fsync before its rename, so an empty marker is damage.
        return Err(LocalError::Files {
            action: "read the promotion marker (it is empty; delete it if no staging \
                     directory is left)",
            path: marker,
            source: std::io::ErrorKind::InvalidData.into(),
        }
        .into());
    };
    check_name(name)?;
    let stores: Vec<&str> = lines.collect();
    for store in &stores {
        check_name(store)?;
    }
    let staging = data_dir.join(name);
    for store in &stores {
        let staged = staging.join(store);
        let live = data_dir.join(store);
        let replaced = data_dir.join(format!("{store}.replaced"));
        if !staged.exists() {
            continue; // moved already
        }
        if live.exists() {
            if replaced.exists() {
                std::fs::remove_dir_all(&replaced).map_err(|e| io(&replaced, e))?;
            }
            std::fs::rename(&live, &replaced).map_err(|e| io(&live, e))?;
        }
        std::fs::rename(&staged, &live).map_err(|e| io(&staged, e))?;
    }
    sync_dir(data_dir)?;
    for store in &stores {
        let replaced = data_dir.join(format!("{store}.replaced"));
        if replaced.exists() {
            std::fs::remove_dir_all(&replaced).map_err(|e| io(&replaced, e))?;
        }
    }
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
    }
    std::fs::remove_file(&marker).map_err(|e| io(&marker, e))?;
    sync_dir(data_dir)?;
    Ok(true)
}

/// A store or staging name is one plain path component, so a damaged marker cannot
/// point outside the data directory.
fn check_name(name: &str) -> adledger_engine::Result<()> {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain {
        Ok(())
    } else {
        Err(adledger_engine::Error::invalid(
            "store",
            format!("{name:?} is not a plain directory name"),
        ))
    }
}

/// fsyncs every file and directory under `dir`, and `dir` itself.
fn sync_tree(dir: &Path) -> adledger_engine::Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        if entry.file_type().map_err(|e| io(&path, e))?.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&path, e))?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> adledger_engine::Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(dir, e))
}

fn io(path: &Path, source: std::io::Error) -> adledger_engine::Error {
    LocalError::Files {
        action: "stage or promote",
        path: path.to_path_buf(),
        source,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).expect("read")
    }

    #[test]
    fn a_promotion_replaces_the_live_stores_and_leaves_nothing_behind() {
        let home = tempfile::tempdir().expect("tempdir");
        let data = home.path();
        write(&data.join("state/db"), "old state");
        write(&data.join("search/meta.json"), "old search");
        let staging = Staging::fresh(data, "restore-staging").expect("fresh");
        write(&staging.dir().join("state/db"), "new state");
        write(&staging.dir().join("search/meta.json"), "new search");
        staging.promote(&["state", "search"]).expect("promote");
        assert_eq!(read(&data.join("state/db")), "new state");
        assert_eq!(read(&data.join("search/meta.json")), "new search");
        let mut left: Vec<_> = std::fs::read_dir(data)
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        left.sort();
        assert_eq!(left, ["search", "state"]);
    }

    #[test]
    fn every_crash_point_of_the_roll_forward_ends_in_the_new_stores() {
        // The states a crash can leave after the marker: nothing moved; the live store
        // set aside; the staged one moved in but the replaced one not deleted yet.
        for step in 0..3 {
            let home = tempfile::tempdir().expect("tempdir");
            let data = home.path();
            write(&data.join("journal/db"), "old");
            write(&data.join("import-staging/journal/db"), "new");
            if step >= 1 {
                std::fs::rename(data.join("journal"), data.join("journal.replaced"))
                    .expect("rename");
            }
            if step >= 2 {
                std::fs::rename(data.join("import-staging/journal"), data.join("journal"))
                    .expect("rename");
            }
            write(&data.join(PROMOTE_MARKER), "import-staging\njournal\n");
            assert!(finish_pending(data).expect("finish"), "step {step}");
            assert_eq!(read(&data.join("journal/db")), "new", "step {step}");
            assert!(!data.join("journal.replaced").exists(), "step {step}");
            assert!(!data.join("import-staging").exists(), "step {step}");
            assert!(!data.join(PROMOTE_MARKER).exists(), "step {step}");
            assert!(!finish_pending(data).expect("again"), "step {step}");
        }
    }

    #[test]
    fn an_unfinished_staging_directory_changes_nothing_and_a_rerun_deletes_it() {
        let home = tempfile::tempdir().expect("tempdir");
        let data = home.path();
        write(&data.join("journal/db"), "old");
        write(&data.join("import-staging/journal/db"), "half");
        assert!(!finish_pending(data).expect("nothing pending"));
        assert_eq!(read(&data.join("journal/db")), "old");
        let staging = Staging::fresh(data, "import-staging").expect("fresh");
        assert_eq!(
            std::fs::read_dir(staging.dir()).expect("list").count(),
            0,
            "the rerun starts from an empty staging directory"
        );
    }

    #[test]
    fn a_marker_naming_a_path_outside_the_data_directory_is_refused() {
        let home = tempfile::tempdir().expect("tempdir");
        write(&home.path().join(PROMOTE_MARKER), "../elsewhere\njournal\n");
        assert!(finish_pending(home.path()).is_err());
    }
}
