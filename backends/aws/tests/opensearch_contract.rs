//! The OpenSearch adapter against a loopback HTTP server that plays OpenSearch.
//!
//! No OpenSearch server can be installed here, so each test starts an axum server on
//! `127.0.0.1:0` that records every request (method, path, query, headers, body) and
//! answers with scripted responses shaped like OpenSearch 2.x's. The tests check the
//! exact requests the adapter sends — the index mapping, the NDJSON bulk body with
//! external versions, the search body — and what it makes of each answer: a version
//! conflict on an external-versioned write is success, any other item failure fails
//! the batch and the checkpoint is not written. `opensearch_live.rs` runs the engine's
//! conformance suite against a real cluster when `OPENSEARCH_URL` is set.

use std::collections::VecDeque;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adledger_aws::opensearch::index_definition;
use adledger_aws::{OpenSearchAuth, OpenSearchIndex, OpenSearchSettings};
use adledger_engine::ports::{AdState, SearchIndex, SearchQuery};
use adledger_engine::revision::Revision;
use adledger_engine::testkit::{ChainBuilder, ad_id, draft, sample_ad};
use adledger_engine::{AdKey, Error};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// How long any one adapter call may take before the test fails.
const CALL_LIMIT: Duration = Duration::from_secs(20);

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: String,
    content_type: String,
    authorization: Option<String>,
    content_sha256: Option<String>,
    body: String,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }

    /// The NDJSON lines of a bulk body.
    fn lines(&self) -> Vec<Value> {
        assert!(self.body.ends_with('\n'), "NDJSON ends with a newline");
        self.body
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    fn has_query(&self, pair: &str) -> bool {
        self.query.split('&').any(|p| p == pair)
    }
}

/// How the fake answers one request.
enum Answer {
    /// This status and body.
    Fixed(u16, Value),
    /// A bulk response in which every item of the request was created.
    CreateAll,
}

#[derive(Default)]
struct Script {
    requests: Vec<Recorded>,
    responses: VecDeque<Answer>,
}

/// The fake OpenSearch: a recorder and a queue of answers, one per request.
#[derive(Clone)]
struct FakeOpenSearch {
    script: Arc<Mutex<Script>>,
    url: String,
}

impl FakeOpenSearch {
    async fn start() -> FakeOpenSearch {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            // Ends with the test's runtime.
            let _ = axum::serve(listener, app).await;
        });
        FakeOpenSearch {
            script,
            url: format!("http://{address}"),
        }
    }

    /// Queues the answer to the next request.
    fn answer(&self, status: u16, body: Value) -> &Self {
        self.lock().responses.push_back(Answer::Fixed(status, body));
        self
    }

    /// Queues a bulk answer that creates every item of the request.
    fn create_all(&self) -> &Self {
        self.lock().responses.push_back(Answer::CreateAll);
        self
    }

    fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    fn unanswered(&self) -> usize {
        self.lock().responses.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn settings(&self, auth: OpenSearchAuth) -> OpenSearchSettings {
        OpenSearchSettings {
            url: self.url.clone(),
            index: "ads".into(),
            auth,
        }
    }

    async fn index(&self) -> OpenSearchIndex {
        bounded(OpenSearchIndex::connect(
            &self.settings(OpenSearchAuth::None),
        ))
        .await
        .expect("connect")
    }
}

async fn record(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut script = script.lock().unwrap_or_else(|p| p.into_inner());
    script.requests.push(Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        content_type: header("content-type").unwrap_or_default(),
        authorization: header("authorization"),
        content_sha256: header("x-amz-content-sha256"),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let request_body = String::from_utf8_lossy(&body).into_owned();
    let (status, body) = match script.responses.pop_front() {
        Some(Answer::Fixed(status, body)) => (status, body),
        Some(Answer::CreateAll) => {
            let items = request_body
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter_map(|line| line["index"]["_id"].as_str().map(str::to_string))
                .map(|id| item_created(&id, 1))
                .collect();
            (200, bulk_answer(items))
        }
        None => (
            500,
            json!({ "error": { "type": "test_script_exhausted",
                               "reason": format!("no answer scripted for {method} {uri}") } }),
        ),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    if method == Method::HEAD {
        return (status, headers, String::new());
    }
    (status, headers, body.to_string())
}

/// Runs an adapter call with a bound on its duration.
async fn bounded<T>(call: impl Future<Output = T>) -> T {
    tokio::time::timeout(CALL_LIMIT, call)
        .await
        .expect("the adapter answered within the time limit")
}

// -- Realistic OpenSearch 2.x answers --

fn item_created(id: &str, version: u64) -> Value {
    json!({ "index": {
        "_index": "ads", "_id": id, "_version": version, "result": "created",
        "forced_refresh": true,
        "_shards": { "total": 2, "successful": 1, "failed": 0 },
        "_seq_no": 0, "_primary_term": 1, "status": 201
    }})
}

fn item_conflict(id: &str, current: u64, provided: u64) -> Value {
    json!({ "index": {
        "_index": "ads", "_id": id, "status": 409,
        "error": {
            "type": "version_conflict_engine_exception",
            "reason": format!("[{id}]: version conflict, current version [{current}] is \
                               higher or equal to the one provided [{provided}]"),
            "index": "ads", "shard": "0", "index_uuid": "Qw3rTyUiOpAsDfGhJkLzXc"
        }
    }})
}

fn item_mapper_error(id: &str) -> Value {
    json!({ "index": {
        "_index": "ads", "_id": id, "status": 400,
        "error": {
            "type": "mapper_parsing_exception",
            "reason": format!("failed to parse field [price] of type [double] in document \
                               with id '{id}'. Preview of field's value: 'abc'"),
            "caused_by": { "type": "number_format_exception",
                           "reason": "For input string: \"abc\"" }
        }
    }})
}

fn bulk_answer(items: Vec<Value>) -> Value {
    let errors = items.iter().any(|i| {
        i.as_object()
            .and_then(|o| o.values().next())
            .is_some_and(|r| r.get("error").is_some())
    });
    json!({ "took": 7, "errors": errors, "items": items })
}

fn checkpoint_written() -> Value {
    json!({
        "_index": "ads", "_id": "adledger.checkpoint", "_version": 2, "result": "updated",
        "_shards": { "total": 2, "successful": 1, "failed": 0 },
        "_seq_no": 12, "_primary_term": 1
    })
}

fn index_not_found() -> Value {
    let cause = json!({
        "type": "index_not_found_exception", "reason": "no such index [ads]",
        "index": "ads", "resource.type": "index_or_alias", "resource.id": "ads",
        "index_uuid": "_na_"
    });
    let mut error = cause.clone();
    error["root_cause"] = json!([cause]);
    json!({ "error": error, "status": 404 })
}

fn key(n: u32) -> AdKey {
    AdKey::new("acme", ad_id(n))
}

/// Revisions of fresh ads (version 0 each) with the given titles.
fn creates(titles: &[&str]) -> Vec<Revision> {
    let changes = titles
        .iter()
        .enumerate()
        .map(|(n, title)| {
            let k = key(n as u32 + 1);
            (k.clone(), Some(sample_ad(&k, title)))
        })
        .collect();
    let (_, blocks) = ChainBuilder::new().batch(changes).expect("batch");
    blocks.into_iter().flat_map(|b| b.revisions).collect()
}

// -- The tests --

#[tokio::test]
async fn init_creates_the_index_with_its_mapping_and_tolerates_an_existing_one() {
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    os.answer(
        200,
        json!({ "acknowledged": true, "shards_acknowledged": true, "index": "ads" }),
    );
    let created = bounded(index.create_index()).await.expect("create");
    assert_eq!(created, adledger_aws::opensearch::IndexCreated::New);

    let exists = json!({ "type": "resource_already_exists_exception",
                         "reason": "index [ads/Qw3rTyUi] already exists",
                         "index": "ads", "index_uuid": "Qw3rTyUi" });
    let mut error = exists.clone();
    error["root_cause"] = json!([exists]);
    os.answer(400, json!({ "error": error, "status": 400 }));
    let again = bounded(index.create_index()).await.expect("second create");
    assert_eq!(again, adledger_aws::opensearch::IndexCreated::AlreadyExists);

    os.answer(
        403,
        json!({ "error": { "type": "security_exception",
                           "reason": "no permissions for [indices:admin/create]" },
                "status": 403 }),
    );
    let refused = bounded(index.create_index()).await.expect_err("forbidden");
    assert!(
        refused.to_string().contains("security_exception"),
        "{refused}"
    );

    let requests = os.requests();
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("PUT", "/ads")
        );
        assert_eq!(request.json(), index_definition());
    }
    let definition = requests[0].json();
    assert_eq!(definition["mappings"]["dynamic"], "strict");
    assert_eq!(definition["mappings"]["properties"]["ad"]["enabled"], false);
    assert_eq!(
        definition["mappings"]["properties"]["title"]["analyzer"],
        "adledger_text"
    );
    assert_eq!(definition["settings"]["index"]["gc_deletes"], "0ms");
    assert_eq!(
        definition["settings"]["analysis"]["analyzer"]["adledger_text"]["filter"],
        json!(["adledger_long_tokens", "lowercase", "asciifolding"])
    );
}

#[tokio::test]
async fn open_needs_the_index_and_says_how_to_create_it() {
    let os = FakeOpenSearch::start().await;
    os.answer(404, Value::Null);
    let err = bounded(OpenSearchIndex::open(&os.settings(OpenSearchAuth::None)))
        .await
        .expect_err("no index");
    assert!(err.to_string().contains("adledger aws init"), "{err}");
    os.answer(200, Value::Null);
    bounded(OpenSearchIndex::open(&os.settings(OpenSearchAuth::None)))
        .await
        .expect("index exists");
    let requests = os.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("HEAD", "/ads")
    );
}

#[tokio::test]
async fn apply_sends_one_external_versioned_bulk_then_the_checkpoint() {
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    // An ad created, then deleted; and a second ad.
    let a = key(1);
    let b = key(2);
    let (_, blocks) = ChainBuilder::new()
        .batch(vec![
            (a.clone(), Some(sample_ad(&a, "Red bicycle"))),
            (b.clone(), Some(sample_ad(&b, "Blue sofa"))),
            (a.clone(), None),
        ])
        .expect("batch");
    let revisions: Vec<Revision> = blocks.into_iter().flat_map(|b| b.revisions).collect();
    os.answer(
        200,
        bulk_answer(vec![
            item_created(&a.ad_id, 0),
            item_created(&b.ad_id, 0),
            item_created(&a.ad_id, 1),
        ]),
    )
    .answer(200, checkpoint_written());
    bounded(index.apply(&revisions, 3)).await.expect("apply");

    let requests = os.requests();
    assert_eq!(requests.len(), 2, "one bulk, one checkpoint: {requests:?}");
    let bulk = &requests[0];
    assert_eq!(
        (bulk.method.as_str(), bulk.path.as_str()),
        ("POST", "/ads/_bulk")
    );
    assert!(
        bulk.has_query("refresh=true"),
        "searches see the batch: {}",
        bulk.query
    );
    assert!(
        bulk.content_type.starts_with("application/x-ndjson"),
        "{}",
        bulk.content_type
    );
    let lines = bulk.lines();
    assert_eq!(
        lines.len(),
        6,
        "an action line and a source line per revision"
    );
    assert_eq!(
        lines[0],
        json!({ "index": { "_id": a.ad_id, "version": 0, "version_type": "external" } })
    );
    let ad = sample_ad(&a, "Red bicycle");
    assert_eq!(
        lines[1],
        json!({
            "adId": a.ad_id, "publisherId": "acme", "version": 0, "status": "live",
            "title": "Red bicycle", "description": ad.ad_description, "category": "cars",
            "categoryExact": "cars", "tags": ["red"], "tagExact": ["red"],
            "price": Value::Number(serde_json::Number::from_str("10").expect("number")),
            "createdMs": 1_600_000_000_001_u64,
            "ad": serde_json::to_value(&ad).expect("ad json"),
        })
    );
    assert_eq!(
        lines[2],
        json!({ "index": { "_id": b.ad_id, "version": 0, "version_type": "external" } })
    );
    assert_eq!(
        lines[4],
        json!({ "index": { "_id": a.ad_id, "version": 1, "version_type": "external" } }),
        "a delete is a versioned tombstone, not an OpenSearch delete"
    );
    assert_eq!(
        lines[5],
        json!({ "adId": a.ad_id, "publisherId": "acme", "version": 1, "status": "deleted" })
    );

    let checkpoint = &requests[1];
    assert_eq!(
        (checkpoint.method.as_str(), checkpoint.path.as_str()),
        ("POST", "/ads/_doc/adledger.checkpoint")
    );
    assert_eq!(
        checkpoint.json(),
        json!({ "status": "checkpoint", "checkpoint": 3 })
    );
}

#[tokio::test]
async fn apply_counts_version_conflicts_as_already_applied() {
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    let revisions = creates(&["one", "two", "three"]);
    os.answer(
        200,
        bulk_answer(vec![
            item_conflict(&ad_id(1), 4, 0),
            item_created(&ad_id(2), 0),
            item_conflict(&ad_id(3), 0, 0),
        ]),
    )
    .answer(200, checkpoint_written());
    bounded(index.apply(&revisions, 9))
        .await
        .expect("conflicts mean OpenSearch already holds these versions or newer");
    let requests = os.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].json()["checkpoint"],
        9,
        "the checkpoint advances"
    );
}

#[tokio::test]
async fn apply_fails_loudly_on_other_item_errors_and_keeps_the_checkpoint() {
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    let revisions = creates(&["one", "two", "three"]);
    os.answer(
        200,
        bulk_answer(vec![
            item_created(&ad_id(1), 0),
            item_conflict(&ad_id(2), 3, 0),
            item_mapper_error(&ad_id(3)),
        ]),
    );
    let err = bounded(index.apply(&revisions, 9))
        .await
        .expect_err("a mapping error fails the batch");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::Backend {
                backend: "opensearch",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(text.contains("1 of 3 items failed"), "{text}");
    assert!(
        text.contains(&ad_id(3)) && text.contains("mapper_parsing_exception"),
        "{text}"
    );
    assert!(text.contains("checkpoint was not advanced"), "{text}");
    let requests = os.requests();
    assert_eq!(
        requests.len(),
        1,
        "no checkpoint write after a failed bulk: {requests:?}"
    );
    assert_eq!(requests[0].path, "/ads/_bulk");
}

#[tokio::test]
async fn apply_fails_when_the_bulk_request_itself_fails() {
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    let revisions = creates(&["one"]);
    os.answer(
        429,
        json!({ "error": { "type": "es_rejected_execution_exception",
                           "reason": "rejected execution of coordinating operation" },
                "status": 429 }),
    );
    let err = bounded(index.apply(&revisions, 1))
        .await
        .expect_err("rejected");
    assert!(err.to_string().contains("429"), "{err}");
    assert!(
        err.to_string().contains("es_rejected_execution_exception"),
        "{err}"
    );
    assert_eq!(os.requests().len(), 1, "no checkpoint write");

    // A response that does not account for every item is not taken as success either.
    os.answer(200, bulk_answer(vec![]));
    let err = bounded(index.apply(&revisions, 1))
        .await
        .expect_err("items missing");
    assert!(
        err.to_string().contains("0 items answered for 1 sent"),
        "{err}"
    );
    assert_eq!(os.requests().len(), 2);
}

#[tokio::test]
async fn a_large_batch_goes_out_as_several_bulk_requests_in_order() {
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    let titles: Vec<String> = (0..2_100).map(|n| format!("ad {n}")).collect();
    let titles: Vec<&str> = titles.iter().map(String::as_str).collect();
    let revisions = creates(&titles);
    os.create_all()
        .create_all()
        .create_all()
        .answer(200, checkpoint_written());
    bounded(index.apply(&revisions, 2_100))
        .await
        .expect("apply");
    let requests = os.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/ads/_bulk",
            "/ads/_bulk",
            "/ads/_bulk",
            "/ads/_doc/adledger.checkpoint"
        ]
    );
    let ids: Vec<String> = requests[..3]
        .iter()
        .flat_map(|r| r.lines())
        .filter_map(|line| line["index"]["_id"].as_str().map(str::to_string))
        .collect();
    let sent: Vec<usize> = requests[..3].iter().map(|r| r.lines().len() / 2).collect();
    assert_eq!(sent, vec![1_000, 1_000, 100]);
    let expected: Vec<String> = (1..=2_100).map(ad_id).collect();
    assert_eq!(ids, expected, "journal order across requests");

    // A failure in a later request: the earlier ones stay written (harmless: versioned),
    // the checkpoint is not.
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    os.create_all().answer(
        200,
        bulk_answer(
            (1_001..=2_000)
                .map(|n| item_mapper_error(&ad_id(n)))
                .collect(),
        ),
    );
    let err = bounded(index.apply(&revisions, 2_100))
        .await
        .expect_err("second request failed");
    assert!(
        err.to_string().contains("1000 of 1000 items failed"),
        "{err}"
    );
    assert!(err.to_string().contains("and 997 more"), "{err}");
    assert_eq!(
        os.requests().len(),
        2,
        "stopped at the failure, no checkpoint"
    );
}

#[tokio::test]
async fn apply_of_nothing_only_moves_the_checkpoint() {
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    os.answer(200, checkpoint_written());
    bounded(index.apply(&[], 4)).await.expect("apply");
    let requests = os.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/ads/_doc/adledger.checkpoint");
}

#[tokio::test]
async fn search_is_a_multi_match_with_the_filters_of_the_search_route() {
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    let k = key(1);
    let ad = draft(
        "Vintage red lamp",
        Some("20.00"),
        "furniture",
        &["red", "vintage"],
    )
    .into_ad(&k.publisher_id, &k.ad_id);
    os.answer(
        200,
        json!({
            "took": 4, "timed_out": false,
            "_shards": { "total": 1, "successful": 1, "skipped": 0, "failed": 0 },
            "hits": {
                "total": { "value": 41, "relation": "eq" },
                "max_score": 1.8,
                "hits": [{
                    "_index": "ads", "_id": k.ad_id, "_score": 1.8,
                    "_source": {
                        "adId": k.ad_id, "publisherId": "acme", "version": 2,
                        "status": "live", "title": ad.ad_title, "ad": ad,
                    },
                    "sort": [1.8, k.ad_id]
                }]
            }
        }),
    );
    let query = SearchQuery {
        text: "  red \"lamp ".into(),
        publisher_id: Some("acme".into()),
        category: Some("furniture".into()),
        tag: Some("vintage".into()),
        min_price: Some(Decimal::new(1999, 2)),
        max_price: Some(Decimal::new(25, 0)),
        limit: 10,
        offset: 20,
    };
    let page = bounded(index.search(&query)).await.expect("search");
    assert_eq!(page.total, 41);
    assert_eq!(
        page.ads,
        vec![ad],
        "the stored ad comes back exactly (price 20.00)"
    );

    let requests = os.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/ads/_search")
    );
    let number = |text: &str| Value::Number(serde_json::Number::from_str(text).expect("n"));
    assert_eq!(
        request.json(),
        json!({
            "from": 20,
            "size": 10,
            "track_total_hits": true,
            "query": { "bool": {
                "filter": [
                    { "term": { "status": "live" } },
                    { "term": { "publisherId": "acme" } },
                    { "term": { "categoryExact": "furniture" } },
                    { "term": { "tagExact": "vintage" } },
                    { "range": { "price": { "gte": number("19.99"), "lte": number("25") } } },
                ],
                "must": [{ "multi_match": {
                    "query": "red \"lamp",
                    "fields": ["title", "description", "category", "tags"],
                    "type": "best_fields",
                    "operator": "or",
                } }],
            } },
            "sort": [{ "_score": "desc" }, { "adId": "asc" }],
        })
    );
}

#[tokio::test]
async fn search_without_text_lists_newest_first() {
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    os.answer(
        200,
        json!({ "took": 1, "timed_out": false,
                "hits": { "total": { "value": 0, "relation": "eq" }, "hits": [] } }),
    );
    let page = bounded(index.search(&SearchQuery {
        limit: 25,
        ..SearchQuery::default()
    }))
    .await
    .expect("search");
    assert_eq!((page.total, page.ads.len()), (0, 0));
    let body = os.requests()[0].json();
    assert_eq!(
        body["query"],
        json!({ "bool": { "filter": [{ "term": { "status": "live" } }] } })
    );
    assert_eq!(
        body["sort"],
        json!([{ "createdMs": "desc" }, { "adId": "desc" }])
    );

    // Beyond OpenSearch's result window: the caller's error, and no request.
    let deep = bounded(index.search(&SearchQuery {
        limit: 25,
        offset: 10_000,
        ..SearchQuery::default()
    }))
    .await
    .expect_err("too deep");
    assert!(
        matches!(deep, Error::Invalid { ref field, .. } if field == "cursor"),
        "{deep:?}"
    );
    assert_eq!(os.requests().len(), 1);
}

#[tokio::test]
async fn checkpoint_is_a_realtime_get_of_its_document() {
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    os.answer(
        200,
        json!({ "_index": "ads", "_id": "adledger.checkpoint", "_version": 5,
                "_seq_no": 20, "_primary_term": 1, "found": true,
                "_source": { "status": "checkpoint", "checkpoint": 17 } }),
    )
    .answer(
        404,
        json!({ "_index": "ads", "_id": "adledger.checkpoint", "found": false }),
    )
    .answer(404, index_not_found());
    assert_eq!(bounded(index.checkpoint()).await.expect("stored"), 17);
    assert_eq!(bounded(index.checkpoint()).await.expect("none yet"), 0);
    let err = bounded(index.checkpoint()).await.expect_err("no index");
    assert!(err.to_string().contains("adledger aws init"), "{err}");
    for request in os.requests() {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("GET", "/ads/_doc/adledger.checkpoint")
        );
    }
}

#[tokio::test]
async fn put_overrides_newer_versions_by_delete_and_rewrite() {
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    let (a, b) = (key(1), key(2));
    let state = |k: &AdKey, version: u64, title: Option<&str>| AdState {
        key: k.clone(),
        version,
        sequence: version,
        updated_at: chrono::DateTime::UNIX_EPOCH,
        ad: title.map(|t| sample_ad(k, t)),
    };
    os.answer(
        200,
        bulk_answer(vec![
            item_created(&b.ad_id, 6),
            item_conflict(&a.ad_id, 4, 2),
        ]),
    )
    // The delete of the newer document.
    .answer(
        200,
        json!({ "took": 2, "errors": false, "items": [{ "delete": {
            "_index": "ads", "_id": a.ad_id, "_version": 5, "result": "deleted",
            "_shards": { "total": 2, "successful": 1, "failed": 0 },
            "_seq_no": 3, "_primary_term": 1, "status": 200 } }] }),
    )
    // OpenSearch still remembers the deleted version for a moment…
    .answer(200, bulk_answer(vec![item_conflict(&a.ad_id, 5, 2)]))
    // …then takes the older one.
    .answer(200, bulk_answer(vec![item_created(&a.ad_id, 2)]))
    .answer(200, checkpoint_written());
    let states = [
        state(&a, 9, Some("first, replaced within the call")),
        state(&b, 6, None),
        state(&a, 2, Some("pine desk")),
    ];
    bounded(index.put(&states, Some(5))).await.expect("put");
    assert_eq!(os.unanswered(), 0);

    let requests = os.requests();
    assert_eq!(requests.len(), 5, "{requests:?}");
    let first = requests[0].lines();
    assert_eq!(first.len(), 4, "the last state of each ad only");
    assert_eq!(
        first[0],
        json!({ "index": { "_id": b.ad_id, "version": 6, "version_type": "external_gte" } })
    );
    assert_eq!(first[1]["status"], "deleted");
    assert_eq!(
        first[2],
        json!({ "index": { "_id": a.ad_id, "version": 2, "version_type": "external_gte" } })
    );
    assert_eq!(first[3]["title"], "pine desk");
    assert_eq!(requests[1].path, "/ads/_bulk");
    assert_eq!(
        requests[1].lines(),
        vec![json!({ "delete": { "_id": a.ad_id } })]
    );
    for retry in &requests[2..4] {
        let lines = retry.lines();
        assert_eq!(lines.len(), 2, "only the refused ad is written again");
        assert_eq!(lines[0]["index"]["_id"], a.ad_id.as_str());
    }
    assert_eq!(requests[4].json()["checkpoint"], 5);
}

#[tokio::test]
async fn put_without_checkpoint_leaves_it_alone() {
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    let k = key(1);
    os.answer(200, bulk_answer(vec![item_created(&k.ad_id, 1)]));
    let state = AdState {
        key: k.clone(),
        version: 1,
        sequence: 1,
        updated_at: chrono::DateTime::UNIX_EPOCH,
        ad: Some(sample_ad(&k, "oak chair")),
    };
    bounded(index.put(&[state], None)).await.expect("put");
    assert_eq!(os.requests().len(), 1, "no checkpoint write");
}

#[tokio::test]
async fn clear_drops_and_recreates_the_index() {
    let os = FakeOpenSearch::start().await;
    let index = os.index().await;
    os.answer(200, json!({ "acknowledged": true })).answer(
        200,
        json!({ "acknowledged": true, "shards_acknowledged": true, "index": "ads" }),
    );
    bounded(index.clear()).await.expect("clear");
    // A missing index is already clear.
    os.answer(404, index_not_found()).answer(
        200,
        json!({ "acknowledged": true, "shards_acknowledged": true, "index": "ads" }),
    );
    bounded(index.clear())
        .await
        .expect("clear of a missing index");
    let requests = os.requests();
    let calls: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("DELETE", "/ads"),
            ("PUT", "/ads"),
            ("DELETE", "/ads"),
            ("PUT", "/ads")
        ]
    );
    assert_eq!(requests[1].json(), index_definition());
}

#[tokio::test]
async fn basic_auth_goes_on_every_request() {
    let os = FakeOpenSearch::start().await;
    let settings = os.settings(OpenSearchAuth::Basic {
        username: "admin".into(),
        password: "s3cret:pw".into(),
    });
    assert!(
        !format!("{settings:?}").contains("s3cret"),
        "Debug hides the password"
    );
    let index = bounded(OpenSearchIndex::connect(&settings))
        .await
        .expect("connect");
    os.answer(
        404,
        json!({ "_index": "ads", "_id": "adledger.checkpoint", "found": false }),
    );
    bounded(index.checkpoint()).await.expect("checkpoint");
    let requests = os.requests();
    // base64("admin:s3cret:pw")
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some("Basic YWRtaW46czNjcmV0OnB3")
    );
}

#[tokio::test]
async fn sigv4_signs_every_request_for_the_service_and_region() {
    // Credentials come from the standard chain; `scripts/dynamodb-local.sh` exports
    // static ones. Without them the chain would look for instance metadata.
    if std::env::var("AWS_ACCESS_KEY_ID").map_or(true, |v| v.is_empty()) {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: sigv4_signs_every_request_for_the_service_and_region \
             (AWS_ACCESS_KEY_ID not set; scripts/dynamodb-local.sh sets it)"
        );
        return;
    }
    let os = FakeOpenSearch::start().await;
    let settings = os.settings(OpenSearchAuth::SigV4 {
        service: "es".into(),
        region: Some("eu-west-3".into()),
    });
    let index = bounded(OpenSearchIndex::connect(&settings))
        .await
        .expect("connect");
    os.answer(200, bulk_answer(vec![item_created(&ad_id(1), 0)]))
        .answer(200, checkpoint_written());
    bounded(index.apply(&creates(&["signed"]), 1))
        .await
        .expect("apply");
    let requests = os.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        let authorization = request.authorization.as_deref().unwrap_or_default();
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential="),
            "{authorization}"
        );
        assert!(
            authorization.contains("/eu-west-3/es/aws4_request"),
            "{authorization}"
        );
        // The payload hash is signed too (OpenSearch Serverless requires the header).
        let body_hash = hex::encode(Sha256::digest(request.body.as_bytes()));
        assert_eq!(request.content_sha256.as_deref(), Some(body_hash.as_str()));
    }
}

#[tokio::test]
async fn unreachable_cluster_is_a_backend_error_naming_the_operation() {
    // Bind, note the port, and close: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let settings = OpenSearchSettings {
        url: format!("http://{address}"),
        index: "ads".into(),
        auth: OpenSearchAuth::None,
    };
    let index = bounded(OpenSearchIndex::connect(&settings))
        .await
        .expect("connect");
    let err = bounded(index.checkpoint()).await.expect_err("refused");
    assert!(
        matches!(
            err,
            Error::Backend {
                backend: "opensearch",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("read checkpoint"), "{err}");
}

#[tokio::test]
async fn bad_settings_are_refused_before_any_request() {
    let bad_url = OpenSearchSettings {
        url: "opensearch.example".into(),
        index: "ads".into(),
        auth: OpenSearchAuth::None,
    };
    assert!(bounded(OpenSearchIndex::connect(&bad_url)).await.is_err());
    let bad_index = OpenSearchSettings {
        url: "http://127.0.0.1:9".into(),
        index: "Ads".into(),
        auth: OpenSearchAuth::None,
    };
    let err = bounded(OpenSearchIndex::connect(&bad_index))
        .await
        .expect_err("upper case");
    assert!(err.to_string().contains("index name"), "{err}");
}
