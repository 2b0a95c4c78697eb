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

/// `adledger verify --expect-digest` on the AWS ledger under `prefix`, reading DynamoDB
/// at `endpoint` directly; asserts it passed. `digest` is a served `/ledger/digest`.
pub async fn verify_against(endpoint: &str, prefix: &str, digest: &serde_json::Value) {
    let home = tempfile::tempdir().expect("tempdir");
    let config = home.path().join("aws.toml");
    std::fs::write(
        &config,
        format!(
            "backend = \"aws\"\ndynamodb_endpoint = \"{endpoint}\"\ntable_prefix = \"{prefix}\"\n"
        ),
    )
    .expect("write config");
    let expect = format!(
        "{}:{}",
        digest["sequence"],
        digest["root"].as_str().expect("root")
    );
    let config_arg = config.to_string_lossy().into_owned();
    let verified = run_cli(&[
        "verify",
        "--config",
        &config_arg,
        "--expect-digest",
        &expect,
    ])
    .await;
    assert!(
        verified.status.success(),
        "adledger verify on the AWS journal: {:?}\n{}\n{}",
        verified.status,
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
}

/// Starts `per_server * 2` writer tasks over two servers, alternating which one is
/// `near` (the writer's own) and which `far` (the other process), and awaits them all.
pub async fn crossed_writers<T, Fut>(
    first: &std::sync::Arc<crate::support::Server>,
    second: &std::sync::Arc<crate::support::Server>,
    per_server: usize,
    writer: impl Fn(
        std::sync::Arc<crate::support::Server>,
        std::sync::Arc<crate::support::Server>,
        usize,
    ) -> Fut,
) -> Vec<T>
where
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut tasks = Vec::new();
    for id in 0..per_server * 2 {
        let (near, far) = if id % 2 == 0 {
            (first.clone(), second.clone())
        } else {
            (second.clone(), first.clone())
        };
        tasks.push(tokio::spawn(writer(near, far, id)));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("writer task"));
    }
    results
}

/// An ad as its writer last knew it (acknowledged, or found applied after a lost answer).
#[derive(Debug, Clone, PartialEq)]
pub struct KnownAd {
    pub publisher: String,
    pub ad_id: String,
    pub version: u64,
    pub title: String,
}

/// Asserts that every server answers each of `ads` as known, and that each publisher's
/// list (a read model) converges, within a minute, to exactly those ads at those
/// versions (no phantom ad); then that all serve one digest, which it returns.
pub async fn assert_servers_agree(
    servers: &[&crate::support::Server],
    ads: &[KnownAd],
) -> serde_json::Value {
    use reqwest::StatusCode;
    let mut by_publisher: std::collections::BTreeMap<&str, Vec<(String, u64)>> =
        std::collections::BTreeMap::new();
    for ad in ads {
        by_publisher
            .entry(&ad.publisher)
            .or_default()
            .push((ad.ad_id.clone(), ad.version));
    }
    for server in servers {
        for ad in ads {
            let resp = server
                .get(&format!("/publisher/{}/ad/{}", ad.publisher, ad.ad_id))
                .await;
            resp.expect_status(StatusCode::OK);
            let body = resp.json();
            assert_eq!(body["version"], ad.version, "{}", resp.text);
            assert_eq!(body["adTitle"], ad.title.as_str(), "{}", resp.text);
        }
        for (publisher, want) in &mut by_publisher {
            want.sort();
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let mut got: Vec<(String, u64)> = server
                    .list(publisher)
                    .await
                    .iter()
                    .filter_map(|a| Some((a["adId"].as_str()?.to_string(), a["version"].as_u64()?)))
                    .collect();
                got.sort();
                if got == *want {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the list of {publisher} did not converge within 60 s: {got:?}, want {want:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    let mut digests = Vec::new();
    for server in servers {
        let digest = server.get("/ledger/digest").await;
        digest.expect_status(StatusCode::OK);
        digests.push(digest.json());
    }
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "every server serves the same digest: {digests:?}"
    );
    digests.swap_remove(0)
}
