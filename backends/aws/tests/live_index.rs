//! The state table's live index against DynamoDB Local: a list reads live ads only,
//! whatever number of tombstones sits beside them, and a table written before the index
//! existed gets it when opened.
//!
//! The request counts are per process, so this binary's tests run one at a time.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;

use adledger_aws::DynamoStateStore;
use adledger_aws::aws_sdk_dynamodb::types::AttributeValue;
use adledger_engine::StateStore;
use adledger_engine::ports::AdState;
use adledger_engine::testkit::{ad_id, mostly_deleted_ads};
use tokio::sync::Mutex;

/// Serializes the tests: each reads the process's request counts.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Requests sent by this process since `before`, by operation.
fn sent_since(before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    adledger_aws::metrics::request_counts()
        .into_iter()
        .filter_map(|(operation, count)| {
            let new = count - before.get(&operation).copied().unwrap_or(0);
            (new > 0).then_some((operation, new))
        })
        .collect()
}

fn ids(states: &[AdState]) -> Vec<String> {
    states.iter().map(|s| s.key.ad_id.clone()).collect()
}

/// 100,000 deleted ads and 10 live ones: the list is one page, one `Query` of the live
/// index and one `BatchGetItem` of the ten ads (the old filtered Query read every
/// tombstone, about a dozen requests and 3,000 read units for this publisher).
#[tokio::test]
async fn a_list_past_a_hundred_thousand_tombstones_costs_two_requests() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let client = support::client(&support::endpoint());
    let tables = support::fresh_tables(&client).await.expect("tables");
    let store = DynamoStateStore::open(client, &tables.state)
        .await
        .expect("open");
    let states = mostly_deleted_ads("p", 110_000, 11_000);
    for chunk in states.chunks(10_000) {
        store.put(chunk, None).await.expect("put");
    }
    let live: Vec<String> = (1..=10).map(|i| ad_id(i * 11_000)).collect();

    let before = adledger_aws::metrics::request_counts();
    let page = store.list("p", None, 100).await.expect("list");
    let sent = sent_since(&before);
    assert_eq!(ids(&page), live);
    assert_eq!(
        sent,
        BTreeMap::from([("BatchGetItem".to_string(), 1), ("Query".to_string(), 1)]),
        "one list of 10 live ads among 100,000 tombstones"
    );

    let before = adledger_aws::metrics::request_counts();
    let page = store.list("p", Some(&live[9]), 100).await.expect("list");
    assert!(page.is_empty(), "only tombstones after the last live ad");
    let sent = sent_since(&before);
    assert_eq!(
        sent.get("Query"),
        Some(&1),
        "the end of the list: one Query, {sent:?}"
    );
}

/// A table filled before the live index existed (no index entries, no layout item) is
/// indexed when opened, so its lists are complete; a store that already has the index
/// does not build it again.
#[tokio::test]
async fn a_table_from_before_the_live_index_is_indexed_at_open() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let client = support::client(&support::endpoint());
    let tables = support::fresh_tables(&client).await.expect("tables");
    let store = DynamoStateStore::open(client.clone(), &tables.state)
        .await
        .expect("open");
    let states = mostly_deleted_ads("p", 300, 3);
    store.put(&states, Some(1)).await.expect("put");
    let live: Vec<String> = (1..=100).map(|i| ad_id(i * 3)).collect();

    // Remove what an older adledger never wrote: the index entries and the layout item.
    let mut removed = 0;
    for partition in ["#live#p", "#layout"] {
        let items = client
            .query()
            .table_name(&tables.state)
            .key_condition_expression("publisherId = :p")
            .expression_attribute_values(":p", AttributeValue::S(partition.into()))
            .send()
            .await
            .expect("query")
            .items
            .unwrap_or_default();
        for item in items {
            let key = item
                .into_iter()
                .filter(|(name, _)| name == "publisherId" || name == "adId")
                .collect();
            client
                .delete_item()
                .table_name(&tables.state)
                .set_key(Some(key))
                .send()
                .await
                .expect("delete");
            removed += 1;
        }
    }
    assert_eq!(removed, 101, "100 index entries and the layout item");
    let unindexed = store.list("p", None, 1000).await.expect("list");
    assert!(
        unindexed.is_empty(),
        "without its index a list sees nothing"
    );

    let reopened = DynamoStateStore::open(client.clone(), &tables.state)
        .await
        .expect("reopen");
    assert_eq!(
        ids(&reopened.list("p", None, 1000).await.expect("list")),
        live
    );

    let before = adledger_aws::metrics::request_counts();
    DynamoStateStore::open(client, &tables.state)
        .await
        .expect("open again");
    let sent = sent_since(&before);
    assert_eq!(
        sent.get("BatchWriteItem"),
        None,
        "an indexed table is not indexed again: {sent:?}"
    );
}
