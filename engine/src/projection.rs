//! Catch-up projections: read the journal from a read model's checkpoint, in sequence
//! order, and apply the revisions in batches.
//!
//! The checkpoint is stored by the read model together with (or, for search, after) the
//! writes it covers, and applying is idempotent by version, so a crash at any point
//! converges: the next run resumes from the stored checkpoint and re-applies at most one
//! batch.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::block;
use crate::error::Result;
use crate::ports::{Journal, SearchIndex, StateStore};
use crate::revision::Revision;

/// A read model fed by a projector.
#[derive(Debug, Clone)]
pub enum ReadModel {
    /// The state store.
    State(Arc<dyn StateStore>),
    /// The search index.
    Search(Arc<dyn SearchIndex>),
}

impl ReadModel {
    /// `state` or `search`, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ReadModel::State(_) => "state",
            ReadModel::Search(_) => "search",
        }
    }

    /// The next sequence the model has not applied.
    pub async fn checkpoint(&self) -> Result<u64> {
        match self {
            ReadModel::State(s) => s.checkpoint().await,
            ReadModel::Search(s) => s.checkpoint().await,
        }
    }

    async fn apply(&self, revisions: &[Revision], checkpoint: u64) -> Result<()> {
        match self {
            ReadModel::State(s) => s.apply(revisions, checkpoint).await,
            ReadModel::Search(s) => s.apply(revisions, checkpoint).await,
        }
    }
}

/// Feeds one read model from the journal.
#[derive(Debug, Clone)]
pub struct Projector {
    journal: Arc<dyn Journal>,
    model: ReadModel,
    batch_blocks: usize,
}

impl Projector {
    /// A projector applying up to `batch_blocks` blocks per write.
    pub fn new(journal: Arc<dyn Journal>, model: ReadModel, batch_blocks: usize) -> Self {
        Projector {
            journal,
            model,
            batch_blocks: batch_blocks.max(1),
        }
    }

    /// Applies the next batch after the model's checkpoint; returns the new checkpoint and
    /// how many blocks were applied (0 when the model is caught up).
    pub async fn step(&self) -> Result<(u64, usize)> {
        let from = self.model.checkpoint().await?;
        let stored = self.journal.read_blocks(from, self.batch_blocks).await?;
        if stored.is_empty() {
            return Ok((from, 0));
        }
        let mut revisions = Vec::with_capacity(stored.len());
        for encoded in &stored {
            revisions.extend(block::open(encoded)?.revisions);
        }
        let next = from + stored.len() as u64;
        self.model.apply(&revisions, next).await?;
        Ok((next, stored.len()))
    }

    /// Applies batches until the model has every block; returns the final checkpoint.
    pub async fn catch_up(&self) -> Result<u64> {
        loop {
            let (next, applied) = self.step().await?;
            if applied == 0 {
                return Ok(next);
            }
        }
    }

    /// Runs until `shutdown` turns true: catches up whenever `committed` moves, publishing
    /// progress. Storage errors are logged and retried with backoff; they never end the
    /// loop, because a projection that silently stops is worse than a noisy one.
    pub(crate) async fn run(
        self,
        mut committed: watch::Receiver<u64>,
        progress: watch::Sender<u64>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_millis(10);
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.step().await {
                Ok((next, applied)) => {
                    backoff = Duration::from_millis(10);
                    progress.send_replace(next);
                    if applied > 0 {
                        continue;
                    }
                    // Caught up: wait for the next commit (or shutdown).
                    let seen = *committed.borrow_and_update();
                    if seen > next {
                        continue;
                    }
                    tokio::select! {
                        changed = committed.changed() => if changed.is_err() { return },
                        _ = shutdown.changed() => {}
                    }
                }
                Err(error) => {
                    tracing::error!(model = self.model.name(), %error, "projection failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
