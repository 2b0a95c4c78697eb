//! The port that keeps subscriptions beside the journal.

use async_trait::async_trait;

use crate::error::{Error, Result, VersionExpectation};

use super::model::Subscription;

/// Where subscriptions and their checkpoints live: beside the journal, so they survive
/// what the journal survives.
///
/// # Contract
///
/// - [`create`](Self::create) stores a new record with `revision` 0, or answers `false`
///   (storing nothing) when the name is taken.
/// - [`replace`](Self::replace) is one conditional write: it succeeds only when the
///   stored record's `revision` equals `new.revision` and [`check_replace`] accepts the
///   change, and stores `new` with `revision + 1`. A stale revision is
///   [`Error::Conflict`]; a checkpoint moved backwards within one epoch is
///   [`Error::Invalid`] (field `checkpoint`); a missing record is [`Error::NotFound`].
///   Nothing is written when it fails.
/// - An acknowledged write survives a crash of the process (kill -9).
/// - [`list`](Self::list) answers every record, ordered by name.
#[async_trait]
pub trait SubscriptionStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new subscription; `false` if the name is taken.
    async fn create(&self, subscription: &Subscription) -> Result<bool>;
    /// The subscription named `name`.
    async fn get(&self, name: &str) -> Result<Option<Subscription>>;
    /// Every subscription, by name.
    async fn list(&self) -> Result<Vec<Subscription>>;
    /// Conditionally replaces a subscription (see the contract); answers what is stored.
    async fn replace(&self, new: &Subscription) -> Result<Subscription>;
    /// Deletes a subscription; `false` if there was none.
    async fn delete(&self, name: &str) -> Result<bool>;
}

/// Whether `new` may replace `stored`: the same revision, and a checkpoint that does not
/// move backwards unless the epoch was raised (a seek). Every store calls this.
pub fn check_replace(stored: &Subscription, new: &Subscription) -> Result<()> {
    if stored.revision != new.revision {
        return Err(Error::Conflict {
            expected: VersionExpectation::Version(new.revision),
            actual: VersionExpectation::Version(stored.revision),
        });
    }
    if new.epoch < stored.epoch {
        return Err(Error::invalid(
            "epoch",
            format!(
                "the epoch may not go back from {} to {}",
                stored.epoch, new.epoch
            ),
        ));
    }
    if new.epoch == stored.epoch && new.checkpoint < stored.checkpoint {
        return Err(Error::invalid(
            "checkpoint",
            format!(
                "the checkpoint never moves backwards ({:?} is before the stored {:?}); \
                 seek to rewind",
                new.checkpoint.token(),
                stored.checkpoint.token()
            ),
        ));
    }
    Ok(())
}
