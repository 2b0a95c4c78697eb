//! Runs blocking storage calls off the async runtime.
//!
//! sled blocks on disk I/O (and the journal on fsync); running it on the
//! runtime's worker threads would stall every other task on that thread, so each call
//! goes to tokio's blocking pool.

use adledger_engine::Result;

use crate::error::LocalError;

/// Runs `work` on the blocking pool and converts its error at the port boundary.
pub(crate) async fn run<T, F>(backend: &'static str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, LocalError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Into::into),
        Err(source) => Err(LocalError::Task { backend, source }.into()),
    }
}
