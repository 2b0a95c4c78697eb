//! Handler-level tests: the real router (`adledger::app`) over a real local backend in a
//! temporary directory, driven with `tower::ServiceExt::oneshot` — no socket, no mocks.
//!
//! One flow test walks an ad through its life; then one test per error status of
//! docs/HTTP.md checks the status and the RFC 9457 problem document.

use std::sync::Arc;

use adledger::backend;
use adledger::config::Config;
use adledger::{AppState, app};
use adledger_engine::{Ledger, LedgerOptions};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A router over a fresh data directory, with the deterministic clock and ids.
struct TestApp {
    router: Router,
    ledger: Arc<Ledger>,
    _dir: tempfile::TempDir,
}

/// One response, fully read.
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn expect(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "body: {}", self.text());
        self
    }

    /// Asserts an RFC 9457 problem with this status, for the request at `path`.
    fn problem(&self, status: StatusCode, path: &str) -> Value {
        self.expect(status);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{status}: {}",
            self.text()
        );
        let problem = self.json();
        assert_eq!(problem["status"], json!(status.as_u16()), "{problem}");
        assert!(
            problem["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("/problems/"))
        );
        assert!(problem["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(
            problem["detail"].as_str().is_some_and(|d| d.len() > 10),
            "a helpful detail: {problem}"
        );
        assert_eq!(problem["instance"], json!(path), "{problem}");
        let request_id = self.header("x-request-id").expect("x-request-id echoed");
        assert_eq!(problem["requestId"], json!(request_id), "{problem}");
        problem
    }
}

impl TestApp {
    async fn start() -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().join("data"),
            deterministic: Some(42),
            ..Config::default()
        };
        let ports = backend::open(&config).expect("open the local backend");
        let ledger = Arc::new(
            Ledger::open(ports, LedgerOptions::default())
                .await
                .expect("open the ledger"),
        );
        TestApp {
            router: app(AppState::new(ledger.clone())),
            ledger,
            _dir: dir,
        }
    }

    async fn send(&self, request: Request<Body>) -> Resp {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("read the body");
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Body) -> Resp {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(body).expect("a valid request"))
            .await
    }

    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, &[], Body::empty()).await
    }

    async fn json(&self, method: Method, path: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.call(method, path, &all, Body::from(body.to_string()))
            .await
    }

    async fn create(&self, publisher: &str, body: &str) -> Value {
        let path = format!("/publisher/{publisher}/ad");
        let resp = self.json(Method::POST, &path, body, &[]).await;
        resp.expect(StatusCode::CREATED);
        resp.json()
    }

    async fn stop(self) {
        self.ledger.shutdown().await;
    }
}

fn id_of(ad: &Value) -> String {
    ad["adId"].as_str().expect("adId").to_string()
}

#[tokio::test]
async fn ad_lifecycle_create_get_patch_versions_delete_gone() {
    let t = TestApp::start().await;

    // Create: 201, Location, ETag "0", X-Ledger-Sequence; the price keeps its digits.
    let body = r#"{"adTitle":" awesome title ","adDescription":"awesome description",
        "price":19.99,"currency":"","category":"awesome category",
        "tags":["awesome","category","awesome"]}"#;
    let resp = t.json(Method::POST, "/publisher/acme/ad", body, &[]).await;
    resp.expect(StatusCode::CREATED);
    assert!(resp.text().contains(r#""price":19.99"#), "{}", resp.text());
    let ad = resp.json();
    let id = id_of(&ad);
    let path = format!("/publisher/acme/ad/{id}");
    assert_eq!(id.len(), 26);
    assert_eq!(resp.header("location"), Some(path.as_str()));
    assert_eq!(resp.header("etag"), Some("\"0\""));
    assert_eq!(resp.header("x-ledger-sequence"), Some("0"));
    assert!(resp.header("x-request-id").is_some());
    assert_eq!(ad["publisherId"], json!("acme"));
    assert_eq!(ad["adTitle"], json!("awesome title"));
    assert_eq!(ad["tags"], json!(["awesome", "category"]));
    assert_eq!(ad["version"], json!(0));
    assert_eq!(ad["updatedAt"], json!("2020-01-01T00:00:00.000Z"));

    // Get: the same ad with its ETag; If-None-Match → 304.
    let resp = t.get(&path).await;
    resp.expect(StatusCode::OK);
    assert_eq!(resp.json(), ad);
    assert_eq!(resp.header("etag"), Some("\"0\""));
    let resp = t
        .call(
            Method::GET,
            &path,
            &[("if-none-match", "\"0\"")],
            Body::empty(),
        )
        .await;
    resp.expect(StatusCode::NOT_MODIFIED);
    assert!(resp.body.is_empty());

    // Patch with If-Match: absent fields stay, null clears.
    let resp = t
        .json(
            Method::PATCH,
            &path,
            r#"{"price":"350.50","category":null}"#,
            &[("if-match", "\"0\"")],
        )
        .await;
    resp.expect(StatusCode::OK);
    assert!(resp.text().contains(r#""price":350.50"#), "{}", resp.text());
    let patched = resp.json();
    assert_eq!(patched["version"], json!(1));
    assert_eq!(patched["category"], json!(""));
    assert_eq!(patched["adTitle"], json!("awesome title"));
    assert_eq!(resp.header("etag"), Some("\"1\""));
    assert_eq!(resp.header("x-ledger-sequence"), Some("1"));

    // The list sees the write (read-your-writes).
    let resp = t.get("/publisher/acme/ad").await;
    resp.expect(StatusCode::OK);
    assert_eq!(resp.json(), json!([patched]));

    // Delete: 204, then 410 for reads and writes.
    let resp = t.call(Method::DELETE, &path, &[], Body::empty()).await;
    resp.expect(StatusCode::NO_CONTENT);
    assert_eq!(resp.header("x-ledger-sequence"), Some("2"));
    t.get(&path).await.problem(StatusCode::GONE, &path);
    assert_eq!(t.get("/publisher/acme/ad").await.json(), json!([]));

    // History stays: oldest first, the delete included, QLDB-shaped.
    let resp = t.get(&format!("{path}?versions=true")).await;
    resp.expect(StatusCode::OK);
    let revisions = resp.json();
    let revisions = revisions.as_array().expect("array");
    assert_eq!(revisions.len(), 3);
    let events: Vec<&str> = revisions
        .iter()
        .map(|r| r["event"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(events, ["AdCreated", "AdUpdated", "AdDeleted"]);
    for (i, rev) in revisions.iter().enumerate() {
        assert_eq!(rev["version"], json!(i));
        assert_eq!(rev["metadata"]["version"], json!(i));
        assert_eq!(rev["metadata"]["id"], json!(id));
        assert_eq!(rev["metadata"]["publisherId"], json!("acme"));
        assert_eq!(rev["blockAddress"]["strandId"], json!("adledger-0"));
        assert_eq!(rev["blockAddress"]["sequenceNo"], json!(i));
        assert_eq!(rev["txTime"], rev["metadata"]["txTime"]);
        let hash = rev["hash"].as_str().unwrap_or_default();
        assert!(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()));
    }
    assert_eq!(revisions[0]["data"]["price"], json!(19.99));
    assert_eq!(revisions[2]["data"], Value::Null);

    // As of the first revision's time: version 0; as of now: gone.
    let first = revisions[0]["txTime"].as_str().unwrap_or_default();
    let resp = t.get(&format!("{path}?asOf={first}")).await;
    resp.expect(StatusCode::OK);
    assert_eq!(resp.json(), ad);
    let resp = t.get(&format!("{path}?asOf=2030-01-01T00:00:00Z")).await;
    resp.problem(StatusCode::GONE, &path);
    let resp = t.get(&format!("{path}?asOf=2019-01-01T00:00:00Z")).await;
    resp.problem(StatusCode::NOT_FOUND, &path);
    t.stop().await;
}

#[tokio::test]
async fn malformed_json_is_400_with_line_and_column() {
    let t = TestApp::start().await;
    let path = "/publisher/acme/ad";
    let resp = t
        .json(Method::POST, path, "{\n  \"adTitle\": \"t\",\n}", &[])
        .await;
    let problem = resp.problem(StatusCode::BAD_REQUEST, path);
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("line 3 column 1"), "{detail}");
    t.json(Method::POST, path, "", &[])
        .await
        .problem(StatusCode::BAD_REQUEST, path);
    t.stop().await;
}

#[tokio::test]
async fn body_over_64_kib_is_413() {
    let t = TestApp::start().await;
    let path = "/publisher/acme/ad";
    let big = format!(
        r#"{{"adTitle":"t","adDescription":"{}"}}"#,
        "d".repeat(65 * 1024)
    );
    // With a Content-Length, refused before the handler.
    let resp = t
        .call(
            Method::POST,
            path,
            &[
                ("content-type", "application/json"),
                ("content-length", &big.len().to_string()),
            ],
            Body::from(big.clone()),
        )
        .await;
    resp.problem(StatusCode::PAYLOAD_TOO_LARGE, path);
    // Streamed without a length, refused while reading.
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .as_bytes()
        .chunks(8 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let resp = t
        .call(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            Body::from_stream(futures::stream::iter(chunks)),
        )
        .await;
    resp.problem(StatusCode::PAYLOAD_TOO_LARGE, path);
    assert_eq!(t.get(path).await.json(), json!([]));
    t.stop().await;
}

#[tokio::test]
async fn non_json_content_type_is_415() {
    let t = TestApp::start().await;
    let path = "/publisher/acme/ad";
    for headers in [vec![("content-type", "text/plain")], vec![]] {
        let resp = t
            .call(
                Method::POST,
                path,
                &headers,
                Body::from(r#"{"adTitle":"t"}"#),
            )
            .await;
        resp.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, path);
    }
    let resp = t
        .call(
            Method::POST,
            path,
            &[(
                "content-type",
                "application/merge-patch+json; charset=utf-8",
            )],
            Body::from(r#"{"adTitle":"t"}"#),
        )
        .await;
    resp.expect(StatusCode::CREATED);
    t.stop().await;
}

#[tokio::test]
async fn invalid_field_is_422_naming_it() {
    let t = TestApp::start().await;
    let path = "/publisher/acme/ad";
    for (body, field) in [
        (r#"{"adTitle":"t","tags":["ok",""]}"#, "tags[1]"),
        (r#"{"adTitle":"t","price":-1}"#, "price"),
        (r#"{"adTitel":"t"}"#, "adTitel"),
        (r#"{"adDescription":"no title"}"#, "adTitle"),
        ("[1]", "body"),
    ] {
        let resp = t.json(Method::POST, path, body, &[]).await;
        let problem = resp.problem(StatusCode::UNPROCESSABLE_ENTITY, path);
        assert_eq!(problem["field"], json!(field), "{body}: {problem}");
        assert_eq!(problem["type"], json!("/problems/invalid-field"));
    }
    let resp = t
        .json(Method::POST, path, r#"{"adTitle":"t","price":-1}"#, &[])
        .await;
    assert_eq!(
        resp.json()["detail"],
        json!("invalid `price`: must be zero or more, got -1")
    );
    // A publisher id that cannot exist, on a create.
    let bad = "/publisher/bad!id/ad";
    let problem = t
        .json(Method::POST, bad, r#"{"adTitle":"t"}"#, &[])
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, bad);
    assert_eq!(problem["field"], json!("publisherId"));
    // The same key with a different body.
    let keyed = [("idempotency-key", "k-1")];
    t.json(Method::POST, path, r#"{"adTitle":"a"}"#, &keyed)
        .await
        .expect(StatusCode::CREATED);
    let problem = t
        .json(Method::POST, path, r#"{"adTitle":"b"}"#, &keyed)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, path);
    assert_eq!(problem["field"], json!("Idempotency-Key"));
    t.stop().await;
}

#[tokio::test]
async fn unknown_ad_route_or_publisher_is_404() {
    let t = TestApp::start().await;
    let ad = t.create("acme", r#"{"adTitle":"mine"}"#).await;
    let id = id_of(&ad);
    for path in [
        "/publisher/acme/ad/01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string(),
        "/publisher/acme/ad/01ARZ3NDEKTSV4RRFFQ69G5FAV?versions=true".to_string(),
        "/publisher/acme/ad/not-a-ulid".to_string(),
        format!("/publisher/globex/ad/{id}"),
        format!("/publisher/bad!id/ad/{id}"),
        "/publisher/bad!id/ad".to_string(),
        "/nope".to_string(),
        format!("/publisher/acme/ad/{id}/extra"),
    ] {
        let resp = t.get(&path).await;
        let instance = path.split('?').next().unwrap_or_default();
        resp.problem(StatusCode::NOT_FOUND, instance);
    }
    let other = format!("/publisher/globex/ad/{id}");
    t.json(Method::PATCH, &other, r#"{"adTitle":"stolen"}"#, &[])
        .await
        .problem(StatusCode::NOT_FOUND, &other);
    t.call(Method::DELETE, &other, &[], Body::empty())
        .await
        .problem(StatusCode::NOT_FOUND, &other);
    assert_eq!(t.get(&format!("/publisher/acme/ad/{id}")).await.json(), ad);
    t.stop().await;
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let t = TestApp::start().await;
    for (method, path) in [
        (Method::PUT, "/publisher/acme/ad"),
        (
            Method::POST,
            "/publisher/acme/ad/01ARZ3NDEKTSV4RRFFQ69G5FAV",
        ),
        (Method::DELETE, "/search"),
        (Method::POST, "/healthz"),
    ] {
        let resp = t.call(method.clone(), path, &[], Body::empty()).await;
        resp.problem(StatusCode::METHOD_NOT_ALLOWED, path);
        let allow = resp.header("allow").unwrap_or_default();
        assert!(allow.contains("GET"), "{method} {path}: Allow {allow:?}");
    }
    t.stop().await;
}

#[tokio::test]
async fn stale_if_match_is_412_and_malformed_if_match_is_400() {
    let t = TestApp::start().await;
    let ad = t.create("acme", r#"{"adTitle":"t"}"#).await;
    let path = format!("/publisher/acme/ad/{}", id_of(&ad));
    t.json(
        Method::PATCH,
        &path,
        r#"{"adTitle":"v1"}"#,
        &[("if-match", "W/\"0\"")],
    )
    .await
    .expect(StatusCode::OK);
    for stale in ["\"0\"", "0", "\"9\""] {
        let resp = t
            .json(
                Method::PATCH,
                &path,
                r#"{"adTitle":"x"}"#,
                &[("if-match", stale)],
            )
            .await;
        let problem = resp.problem(StatusCode::PRECONDITION_FAILED, &path);
        assert_eq!(problem["type"], json!("/problems/precondition-failed"));
    }
    t.call(
        Method::DELETE,
        &path,
        &[("if-match", "\"0\"")],
        Body::empty(),
    )
    .await
    .problem(StatusCode::PRECONDITION_FAILED, &path);
    for malformed in ["abc", "\"abc\"", "\"1\", \"2\""] {
        let resp = t
            .json(
                Method::PATCH,
                &path,
                r#"{"adTitle":"x"}"#,
                &[("if-match", malformed)],
            )
            .await;
        let problem = resp.problem(StatusCode::BAD_REQUEST, &path);
        assert_eq!(problem["field"], json!("If-Match"));
    }
    t.json(
        Method::PATCH,
        &path,
        r#"{"adTitle":"v2"}"#,
        &[("if-match", "*")],
    )
    .await
    .expect(StatusCode::OK);
    let current = t.get(&path).await.json();
    assert_eq!(current["version"], json!(2));
    assert_eq!(current["adTitle"], json!("v2"));
    t.stop().await;
}

#[tokio::test]
async fn deleted_ad_is_410_for_reads_and_writes() {
    let t = TestApp::start().await;
    let ad = t.create("acme", r#"{"adTitle":"t"}"#).await;
    let path = format!("/publisher/acme/ad/{}", id_of(&ad));
    t.call(Method::DELETE, &path, &[], Body::empty())
        .await
        .expect(StatusCode::NO_CONTENT);
    let problem = t.get(&path).await.problem(StatusCode::GONE, &path);
    assert_eq!(problem["type"], json!("/problems/gone"));
    t.json(Method::PATCH, &path, r#"{"adTitle":"zombie"}"#, &[])
        .await
        .problem(StatusCode::GONE, &path);
    t.call(Method::DELETE, &path, &[], Body::empty())
        .await
        .problem(StatusCode::GONE, &path);
    t.stop().await;
}

#[tokio::test]
async fn bad_query_parameters_and_headers_are_400_naming_them() {
    let t = TestApp::start().await;
    let ad = t.create("acme", r#"{"adTitle":"t"}"#).await;
    let ad_path = format!("/publisher/acme/ad/{}", id_of(&ad));
    let cases = [
        ("/publisher/acme/ad?limit=0".to_string(), "limit"),
        ("/publisher/acme/ad?limit=1001".to_string(), "limit"),
        ("/publisher/acme/ad?cursor=garbage".to_string(), "cursor"),
        ("/publisher/acme/ad?limt=5".to_string(), "limt"),
        ("/search?limit=101".to_string(), "limit"),
        ("/search?minPrice=abc".to_string(), "minPrice"),
        ("/search?cursor=-1".to_string(), "cursor"),
        ("/search?cursor=10001".to_string(), "cursor"),
        ("/search?q=a&q=b".to_string(), "q"),
        (format!("{ad_path}?asOf=yesterday"), "asOf"),
        (format!("{ad_path}?versions=true&from=2020-01-01"), "from"),
        (format!("{ad_path}?versions=maybe"), "versions"),
    ];
    for (path, field) in &cases {
        let instance = path.split('?').next().unwrap_or_default();
        let problem = t.get(path).await.problem(StatusCode::BAD_REQUEST, instance);
        assert_eq!(problem["field"], json!(field), "{path}: {problem}");
    }
    for key in ["", "has space"] {
        let problem = t
            .json(
                Method::POST,
                "/publisher/acme/ad",
                r#"{"adTitle":"t"}"#,
                &[("idempotency-key", key)],
            )
            .await
            .problem(StatusCode::BAD_REQUEST, "/publisher/acme/ad");
        assert_eq!(problem["field"], json!("Idempotency-Key"));
    }
    t.stop().await;
}

#[tokio::test]
async fn list_pages_with_a_link_header() {
    let t = TestApp::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let ad = t
            .create("acme", &format!(r#"{{"adTitle":"ad {i}"}}"#))
            .await;
        ids.push(id_of(&ad));
    }
    t.create("globex", r#"{"adTitle":"other"}"#).await;
    let mut seen = Vec::new();
    let mut next = Some("/publisher/acme/ad?limit=2".to_string());
    while let Some(path) = next.take() {
        let resp = t.get(&path).await;
        resp.expect(StatusCode::OK);
        for ad in resp.json().as_array().expect("array") {
            seen.push(id_of(ad));
        }
        next = resp.header("link").map(|link| {
            assert!(link.ends_with(">; rel=\"next\""), "{link}");
            link.trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or_default()
                .to_string()
        });
    }
    assert_eq!(seen, ids, "every ad once, ordered by id");
    t.stop().await;
}

#[tokio::test]
async fn search_filters_pages_and_the_seed_search() {
    let t = TestApp::start().await;
    t.create(
        "acme",
        r#"{"adTitle":"red bike","price":19.99,"category":"bikes","tags":["red"]}"#,
    )
    .await;
    t.create(
        "acme",
        r#"{"adTitle":"blue bike","price":"350.50","category":"bikes","tags":["blue"]}"#,
    )
    .await;
    t.create(
        "globex",
        r#"{"adTitle":"old sofa","price":5,"category":"home"}"#,
    )
    .await;

    let resp = t.get("/search?q=bike&limit=1").await;
    resp.expect(StatusCode::OK);
    let page = resp.json();
    assert_eq!(page["total"], json!(2));
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["items"][0]["version"], json!(0));
    assert_eq!(page["nextCursor"], json!("1"));
    let page2 = t.get("/search?q=bike&limit=1&cursor=1").await.json();
    assert_eq!(page2["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page2["nextCursor"], Value::Null);
    assert_ne!(page["items"][0]["adId"], page2["items"][0]["adId"]);

    let resp = t.get("/search?minPrice=19.99&maxPrice=20").await;
    let page = resp.json();
    assert_eq!(page["total"], json!(1), "{page}");
    assert!(resp.text().contains(r#""price":19.99"#), "{}", resp.text());
    let page = t
        .get("/search?category=home&publisherId=globex")
        .await
        .json();
    assert_eq!(page["items"][0]["adTitle"], json!("old sofa"), "{page}");
    let page = t.get("/search?tag=blue").await.json();
    assert_eq!(page["items"][0]["adTitle"], json!("blue bike"), "{page}");

    let all = t.get("/?q=").await;
    all.expect(StatusCode::OK);
    assert_eq!(all.json().as_array().map(Vec::len), Some(3));
    let bikes = t.get("/?q=sofa").await.json();
    assert_eq!(bikes.as_array().map(Vec::len), Some(1));
    t.stop().await;
}

#[tokio::test]
async fn idempotent_create_replays_the_same_ad() {
    let t = TestApp::start().await;
    let key = [("idempotency-key", "retry-me")];
    let first = t
        .json(
            Method::POST,
            "/publisher/acme/ad",
            r#"{"adTitle":"t"}"#,
            &key,
        )
        .await;
    first.expect(StatusCode::CREATED);
    assert_eq!(first.header("idempotency-replayed"), None);
    let again = t
        .json(
            Method::POST,
            "/publisher/acme/ad",
            r#"{"adTitle":"t"}"#,
            &key,
        )
        .await;
    again.expect(StatusCode::CREATED);
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    assert_eq!(again.json(), first.json());
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(
        t.get("/publisher/acme/ad")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    t.stop().await;
}

#[tokio::test]
async fn patch_that_changes_nothing_appends_nothing() {
    let t = TestApp::start().await;
    let ad = t.create("acme", r#"{"adTitle":"t","price":1}"#).await;
    let path = format!("/publisher/acme/ad/{}", id_of(&ad));
    let resp = t.json(Method::PATCH, &path, r#"{"price":1}"#, &[]).await;
    resp.expect(StatusCode::OK);
    assert_eq!(resp.json(), ad);
    assert_eq!(resp.header("x-ledger-sequence"), Some("0"));
    let history = t.get(&format!("{path}?versions=true")).await.json();
    assert_eq!(history.as_array().map(Vec::len), Some(1));
    t.stop().await;
}

#[tokio::test]
async fn request_id_is_kept_and_healthz_reports_progress() {
    let t = TestApp::start().await;
    let resp = t
        .call(
            Method::GET,
            "/nope",
            &[("x-request-id", "trace-me-42")],
            Body::empty(),
        )
        .await;
    assert_eq!(resp.header("x-request-id"), Some("trace-me-42"));
    assert_eq!(resp.json()["requestId"], json!("trace-me-42"));

    t.create("acme", r#"{"adTitle":"t"}"#).await;
    let resp = t.get("/healthz").await;
    resp.expect(StatusCode::OK);
    let health = resp.json();
    assert_eq!(health["status"], json!("ok"));
    assert_eq!(health["journal"]["blocks"], json!(1));
    assert!(health["projections"]["state"].is_u64());
    assert!(health["projections"]["search"].is_u64());
    t.stop().await;
}

#[tokio::test]
async fn writes_after_shutdown_are_503_with_retry_after() {
    let t = TestApp::start().await;
    t.ledger.shutdown().await;
    let path = "/publisher/acme/ad";
    let resp = t.json(Method::POST, path, r#"{"adTitle":"t"}"#, &[]).await;
    resp.problem(StatusCode::SERVICE_UNAVAILABLE, path);
    assert_eq!(resp.header(header::RETRY_AFTER.as_str()), Some("1"));
}
