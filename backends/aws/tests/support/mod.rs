//! What the AWS backend's test binaries share: finding the DynamoDB server, and a fresh
//! set of tables per test.
//!
//! The tests need a real DynamoDB server, named by `ADLEDGER_TEST_DYNAMODB_ENDPOINT`.
//! `scripts/dynamodb-local.sh` installs AWS's DynamoDB Local and runs a command next to
//! it with the variable set. Without it a test fails, saying how to run it.

#![allow(dead_code)] // each test binary uses a different part

use std::sync::atomic::{AtomicU64, Ordering};

use adledger_aws::tables::{self, TableSpec};
use adledger_aws::{TableNames, connect_static};

/// The variable naming the DynamoDB endpoint.
pub const ENDPOINT_VAR: &str = "ADLEDGER_TEST_DYNAMODB_ENDPOINT";

/// The DynamoDB endpoint to test against. Panics, with instructions, when there is none:
/// a test that cannot reach its server fails, it never passes without running.
pub fn endpoint() -> String {
    if let Some(endpoint) = std::env::var(ENDPOINT_VAR).ok().filter(|v| !v.is_empty()) {
        return endpoint;
    }
    panic!(
        "{ENDPOINT_VAR} is not set: the AWS backend's tests need a DynamoDB server. Run them \
         with `scripts/dynamodb-local.sh cargo test -p adledger-aws --locked` (it installs \
         and starts DynamoDB Local in a private network namespace), or point {ENDPOINT_VAR} \
         at a DynamoDB endpoint"
    );
}

/// A client for the test server: static credentials, fixed region.
pub fn client(endpoint: &str) -> adledger_aws::aws_sdk_dynamodb::Client {
    connect_static(endpoint, "us-east-1")
}

/// A table prefix no other test (in this run or an earlier one) uses.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "t{}-{nanos}-{}-",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a ledger's tables under a fresh prefix.
pub async fn fresh_tables(
    client: &adledger_aws::aws_sdk_dynamodb::Client,
) -> adledger_engine::Result<TableNames> {
    let names = TableNames::with_prefix(&unique_prefix());
    for spec in names.specs() {
        tables::create(client, &spec).await?;
    }
    Ok(names)
}

/// Creates one extra state table.
pub async fn fresh_state_table(
    client: &adledger_aws::aws_sdk_dynamodb::Client,
    name: &str,
) -> adledger_engine::Result<()> {
    tables::create(client, &TableSpec::state(name)).await?;
    Ok(())
}
