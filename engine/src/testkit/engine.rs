//! Behaviours of the whole engine running over a backend.

use super::RunAsTester;
use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;

use super::{CountingJournal, Harness, all_blocks, all_revisions, draft, live_ads};
use crate::ad::{AdKey, AdPatch};
use crate::block;
use crate::command::Command;
use crate::error::Error;
use crate::ledger::Ledger;
use crate::merkle;
use crate::ports::SearchQuery;
use crate::projection::{Projector, ReadModel};
use crate::revision::{EventKind, Revision};
use crate::time::TimeRange;

fn create(publisher: &str, title: &str) -> Command {
    Command::CreateAd {
        publisher_id: publisher.to_string(),
        draft: draft(title, Some("10"), "misc", &["tag"]),
        idempotency_key: None,
    }
}

fn retitle(key: &AdKey, title: &str, expected_version: Option<u64>) -> Command {
    Command::UpdateAd {
        key: key.clone(),
        patch: AdPatch {
            ad_title: Some(title.to_string()),
            ..AdPatch::default()
        },
        expected_version,
    }
}

async fn created_key(ledger: &Ledger, publisher: &str, title: &str) -> AdKey {
    let outcome = ledger.run(create(publisher, title)).await.expect("create");
    outcome.ad.expect("created ad").key()
}

/// Create, update, delete: versions count from 0, the delete is a revision with no data,
/// reads answer 404/410 correctly, and another publisher cannot see or touch the ad.
pub async fn ledger_lifecycle_create_update_delete<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(1).await.expect("ledger");

    let created = ledger.run(create("acme", "Bike")).await.expect("create");
    assert_eq!(created.version, 0);
    assert!(!created.replayed);
    let key = created.ad.clone().expect("ad").key();
    assert_eq!(
        created.revision.as_ref().map(|r| r.body.event),
        Some(EventKind::AdCreated)
    );

    let updated = ledger
        .run(retitle(&key, "Bike, red", Some(0)))
        .await
        .expect("update");
    assert_eq!(updated.version, 1);
    let state = ledger.get(&key).await.expect("get");
    assert_eq!(state.version, 1);
    assert_eq!(state.ad.map(|a| a.ad_title), Some("Bike, red".to_string()));

    let stranger = AdKey::new("evil", &key.ad_id);
    assert!(matches!(
        ledger.get(&stranger).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        ledger.run(retitle(&stranger, "mine", None)).await,
        Err(Error::NotFound { .. })
    ));

    let deleted = ledger
        .run(Command::DeleteAd {
            key: key.clone(),
            expected_version: None,
        })
        .await
        .expect("delete");
    assert_eq!((deleted.version, deleted.ad), (2, None));
    assert!(matches!(
        ledger.get(&key).await,
        Err(Error::Gone { version: 2, .. })
    ));
    assert!(matches!(
        ledger.run(retitle(&key, "zombie", None)).await,
        Err(Error::Gone { .. })
    ));
    assert!(matches!(
        ledger
            .run(Command::DeleteAd {
                key: key.clone(),
                expected_version: None
            })
            .await,
        Err(Error::Gone { .. })
    ));
    let history = ledger
        .history(&key, TimeRange::default())
        .await
        .expect("history");
    let events: Vec<_> = history
        .iter()
        .map(|r| (r.version(), r.body.event))
        .collect();
    assert_eq!(
        events,
        vec![
            (0, EventKind::AdCreated),
            (1, EventKind::AdUpdated),
            (2, EventKind::AdDeleted)
        ]
    );
    assert!(history[2].body.data.is_none());
    assert!(
        ledger
            .list("acme", None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    let unknown = AdKey::new("acme", crate::testkit::ad_id(999));
    assert!(matches!(
        ledger.get(&unknown).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        ledger.history(&unknown, TimeRange::default()).await,
        Err(Error::NotFound { .. })
    ));
    ledger.shutdown().await;
}

/// Eight concurrent updates expecting the same version: exactly one wins, the others get
/// `Conflict`, and the journal holds exactly one new revision.
pub async fn ledger_concurrent_updates_exactly_one_wins<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = Arc::new(stores.ledger(2).await.expect("ledger"));
    let key = created_key(&ledger, "acme", "Contested").await;
    let attempts = (0..8).map(|i| {
        let ledger = ledger.clone();
        let key = key.clone();
        tokio::spawn(async move {
            ledger
                .run(retitle(&key, &format!("writer {i}"), Some(0)))
                .await
        })
    });
    let results: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Conflict { .. })))
        .count();
    assert_eq!((wins, conflicts), (1, 7), "{results:?}");
    let history = ledger
        .history(&key, TimeRange::default())
        .await
        .expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(ledger.get(&key).await.expect("get").version, 1);
    ledger.shutdown().await;
}

/// A create with an idempotency key returns the same ad on every retry, also after a
/// restart; the same key with a different body is refused.
pub async fn ledger_idempotent_create_is_forever<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let with_key = |title: &str| Command::CreateAd {
        publisher_id: "acme".into(),
        draft: draft(title, Some("5"), "misc", &[]),
        idempotency_key: Some("order-1".into()),
    };
    let first = {
        let stores = h.open(&place).await.expect("open");
        let ledger = Arc::new(stores.ledger(3).await.expect("ledger"));
        // Concurrent retries land in one batch or several: all must agree.
        let tries = (0..5).map(|_| {
            let ledger = ledger.clone();
            let cmd = with_key("Once");
            tokio::spawn(async move { ledger.run(cmd).await })
        });
        let outcomes: Vec<_> = join_all(tries)
            .await
            .into_iter()
            .map(|r| r.expect("task").expect("create"))
            .collect();
        let ids: std::collections::BTreeSet<_> = outcomes
            .iter()
            .map(|o| o.ad.clone().expect("ad").ad_id)
            .collect();
        assert_eq!(ids.len(), 1, "one ad for one key: {ids:?}");
        assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
        let reused = ledger.run(with_key("Different body")).await;
        assert!(
            matches!(&reused, Err(Error::Invalid { field, .. }) if field == "Idempotency-Key"),
            "{reused:?}"
        );
        let other_publisher = ledger
            .run(Command::CreateAd {
                publisher_id: "other".into(),
                draft: draft("Once", Some("5"), "misc", &[]),
                idempotency_key: Some("order-1".into()),
            })
            .await
            .expect("keys are per publisher");
        assert!(!other_publisher.replayed);
        ledger.shutdown().await;
        outcomes[0].ad.clone().expect("ad")
    };
    let stores = h.open(&place).await.expect("reopen");
    let ledger = stores.ledger(3).await.expect("ledger");
    let again = ledger
        .run(with_key("Once"))
        .await
        .expect("retry after restart");
    assert!(again.replayed);
    assert_eq!(again.ad, Some(first));
    assert_eq!(ledger.list("acme", None, 10).await.expect("list").len(), 1);
    ledger.shutdown().await;
}

/// An update that changes nothing succeeds and appends nothing.
pub async fn ledger_update_that_changes_nothing_appends_nothing<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(4).await.expect("ledger");
    let key = created_key(&ledger, "acme", "Same").await;
    let before = ledger.committed();
    let outcome = ledger
        .run(retitle(&key, "Same", Some(0)))
        .await
        .expect("noop");
    assert_eq!((outcome.version, outcome.revision.is_none()), (0, true));
    let empty = Command::UpdateAd {
        key: key.clone(),
        patch: AdPatch::default(),
        expected_version: None,
    };
    assert_eq!(ledger.run(empty).await.expect("empty patch").version, 0);
    assert_eq!(ledger.committed(), before);
    ledger.shutdown().await;
}

/// A read issued after a write returns sees the write, in the state store and in search.
pub async fn ledger_reads_see_own_writes<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(5).await.expect("ledger");
    for i in 0..10 {
        let title = format!("Unique{i} gadget");
        let key = created_key(&ledger, "acme", &title).await;
        assert_eq!(ledger.get(&key).await.expect("get").version, 0);
        let found = ledger
            .search(&SearchQuery {
                text: format!("unique{i}"),
                limit: 5,
                ..SearchQuery::default()
            })
            .await
            .expect("search");
        assert_eq!(
            found.ads.iter().map(|a| a.key()).collect::<Vec<_>>(),
            vec![key.clone()]
        );
        ledger
            .run(retitle(&key, "renamed", None))
            .await
            .expect("update");
        assert_eq!(
            ledger.get(&key).await.expect("get").ad.map(|a| a.ad_title),
            Some("renamed".into())
        );
    }
    ledger.shutdown().await;
}

/// After a restart the ledger continues the same chain: old reads work, new blocks link
/// to the old tip, and the Merkle tree extends consistently.
pub async fn ledger_reopen_continues_the_chain<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let (key, digest) = {
        let stores = h.open(&place).await.expect("open");
        let ledger = stores.ledger(6).await.expect("ledger");
        let key = created_key(&ledger, "acme", "Durable").await;
        ledger
            .run(retitle(&key, "Durable 2", None))
            .await
            .expect("update");
        let digest = ledger.digest().await.expect("digest").expect("non-empty");
        ledger.shutdown().await;
        (key, digest)
    };
    let stores = h.open(&place).await.expect("reopen");
    let ledger = stores.ledger(7).await.expect("ledger");
    assert_eq!(ledger.get(&key).await.expect("get").version, 1);
    assert_eq!(ledger.digest().await.expect("digest"), Some(digest));
    let other = created_key(&ledger, "acme", "After restart").await;
    let blocks = all_blocks(stores.journal.as_ref()).await.expect("blocks");
    assert_eq!(blocks.len(), 3);
    let third = block::open(&blocks[2]).expect("open");
    assert_eq!(third.header.previous_hash, digest.tip_hash);
    assert_eq!(third.revisions[0].key(), other);
    let hashes: Vec<_> = blocks
        .iter()
        .map(|b| block::open(b).map(|b| b.hash))
        .collect::<Result<_, _>>()
        .expect("hashes");
    let now = ledger.digest().await.expect("digest").expect("non-empty");
    assert_eq!(Some(now.root), merkle::root_of(&hashes));
    ledger.shutdown().await;
}

async fn run_script(ledger: &Ledger) -> Vec<String> {
    let mut out = Vec::new();
    let mut keys = Vec::new();
    for i in 0..6 {
        let o = ledger
            .run(Command::CreateAd {
                publisher_id: format!("pub{}", i % 2),
                draft: draft(&format!("Item {i}"), Some("19.99"), "misc", &["a", "b"]),
                idempotency_key: Some(format!("k{i}")),
            })
            .await
            .expect("create");
        keys.push(o.ad.clone().expect("ad").key());
        out.push(format!("{o:?}"));
    }
    for key in &keys[..3] {
        out.push(format!(
            "{:?}",
            ledger.run(retitle(key, "changed", None)).await
        ));
    }
    out.push(format!(
        "{:?}",
        ledger
            .run(Command::DeleteAd {
                key: keys[4].clone(),
                expected_version: None
            })
            .await
    ));
    out
}

/// The same commands with the same seed give the same ids, times, block bytes and
/// digest, on two independent stores.
pub async fn ledger_deterministic_runs_are_byte_identical<H: Harness>(h: &H) {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let place = h.place().await.expect("place");
        let stores = h.open(&place).await.expect("open");
        let ledger = stores.ledger(42).await.expect("ledger");
        let outcomes = run_script(&ledger).await;
        let digest = ledger.digest().await.expect("digest");
        let blocks = all_blocks(stores.journal.as_ref()).await.expect("blocks");
        ledger.shutdown().await;
        runs.push((outcomes, digest, blocks));
    }
    assert_eq!(runs[0].0, runs[1].0, "same outcomes");
    assert_eq!(runs[0].1, runs[1].1, "same digest");
    assert_eq!(runs[0].2, runs[1].2, "same stored bytes");
    assert_eq!(runs[0].2.len(), 10);
    // And a different seed gives different ids.
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(43).await.expect("ledger");
    assert_ne!(run_script(&ledger).await, runs[0].0);
    ledger.shutdown().await;
}

/// History filters by time range; as-of answers NotFound before creation, the version in
/// force in between, and Gone after the delete.
pub async fn ledger_history_and_as_of<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(8).await.expect("ledger");
    let key = created_key(&ledger, "acme", "v0").await;
    for v in 1..=3 {
        ledger
            .run(retitle(&key, &format!("v{v}"), None))
            .await
            .expect("update");
    }
    ledger
        .run(Command::DeleteAd {
            key: key.clone(),
            expected_version: None,
        })
        .await
        .expect("delete");
    let all = ledger
        .history(&key, TimeRange::default())
        .await
        .expect("history");
    assert_eq!(all.len(), 5);
    let t: Vec<_> = all.iter().map(|r| r.body.metadata.tx_time).collect();
    assert!(
        t.windows(2).all(|w| w[0] < w[1]),
        "logical clock advances: {t:?}"
    );

    let middle = TimeRange {
        from: Some(t[1]),
        to: Some(t[2]),
    };
    let versions: Vec<_> = ledger
        .history(&key, middle)
        .await
        .expect("range")
        .iter()
        .map(|r| r.version())
        .collect();
    assert_eq!(versions, vec![1, 2]);

    // Pages of two: each after the previous page's last version; `more` on all but the last.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = ledger
            .history_page(&key, TimeRange::default(), after, 2)
            .await
            .expect("page");
        assert!(page.revisions.len() <= 2);
        after = page.revisions.last().map(Revision::version);
        paged.extend(page.revisions.iter().map(Revision::version));
        if !page.more {
            break;
        }
    }
    assert_eq!(paged, vec![0, 1, 2, 3, 4]);
    let from_v1 = TimeRange {
        from: Some(t[1]),
        to: Some(t[3]),
    };
    let first = ledger
        .history_page(&key, from_v1, None, 2)
        .await
        .expect("ranged page");
    assert_eq!(
        first
            .revisions
            .iter()
            .map(Revision::version)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(first.more);
    let last = ledger
        .history_page(&key, from_v1, Some(2), 2)
        .await
        .expect("ranged page");
    assert_eq!(
        last.revisions
            .iter()
            .map(Revision::version)
            .collect::<Vec<_>>(),
        vec![3]
    );
    assert!(!last.more, "v4 lies after `to`");

    let before = t[0] - chrono::Duration::milliseconds(1);
    assert!(matches!(
        ledger.as_of(&key, before).await,
        Err(Error::NotFound { .. })
    ));
    let at_v2 = ledger.as_of(&key, t[2]).await.expect("as of v2");
    assert_eq!(at_v2.body.data.map(|a| a.ad_title), Some("v2".into()));
    let between = ledger
        .as_of(&key, t[3] - chrono::Duration::microseconds(500))
        .await
        .expect("between");
    assert_eq!(between.version(), 2);
    assert!(matches!(
        ledger.as_of(&key, t[4]).await,
        Err(Error::Gone { .. })
    ));
    ledger.shutdown().await;
}

/// The digest served from stored subtree roots equals the RFC 9162 tree computed from
/// scratch over every block hash, at the tip and at every earlier sequence.
pub async fn ledger_digest_matches_reference_tree<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = Arc::new(stores.ledger(9).await.expect("ledger"));
    assert_eq!(ledger.digest().await.expect("empty digest"), None);
    let creates = (0..37).map(|i| {
        let ledger = ledger.clone();
        tokio::spawn(async move { ledger.run(create("acme", &format!("ad {i}"))).await })
    });
    for r in join_all(creates).await {
        r.expect("task").expect("create");
    }
    let blocks = all_blocks(stores.journal.as_ref()).await.expect("blocks");
    let hashes: Vec<_> = blocks
        .iter()
        .map(|b| block::open(b).map(|b| b.hash))
        .collect::<Result<_, _>>()
        .expect("hashes");
    let mut previous = crate::Hash::ZERO;
    for (i, b) in blocks.iter().enumerate() {
        let opened = block::open(b).expect("open");
        assert_eq!(opened.header.previous_hash, previous, "chain link at {i}");
        previous = opened.hash;
    }
    for n in 1..=hashes.len() {
        let digest = ledger.digest_at(n as u64 - 1).await.expect("digest at");
        assert_eq!(Some(digest.root), merkle::root_of(&hashes[..n]), "size {n}");
        assert_eq!(digest.tip_hash, hashes[n - 1]);
    }
    ledger.shutdown().await;
}

/// Projecting the journal from scratch into fresh read models gives exactly the live ones.
pub async fn ledger_rebuild_equals_live_read_models<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(10).await.expect("ledger");
    let mut keys = Vec::new();
    for i in 0..12 {
        keys.push(created_key(&ledger, &format!("p{}", i % 3), &format!("Thing {i}")).await);
    }
    for key in keys.iter().step_by(2) {
        ledger
            .run(retitle(key, "Renamed thing", None))
            .await
            .expect("update");
    }
    for key in keys.iter().step_by(5) {
        ledger
            .run(Command::DeleteAd {
                key: key.clone(),
                expected_version: None,
            })
            .await
            .expect("delete");
    }
    ledger
        .wait_for_state(ledger.committed())
        .await
        .expect("state caught up");
    ledger
        .wait_for_search(ledger.committed())
        .await
        .expect("search caught up");

    let (state, search) = h
        .open_read_models(&place, "rebuild")
        .await
        .expect("fresh models");
    let journal = stores.journal.clone();
    let to_state = Projector::new(journal.clone(), ReadModel::State(state.clone()), 5);
    let to_search = Projector::new(journal, ReadModel::Search(search.clone()), 5);
    assert_eq!(
        to_state.catch_up().await.expect("rebuild state"),
        ledger.committed()
    );
    assert_eq!(
        to_search.catch_up().await.expect("rebuild search"),
        ledger.committed()
    );

    let publishers = ["p0", "p1", "p2"];
    let live = live_ads(stores.state.as_ref(), &publishers)
        .await
        .expect("live");
    let rebuilt = live_ads(state.as_ref(), &publishers)
        .await
        .expect("rebuilt");
    assert_eq!(live, rebuilt);
    assert_eq!(live.len(), 12 - 3);
    for key in &keys {
        assert_eq!(
            stores.state.get(key).await.expect("live get"),
            state.get(key).await.expect("rebuilt get")
        );
    }
    let q = SearchQuery {
        text: "renamed".into(),
        limit: 50,
        ..SearchQuery::default()
    };
    let mut a: Vec<_> = stores.search.search(&q).await.expect("live search").ads;
    let mut b: Vec<_> = search.search(&q).await.expect("rebuilt search").ads;
    a.sort_by(|x, y| x.ad_id.cmp(&y.ad_id));
    b.sort_by(|x, y| x.ad_id.cmp(&y.ad_id));
    assert_eq!(a, b);
    assert!(!a.is_empty());
    ledger.shutdown().await;
}

/// Many concurrent creates are all acknowledged, get distinct ids, and are written in
/// fewer appends than commands (group commit), with an unbroken chain.
pub async fn ledger_group_commit_batches_concurrent_creates<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let mut stores = h.open(&place).await.expect("open");
    let counting = Arc::new(CountingJournal::new(stores.journal.clone()));
    stores.journal = counting.clone();
    let ledger = Arc::new(stores.ledger(11).await.expect("ledger"));
    let creates = (0..300).map(|i| {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            ledger
                .run(create(&format!("p{}", i % 4), &format!("ad {i}")))
                .await
        })
    });
    let mut ids = std::collections::BTreeSet::new();
    let mut sequences = std::collections::BTreeSet::new();
    for r in join_all(creates).await {
        let o = r.expect("task").expect("create");
        ids.insert(o.ad.expect("ad").ad_id);
        sequences.insert(o.sequence);
    }
    assert_eq!(ids.len(), 300);
    assert_eq!(sequences.len(), 300, "one block per create");
    let revisions = all_revisions(stores.journal.as_ref())
        .await
        .expect("revisions");
    assert_eq!(revisions.len(), 300);
    ledger
        .wait_for_state(ledger.committed())
        .await
        .expect("caught up");
    let listed = live_ads(stores.state.as_ref(), &["p0", "p1", "p2", "p3"])
        .await
        .expect("list");
    assert_eq!(listed.len(), 300);
    let by_key: BTreeMap<_, _> = revisions.iter().map(|r| (r.key(), r.sequence())).collect();
    assert_eq!(by_key.len(), 300);
    let appends = counting.appends();
    assert!(
        appends < 300,
        "300 concurrent creates took {appends} appends: no group commit"
    );
    ledger.shutdown().await;
}

/// The evidence for every version of an ad, under every digest from its block to the
/// tip, verifies with nothing but the bundle and the digest; parameters out of range are
/// refused naming the parameter, and a missing ad or version is `NotFound`.
pub async fn ledger_revision_evidence_proves_every_version<H: Harness>(h: &H) {
    use crate::evidence::revision_evidence;
    use crate::hash::Hash;
    use crate::proof::verify_inclusion;

    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(31).await.expect("ledger");
    let key = created_key(&ledger, "acme", "Lamp").await;
    created_key(&ledger, "globex", "Chair").await;
    for round in 0..2 {
        ledger
            .run(retitle(&key, &format!("Lamp {round}"), None))
            .await
            .expect("update");
        created_key(&ledger, "acme", &format!("Filler {round}")).await;
    }
    let journal = stores.journal.as_ref();
    let last = journal
        .last_sequence()
        .await
        .expect("last")
        .expect("blocks");

    for version in 0..=2u64 {
        let first = revision_evidence(journal, &key, Some(version), None)
            .await
            .expect("evidence at the tip");
        assert_eq!(first.digest.sequence, last);
        for at in first.sequence()..=last {
            let evidence = revision_evidence(journal, &key, Some(version), Some(at))
                .await
                .expect("evidence");
            assert_eq!(evidence.revision.body.metadata.version, version);
            assert_eq!(evidence.revision.body.key(), key);
            assert_eq!(Hash::of(&evidence.revision_bytes), evidence.revision.hash);
            assert_eq!(
                evidence.header.revision_hashes[evidence.revision_index],
                evidence.revision.hash
            );
            assert_eq!(evidence.digest.sequence, at);
            verify_inclusion(
                &evidence.block_hash(),
                &evidence.proof,
                &evidence.digest.root,
            )
            .expect("the bundle verifies against its digest");
        }
        let early = first.sequence().checked_sub(1);
        if let Some(early) = early {
            let err = revision_evidence(journal, &key, Some(version), Some(early))
                .await
                .expect_err("a digest before the revision");
            assert!(
                matches!(&err, Error::Invalid { field, .. } if field == "digestSequence"),
                "{err:?}"
            );
        }
    }
    let latest = revision_evidence(journal, &key, None, None)
        .await
        .expect("latest");
    assert_eq!(latest.revision.body.metadata.version, 2);
    let err = revision_evidence(journal, &key, None, Some(last + 1))
        .await
        .expect_err("past the tip");
    assert!(
        matches!(&err, Error::Invalid { field, .. } if field == "digestSequence"),
        "{err:?}"
    );
    for (missing_key, version) in [
        (key.clone(), Some(3)),
        (
            AdKey {
                publisher_id: "globex".into(),
                ad_id: key.ad_id.clone(),
            },
            None,
        ),
    ] {
        let err = revision_evidence(journal, &missing_key, version, None)
            .await
            .expect_err("missing");
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    }
    ledger.shutdown().await;
}

/// Actors: each command's caller is written into its block's hashed header, shown as every
/// revision's `metadata.actor` in history and evidence, survives a reopen, and changes the
/// block hash (so it cannot be altered unnoticed); a command with no caller records none.
pub async fn ledger_actors_are_recorded_in_headers<H: Harness>(h: &H) {
    use crate::actor::Actor;
    use crate::codec;
    use crate::evidence::revision_evidence;
    use crate::verify::verify_journal;

    let place = h.place().await.expect("place");
    let alice = Actor::new("alice", "https://issuer.example").expect("actor");
    let bob = Actor::new("bob@example.com", "https://other.example/pool").expect("actor");
    let key = {
        let stores = h.open(&place).await.expect("open");
        let ledger = stores.ledger(41).await.expect("ledger");
        let created = ledger
            .execute_as(create("acme", "Sofa"), Some(alice.clone()))
            .await
            .expect("create");
        let key = created.ad.expect("ad").key();
        let revision = created.revision.expect("appended");
        assert_eq!(revision.body.metadata.actor.as_ref(), Some(&alice));
        ledger
            .execute_as(retitle(&key, "Sofa, blue", None), Some(bob.clone()))
            .await
            .expect("update");
        ledger
            .execute(retitle(&key, "Sofa, red", None))
            .await
            .expect("anonymous update");
        ledger.shutdown().await;
        key
    };

    let stores = h.open(&place).await.expect("reopen");
    let ledger = stores.ledger(41).await.expect("ledger");
    let history = ledger
        .history(&key, TimeRange::default())
        .await
        .expect("history");
    let actors: Vec<Option<Actor>> = history
        .iter()
        .map(|r| r.body.metadata.actor.clone())
        .collect();
    assert_eq!(actors, vec![Some(alice.clone()), Some(bob.clone()), None]);

    let journal = stores.journal.as_ref();
    for (version, expected) in actors.iter().enumerate() {
        let evidence = revision_evidence(journal, &key, Some(version as u64), None)
            .await
            .expect("evidence");
        assert_eq!(&evidence.revision.body.metadata.actor, expected);
        let header = codec::decode_header(&evidence.header_bytes).expect("header");
        assert_eq!(
            &header.actor, expected,
            "the actor is inside the header bytes the proof covers"
        );
        assert_eq!(
            crate::hash::Hash::of(&evidence.header_bytes),
            evidence.block_hash()
        );
    }
    let blocks = all_blocks(journal).await.expect("blocks");
    for stored in &blocks {
        block::open(stored).expect("every block opens");
    }
    let report = verify_journal(journal, None, &mut |_| {})
        .await
        .expect("read")
        .expect("a journal with actors verifies");
    assert_eq!(report.blocks, blocks.len() as u64);
    ledger.shutdown().await;
}
