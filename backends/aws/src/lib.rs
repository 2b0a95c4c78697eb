//! The AWS backend of adledger: the journal and the state read model in DynamoDB; the
//! search read model in OpenSearch (one index shared by every server process) or in a
//! local tantivy index, chosen by configuration.
//!
//! Amazon QLDB reached end of support on 2025-07-31, so the journal is a plain DynamoDB
//! table whose integrity comes from the engine's hash chain and Merkle tree: the blocks
//! are the same bytes as on the local backend, with the same digests.
//!
//! # Layout
//!
//! A ledger is three tables named by a prefix (`adledger-` by default):
//!
//! ```text
//! <prefix>journal        pk (S) + sk (N): tip, pages of blocks with their Merkle
//!                        nodes, the derived ad index (revision items, idempotency
//!                        records; format 2 in `journal/keys.rs`), leases
//! <prefix>state          publisherId (S) + adId (S): each ad's latest state, and the
//!                        projection checkpoint
//! <prefix>subscriptions  pk (S) + name (S): durable subscriptions and their checkpoints
//! ```
//!
//! and, with `search = "opensearch"`, the OpenSearch index `<prefix>ads` (explicit
//! mapping in `opensearch/mapping.rs`; documents written with `version_type=external`).
//!
//! An append is one `TransactWriteItems` of the tip and a few page items, conditioned on
//! the tip (`journal/transaction.rs`); each ad's expected head is checked by the appender
//! against the ad index as of that tip just before. A lost race or a stale expected
//! version writes nothing and is the engine's `Conflict`; a batch that cannot fit in one
//! transaction (100 actions, 4 MB) or one item (400 KB) is `TooLarge` before anything is
//! sent. The engine caps its group commits at [`MAX_BLOCKS_PER_APPEND`] blocks and
//! [`MAX_BYTES_PER_APPEND`] bytes of frames so every batch fits: at ~1 KB per block, one
//! transaction carries hundreds of blocks. The ad index is written after the transaction
//! and completed from the pages by whoever needs it after a crash.
//!
//! Code:
//!
//! - `client`: the DynamoDB client (rustls over ring; standard AWS credential chain, or
//!   static credentials for DynamoDB Local).
//! - `tables`: table names and key schemas; creating them (`adledger aws init`).
//! - `journal`: [`DynamoJournal`], the `Journal` port.
//! - `state`: [`DynamoStateStore`], the `StateStore` port.
//! - `lease`: [`DynamoLease`], the `ProjectionLease` port: which of several server
//!   processes projects into the shared state store (an item in the journal table); the
//!   holder also delivers the durable subscriptions.
//! - `subscriptions`: [`DynamoSubscriptionStore`], the `SubscriptionStore` port:
//!   checkpoints as conditional writes on one item per subscription.
//! - `search`: the `SearchIndex` choice (tantivy or OpenSearch).
//! - `opensearch`: [`OpenSearchIndex`], the `SearchIndex` port on OpenSearch: an
//!   explicit mapping, external versioning, bulk writes with per-item outcomes.
//! - `error`: the backend's error type and its mapping into `adledger_engine::Error`.
//! - `attributes`: reading and writing DynamoDB attribute values.
//! - `metrics`: counts of DynamoDB requests by operation (to measure a write's cost), and
//!   the journal tip and state checkpoint this process last learned (for `/healthz`).
//!
//! # Tests
//!
//! `tests/conformance.rs` runs the engine's whole conformance suite against a real
//! DynamoDB server named by `ADLEDGER_TEST_DYNAMODB_ENDPOINT`; `scripts/dynamodb-local.sh`
//! installs AWS's DynamoDB Local and runs the tests next to it in a private network
//! namespace.
//!
//! No OpenSearch server can be installed on the CI machine: `tests/opensearch_contract.rs`
//! runs the OpenSearch adapter against a loopback HTTP server that checks the exact
//! requests (mapping, NDJSON bulk with external versions, search body) and answers as
//! OpenSearch does, partial bulk failures and version conflicts included;
//! `tests/opensearch_model.rs` runs the engine's search conformance tests against an
//! in-memory model of OpenSearch's versioning and query rules on loopback;
//! `tests/opensearch_live.rs` runs the engine's search conformance tests against a real
//! cluster when `OPENSEARCH_URL` is set, and says `skipped: OPENSEARCH_URL not set`
//! otherwise.

mod attributes;
mod batch_write;
pub mod capacity;
pub mod client;
mod error;
mod journal;
pub mod lease;
pub mod metrics;
pub mod opensearch;
pub mod search;
mod state;
pub mod subscriptions;
pub mod tables;

use std::sync::Arc;

use adledger_engine::{Result, SearchIndex};

pub use self::opensearch::{OpenSearchAuth, OpenSearchIndex, OpenSearchSettings};
pub use aws_sdk_dynamodb;
pub use client::{DynamoSettings, connect, connect_static};
pub use journal::{
    DynamoJournal, MAX_BLOCKS_PER_APPEND, MAX_BYTES_PER_APPEND, PAGE_BLOCKS_ATTRIBUTE,
    TIP_MARK_LINGER, locate_block,
};
pub use lease::DynamoLease;
pub use search::SearchSettings;
pub use state::DynamoStateStore;
pub use subscriptions::DynamoSubscriptionStore;
pub use tables::{DEFAULT_TABLE_PREFIX, TableNames};

/// The stores of one ledger on AWS.
#[derive(Debug, Clone)]
pub struct AwsBackend {
    /// The journal, in `<prefix>journal`.
    pub journal: Arc<DynamoJournal>,
    /// The state read model, in `<prefix>state`.
    pub state: Arc<DynamoStateStore>,
    /// The search read model.
    pub search: Arc<dyn SearchIndex>,
}

impl AwsBackend {
    /// Opens the ledger's tables (which must exist: `adledger aws init` creates them) and
    /// its search index.
    pub async fn open(
        client: aws_sdk_dynamodb::Client,
        tables: &TableNames,
        search: &SearchSettings,
    ) -> Result<AwsBackend> {
        Ok(AwsBackend {
            journal: Arc::new(DynamoJournal::open(client.clone(), &tables.journal).await?),
            state: Arc::new(DynamoStateStore::open(client, &tables.state).await?),
            search: search::open(search).await?,
        })
    }
}
