//! The engine's conformance suite on the AWS backend: a real DynamoDB server (DynamoDB
//! Local via `scripts/dynamodb-local.sh`), a fresh set of tables per test so tests run
//! in parallel, and tantivy in a temporary directory for search.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;

use adledger_aws::aws_sdk_dynamodb::primitives::Blob;
use adledger_aws::aws_sdk_dynamodb::types::AttributeValue;
use adledger_aws::{
    DynamoJournal, DynamoStateStore, PAGE_BLOCKS_ATTRIBUTE, TableNames, locate_block, search,
};
use adledger_engine::testkit::{Harness, Stores, Tamper};
use adledger_engine::{Error, Result, SearchIndex, StateStore};
use async_trait::async_trait;

/// A DynamoDB item or key.
type Item = std::collections::HashMap<String, AttributeValue>;

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

    /// The key of the page holding block `sequence` and the block's index in it.
    async fn locate(&self, table: &str, sequence: u64) -> Result<(Item, usize)> {
        locate_block(&self.client(), table, sequence)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("no block {sequence} to tamper with")))
    }

    /// The stored frames of a page, read straight from the table.
    async fn page_frames(&self, table: &str, key: Item) -> Result<Vec<AttributeValue>> {
        let item = self
            .client()
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::backend("dynamodb", e))?
            .item
            .ok_or_else(|| Error::Corrupt("the page is gone".into()))?;
        match item.get(PAGE_BLOCKS_ATTRIBUTE) {
            Some(AttributeValue::L(frames)) => Ok(frames.clone()),
            _ => Err(Error::Corrupt("the page has no frames".into())),
        }
    }

    /// The stored bytes of a block, read straight from the table.
    async fn block_bytes(&self, table: &str, sequence: u64) -> Result<Vec<u8>> {
        let (key, index) = self.locate(table, sequence).await?;
        match self.page_frames(table, key).await?.get(index) {
            Some(AttributeValue::B(bytes)) => Ok(bytes.clone().into_inner()),
            _ => Err(Error::Corrupt(format!("block {sequence} has no bytes"))),
        }
    }

    /// Overwrites one element of a page's frame list (the Merkle nodes and the other
    /// blocks stay).
    async fn set_frame(&self, table: &str, sequence: u64, frame: AttributeValue) -> Result<()> {
        let (key, index) = self.locate(table, sequence).await?;
        self.client()
            .update_item()
            .table_name(table)
            .set_key(Some(key))
            .update_expression(format!("SET #b[{index}] = :b"))
            .expression_attribute_names("#b", PAGE_BLOCKS_ATTRIBUTE)
            .expression_attribute_values(":b", frame)
            .send()
            .await
            .map_err(|e| Error::backend("dynamodb", e))?;
        Ok(())
    }

    /// Overwrites only the bytes of a block.
    async fn set_block_bytes(&self, table: &str, sequence: u64, bytes: Vec<u8>) -> Result<()> {
        self.set_frame(table, sequence, AttributeValue::B(Blob::new(bytes)))
            .await
    }

    /// Removes a block: its page if it is the page's only block, else its frame (a hole).
    async fn delete_block(&self, table: &str, sequence: u64) -> Result<()> {
        let (key, _) = self.locate(table, sequence).await?;
        if self.page_frames(table, key.clone()).await?.len() > 1 {
            return self
                .set_frame(table, sequence, AttributeValue::Null(true))
                .await;
        }
        self.client()
            .delete_item()
            .table_name(table)
            .set_key(Some(key))
            .send()
            .await
            .map_err(|e| Error::backend("dynamodb", e))?;
        Ok(())
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

    /// An operator with table access: UpdateItem and DeleteItem on page items.
    async fn tamper(&self, place: &Place, action: Tamper) -> Result<()> {
        let table = &place.tables.journal;
        match action {
            Tamper::RewriteBlock { sequence, bytes } => {
                self.set_block_bytes(table, sequence, bytes).await
            }
            Tamper::DeleteBlock { sequence } => self.delete_block(table, sequence).await,
            Tamper::SwapBlocks { a, b } => {
                let (bytes_a, bytes_b) = (
                    self.block_bytes(table, a).await?,
                    self.block_bytes(table, b).await?,
                );
                self.set_block_bytes(table, a, bytes_b).await?;
                self.set_block_bytes(table, b, bytes_a).await
            }
        }
    }
}

adledger_engine::conformance_tests!(Dynamo {
    endpoint: support::endpoint()
});
