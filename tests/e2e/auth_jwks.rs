//! `--auth jwks` against a JWKS server on loopback (real HTTP), with RSA and EC keys
//! generated in the test: what a Cognito user pool looks like to adledger.
//!
//! Covered: RS256 and ES256 tokens; Cognito access tokens (`client_id`, `cognito:groups`);
//! every way a token is refused (expired, not yet valid, wrong issuer, wrong audience,
//! `alg: none`, HS256 signed with the RSA public key, tampered signature, unknown key);
//! key rotation (a new `kid` works after one refetch, and 100 random unknown `kid`s cost
//! at most one more fetch); the JWKS endpoint going down after start (cached keys keep
//! working) and being down at start (the server starts, and accepts tokens once the
//! endpoint answers). Identity does not depend on the storage: local backend only.

use std::time::{Duration, Instant};

use crate::support::identity::{JwksServer, TestKey, claims, hs256_with, now, tampered, unsigned};
use crate::support::{Backend, Resp, Server, json_body, local_only, seed_create_body};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The audience (app client id) the server accepts.
const AUDIENCE: &str = "adledger-app";

async fn jwks_server(jwks: &JwksServer) -> Server {
    let args: Vec<String> = [
        "--auth",
        "jwks",
        "--jwt-issuer",
        &jwks.issuer,
        "--jwt-audience",
        AUDIENCE,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Server::start_on(Backend::Local, &args).await
}

async fn create(server: &Server, publisher: &str, token: &str) -> Resp {
    let rb = server
        .request(Method::POST, &format!("/publisher/{publisher}/ad"))
        .bearer_auth(token);
    server.send(json_body(rb, &seed_create_body())).await
}

/// Claims of an ID token for `acme` with this test's issuer and audience.
fn acme(jwks: &JwksServer, sub: &str) -> Value {
    claims(
        &jwks.issuer,
        sub,
        json!({"aud": AUDIENCE, "publishers": ["acme"]}),
    )
}

/// Waits (bounded) until the server has fetched the JWKS at least `count` times.
async fn wait_for_fetches(jwks: &JwksServer, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while jwks.fetches() < count {
        assert!(
            Instant::now() < deadline,
            "the server never fetched the JWKS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn rsa_and_ec_tokens_and_cognito_access_tokens() {
    let rsa = TestKey::rsa("rsa-1");
    let ec = TestKey::ec("ec-1");
    let jwks = JwksServer::start(&[&rsa, &ec]).await;
    let server = jwks_server(&jwks).await;

    create(&server, "acme", &rsa.sign(&acme(&jwks, "alice")))
        .await
        .expect_status(StatusCode::CREATED);
    create(&server, "acme", &ec.sign(&acme(&jwks, "erin")))
        .await
        .expect_status(StatusCode::CREATED);
    create(&server, "other", &rsa.sign(&acme(&jwks, "alice")))
        .await
        .expect_problem(StatusCode::FORBIDDEN);

    // A Cognito access token: no `aud`, the app client in `client_id`, rights in groups.
    let access = claims(
        &jwks.issuer,
        "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        json!({"token_use": "access", "client_id": AUDIENCE, "cognito:groups": ["publisher:globex"]}),
    );
    let created = create(&server, "globex", &rsa.sign(&access)).await;
    created.expect_status(StatusCode::CREATED);
    let ad_id = created.json()["adId"].as_str().expect("adId").to_string();
    let versions = server
        .get(&format!("/publisher/globex/ad/{ad_id}?versions=true"))
        .await;
    assert_eq!(
        versions.json()[0]["metadata"]["actor"],
        json!({"sub": "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "iss": jwks.issuer})
    );
    create(&server, "acme", &rsa.sign(&access))
        .await
        .expect_problem(StatusCode::FORBIDDEN);

    // The admin group writes anywhere.
    let admin = claims(
        &jwks.issuer,
        "ops",
        json!({"client_id": AUDIENCE, "cognito:groups": ["adledger-admins"]}),
    );
    create(&server, "anyone", &ec.sign(&admin))
        .await
        .expect_status(StatusCode::CREATED);
}

async fn refused_tokens_are_401_invalid_token() {
    let rsa = TestKey::rsa("rsa-1");
    let jwks = JwksServer::start(&[&rsa]).await;
    let server = jwks_server(&jwks).await;
    let good = acme(&jwks, "alice");
    create(&server, "acme", &rsa.sign(&good))
        .await
        .expect_status(StatusCode::CREATED);

    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        c
    };
    let cases: Vec<(&str, String)> = vec![
        ("expired", rsa.sign(&with("exp", json!(now() - 120)))),
        ("not yet valid", rsa.sign(&with("nbf", json!(now() + 600)))),
        (
            "issued in the future",
            rsa.sign(&with("iat", json!(now() + 600))),
        ),
        (
            "wrong issuer",
            rsa.sign(&with("iss", json!("https://evil.example"))),
        ),
        (
            "wrong audience",
            rsa.sign(&with("aud", json!("another-app"))),
        ),
        ("no exp", {
            let mut c = good.clone();
            c.as_object_mut().expect("object").remove("exp");
            rsa.sign(&c)
        }),
        ("alg none", unsigned(&good)),
        (
            "HS256 signed with the RSA public key",
            hs256_with(&rsa.public_bytes, "rsa-1", &good),
        ),
        (
            "HS256 signed with the public JWK text",
            hs256_with(rsa.jwk.to_string().as_bytes(), "rsa-1", &good),
        ),
        ("tampered signature", tampered(&rsa.sign(&good))),
        ("unknown key", rsa.sign_as("nobody", &good)),
        (
            "another key under a known kid",
            TestKey::rsa("rsa-1").sign(&good),
        ),
    ];
    for (what, token) in cases {
        let resp = create(&server, "acme", &token).await;
        assert_eq!(
            resp.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            resp.text
        );
        let challenge = resp.header("www-authenticate").expect("challenge");
        assert!(
            challenge.starts_with("Bearer realm=\"adledger\", error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert!(
            !challenge.contains(&rsa.jwk["n"].as_str().expect("n")[..16]),
            "{what}"
        );
    }
}

async fn key_rotation_refetches_once_and_unknown_kids_cannot_flood_the_provider() {
    let old = TestKey::rsa("2026-11");
    let jwks = JwksServer::start(&[&old]).await;
    let server = jwks_server(&jwks).await;
    wait_for_fetches(&jwks, 1).await;
    create(&server, "acme", &old.sign(&acme(&jwks, "alice")))
        .await
        .expect_status(StatusCode::CREATED);
    let before = jwks.fetches();
    assert_eq!(
        before, 1,
        "the start-up fetch; the first request waited for it"
    );

    // The provider rotates: a token with the new kid works after one refetch.
    let new = TestKey::ec("2026-12");
    jwks.add(&new);
    create(&server, "acme", &new.sign(&acme(&jwks, "alice")))
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(
        jwks.fetches(),
        before + 1,
        "exactly one refetch for the new kid"
    );

    // 100 unknown kids, concurrently: at most one more fetch.
    let before = jwks.fetches();
    let mut tasks = Vec::new();
    for i in 0..100u32 {
        let token = old.sign_as(&format!("random-{i}-{}", now()), &acme(&jwks, "mallory"));
        let request = server
            .request(Method::POST, "/publisher/acme/ad")
            .bearer_auth(token);
        let request = json_body(request, &seed_create_body());
        tasks.push(tokio::spawn(crate::support::fetch(request)));
    }
    for task in tasks {
        let resp = task.await.expect("task").expect("response");
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    }
    assert!(
        jwks.fetches() <= before + 1,
        "{} fetches for 100 unknown kids",
        jwks.fetches() - before
    );
    // Known keys still work.
    create(&server, "acme", &old.sign(&acme(&jwks, "alice")))
        .await
        .expect_status(StatusCode::CREATED);
}

async fn cached_keys_survive_a_jwks_outage() {
    let rsa = TestKey::rsa("rsa-1");
    let jwks = JwksServer::start(&[&rsa]).await;
    let server = jwks_server(&jwks).await;
    create(&server, "acme", &rsa.sign(&acme(&jwks, "alice")))
        .await
        .expect_status(StatusCode::CREATED);
    jwks.set_down(true);
    // An unknown kid forces a fetch that fails; the cached keys stay.
    create(
        &server,
        "acme",
        &rsa.sign_as("unknown", &acme(&jwks, "alice")),
    )
    .await
    .expect_problem(StatusCode::UNAUTHORIZED);
    for _ in 0..3 {
        create(&server, "acme", &rsa.sign(&acme(&jwks, "alice")))
            .await
            .expect_status(StatusCode::CREATED);
    }
}

async fn the_server_starts_while_the_jwks_is_down() {
    let rsa = TestKey::rsa("rsa-1");
    let jwks = JwksServer::start(&[&rsa]).await;
    jwks.set_down(true);
    let server = jwks_server(&jwks).await;
    wait_for_fetches(&jwks, 1).await;
    let token = rsa.sign(&acme(&jwks, "alice"));
    let refused = create(&server, "acme", &token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    // Reads do not need the provider.
    server.get("/healthz").await.expect_status(StatusCode::OK);
    jwks.set_down(false);
    // The background fetch retries with backoff (1 s, 2 s, …): bounded wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = create(&server, "acme", &token).await;
        if resp.status == StatusCode::CREATED {
            break;
        }
        assert!(Instant::now() < deadline, "never accepted: {}", resp.text);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

local_only!(
    rsa_and_ec_tokens_and_cognito_access_tokens,
    refused_tokens_are_401_invalid_token,
    key_rotation_refetches_once_and_unknown_kids_cannot_flood_the_provider,
    cached_keys_survive_a_jwks_outage,
    the_server_starts_while_the_jwks_is_down,
);
