//! The backend's own errors, and the one place they become engine errors.
//!
//! Internal functions return [`AwsError`] so a failure keeps its cause (the DynamoDB
//! operation, the table, the service's error code); the trait implementations convert at
//! their boundary, so callers see only [`adledger_engine::Error`] variants that mean
//! something to them: a failed condition is `Conflict`, a transaction DynamoDB cannot hold
//! is `TooLarge`, a missing block is `ChainBroken`, and a request that failed in a way that
//! passes (throttling, a 5xx, a dropped connection: what the SDK retries, once its
//! attempts or its retry quota are spent) is `Transient`, which the server answers 503
//! with `Retry-After`, not 500.

use std::error::Error as StdError;

use adledger_engine::{Error, VersionExpectation};
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Service error codes of a request that may succeed if sent again later: DynamoDB's
/// throttling and its internal failures (its documentation says to retry them).
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
];

/// Whether `error` is a failure that passes: a connection that failed or timed out, no
/// parsable answer, a 5xx, or a throttling or internal-failure code. A request the SDK
/// could not even build, a refused credential or a bad parameter is not.
fn is_transient<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error()
                || error.code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
        }
        _ => false,
    }
}

/// Everything that can go wrong inside the AWS backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AwsError {
    /// A DynamoDB request failed (network, throttling, permissions, …).
    #[error("DynamoDB {operation} on table {table} failed: {message}")]
    Request {
        operation: &'static str,
        table: String,
        /// The SDK error with its whole context, flattened for the log line.
        message: String,
        #[source]
        source: Box<dyn StdError + Send + Sync + 'static>,
    },

    /// A DynamoDB request failed in a way that passes (throttled, a 5xx, no answer), after
    /// the SDK's retries, or a batch's items stayed unprocessed after ours.
    #[error("DynamoDB {operation} on table {table} failed for now: {message}")]
    Transient {
        operation: &'static str,
        table: String,
        message: String,
        #[source]
        source: Box<dyn StdError + Send + Sync + 'static>,
    },

    /// A table the backend needs does not exist.
    #[error(
        "DynamoDB table {table} does not exist; create the tables with `adledger aws init` \
         (same --table-prefix and endpoint)"
    )]
    MissingTable { table: String },

    /// A condition of a write found another state than the caller expected.
    #[error("conflict: expected {expected}, found {actual}")]
    Conflict {
        expected: VersionExpectation,
        actual: VersionExpectation,
    },

    /// The write does not fit in one DynamoDB transaction or item.
    #[error("{0}")]
    TooLarge(String),

    /// The engine handed over a batch that breaks the port's preconditions.
    #[error("invalid append batch: {0}")]
    BadBatch(String),

    /// A block below the journal's last sequence is not stored.
    #[error("block {sequence} is missing from the journal")]
    MissingBlock { sequence: u64 },

    /// Stored items do not decode.
    #[error("{0}")]
    Corrupt(String),
}

impl From<AwsError> for Error {
    fn from(error: AwsError) -> Error {
        match error {
            AwsError::Conflict { expected, actual } => Error::Conflict { expected, actual },
            AwsError::TooLarge(detail) => Error::TooLarge(detail),
            AwsError::Corrupt(detail) => Error::Corrupt(detail),
            AwsError::MissingBlock { sequence } => Error::ChainBroken {
                sequence,
                detail: "the block is missing below the journal's last sequence".into(),
            },
            transient @ AwsError::Transient { .. } => Error::transient("dynamodb", transient),
            other => Error::backend("dynamodb", other),
        }
    }
}

/// Shorthand for a stored value that does not decode.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> AwsError {
    AwsError::Corrupt(what.to_string())
}

/// Classifies an SDK error: a missing table and an oversized item get their own
/// variants; anything else keeps the SDK error as its source.
pub(crate) fn request<E>(
    operation: &'static str,
    table: &str,
    error: SdkError<E, HttpResponse>,
) -> AwsError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match error.code() {
        Some("ResourceNotFoundException") => AwsError::MissingTable {
            table: table.to_string(),
        },
        Some("ValidationException")
            if error
                .message()
                .is_some_and(|m| m.contains("Item size") || m.contains("size has exceeded")) =>
        {
            AwsError::TooLarge(format!(
                "DynamoDB refused the {operation} on table {table}: {}",
                error.message().unwrap_or("item too large")
            ))
        }
        _ => {
            let message = match &error {
                // The request never reached DynamoDB: the SDK's full context here is a
                // debug dump of the connector; the chain of causes says what went wrong.
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => format!(
                    "{}; check --dynamodb-endpoint, the region (AWS_REGION) and the AWS \
                     credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)",
                    causes(&error)
                ),
                _ => DisplayErrorContext(&error).to_string(),
            };
            let table = table.to_string();
            if is_transient(&error) {
                AwsError::Transient {
                    operation,
                    table,
                    message,
                    source: Box::new(error),
                }
            } else {
                AwsError::Request {
                    operation,
                    table,
                    message,
                    source: Box::new(error),
                }
            }
        }
    }
}

/// An error and its sources, each by its `Display`, joined with ": ".
fn causes(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.ends_with(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
