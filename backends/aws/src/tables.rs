//! The DynamoDB tables of one ledger, and creating them (`adledger aws init`).

use std::fmt;
use std::time::Duration;

use adledger_engine::Result;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};

use crate::error::{AwsError, request};

/// The prefix of table names when none is configured.
pub const DEFAULT_TABLE_PREFIX: &str = "adledger-";

/// How long `create` waits for a new table to become active.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The names of one ledger's tables: `<prefix>journal`, `<prefix>state` and
/// `<prefix>subscriptions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    /// The journal: tip, pages of blocks with their Merkle nodes, and the ad index
    /// (revision items, idempotency records).
    pub journal: String,
    /// The state read model.
    pub state: String,
    /// Durable subscriptions and their checkpoints (see `subscriptions`).
    pub subscriptions: String,
}

impl TableNames {
    /// The tables under `prefix`.
    pub fn with_prefix(prefix: &str) -> TableNames {
        TableNames {
            journal: format!("{prefix}journal"),
            state: format!("{prefix}state"),
            subscriptions: format!("{prefix}subscriptions"),
        }
    }

    /// Every table's definition.
    pub fn specs(&self) -> Vec<TableSpec> {
        vec![
            TableSpec::journal(&self.journal),
            TableSpec::state(&self.state),
            TableSpec::subscriptions(&self.subscriptions),
        ]
    }
}

/// One table's name and key schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The table name.
    pub name: String,
    /// Partition key: name and type.
    pub partition_key: (&'static str, ScalarAttributeType),
    /// Sort key: name and type.
    pub sort_key: (&'static str, ScalarAttributeType),
}

impl TableSpec {
    /// The journal table: `pk` (string) and `sk` (number); see `journal` for the items.
    pub fn journal(name: &str) -> TableSpec {
        TableSpec {
            name: name.to_string(),
            partition_key: ("pk", ScalarAttributeType::S),
            sort_key: ("sk", ScalarAttributeType::N),
        }
    }

    /// A state table: `publisherId` and `adId`, so a publisher's ads are one Query.
    pub fn state(name: &str) -> TableSpec {
        TableSpec {
            name: name.to_string(),
            partition_key: ("publisherId", ScalarAttributeType::S),
            sort_key: ("adId", ScalarAttributeType::S),
        }
    }

    /// The subscriptions table: `pk` (string, one value for every record) and `name`,
    /// so listing them in name order is one Query (see `subscriptions`).
    pub fn subscriptions(name: &str) -> TableSpec {
        TableSpec {
            name: name.to_string(),
            partition_key: ("pk", ScalarAttributeType::S),
            sort_key: ("name", ScalarAttributeType::S),
        }
    }
}

impl fmt::Display for TableSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table {} (partition key {} {}, sort key {} {}, on-demand capacity)",
            self.name,
            self.partition_key.0,
            self.partition_key.1.as_str(),
            self.sort_key.0,
            self.sort_key.1.as_str()
        )
    }
}

/// What `create` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The table was created.
    New,
    /// A table of that name already existed with the same keys.
    AlreadyExists,
}

/// Creates the table with on-demand capacity and waits until it is active. A table that
/// already exists with the same key schema is left alone; one with another key schema is
/// an error naming the difference.
pub async fn create(client: &aws_sdk_dynamodb::Client, spec: &TableSpec) -> Result<Created> {
    create_inner(client, spec).await.map_err(Into::into)
}

async fn create_inner(
    client: &aws_sdk_dynamodb::Client,
    spec: &TableSpec,
) -> Result<Created, AwsError> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| AwsError::BadBatch(e.to_string()))
    };
    let attribute = |(name, kind): &(&str, ScalarAttributeType)| {
        AttributeDefinition::builder()
            .attribute_name(*name)
            .attribute_type(kind.clone())
            .build()
            .map_err(|e| AwsError::BadBatch(e.to_string()))
    };
    let result = client
        .create_table()
        .table_name(&spec.name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(spec.partition_key.0, KeyType::Hash)?)
        .key_schema(key(spec.sort_key.0, KeyType::Range)?)
        .attribute_definitions(attribute(&spec.partition_key)?)
        .attribute_definitions(attribute(&spec.sort_key)?)
        .send()
        .await;
    let created = match result {
        Ok(_) => Created::New,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Created::AlreadyExists
        }
        Err(e) => return Err(request("CreateTable", &spec.name, e)),
    };
    wait_active(client, spec).await?;
    Ok(created)
}

/// Polls the table until it is active, and checks its key schema.
async fn wait_active(client: &aws_sdk_dynamodb::Client, spec: &TableSpec) -> Result<(), AwsError> {
    let deadline = tokio::time::Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let described = client
            .describe_table()
            .table_name(&spec.name)
            .send()
            .await
            .map_err(|e| request("DescribeTable", &spec.name, e))?;
        let table = described.table.ok_or_else(|| {
            corrupt_schema(spec, "DescribeTable returned no table description".into())
        })?;
        check_keys(spec, table.key_schema())?;
        if table.table_status == Some(TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AwsError::Request {
                operation: "DescribeTable",
                table: spec.name.clone(),
                message: format!("table not active after {ACTIVE_TIMEOUT:?}"),
                source: "timeout waiting for the table to become active".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn check_keys(spec: &TableSpec, keys: &[KeySchemaElement]) -> Result<(), AwsError> {
    let find = |kind: KeyType| {
        keys.iter()
            .find(|k| k.key_type == kind)
            .map(|k| k.attribute_name.as_str())
    };
    let found = (find(KeyType::Hash), find(KeyType::Range));
    if found != (Some(spec.partition_key.0), Some(spec.sort_key.0)) {
        return Err(corrupt_schema(
            spec,
            format!(
                "it exists with keys {found:?}, expected ({:?}, {:?}); choose another \
                 --table-prefix",
                spec.partition_key.0, spec.sort_key.0
            ),
        ));
    }
    Ok(())
}

fn corrupt_schema(spec: &TableSpec, detail: String) -> AwsError {
    AwsError::Corrupt(format!("DynamoDB table {}: {detail}", spec.name))
}

/// Fails with a clear error if the table does not exist (so a missing `aws init` is
/// reported at startup, not at the first request).
pub(crate) async fn require(client: &aws_sdk_dynamodb::Client, spec: &TableSpec) -> Result<()> {
    let described = client
        .describe_table()
        .table_name(&spec.name)
        .send()
        .await
        .map_err(|e| request("DescribeTable", &spec.name, e))?;
    if let Some(table) = described.table {
        check_keys(spec, table.key_schema())?;
    }
    Ok(())
}
