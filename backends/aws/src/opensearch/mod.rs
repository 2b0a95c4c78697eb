//! The search read model on OpenSearch: [`OpenSearchIndex`], the `SearchIndex` port.
//!
//! # Layout
//!
//! - `connect`: settings, authentication (none, basic, SigV4) and the client.
//! - `mapping`: the index definition and the documents (live ads, tombstones, the
//!   checkpoint).
//! - `query`: the search body (`multi_match` plus filters, as a JSON value) and reading
//!   hits.
//! - `bulk`: bulk request bodies and per-item outcomes.
//! - `error`: the adapter's errors.
//!
//! # How the port's contract is met
//!
//! - **Idempotent by version**: every document is written with `version_type=external`
//!   and the ad version as its `_version`, so OpenSearch itself refuses a revision that is
//!   not newer than what it holds (a 409 `version_conflict_engine_exception`, which
//!   `apply` counts as success). Deletes are tombstone documents written the same way.
//! - **Checkpoint**: a document (`adledger.checkpoint`) in the same index, written only
//!   after every item of the bulk request was written or superseded; any other item
//!   failure fails `apply` and leaves the checkpoint where it was. Reading it is a
//!   realtime `GET`.
//! - **Visibility**: bulk writes use `refresh=true`, so when `apply` or `put` returns,
//!   searches see them (read-your-writes waits for the checkpoint, then searches). The
//!   price is one refresh per projection batch; the projector batches what has been
//!   committed since its last step, so under load the refreshes stay few.
//! - **Large batches** (a rebuild hands over up to 128 MB) go out as several bulk
//!   requests of at most 1,000 items and 5 MB each, in journal order; the checkpoint is
//!   written after the last one succeeded.
//! - **`put` is unconditional**: written with `external_gte`; a document OpenSearch
//!   refuses because it holds a newer version is deleted and written again, retried
//!   (every 250 ms, 20 times at most) until OpenSearch has forgotten the deleted
//!   version: with the index's `gc_deletes` of 0 that takes one tick of OpenSearch's
//!   cached clock, about 200 ms. Between the delete and the write that ad is missing
//!   from results for a moment; `put` is a maintenance operation (restore, replay,
//!   rebuild), not the projection's path.
//! - **`clear`** deletes and recreates the index: it drops documents, the checkpoint and
//!   every version OpenSearch remembers, so a rebuild starts from nothing.

mod bulk;
mod connect;
mod error;
mod mapping;
mod query;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use adledger_engine::ports::{AdState, SearchIndex, SearchPage, SearchQuery};
use adledger_engine::{Result, Revision};
use async_trait::async_trait;
use opensearch::http::headers::{CONTENT_TYPE, HeaderValue};
use opensearch::http::response::Response;
use opensearch::indices::{IndicesCreateParts, IndicesDeleteParts, IndicesExistsParts};
use opensearch::params::{Refresh, VersionType};
use opensearch::{BulkOperations, BulkParts, GetParts, IndexParts, OpenSearch, SearchParts};
use serde_json::Value;

use self::bulk::{BulkOutcome, Chunker};
pub use self::connect::{DEFAULT_INDEX_SUFFIX, OpenSearchAuth, OpenSearchSettings, index_name};
use self::error::OpenSearchError;
pub use self::mapping::index_definition;
use self::mapping::{AdDocument, CHECKPOINT_ID, checkpoint_document};

/// How often `put` writes a document again while OpenSearch still remembers the newer
/// version it just deleted, and how long it waits between attempts.
const LOWER_ATTEMPTS: u32 = 20;
const LOWER_PAUSE: Duration = Duration::from_millis(250);

/// The search read model in an OpenSearch index.
///
/// Cloning is cheap and shares the client.
#[derive(Clone)]
pub struct OpenSearchIndex {
    client: OpenSearch,
    index: Arc<str>,
    url: Arc<str>,
}

impl std::fmt::Debug for OpenSearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenSearchIndex")
            .field("url", &self.url)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// What [`OpenSearchIndex::create_index`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexCreated {
    /// The index was created with its mapping.
    New,
    /// An index of that name exists already; it was left as it is.
    AlreadyExists,
}

impl OpenSearchIndex {
    /// A client for the index in `settings`, without any request: the index need not
    /// exist yet (`adledger aws init` creates it with [`create_index`](Self::create_index)).
    pub async fn connect(settings: &OpenSearchSettings) -> Result<OpenSearchIndex> {
        connect::check_index_name(&settings.index)?;
        let client = connect::client(settings).await?;
        Ok(OpenSearchIndex {
            client,
            index: settings.index.as_str().into(),
            url: settings.url.as_str().into(),
        })
    }

    /// Connects and checks that the index exists, failing with a message that says to
    /// run `adledger aws init` when it does not (as the DynamoDB tables must exist).
    pub async fn open(settings: &OpenSearchSettings) -> Result<OpenSearchIndex> {
        let index = Self::connect(settings).await?;
        index.check_exists().await?;
        Ok(index)
    }

    /// The index name.
    pub fn index_name(&self) -> &str {
        &self.index
    }

    /// Creates the index with its settings and mapping ([`index_definition`]); an
    /// existing index of that name is left as it is (`adledger aws init` is harmless to
    /// run twice).
    pub async fn create_index(&self) -> Result<IndexCreated> {
        Ok(self.create().await?)
    }

    async fn create(&self) -> Result<IndexCreated, OpenSearchError> {
        let response = self
            .client
            .indices()
            .create(IndicesCreateParts::Index(&self.index))
            .body(index_definition())
            .send()
            .await
            .map_err(|source| self.request_error("create index", source))?;
        let status = response.status_code().as_u16();
        if response.status_code().is_success() {
            return Ok(IndexCreated::New);
        }
        let body = body_json(response).await;
        if error_type(&body) == Some("resource_already_exists_exception") {
            return Ok(IndexCreated::AlreadyExists);
        }
        Err(self.status_error("create index", status, &body))
    }

    async fn check_exists(&self) -> Result<(), OpenSearchError> {
        let response = self
            .client
            .indices()
            .exists(IndicesExistsParts::Index(&[&*self.index]))
            .send()
            .await
            .map_err(|source| self.request_error("check index", source))?;
        match response.status_code().as_u16() {
            200 => Ok(()),
            404 => Err(OpenSearchError::MissingIndex {
                index: self.index.to_string(),
            }),
            status => Err(self.status_error("check index", status, &Value::Null)),
        }
    }

    fn request_error(&self, operation: &'static str, source: opensearch::Error) -> OpenSearchError {
        OpenSearchError::Request {
            operation,
            index: self.index.to_string(),
            source,
        }
    }

    /// The error for an unsuccessful answer: a missing index says so.
    fn status_error(&self, operation: &'static str, status: u16, body: &Value) -> OpenSearchError {
        if error_type(body) == Some("index_not_found_exception") {
            return OpenSearchError::MissingIndex {
                index: self.index.to_string(),
            };
        }
        OpenSearchError::Status {
            operation,
            index: self.index.to_string(),
            status,
            detail: error_detail(body),
        }
    }

    /// The JSON body of a successful answer, or the error it stands for.
    async fn success_json(
        &self,
        operation: &'static str,
        sent: Result<Response, opensearch::Error>,
    ) -> Result<Value, OpenSearchError> {
        let response = sent.map_err(|source| self.request_error(operation, source))?;
        let status = response.status_code();
        let body = body_json(response).await;
        if !status.is_success() {
            return Err(self.status_error(operation, status.as_u16(), &body));
        }
        Ok(body)
    }

    /// Sends `operations` (`count` items) as one bulk request, refreshing so searches see
    /// them, and reads the per-item outcome.
    async fn bulk(
        &self,
        operation: &'static str,
        operations: BulkOperations,
        count: usize,
    ) -> Result<BulkOutcome, OpenSearchError> {
        let sent = self
            .client
            .bulk(BulkParts::Index(&self.index))
            // The crate labels every body `application/json`; this one is NDJSON.
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            )
            .refresh(Refresh::True)
            .body(vec![operations])
            .send()
            .await;
        let body = self.success_json(operation, sent).await?;
        bulk::outcome(&body, count, operation, &self.index)
    }

    async fn write_checkpoint(&self, checkpoint: u64) -> Result<(), OpenSearchError> {
        let sent = self
            .client
            .index(IndexParts::IndexId(&self.index, CHECKPOINT_ID))
            .body(checkpoint_document(checkpoint))
            .send()
            .await;
        self.success_json("write checkpoint", sent).await?;
        Ok(())
    }

    async fn read_checkpoint(&self) -> Result<u64, OpenSearchError> {
        let response = self
            .client
            .get(GetParts::IndexId(&self.index, CHECKPOINT_ID))
            .send()
            .await
            .map_err(|source| self.request_error("read checkpoint", source))?;
        let status = response.status_code().as_u16();
        let body = body_json(response).await;
        match (status, body["found"].as_bool()) {
            (200, Some(true)) => {
                body["_source"]["checkpoint"]
                    .as_u64()
                    .ok_or_else(|| OpenSearchError::Response {
                        operation: "read checkpoint",
                        index: self.index.to_string(),
                        detail: format!("checkpoint document without a checkpoint: {body}"),
                    })
            }
            (404, Some(false)) => Ok(0),
            _ => Err(self.status_error("read checkpoint", status, &body)),
        }
    }

    async fn apply_revisions(
        &self,
        revisions: &[Revision],
        checkpoint: u64,
    ) -> Result<(), OpenSearchError> {
        // Converted chunk by chunk: a rebuild's batch can be large.
        let mut chunker = Chunker::default();
        for revision in revisions {
            if let Some(chunk) = chunker.push(AdDocument::of_revision(revision)?) {
                self.apply_chunk(&chunk).await?;
            }
        }
        if let Some(chunk) = chunker.finish() {
            self.apply_chunk(&chunk).await?;
        }
        self.write_checkpoint(checkpoint).await
    }

    /// One bulk request of `apply`: written or superseded items are fine, any other
    /// failure fails the whole `apply` before its checkpoint is written.
    async fn apply_chunk(&self, documents: &[AdDocument]) -> Result<(), OpenSearchError> {
        let operations = bulk::index_operations(documents, VersionType::External)?;
        let outcome = self.bulk("apply", operations, documents.len()).await?;
        outcome.check("apply", &self.index)?;
        if !outcome.superseded.is_empty() {
            tracing::debug!(
                index = %self.index,
                superseded = outcome.superseded.len(),
                "search apply: revisions already indexed (or older than indexed) skipped"
            );
        }
        Ok(())
    }

    async fn put_states(
        &self,
        states: &[AdState],
        checkpoint: Option<u64>,
    ) -> Result<(), OpenSearchError> {
        // A later state of the same ad replaces an earlier one: only the last is written.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(states.len());
        for (i, state) in states.iter().enumerate() {
            last.insert(state.key.ad_id.as_str(), i);
        }
        let mut chunker = Chunker::default();
        for (i, state) in states.iter().enumerate() {
            if last.get(state.key.ad_id.as_str()) != Some(&i) {
                continue;
            }
            if let Some(chunk) = chunker.push(AdDocument::of_state(state)?) {
                self.put_chunk(chunk).await?;
            }
        }
        if let Some(chunk) = chunker.finish() {
            self.put_chunk(chunk).await?;
        }
        if let Some(checkpoint) = checkpoint {
            self.write_checkpoint(checkpoint).await?;
        }
        Ok(())
    }

    /// Writes one chunk of `put` whatever versions OpenSearch holds.
    async fn put_chunk(&self, documents: Vec<AdDocument>) -> Result<(), OpenSearchError> {
        let mut pending = self.put_documents(&documents).await?;
        if pending.is_empty() {
            return Ok(());
        }
        // OpenSearch holds newer versions of these: delete, then write again.
        let ids: Vec<&str> = pending.iter().map(|d| d.id.as_str()).collect();
        let deleted = self
            .bulk(
                "put (delete newer)",
                bulk::delete_operations(&ids)?,
                ids.len(),
            )
            .await?;
        deleted.check("put (delete newer)", &self.index)?;
        for attempt in 1..=LOWER_ATTEMPTS {
            pending = self.put_documents(&pending).await?;
            let Some(first) = pending.first() else {
                return Ok(());
            };
            if attempt == LOWER_ATTEMPTS {
                return Err(OpenSearchError::VersionNotLowered {
                    index: self.index.to_string(),
                    ad_id: first.id.clone(),
                    version: first.version,
                    attempts: LOWER_ATTEMPTS,
                });
            }
            tokio::time::sleep(LOWER_PAUSE).await;
        }
        Ok(())
    }

    /// Writes `documents` with `external_gte`; returns those OpenSearch refused because it
    /// holds a newer version.
    async fn put_documents(
        &self,
        documents: &[AdDocument],
    ) -> Result<Vec<AdDocument>, OpenSearchError> {
        let operations = bulk::index_operations(documents, VersionType::ExternalGte)?;
        let outcome = self.bulk("put", operations, documents.len()).await?;
        outcome.check("put", &self.index)?;
        Ok(documents
            .iter()
            .filter(|d| outcome.superseded.contains(&d.id))
            .cloned()
            .collect())
    }

    async fn run_search(&self, search: &SearchQuery) -> Result<SearchPage, OpenSearchError> {
        let body = query::search_body(search)?;
        let sent = self
            .client
            .search(SearchParts::Index(&[&*self.index]))
            .body(body)
            .send()
            .await;
        let response = self.success_json("search", sent).await?;
        query::page_of(&response, &self.index)
    }

    async fn recreate(&self) -> Result<(), OpenSearchError> {
        let response = self
            .client
            .indices()
            .delete(IndicesDeleteParts::Index(&[&*self.index]))
            .send()
            .await
            .map_err(|source| self.request_error("delete index", source))?;
        let status = response.status_code().as_u16();
        if !response.status_code().is_success() {
            let body = body_json(response).await;
            if error_type(&body) != Some("index_not_found_exception") {
                return Err(self.status_error("delete index", status, &body));
            }
        }
        self.create().await?;
        Ok(())
    }
}

/// The body as JSON; `Null` when there is none or it is not JSON (an error status from a
/// proxy, a `HEAD` answer).
async fn body_json(response: Response) -> Value {
    match response.text().await {
        Ok(text) if !text.is_empty() => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        _ => Value::Null,
    }
}

/// OpenSearch's error type (`error.type`), if the body is an error.
fn error_type(body: &Value) -> Option<&str> {
    body["error"]["type"].as_str()
}

/// `type: reason` of an error body, or the start of whatever the body was.
fn error_detail(body: &Value) -> String {
    match (
        body["error"]["type"].as_str(),
        body["error"]["reason"].as_str(),
    ) {
        (Some(kind), Some(reason)) => format!("{kind}: {reason}"),
        _ => {
            let text = match body {
                Value::String(text) => text.clone(),
                Value::Null => "(no body)".to_string(),
                other => other.to_string(),
            };
            text.chars().take(300).collect()
        }
    }
}

#[async_trait]
impl SearchIndex for OpenSearchIndex {
    async fn apply(&self, revisions: &[Revision], checkpoint: u64) -> Result<()> {
        Ok(self.apply_revisions(revisions, checkpoint).await?)
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        Ok(self.run_search(query).await?)
    }

    async fn checkpoint(&self) -> Result<u64> {
        Ok(self.read_checkpoint().await?)
    }

    async fn clear(&self) -> Result<()> {
        Ok(self.recreate().await?)
    }

    async fn put(&self, states: &[AdState], checkpoint: Option<u64>) -> Result<()> {
        Ok(self.put_states(states, checkpoint).await?)
    }
}
