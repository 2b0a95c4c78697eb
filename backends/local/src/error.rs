//! The backend's own errors, and the one place they become engine errors.
//!
//! Internal functions return [`LocalError`] so that a failure keeps its cause (a sled
//! error, the file that could not be synced, the directory that is locked); the
//! trait implementations convert at their boundary, so callers only ever see
//! [`adledger_engine::Error`] variants that mean something to them.

use std::path::PathBuf;

use adledger_engine::{Error, VersionExpectation};

/// Everything that can go wrong inside the local backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LocalError {
    /// Another process (or another open backend in this process) holds the lock.
    #[error(
        "the {what} at {path} is in use by another process (or is already open in this \
         one); stop that process or choose another data directory"
    )]
    InUse {
        backend: &'static str,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A store could not be opened or created.
    #[error("cannot open the {what} at {path}: {source}")]
    Open {
        backend: &'static str,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A file or directory could not be made durable.
    #[error("cannot fsync {path}: {source}")]
    Sync {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A maintenance step on the data directory's files (staging, promoting) failed.
    #[error("cannot {action} {path}: {source}")]
    Files {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A store was closed after a failed write and cannot be opened again yet (see
    /// `reopen`); `full`: because its file system has no space left.
    #[error(
        "the {store} was closed after a failed write and cannot be opened again yet{}; \
         the next request tries again",
        if *full { " (no space left on its file system)" } else { "" }
    )]
    Closed { store: &'static str, full: bool },

    #[error(transparent)]
    Sled(#[from] sled::Error),

    /// The blocking task running a storage call panicked or was cancelled.
    #[error("a blocking {backend} task failed: {source}")]
    Task {
        backend: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },

    /// The engine handed over a batch that breaks the port's preconditions.
    #[error("invalid append batch: {0}")]
    BadBatch(String),

    /// A conditional write found another state than the caller expected.
    #[error("conflict: expected {expected}, found {actual}")]
    Conflict {
        expected: VersionExpectation,
        actual: VersionExpectation,
    },

    /// A block below the journal's last sequence is not stored.
    #[error("block {sequence} is missing from the journal")]
    MissingBlock { sequence: u64 },

    /// Stored bytes do not decode.
    #[error("{0}")]
    Corrupt(String),
}

impl LocalError {
    fn backend(&self) -> &'static str {
        match self {
            LocalError::InUse { backend, .. }
            | LocalError::Open { backend, .. }
            | LocalError::Task { backend, .. } => backend,
            LocalError::Files { .. } => "local",
            LocalError::Sync { .. }
            | LocalError::Closed { .. }
            | LocalError::Sled(_)
            | LocalError::BadBatch(_)
            | LocalError::Conflict { .. }
            | LocalError::MissingBlock { .. }
            | LocalError::Corrupt(_) => "sled",
        }
    }
}

impl LocalError {
    /// Whether the file system had no space left for a write (ENOSPC, or a quota).
    pub(crate) fn is_storage_full(&self) -> bool {
        let full = |io: &std::io::Error| {
            matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        };
        let sled_full = |e: &sled::Error| matches!(e, sled::Error::Io(io) if full(io));
        match self {
            LocalError::Sync { source, .. } => full(source),
            LocalError::Sled(e) => sled_full(e),
            LocalError::Closed { full, .. } => *full,
            LocalError::Open { source, .. } | LocalError::InUse { source, .. } => {
                source.downcast_ref::<sled::Error>().is_some_and(sled_full)
                    || source.downcast_ref::<std::io::Error>().is_some_and(full)
            }
            _ => false,
        }
    }
}

impl From<LocalError> for Error {
    fn from(error: LocalError) -> Error {
        match error {
            LocalError::Conflict { expected, actual } => Error::Conflict { expected, actual },
            LocalError::Corrupt(detail) => Error::Corrupt(detail),
            LocalError::MissingBlock { sequence } => Error::ChainBroken {
                sequence,
                detail: "the block is missing below the journal's last sequence".into(),
            },
            closed @ LocalError::Closed { full: true, .. } => {
                Error::StorageFull(closed.to_string())
            }
            closed @ LocalError::Closed { .. } => Error::Unavailable(closed.to_string()),
            other if other.is_storage_full() => Error::StorageFull(other.to_string()),
            other => Error::backend(other.backend(), other),
        }
    }
}

/// Shorthand for a value that did not decode.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> LocalError {
    LocalError::Corrupt(what.to_string())
}

/// Maps an error from opening a sled database, recognising sled's lock failure.
///
/// sled 0.34 reports a held lock only as an `io::Error` of kind `Other` whose text starts
/// with "could not acquire lock"; matching that text is the only way to tell it apart.
pub(crate) fn sled_open_error(what: &'static str, path: PathBuf, error: sled::Error) -> LocalError {
    let locked =
        matches!(&error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"));
    if locked {
        LocalError::InUse {
            backend: "sled",
            what,
            path,
            source: Box::new(error),
        }
    } else {
        LocalError::Open {
            backend: "sled",
            what,
            path,
            source: Box::new(error),
        }
    }
}

/// Whether `error`, from opening a store of this crate (or its search index), says
/// another process holds it rather than that its files cannot be read: a caller that
/// would rebuild an unreadable read model must never delete one in use.
pub fn is_in_use(error: &Error) -> bool {
    let ours = match error {
        Error::Backend { source, .. } => source
            .downcast_ref::<LocalError>()
            .is_some_and(|e| matches!(e, LocalError::InUse { .. })),
        _ => false,
    };
    ours || adledger_tantivy::is_in_use(error)
}
