//! Whether a journal's sled database compresses what it writes (zstd), and how to tell
//! from its files.
//!
//! sled 0.34 records the choice in `<dir>/conf` when it creates a database and refuses to
//! open it with the other one ("cannot change compression values across restarts"), so an
//! existing journal is opened the way its `conf` says and only a new one is chosen.
//!
//! Why a choice at all: a compressed copy of a 220,000-ad journal takes 1.2× its block
//! bytes on disk against 2.6× plain, but sled compresses every log message it writes
//! with a fresh zstd context, so every later write costs more: the server spent 507 µs of
//! CPU per create on a compressed journal against 337 µs on the same journal plain
//! (bench/README.md, "The journal on disk"). New journals stay plain, so the write path
//! pays nothing; `adledger compact` rewrites a journal compressed (or back), for ledgers
//! that are mostly read.

use std::path::Path;

use crate::error::LocalError;

/// How a new journal's database is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Written as is (the default for a journal `serve` or `import` creates).
    #[default]
    Plain,
    /// Every page sled writes is zstd-compressed (what `adledger compact` makes).
    Zstd,
}

/// zstd level of a compressed journal: level 1 gave the same size as 3 on block bytes
/// (1.20× against 1.21×) for less CPU.
pub(super) const ZSTD_LEVEL: i32 = 1;

/// What `<dir>/conf` says of compression: `Some` for an existing database, `None` when
/// there is none yet (a new journal) or its `conf` does not mention it (sled then
/// reports the damage itself when it opens it).
pub(super) fn recorded(dir: &Path) -> Result<Option<Compression>, LocalError> {
    let conf = dir.join("conf");
    let bytes = match std::fs::read(&conf) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(LocalError::Open {
                backend: "sled",
                what: "journal",
                path: conf,
                source: Box::new(e),
            });
        }
    };
    // `conf` is `key: value` lines followed by a CRC32 of them (sled's `config.rs`).
    let has = |line: &[u8]| bytes.windows(line.len()).any(|w| w == line);
    Ok(if has(b"use_compression: true") {
        Some(Compression::Zstd)
    } else if has(b"use_compression: false") {
        Some(Compression::Plain)
    } else {
        None
    })
}

/// The compression to open `dir` with: the one recorded there, else `new`.
pub(super) fn effective(dir: &Path, new: Compression) -> Result<Compression, LocalError> {
    Ok(recorded(dir)?.unwrap_or(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_database_keeps_its_recorded_choice() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(recorded(dir.path()).expect("read"), None);
        for (choice, flag) in [(Compression::Zstd, true), (Compression::Plain, false)] {
            let path = dir.path().join(format!("{flag}"));
            let db = sled::Config::new()
                .path(&path)
                .use_compression(flag)
                .open()
                .expect("open");
            drop(db);
            assert_eq!(recorded(&path).expect("read"), Some(choice));
            let other = match choice {
                Compression::Zstd => Compression::Plain,
                Compression::Plain => Compression::Zstd,
            };
            assert_eq!(effective(&path, other).expect("read"), choice);
        }
    }
}
