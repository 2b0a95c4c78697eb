//! The request and response headers of the ad routes: `If-Match`, `If-None-Match`,
//! `Idempotency-Key`, `ETag` and `X-Ledger-Sequence`.
//!
//! Versions are the ETags: version 3 of an ad is `"3"`. Clients copy ETags around in
//! many shapes, so `If-Match` accepts `"3"`, `W/"3"`, a bare `3` and `*`; anything
//! else is a 400 rather than a silently ignored precondition.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::error::ApiError;

/// Carries the journal sequence of a write, so a client can tell which block holds it.
pub const X_LEDGER_SEQUENCE: HeaderName = HeaderName::from_static("x-ledger-sequence");
/// Makes a create safe to retry.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a create answered from an earlier request with the same `Idempotency-Key`.
pub const IDEMPOTENCY_REPLAYED: HeaderName = HeaderName::from_static("idempotency-replayed");

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// What an `If-Match` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// No header: write whatever the current version is.
    Absent,
    /// `*`: the ad must exist (it always must for an update or delete).
    Any,
    /// The ad must be at exactly this version.
    Version(u64),
}

impl IfMatch {
    /// Reads the header; 400 if it is malformed.
    pub fn from_headers(headers: &HeaderMap) -> Result<IfMatch, ApiError> {
        let Some(value) = headers.get(header::IF_MATCH) else {
            return Ok(IfMatch::Absent);
        };
        let malformed = || {
            ApiError::invalid_header(
                "If-Match",
                format!(
                    "If-Match must be an ETag such as \"3\" (the ad's version), W/\"3\", 3 or *, \
                     got {:?}",
                    String::from_utf8_lossy(value.as_bytes())
                ),
            )
        };
        let text = value.to_str().map_err(|_| malformed())?.trim();
        if text == "*" {
            return Ok(IfMatch::Any);
        }
        parse_etag(text).map(IfMatch::Version).ok_or_else(malformed)
    }

    /// Whether the request carried a precondition at all.
    pub fn given(self) -> bool {
        self != IfMatch::Absent
    }

    /// The version the engine must check, if any.
    pub fn expected_version(self) -> Option<u64> {
        match self {
            IfMatch::Version(v) => Some(v),
            IfMatch::Absent | IfMatch::Any => None,
        }
    }
}

/// Parses one ETag (`"3"`, `W/"3"` or `3`) into a version.
fn parse_etag(text: &str) -> Option<u64> {
    let text = text.strip_prefix("W/").unwrap_or(text);
    let digits = match text.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => text,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether `If-None-Match` names `version` (or `*`), so a GET can answer 304.
///
/// A malformed header simply does not match: it can only cost the client a full body.
pub fn if_none_match_hits(headers: &HeaderMap, version: u64) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || parse_etag(tag) == Some(version))
}

/// Reads `Idempotency-Key`: 1–255 visible ASCII characters, else 400.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let visible = bytes.iter().all(|b| (0x21..=0x7e).contains(b));
    if bytes.is_empty() || bytes.len() > MAX_IDEMPOTENCY_KEY || !visible {
        return Err(ApiError::invalid_header(
            "Idempotency-Key",
            format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters \
                 (no spaces), such as a UUID; got {} bytes",
                bytes.len()
            ),
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// The ETag of a version: `"3"`.
pub fn etag(version: u64) -> HeaderValue {
    // Digits and quotes are always a valid header value.
    HeaderValue::try_from(format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: HeaderName, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn if_match_shapes() {
        let parse = |v| IfMatch::from_headers(&with(header::IF_MATCH, v)).ok();
        assert_eq!(parse("\"3\""), Some(IfMatch::Version(3)));
        assert_eq!(parse("W/\"3\""), Some(IfMatch::Version(3)));
        assert_eq!(parse("3"), Some(IfMatch::Version(3)));
        assert_eq!(parse(" * "), Some(IfMatch::Any));
        assert_eq!(parse("\"abc\""), None);
        assert_eq!(parse("\"3"), None);
        assert_eq!(parse("-1"), None);
        assert_eq!(parse("\"1\", \"2\""), None);
        assert_eq!(parse("99999999999999999999999"), None);
        assert_eq!(
            IfMatch::from_headers(&HeaderMap::new()).ok(),
            Some(IfMatch::Absent)
        );
    }

    #[test]
    fn if_none_match_lists() {
        assert!(if_none_match_hits(
            &with(header::IF_NONE_MATCH, "\"1\", W/\"2\""),
            2
        ));
        assert!(if_none_match_hits(&with(header::IF_NONE_MATCH, "*"), 7));
        assert!(!if_none_match_hits(
            &with(header::IF_NONE_MATCH, "\"1\""),
            2
        ));
        assert!(!if_none_match_hits(&HeaderMap::new(), 0));
    }

    #[test]
    fn idempotency_keys() {
        let key = |v| idempotency_key(&with(IDEMPOTENCY_KEY, v));
        assert_eq!(key("abc-123").ok().flatten().as_deref(), Some("abc-123"));
        assert!(key("has space").is_err());
        assert!(key("").is_err());
        assert_eq!(idempotency_key(&HeaderMap::new()).ok(), Some(None));
    }
}
