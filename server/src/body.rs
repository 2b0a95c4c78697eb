//! Reading a JSON request body: media type, size limit, syntax — each with its own
//! status (415, 413, 400) and a problem document, instead of axum's plain-text
//! `Json` rejections.
//!
//! The body is parsed into a `serde_json::Value`; the workspace enables serde_json's
//! `arbitrary_precision`, so a price such as `19.99` stays the digits "19.99" until the
//! engine turns it into a decimal. Nothing here touches a float.

use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::{HeaderMap, header};
use futures::StreamExt;
use serde_json::Value;

use crate::error::ApiError;

/// The largest request body accepted, in bytes (64 KiB). Also enforced up front on
/// `Content-Length` by the `limit_body` middleware in [`crate::app`](mod@crate::app).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Checks the media type, reads at most [`MAX_BODY_BYTES`] and parses the JSON.
pub async fn read_json(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    check_json_content_type(headers)?;
    let bytes = read_limited(body, MAX_BODY_BYTES).await?;
    parse_json(&bytes)
}

/// Accepts `application/json` and any `application/…+json`, with or without parameters.
fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::unsupported_media_type(
            "the request has a body but no Content-Type; send the ad as JSON with \
             `Content-Type: application/json`"
                .into(),
        ));
    };
    let text = value.to_str().unwrap_or_default();
    if is_json_media_type(text) {
        return Ok(());
    }
    Err(ApiError::unsupported_media_type(format!(
        "Content-Type {text:?} is not JSON; send the ad as JSON with \
         `Content-Type: application/json`"
    )))
}

/// Whether a `Content-Type` value names JSON.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some(subtype) = essence.strip_prefix("application/") else {
        return false;
    };
    subtype == "json" || (subtype.ends_with("+json") && subtype.len() > "+json".len())
}

/// Collects the body, failing with 413 once it passes `limit` (a chunked body has no
/// `Content-Length` to check up front).
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::unreadable_body())?;
        if bytes.len() + chunk.len() > limit {
            let seen = bytes.len() + chunk.len();
            drop(bytes);
            return Err(too_large_after_draining(stream, seen).await);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Most bytes of an oversized body read and thrown away so the client gets its 413.
///
/// Answering while the client is still sending makes the server close a socket with
/// unread data, and the kernel then resets the connection, which destroys the 413 before
/// the client reads it. Draining a bounded amount (and for a bounded time) lets ordinary
/// clients see the problem document; anything bigger gets the 413 and a closed
/// connection.
pub const DRAIN_LIMIT_BYTES: u64 = 1024 * 1024;
/// Longest time spent draining an oversized body.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Discards what is left of an oversized body, then builds its 413; `seen` bytes were
/// already read.
async fn too_large_after_draining(stream: BodyDataStream, seen: usize) -> ApiError {
    let drained = drain(stream, DRAIN_LIMIT_BYTES.saturating_sub(seen as u64)).await;
    let error = ApiError::body_too_large(MAX_BODY_BYTES);
    if drained {
        error
    } else {
        error.closing_connection()
    }
}

/// Reads and discards up to `limit` more bytes; `true` if the body ended within the limit
/// and the time bound, so the connection can be reused.
pub async fn drain(mut stream: BodyDataStream, limit: u64) -> bool {
    let discard = async {
        let mut read = 0u64;
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                return false;
            };
            read += chunk.len() as u64;
            if read > limit {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIMEOUT, discard)
        .await
        .unwrap_or(false)
}

/// Parses JSON text, reporting the parser's line and column on failure.
fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice::<Value>(bytes).map_err(|e| {
        ApiError::malformed_json(format!(
            "the request body is not valid JSON: {e}; send one JSON object such as \
             {{\"adTitle\": \"Bike\", \"price\": 19.99}}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/merge-patch+json"));
        assert!(!is_json_media_type("application/+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/x-www-form-urlencoded"));
        assert!(!is_json_media_type("text/json"));
    }

    #[test]
    fn parse_errors_carry_line_and_column() {
        let Err(err) = parse_json(b"{\n  \"adTitle\": ,\n}") else {
            panic!("expected an error");
        };
        assert!(
            err.problem().detail.contains("line 2 column"),
            "{}",
            err.problem().detail
        );
    }

    #[test]
    fn prices_keep_their_digits() {
        let value = parse_json(br#"{"price": 19.99}"#).unwrap_or_default();
        assert_eq!(value["price"].to_string(), "19.99");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let big = Body::from(vec![b' '; 11]);
        let err = read_limited(big, 10).await.err();
        assert!(err.as_ref().is_some_and(|e| !e.closes_connection()));
        assert_eq!(
            err.map(|e| e.status()),
            Some(axum::http::StatusCode::PAYLOAD_TOO_LARGE)
        );
        let ok = read_limited(Body::from(vec![b' '; 10]), 10).await;
        assert!(ok.is_ok());
    }
}
