//! The AWS backend's own tests, against a real DynamoDB server. The behaviour every
//! backend shares is checked by the engine's conformance suite (`conformance.rs`); these
//! cover what is specific to DynamoDB: transaction limits, item sizes, revision chunks,
//! two writers on one table, missing tables, and table creation.

#[path = "support/mod.rs"]
mod support;

use adledger_aws::tables::{self, Created, TableSpec};
use adledger_aws::{DynamoJournal, MAX_BLOCKS_PER_APPEND, TableNames};
use adledger_engine::ports::{IdempotencyRecord, Journal};
use adledger_engine::testkit::{ChainBuilder, ad_id, all_blocks, sample_ad};
use adledger_engine::{AdKey, AdPatch, Command, Error, Hash, Ledger};

async fn journal(endpoint: &str) -> (DynamoJournal, TableNames) {
    let client = support::client(endpoint);
    let names = support::fresh_tables(&client).await.expect("tables");
    let journal = DynamoJournal::open(client, &names.journal)
        .await
        .expect("open journal");
    (journal, names)
}

fn key(n: u32) -> AdKey {
    AdKey::new("p", ad_id(n))
}

/// Creates of `count` new ads, each with an idempotency key: three actions per block.
fn keyed_creates(
    chain: &mut ChainBuilder,
    first: u32,
    count: u32,
) -> adledger_engine::ports::AppendBatch {
    let changes = (first..first + count)
        .map(|n| (key(n), Some(sample_ad(&key(n), &format!("ad {n}")))))
        .collect();
    let (mut batch, _) = chain.batch(changes).expect("batch");
    for (i, n) in (first..first + count).enumerate() {
        batch.idempotency.push(IdempotencyRecord {
            publisher_id: "p".into(),
            key: format!("key-{n}"),
            request_hash: Hash([3; 32]),
            ad_id: ad_id(n),
            sequence: batch.blocks[i].sequence,
        });
    }
    batch
}

/// The engine's cap is exactly what one transaction holds in the worst case: a batch of
/// that many keyed creates commits; one more block is `TooLarge` and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_limit_is_max_blocks_per_append() {
    let endpoint = support::endpoint();
    let (j, _) = journal(&endpoint).await;
    assert_eq!(j.max_blocks_per_append(), MAX_BLOCKS_PER_APPEND);
    assert_eq!(MAX_BLOCKS_PER_APPEND, 33);

    let cap = MAX_BLOCKS_PER_APPEND as u32;
    let mut too_big_chain = ChainBuilder::new();
    let too_big = keyed_creates(&mut too_big_chain, 0, cap + 1);
    let err = j.append(too_big).await.expect_err("over the limit");
    assert!(
        matches!(&err, Error::TooLarge(m) if m.contains("100")),
        "{err:?}"
    );
    assert_eq!(j.last_sequence().await.expect("last"), None);
    assert_eq!(j.idempotency("p", "key-0").await.expect("idem"), None);

    let mut chain = ChainBuilder::new();
    let full = keyed_creates(&mut chain, 0, cap);
    j.append(full.clone()).await.expect("a full batch fits");
    assert_eq!(
        j.last_sequence().await.expect("last"),
        Some(u64::from(cap) - 1)
    );
    assert_eq!(all_blocks(&j).await.expect("blocks"), full.blocks);
    assert!(j.idempotency("p", "key-32").await.expect("idem").is_some());
}

/// A block larger than a DynamoDB item is `TooLarge` before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_block_is_too_large() {
    let endpoint = support::endpoint();
    let (j, _) = journal(&endpoint).await;
    let huge = "x".repeat(500 * 1024);
    let (batch, _) = ChainBuilder::new()
        .batch(vec![(key(1), Some(sample_ad(&key(1), &huge)))])
        .expect("batch");
    let err = j.append(batch).await.expect_err("too large");
    assert!(
        matches!(&err, Error::TooLarge(m) if m.contains("block 0")),
        "{err:?}"
    );
    assert_eq!(j.last_sequence().await.expect("last"), None);
    assert_eq!(j.ad_head(&key(1)).await.expect("head"), None);
}

/// An ad's revision refs span chunks of 1024 versions: history and head stay exact
/// across the boundary, and a stale expectation in an old chunk is still a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_refs_cross_chunk_boundaries() {
    let endpoint = support::endpoint();
    let (j, _) = journal(&endpoint).await;
    let a = key(1);
    let mut chain = ChainBuilder::new();
    let total: u64 = 1100;
    let mut written = 0;
    while written < total {
        let count = (total - written).min(MAX_BLOCKS_PER_APPEND as u64);
        let changes = (0..count)
            .map(|i| (a.clone(), Some(sample_ad(&a, &format!("v{}", written + i)))))
            .collect();
        let (batch, _) = chain.batch(changes).expect("batch");
        j.append(batch).await.expect("append");
        written += count;
    }
    let head = j.ad_head(&a).await.expect("head").expect("exists");
    assert_eq!((head.version, head.sequence), (total - 1, total - 1));
    let refs = j.ad_revisions(&a).await.expect("refs");
    assert_eq!(refs.len() as u64, total);
    assert!(
        refs.iter()
            .enumerate()
            .all(|(i, r)| r.version == i as u64 && r.sequence == i as u64)
    );

    // Expecting version 1000 (in chunk 0, now superseded) must fail.
    let (mut stale, _) = chain
        .batch(vec![(a.clone(), Some(sample_ad(&a, "stale")))])
        .expect("batch");
    stale.heads[0].expected_version = Some(1000);
    stale.heads[0].new_head.version = 1001;
    stale.revisions[0].version = 1001;
    let err = j.append(stale).await.expect_err("stale");
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert_eq!(j.last_sequence().await.expect("last"), Some(total - 1));
}

/// Two journal handles on one table (two server processes) append against the same tip
/// at once: exactly one commits, the other gets `Conflict` and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_table_exactly_one_wins() {
    let endpoint = support::endpoint();
    for round in 0..3u32 {
        let (first, names) = journal(&endpoint).await;
        let second = DynamoJournal::open(support::client(&endpoint), &names.journal)
            .await
            .expect("second handle");
        let (a, b) = (key(100 + round), key(200 + round));
        let (batch_a, _) = ChainBuilder::new()
            .batch(vec![(a.clone(), Some(sample_ad(&a, "a")))])
            .expect("a");
        let (batch_b, _) = ChainBuilder::new()
            .batch(vec![(b.clone(), Some(sample_ad(&b, "b")))])
            .expect("b");
        let (ra, rb) = tokio::join!(
            first.append(batch_a.clone()),
            second.append(batch_b.clone())
        );
        assert_eq!(
            u8::from(ra.is_ok()) + u8::from(rb.is_ok()),
            1,
            "round {round}: {ra:?} {rb:?}"
        );
        let (winner, loser_key, result) = if ra.is_ok() {
            (batch_a, b, rb)
        } else {
            (batch_b, a, ra)
        };
        assert!(matches!(result, Err(Error::Conflict { .. })), "{result:?}");
        assert_eq!(all_blocks(&first).await.expect("blocks"), winner.blocks);
        assert_eq!(second.ad_head(&loser_key).await.expect("head"), None);
    }
}

/// Opening a table that does not exist says how to create it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_says_run_init() {
    let endpoint = support::endpoint();
    let client = support::client(&endpoint);
    let name = format!("{}journal", support::unique_prefix());
    let err = DynamoJournal::open(client, &name)
        .await
        .expect_err("no table");
    let text = err.to_string();
    assert!(
        text.contains(&name) && text.contains("adledger aws init"),
        "{text}"
    );
}

/// Creating tables is idempotent; a table of the same name with other keys is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_creation_is_idempotent_and_checks_keys() {
    let endpoint = support::endpoint();
    let client = support::client(&endpoint);
    let names = TableNames::with_prefix(&support::unique_prefix());
    for spec in names.specs() {
        assert_eq!(
            tables::create(&client, &spec).await.expect("create"),
            Created::New
        );
        assert_eq!(
            tables::create(&client, &spec).await.expect("again"),
            Created::AlreadyExists
        );
    }
    let wrong = TableSpec::journal(&names.state);
    let err = tables::create(&client, &wrong)
        .await
        .expect_err("other keys");
    assert!(err.to_string().contains(&names.state), "{err}");
}

/// Runs the same commands (creates with and without idempotency keys, updates, a no-op,
/// a delete, a conflict) on a ledger; returns every outcome as text.
async fn parity_script(ledger: &Ledger) -> Vec<String> {
    let mut out = Vec::new();
    let mut keys = Vec::new();
    for i in 0..8 {
        let outcome = ledger
            .execute(Command::CreateAd {
                publisher_id: format!("pub{}", i % 3),
                draft: adledger_engine::testkit::draft(
                    &format!("Item {i}"),
                    Some("19.99"),
                    "misc",
                    &["a", "b"],
                ),
                idempotency_key: (i % 2 == 0).then(|| format!("k{i}")),
            })
            .await;
        if let Ok(o) = &outcome {
            keys.extend(o.ad.as_ref().map(|ad| ad.key()));
        }
        out.push(format!("{outcome:?}"));
    }
    for (n, key) in keys.iter().enumerate().take(5) {
        let update = Command::UpdateAd {
            key: key.clone(),
            patch: AdPatch {
                ad_title: Some(format!("changed {n}")),
                ..AdPatch::default()
            },
            expected_version: Some(if n == 4 { 7 } else { 0 }),
        };
        out.push(format!("{:?}", ledger.execute(update).await));
    }
    out.push(format!(
        "{:?}",
        ledger
            .execute(Command::DeleteAd {
                key: keys[1].clone(),
                expected_version: None,
            })
            .await
    ));
    out
}

/// The digest `parity_script` gives on the local backend (sled) with seed 42: its Merkle
/// root commits to every block's hash, so to every stored byte. Pinned rather than
/// computed, since this crate does not depend on the local backend (no sled here).
const LOCAL_DIGEST: (u64, &str, &str) = (
    12,
    "f62afb10306a386270e9cf5529216c49f942e6a7157154de20fbdef43440c8b0",
    "56c9bd71b8e644661de4069c4d2eda2f3ef4936b481e0fb58329870bf2ca453b",
);

/// The same commands with the same seed give the same outcomes, the same stored block
/// bytes and the same digest on DynamoDB as on the local backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_journal_and_digest_as_the_local_backend() {
    let endpoint = support::endpoint();
    let dir = tempfile::tempdir().expect("tempdir");
    let client = support::client(&endpoint);
    let names = support::fresh_tables(&client).await.expect("tables");
    let aws = adledger_aws::AwsBackend::open(
        client,
        &names,
        &adledger_aws::SearchSettings::Tantivy {
            dir: dir.path().join("aws-search"),
        },
    )
    .await
    .expect("aws backend");
    let stores = adledger_engine::testkit::Stores {
        journal: aws.journal,
        state: aws.state,
        search: aws.search,
    };
    let ledger = stores.ledger(42).await.expect("ledger");
    let outcomes = parity_script(&ledger).await;
    let digest = ledger.digest().await.expect("digest").expect("a digest");
    ledger.shutdown().await;
    let blocks = all_blocks(stores.journal.as_ref()).await.expect("blocks");
    assert_eq!(
        (
            digest.sequence,
            digest.root.to_string(),
            digest.tip_hash.to_string()
        ),
        (
            LOCAL_DIGEST.0,
            LOCAL_DIGEST.1.to_string(),
            LOCAL_DIGEST.2.to_string()
        ),
        "same digest, so the same stored bytes"
    );
    assert_eq!(blocks.len(), 13);
    let refused: Vec<usize> = (0..outcomes.len())
        .filter(|&i| !outcomes[i].starts_with("Ok("))
        .collect();
    assert_eq!(refused, vec![12], "{outcomes:#?}");
    assert_eq!(
        outcomes[12],
        "Err(Conflict { expected: Version(7), actual: Version(0) })"
    );
}

/// `get_many` answers in the order asked, across `BatchGetItem`'s 100-key limit, with
/// `None` for a key never stored and the same state twice for a key asked twice; `put`
/// of more than one `BatchWriteItem` of states stores them all and the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_get_many_cross_batch_limits() {
    use adledger_aws::DynamoStateStore;
    use adledger_engine::ports::{AdState, StateStore};

    let endpoint = support::endpoint();
    let client = support::client(&endpoint);
    let names = support::fresh_tables(&client).await.expect("tables");
    let state = DynamoStateStore::open(client, &names.state)
        .await
        .expect("open state");
    let states: Vec<AdState> = (0..150)
        .map(|n| AdState {
            key: key(n),
            version: 1,
            sequence: u64::from(n),
            updated_at: chrono::DateTime::UNIX_EPOCH,
            ad: (n % 10 != 0).then(|| sample_ad(&key(n), &format!("ad {n}"))),
        })
        .collect();
    state.put(&states, Some(150)).await.expect("put");
    assert_eq!(state.checkpoint().await.expect("checkpoint"), 150);

    let mut asked: Vec<AdKey> = (0..150).rev().map(key).collect();
    asked.push(key(7));
    asked.push(key(999));
    let got = state.get_many(&asked).await.expect("get_many");
    assert_eq!(got.len(), asked.len());
    for (asked, got) in asked.iter().zip(&got) {
        let single = state.get(asked).await.expect("get");
        assert_eq!(got, &single, "{asked:?}");
    }
    assert_eq!(got[150], got[142], "key 7 asked twice");
    assert_eq!(got[151], None, "never stored");
    assert!(
        got[0].as_ref().is_some_and(|s| s.ad.is_some()),
        "ad 149 is live"
    );
}
