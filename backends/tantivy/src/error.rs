//! The index's own errors, and the one place they become engine errors.
//!
//! Internal functions return [`IndexError`] so that a failure keeps its cause (a tantivy
//! error, the directory that is locked); the `SearchIndex` implementation converts at
//! its boundary, so callers only ever see [`adledger_engine::Error`] variants that mean
//! something to them.

use std::path::PathBuf;

use adledger_engine::Error;

/// Everything that can go wrong inside the search index.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IndexError {
    /// Another process (or another open index in this process) holds the writer lock.
    #[error(
        "the search index at {path} is in use by another process (or is already open in \
         this one); stop that process or choose another data directory"
    )]
    InUse {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The index could not be opened or created.
    #[error("cannot open the search index at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    #[error(transparent)]
    Tantivy(#[from] tantivy::TantivyError),

    /// The blocking task running an index call panicked or was cancelled.
    #[error("a blocking tantivy task failed: {0}")]
    Task(#[source] tokio::task::JoinError),

    /// Stored bytes do not decode.
    #[error("{0}")]
    Corrupt(String),
}

impl From<IndexError> for Error {
    fn from(error: IndexError) -> Error {
        match error {
            IndexError::Corrupt(detail) => Error::Corrupt(detail),
            other => Error::backend("tantivy", other),
        }
    }
}

/// Shorthand for a value that did not decode.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> IndexError {
    IndexError::Corrupt(what.to_string())
}

/// Whether `error`, from opening a [`crate::TantivySearchIndex`], says another process
/// holds the index rather than that its files cannot be read: a caller that would
/// rebuild an unreadable index must never delete one in use.
pub fn is_in_use(error: &Error) -> bool {
    match error {
        Error::Backend { source, .. } => source
            .downcast_ref::<IndexError>()
            .is_some_and(|e| matches!(e, IndexError::InUse { .. })),
        _ => false,
    }
}
