//! A deliverer's save that an operator's change got to first: what survives of both.
//!
//! A deliverer holds its checkpoint in memory between saves (see `saving`), and an
//! operator's change (pause, rotate a secret, redeliver dead letters) is a conditional
//! write of the same record. When the operator's write lands between two saves, the
//! deliverer's next save is refused (a stale revision). Dropping the deliverer's copy
//! then would deliver again every event it had acknowledged since its last save — a
//! rotation right after a delivery would send that event a second time, signed twice.
//! [`rebase`] keeps both instead: the operator's record, with the progress the deliverer
//! made on it. Only a seek (a new epoch) discards the deliverer's copy: it asked for a
//! different position on purpose.

use crate::error::{Error, Result};
use crate::feed::{EventId, Position};

use super::model::{Subscription, SubscriptionState};
use super::store::SubscriptionStore;

/// Rebased saves tried before a deliverer gives up and starts again from the stored
/// record: each lost race means another writer landed, and operators write rarely.
const SAVE_ATTEMPTS: usize = 8;

/// Saves a deliverer's copy `ours` with a conditional replace, [`rebase`]d onto the
/// stored record when another write landed first, and makes `ours` what was stored;
/// `false` when the deliverer must stop and start again from the store (the record was
/// deleted or sought to).
pub async fn save_progress(store: &dyn SubscriptionStore, ours: &mut Subscription) -> Result<bool> {
    let mut rebased: Option<Subscription> = None;
    let mut attempts = 1;
    loop {
        match store.replace(rebased.as_ref().unwrap_or(ours)).await {
            Ok(stored) => {
                *ours = stored;
                return Ok(true);
            }
            Err(Error::Conflict { .. }) if attempts < SAVE_ATTEMPTS => attempts += 1,
            Err(Error::NotFound { .. }) => return Ok(false),
            Err(other) => return Err(other),
        }
        let Some(stored) = store.get(&ours.name).await? else {
            return Ok(false);
        };
        rebased = rebase(ours, &stored);
        if rebased.is_none() {
            return Ok(false);
        }
    }
}

/// `ours` (a deliverer's copy, read at an older revision) applied onto `stored` (the
/// record as it is now), to be written at `stored`'s revision; `None` when `ours` must
/// be dropped: `stored` was sought to (a new epoch), so the deliverer starts again from
/// it.
///
/// From `ours`, the delivery's own facts: the checkpoint when it is further, the dead
/// letters recorded past the stored checkpoint (earlier ones are stored already, or an
/// operator removed them on purpose), and a stop for failure (blocked, or disabled by a
/// 410) unless the operator stopped it too. Everything else — the sink, the filter, the
/// policy, an operator's state — is `stored`'s.
pub fn rebase(ours: &Subscription, stored: &Subscription) -> Option<Subscription> {
    if ours.epoch != stored.epoch || ours.name != stored.name {
        return None;
    }
    let mut merged = stored.clone();
    if ours.checkpoint > stored.checkpoint {
        merged.checkpoint = ours.checkpoint;
        merged.last_error.clone_from(&ours.last_error);
    }
    let unsaved = ours.dead_letters.iter().filter(|id| {
        EventId::parse(id).is_some_and(|event| {
            let at = Position {
                block: event.sequence,
                index: event.index,
            };
            at >= stored.checkpoint && !stored.dead_letters.contains(id)
        })
    });
    merged.dead_letter(unsaved.cloned().collect::<Vec<_>>());
    if stored.state == SubscriptionState::Active && ours.state != SubscriptionState::Active {
        merged.state = ours.state;
        merged.last_error.clone_from(&ours.last_error);
    }
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::{FailurePolicy, RetrySchedule, Sink, WebhookSink};

    fn record() -> Subscription {
        let sink = Sink::Webhook(WebhookSink {
            url: "http://127.0.0.1:9/hook".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            batch_size: 1,
            timeout_ms: 1_000,
            retry: RetrySchedule::default(),
            previous_secret: None,
        });
        Subscription {
            name: "s".into(),
            types: Vec::new(),
            publisher_id: None,
            sink,
            state: SubscriptionState::Active,
            on_failure: FailurePolicy::DeadLetter,
            checkpoint: Position { block: 5, index: 0 },
            epoch: 1,
            revision: 7,
            dead_letters: vec!["00000000000000000001-0000".into()],
            last_error: None,
        }
    }

    fn at(block: u64) -> Position {
        Position { block, index: 0 }
    }

    #[test]
    fn an_operators_change_keeps_the_deliverers_progress() {
        let mut ours = record();
        ours.checkpoint = at(9);
        let mut stored = record();
        stored.revision = 8;
        stored.state = SubscriptionState::Paused;
        let merged = rebase(&ours, &stored).unwrap_or_else(|| panic!("same epoch"));
        assert_eq!(merged.checkpoint, at(9));
        assert_eq!(merged.revision, 8, "written at the stored revision");
        assert_eq!(merged.state, SubscriptionState::Paused, "the pause stays");
    }

    #[test]
    fn a_seek_drops_the_deliverers_copy() {
        let mut ours = record();
        ours.checkpoint = at(9);
        let mut stored = record();
        stored.epoch = 2;
        stored.checkpoint = at(0);
        assert_eq!(rebase(&ours, &stored), None);
    }

    #[test]
    fn the_checkpoint_never_goes_back() {
        let ours = record();
        let mut stored = record();
        stored.checkpoint = at(8);
        stored.last_error = Some("newer".into());
        let merged = rebase(&ours, &stored).unwrap_or_else(|| panic!("same epoch"));
        assert_eq!(merged.checkpoint, at(8));
        assert_eq!(merged.last_error.as_deref(), Some("newer"));
    }

    #[test]
    fn only_dead_letters_past_the_stored_checkpoint_are_added() {
        let mut ours = record();
        ours.dead_letters = vec![
            "00000000000000000001-0000".into(),
            "00000000000000000003-0000".into(),
            "00000000000000000006-0002".into(),
        ];
        ours.checkpoint = at(7);
        let mut stored = record();
        // An operator redelivered and removed 1; 3 is behind the stored checkpoint.
        stored.dead_letters.clear();
        let merged = rebase(&ours, &stored).unwrap_or_else(|| panic!("same epoch"));
        assert_eq!(merged.dead_letters, ["00000000000000000006-0002"]);
    }

    #[test]
    fn a_failure_stop_is_kept_unless_the_operator_stopped_it_too() {
        let mut ours = record();
        ours.state = SubscriptionState::Blocked;
        ours.last_error = Some("500".into());
        let mut stored = record();
        let merged = rebase(&ours, &stored).unwrap_or_else(|| panic!("same epoch"));
        assert_eq!(merged.state, SubscriptionState::Blocked);
        assert_eq!(merged.last_error.as_deref(), Some("500"));
        stored.state = SubscriptionState::Paused;
        let merged = rebase(&ours, &stored).unwrap_or_else(|| panic!("same epoch"));
        assert_eq!(merged.state, SubscriptionState::Paused);
    }

    #[tokio::test]
    async fn a_save_after_an_operators_write_lands_rebased() {
        use crate::subscription::MemorySubscriptionStore;
        let store = MemorySubscriptionStore::default();
        assert!(store.create(&record()).await.unwrap_or(false));
        let read = store.get("s").await.ok().flatten();
        let mut ours = read.clone().unwrap_or_else(|| panic!("created"));
        let mut paused = read.unwrap_or_else(|| panic!("created"));
        paused.state = SubscriptionState::Paused;
        let paused = store
            .replace(&paused)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ours.checkpoint = at(9);
        assert!(
            store.replace(&ours).await.is_err(),
            "a plain save loses the race"
        );
        let mut saved = ours.clone();
        let kept = save_progress(&store, &mut saved).await;
        assert_eq!(kept.ok(), Some(true), "rebased, not dropped");
        assert_eq!(saved.checkpoint, at(9));
        assert_eq!(saved.state, SubscriptionState::Paused);
        assert_eq!(saved.revision, paused.revision + 1);

        let mut sought = saved.clone();
        sought.epoch += 1;
        sought.checkpoint = at(0);
        store
            .replace(&sought)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ours.checkpoint = at(10);
        ours.revision = saved.revision;
        let seek = save_progress(&store, &mut ours.clone()).await;
        assert_eq!(seek.ok(), Some(false), "a seek wins");
        assert!(store.delete("s").await.unwrap_or(false));
        let delete = save_progress(&store, &mut ours).await;
        assert_eq!(delete.ok(), Some(false), "so does a delete");
    }
}
