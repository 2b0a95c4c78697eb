//! The DynamoDB server the AWS variants run against, and a fresh ledger on it per test.
//!
//! Same convention as the AWS backend's own tests (`backends/aws/tests/support`): the
//! server is named by `ADLEDGER_TEST_DYNAMODB_ENDPOINT` (`scripts/dynamodb-local.sh`
//! installs and starts AWS's DynamoDB Local and sets it). Without it an AWS variant fails,
//! saying how to run it: it never passes without having run.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::support::run_cli;

/// The variable naming the DynamoDB endpoint.
pub const ENDPOINT_VAR: &str = "ADLEDGER_TEST_DYNAMODB_ENDPOINT";

/// The DynamoDB endpoint. Panics with instructions when it is not set.
pub fn endpoint() -> String {
    let Some(endpoint) = std::env::var(ENDPOINT_VAR).ok().filter(|v| !v.is_empty()) else {
        panic!(
            "{ENDPOINT_VAR} is not set: this test runs the server on the AWS backend and \
             needs a DynamoDB server. Run the suite with `scripts/dynamodb-local.sh cargo \
             test -p adledger-tests` (it installs and starts DynamoDB Local in a private \
             network namespace), point {ENDPOINT_VAR} at a loopback DynamoDB endpoint, or \
             run the local variants alone with `cargo test -p adledger-tests -- ::local::`"
        );
    };
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
        "{ENDPOINT_VAR} must be a loopback http:// URL for the end-to-end tests, got {endpoint:?}"
    );
    endpoint
}

/// A table prefix no other test (in this run or an earlier one) uses.
pub fn unique_prefix(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "e2e-{test}-{}-{nanos}-{}-",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `serve` arguments that select the AWS backend on `endpoint` under `prefix`.
pub fn serve_args(endpoint: &str, prefix: &str) -> Vec<String> {
    [
        "--backend",
        "aws",
        "--dynamodb-endpoint",
        endpoint,
        "--table-prefix",
        prefix,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `adledger aws init` for a fresh ledger; asserts it succeeded.
pub async fn init(endpoint: &str, prefix: &str) {
    let output = run_cli(&[
        "aws",
        "init",
        "--dynamodb-endpoint",
        endpoint,
        "--table-prefix",
        prefix,
    ])
    .await;
    assert!(
        output.status.success(),
        "`adledger aws init` failed: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
