//! Counting DynamoDB requests, so the cost of a write can be measured: the target is one
//! `TransactWriteItems` per group commit.
//!
//! Every client this backend builds ([`crate::client`]) carries [`CountRequests`], an SDK
//! interceptor that runs before each request is sent (retries included: each attempt is
//! a request DynamoDB bills and answers). The counts are per process, by operation, and
//! each request is also a `trace`-level event on the `adledger_aws::requests` target.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;

/// Requests sent by this process, by DynamoDB operation name.
static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// The DynamoDB requests this process has sent so far, by operation (`GetItem`,
/// `TransactWriteItems`, …), retries included.
pub fn request_counts() -> BTreeMap<String, u64> {
    COUNTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The SDK interceptor that counts requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountRequests;

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "adledger::CountRequests"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // DynamoDB's JSON protocol names the operation in `X-Amz-Target`
        // (`DynamoDB_20120810.TransactWriteItems`).
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|target| target.rsplit('.').next())
            .unwrap_or("unknown");
        tracing::trace!(target: "adledger_aws::requests", operation, "DynamoDB request");
        *COUNTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(operation.to_string())
            .or_default() += 1;
        Ok(())
    }
}
