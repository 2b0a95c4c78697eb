//! Property tests of the request-body path: arbitrary bytes, and arbitrary JSON shaped like
//! an ad (known and unknown fields, any value types, huge and odd numbers, long strings),
//! sent as creates and patches through the real router over the in-memory backend. Whatever
//! arrives, the answer is a 2xx with an ad or a 4xx problem document — never a 5xx, never a
//! panic — and an answer that says "created" describes an ad that can be read back.

use std::sync::Arc;

use adledger::config::{BackendKind, Config};
use adledger::{AppState, app, backend};
use adledger_engine::{Ledger, LedgerOptions};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

/// One router for every case of a property (a fresh ledger per case would dominate).
fn router(rt: &tokio::runtime::Runtime) -> Router {
    rt.block_on(async {
        let config = Config {
            backend: BackendKind::Memory,
            deterministic: Some(7),
            ..Config::default()
        };
        let ports = backend::open(&config).expect("open the memory backend");
        let ledger = Ledger::open(ports, LedgerOptions::default())
            .await
            .expect("open the ledger");
        app(AppState::new(Arc::new(ledger)))
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Sends `body` and returns the status and the parsed JSON answer (every answer is JSON).
fn send(
    rt: &tokio::runtime::Runtime,
    router: &Router,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    rt.block_on(async {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: the answer is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    })
}

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[0-9]{1,40}(\\.[0-9]{1,40})?(e[+-]?[0-9]{1,4})?"
            .prop_map(|n| { serde_json::from_str::<Value>(&n).unwrap_or(Value::String(n)) }),
        ".{0,40}".prop_map(Value::String),
        proptest::collection::vec(any::<char>(), 0..300)
            .prop_map(|c| Value::String(c.into_iter().collect())),
    ];
    leaf.prop_recursive(3, 48, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..70).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An object with some of an ad's fields (and maybe an unknown one), any values.
fn ad_shaped() -> impl Strategy<Value = Value> {
    const FIELDS: [&str; 9] = [
        "adTitle",
        "adDescription",
        "price",
        "currency",
        "category",
        "tags",
        "adId",
        "publisherId",
        "unknownField",
    ];
    proptest::collection::vec((proptest::sample::select(&FIELDS[..]), any_json()), 0..8).prop_map(
        |pairs| {
            Value::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<Map<_, _>>(),
            )
        },
    )
}

fn check(status: StatusCode, answer: &Value, what: &str) {
    assert!(
        status.is_success() || status.is_client_error(),
        "{what}: {status} {answer}"
    );
    if status.is_client_error() {
        assert_eq!(answer["status"], json!(status.as_u16()), "{what}: {answer}");
        assert!(answer["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_get_a_5xx(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let rt = runtime();
        let router = router(&rt);
        let (status, answer) = send(&rt, &router, Method::POST, "/publisher/acme/ad", body.clone());
        check(status, &answer, "create");
        let (status, answer) = send(&rt, &router, Method::PATCH, "/publisher/acme/ad/01ARZ3NDEKTSV4RRFFQ69G5FAV", body);
        check(status, &answer, "patch");
    }

    #[test]
    fn ad_shaped_json_is_created_exactly_or_refused(body in ad_shaped(), patch in ad_shaped()) {
        let rt = runtime();
        let router = router(&rt);
        let bytes = serde_json::to_vec(&body).expect("json");
        let (status, created) = send(&rt, &router, Method::POST, "/publisher/acme/ad", bytes);
        check(status, &created, "create");
        if status == StatusCode::CREATED {
            let id = created["adId"].as_str().expect("adId").to_string();
            let path = format!("/publisher/acme/ad/{id}");
            let (read_status, read) = send(&rt, &router, Method::GET, &path, Vec::new());
            prop_assert_eq!(read_status, StatusCode::OK);
            prop_assert_eq!(&read, &created, "the ad reads back as it was answered");
            let (status, patched) = send(&rt, &router, Method::PATCH, &path, serde_json::to_vec(&patch).expect("json"));
            check(status, &patched, "patch");
        }
    }
}
