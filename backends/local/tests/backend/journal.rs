//! `SledJournal` against a real sled database.

use adledger_engine::Error;
use adledger_engine::VersionExpectation::{Absent, Version};
use adledger_engine::block;
use adledger_engine::ports::{IdempotencyRecord, Journal, MerkleNode};
use adledger_engine::{AdKey, Hash};
use adledger_local::SledJournal;

use crate::support::{Chain, ad, change, created};

fn idempotency(publisher_id: &str, key: &str, ad_id: &str, sequence: u64) -> IdempotencyRecord {
    IdempotencyRecord {
        publisher_id: publisher_id.into(),
        key: key.into(),
        request_hash: Hash::of(key.as_bytes()),
        ad_id: ad_id.into(),
        sequence,
    }
}

#[tokio::test]
async fn append_then_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let journal = SledJournal::open(dir.path()).unwrap();
    assert_eq!(journal.last_sequence().await.unwrap(), None);
    assert!(journal.read_blocks(0, 10).await.unwrap().is_empty());

    let mut chain = Chain::new();
    let a = ad("acme", 1, "bike");
    let b = ad("acme", 2, "car");
    let (mut first, _) = chain.batch(vec![vec![created(&a)]]);
    first
        .idempotency
        .push(idempotency("acme", "key-1", &a.ad_id, 0));
    journal.append(first.clone()).await.unwrap();

    let mut renamed = a.clone();
    renamed.ad_title = "red bike".into();
    let (second, _) = chain.batch(vec![
        vec![created(&b), change(&a.key(), 1, Some(renamed))],
        vec![change(&a.key(), 2, None)],
    ]);
    journal.append(second.clone()).await.unwrap();

    assert_eq!(journal.last_sequence().await.unwrap(), Some(2));
    let all: Vec<_> = first.blocks.iter().chain(&second.blocks).cloned().collect();
    assert_eq!(journal.read_blocks(0, 10).await.unwrap(), all);
    assert_eq!(journal.read_blocks(1, 1).await.unwrap(), all[1..2]);
    assert_eq!(journal.read_blocks(2, 10).await.unwrap(), all[2..]);
    assert!(journal.read_blocks(3, 10).await.unwrap().is_empty());
    assert!(journal.read_blocks(0, 0).await.unwrap().is_empty());
    for stored in &all {
        block::open(stored).unwrap();
    }

    let head = journal.ad_head(&a.key()).await.unwrap().unwrap();
    assert_eq!((head.version, head.sequence, head.deleted), (2, 2, true));
    let head = journal.ad_head(&b.key()).await.unwrap().unwrap();
    assert_eq!((head.version, head.sequence, head.deleted), (0, 1, false));
    assert_eq!(
        journal
            .ad_head(&AdKey::new("other", &a.ad_id))
            .await
            .unwrap(),
        None
    );

    let history = journal.ad_revisions(&a.key()).await.unwrap();
    let versions: Vec<_> = history.iter().map(|r| (r.version, r.sequence)).collect();
    assert_eq!(versions, vec![(0, 0), (1, 1), (2, 2)]);
    assert!(
        journal
            .ad_revisions(&AdKey::new("acm", &a.ad_id))
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        journal.idempotency("acme", "key-1").await.unwrap(),
        Some(idempotency("acme", "key-1", &a.ad_id, 0))
    );
    assert_eq!(journal.idempotency("acme", "key-2").await.unwrap(), None);
    assert_eq!(journal.idempotency("other", "key-1").await.unwrap(), None);

    let stored: Vec<MerkleNode> = first
        .merkle_nodes
        .iter()
        .chain(&second.merkle_nodes)
        .copied()
        .collect();
    let mut ids: Vec<(u8, u64)> = stored.iter().map(|n| (n.level, n.index)).collect();
    ids.push((9, 9));
    let mut expected: Vec<Option<Hash>> = stored.iter().map(|n| Some(n.hash)).collect();
    expected.push(None);
    assert_eq!(journal.merkle_nodes(&ids).await.unwrap(), expected);
}

#[tokio::test]
async fn stale_expected_last_conflicts_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = SledJournal::open(dir.path()).unwrap();
    let mut chain = Chain::new();
    let (first, _) = chain.batch(vec![vec![created(&ad("acme", 1, "bike"))]]);
    journal.append(first).await.unwrap();

    // A writer that still believes the journal is empty.
    let late = ad("acme", 2, "car");
    let (mut stale, _) = Chain::new().batch(vec![vec![created(&late)]]);
    stale
        .idempotency
        .push(idempotency("acme", "late", &late.ad_id, 0));
    match journal.append(stale).await {
        Err(Error::Conflict { expected, actual }) => {
            assert_eq!((expected, actual), (Absent, Version(0)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(journal.last_sequence().await.unwrap(), Some(0));
    assert_eq!(journal.ad_head(&late.key()).await.unwrap(), None);
    assert!(journal.ad_revisions(&late.key()).await.unwrap().is_empty());
    assert_eq!(journal.idempotency("acme", "late").await.unwrap(), None);
    assert_eq!(journal.read_blocks(0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn stale_head_conflicts_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = SledJournal::open(dir.path()).unwrap();
    let a = ad("acme", 1, "bike");
    let mut chain = Chain::new();
    let (first, _) = chain.batch(vec![vec![created(&a)]]);
    journal.append(first).await.unwrap();
    let (second, _) = chain.batch(vec![vec![change(&a.key(), 1, None)]]);
    journal.append(second.clone()).await.unwrap();

    // Right tip, but the update was planned against version 0.
    let mut stale = second.clone();
    stale.expected_last = Some(1);
    stale.blocks[0].sequence = 2;
    stale.heads[0].new_head.sequence = 2;
    stale.revisions.clear();
    stale.merkle_nodes.clear();
    match journal.append(stale).await {
        Err(Error::Conflict { expected, actual }) => {
            assert_eq!((expected, actual), (Version(0), Version(1)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    // A create of an ad that already exists.
    let (mut create_again, _) = Chain::new().batch(vec![vec![created(&a)]]);
    create_again.expected_last = Some(1);
    create_again.blocks[0].sequence = 2;
    create_again.merkle_nodes.clear();
    match journal.append(create_again).await {
        Err(Error::Conflict { expected, actual }) => {
            assert_eq!((expected, actual), (Absent, Version(1)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    assert_eq!(journal.last_sequence().await.unwrap(), Some(1));
    assert_eq!(journal.read_blocks(0, 10).await.unwrap().len(), 2);
    let head = journal.ad_head(&a.key()).await.unwrap().unwrap();
    assert_eq!((head.version, head.sequence, head.deleted), (1, 1, true));
    assert_eq!(journal.ad_revisions(&a.key()).await.unwrap().len(), 2);
}

#[tokio::test]
async fn reused_idempotency_key_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let journal = SledJournal::open(dir.path()).unwrap();
    let a = ad("acme", 1, "bike");
    let mut chain = Chain::new();
    let (mut first, _) = chain.batch(vec![vec![created(&a)]]);
    first
        .idempotency
        .push(idempotency("acme", "k", &a.ad_id, 0));
    journal.append(first).await.unwrap();

    let b = ad("acme", 2, "bike");
    let (mut second, _) = chain.batch(vec![vec![created(&b)]]);
    second
        .idempotency
        .push(idempotency("acme", "k", &b.ad_id, 1));
    assert!(matches!(
        journal.append(second).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(journal.last_sequence().await.unwrap(), Some(0));
    assert_eq!(
        journal
            .idempotency("acme", "k")
            .await
            .unwrap()
            .unwrap()
            .ad_id,
        a.ad_id
    );
}

#[tokio::test]
async fn merkle_nodes_and_blocks_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let journal = SledJournal::open(dir.path()).unwrap();
    let mut chain = Chain::new();
    let (first, _) = chain.batch(vec![vec![created(&ad("acme", 1, "bike"))]]);
    let leaf = first.merkle_nodes[0];
    journal.append(first).await.unwrap();

    let (mut second, _) = chain.batch(vec![vec![created(&ad("acme", 2, "car"))]]);
    second.merkle_nodes.push(MerkleNode {
        hash: Hash::of(b"something else"),
        ..leaf
    });
    assert!(matches!(
        journal.append(second.clone()).await,
        Err(Error::Corrupt(_))
    ));
    assert_eq!(journal.last_sequence().await.unwrap(), Some(0));
    assert_eq!(
        journal
            .merkle_nodes(&[(leaf.level, leaf.index)])
            .await
            .unwrap(),
        vec![Some(leaf.hash)]
    );

    // Re-sending an identical node is not an overwrite.
    second.merkle_nodes.pop();
    second.merkle_nodes.push(leaf);
    journal.append(second).await.unwrap();
    assert_eq!(journal.last_sequence().await.unwrap(), Some(1));
}

#[tokio::test]
async fn batches_that_break_the_contract_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let journal = SledJournal::open(dir.path()).unwrap();
    let mut chain = Chain::new();
    let (mut gap, _) = chain.batch(vec![vec![created(&ad("acme", 1, "bike"))]]);
    gap.blocks[0].sequence = 5;
    assert!(matches!(
        journal.append(gap).await,
        Err(Error::Backend {
            backend: "sled",
            ..
        })
    ));
    assert_eq!(journal.last_sequence().await.unwrap(), None);
}

#[tokio::test]
async fn large_blocks_go_to_sled_blob_files_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let journal = SledJournal::open(dir.path()).unwrap();
    let mut chain = Chain::new();
    // 20 revisions with 10,000-character descriptions: a ~200 KB block, over sled's
    // 128 KiB blob threshold.
    let bodies: Vec<_> = (0..20)
        .map(|n| {
            let mut big = ad("acme", n, "bike");
            big.ad_description = "x".repeat(10_000);
            created(&big)
        })
        .collect();
    let (batch, _) = chain.batch(vec![bodies]);
    let expected = batch.blocks.clone();
    assert!(expected[0].bytes.len() > 200_000);
    journal.append(batch).await.unwrap();
    let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
    assert!(blobs > 0, "expected sled to store the block in a blob file");
    drop(journal);

    let journal = SledJournal::open(dir.path()).unwrap();
    assert_eq!(journal.read_blocks(0, 1).await.unwrap(), expected);
}

#[tokio::test]
async fn reopen_after_drop_sees_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new();
    let a = ad("acme", 1, "bike");
    let (mut batch, _) = chain.batch(vec![vec![created(&a)], vec![change(&a.key(), 1, None)]]);
    batch
        .idempotency
        .push(idempotency("acme", "k", &a.ad_id, 0));
    {
        let journal = SledJournal::open(dir.path()).unwrap();
        journal.append(batch.clone()).await.unwrap();
    }
    let journal = SledJournal::open(dir.path()).unwrap();
    assert_eq!(journal.last_sequence().await.unwrap(), Some(1));
    assert_eq!(journal.read_blocks(0, 10).await.unwrap(), batch.blocks);
    assert_eq!(
        journal.ad_head(&a.key()).await.unwrap(),
        Some(batch.heads[0].new_head)
    );
    assert_eq!(
        journal.ad_revisions(&a.key()).await.unwrap(),
        batch.revisions
    );
    assert!(journal.idempotency("acme", "k").await.unwrap().is_some());
    let ids: Vec<_> = batch
        .merkle_nodes
        .iter()
        .map(|n| (n.level, n.index))
        .collect();
    let hashes: Vec<_> = batch.merkle_nodes.iter().map(|n| Some(n.hash)).collect();
    assert_eq!(journal.merkle_nodes(&ids).await.unwrap(), hashes);

    // And appending continues where it left off.
    let (next, _) = chain.batch(vec![vec![created(&ad("acme", 2, "car"))]]);
    journal.append(next).await.unwrap();
    assert_eq!(journal.last_sequence().await.unwrap(), Some(2));
}

#[tokio::test]
async fn concurrent_appends_on_one_tip_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let journal = std::sync::Arc::new(SledJournal::open(dir.path()).unwrap());
    let a = ad("acme", 1, "bike");
    let mut chain = Chain::new();
    let (first, _) = chain.batch(vec![vec![created(&a)]]);
    journal.append(first).await.unwrap();

    let mut tasks = Vec::new();
    for n in 0..8 {
        let mut contender = ad("acme", 1, "bike");
        contender.ad_title = format!("title {n}");
        let mut fork = Chain::new();
        let _ = fork.batch(vec![vec![created(&a)]]);
        let (batch, _) = fork.batch(vec![vec![change(&a.key(), 1, Some(contender))]]);
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move { journal.append(batch).await }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => wins += 1,
            Err(Error::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(journal.last_sequence().await.unwrap(), Some(1));
    assert_eq!(journal.ad_revisions(&a.key()).await.unwrap().len(), 2);
}
