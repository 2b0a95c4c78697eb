//! Runs blocking index calls off the async runtime.
//!
//! tantivy blocks on disk I/O (a commit fsyncs about 16 times); running it on the
//! runtime's worker threads would stall every other task on that thread, so each call
//! goes to tokio's blocking pool.

use adledger_engine::Result;

use crate::error::IndexError;

/// Runs `work` on the blocking pool and converts its error at the port boundary.
pub(crate) async fn run<T, F>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, IndexError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Into::into),
        Err(source) => Err(IndexError::Task(source).into()),
    }
}
