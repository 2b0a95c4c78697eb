//! Bulk requests: the NDJSON body of `POST /<index>/_bulk`, and reading its answer item
//! by item.
//!
//! OpenSearch answers a bulk request with 200 even when items failed; the failures are
//! in `items[*].<action>.error`, and `errors: true` says some exist. Each item is
//! classified:
//!
//! - **written**: a 2xx status (or 404 `not_found` for a delete of a missing document);
//! - **superseded**: 409 `version_conflict_engine_exception` on an externally versioned
//!   write — OpenSearch already holds this version or a newer one, which is exactly the
//!   idempotence external versioning is for, so it counts as success;
//! - **failed**: anything else (a mapping error, a rejected execution, a missing shard).
//!   The caller fails the whole batch loudly and does not advance the checkpoint; the
//!   projection retries the batch, and the written and superseded items of the retry
//!   are harmless for the same reason.

use opensearch::params::VersionType;
use opensearch::{BulkOperation, BulkOperations};
use serde_json::Value;

use super::error::OpenSearchError;
use super::mapping::AdDocument;

/// Most items in one bulk request.
pub(crate) const MAX_ITEMS: usize = 1_000;
/// Most source bytes in one bulk request: half the 10 MB HTTP payload limit of the
/// smallest Amazon OpenSearch Service instances. A rebuild hands over batches of up to
/// 128 MB, so a batch is sent as several bulk requests, one after the other.
pub(crate) const MAX_BYTES: usize = 5 << 20;

/// Groups documents into bulk requests within [`MAX_ITEMS`] and [`MAX_BYTES`], keeping
/// their order (a later revision of an ad must reach OpenSearch after an earlier one, or
/// in the same request after it). A single document over the byte limit gets a request
/// of its own.
#[derive(Debug, Default)]
pub(crate) struct Chunker {
    chunk: Vec<AdDocument>,
    bytes: usize,
}

impl Chunker {
    /// Adds a document; returns the previous chunk when this one did not fit in it.
    pub(crate) fn push(&mut self, document: AdDocument) -> Option<Vec<AdDocument>> {
        // The source's size; the action line adds ~100 bytes, covered by the margin.
        let size = serde_json::to_vec(&document.source).map_or(0, |b| b.len());
        let full = !self.chunk.is_empty()
            && (self.chunk.len() >= MAX_ITEMS || self.bytes + size > MAX_BYTES);
        let done = full.then(|| {
            self.bytes = 0;
            std::mem::take(&mut self.chunk)
        });
        self.bytes += size;
        self.chunk.push(document);
        done
    }

    /// The last chunk, if any document is left.
    pub(crate) fn finish(self) -> Option<Vec<AdDocument>> {
        (!self.chunk.is_empty()).then_some(self.chunk)
    }
}

/// The error type of a write refused by its external version.
pub(crate) const VERSION_CONFLICT: &str = "version_conflict_engine_exception";

/// How many failed items an error message lists.
const LISTED_FAILURES: usize = 3;

/// An `index` operation per document, with its ad version as the external version.
pub(crate) fn index_operations(
    documents: &[AdDocument],
    version_type: VersionType,
) -> Result<BulkOperations, OpenSearchError> {
    let mut operations = BulkOperations::new();
    for document in documents {
        let version = i64::try_from(document.version).map_err(|_| OpenSearchError::Encode {
            what: format!("version {} of ad {}", document.version, document.id),
            reason: "OpenSearch versions are signed 64-bit numbers".into(),
        })?;
        let operation = BulkOperation::index(document.source.clone())
            .id(document.id.as_str())
            .version(version)
            .version_type(version_type);
        operations
            .push(operation)
            .map_err(|e| OpenSearchError::Encode {
                what: format!("bulk item for ad {}", document.id),
                reason: e.to_string(),
            })?;
    }
    Ok(operations)
}

/// An unversioned `delete` operation per id.
pub(crate) fn delete_operations(ids: &[&str]) -> Result<BulkOperations, OpenSearchError> {
    let mut operations = BulkOperations::new();
    for id in ids {
        operations
            .push(BulkOperation::<()>::delete(*id))
            .map_err(|e| OpenSearchError::Encode {
                what: format!("bulk delete of ad {id}"),
                reason: e.to_string(),
            })?;
    }
    Ok(operations)
}

/// One item OpenSearch did not write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemFailure {
    pub(crate) id: String,
    pub(crate) status: u16,
    pub(crate) kind: String,
    pub(crate) reason: String,
}

impl std::fmt::Display for ItemFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} {}: {}",
            self.id, self.status, self.kind, self.reason
        )
    }
}

/// What became of a bulk request's items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BulkOutcome {
    /// Items that were written.
    pub(crate) written: usize,
    /// Ids refused because OpenSearch holds a version not older than the one sent.
    pub(crate) superseded: Vec<String>,
    /// Items that failed for any other reason.
    pub(crate) failed: Vec<ItemFailure>,
}

impl BulkOutcome {
    /// `Ok` unless an item failed; the error lists the first failures.
    pub(crate) fn check(
        &self,
        operation: &'static str,
        index: &str,
    ) -> Result<(), OpenSearchError> {
        if self.failed.is_empty() {
            return Ok(());
        }
        metrics::counter!("adledger_opensearch_bulk_items_failed_total", "operation" => operation)
            .increment(self.failed.len() as u64);
        let first: Vec<String> = self
            .failed
            .iter()
            .take(LISTED_FAILURES)
            .map(ToString::to_string)
            .collect();
        let more = self.failed.len().saturating_sub(LISTED_FAILURES);
        let mut first = first.join("; ");
        if more > 0 {
            first.push_str(&format!("; and {more} more"));
        }
        Err(OpenSearchError::BulkItems {
            operation,
            index: index.to_string(),
            failed: self.failed.len(),
            total: self.written + self.superseded.len() + self.failed.len(),
            first,
        })
    }
}

/// Reads a bulk response of `expected` items.
pub(crate) fn outcome(
    response: &Value,
    expected: usize,
    operation: &'static str,
    index: &str,
) -> Result<BulkOutcome, OpenSearchError> {
    let bad = |detail: String| OpenSearchError::Response {
        operation,
        index: index.to_string(),
        detail,
    };
    let items = response["items"]
        .as_array()
        .ok_or_else(|| bad("no items array".into()))?;
    if items.len() != expected {
        return Err(bad(format!(
            "{} items answered for {expected} sent",
            items.len()
        )));
    }
    let mut outcome = BulkOutcome::default();
    for item in items {
        // Each item is `{"<action>": {...}}`.
        let result = item
            .as_object()
            .and_then(|actions| actions.values().next())
            .ok_or_else(|| bad(format!("item {item} names no action")))?;
        let id = result["_id"].as_str().unwrap_or("(no _id)").to_string();
        let status = result["status"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| bad(format!("item {id} has no status")))?;
        let error = &result["error"];
        let kind = error["type"].as_str().unwrap_or_default();
        let not_found_delete = status == 404 && result["result"] == "not_found";
        if (200..300).contains(&status) || (not_found_delete && error.is_null()) {
            outcome.written += 1;
        } else if status == 409 && kind == VERSION_CONFLICT {
            outcome.superseded.push(id);
        } else {
            outcome.failed.push(ItemFailure {
                id,
                status,
                kind: if kind.is_empty() { "error" } else { kind }.to_string(),
                reason: error["reason"]
                    .as_str()
                    .unwrap_or("(no reason given)")
                    .to_string(),
            });
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use opensearch::http::request::Body;
    use serde_json::json;

    use super::*;

    #[test]
    fn index_items_carry_the_external_version() {
        let documents = [AdDocument {
            id: "01A".into(),
            version: 3,
            source: json!({ "status": "live" }),
        }];
        let operations = index_operations(&documents, VersionType::External).expect("ops");
        let bytes = operations.bytes().expect("in memory");
        let text = std::str::from_utf8(&bytes).expect("utf-8");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(
            lines,
            vec![
                json!({ "index": { "_id": "01A", "version": 3, "version_type": "external" } }),
                json!({ "status": "live" }),
            ]
        );
    }

    #[test]
    fn chunks_keep_order_and_respect_both_limits() {
        let document = |n: usize, bytes: usize| AdDocument {
            id: n.to_string(),
            version: 0,
            source: json!({ "description": "x".repeat(bytes) }),
        };
        let mut chunker = Chunker::default();
        let mut chunks = Vec::new();
        for n in 0..2_500 {
            chunks.extend(chunker.push(document(n, 10)));
        }
        chunks.extend(chunker.finish());
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1_000, 1_000, 500]);
        let ids: Vec<String> = chunks.iter().flatten().map(|d| d.id.clone()).collect();
        assert_eq!(ids, (0..2_500).map(|n| n.to_string()).collect::<Vec<_>>());

        let mut chunker = Chunker::default();
        let mut chunks = Vec::new();
        for n in 0..5 {
            chunks.extend(chunker.push(document(n, 2 << 20)));
        }
        chunks.extend(chunker.push(document(5, 6 << 20)));
        chunks.extend(chunker.finish());
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            vec![2, 2, 1, 1],
            "2 MB documents pair up; 6 MB goes alone"
        );
    }

    #[test]
    fn conflicts_are_superseded_and_other_errors_fail() {
        let response = json!({
            "errors": true,
            "items": [
                { "index": { "_id": "a", "status": 201, "result": "created" } },
                { "index": { "_id": "b", "status": 409, "error": {
                    "type": "version_conflict_engine_exception", "reason": "newer" } } },
                { "index": { "_id": "c", "status": 400, "error": {
                    "type": "mapper_parsing_exception", "reason": "bad price" } } },
            ]
        });
        let outcome = outcome(&response, 3, "apply", "ads").expect("outcome");
        assert_eq!(outcome.written, 1);
        assert_eq!(outcome.superseded, vec!["b".to_string()]);
        let err = outcome
            .check("apply", "ads")
            .expect_err("c failed")
            .to_string();
        assert!(err.contains("1 of 3"), "{err}");
        assert!(
            err.contains("c: 400 mapper_parsing_exception: bad price"),
            "{err}"
        );
        assert!(
            super::outcome(&response, 2, "apply", "ads").is_err(),
            "count checked"
        );
    }
}
