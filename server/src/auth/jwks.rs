//! The identity provider's signing keys, fetched from its JWKS and cached.
//!
//! Rules, in the order a request meets them:
//!
//! - a token's `kid` found in the cache is verified at once: no network;
//! - an unknown `kid` triggers one refetch (the provider may have rotated its keys), shared
//!   by every request that misses meanwhile, and at most one forced refetch per
//!   [`FORCED_REFETCH_INTERVAL`], so a flood of random `kid`s costs the provider at most one
//!   request per interval;
//! - a failed fetch keeps the keys already cached: an outage of the provider's JWKS
//!   endpoint does not lock out callers whose tokens use known keys;
//! - the server starts without the endpoint: a background task fetches the keys at start,
//!   retries until it succeeds, then refreshes them every [`REFRESH_INTERVAL`] (so a
//!   key the provider withdrew stops being accepted).
//!
//! Only asymmetric signature keys are loaded (RSA → RS256 unless the JWK names another RS or
//! PS algorithm, EC P-256 → ES256, P-384 → ES384): a symmetric (`oct`) key in a JWKS is
//! ignored, so a token "signed" with a public key as an HMAC secret can never verify.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::token::TokenError;

/// The least time between two fetches forced by unknown `kid`s.
pub const FORCED_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// How often the keys are refreshed in the background once loaded.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS document read, in bytes (a provider publishes a few keys).
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// First retry delay of the start-up fetch; doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Longest retry delay of the start-up fetch.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// One usable key.
#[derive(Clone)]
pub struct SigningKey {
    /// The key.
    pub key: DecodingKey,
    /// The one algorithm tokens signed with it may use.
    pub algorithm: Algorithm,
}

type Keys = HashMap<String, SigningKey>;

/// The cache (see the module docs).
pub struct JwksCache {
    url: String,
    client: reqwest_tls::Client,
    keys: RwLock<Arc<Keys>>,
    /// Held while a fetch runs, so concurrent misses share it; holds the time of the last
    /// forced fetch.
    forced: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Why a fetch failed (logged; the cache keeps its keys).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// No answer, or not 200.
    #[error("GET {url}: {detail}")]
    Http {
        /// The JWKS URL.
        url: String,
        /// What happened.
        detail: String,
    },
    /// Not a JWKS with at least one usable key.
    #[error("{url} is not a JWKS with a usable signing key: {detail}")]
    Document {
        /// The JWKS URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
}

impl JwksCache {
    /// An empty cache for `url`; nothing is fetched yet (see [`JwksCache::spawn_refresher`]).
    pub fn new(url: String) -> Result<Arc<JwksCache>, FetchError> {
        // Fails only when a provider is already installed, which is what is wanted.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest_tls::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest_tls::redirect::Policy::limited(3))
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(Arc::new(JwksCache {
            url,
            client,
            keys: RwLock::new(Arc::new(Keys::new())),
            forced: tokio::sync::Mutex::new(None),
        }))
    }

    /// The JWKS URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Starts the background task: fetch at start (retrying with backoff until it
    /// succeeds), then refresh every [`REFRESH_INTERVAL`]. It stops with the runtime.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut delay = FIRST_RETRY_DELAY;
            loop {
                let Some(cache) = weak.upgrade() else { return };
                // Under the fetch lock: a request that misses meanwhile waits for this
                // fetch instead of starting its own.
                let fetched = {
                    let _fetching = cache.forced.lock().await;
                    cache.refresh().await
                };
                let next = match fetched {
                    Ok(count) => {
                        tracing::info!(url = %cache.url, keys = count, "JWKS loaded");
                        delay = FIRST_RETRY_DELAY;
                        REFRESH_INTERVAL
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in = ?delay, "JWKS fetch failed; cached keys stay in use");
                        let now = delay;
                        delay = (delay * 2).min(MAX_RETRY_DELAY);
                        now
                    }
                };
                drop(cache);
                tokio::time::sleep(next).await;
            }
        });
    }

    /// The key for `kid`, refetching once if it is unknown (see the module docs).
    pub async fn key(&self, kid: &str) -> Result<SigningKey, TokenError> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let mut last_forced = self.forced.lock().await;
        // Another request may have fetched while this one waited for the lock.
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let allowed = last_forced.is_none_or(|at| at.elapsed() >= FORCED_REFETCH_INTERVAL);
        if allowed {
            *last_forced = Some(Instant::now());
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "JWKS refetch for an unknown key id failed");
            }
        }
        drop(last_forced);
        self.cached(kid).ok_or_else(|| {
            if self.snapshot().is_empty() {
                TokenError::NoKeys
            } else {
                TokenError::UnknownKey
            }
        })
    }

    fn snapshot(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn cached(&self, kid: &str) -> Option<SigningKey> {
        self.snapshot().get(kid).cloned()
    }

    /// Fetches the JWKS and replaces the cached keys; on failure keeps them. Returns the
    /// number of keys loaded.
    async fn refresh(&self) -> Result<usize, FetchError> {
        let keys = self.fetch().await?;
        let count = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(count)
    }

    async fn fetch(&self) -> Result<Keys, FetchError> {
        let http = |detail: String| FetchError::Http {
            url: self.url.clone(),
            detail,
        };
        let mut response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| http(e.to_string()))?;
        if !response.status().is_success() {
            return Err(http(format!("status {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| http(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(http(format!("the document is over {MAX_JWKS_BYTES} bytes")));
            }
        }
        parse_jwks(&body).map_err(|detail| FetchError::Document {
            url: self.url.clone(),
            detail,
        })
    }
}

/// The usable keys of a JWKS document; keys of other kinds are skipped (and logged).
fn parse_jwks(body: &[u8]) -> Result<Keys, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Keys::new();
    for value in document.keys {
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(e) => {
                tracing::warn!(error = %e, "JWKS: skipping a key this server cannot read");
                continue;
            }
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            tracing::warn!("JWKS: skipping a key without `kid`");
            continue;
        };
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            continue;
        }
        let Some(algorithm) = signature_algorithm(&jwk) else {
            tracing::warn!(%kid, "JWKS: skipping a key that is not an RSA or EC signing key");
            continue;
        };
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => {
                keys.insert(kid, SigningKey { key, algorithm });
            }
            Err(e) => tracing::warn!(%kid, error = %e, "JWKS: skipping an unusable key"),
        }
    }
    if keys.is_empty() {
        return Err("it holds no RSA or EC signing key with a `kid`".into());
    }
    Ok(keys)
}

/// The algorithm a JWK dictates: its `alg` when that is an asymmetric signature algorithm
/// matching its key type, else the key type's usual one; `None` for anything else.
fn signature_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let named = jwk.common.key_algorithm;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => match named {
            None => Some(Algorithm::RS256),
            Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
            Some(KeyAlgorithm::RS384) => Some(Algorithm::RS384),
            Some(KeyAlgorithm::RS512) => Some(Algorithm::RS512),
            Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
            Some(KeyAlgorithm::PS384) => Some(Algorithm::PS384),
            Some(KeyAlgorithm::PS512) => Some(Algorithm::PS512),
            Some(_) => None,
        },
        AlgorithmParameters::EllipticCurve(ec) => match (&ec.curve, named) {
            (EllipticCurve::P256, None | Some(KeyAlgorithm::ES256)) => Some(Algorithm::ES256),
            (EllipticCurve::P384, None | Some(KeyAlgorithm::ES384)) => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKey(_) | AlgorithmParameters::OctetKeyPair(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asymmetric_signing_keys_with_a_kid_are_loaded() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "RSA", "n": "sXch", "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird", "kid": "w"},
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).expect("one usable key");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys["ec"].algorithm, Algorithm::ES256);
        assert!(parse_jwks(br#"{"keys": [{"kty": "oct", "kid": "k", "k": "AA"}]}"#).is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }
}
