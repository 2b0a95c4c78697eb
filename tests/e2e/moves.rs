//! Moving a ledger between backends with the real binary, the way a user goes from a
//! laptop to production and back: `adledger export` on the local backend, `adledger
//! import` into a fresh DynamoDB ledger, `adledger verify` there against the digest saved
//! before the move, `adledger serve --backend aws` answering with the same digest and the
//! same ads (a retried idempotent create included), then the reverse trip in the other
//! export format.
//!
//! Runs once: it is about both backends at once. Needs `ADLEDGER_TEST_DYNAMODB_ENDPOINT` (`scripts/dynamodb-local.sh`
//! sets it) and fails loudly without it.

use std::path::Path;

use crate::support::aws;
use crate::support::{Backend, Server, run_cli};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PUBLISHERS: [&str; 2] = ["acme", "globex"];

fn arg(path: &Path) -> String {
    path.display().to_string()
}

/// Runs `adledger ARGS`, asserts it succeeded, returns its stdout.
async fn cli_ok(args: &[&str]) -> String {
    let out = run_cli(args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`adledger {}` failed: {:?}\nstdout: {stdout}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Every ad of every publisher, as the API lists them.
async fn view(server: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    for publisher in PUBLISHERS {
        all.extend(server.list(publisher).await);
    }
    all
}

fn idempotent_body() -> Value {
    json!({"adTitle": "Desk lamp", "adDescription": "brass", "price": "25.00",
           "currency": "EUR", "category": "home", "tags": ["lamp"]})
}

/// A create with an Idempotency-Key; returns (status, adId, whether it was a replay).
async fn keyed_create(server: &Server) -> (StatusCode, String, bool) {
    let request = server
        .request(reqwest::Method::POST, "/publisher/acme/ad")
        .header("Idempotency-Key", "move-order-1");
    let resp = server
        .send(crate::support::json_body(request, &idempotent_body()))
        .await;
    let id = resp.json()["adId"].as_str().unwrap_or_default().to_string();
    let replayed = resp.header("idempotency-replayed").as_deref() == Some("true");
    (resp.status, id, replayed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_moves_from_local_to_aws_and_back_with_its_digest() {
    let endpoint = aws::endpoint();
    let work = tempfile::tempdir().expect("tempdir");

    // 1. A history on the local backend: creates, updates, a delete, a keyed create.
    let mut local = Server::start_deterministic(Backend::Local, 5).await;
    let mut ids = Vec::new();
    for (i, publisher) in PUBLISHERS.iter().cycle().take(6).enumerate() {
        let ad = local
            .create_ad(
                publisher,
                &json!({"adTitle": format!("Bike {i}"), "price": 100 + i, "currency": "EUR",
                        "tags": ["bike"]}),
            )
            .await;
        ids.push((
            publisher.to_string(),
            ad["adId"].as_str().expect("id").to_string(),
        ));
    }
    for (publisher, id) in ids.iter().take(3) {
        local
            .patch_json(
                &format!("/publisher/{publisher}/ad/{id}"),
                &json!({"adTitle": "Bike, serviced"}),
            )
            .await
            .expect_status(StatusCode::OK);
    }
    let (publisher, id) = &ids[5];
    local
        .delete(&format!("/publisher/{publisher}/ad/{id}"))
        .await;
    let (status, keyed_id, replayed) = keyed_create(&local).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false));
    let digest = local.get("/ledger/digest").await;
    digest.expect_status(StatusCode::OK);
    let digest = digest.json();
    let before = view(&local).await;
    local.stop().await;
    let expect = format!(
        "{}:{}",
        digest["sequence"],
        digest["root"].as_str().expect("root")
    );

    // 2. Export (Ion binary), import into a fresh DynamoDB ledger, verify there.
    let ion = work.path().join("ledger.ion");
    cli_ok(&[
        "export",
        "--data-dir",
        &arg(&local.data_dir),
        "--out",
        &arg(&ion),
    ])
    .await;
    let prefix = aws::unique_prefix("move");
    aws::init(&endpoint, &prefix).await;
    let on_aws = [
        "--backend",
        "aws",
        "--dynamodb-endpoint",
        &endpoint,
        "--table-prefix",
        &prefix,
    ];
    let aws_dir = work.path().join("aws-node");
    let aws_data = ["--data-dir", &arg(&aws_dir)];
    let imported = cli_ok(&[&["import", &arg(&ion)][..], &on_aws, &aws_data].concat()).await;
    assert!(
        imported.contains(digest["root"].as_str().expect("root")),
        "{imported}"
    );
    let verified = cli_ok(
        &[
            &["verify", "--expect-digest", &expect][..],
            &on_aws,
            &aws_data,
        ]
        .concat(),
    )
    .await;
    assert!(verified.starts_with("OK"), "{verified}");

    // 3. The server on DynamoDB has the same digest and ads, and still knows the key.
    let args: Vec<String> = on_aws.iter().map(|s| s.to_string()).collect();
    let mut moved = Server::start_with(Some(aws_dir.clone()), &args).await;
    assert!(
        moved.get("/healthz").await.json()["dynamodbRequests"].is_object(),
        "the moved ledger must be served from DynamoDB"
    );
    assert_eq!(moved.get("/ledger/digest").await.json(), digest);
    assert_eq!(view(&moved).await, before);
    let (status, replayed_id, replayed) = keyed_create(&moved).await;
    assert_eq!(
        (status, replayed_id.as_str(), replayed),
        (StatusCode::CREATED, keyed_id.as_str(), true),
        "a retried create is answered from the idempotency key carried by the journal"
    );
    moved.stop().await;

    // 4. And back, as JSON lines, into a fresh local data directory.
    let jsonl = work.path().join("ledger.jsonl");
    cli_ok(
        &[
            &["export", "--format", "jsonl", "--out", &arg(&jsonl)][..],
            &on_aws,
            &aws_data,
        ]
        .concat(),
    )
    .await;
    let back = work.path().join("back");
    cli_ok(&["import", &arg(&jsonl), "--data-dir", &arg(&back)]).await;
    cli_ok(&[
        "verify",
        "--data-dir",
        &arg(&back),
        "--expect-digest",
        &expect,
    ])
    .await;
    let mut home = Server::start_with(Some(back), &[]).await;
    assert_eq!(home.get("/ledger/digest").await.json(), digest);
    assert_eq!(view(&home).await, before);
    home.stop().await;
}
