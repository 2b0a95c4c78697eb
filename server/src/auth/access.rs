//! The HTTP side of identity: the bearer token of a request, the 401 and 403 answers, the
//! [`Writer`] extractor of the write routes, and the read gate ([`require_reader`]).
//!
//! | request | mode `none` | `hs256` / `jwks` |
//! |---|---|---|
//! | `POST`/`PATCH`/`DELETE` under `/publisher/{p}` | allowed, no actor | a token granting `p` (or admin); 401 without a valid token, 403 with one for another publisher |
//! | reads (get, list, history, search, proofs, digests) | public | public, or any valid token with `reads = "authenticated"` |
//! | `/healthz`, `/openapi.json`, `/docs` | public | public, and they reveal nothing about tokens or callers |
//! | `/admin/*` | the admin token | the admin token, or a token with scope `adledger/admin` or group `adledger-admins` |
//!
//! A 401 carries `WWW-Authenticate: Bearer realm="adledger"`, plus `error="invalid_token"`
//! and a short `error_description` when a token was presented and refused (RFC 6750 §3);
//! a 403 carries `error="insufficient_scope"`.

use adledger_engine::Actor;
use axum::extract::{FromRef, FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Auth, Principal, ReadAccess, TokenError};
use crate::error::ApiError;

/// The realm named in every challenge.
const REALM: &str = "adledger";

/// The caller of a write route, authorized for the route's publisher: the actor to record,
/// `None` in mode `none`.
#[derive(Debug, Clone)]
pub struct Writer(pub Option<Actor>);

impl<S> FromRequestParts<S> for Writer
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let auth = Auth::from_ref(state);
        if auth.verifier.is_none() {
            return Ok(Writer(None));
        }
        let principal = required(&auth, &parts.headers).await?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::forbidden(
                    "the publisher id in the path is not valid UTF-8 text, so no token grants it"
                        .into(),
                )
            })?;
        let publisher = params
            .iter()
            .find(|(name, _)| *name == "publisher_id")
            .map(|(_, value)| value)
            .ok_or_else(|| {
                tracing::error!("a write route without a publisher_id path parameter");
                ApiError::internal()
            })?;
        if !principal.may_write(publisher) {
            return Err(ApiError::forbidden(format!(
                "the token of {:?} does not grant publisher {publisher:?}: it needs \
                 {publisher:?} in its `publishers` claim, the Cognito group \
                 `publisher:{publisher}`, or admin rights",
                principal.actor.sub
            )));
        }
        Ok(Writer(Some(principal.actor)))
    }
}

/// The caller, when `headers` carry a valid token; 401 when they carry none or a bad one.
/// Only call it when a verifier is configured.
pub async fn required(auth: &Auth, headers: &HeaderMap) -> Result<Principal, ApiError> {
    match optional(auth, headers).await? {
        Some(principal) => Ok(principal),
        None => Err(unauthorized(
            "this request needs `Authorization: Bearer <token>`",
            None,
        )),
    }
}

/// The caller, when `headers` carry a token (which must then be valid); `None` when they
/// carry none or no verifier is configured.
pub async fn optional(auth: &Auth, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    let Some(verifier) = &auth.verifier else {
        return Ok(None);
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            unauthorized(
                "the Authorization header must be `Bearer <token>`",
                Some("the Authorization header is not a bearer token"),
            )
        })?;
    verifier
        .verify(token)
        .await
        .map(Some)
        .map_err(|e| refused(&e))
}

/// 401 for a refused token, saying which rule it broke.
fn refused(error: &TokenError) -> ApiError {
    let reason = error.to_string();
    unauthorized(
        &format!("the bearer token was refused: {reason}"),
        Some(&reason),
    )
}

/// 401 with its challenge; `description` set when a token was presented and refused.
fn unauthorized(detail: &str, description: Option<&str>) -> ApiError {
    let challenge = match description {
        None => format!("Bearer realm=\"{REALM}\""),
        // The descriptions are this server's fixed sentences: no quote or backslash to
        // escape, nothing from the token.
        Some(text) => format!(
            "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
            text.replace(['"', '\\'], "'")
        ),
    };
    ApiError::unauthorized(detail.to_string(), challenge)
}

/// Paths anyone may read whatever the read policy: probes and the API's description.
fn always_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json")
        || path == "/docs"
        || path.starts_with("/docs/")
}

/// Middleware: with `reads = "authenticated"`, a read (GET or HEAD) of anything but the
/// probes and the API description needs a valid token.
pub async fn require_reader(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let gated = auth.reads == ReadAccess::Authenticated
        && auth.verifier.is_some()
        && matches!(*request.method(), Method::GET | Method::HEAD)
        && !always_public(request.uri().path());
    if gated && let Err(e) = required(&auth, request.headers()).await {
        return e.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_and_the_description_stay_public() {
        for path in ["/healthz", "/openapi.json", "/docs", "/docs/index.css"] {
            assert!(always_public(path), "{path}");
        }
        for path in [
            "/",
            "/search",
            "/publisher/acme/ad",
            "/ledger/digest",
            "/docsx",
        ] {
            assert!(!always_public(path), "{path}");
        }
    }
}
