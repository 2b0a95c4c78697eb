//! The conformance harness both OpenSearch suites use (`opensearch_live.rs` against a real
//! cluster, `opensearch_model.rs` against a loopback model): the AWS backend as it runs,
//! the journal and the state store in DynamoDB (fresh tables per place, on the server
//! named by `ADLEDGER_TEST_DYNAMODB_ENDPOINT`, see `support/mod.rs`), and search an
//! `OpenSearchIndex` on `url`, created with `create_index` as `adledger aws init` does.
//! (The AWS crate does not depend on the local backend, so sled is not available here.)

#[path = "../support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use adledger_aws::{
    DynamoJournal, DynamoStateStore, OpenSearchAuth, OpenSearchIndex, OpenSearchSettings,
    TableNames,
};
use adledger_engine::testkit::{Harness, Stores};
use adledger_engine::{Error, Result, SearchIndex, StateStore};
use async_trait::async_trait;

/// An OpenSearch endpoint to run the conformance tests against.
pub struct OpenSearchHarness {
    pub url: String,
    pub auth: OpenSearchAuth,
    /// The index every place uses, or `None` for a fresh, uniquely named one per place
    /// (a shared cluster).
    pub index: Option<&'static str>,
}

/// One ledger: its DynamoDB server and tables, and the index name.
pub struct Place {
    endpoint: String,
    tables: TableNames,
    index: String,
}

impl OpenSearchHarness {
    fn settings(&self, index: &str) -> OpenSearchSettings {
        OpenSearchSettings {
            url: self.url.clone(),
            index: index.to_string(),
            auth: self.auth.clone(),
        }
    }

    /// Creates a fresh index and opens it.
    async fn fresh_index(&self, index: &str) -> Result<OpenSearchIndex> {
        let search = OpenSearchIndex::connect(&self.settings(index)).await?;
        search.create_index().await?;
        Ok(search)
    }
}

/// `adledger-test-<pid>-<nanos>-<n>-ads`: no two places, runs or machines collide.
fn unique_index() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "adledger-test-{}-{nanos}-{}-ads",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[async_trait]
impl Harness for OpenSearchHarness {
    type Place = Place;

    async fn place(&self) -> Result<Place> {
        let endpoint = support::endpoint().ok_or_else(|| {
            Error::Unavailable(format!(
                "the OpenSearch conformance tests keep the journal and the state store in \
                 DynamoDB, and {} is not set",
                support::ENDPOINT_VAR
            ))
        })?;
        let tables = support::fresh_tables(&support::client(&endpoint)).await?;
        let index = self.index.map_or_else(unique_index, str::to_string);
        self.fresh_index(&index).await?;
        Ok(Place {
            endpoint,
            tables,
            index,
        })
    }

    async fn open(&self, place: &Place) -> Result<Stores> {
        let client = support::client(&place.endpoint);
        let journal = DynamoJournal::open(client.clone(), &place.tables.journal).await?;
        let state = DynamoStateStore::open(client, &place.tables.state).await?;
        let search = OpenSearchIndex::open(&self.settings(&place.index)).await?;
        Ok(Stores {
            journal: Arc::new(journal),
            state: Arc::new(state),
            search: Arc::new(search),
        })
    }

    async fn open_read_models(
        &self,
        place: &Place,
        name: &str,
    ) -> Result<(Arc<dyn StateStore>, Arc<dyn SearchIndex>)> {
        let client = support::client(&place.endpoint);
        let table = format!("{}-{name}", place.tables.state);
        support::fresh_state_table(&client, &table).await?;
        let state = DynamoStateStore::open(client, &table).await?;
        let index = format!("{}-shadow-{}", place.index, name.to_lowercase());
        let search = self.fresh_index(&index).await?;
        Ok((Arc::new(state), Arc::new(search)))
    }
}
