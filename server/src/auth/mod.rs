//! Caller identity and per-publisher authorization.
//!
//! - [`settings`]: the `[auth]` settings and flags, and the start-up rule that a
//!   production configuration cannot run open by accident;
//! - [`token`]: one JWT checked (signature, time, issuer, audience) and its grants
//!   ([`Principal`]);
//! - [`jwks`]: the identity provider's keys, cached, refetched on rotation;
//! - [`access`]: the HTTP side — the bearer token of a request, 401/403 answers, and the
//!   extractor write handlers take ([`access::Writer`]), whose actor the engine records in
//!   the block header.
//!
//! This module only decides who the caller is and what the token grants; which routes
//! need what is [`access`]'s business.

pub mod access;
pub mod jwks;
pub mod settings;
pub mod token;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};

pub use settings::{AuthMode, AuthSettings, AuthSetupError, ReadAccess};
pub use token::{Principal, TokenError};

use jwks::JwksCache;
use token::Expectations;

/// Where the keys that verify tokens come from.
enum Keys {
    /// `hs256`: the shared secret.
    Secret(DecodingKey),
    /// `jwks`: the provider's published keys.
    Jwks(Arc<JwksCache>),
}

/// Verifies tokens for one configuration.
pub struct Verifier {
    keys: Keys,
    expect: Expectations,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.expect.issuer)
            .field("audience", &self.expect.audience)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Checks `token` and reads its grants.
    pub async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        // The header is read only to pick the key; the algorithm the key dictates is the
        // only one accepted, whatever the header says.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let (key, algorithm) = match &self.keys {
            Keys::Secret(key) => (key.clone(), Algorithm::HS256),
            Keys::Jwks(cache) => {
                let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
                let found = cache.key(kid).await?;
                (found.key, found.algorithm)
            }
        };
        if header.alg != algorithm {
            return Err(TokenError::Algorithm(format!(
                "this server accepts {algorithm:?} for this key"
            )));
        }
        token::verify(token, &key, algorithm, &self.expect)
    }
}

/// The running server's identity settings.
#[derive(Debug, Clone)]
pub struct Auth {
    /// `None` in mode `none`: no identity, no actor.
    pub verifier: Option<Arc<Verifier>>,
    /// Who may read.
    pub reads: ReadAccess,
}

impl Auth {
    /// No identity: anyone may do anything the routes allow, nothing is recorded.
    pub fn open() -> Auth {
        Auth {
            verifier: None,
            reads: ReadAccess::Public,
        }
    }

    /// The identity `settings` give a server listening on `listen` (on the AWS backend
    /// when `aws`), or why it must not start. Starts the JWKS refresher in `jwks` mode (so
    /// call it inside the runtime).
    pub fn from_settings(
        settings: &AuthSettings,
        aws: bool,
        listen: &str,
    ) -> Result<Auth, AuthSetupError> {
        let choice = settings.choose_mode(aws, listen)?;
        if choice.warn_open {
            tracing::warn!(
                aws,
                %listen,
                "--auth none: anyone who can reach this server may create, change and delete \
                 any publisher's ads, and the journal records no caller"
            );
        }
        let keys = match choice.mode {
            AuthMode::None => return Ok(Auth::open()),
            AuthMode::Hs256 => Keys::Secret(DecodingKey::from_secret(
                settings.hs256_secret()?.expose().as_bytes(),
            )),
            AuthMode::Jwks => {
                let issuer = settings.issuer_for(AuthMode::Jwks)?;
                let url = settings.jwks_url_for(&issuer)?;
                let cache = JwksCache::new(url).map_err(|e| AuthSetupError(e.to_string()))?;
                cache.spawn_refresher();
                Keys::Jwks(cache)
            }
        };
        let issuer = settings.issuer_for(choice.mode)?;
        tracing::info!(
            mode = choice.mode.as_str(),
            %issuer,
            audience = ?settings.audience,
            reads = ?settings.reads,
            "caller identity required for writes"
        );
        Ok(Auth {
            verifier: Some(Arc::new(Verifier {
                keys,
                expect: Expectations {
                    issuer,
                    audience: settings.audience.clone(),
                },
            })),
            reads: settings.reads,
        })
    }
}
