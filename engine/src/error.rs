//! The one error type every engine operation returns.
//!
//! Variants carry what a caller needs to act on them; each doc line names the HTTP
//! status the server maps it to, so the mapping lives in one reviewed place.

use std::fmt;

/// Convenience alias used across the engine and the backends.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ad does not exist (or belongs to another publisher). HTTP 404.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up, in words ("ad 01H… of publisher acme").
        what: String,
    },

    /// The ad was deleted; its history remains readable. HTTP 410.
    #[error("ad {ad_id} was deleted at version {version}")]
    Gone {
        /// The deleted ad.
        ad_id: String,
        /// The version of the delete revision.
        version: u64,
    },

    /// The expected version did not match the ad's current version: another writer got
    /// there first. HTTP 412 when the expectation came from `If-Match`, else 409.
    #[error("version conflict: expected version {expected}, current version is {actual}")]
    Conflict {
        /// The version the caller expected.
        expected: VersionExpectation,
        /// The version the journal holds.
        actual: VersionExpectation,
    },

    /// A field of the input breaks a domain rule. HTTP 422.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The JSON name of the offending field (`adTitle`, `tags[3]`, …).
        field: String,
        /// A sentence saying what is wrong and how to fix it.
        reason: String,
    },

    /// The stored journal does not verify at this sequence number: a block or revision
    /// was altered, removed or reordered. HTTP 500 (and a loud log line).
    #[error("journal chain broken at sequence {sequence}: {detail}")]
    ChainBroken {
        /// The first sequence number that does not verify.
        sequence: u64,
        /// What exactly failed to match.
        detail: String,
    },

    /// The journal holds fewer blocks than a durable record kept outside it has seen (a
    /// read model's checkpoint, see [`crate::high_water`]): acknowledged blocks are lost.
    /// Found at startup, before anything is served or appended; HTTP 500 if ever met on a
    /// request.
    #[error(
        "the journal holds {blocks} blocks but {record} has seen {seen}: blocks {blocks} to {last_seen} were acknowledged and are missing (a journal file \
         cut short or damaged, or an older copy restored). Refusing to serve or append: new \
         writes would reuse those sequence numbers with other content. Recover by restoring \
         the journal from a backup, or from an export that holds them (`adledger import` into \
         an empty journal). `adledger rebuild` is not a repair: it would make the read models \
         forget blocks {blocks} to {last_seen} too",
        last_seen = seen - 1
    )]
    JournalBehind {
        /// Blocks the journal holds (its next sequence number).
        blocks: u64,
        /// Blocks the record has seen.
        seen: u64,
        /// What kept the record.
        record: String,
    },

    /// A single command or batch exceeds what the backend can write atomically. HTTP 413.
    #[error("too large: {0}")]
    TooLarge(String),

    /// The ledger is shutting down or a projection did not catch up in time. HTTP 503.
    #[error("unavailable: {0}")]
    Unavailable(String),

    /// The storage has no space left for the write (a full disk). Nothing of the write was
    /// acknowledged; it may be retried once space is freed. HTTP 507.
    #[error("no space left for the write: {0}")]
    StorageFull(String),

    /// The storage backend failed. HTTP 500 (the text is logged, never sent to clients).
    #[error("{backend} backend error: {source}")]
    Backend {
        /// Which backend (`sled`, `tantivy`, `dynamodb`, …).
        backend: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The storage service failed in a way that passes (throttling, a 5xx, a dropped or
    /// timed-out connection) and its client's own retries did not absorb it. HTTP 503 with
    /// `Retry-After`: nothing about the request is wrong, and a write so answered was not
    /// acknowledged (it may have been applied: retry a create with its idempotency key).
    /// The text is logged, never sent to clients.
    #[error("{backend} backend temporarily failed: {source}")]
    Transient {
        /// Which backend (`dynamodb`, …).
        backend: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// Stored bytes could not be decoded (corruption or a format from a newer version).
    #[error("cannot decode stored data: {0}")]
    Corrupt(String),
}

impl Error {
    /// Wraps a backend error, keeping its source chain.
    pub fn backend(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Backend {
            backend,
            source: source.into(),
        }
    }

    /// Wraps a backend error that passes (see [`Error::Transient`]), keeping its source
    /// chain.
    pub fn transient(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Transient {
            backend,
            source: source.into(),
        }
    }

    /// Builds an [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A version an ad is expected to be at, or "does not exist yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionExpectation {
    /// The ad must not exist.
    Absent,
    /// The ad's head must be at this version.
    Version(u64),
}

impl fmt::Display for VersionExpectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionExpectation::Absent => f.write_str("none (ad absent)"),
            VersionExpectation::Version(v) => write!(f, "{v}"),
        }
    }
}
