//! `adledger aws init` and `adledger serve` with `--search opensearch`, end to end: the
//! real binary on DynamoDB Local (as the other AWS end-to-end tests), with OpenSearch
//! played by a small stateful HTTP server on loopback in this test. It records every
//! request and answers as OpenSearch would for the calls the adapter makes: the index
//! (create, exists), bulk writes, the checkpoint document, and searches (it returns every
//! live document it holds; ranking is OpenSearch's business, checked by
//! `backends/aws/tests/opensearch_live.rs` against a real cluster).
//!
//! AWS only by nature; needs `ADLEDGER_TEST_DYNAMODB_ENDPOINT` (`scripts/dynamodb-local.sh`
//! sets it) and fails loudly without it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::support::aws as dynamodb;
use crate::support::{Server, aws_only, run_cli};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use serde_json::{Value, json};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    body: String,
}

/// What the fake OpenSearch holds.
#[derive(Default)]
struct Cluster {
    requests: Vec<Recorded>,
    /// Index name → (document id → source), for the indexes that exist.
    indexes: BTreeMap<String, BTreeMap<String, Value>>,
}

type Shared = Arc<Mutex<Cluster>>;

async fn start_fake() -> (String, Shared) {
    let cluster = Shared::default();
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(cluster.clone());
    (crate::support::serve_loopback(app).await, cluster)
}

fn error(status: StatusCode, kind: &str, reason: &str) -> (StatusCode, String) {
    let body = json!({ "error": { "type": kind, "reason": reason }, "status": status.as_u16() });
    (status, body.to_string())
}

async fn answer(
    State(cluster): State<Shared>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> (StatusCode, String) {
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut cluster = cluster.lock().unwrap_or_else(|p| p.into_inner());
    cluster.requests.push(Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        body: body.clone(),
    });
    let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let ok = |value: Value| (StatusCode::OK, value.to_string());
    match (&method, parts.as_slice()) {
        (&Method::PUT, [index]) => {
            if cluster.indexes.contains_key(*index) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "resource_already_exists_exception",
                    &format!("index [{index}/x] already exists"),
                );
            }
            cluster.indexes.insert(index.to_string(), BTreeMap::new());
            ok(json!({ "acknowledged": true, "shards_acknowledged": true, "index": index }))
        }
        (&Method::HEAD, [index]) => match cluster.indexes.contains_key(*index) {
            true => (StatusCode::OK, String::new()),
            false => (StatusCode::NOT_FOUND, String::new()),
        },
        (_, [index, ..]) if !cluster.indexes.contains_key(*index) => error(
            StatusCode::NOT_FOUND,
            "index_not_found_exception",
            &format!("no such index [{index}]"),
        ),
        (&Method::POST, [index, "_bulk"]) => {
            let lines: Vec<Value> = body
                .lines()
                .map(|l| serde_json::from_str(l).expect("bulk lines are JSON"))
                .collect();
            let docs = cluster.indexes.get_mut(*index).expect("checked above");
            let mut items = Vec::new();
            for pair in lines.chunks(2) {
                let id = pair[0]["index"]["_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                docs.insert(id.clone(), pair[1].clone());
                items.push(
                    json!({ "index": { "_index": index, "_id": id, "_version": 1,
                                              "result": "created", "status": 201 } }),
                );
            }
            ok(json!({ "took": 1, "errors": false, "items": items }))
        }
        (&Method::POST | &Method::PUT, [index, "_doc", id]) => {
            let source: Value = serde_json::from_str(&body).expect("document is JSON");
            let docs = cluster.indexes.get_mut(*index).expect("checked above");
            docs.insert(id.to_string(), source);
            ok(json!({ "_index": index, "_id": id, "result": "updated", "_version": 2 }))
        }
        (&Method::GET, [index, "_doc", id]) => match cluster.indexes[*index].get(*id) {
            Some(source) => ok(json!({ "_index": index, "_id": id, "found": true,
                                       "_version": 2, "_source": source })),
            None => (
                StatusCode::NOT_FOUND,
                json!({ "_index": index, "_id": id, "found": false }).to_string(),
            ),
        },
        (&Method::POST, [index, "_search"]) => {
            let hits: Vec<Value> = cluster.indexes[*index]
                .iter()
                .filter(|(_, source)| source["status"] == "live")
                .map(|(id, source)| {
                    json!({ "_index": index, "_id": id, "_score": 1.0,
                                            "_source": source })
                })
                .collect();
            ok(json!({ "took": 1, "timed_out": false, "hits": {
                "total": { "value": hits.len(), "relation": "eq" }, "hits": hits } }))
        }
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected_request",
            &format!("the fake does not know {method} {uri}"),
        ),
    }
}

fn requests(cluster: &Shared) -> Vec<Recorded> {
    cluster
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .requests
        .clone()
}

async fn aws_init_creates_the_index_and_serve_projects_and_searches_through_it() {
    let endpoint = dynamodb::endpoint();
    let (url, cluster) = start_fake().await;
    let prefix = dynamodb::unique_prefix("os");
    let index = format!("{prefix}ads");
    let init = |dry_run: bool| {
        let mut args = vec![
            "aws",
            "init",
            "--dynamodb-endpoint",
            &endpoint,
            "--table-prefix",
            &prefix,
            "--search",
            "opensearch",
            "--opensearch-url",
            &url,
        ];
        if dry_run {
            args.push("--dry-run");
        }
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = run_cli(&args).await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "`adledger {}` failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };

    // A dry run prints the index and its mapping and sends nothing.
    let dry = run(init(true)).await;
    assert!(
        dry.contains(&format!("would create OpenSearch index {index} at {url}")),
        "{dry}"
    );
    assert!(dry.contains("\"dynamic\": \"strict\""), "{dry}");
    assert!(requests(&cluster).is_empty(), "a dry run contacts nobody");

    // The first run creates the index with its mapping; the second leaves it.
    let first = run(init(false)).await;
    assert!(
        first.contains(&format!(
            "created OpenSearch index {index} at {url} with its mapping"
        )),
        "{first}"
    );
    let second = run(init(false)).await;
    assert!(second.contains("already exists; left as is"), "{second}");
    let creates: Vec<Recorded> = requests(&cluster)
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path == format!("/{index}"))
        .collect();
    assert_eq!(creates.len(), 2);
    let mapping: Value = serde_json::from_str(&creates[0].body).expect("mapping is JSON");
    assert_eq!(mapping["mappings"]["dynamic"], "strict");
    assert_eq!(mapping["mappings"]["properties"]["price"]["type"], "double");

    // The server projects a new ad into the index and answers /search from it.
    let mut args = dynamodb::serve_args(&endpoint, &prefix);
    args.extend(["--search", "opensearch", "--opensearch-url", url.as_str()].map(str::to_string));
    let server = Server::start_with(None, &args).await;
    let ad = server
        .create_ad(
            "acme",
            &json!({ "adTitle": "Red bicycle", "adDescription": "barely used",
                     "price": 120.50, "currency": "EUR", "category": "bikes",
                     "tags": ["red"] }),
        )
        .await;
    let ad_id = ad["adId"].as_str().expect("adId").to_string();
    let found = server.get("/search?q=bicycle&category=bikes").await;
    found.expect_status(reqwest::StatusCode::OK);
    let page = found.json();
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0]["adId"], ad_id.as_str(), "{page}");
    assert_eq!(page["items"][0], ad, "the ad as created, exactly");

    let seen = requests(&cluster);
    let bulk = seen
        .iter()
        .find(|r| r.path == format!("/{index}/_bulk") && r.body.contains(&ad_id))
        .unwrap_or_else(|| panic!("no bulk write of the new ad: {seen:?}"));
    let action: Value =
        serde_json::from_str(bulk.body.lines().next().expect("action line")).expect("json");
    assert_eq!(action["index"]["_id"], ad_id.as_str());
    assert_eq!(action["index"]["version_type"], "external");
    let search = seen
        .iter()
        .find(|r| r.path == format!("/{index}/_search"))
        .expect("a search request");
    let body: Value = serde_json::from_str(&search.body).expect("search body");
    assert_eq!(
        body["query"]["bool"]["must"][0]["multi_match"]["query"],
        "bicycle"
    );
    assert_eq!(
        body["query"]["bool"]["filter"][1],
        json!({ "term": { "categoryExact": "bikes" } })
    );
    assert!(
        seen.iter()
            .any(|r| r.method == "POST" && r.path == format!("/{index}/_doc/adledger.checkpoint")),
        "the projection stored its checkpoint in the index"
    );
}

aws_only!(aws_init_creates_the_index_and_serve_projects_and_searches_through_it,);
