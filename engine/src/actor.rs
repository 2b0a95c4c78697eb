//! Actors: who committed a change, as the journal records it.
//!
//! The server authenticates callers (JWT) and hands the engine an [`Actor`]; the committer
//! writes it into the hashed block header, so "who did this" is as tamper-evident as
//! "what changed". The engine knows nothing of tokens: an actor is a subject and the
//! issuer that vouched for it, the two claims that identify a caller across key rotations
//! and across identity providers (a `sub` is only unique within its issuer).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest subject recorded, in bytes. Identity providers use far less (Cognito: a
/// 36-character UUID); the bound keeps one caller from growing every header it writes.
pub const MAX_SUBJECT_BYTES: usize = 255;

/// The longest issuer recorded, in bytes (a URL such as
/// `https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123`).
pub const MAX_ISSUER_BYTES: usize = 512;

/// The caller a block was committed for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// The token's `sub`: the caller, unique within its issuer.
    pub sub: String,
    /// The token's `iss`: who authenticated the caller.
    pub iss: String,
}

impl Actor {
    /// An actor, checked: both parts non-empty, within their bounds, and free of control
    /// characters (they are shown in logs and JSON as they are).
    pub fn new(sub: impl Into<String>, iss: impl Into<String>) -> Result<Actor> {
        let actor = Actor {
            sub: sub.into(),
            iss: iss.into(),
        };
        check("sub", &actor.sub, MAX_SUBJECT_BYTES)?;
        check("iss", &actor.iss, MAX_ISSUER_BYTES)?;
        Ok(actor)
    }
}

fn check(field: &str, text: &str, max: usize) -> Result<()> {
    if text.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if text.len() > max {
        return Err(Error::invalid(
            field,
            format!("is {} bytes long; at most {max} are recorded", text.len()),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_actor_needs_both_parts_within_bounds() {
        assert!(Actor::new("alice", "https://issuer.example").is_ok());
        assert!(Actor::new("", "iss").is_err());
        assert!(Actor::new("alice", "").is_err());
        assert!(Actor::new("a".repeat(MAX_SUBJECT_BYTES + 1), "iss").is_err());
        assert!(Actor::new("alice", "i".repeat(MAX_ISSUER_BYTES + 1)).is_err());
        assert!(Actor::new("ali\nce", "iss").is_err());
        assert!(Actor::new("a".repeat(MAX_SUBJECT_BYTES), "i".repeat(MAX_ISSUER_BYTES)).is_ok());
    }
}
