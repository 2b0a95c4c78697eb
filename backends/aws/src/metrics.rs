//! Counting DynamoDB requests, so the cost of a write can be measured (the target is one
//! `TransactWriteItems` per group commit), and remembering the journal tip and state
//! checkpoint this process last read or wrote, so `/healthz` can report them without a
//! request. Both are per process: a server opens one ledger.
//!
//! Every client this backend builds ([`crate::client`]) carries [`CountRequests`], an SDK
//! interceptor that runs before each request is sent (retries included: each attempt is
//! a request DynamoDB bills and answers). The counts are per process, by operation, and
//! each request is also a `trace`-level event on the `adledger_aws::requests` target.
//! Attempts after the first (the SDK retrying a throttle, a 5xx or a lost connection) are
//! also counted as `adledger_dynamodb_retries_total`, by operation: a rising rate says
//! DynamoDB or the network is struggling before any request fails.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_runtime_api::client::retries::RequestAttempts;

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
        cfg: &mut ConfigBag,
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
        metrics::counter!("adledger_dynamodb_requests_total", "operation" => operation.to_string())
            .increment(1);
        // The orchestrator numbers each attempt of one operation call from 1.
        let attempt = cfg
            .load::<RequestAttempts>()
            .map_or(1, RequestAttempts::attempts);
        if attempt > 1 {
            tracing::debug!(target: "adledger_aws::requests", operation, attempt, "DynamoDB retry");
            metrics::counter!("adledger_dynamodb_retries_total", "operation" => operation.to_string())
                .increment(1);
        }
        *COUNTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(operation.to_string())
            .or_default() += 1;
        Ok(())
    }

    /// Counts throttled answers (`ThrottlingException`, `ProvisionedThroughputExceeded…`,
    /// `RequestLimitExceeded`), which the SDK then retries, as
    /// `adledger_dynamodb_throttles_total`.
    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let throttled = context
            .response()
            .headers()
            .get("x-amzn-errortype")
            .is_some_and(|kind| {
                kind.contains("Throttling")
                    || kind.contains("ProvisionedThroughputExceeded")
                    || kind.contains("RequestLimitExceeded")
            });
        if throttled {
            metrics::counter!("adledger_dynamodb_throttles_total").increment(1);
        }
        Ok(())
    }
}

/// A value this process last read from or wrote to DynamoDB, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The value.
    pub value: u64,
    /// When this process last learned it.
    pub at: std::time::Instant,
}

/// The state checkpoint this process last wrote or read (none yet: `None`).
static STATE_CHECKPOINT: Mutex<Option<Observed>> = Mutex::new(None);
/// The journal's next sequence as this process last read or wrote it.
static JOURNAL_TIP: Mutex<Option<Observed>> = Mutex::new(None);

fn observe(slot: &Mutex<Option<Observed>>, value: u64) {
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Observed {
        value,
        at: std::time::Instant::now(),
    });
}

/// Records the state checkpoint just read or written, so `/healthz` can report it (with
/// its age) from memory instead of asking DynamoDB.
pub fn observe_state_checkpoint(checkpoint: u64) {
    observe(&STATE_CHECKPOINT, checkpoint);
}

/// Records the journal's next sequence just read or written (see
/// [`observe_state_checkpoint`]).
pub fn observe_journal_tip(next: u64) {
    observe(&JOURNAL_TIP, next);
}

/// The state checkpoint this process last read or wrote, and when; `None` before the
/// first.
pub fn state_checkpoint() -> Option<Observed> {
    *STATE_CHECKPOINT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The journal's next sequence as this process last read or wrote it, and when.
pub fn journal_tip() -> Option<Observed> {
    *JOURNAL_TIP.lock().unwrap_or_else(PoisonError::into_inner)
}
