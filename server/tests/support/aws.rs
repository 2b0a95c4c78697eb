//! The DynamoDB server the AWS backend's end-to-end tests run against, and a fresh
//! ledger on it per test.
//!
//! Same convention as the AWS backend's own tests (`backends/aws/tests/support`): the
//! server is named by `ADLEDGER_TEST_DYNAMODB_ENDPOINT` (`scripts/dynamodb-local.sh`
//! installs and starts AWS's DynamoDB Local and sets it). Without it a test fails, saying
//! how to run it, unless `ADLEDGER_SKIP_AWS_TESTS=1`: then it passes after printing a
//! `skipped:` line to the real stderr.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::e2e_common::run_cli;

/// The variable naming the DynamoDB endpoint.
pub const ENDPOINT_VAR: &str = "ADLEDGER_TEST_DYNAMODB_ENDPOINT";
/// The variable that turns a missing endpoint into a skip.
pub const SKIP_VAR: &str = "ADLEDGER_SKIP_AWS_TESTS";

/// The DynamoDB endpoint, or `None` (after a visible `skipped:` line) when skipping was
/// asked for. Panics with instructions when there is neither.
pub fn endpoint(test: &str) -> Option<String> {
    if let Some(endpoint) = std::env::var(ENDPOINT_VAR).ok().filter(|v| !v.is_empty()) {
        assert!(
            endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
            "{ENDPOINT_VAR} must be a loopback http:// URL for the end-to-end tests, got {endpoint:?}"
        );
        return Some(endpoint);
    }
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {test} ({ENDPOINT_VAR} not set and {SKIP_VAR}=1); run it with \
             `scripts/dynamodb-local.sh cargo test -p adledger --test {test}`"
        );
        return None;
    }
    panic!(
        "{ENDPOINT_VAR} is not set: {test} runs the server on the AWS backend and needs a \
         DynamoDB server. Run it with `scripts/dynamodb-local.sh cargo test -p adledger \
         --test {test}` (it installs and starts DynamoDB Local in a private network \
         namespace), point {ENDPOINT_VAR} at a loopback DynamoDB endpoint, or set \
         {SKIP_VAR}=1 to skip it"
    );
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
