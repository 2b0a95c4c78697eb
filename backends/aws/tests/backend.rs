//! The AWS backend's own tests, against a real DynamoDB server. The behaviour every
//! backend shares is checked by the engine's conformance suite (`conformance.rs`); these
//! cover what is specific to DynamoDB: transaction limits, item sizes, pages, the derived
//! ad index after a crash, two writers on one table, missing tables, and table creation.

#[path = "support/mod.rs"]
mod support;

use adledger_aws::tables::{self, Created, TableSpec};
use std::sync::{Arc, Mutex};

use adledger_aws::aws_sdk_dynamodb;
use adledger_aws::aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use adledger_aws::aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use adledger_aws::aws_sdk_dynamodb::error::BoxError;
use adledger_aws::aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use adledger_aws::aws_sdk_dynamodb::types::AttributeValue;
use adledger_aws::{DynamoJournal, MAX_BLOCKS_PER_APPEND, MAX_BYTES_PER_APPEND, TableNames};
use adledger_engine::ports::{IdempotencyRecord, Journal};
use adledger_engine::testkit::{ChainBuilder, ad_id, all_blocks, sample_ad};
use adledger_engine::{AdKey, AdPatch, Command, Error, Hash, Ledger, VersionExpectation};

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

/// Creates of `count` new ads of about 1 KB each (the bench's size), each with an
/// idempotency key.
fn keyed_creates(
    chain: &mut ChainBuilder,
    first: u32,
    count: u32,
) -> adledger_engine::ports::AppendBatch {
    let changes = (first..first + count)
        .map(|n| {
            let mut ad = sample_ad(&key(n), &format!("ad {n}"));
            ad.ad_description = "a bicycle in good condition, ".repeat(24);
            (key(n), Some(ad))
        })
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

/// Counts the `TransactWriteItems` requests a client sends and their actions.
#[derive(Debug, Clone, Default)]
struct Transactions(Arc<Mutex<Vec<usize>>>);

impl Intercept for Transactions {
    fn name(&self) -> &'static str {
        "test::Transactions"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(input) = context.input().downcast_ref::<TransactWriteItemsInput>() {
            let actions = input.transact_items().len();
            self.0.lock().expect("lock").push(actions);
        }
        Ok(())
    }
}

/// One `TransactWriteItems` carries 300 keyed creates of about 1 KB (the engine's old
/// cap was 33): the tip and six pages. A batch over DynamoDB's 4 MB is `TooLarge` and
/// writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_transaction_carries_300_blocks() {
    let endpoint = support::endpoint();
    let counted = Transactions::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        support::client(&endpoint)
            .config()
            .to_builder()
            .interceptor(counted.clone())
            .build(),
    );
    let names = support::fresh_tables(&client).await.expect("tables");
    let j = DynamoJournal::open(client, &names.journal)
        .await
        .expect("open journal");
    assert!(j.max_blocks_per_append() >= 300);
    assert_eq!(j.max_bytes_per_append(), MAX_BYTES_PER_APPEND);

    let mut chain = ChainBuilder::new();
    let batch = keyed_creates(&mut chain, 0, 300);
    let bytes: usize = batch.blocks.iter().map(|b| b.bytes.len()).sum();
    assert!(
        (1000..2000).contains(&(bytes / 300)),
        "about 1 KB per block: {}",
        bytes / 300
    );
    assert!(bytes < MAX_BYTES_PER_APPEND);
    j.append(batch.clone())
        .await
        .expect("300 blocks in one append");
    let sent = counted.0.lock().expect("lock").clone();
    assert_eq!(sent.len(), 1, "one transaction: {sent:?}");
    assert!(sent[0] <= 10, "the tip and a few pages: {sent:?}");
    assert_eq!(j.last_sequence().await.expect("last"), Some(299));
    assert_eq!(all_blocks(&j).await.expect("blocks"), batch.blocks);
    let record = j.idempotency("p", "key-299").await.expect("idem");
    assert_eq!(
        record.map(|r| (r.ad_id, r.sequence)),
        Some((ad_id(299), 299))
    );
    let head = j.ad_head(&key(150)).await.expect("head").expect("exists");
    assert_eq!((head.version, head.sequence), (0, 150));

    // Eleven blocks of 390 KB: each fits an item, together not a transaction.
    let huge = "x".repeat(390 * 1024);
    let (too_big, _) = chain
        .batch(
            (0..11)
                .map(|n| (key(1000 + n), Some(sample_ad(&key(1000 + n), &huge))))
                .collect(),
        )
        .expect("batch");
    let err = j.append(too_big).await.expect_err("over 4 MB");
    assert!(matches!(&err, Error::TooLarge(_)), "{err:?}");
    assert_eq!(j.last_sequence().await.expect("last"), Some(299));
    assert_eq!(j.ad_head(&key(1000)).await.expect("head"), None);
}

/// Deletes the ad index items of blocks from `from` on and moves the tip's index mark
/// back: the table as a crash between an append's transaction and its index writes
/// leaves it.
async fn lose_index_from(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    from: u64,
    expected_lost: usize,
) {
    // The journal marks the tip's `idx` a while after its last append: let that land
    // first (a crashed process would send nothing more).
    tokio::time::sleep(2 * adledger_aws::TIP_MARK_LINGER).await;
    let items = client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .expect("scan")
        .items
        .unwrap_or_default();
    let mut lost = 0;
    for item in items {
        let Some(AttributeValue::S(pk)) = item.get("pk") else {
            continue;
        };
        let indexed_seq = match item.get("seq") {
            Some(AttributeValue::N(seq)) => seq.parse::<u64>().expect("seq"),
            _ => continue,
        };
        if pk == "tip" || indexed_seq < from {
            continue;
        }
        let key = [
            ("pk".to_string(), item["pk"].clone()),
            ("sk".to_string(), item["sk"].clone()),
        ]
        .into_iter()
        .collect();
        client
            .delete_item()
            .table_name(table)
            .set_key(Some(key))
            .send()
            .await
            .expect("delete");
        lost += 1;
    }
    assert_eq!(lost, expected_lost, "index items of the lost blocks");
    client
        .update_item()
        .table_name(table)
        .key("pk", AttributeValue::S("tip".into()))
        .key("sk", AttributeValue::N("0".into()))
        .update_expression("SET idx = :i")
        .expression_attribute_values(":i", AttributeValue::N((from - 1).to_string()))
        .send()
        .await
        .expect("tip");
}

/// A crash after an append's transaction but before its ad index is written: a process
/// opening the journal afterwards completes the index from the pages before it answers,
/// so heads, histories and idempotency records are all there, a stale expectation is
/// still a conflict, and the right one commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_ad_index_is_written_loses_nothing() {
    let endpoint = support::endpoint();
    let (j, names) = journal(&endpoint).await;
    let mut chain = ChainBuilder::new();
    let first = keyed_creates(&mut chain, 0, 2);
    j.append(first).await.expect("first");
    let (second, _) = chain
        .batch(vec![
            (key(0), Some(sample_ad(&key(0), "changed"))),
            (key(2), Some(sample_ad(&key(2), "new"))),
        ])
        .expect("batch");
    j.append(second).await.expect("second");
    // The index is written after the append returns; a read waits for it.
    assert!(j.ad_head(&key(2)).await.expect("head").is_some());
    let client = support::client(&endpoint);
    lose_index_from(&client, &names.journal, 2, 2).await;

    // The right next append, and the same one planned by a writer that believes ad 0
    // is still at version 0 (the index it would read says so).
    let (next, _) = chain
        .batch(vec![(key(0), Some(sample_ad(&key(0), "third")))])
        .expect("batch");
    let mut stale = next.clone();
    stale.heads[0].expected_version = Some(0);
    stale.heads[0].new_head.version = 1;
    stale.revisions[0].version = 1;
    let writer = DynamoJournal::open(client.clone(), &names.journal)
        .await
        .expect("reopen");
    let err = writer.append(stale).await.expect_err("stale");
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: VersionExpectation::Version(0),
                actual: VersionExpectation::Version(1)
            }
        ),
        "{err:?}"
    );
    assert_eq!(writer.last_sequence().await.expect("last"), Some(3));

    // A reader in another process sees everything.
    let reader = DynamoJournal::open(client, &names.journal)
        .await
        .expect("reopen");
    let head = reader.ad_head(&key(0)).await.expect("head").expect("ad 0");
    assert_eq!((head.version, head.sequence), (1, 2));
    assert_eq!(reader.ad_revisions(&key(0)).await.expect("refs").len(), 2);
    let created = reader.ad_head(&key(2)).await.expect("head").expect("ad 2");
    assert_eq!((created.version, created.sequence), (0, 3));

    // A batch expecting the real head commits.
    reader.append(next).await.expect("expects version 1");
    let head = writer.ad_head(&key(0)).await.expect("head").expect("ad 0");
    assert_eq!((head.version, head.sequence), (2, 4));
}

/// The crash window through the engine: keyed creates and an update committed, their ad
/// index lost; a ledger opened afterwards answers a retried create from the recovered
/// idempotency record (same ad, nothing new appended) and refuses a stale `If-Match`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_ad_index_is_written_keeps_idempotency() {
    let endpoint = support::endpoint();
    let dir = tempfile::tempdir().expect("tempdir");
    let client = support::client(&endpoint);
    let names = support::fresh_tables(&client).await.expect("tables");
    // Each process has its own search index directory.
    let (endpoint, names, dir) = (&endpoint, &names, &dir);
    let open = |process: &'static str| async move {
        let aws = adledger_aws::AwsBackend::open(
            support::client(endpoint),
            names,
            &adledger_aws::SearchSettings::Tantivy {
                dir: dir.path().join(process),
            },
        )
        .await
        .expect("aws backend");
        let journal = aws.journal.clone();
        let stores = adledger_engine::testkit::Stores {
            journal: aws.journal,
            state: aws.state,
            search: aws.search,
        };
        (stores.ledger(7).await.expect("ledger"), journal)
    };
    let create = |key: &str| Command::CreateAd {
        publisher_id: "acme".into(),
        draft: adledger_engine::testkit::draft("Bike", Some("10.00"), "misc", &[]),
        idempotency_key: Some(key.into()),
    };
    let (ledger, journal) = open("before").await;
    let first = ledger.execute(create("k-1")).await.expect("create");
    let ad = first.ad.expect("ad").key();
    let second = ledger.execute(create("k-2")).await.expect("create");
    assert_eq!(second.sequence, 1);
    let update = Command::UpdateAd {
        key: ad.clone(),
        patch: AdPatch {
            ad_title: Some("Red bike".into()),
            ..AdPatch::default()
        },
        expected_version: Some(0),
    };
    assert_eq!(ledger.execute(update).await.expect("update").version, 1);
    ledger.shutdown().await;
    // The index is written after each append returns; a read waits for it.
    assert!(journal.ad_head(&ad).await.expect("head").is_some());
    // Blocks 1 (create k-2: its revision and record) and 2 (the update) lose their index.
    lose_index_from(&client, &names.journal, 1, 3).await;

    let (ledger, _) = open("after").await;
    let retried = ledger.execute(create("k-2")).await.expect("retried create");
    assert!(retried.replayed, "{retried:?}");
    assert_eq!(retried.sequence, 1);
    let stale = Command::UpdateAd {
        key: ad.clone(),
        patch: AdPatch {
            ad_title: Some("Blue bike".into()),
            ..AdPatch::default()
        },
        expected_version: Some(0),
    };
    let err = ledger.execute(stale).await.expect_err("stale If-Match");
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    let digest = ledger.digest().await.expect("digest").expect("some");
    assert_eq!(digest.sequence, 2, "nothing new appended");
    ledger.shutdown().await;
}

/// A journal written in format 1 (one item per block) is refused with the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_table_is_refused_with_the_fix() {
    let endpoint = support::endpoint();
    let (_, names) = journal(&endpoint).await;
    let client = support::client(&endpoint);
    client
        .put_item()
        .table_name(&names.journal)
        .item("pk", AttributeValue::S("tip".into()))
        .item("sk", AttributeValue::N("0".into()))
        .item("seq", AttributeValue::N("4".into()))
        .item("fmt", AttributeValue::N("1".into()))
        .send()
        .await
        .expect("format 1 tip");
    let err = DynamoJournal::open(client, &names.journal)
        .await
        .expect_err("format 1");
    let text = err.to_string();
    assert!(
        text.contains(&names.journal)
            && text.contains("format 1")
            && text.contains("adledger export")
            && text.contains("adledger import"),
        "{text}"
    );
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

/// One ad's 1100 revisions span page partitions (1000 blocks each) and many pages:
/// history and head stay exact across the boundary, every block reads back, and a stale
/// expectation is still a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_histories_cross_page_partitions() {
    let endpoint = support::endpoint();
    let (j, _) = journal(&endpoint).await;
    let a = key(1);
    let mut chain = ChainBuilder::new();
    let total: u64 = 1100;
    let mut written = 0;
    let mut blocks = Vec::new();
    while written < total {
        let count = (total - written).min(MAX_BLOCKS_PER_APPEND.min(700) as u64);
        let changes = (0..count)
            .map(|i| (a.clone(), Some(sample_ad(&a, &format!("v{}", written + i)))))
            .collect();
        let (batch, _) = chain.batch(changes).expect("batch");
        blocks.extend(batch.blocks.clone());
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
    assert_eq!(all_blocks(&j).await.expect("blocks"), blocks);
    // Reads starting inside a page and across the partition boundary.
    let middle = j.read_blocks(995, 10).await.expect("read");
    assert_eq!(middle, blocks[995..1005].to_vec());

    // Expecting version 1000 (now superseded) must fail.
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
