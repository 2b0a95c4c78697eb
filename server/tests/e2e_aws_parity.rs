//! Parity over real HTTP: the fixture command script `fixtures/script.jsonl`, replayed
//! against `adledger serve --backend aws --deterministic 42` on a DynamoDB server, gives
//! the journal the local backend gives: the digest (sequence, Merkle root, tip hash) and
//! every revision hash pinned in `fixtures/golden.json`. The same check at the engine
//! level, without the server, is `backends/aws/tests/backend.rs`.
//!
//! Needs `ADLEDGER_TEST_DYNAMODB_ENDPOINT` (`scripts/dynamodb-local.sh` sets it); fails
//! loudly without it unless `ADLEDGER_SKIP_AWS_TESTS=1`.

mod e2e_common;
mod support;

use e2e_common::Server;
use reqwest::StatusCode;
use support::aws;
use support::script::{SEED, Tip, check_golden, golden_path, load_script, run_script};

#[tokio::test]
async fn fixture_script_on_aws_gives_the_golden_journal() {
    let Some(endpoint) = aws::endpoint("e2e_aws_parity") else {
        return;
    };
    // Never write a golden file from the AWS backend: it must already pin the local one.
    assert!(
        golden_path().exists(),
        "{} is missing; it is written by the local backend's e2e_deterministic test",
        golden_path().display()
    );
    let prefix = aws::unique_prefix("parity");
    aws::init(&endpoint, &prefix).await;
    let mut args = aws::serve_args(&endpoint, &prefix);
    args.extend(["--deterministic".to_string(), SEED.to_string()]);
    let server = Server::start_with(None, &args).await;

    let health = server.get("/healthz").await;
    health.expect_status(StatusCode::OK);
    assert!(
        health.json()["dynamodbRequests"].is_object(),
        "the server must run on the AWS backend: {}",
        health.text
    );

    let run = run_script(&server, &load_script()).await;
    let Tip::Digest(digest) = &run.tip else {
        panic!("GET /ledger/digest must be served on the AWS backend");
    };
    println!("AWS backend journal digest: {digest}");
    check_golden(&run);
    drop(server);
}
