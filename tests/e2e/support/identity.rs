//! Identity for the auth suites: signing keys generated in the test (RSA 2048 and EC
//! P-256), tokens signed with them, and a JWKS server on loopback that counts its fetches
//! and can be taken down or rotated, as an identity provider (Cognito) would be.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use reqwest::Method;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use super::{Backend, Resp, Server, json_body, run_cli};

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A signing key and its public JWK.
pub struct TestKey {
    /// The key id, `kid` in tokens and in the JWKS.
    pub kid: String,
    /// The algorithm tokens use with it.
    pub algorithm: Algorithm,
    /// The private key, for signing.
    pub encoding: EncodingKey,
    /// The public key as a JWK (what the JWKS serves).
    pub jwk: Value,
    /// The public key's bytes as an attacker would find them (the RSA modulus), to try
    /// them as an HMAC secret.
    pub public_bytes: Vec<u8>,
}

impl TestKey {
    /// A fresh RSA 2048 key for RS256.
    pub fn rsa(kid: &str) -> TestKey {
        let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).expect("RSA key");
        let der = private.to_pkcs1_der().expect("PKCS#1 DER");
        let n = private.n().to_bytes_be();
        let e = private.e().to_bytes_be();
        TestKey {
            kid: kid.to_string(),
            algorithm: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({
                "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                "n": URL_SAFE_NO_PAD.encode(&n), "e": URL_SAFE_NO_PAD.encode(&e),
            }),
            public_bytes: n,
        }
    }

    /// A fresh EC P-256 key for ES256.
    pub fn ec(kid: &str) -> TestKey {
        let secret = p256::SecretKey::random(&mut rand_core::OsRng);
        let der = secret.to_pkcs8_der().expect("PKCS#8 DER");
        let point = secret.public_key().to_encoded_point(false);
        let x = point.x().expect("x").to_vec();
        let y = point.y().expect("y").to_vec();
        TestKey {
            kid: kid.to_string(),
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk: json!({
                "kty": "EC", "kid": kid, "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&x), "y": URL_SAFE_NO_PAD.encode(&y),
            }),
            public_bytes: point.as_bytes().to_vec(),
        }
    }

    /// A token with `claims`, signed with this key and naming its `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// A token with `claims` signed with this key but naming `kid`.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

/// Claims valid for ten minutes from `iss`, for `sub`, with `extra` merged in.
pub fn claims(iss: &str, sub: &str, extra: Value) -> Value {
    let mut claims = json!({
        "iss": iss, "sub": sub, "iat": now(), "nbf": now(), "exp": now() + 600,
    });
    if let (Some(base), Some(more)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            base.insert(k.clone(), v.clone());
        }
    }
    claims
}

/// An unsigned token (`alg: none`) with `claims`.
pub fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("json"));
    format!("{header}.{payload}.")
}

/// A token with `claims` signed HS256 with `secret`, naming `kid`: the algorithm-confusion
/// attack when `secret` is a public key.
pub fn hs256_with(secret: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("sign")
}

/// `token` with one character of its signature changed.
pub fn tampered(token: &str) -> String {
    let (rest, signature) = token.rsplit_once('.').expect("three parts");
    let mut chars: Vec<char> = signature.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    format!("{rest}.{}", chars.into_iter().collect::<String>())
}

/// What the JWKS server serves and has seen.
struct Shared {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
    down: AtomicBool,
}

/// A JWKS endpoint on loopback: `GET /.well-known/jwks.json`.
pub struct JwksServer {
    /// `http://127.0.0.1:PORT` — also the issuer the tests use.
    pub issuer: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Serves `keys` (their public JWKs).
    pub async fn start(keys: &[&TestKey]) -> JwksServer {
        let shared = Arc::new(Shared {
            keys: Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect()),
            fetches: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the JWKS server");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer {
            issuer: format!("http://{addr}"),
            shared,
            task,
        }
    }

    /// How many times the JWKS was requested.
    pub fn fetches(&self) -> usize {
        self.shared.fetches.load(Ordering::SeqCst)
    }

    /// Answers 503 from now on (`true`), or serves the keys again (`false`).
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Publishes `key` too (a key rotation).
    pub fn add(&self, key: &TestKey) {
        self.shared
            .keys
            .lock()
            .expect("keys lock")
            .push(key.jwk.clone());
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.fetches.fetch_add(1, Ordering::SeqCst);
    if shared.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = shared.keys.lock().expect("keys lock").clone();
    axum::Json(json!({ "keys": keys })).into_response()
}

/// A secret of the required length, written to a file in `dir`.
pub fn secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("jwt-secret");
    std::fs::write(&path, "k3y-0f-at-least-32-bytes-for-hs256-tests\n").expect("write secret");
    path
}

/// `adledger dev-token` for `sub` with `extra` flags, signed with the secret in `file`.
pub async fn dev_token(file: &Path, sub: &str, extra: &[&str]) -> String {
    let file = file.to_string_lossy();
    let mut args = vec!["dev-token", "--jwt-secret-file", &file, "--sub", sub];
    args.extend_from_slice(extra);
    let out = run_cli(&args).await;
    assert!(
        out.status.success(),
        "dev-token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    token
}

/// Sends `method path` with an optional bearer token and JSON body.
pub async fn send(
    server: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let mut rb = server.request(method, path);
    if let Some(token) = token {
        rb = rb.bearer_auth(token);
    }
    if let Some(body) = body {
        rb = json_body(rb, body);
    }
    server.send(rb).await
}

/// A server in mode hs256 with the secret in a file of its own home; returns it and the
/// file.
pub async fn hs256_server(
    backend: Backend,
    extra: &[&str],
) -> (Server, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let file = secret_file(dir.path());
    let mut args = vec![
        "--auth".to_string(),
        "hs256".to_string(),
        "--jwt-secret-file".to_string(),
        file.to_string_lossy().into_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let server = Server::start_on(backend, &args).await;
    (server, dir, file)
}

/// The `WWW-Authenticate` header of a response (panics when absent).
pub fn challenge(resp: &Resp) -> String {
    resp.header("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate on {}: {}", resp.status, resp.text))
}
