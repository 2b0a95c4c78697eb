//! Conformance of [`SubscriptionStore`]s: one function per behaviour, each given a way to
//! open the store under test (opening again must see what was written before).

use std::sync::Arc;

use crate::error::Error;
use crate::feed::Position;
use crate::subscription::{
    FailurePolicy, RetrySchedule, Sink, Subscription, SubscriptionState, SubscriptionStore,
    WebhookSink,
};

/// A subscription named `name` at the start of the journal.
pub fn sample_subscription(name: &str) -> Subscription {
    Subscription {
        name: name.into(),
        types: vec![crate::feed::AD_CREATED.into()],
        publisher_id: Some("acme".into()),
        sink: Sink::Webhook(WebhookSink {
            url: "http://127.0.0.1:9/hook".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            batch_size: 1,
            timeout_ms: 1000,
            retry: RetrySchedule::default(),
            previous_secret: None,
        }),
        state: SubscriptionState::Active,
        on_failure: FailurePolicy::DeadLetter,
        checkpoint: Position::START,
        epoch: 0,
        revision: 0,
        dead_letters: Vec::new(),
        last_error: None,
    }
}

/// Create, get, list (by name), a taken name refused, delete.
pub async fn subscriptions_create_get_list_delete(open: &dyn Fn() -> Arc<dyn SubscriptionStore>) {
    let store = open();
    assert!(store.list().await.expect("store").is_empty());
    assert!(
        store
            .create(&sample_subscription("b"))
            .await
            .expect("store")
    );
    assert!(
        store
            .create(&sample_subscription("a"))
            .await
            .expect("store")
    );
    let mut other = sample_subscription("a");
    other.types.clear();
    assert!(
        !store.create(&other).await.expect("store"),
        "a taken name is refused"
    );
    let got = store.get("a").await.expect("store").expect("store");
    assert_eq!(got, sample_subscription("a"), "the first create stays");
    let names: Vec<String> = store
        .list()
        .await
        .expect("store")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert!(store.delete("a").await.expect("store"));
    assert!(!store.delete("a").await.expect("store"));
    assert!(store.get("a").await.expect("store").is_none());
    assert!(matches!(
        store.replace(&sample_subscription("a")).await,
        Err(Error::NotFound { .. })
    ));
}

/// Replace is conditional on the revision; the checkpoint never regresses within an
/// epoch; a seek (a raised epoch) may rewind it; a refused write changes nothing.
pub async fn subscriptions_checkpoint_never_moves_backwards(
    open: &dyn Fn() -> Arc<dyn SubscriptionStore>,
) {
    let store = open();
    store
        .create(&sample_subscription("s"))
        .await
        .expect("store");
    let mut sub = store.get("s").await.expect("store").expect("store");
    sub.checkpoint = Position { block: 5, index: 1 };
    let stored = store.replace(&sub).await.expect("store");
    assert_eq!(stored.revision, 1);
    // A stale revision is a conflict.
    let mut stale = sub.clone();
    stale.checkpoint = Position { block: 9, index: 0 };
    assert!(matches!(
        store.replace(&stale).await,
        Err(Error::Conflict { .. })
    ));
    // Backwards within the epoch is refused, even with the right revision.
    let mut back = stored.clone();
    back.checkpoint = Position { block: 5, index: 0 };
    assert!(matches!(
        store.replace(&back).await,
        Err(Error::Invalid { field, .. }) if field == "checkpoint"
    ));
    assert_eq!(
        store.get("s").await.expect("store").expect("store"),
        stored,
        "nothing written"
    );
    // The same checkpoint (a state change) is fine.
    let mut paused = stored.clone();
    paused.state = SubscriptionState::Paused;
    let paused = store.replace(&paused).await.expect("store");
    // A seek raises the epoch and may rewind.
    let mut seek = paused.clone();
    seek.epoch += 1;
    seek.checkpoint = Position::START;
    let sought = store.replace(&seek).await.expect("store");
    assert_eq!(sought.checkpoint, Position::START);
    // A writer of the old epoch cannot undo the seek.
    let mut old = sought.clone();
    old.epoch -= 1;
    old.checkpoint = Position { block: 7, index: 0 };
    assert!(store.replace(&old).await.is_err());
    assert_eq!(store.get("s").await.expect("store").expect("store"), sought);
}

/// What was written is there after the store is opened again.
pub async fn subscriptions_survive_reopen(open: &dyn Fn() -> Arc<dyn SubscriptionStore>) {
    let expected = {
        let store = open();
        store
            .create(&sample_subscription("kept"))
            .await
            .expect("store");
        let mut sub = store.get("kept").await.expect("store").expect("store");
        sub.checkpoint = Position {
            block: 42,
            index: 3,
        };
        sub.dead_letter(["00000000000000000001-0000".to_string()]);
        store.replace(&sub).await.expect("store")
    };
    let store = open();
    assert_eq!(store.get("kept").await.expect("store"), Some(expected));
}

/// Expands to one `#[tokio::test]` per subscription-store behaviour; `$open` builds,
/// once per test, a closure that opens the store under test.
#[macro_export]
macro_rules! subscription_store_tests {
    ($open:expr) => {
        $crate::subscription_store_tests!(@each $open;
            subscriptions_create_get_list_delete,
            subscriptions_checkpoint_never_moves_backwards,
            subscriptions_survive_reopen,
        );
    };
    (@each $open:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let open = $open;
                $crate::testkit::subscriptions::$name(&open).await;
            }
        )*
    };
}
