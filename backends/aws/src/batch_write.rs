//! `BatchWriteItem` with DynamoDB's rules handled once: at most 25 requests per call,
//! several calls in flight, and what DynamoDB leaves unprocessed (throttling) sent again
//! with exponential backoff and jitter. The state store's projection and the journal's
//! derived ad index write through it.

use std::time::Duration;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};

use crate::attributes::Item;
use futures::StreamExt;

use crate::error::{AwsError, request};

/// Items per BatchWriteItem (DynamoDB's limit).
pub(crate) const BATCH_WRITE_ITEMS: usize = 25;
/// Rounds of retrying items DynamoDB left unprocessed before giving up.
pub(crate) const UNPROCESSED_RETRIES: u32 = 10;
/// The first backoff before a retry; each round doubles it (up to 64×), plus jitter.
const BACKOFF_FIRST: Duration = Duration::from_millis(20);

/// The pause before retry `round` (1-based): exponential, with up to as much again of
/// random jitter so retries of several batches do not arrive together.
pub(crate) fn backoff(round: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let base = BACKOFF_FIRST * (1u32 << round.saturating_sub(1).min(6));
    // Each RandomState is seeded afresh from the OS's randomness per thread, enough for
    // jitter.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let millis = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    base + Duration::from_millis(random % millis.max(1))
}

/// The error for items still unprocessed after every retry: DynamoDB is throttling, which
/// passes.
pub(crate) fn exhausted(operation: &'static str, table: &str) -> AwsError {
    AwsError::Transient {
        operation,
        table: table.to_string(),
        message: "items still unprocessed after retries (throttled)".into(),
        source: "unprocessed items".into(),
    }
}

/// Unconditional Puts of `items` (distinct keys), as [`write_all`] writes them.
pub(crate) async fn put_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<Item>,
    concurrency: usize,
) -> Result<(), AwsError> {
    let requests = items
        .into_iter()
        .map(|item| {
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map(|put| WriteRequest::builder().put_request(put).build())
                .map_err(|e| AwsError::BadBatch(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    write_all(client, table, requests, concurrency).await
}

/// Write requests (distinct keys), [`BATCH_WRITE_ITEMS`] per `BatchWriteItem`,
/// `concurrency` requests in flight; returns once all are durable.
pub(crate) async fn write_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    requests: Vec<WriteRequest>,
    concurrency: usize,
) -> Result<(), AwsError> {
    let mut chunks = Vec::new();
    let mut requests = requests.into_iter().peekable();
    while requests.peek().is_some() {
        chunks.push(
            requests
                .by_ref()
                .take(BATCH_WRITE_ITEMS)
                .collect::<Vec<_>>(),
        );
    }
    let mut results = futures::stream::iter(chunks)
        .map(|chunk| write(client, table, chunk))
        .buffer_unordered(concurrency.max(1));
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

/// One `BatchWriteItem` (at most [`BATCH_WRITE_ITEMS`] requests), sending what DynamoDB
/// leaves unprocessed again with exponential backoff and jitter.
pub(crate) async fn write(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    mut requests: Vec<WriteRequest>,
) -> Result<(), AwsError> {
    let mut round = 0;
    while !requests.is_empty() {
        let output = client
            .batch_write_item()
            .request_items(table, requests)
            .send()
            .await
            .map_err(|e| request("BatchWriteItem", table, e))?;
        requests = output
            .unprocessed_items
            .and_then(|mut u| u.remove(table))
            .unwrap_or_default();
        if !requests.is_empty() {
            round += 1;
            if round > UNPROCESSED_RETRIES {
                return Err(exhausted("BatchWriteItem", table));
            }
            tokio::time::sleep(backoff(round)).await;
        }
    }
    Ok(())
}
