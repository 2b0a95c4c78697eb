//! What `/readyz` answers and the cache that makes it cheap (see
//! [`crate::routes::health`]): its own module so [`crate::state`] can hold the cache
//! without depending on the routes.

use std::time::Instant;

use serde::Serialize;

/// The body of `/readyz`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// `ready`, or `unavailable` (with `error`).
    pub(crate) status: &'static str,
    /// The journal's next sequence, as read now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) journal_tip: Option<u64>,
    /// The state store's checkpoint, as read now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) state_checkpoint: Option<u64>,
    /// Why the stores could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// How old this answer is (answers are reused for a second).
    pub(crate) age_ms: u64,
}

/// The last `/readyz` check of a server, shared by its handlers: a lock held while one
/// call checks, so concurrent calls wait for that check instead of sending their own.
pub type ReadinessCache = std::sync::Arc<tokio::sync::Mutex<Option<(Instant, Readiness)>>>;
