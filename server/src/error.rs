//! `ApiError`: every way a request can fail, rendered as an RFC 9457 problem document.
//!
//! Handlers return `Result<Response, ApiError>`; nothing else in the server builds an
//! error response, so every failure a client sees has the same shape
//! (`{type, title, status, detail, instance, requestId, field?}`) and the
//! `engine::Error` → status mapping lives in one reviewed place ([`ApiError::from_engine`]).
//!
//! An `ApiError` does not know the request it answers, so it renders without `instance`
//! and `requestId` and also leaves its [`Problem`] in the response extensions; the
//! `stamp_problem` middleware in [`crate::app`](mod@crate::app) fills both in from the request.

use std::error::Error as _;

use adledger_engine::Error;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The `Retry-After` of every 503, in seconds: shed, timed out, shutting down or
/// read models behind.
pub const RETRY_AFTER_SECS: u32 = 1;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A request failure: its status and the sentence that tells the client how to fix it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Boxed: errors travel through every `Result` of a request, and most are `Ok`.
    problem: Box<Problem>,
    status: StatusCode,
    retry_after: Option<u32>,
    close: bool,
    /// The `WWW-Authenticate` challenge of a 401 or 403.
    challenge: Option<String>,
}

/// The RFC 9457 body of an error response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A relative URI naming the kind of problem (`/problems/invalid-field`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A short, fixed summary of the kind.
    pub title: &'static str,
    /// The HTTP status, repeated for clients that only keep the body.
    pub status: u16,
    /// What was wrong with this request and how to fix it.
    pub detail: String,
    /// The request path this problem occurred on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The `x-request-id` of the request, to find its log lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The offending field, query parameter or header, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    /// The JSON bytes of this document.
    pub fn to_body(&self) -> Vec<u8> {
        // Serializing plain strings and numbers cannot fail; an empty body is the
        // harmless fallback if it ever did.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: String) -> Self {
        ApiError {
            problem: Box::new(Problem {
                kind,
                title,
                status: status.as_u16(),
                detail,
                instance: None,
                request_id: None,
                field: None,
            }),
            status,
            retry_after: None,
            close: false,
            challenge: None,
        }
    }

    fn with_field(mut self, field: impl Into<String>) -> Self {
        self.problem.field = Some(field.into());
        self
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Asks for the connection to be closed after this answer (`Connection: close`):
    /// the request body was left unread, so the connection cannot carry another request.
    pub fn closing_connection(mut self) -> Self {
        self.close = true;
        self
    }

    /// Whether the answer closes the connection.
    pub fn closes_connection(&self) -> bool {
        self.close
    }

    /// The problem document this error renders.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// 501: the route exists but this backend cannot serve it.
    pub fn not_implemented(detail: String) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "/problems/not-implemented",
            "Not implemented on this backend",
            detail,
        )
    }

    /// 409: the resource named in the request already exists.
    pub fn already_exists(field: &str, detail: String) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "/problems/already-exists",
            "Already exists",
            detail,
        )
        .with_field(field)
    }

    /// 401: no valid caller identity; `challenge` is the `WWW-Authenticate` value.
    pub fn unauthorized(detail: String, challenge: String) -> Self {
        let mut error = Self::new(
            StatusCode::UNAUTHORIZED,
            "/problems/unauthorized",
            "Unauthorized",
            detail,
        );
        error.challenge = Some(challenge);
        error
    }

    /// 403: a valid caller without the right to do this.
    pub fn forbidden(detail: String) -> Self {
        let mut error = Self::new(
            StatusCode::FORBIDDEN,
            "/problems/forbidden",
            "Forbidden",
            detail,
        );
        error.challenge = Some("Bearer realm=\"adledger\", error=\"insufficient_scope\"".into());
        error
    }

    /// 400: the body is not JSON at all.
    pub fn malformed_json(detail: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "/problems/malformed-json",
            "Malformed JSON",
            detail,
        )
    }

    /// 400: the body could not be read (the client stopped sending mid-body).
    pub fn unreadable_body() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "/problems/unreadable-body",
            "Unreadable body",
            "the request body could not be read to its end; send it again".into(),
        )
    }

    /// 400: a query parameter has a value the route cannot use.
    pub fn invalid_parameter(name: &str, detail: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "/problems/invalid-parameter",
            "Invalid query parameter",
            detail,
        )
        .with_field(name)
    }

    /// 400: a request header is malformed (`If-Match`, `Idempotency-Key`).
    pub fn invalid_header(name: &str, detail: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "/problems/invalid-header",
            "Invalid header",
            detail,
        )
        .with_field(name)
    }

    /// 404 for a path that names no resource.
    pub fn not_found(detail: String) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "/problems/not-found",
            "Not found",
            detail,
        )
    }

    /// 405 for a known path with a method it does not serve (axum adds `Allow`).
    pub fn method_not_allowed(detail: String) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "/problems/method-not-allowed",
            "Method not allowed",
            detail,
        )
    }

    /// 413: the body is over the limit.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "/problems/body-too-large",
            "Body too large",
            format!(
                "the request body is over the limit of {limit} bytes ({} KiB); send a smaller ad",
                limit / 1024
            ),
        )
    }

    /// 415: the body is not declared as JSON.
    pub fn unsupported_media_type(detail: String) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "/problems/unsupported-media-type",
            "Unsupported media type",
            detail,
        )
    }

    /// 422: a field breaks a domain rule.
    pub fn invalid_field(field: impl Into<String>, detail: String) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/invalid-field",
            "Invalid field",
            detail,
        )
        .with_field(field)
    }

    /// 408: the request body did not arrive within `limit` of its head. The connection
    /// is closed after the answer: the rest of the body was never read.
    pub fn body_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "/problems/body-timeout",
            "Request body timeout",
            format!(
                "the request body did not arrive within {} of the request head; send the \
                 whole body at once, then retry",
                humantime::format_duration(limit)
            ),
        )
        .closing_connection()
    }

    /// 503: more requests are in flight than the server takes; shed at once, not queued.
    pub fn overloaded() -> Self {
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "/problems/overloaded",
            "Overloaded",
            "the server has as many requests in flight as it takes; retry after the delay \
             in Retry-After"
                .into(),
        );
        err.retry_after = Some(RETRY_AFTER_SECS);
        err
    }

    /// 503: the request was not answered within `limit`. A write may still have been
    /// applied (it was not acknowledged, so a client must check or retry idempotently).
    pub fn timed_out(limit: std::time::Duration) -> Self {
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "/problems/request-timeout",
            "Request timed out",
            format!(
                "the server did not answer within {}; retry after the delay in Retry-After. \
                 A write may have been applied: GET the ad, or retry a create with the same \
                 Idempotency-Key",
                humantime::format_duration(limit)
            ),
        );
        err.retry_after = Some(RETRY_AFTER_SECS);
        err
    }

    /// 500 with a body that says nothing about the cause; the cause must already have
    /// been logged by the caller.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "/problems/internal",
            "Internal server error",
            "the server failed to handle this request; the failure has been logged under \
             this request's id. Retry later, and report the request id if it persists"
                .into(),
        )
    }

    /// Maps an engine error to its documented status.
    ///
    /// `if_match_given` says whether the request carried `If-Match`: a version conflict is
    /// then the client's stale precondition (412), otherwise a lost race (409).
    /// Internal failures are logged here, inside the request's tracing span (which holds
    /// the request id); their text never reaches the client.
    pub fn from_engine(error: Error, if_match_given: bool) -> Self {
        match error {
            Error::NotFound { .. } => Self::not_found(error.to_string()),
            Error::Gone { ref ad_id, version } => Self::new(
                StatusCode::GONE,
                "/problems/gone",
                "Gone",
                format!(
                    "ad {ad_id} was deleted (version {version}); its history stays readable \
                     with ?versions=true"
                ),
            ),
            Error::Conflict { expected, actual } if if_match_given => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "/problems/precondition-failed",
                "Precondition failed",
                format!(
                    "If-Match names version {expected}, but the ad is at version {actual}; \
                     GET the ad for its current ETag and apply your change to that"
                ),
            ),
            Error::Conflict { expected, actual } => Self::new(
                StatusCode::CONFLICT,
                "/problems/version-conflict",
                "Version conflict",
                format!(
                    "another write got there first (expected version {expected}, found \
                     {actual}); retry the request"
                ),
            ),
            Error::Invalid { field, reason } => {
                let detail = format!("invalid `{field}`: {reason}");
                Self::invalid_field(field, detail)
            }
            Error::TooLarge(what) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "/problems/too-large",
                "Too large",
                format!("{what}; send less in one request"),
            ),
            Error::StorageFull(reason) => {
                let mut err = Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "/problems/storage-full",
                    "Insufficient storage",
                    format!("{reason}; retry after the delay in Retry-After"),
                );
                err.retry_after = Some(RETRY_AFTER_SECS);
                err
            }
            Error::Unavailable(reason) => {
                let mut err = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "/problems/unavailable",
                    "Service unavailable",
                    format!("{reason}; retry after the delay in Retry-After"),
                );
                err.retry_after = Some(RETRY_AFTER_SECS);
                err
            }
            Error::Transient { .. } => {
                // The cause (table, endpoint, the service's code) is for the log only.
                tracing::warn!(error = %chain(&error), "storage temporarily failed; answered 503");
                let mut err = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "/problems/unavailable",
                    "Service unavailable",
                    "the storage did not answer or refused for now (throttling); retry after \
                     the delay in Retry-After. A write may have been applied: GET the ad, or \
                     retry a create with the same Idempotency-Key"
                        .into(),
                );
                err.retry_after = Some(RETRY_AFTER_SECS);
                err
            }
            other => {
                tracing::error!(error = %chain(&other), "internal error while handling request");
                Self::internal()
            }
        }
    }
}

/// An error and its sources, one line, for the log.
fn chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.problem.to_body()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(challenge) = self
            .challenge
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        response.extensions_mut().insert(*self.problem);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adledger_engine::VersionExpectation;

    #[test]
    fn conflict_is_412_with_if_match_and_409_without() {
        let conflict = || Error::Conflict {
            expected: VersionExpectation::Version(1),
            actual: VersionExpectation::Version(2),
        };
        assert_eq!(
            ApiError::from_engine(conflict(), true).status(),
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(
            ApiError::from_engine(conflict(), false).status(),
            StatusCode::CONFLICT
        );
    }

    #[test]
    fn invalid_names_the_field_and_internal_errors_leak_nothing() {
        let err = ApiError::from_engine(Error::invalid("price", "must be zero or more"), false);
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.problem().field.as_deref(), Some("price"));
        assert_eq!(
            err.problem().detail,
            "invalid `price`: must be zero or more"
        );

        let secret = Error::Corrupt("secret path /var/lib/x".into());
        let err = ApiError::from_engine(secret, false);
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.problem().detail.contains("secret"));
    }

    #[test]
    fn unavailable_carries_retry_after() {
        let response = ApiError::from_engine(Error::Unavailable("shutting down".into()), false)
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("1"))
        );
    }

    #[test]
    fn a_transient_storage_failure_is_503_with_retry_after_and_leaks_nothing() {
        let error = Error::transient("dynamodb", "GetItem on table secret-journal: throttled");
        let err = ApiError::from_engine(error, false);
        assert!(!err.problem().detail.contains("secret"));
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("1"))
        );
    }
}
