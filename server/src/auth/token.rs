//! One token checked: signature, time claims, issuer, audience, and what it grants.
//!
//! `jsonwebtoken` does the signature and `exp`/`nbf`/`iss` (with the algorithm the key
//! dictates, so `alg: none` and HS256-signed-with-an-RSA-public-key are refused before any
//! claim is read); this module adds what it leaves to the application: `iat` in the
//! future, the audience rule that accepts Cognito access tokens (`client_id`, no `aud`),
//! and the grants ([`Principal`]).

use std::collections::BTreeSet;

use adledger_engine::Actor;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// The OAuth scope that makes a caller an administrator.
pub const ADMIN_SCOPE: &str = "adledger/admin";
/// The Cognito group that makes a caller an administrator.
pub const ADMIN_GROUP: &str = "adledger-admins";
/// The prefix of the Cognito groups that grant a publisher (`publisher:acme`).
pub const PUBLISHER_GROUP_PREFIX: &str = "publisher:";

/// A verified caller and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who, as the journal records it.
    pub actor: Actor,
    /// Publishers whose ads it may change.
    pub publishers: BTreeSet<String>,
    /// May change any publisher's ads and use `/admin/*`.
    pub admin: bool,
}

impl Principal {
    /// Whether it may create, change or delete `publisher`'s ads.
    pub fn may_write(&self, publisher: &str) -> bool {
        self.admin || self.publishers.contains(publisher)
    }
}

/// Why a token was refused. The messages name the rule broken and never echo key
/// material or the token; they go into `WWW-Authenticate: error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with a JSON header.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// The header names an algorithm this server does not accept from that key.
    #[error("the token's algorithm is not accepted ({0})")]
    Algorithm(String),
    /// No key with the token's `kid` (after one refetch, if the keys come from a JWKS).
    #[error("the token's key id is unknown")]
    UnknownKey,
    /// The JWKS could not be fetched and no key was ever loaded.
    #[error("the signing keys are not available yet")]
    NoKeys,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// `iss` is not the configured issuer.
    #[error("the token's issuer is not accepted")]
    Issuer,
    /// Neither `aud` nor `client_id` is an accepted audience.
    #[error("the token's audience is not accepted")]
    Audience,
    /// A required claim is absent or has the wrong type.
    #[error("the token lacks a valid `{0}` claim")]
    Claim(&'static str),
    /// A claim this server reads (`sub`, `iss`, `aud`, `publishers`, `cognito:groups`,
    /// `scope`, …) has an unexpected type.
    #[error("the token's claims have unexpected types")]
    ClaimTypes,
}

/// The claims read from a token; everything else is ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    iat: Option<serde_json::Number>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    publishers: Vec<String>,
    #[serde(default, rename = "cognito:groups")]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// The only accepted `iss`.
    pub issuer: String,
    /// Accepted audiences; empty accepts any.
    pub audience: Vec<String>,
}

/// Verifies `token` with `key` for `algorithm`, and reads what it grants.
pub fn verify(
    token: &str,
    key: &DecodingKey,
    algorithm: Algorithm,
    expect: &Expectations,
) -> Result<Principal, TokenError> {
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_issuer(&[expect.issuer.as_str()]);
    validation.set_required_spec_claims(&["exp", "sub", "iss"]);
    let data =
        jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::Issuer,
            ErrorKind::InvalidSignature => TokenError::Signature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                TokenError::Algorithm(algorithm_name(algorithm))
            }
            ErrorKind::MissingRequiredClaim(claim) => TokenError::Claim(static_claim(claim)),
            ErrorKind::InvalidClaimFormat(claim) => TokenError::Claim(static_claim(claim)),
            ErrorKind::Json(_) => TokenError::ClaimTypes,
            _ => TokenError::Malformed,
        })?;
    let claims = data.claims;
    if let Some(iat) = &claims.iat {
        let iat = iat.as_f64().ok_or(TokenError::Claim("iat"))?;
        let now = jsonwebtoken::get_current_timestamp() as f64;
        if iat > now + LEEWAY_SECS as f64 {
            return Err(TokenError::IssuedInFuture);
        }
    }
    if !expect.audience.is_empty() {
        let accepted = |a: &String| expect.audience.contains(a);
        let by_aud = match &claims.aud {
            Some(Audience::One(a)) => accepted(a),
            Some(Audience::Many(list)) => list.iter().any(accepted),
            None => false,
        };
        let by_client = claims.client_id.as_ref().is_some_and(accepted);
        if !(by_aud || by_client) {
            return Err(TokenError::Audience);
        }
    }
    let sub = claims.sub.ok_or(TokenError::Claim("sub"))?;
    let iss = claims.iss.ok_or(TokenError::Claim("iss"))?;
    let actor = Actor::new(sub, iss).map_err(|_| TokenError::Claim("sub"))?;
    let scoped_admin = claims
        .scope
        .as_deref()
        .is_some_and(|s| s.split_ascii_whitespace().any(|s| s == ADMIN_SCOPE));
    let group_admin = claims.groups.iter().any(|g| g == ADMIN_GROUP);
    let mut publishers: BTreeSet<String> = claims.publishers.into_iter().collect();
    publishers.extend(
        claims
            .groups
            .iter()
            .filter_map(|g| g.strip_prefix(PUBLISHER_GROUP_PREFIX))
            .map(str::to_string),
    );
    Ok(Principal {
        actor,
        publishers,
        admin: scoped_admin || group_admin,
    })
}

fn algorithm_name(algorithm: Algorithm) -> String {
    format!("this server expects {algorithm:?} for this key")
}

/// The claim names `jsonwebtoken` reports, as the static names the error carries.
fn static_claim(claim: &str) -> &'static str {
    match claim {
        "exp" => "exp",
        "nbf" => "nbf",
        "iss" => "iss",
        "aud" => "aud",
        _ => "sub",
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-secret";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn sign(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("sign")
    }

    fn expect(audience: &[&str]) -> Expectations {
        Expectations {
            issuer: "adledger".into(),
            audience: audience.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn check(token: &str, audience: &[&str]) -> Result<Principal, TokenError> {
        verify(
            token,
            &DecodingKey::from_secret(SECRET),
            Algorithm::HS256,
            &expect(audience),
        )
    }

    #[test]
    fn grants_come_from_publishers_groups_and_scope() {
        let token = sign(json!({
            "sub": "alice", "iss": "adledger", "exp": now() + 600, "iat": now(),
            "publishers": ["acme"], "cognito:groups": ["publisher:globex", "staff"],
        }));
        let principal = check(&token, &[]).expect("valid");
        assert_eq!(
            principal.actor,
            Actor::new("alice", "adledger").expect("actor")
        );
        assert!(principal.may_write("acme") && principal.may_write("globex"));
        assert!(!principal.may_write("initech") && !principal.admin);

        for admin in [
            json!({"scope": "openid adledger/admin"}),
            json!({"cognito:groups": ["adledger-admins"]}),
        ] {
            let mut claims = json!({"sub": "root", "iss": "adledger", "exp": now() + 600});
            claims
                .as_object_mut()
                .expect("object")
                .extend(admin.as_object().expect("object").clone());
            let principal = check(&sign(claims), &[]).expect("valid");
            assert!(principal.admin && principal.may_write("anyone"));
        }
    }

    #[test]
    fn time_issuer_and_audience_rules() {
        let base = || json!({"sub": "a", "iss": "adledger", "exp": now() + 600});
        let with = |k: &str, v: serde_json::Value| {
            let mut c = base();
            c[k] = v;
            sign(c)
        };
        assert_eq!(
            check(&with("exp", json!(now() - 120)), &[]),
            Err(TokenError::Expired)
        );
        assert!(
            check(&with("exp", json!(now() - 30)), &[]).is_ok(),
            "leeway"
        );
        assert_eq!(
            check(&with("nbf", json!(now() + 600)), &[]),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            check(&with("iat", json!(now() + 600)), &[]),
            Err(TokenError::IssuedInFuture)
        );
        assert_eq!(
            check(&with("iss", json!("someone-else")), &[]),
            Err(TokenError::Issuer)
        );
        assert_eq!(
            check(&with("exp", json!("tomorrow")), &[]),
            Err(TokenError::Claim("exp"))
        );
        let no_sub = sign(json!({"iss": "adledger", "exp": now() + 600}));
        assert_eq!(check(&no_sub, &[]), Err(TokenError::Claim("sub")));
        let no_exp = sign(json!({"sub": "a", "iss": "adledger"}));
        assert_eq!(check(&no_exp, &[]), Err(TokenError::Claim("exp")));

        assert_eq!(
            check(&with("aud", json!("other")), &["app"]),
            Err(TokenError::Audience)
        );
        assert!(check(&with("aud", json!(["x", "app"])), &["app"]).is_ok());
        assert!(
            check(&with("client_id", json!("app")), &["app"]).is_ok(),
            "Cognito access tokens carry client_id"
        );
        assert_eq!(check(&sign(base()), &["app"]), Err(TokenError::Audience));
        assert!(check(&sign(base()), &[]).is_ok());
    }

    #[test]
    fn unsigned_and_tampered_tokens_are_refused() {
        let token = sign(json!({"sub": "a", "iss": "adledger", "exp": now() + 600}));
        let (head_payload, _) = token.rsplit_once('.').expect("three parts");
        assert_eq!(
            check(&format!("{head_payload}.AAAA"), &[]),
            Err(TokenError::Signature)
        );
        let none_header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"none","typ":"JWT"}"#,
        );
        let payload = head_payload.split_once('.').expect("payload").1;
        let unsigned = format!("{none_header}.{payload}.");
        assert!(check(&unsigned, &[]).is_err(), "alg none");
        assert_eq!(check("not a token", &[]), Err(TokenError::Malformed));
    }
}
