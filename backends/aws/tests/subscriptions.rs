//! The DynamoDB subscription store against a real DynamoDB server (DynamoDB Local via
//! `scripts/dynamodb-local.sh`): the engine's subscription conformance suite, then what
//! is particular to DynamoDB: two stores (two processes) racing one revision, a full
//! dead-letter list in one item (its size measured), listing past DynamoDB's 1 MB page,
//! and a record too large refused whole.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;

use adledger_aws::subscriptions::{MAX_ITEM_BYTES, stored_size};
use adledger_aws::{DynamoSubscriptionStore, TableNames};
use adledger_engine::Error;
use adledger_engine::feed::Position;
use adledger_engine::subscription::{MAX_DEAD_LETTERS, SubscriptionStore};
use adledger_engine::testkit::subscriptions::sample_subscription;

/// A fresh set of tables and a client.
async fn fresh() -> (adledger_aws::aws_sdk_dynamodb::Client, TableNames) {
    let client = support::client(&support::endpoint());
    let names = support::fresh_tables(&client).await.expect("tables");
    (client, names)
}

async fn store(
    client: &adledger_aws::aws_sdk_dynamodb::Client,
    names: &TableNames,
) -> DynamoSubscriptionStore {
    DynamoSubscriptionStore::open(client.clone(), &names.subscriptions)
        .await
        .expect("the subscriptions table exists")
}

mod conformance {
    use super::*;

    // Fresh tables per test; each open is a new store on them, as a restarted process
    // would open it (the conformance functions call `open` from async code, so the async
    // `open` runs on this multi-threaded runtime via `block_in_place`).
    adledger_engine::subscription_store_tests!({
        let (client, names) = fresh().await;
        move || -> Arc<dyn SubscriptionStore> {
            let (client, names) = (client.clone(), names.clone());
            tokio::task::block_in_place(move || {
                tokio::runtime::Handle::current()
                    .block_on(async move { Arc::new(store(&client, &names).await) })
            })
        }
    });
}

#[tokio::test]
async fn opening_without_the_table_names_aws_init() {
    let client = support::client(&support::endpoint());
    let err = DynamoSubscriptionStore::open(client, "no-such-table-subscriptions")
        .await
        .expect_err("no table");
    assert!(err.to_string().contains("adledger aws init"), "{err}");
}

/// Two processes replace the same revision at once: exactly one wins, the other gets
/// `Conflict`, and the stored checkpoint is the winner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_processes_replacing_one_revision_exactly_one_wins() {
    let (client, names) = fresh().await;
    let a = store(&client, &names).await;
    let b = store(&client, &names).await;
    assert!(
        a.create(&sample_subscription("race"))
            .await
            .expect("create")
    );
    for round in 0..20u64 {
        let read = a.get("race").await.expect("get").expect("stored");
        assert_eq!(read.revision, round);
        let mut from_a = read.clone();
        from_a.checkpoint = Position {
            block: 10 * round + 1,
            index: 0,
        };
        let mut from_b = read.clone();
        from_b.checkpoint = Position {
            block: 10 * round + 2,
            index: 0,
        };
        let (ra, rb) = tokio::join!(a.replace(&from_a), b.replace(&from_b));
        let winner = match (ra, rb) {
            (Ok(won), Err(Error::Conflict { .. })) | (Err(Error::Conflict { .. }), Ok(won)) => won,
            other => panic!("round {round}: expected one winner and one conflict, got {other:?}"),
        };
        let stored = b.get("race").await.expect("get").expect("stored");
        assert_eq!(
            stored, winner,
            "round {round}: the winner's write is stored"
        );
        assert_eq!(stored.revision, round + 1);
    }
}

/// A record with [`MAX_DEAD_LETTERS`] ids (the longest ids the feed makes) and a long URL
/// and error stores in one item, reads back whole, and a dozen of them list in name
/// order although they exceed one Query page (1 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_dead_letter_lists_store_whole_and_list_across_pages() {
    let (client, names) = fresh().await;
    let store = store(&client, &names).await;
    let mut expected = Vec::new();
    for i in 0..12 {
        let name = format!("full-{i:02}");
        assert!(
            store
                .create(&sample_subscription(&name))
                .await
                .expect("create")
        );
        let mut sub = store.get(&name).await.expect("get").expect("stored");
        sub.sink.webhook_mut().expect("a webhook").url =
            format!("https://hooks.example.com/{}", "p".repeat(2000));
        sub.last_error = Some("e".repeat(4000));
        sub.dead_letter(
            (0..MAX_DEAD_LETTERS as u64).map(|k| format!("{:020}-{:04}", u64::MAX - k, 9999)),
        );
        sub.checkpoint = Position { block: 7, index: 0 };
        let size = stored_size(&sub).expect("fits");
        if i == 0 {
            println!(
                "a record with {MAX_DEAD_LETTERS} dead letters takes {size} bytes \
                 (limit {MAX_ITEM_BYTES})"
            );
        }
        assert!(size < MAX_ITEM_BYTES / 3, "{size} bytes");
        let stored = store.replace(&sub).await.expect("a full list stores");
        assert_eq!(stored.dead_letters.len(), MAX_DEAD_LETTERS);
        assert_eq!(store.get(&name).await.expect("get"), Some(stored.clone()));
        expected.push(stored);
    }
    // Stored out of name order would still list in name order.
    assert!(
        store
            .create(&sample_subscription("a-first"))
            .await
            .expect("create")
    );
    let listed = store.list().await.expect("list");
    assert_eq!(listed.len(), 13, "every record, across pages");
    assert_eq!(listed[0].name, "a-first");
    assert_eq!(&listed[1..], &expected[..]);
}

/// A record that cannot fit in one item is refused before anything is written.
#[tokio::test]
async fn a_record_too_large_is_refused_and_nothing_written() {
    let (client, names) = fresh().await;
    let store = store(&client, &names).await;
    let mut huge = sample_subscription("huge");
    huge.sink.webhook_mut().expect("a webhook").url =
        format!("https://hooks.example.com/{}", "p".repeat(MAX_ITEM_BYTES));
    assert!(matches!(store.create(&huge).await, Err(Error::TooLarge(_))));
    assert_eq!(store.get("huge").await.expect("get"), None);
    assert!(
        store
            .create(&sample_subscription("huge"))
            .await
            .expect("create")
    );
    let stored = store.get("huge").await.expect("get").expect("stored");
    let mut bigger = stored.clone();
    bigger.sink = huge.sink.clone();
    assert!(matches!(
        store.replace(&bigger).await,
        Err(Error::TooLarge(_))
    ));
    assert_eq!(
        store.get("huge").await.expect("get"),
        Some(stored),
        "unchanged"
    );
}
