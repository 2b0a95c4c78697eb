//! The engine's conformance suite on the AWS backend: a real DynamoDB server (DynamoDB
//! Local via `scripts/dynamodb-local.sh`), a fresh set of tables per test so tests run
//! in parallel, and tantivy in a temporary directory for search.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;

use adledger_aws::{DynamoJournal, DynamoStateStore, TableNames, search};
use adledger_engine::testkit::{Harness, Stores};
use adledger_engine::{Result, SearchIndex, StateStore};
use async_trait::async_trait;

/// The DynamoDB server under test.
struct Dynamo {
    endpoint: String,
}

/// One ledger: its tables, and a directory for its search index (deleted on drop; the
/// tables stay until the server stops — DynamoDB Local runs in memory).
struct Place {
    tables: TableNames,
    dir: tempfile::TempDir,
}

impl Dynamo {
    fn client(&self) -> adledger_aws::aws_sdk_dynamodb::Client {
        support::client(&self.endpoint)
    }
}

#[async_trait]
impl Harness for Dynamo {
    type Place = Place;

    async fn place(&self) -> Result<Place> {
        let tables = support::fresh_tables(&self.client()).await?;
        let dir = tempfile::tempdir().map_err(|e| adledger_engine::Error::backend("tempdir", e))?;
        Ok(Place { tables, dir })
    }

    async fn open(&self, place: &Place) -> Result<Stores> {
        let client = self.client();
        Ok(Stores {
            journal: Arc::new(DynamoJournal::open(client.clone(), &place.tables.journal).await?),
            state: Arc::new(DynamoStateStore::open(client, &place.tables.state).await?),
            search: Arc::new(search::open_tantivy(&place.dir.path().join("search"))?),
        })
    }

    async fn open_read_models(
        &self,
        place: &Place,
        name: &str,
    ) -> Result<(Arc<dyn StateStore>, Arc<dyn SearchIndex>)> {
        let client = self.client();
        let table = format!("{}-{name}", place.tables.state);
        support::fresh_state_table(&client, &table).await?;
        let state = DynamoStateStore::open(client, &table).await?;
        let search = search::open_tantivy(&place.dir.path().join(format!("shadow-{name}")))?;
        Ok((Arc::new(state), Arc::new(search)))
    }
}

adledger_engine::conformance_tests!(match support::endpoint() {
    Some(endpoint) => Dynamo { endpoint },
    None => return,
});
