//! The OpenSearch adapter's errors, and their mapping into the engine's.
//!
//! Every variant names the operation and the index, and carries OpenSearch's own error
//! type and reason when there is one, so a failed projection batch says which documents
//! failed and why. At the port boundary they all become [`Error::Backend`] with backend
//! `opensearch` (logged, never sent to clients), except a search page OpenSearch cannot
//! reach, which is the caller's [`Error::Invalid`].

use adledger_engine::Error;

/// Everything that can go wrong talking to OpenSearch.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenSearchError {
    /// The request did not get an answer (connection refused, timeout, TLS, signing).
    #[error("OpenSearch {operation} on index {index} failed: {source}")]
    Request {
        operation: &'static str,
        index: String,
        #[source]
        source: opensearch::Error,
    },

    /// OpenSearch answered with an error status.
    #[error("OpenSearch {operation} on index {index} answered {status}: {detail}")]
    Status {
        operation: &'static str,
        index: String,
        status: u16,
        /// OpenSearch's error type and reason, or the start of the body.
        detail: String,
    },

    /// The index does not exist.
    #[error(
        "OpenSearch index {index} does not exist; create it with `adledger aws init --search \
         opensearch` (same --table-prefix and --opensearch-url)"
    )]
    MissingIndex { index: String },

    /// Some items of a bulk request failed for another reason than an external version
    /// conflict; the batch as a whole failed and its checkpoint was not stored.
    #[error(
        "OpenSearch bulk {operation} on index {index}: {failed} of {total} items failed \
         (the checkpoint was not advanced): {first}"
    )]
    BulkItems {
        operation: &'static str,
        index: String,
        failed: usize,
        total: usize,
        /// The first failures, `id: status type: reason`.
        first: String,
    },

    /// `put` could not lower a document's version: OpenSearch kept refusing the write
    /// after the document was deleted.
    #[error(
        "OpenSearch index {index}: could not replace ad {ad_id} with its older version \
         {version}: OpenSearch still holds a newer one after {attempts} attempts (is the \
         index's `index.gc_deletes` setting 0, as `adledger aws init` creates it?)"
    )]
    VersionNotLowered {
        index: String,
        ad_id: String,
        version: u64,
        attempts: u32,
    },

    /// A response did not have the shape OpenSearch documents.
    #[error("unexpected OpenSearch {operation} response from index {index}: {detail}")]
    Response {
        operation: &'static str,
        index: String,
        detail: String,
    },

    /// Something could not be turned into a request.
    #[error("cannot encode {what} for OpenSearch: {reason}")]
    Encode { what: String, reason: String },

    /// The settings cannot be used (a bad URL, an unusable index name, no region for
    /// SigV4).
    #[error("invalid OpenSearch settings: {0}")]
    Settings(String),

    /// A search page beyond what OpenSearch pages through.
    #[error("{0}")]
    PageTooDeep(String),
}

impl From<OpenSearchError> for Error {
    fn from(error: OpenSearchError) -> Error {
        match error {
            OpenSearchError::PageTooDeep(reason) => Error::Invalid {
                field: "cursor".into(),
                reason,
            },
            other => Error::backend("opensearch", other),
        }
    }
}
