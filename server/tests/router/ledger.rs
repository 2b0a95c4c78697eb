//! Handler tests of the verification routes (`/ledger/digest`, `/ledger/consistency`,
//! `…/ad/{adId}/proof`): the real router over a real local backend in a temporary
//! directory, driven with `tower::ServiceExt::oneshot`.
//!
//! Every proof the routes serve is checked with the engine's public RFC 9162 verifiers,
//! and every proof bundle with the offline verifier of `adledger proof verify`
//! ([`adledger::proof_cmd::verify_bundle`]), so the route and the verifier cannot drift
//! apart. Forged bundles are refused with a reason.

use std::sync::Arc;

use adledger::backend;
use adledger::config::Config;
use adledger::proof_cmd::verify_bundle;
use adledger::verify_cmd::SavedDigest;
use adledger::{AppState, app};
use adledger_engine::merkle::leaf_hash;
use adledger_engine::proof::{ConsistencyProof, verify_consistency};
use adledger_engine::{Hash, Ledger, LedgerOptions};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tower::ServiceExt;

struct TestApp {
    router: Router,
    ledger: Arc<Ledger>,
    _dir: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    content_type: Option<String>,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn ok(&self) -> Value {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }

    /// Asserts a problem document with `status`, naming `field` when given.
    fn problem(&self, status: StatusCode, field: Option<&str>) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/problem+json")
        );
        let problem = self.json();
        assert!(
            problem["detail"].as_str().is_some_and(|d| d.len() > 20),
            "a helpful detail: {problem}"
        );
        if let Some(field) = field {
            assert_eq!(problem["field"], json!(field), "{problem}");
        }
        problem
    }
}

impl TestApp {
    async fn start() -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().join("data"),
            deterministic: Some(7),
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

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Resp {
        let mut request = Request::builder().method(method).uri(path);
        let body = match body {
            Some(v) => {
                request = request.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("infallible router");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        Resp {
            status,
            content_type,
            body,
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    async fn create(&self, publisher: &str, body: Value) -> String {
        let resp = self
            .call(
                Method::POST,
                &format!("/publisher/{publisher}/ad"),
                Some(&body),
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED);
        resp.json()["adId"].as_str().expect("adId").to_string()
    }

    async fn patch(&self, publisher: &str, id: &str, body: Value) {
        let resp = self
            .call(
                Method::PATCH,
                &format!("/publisher/{publisher}/ad/{id}"),
                Some(&body),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK);
    }

    async fn stop(self) {
        self.ledger.shutdown().await;
    }
}

fn hash(value: &Value) -> Hash {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a hash: {value}"))
}

fn saved(digest: &Value) -> SavedDigest {
    SavedDigest {
        sequence: digest["sequence"].as_u64().expect("sequence"),
        root: hash(&digest["root"]),
    }
}

/// Three ads, one updated twice and one (the second returned) deleted: blocks 0..=5.
async fn populated() -> (TestApp, String, String) {
    let t = TestApp::start().await;
    let id = t
        .create(
            "acme",
            json!({"adTitle": "Bike", "price": 19.99, "currency": "EUR", "tags": ["red"]}),
        )
        .await;
    let other = t.create("acme", json!({"adTitle": "Car"})).await;
    t.patch("acme", &id, json!({"price": "21.50"})).await;
    t.create("globex", json!({"adTitle": "Boat"})).await;
    t.patch("acme", &id, json!({"adTitle": "Bike, red"})).await;
    let resp = t
        .call(Method::DELETE, &format!("/publisher/acme/ad/{other}"), None)
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    (t, id, other)
}

#[tokio::test]
async fn digest_is_404_while_empty_then_follows_the_tip() {
    let t = TestApp::start().await;
    t.get("/ledger/digest")
        .await
        .problem(StatusCode::NOT_FOUND, None);
    t.get("/ledger/consistency?from=0")
        .await
        .problem(StatusCode::NOT_FOUND, None);

    let id = t.create("acme", json!({"adTitle": "First"})).await;
    let first = t.get("/ledger/digest").await.ok();
    assert_eq!(first["sequence"], json!(0));
    // One block: the root is its leaf hash, and the tip is that block.
    assert_eq!(hash(&first["root"]), leaf_hash(&hash(&first["tipHash"])));
    assert_eq!(
        first.as_object().map(|o| o.len()),
        Some(3),
        "exactly sequence, root, tipHash: {first}"
    );

    t.patch("acme", &id, json!({"adTitle": "Second"})).await;
    let second = t.get("/ledger/digest").await.ok();
    assert_eq!(second["sequence"], json!(1));
    assert_ne!(second["root"], first["root"]);

    t.get("/ledger/digest?sequence=0")
        .await
        .problem(StatusCode::BAD_REQUEST, Some("sequence"));
    t.stop().await;
}

#[tokio::test]
async fn proof_bundles_verify_offline_and_show_the_revision_as_versions_does() {
    let (t, id, _) = populated().await;
    let digest = t.get("/ledger/digest").await.ok();
    assert_eq!(digest["sequence"], json!(5));
    let versions = t
        .get(&format!("/publisher/acme/ad/{id}?versions=true"))
        .await
        .ok();
    let versions = versions.as_array().expect("array");
    assert_eq!(versions.len(), 3);

    for (v, shown) in versions.iter().enumerate() {
        let bundle = t
            .get(&format!("/publisher/acme/ad/{id}/proof?version={v}"))
            .await
            .ok();
        assert_eq!(&bundle["revision"], shown, "version {v}");
        let block = &bundle["block"];
        assert_eq!(block["sequenceNo"], shown["blockAddress"]["sequenceNo"]);
        // The block hash is SHA-256 of the header bytes; the revision hash of its bytes.
        let header = hex::decode(block["headerBytes"].as_str().expect("hex")).expect("hex");
        let revision = hex::decode(block["revisionBytes"].as_str().expect("hex")).expect("hex");
        assert_eq!(block["hash"], json!(hex::encode(Sha256::digest(&header))));
        assert_eq!(shown["hash"], json!(hex::encode(Sha256::digest(&revision))));
        assert_eq!(block["revisionHashes"][0], shown["hash"]);
        assert_eq!(bundle["digest"], digest, "defaults to the tip");
        assert_eq!(bundle["proof"]["leafIndex"], block["sequenceNo"]);
        assert_eq!(bundle["proof"]["treeSize"], json!(6));

        let proved = verify_bundle(&bundle, None).expect("verifies against itself");
        assert_eq!(proved.version, v as u64);
        assert_eq!(proved.ad_id, id);
        let proved = verify_bundle(&bundle, Some(saved(&digest))).expect("against a saved one");
        assert!(proved.trusted_digest_given);
    }

    // No version: the latest. An earlier digest: a smaller tree that still holds it.
    let latest = t.get(&format!("/publisher/acme/ad/{id}/proof")).await.ok();
    assert_eq!(latest["revision"]["version"], json!(2));
    let early = t
        .get(&format!(
            "/publisher/acme/ad/{id}/proof?version=0&digestSequence=0"
        ))
        .await
        .ok();
    assert_eq!(early["digest"]["sequence"], json!(0));
    assert_eq!(early["proof"]["treeSize"], json!(1));
    assert_eq!(early["proof"]["path"], json!([]));
    verify_bundle(&early, None).expect("a one-block tree");
    let mid = t
        .get(&format!(
            "/publisher/acme/ad/{id}/proof?version=1&digestSequence=3"
        ))
        .await
        .ok();
    let consistency = t.get("/ledger/consistency?from=3&to=3").await.ok();
    assert_eq!(mid["digest"], consistency["from"]);
    verify_bundle(&mid, Some(saved(&consistency["from"]))).expect("under digest 3");
    // ...but not under the tip's digest: the auditor must ask for the size they saved.
    let err = verify_bundle(&mid, Some(saved(&digest))).expect_err("wrong tree size");
    assert!(err.0.contains("digestSequence=5"), "{err}");
    t.stop().await;
}

#[tokio::test]
async fn proof_parameters_are_checked() {
    let (t, id, deleted) = populated().await;
    let base = format!("/publisher/acme/ad/{id}/proof");
    for (query, field) in [
        ("version=abc", "version"),
        ("version=-1", "version"),
        ("version=+1", "version"),
        ("digestSequence=x", "digestSequence"),
        ("digestSequence=6", "digestSequence"),
        ("digestSequence=18446744073709551615", "digestSequence"),
        ("digestSequence=99999999999999999999", "digestSequence"),
        ("version=2&digestSequence=3", "digestSequence"),
        ("versions=true", "versions"),
        ("version=0&version=1", "version"),
    ] {
        t.get(&format!("{base}?{query}"))
            .await
            .problem(StatusCode::BAD_REQUEST, Some(field));
    }
    t.get(&format!("{base}?version=3"))
        .await
        .problem(StatusCode::NOT_FOUND, None);
    t.get(&format!("/publisher/globex/ad/{id}/proof"))
        .await
        .problem(StatusCode::NOT_FOUND, None);
    t.get("/publisher/acme/ad/01ARZ3NDEKTSV4RRFFQ69G5FAV/proof")
        .await
        .problem(StatusCode::NOT_FOUND, None);
    t.get("/publisher/acme/ad/not-an-id/proof")
        .await
        .problem(StatusCode::NOT_FOUND, None);
    // A deleted ad keeps its history, so its revisions, the delete included, stay
    // provable.
    let delete = t
        .get(&format!("/publisher/acme/ad/{deleted}/proof"))
        .await
        .ok();
    assert_eq!(delete["revision"]["event"], json!("AdDeleted"));
    assert_eq!(delete["revision"]["data"], Value::Null);
    verify_bundle(&delete, None).expect("the delete is proved");
    let resp = t.call(Method::POST, &base, None).await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    t.stop().await;
}

#[tokio::test]
async fn consistency_proofs_verify_between_every_pair_and_bad_ranges_are_refused() {
    let (t, _, _) = populated().await;
    for from in 0..=5u64 {
        for to in from..=5u64 {
            let body = t
                .get(&format!("/ledger/consistency?from={from}&to={to}"))
                .await
                .ok();
            assert_eq!(body["from"]["sequence"], json!(from));
            assert_eq!(body["to"]["sequence"], json!(to));
            let proof: ConsistencyProof =
                serde_json::from_value(body["proof"].clone()).expect("a consistency proof");
            assert_eq!((proof.first_size, proof.second_size), (from + 1, to + 1));
            verify_consistency(
                &proof,
                &hash(&body["from"]["root"]),
                &hash(&body["to"]["root"]),
            )
            .unwrap_or_else(|e| panic!("{from}..{to}: {e}"));
        }
    }
    let tip = t.get("/ledger/digest").await.ok();
    let defaulted = t.get("/ledger/consistency?from=2").await.ok();
    assert_eq!(defaulted["to"], tip);

    for (query, field) in [
        ("", "from"),
        ("to=3", "from"),
        ("from=4&to=3", "from"),
        ("from=0&to=6", "to"),
        ("from=x", "from"),
        ("from=0&limit=3", "limit"),
    ] {
        t.get(&format!("/ledger/consistency?{query}"))
            .await
            .problem(StatusCode::BAD_REQUEST, Some(field));
    }
    t.stop().await;
}

/// Applies `edit` to a copy of `bundle` and expects the offline verifier to refuse it
/// with a reason containing `why`.
fn refused(bundle: &Value, trusted: Option<SavedDigest>, why: &str, edit: impl Fn(&mut Value)) {
    let mut forged = bundle.clone();
    edit(&mut forged);
    let err = verify_bundle(&forged, trusted).expect_err(why);
    assert!(err.0.contains(why), "expected {why:?} in: {err}");
}

/// Flips the low bit of the byte at `at` of a hex string member.
fn flip_hex(value: &mut Value, at: usize) {
    let mut bytes = hex::decode(value.as_str().expect("hex")).expect("hex");
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x01;
    *value = json!(hex::encode(bytes));
}

#[tokio::test]
async fn forged_bundles_are_refused_with_a_reason() {
    let (t, id, _) = populated().await;
    let bundle = t
        .get(&format!("/publisher/acme/ad/{id}/proof?version=1"))
        .await
        .ok();
    let digest = saved(&bundle["digest"]);
    verify_bundle(&bundle, Some(digest)).expect("the honest bundle verifies");

    // The shown revision must be what the bytes say.
    refused(&bundle, None, "revision.data.price", |b| {
        b["revision"]["data"]["price"] = json!(1);
    });
    refused(&bundle, None, "revision.version", |b| {
        b["revision"]["version"] = json!(0);
    });
    // Altered bytes: the revision no longer matches its header, the header its hash.
    let price_at = {
        let bytes =
            hex::decode(bundle["block"]["revisionBytes"].as_str().expect("hex")).expect("hex");
        bytes.len() / 2
    };
    refused(&bundle, None, "not the bytes that were committed", |b| {
        flip_hex(&mut b["block"]["revisionBytes"], price_at);
    });
    refused(&bundle, None, "block.hash says", |b| {
        flip_hex(&mut b["block"]["headerBytes"], 1000);
    });
    refused(&bundle, None, "points at revision 1", |b| {
        b["block"]["revisionIndex"] = json!(1);
    });
    // A consistent forgery of the header: it must still lead to the trusted root.
    refused(&bundle, None, "the proof is for leaf", |b| {
        b["proof"]["leafIndex"] = json!(0);
    });
    refused(&bundle, None, "is not under the digest", |b| {
        flip_hex(&mut b["proof"]["path"][0], 0);
    });
    refused(&bundle, None, "is not under the digest", |b| {
        let path = b["proof"]["path"].as_array_mut().expect("path");
        path.swap(0, 1);
    });
    refused(&bundle, None, "is not under the digest", |b| {
        b["proof"]["path"].as_array_mut().expect("path").pop();
    });
    refused(&bundle, None, "is not under the digest", |b| {
        flip_hex(&mut b["digest"]["root"], 0);
    });
    refused(&bundle, None, "the proof is for a tree of 7 blocks", |b| {
        b["proof"]["treeSize"] = json!(7);
    });
    refused(&bundle, None, "not a proof bundle", |b| {
        b["proof"] = json!("trust me");
    });
    // Against the auditor's own saved digest: a different root at the same sequence is a
    // rewritten history, and the bundle's own digest does not matter.
    let mut rewritten = digest;
    rewritten.root.0[0] ^= 0x80;
    refused(&bundle, Some(rewritten), "not the one you saved", |_| {});
    refused(&bundle, Some(digest), "is not under the digest", |b| {
        flip_hex(&mut b["proof"]["path"][1], 3);
    });
    t.stop().await;
}
