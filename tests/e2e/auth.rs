//! Caller identity with the real binary: per-publisher authorization of writes with
//! `--auth hs256`, and the actor recorded in the journal.
//!
//! `hs256` runs on every backend (the actor must be recorded and shown the same way on
//! each); the modes and the start-up rule are in `auth_modes.rs`, `jwks` in
//! `auth_jwks.rs`. Tokens come from `adledger dev-token`, as a developer would get them.

use crate::support::identity::{challenge, claims, dev_token, hs256_server, hs256_with, send};
use crate::support::{Backend, per_backend, run_cli, seed_create_body};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// The whole per-publisher rule on one backend: 401 without a token, 403 for another
/// publisher on POST, PATCH and DELETE, 2xx for one's own, reads public, and the actor in
/// `?versions=true` and inside the proof's hashed header bytes.
async fn hs256_tokens_authorize_writes_and_record_the_actor(backend: Backend) {
    let (server, _dir, file) = hs256_server(backend, &[]).await;
    let alice = dev_token(&file, "alice", &["--publisher", "acme"]).await;
    let mallory = dev_token(&file, "mallory", &["--publisher", "other"]).await;
    let body = seed_create_body();

    let anonymous = send(
        &server,
        Method::POST,
        "/publisher/acme/ad",
        None,
        Some(&body),
    )
    .await;
    anonymous.expect_problem(StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&anonymous), "Bearer realm=\"adledger\"");
    let garbage = send(
        &server,
        Method::POST,
        "/publisher/acme/ad",
        Some("x.y.z"),
        Some(&body),
    )
    .await;
    garbage.expect_problem(StatusCode::UNAUTHORIZED);
    assert!(challenge(&garbage).contains("error=\"invalid_token\""));

    let created = send(
        &server,
        Method::POST,
        "/publisher/acme/ad",
        Some(&alice),
        Some(&body),
    )
    .await;
    created.expect_status(StatusCode::CREATED);
    let ad_id = created.json()["adId"].as_str().expect("adId").to_string();
    let ad_path = format!("/publisher/acme/ad/{ad_id}");

    let forbidden = send(
        &server,
        Method::POST,
        "/publisher/acme/ad",
        Some(&mallory),
        Some(&body),
    )
    .await;
    forbidden.expect_problem(StatusCode::FORBIDDEN);
    assert!(challenge(&forbidden).contains("insufficient_scope"));
    let patch = json!({"adTitle": "stolen"});
    send(
        &server,
        Method::PATCH,
        &ad_path,
        Some(&mallory),
        Some(&patch),
    )
    .await
    .expect_problem(StatusCode::FORBIDDEN);
    send(&server, Method::DELETE, &ad_path, Some(&mallory), None)
        .await
        .expect_problem(StatusCode::FORBIDDEN);
    send(&server, Method::PATCH, &ad_path, None, Some(&patch))
        .await
        .expect_problem(StatusCode::UNAUTHORIZED);
    // Another publisher's token writes its own publisher.
    send(
        &server,
        Method::POST,
        "/publisher/other/ad",
        Some(&mallory),
        Some(&body),
    )
    .await
    .expect_status(StatusCode::CREATED);

    // Nothing refused was written: the ad is still at version 0 with its title.
    let read = server.get(&ad_path).await;
    read.expect_status(StatusCode::OK);
    assert_eq!(read.json()["adTitle"], body["adTitle"], "reads are public");

    send(
        &server,
        Method::PATCH,
        &ad_path,
        Some(&alice),
        Some(&json!({"adTitle": "mine"})),
    )
    .await
    .expect_status(StatusCode::OK);
    let versions = server.get(&format!("{ad_path}?versions=true")).await;
    versions.expect_status(StatusCode::OK);
    let versions = versions.json();
    let versions = versions.as_array().expect("array");
    assert_eq!(versions.len(), 2);
    for revision in versions {
        assert_eq!(
            revision["metadata"]["actor"],
            json!({"sub": "alice", "iss": "adledger"}),
            "{revision}"
        );
    }

    let proof = server.get(&format!("{ad_path}/proof")).await;
    proof.expect_status(StatusCode::OK);
    let bundle = proof.json();
    let header = hex::decode(
        bundle["block"]["headerBytes"]
            .as_str()
            .expect("headerBytes"),
    )
    .expect("hex");
    assert!(
        header.windows(5).any(|w| w == b"alice") && header.windows(8).any(|w| w == b"adledger"),
        "the actor is inside the hashed header bytes the proof covers"
    );
    assert_eq!(bundle["revision"]["metadata"]["actor"]["sub"], "alice");

    send(&server, Method::DELETE, &ad_path, Some(&alice), None)
        .await
        .expect_status(StatusCode::NO_CONTENT);
}

/// The proof bundle of a change with an actor verifies offline (`adledger proof verify`),
/// and changing the actor in the bundle's claimed revision is caught.
async fn proof_bundle_with_an_actor_verifies_offline(backend: Backend) {
    let (server, dir, file) = hs256_server(backend, &[]).await;
    let alice = dev_token(&file, "alice", &["--publisher", "acme"]).await;
    let created = send(
        &server,
        Method::POST,
        "/publisher/acme/ad",
        Some(&alice),
        Some(&seed_create_body()),
    )
    .await;
    created.expect_status(StatusCode::CREATED);
    let ad_id = created.json()["adId"].as_str().expect("adId").to_string();
    let bundle = server
        .get(&format!("/publisher/acme/ad/{ad_id}/proof"))
        .await;
    bundle.expect_status(StatusCode::OK);
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, &bundle.text).expect("write bundle");
    let out = run_cli(&["proof", "verify", &path.to_string_lossy()]).await;
    assert!(
        out.status.success(),
        "the bundle verifies: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut forged = bundle.json();
    forged["revision"]["metadata"]["actor"]["sub"] = json!("bob");
    std::fs::write(&path, forged.to_string()).expect("write forged");
    let out = run_cli(&["proof", "verify", &path.to_string_lossy()]).await;
    assert!(!out.status.success(), "a forged actor is caught");
}

/// Admin rights (`dev-token --admin`, scope `adledger/admin`) write under any publisher
/// and open `/admin/*`; a publisher token does not.
async fn admin_tokens_write_anywhere_and_open_the_admin_routes(backend: Backend) {
    let (server, _dir, file) = hs256_server(backend, &[]).await;
    let admin = dev_token(&file, "ops", &["--admin"]).await;
    let alice = dev_token(&file, "alice", &["--publisher", "acme"]).await;
    send(
        &server,
        Method::POST,
        "/publisher/anyone/ad",
        Some(&admin),
        Some(&seed_create_body()),
    )
    .await
    .expect_status(StatusCode::CREATED);
    send(&server, Method::GET, "/admin/snapshots", Some(&admin), None)
        .await
        .expect_status(StatusCode::OK);
    send(&server, Method::GET, "/admin/snapshots", Some(&alice), None)
        .await
        .expect_problem(StatusCode::FORBIDDEN);
    send(&server, Method::GET, "/admin/snapshots", None, None)
        .await
        .expect_problem(StatusCode::UNAUTHORIZED);
}

/// Expired and not-yet-valid tokens, a wrong issuer, `alg: none`, a tampered signature,
/// and a token signed with another secret are all 401 `invalid_token`.
async fn refused_hs256_tokens(backend: Backend) {
    let (server, _dir, file) = hs256_server(backend, &[]).await;
    let secret = std::fs::read_to_string(&file).expect("secret");
    let secret = secret.trim_end().as_bytes();
    let grant = json!({"publishers": ["acme"]});
    let now = crate::support::identity::now();
    let mut expired = claims("adledger", "a", grant.clone());
    expired["exp"] = json!(now - 120);
    let mut early = claims("adledger", "a", grant.clone());
    early["nbf"] = json!(now + 600);
    let cases = [
        ("expired", hs256_with(secret, "k", &expired)),
        ("not yet valid", hs256_with(secret, "k", &early)),
        (
            "wrong issuer",
            hs256_with(secret, "k", &claims("someone", "a", grant.clone())),
        ),
        (
            "alg none",
            crate::support::identity::unsigned(&claims("adledger", "a", grant.clone())),
        ),
        (
            "another secret",
            hs256_with(
                b"another-secret-of-at-least-32-bytes!!",
                "k",
                &claims("adledger", "a", grant.clone()),
            ),
        ),
        (
            "tampered",
            crate::support::identity::tampered(&hs256_with(
                secret,
                "k",
                &claims("adledger", "a", grant.clone()),
            )),
        ),
    ];
    let good = hs256_with(secret, "k", &claims("adledger", "a", grant));
    send(
        &server,
        Method::POST,
        "/publisher/acme/ad",
        Some(&good),
        Some(&seed_create_body()),
    )
    .await
    .expect_status(StatusCode::CREATED);
    for (what, token) in cases {
        let resp = send(
            &server,
            Method::POST,
            "/publisher/acme/ad",
            Some(&token),
            Some(&seed_create_body()),
        )
        .await;
        assert_eq!(
            resp.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            resp.text
        );
        assert!(challenge(&resp).contains("invalid_token"), "{what}");
        assert!(
            !resp
                .text
                .contains(&String::from_utf8_lossy(secret).to_string()),
            "{what}"
        );
    }
}

/// Deterministic mode with actors: the same commands by the same callers give the same
/// journal, byte for byte, on every backend (pinned by its digest), and the actors travel
/// in an export: the imported ledger shows them.
async fn deterministic_runs_with_actors_are_byte_identical(backend: Backend) {
    let (mut server, dir, file) = hs256_server(backend, &["--deterministic", "7"]).await;
    let alice = dev_token(&file, "alice", &["--publisher", "acme"]).await;
    let bob = dev_token(&file, "bob", &["--admin"]).await;
    let created = send(
        &server,
        Method::POST,
        "/publisher/acme/ad",
        Some(&alice),
        Some(&seed_create_body()),
    )
    .await;
    created.expect_status(StatusCode::CREATED);
    let ad_path = format!(
        "/publisher/acme/ad/{}",
        created.json()["adId"].as_str().expect("adId")
    );
    send(
        &server,
        Method::PATCH,
        &ad_path,
        Some(&bob),
        Some(&json!({"price": 99})),
    )
    .await
    .expect_status(StatusCode::OK);
    send(&server, Method::DELETE, &ad_path, Some(&alice), None)
        .await
        .expect_status(StatusCode::NO_CONTENT);
    let digest = server.get("/ledger/digest").await;
    digest.expect_status(StatusCode::OK);
    assert_eq!(
        digest.json()["root"],
        json!(EXPECTED_ACTOR_ROOT),
        "the journal of a deterministic run with actors changed: {}",
        digest.text
    );
    if backend != Backend::Local {
        return;
    }
    server.stop().await;
    let data = server.data_dir.to_string_lossy().into_owned();
    let export = dir.path().join("ledger.jsonl");
    let export_arg = export.to_string_lossy().into_owned();
    let out = run_cli(&[
        "export",
        "--data-dir",
        &data,
        "--out",
        &export_arg,
        "--format",
        "jsonl",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imported = dir.path().join("imported");
    let imported_arg = imported.to_string_lossy().into_owned();
    let out = run_cli(&["import", &export_arg, "--data-dir", &imported_arg]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = crate::support::Server::start_with(Some(imported), &[]).await;
    let versions = copy.get(&format!("{ad_path}?versions=true")).await;
    versions.expect_status(StatusCode::OK);
    let actors: Vec<String> = versions
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            r["metadata"]["actor"]["sub"]
                .as_str()
                .unwrap_or("-")
                .to_string()
        })
        .collect();
    assert_eq!(actors, ["alice", "bob", "alice"]);
}

/// The Merkle root after [`deterministic_runs_with_actors_are_byte_identical`]'s commands
/// with `--deterministic 7`.
const EXPECTED_ACTOR_ROOT: &str =
    "6b27a165a1e0315a0341218c3dd61b7735e8edd881e52523ef0a9218acac0fb4";

per_backend!(
    hs256_tokens_authorize_writes_and_record_the_actor,
    proof_bundle_with_an_actor_verifies_offline,
    admin_tokens_write_anywhere_and_open_the_admin_routes,
    refused_hs256_tokens,
    deterministic_runs_with_actors_are_byte_identical,
);
