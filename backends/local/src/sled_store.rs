//! How the stores beside the journal (the state store, the subscription store) open
//! their sled database: one way, so each gets the same page-cache cap, the same
//! durability at open and the same reopen-after-failure behaviour.

use std::path::Path;

use crate::error::{LocalError, sled_open_error};
use crate::reopen::Reopenable;

/// Opens (creating if missing) the sled database in `path` as a reopenable store named
/// `what`: sled's page cache capped at [`crate::SLED_CACHE_BYTES`] (its default is 1 GiB
/// per database), what sled recovered made durable before anything is served
/// (`sync_after_open`), then `check` (a layout upgrade, say) on every open and reopen.
pub(crate) fn open_reopenable(
    what: &'static str,
    path: &Path,
    check: impl Fn(&sled::Db) -> Result<(), LocalError> + Send + Sync + 'static,
) -> Result<Reopenable<sled::Db>, LocalError> {
    std::fs::create_dir_all(path).map_err(|e| LocalError::Open {
        backend: "sled",
        what,
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    let at = path.to_path_buf();
    Reopenable::new(what, move || {
        let db = sled::Config::new()
            .path(&at)
            .cache_capacity(crate::SLED_CACHE_BYTES)
            .open()
            .map_err(|e| sled_open_error(what, at.clone(), e))?;
        crate::journal::durability::sync_after_open(&at, &db)?;
        check(&db)?;
        Ok(db)
    })
}
