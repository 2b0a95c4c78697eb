//! `GET /metrics` from the real binary: Prometheus text with the request histogram labelled
//! by route template (never the raw path), the commit and sync histograms, and the
//! projection lag; public whatever the auth settings. The same on every backend (the
//! local backend adds its sync histogram): local only; plus the AWS backend's DynamoDB
//! request counter.

use crate::support::identity::hs256_server;
use crate::support::{Backend, Server, aws_only, local_only, seed_create_body};
use reqwest::StatusCode;

async fn metrics_name_routes_not_paths() {
    let server = Server::start(Backend::Local).await;
    for _ in 0..3 {
        server
            .create_ad("secret-publisher", &seed_create_body())
            .await;
    }
    server
        .get("/nowhere/at/all")
        .await
        .expect_status(StatusCode::NOT_FOUND);
    let resp = server.get("/metrics").await;
    resp.expect_status(StatusCode::OK);
    assert!(
        resp.header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain"),
        "{:?}",
        resp.header("content-type")
    );
    let text = &resp.text;
    for expected in [
        "http_server_request_duration_seconds_bucket{method=\"POST\",route=\"/publisher/{publisher_id}/ad\",status=\"201\"",
        "route=\"unmatched\",status=\"404\"",
        "adledger_commit_duration_seconds_bucket",
        "adledger_commit_batch_blocks_bucket",
        "adledger_journal_sync_seconds_bucket",
        "adledger_journal_blocks 3",
        "adledger_projection_lag_blocks{model=\"state\"}",
    ] {
        assert!(text.contains(expected), "no {expected} in:\n{text}");
    }
    assert!(
        !text.contains("secret-publisher"),
        "a raw path leaked into a label"
    );
    assert!(!text.contains("nowhere"), "a raw path leaked into a label");
    let creates = text
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_count")
                && l.contains("method=\"POST\"")
                && l.contains("status=\"201\"")
        })
        .unwrap_or_else(|| panic!("no POST count in:\n{text}"));
    assert!(creates.ends_with(" 3"), "{creates}");
}

async fn metrics_stay_public_and_anonymous() {
    let (server, _dir, _file) =
        hs256_server(Backend::Local, &["--auth-reads", "authenticated"]).await;
    server
        .get("/publisher/acme/ad")
        .await
        .expect_status(StatusCode::UNAUTHORIZED);
    let resp = server.get("/metrics").await;
    resp.expect_status(StatusCode::OK);
    assert!(!resp.text.contains("sub="), "no caller identity in metrics");
}

/// `--metrics-listen`: `/metrics` moves to its own address (found in the log line), and the
/// API's address answers 404 for it.
async fn metrics_on_their_own_address() {
    let args: Vec<String> = ["--metrics-listen", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let server = Server::start_with(None, &args).await;
    server.create_ad("acme", &seed_create_body()).await;
    server
        .get("/metrics")
        .await
        .expect_problem(StatusCode::NOT_FOUND);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let url = loop {
        let log = server.stderr_tail();
        if let Some(url) = log
            .split("metrics listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        {
            break url.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no metrics address in:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"),
        "{url}"
    );
    let resp = crate::support::fetch(server.client.get(&url))
        .await
        .expect("scrape the metrics address");
    resp.expect_status(StatusCode::OK);
    assert!(
        resp.text.contains("adledger_journal_blocks 1"),
        "{}",
        resp.text
    );
}

local_only!(
    metrics_name_routes_not_paths,
    metrics_stay_public_and_anonymous,
    metrics_on_their_own_address,
);

async fn dynamodb_requests_are_counted_by_operation() {
    let server = Server::start(Backend::Aws).await;
    server.create_ad("acme", &seed_create_body()).await;
    let text = server.get("/metrics").await.text;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("adledger_dynamodb_requests_total{operation=\"TransactWriteItems\"}")
        })
        .unwrap_or_else(|| panic!("no TransactWriteItems count in:\n{text}"));
    let count: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(count >= 1.0, "{line}");
}

aws_only!(dynamodb_requests_are_counted_by_operation);
