//! The projector lease against a real DynamoDB server: the item's conditional writes
//! (acquire, renew, refusal while valid, takeover after expiry, release, a race), then
//! two ledgers sharing one set of tables as two server processes would: exactly one
//! projects into the state store, a write made through either is readable through both,
//! and the standby takes over when the holder shuts down.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use adledger_aws::lease::LeaseHolder;
use adledger_aws::{DynamoJournal, DynamoLease, DynamoStateStore, TableNames, search};
use adledger_engine::clock::SystemClock;
use adledger_engine::ids::UlidGenerator;
use adledger_engine::ports::{LeaseGrant, ProjectionLease, Sharing};
use adledger_engine::projection::ProjectorRole;
use adledger_engine::testkit::draft;
use adledger_engine::{AdKey, AdPatch, Command, Ledger, LedgerOptions, Ports};

async fn tables(endpoint: &str) -> (adledger_aws::aws_sdk_dynamodb::Client, TableNames) {
    let client = support::client(endpoint);
    let names = support::fresh_tables(&client).await.expect("tables");
    (client, names)
}

fn lease(
    client: &adledger_aws::aws_sdk_dynamodb::Client,
    names: &TableNames,
    owner: &str,
    duration: Duration,
) -> DynamoLease {
    DynamoLease::new(client.clone(), &names.journal, &names.state, owner).with_duration(duration)
}

fn held(grant: &LeaseGrant) -> bool {
    matches!(grant, LeaseGrant::Held { .. })
}

#[tokio::test]
async fn acquire_renew_refuse_release() {
    let endpoint = support::endpoint();
    let (client, names) = tables(&endpoint).await;
    let ttl = Duration::from_secs(30);
    let a = lease(&client, &names, "owner-a", ttl);
    let b = lease(&client, &names, "owner-b", ttl);

    assert_eq!(a.holder().await.expect("holder"), None, "no lease yet");
    let grant = a.acquire().await.expect("a acquires");
    assert_eq!(grant, LeaseGrant::Held { valid_for: ttl });
    let first: LeaseHolder = a.holder().await.expect("holder").expect("stored");
    assert_eq!(first.owner, "owner-a");

    // The other owner is refused while the lease is valid, and told who holds it.
    match b.acquire().await.expect("b asks") {
        LeaseGrant::HeldElsewhere { owner, expires_in } => {
            assert_eq!(owner, "owner-a");
            assert!(
                expires_in > Duration::from_secs(20) && expires_in <= ttl,
                "{expires_in:?}"
            );
        }
        other => panic!("b must be refused, got {other:?}"),
    }
    assert_eq!(
        a.holder().await.expect("holder").map(|h| h.owner),
        Some("owner-a".into()),
        "a refused acquire changes nothing"
    );

    // Renewing moves the expiry forward.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(held(&a.acquire().await.expect("a renews")));
    let renewed = a.holder().await.expect("holder").expect("stored");
    assert_eq!(renewed.owner, "owner-a");
    assert!(renewed.expires > first.expires, "{renewed:?} vs {first:?}");

    // Releasing by a non-holder does nothing; by the holder frees the lease at once.
    b.release().await.expect("b releases nothing");
    assert_eq!(
        a.holder().await.expect("holder").map(|h| h.owner),
        Some("owner-a".into())
    );
    a.release().await.expect("a releases");
    assert_eq!(a.holder().await.expect("holder"), None);
    assert!(held(&b.acquire().await.expect("b acquires")));
    assert!(!held(&a.acquire().await.expect("a asks")));
}

#[tokio::test]
async fn lapsed_lease_is_taken_over() {
    let endpoint = support::endpoint();
    let (client, names) = tables(&endpoint).await;
    // Long enough that b asks while a's grant is valid, even on a loaded machine.
    let ttl = Duration::from_secs(2);
    let a = lease(&client, &names, "owner-a", ttl);
    let b = lease(&client, &names, "owner-b", ttl);

    assert!(held(&a.acquire().await.expect("a acquires")));
    assert!(!held(&b.acquire().await.expect("b is refused")));
    // a stops renewing (a crash); once its lease has lapsed, b takes it.
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    assert!(held(&b.acquire().await.expect("b takes over")));
    assert_eq!(
        b.holder().await.expect("holder").map(|h| h.owner),
        Some("owner-b".into())
    );
    // The old holder coming back is refused, and its release does not free b's lease.
    match a.acquire().await.expect("a asks") {
        LeaseGrant::HeldElsewhere { owner, .. } => assert_eq!(owner, "owner-b"),
        other => panic!("a must be refused, got {other:?}"),
    }
    a.release().await.expect("a releases nothing");
    assert_eq!(
        b.holder().await.expect("holder").map(|h| h.owner),
        Some("owner-b".into())
    );
}

#[tokio::test]
async fn racing_acquirers_exactly_one_wins() {
    let endpoint = support::endpoint();
    let (client, names) = tables(&endpoint).await;
    for round in 0..3 {
        let contenders: Vec<DynamoLease> = (0..8)
            .map(|i| {
                lease(
                    &client,
                    &names,
                    &format!("owner-{round}-{i}"),
                    Duration::from_secs(30),
                )
            })
            .collect();
        let grants = futures::future::join_all(contenders.iter().map(|l| l.acquire())).await;
        let winners: Vec<&str> = grants
            .iter()
            .zip(&contenders)
            .filter(|(g, _)| held(g.as_ref().expect("acquire answers")))
            .map(|(_, l)| l.owner())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {grants:?}");
        let stored = contenders[0]
            .holder()
            .await
            .expect("holder")
            .expect("stored");
        assert_eq!(stored.owner, winners[0]);
        for contender in &contenders {
            contender.release().await.expect("release");
        }
        assert_eq!(contenders[0].holder().await.expect("holder"), None);
    }
}

/// One "process": a ledger over the shared tables with its own lease owner and its own
/// tantivy index.
async fn process(
    client: &adledger_aws::aws_sdk_dynamodb::Client,
    names: &TableNames,
    owner: &str,
    dir: &std::path::Path,
) -> Ledger {
    let lease: Arc<dyn ProjectionLease> =
        Arc::new(lease(client, names, owner, Duration::from_millis(1500)));
    let ports = Ports {
        journal: Arc::new(
            DynamoJournal::open(client.clone(), &names.journal)
                .await
                .expect("journal"),
        ),
        state: Arc::new(
            DynamoStateStore::open(client.clone(), &names.state)
                .await
                .expect("state"),
        ),
        search: Arc::new(search::open_tantivy(dir).expect("tantivy")),
        clock: Arc::new(SystemClock),
        ids: Arc::new(UlidGenerator::random()),
        sharing: Sharing {
            journal: true,
            state: Some(lease),
            search: None,
        },
    };
    Ledger::open(ports, LedgerOptions::default())
        .await
        .expect("ledger")
}

/// Polls until `done` holds, for at most `limit`.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

async fn create(ledger: &Ledger, title: &str) -> AdKey {
    let outcome = ledger
        .execute(Command::CreateAd {
            publisher_id: "p".into(),
            draft: draft(title, Some("10"), "cars", &["red"]),
            idempotency_key: None,
        })
        .await
        .expect("create");
    let ad = outcome.ad.expect("created ad");
    AdKey::new("p", ad.ad_id.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ledgers_one_projector_and_reads_see_each_others_writes() {
    let endpoint = support::endpoint();
    let (client, names) = tables(&endpoint).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let first = process(&client, &names, "process-1", &dir.path().join("s1")).await;
    let second = process(&client, &names, "process-2", &dir.path().join("s2")).await;

    let one_holder = || {
        let roles = [first.state_projector(), second.state_projector()];
        roles
            .iter()
            .filter(|r| matches!(r, ProjectorRole::Holder { .. }))
            .count()
            == 1
            && roles.iter().all(|r| !matches!(r, ProjectorRole::Exclusive))
    };
    assert!(
        eventually(Duration::from_secs(10), one_holder).await,
        "exactly one holder expected: {:?} / {:?}",
        first.state_projector(),
        second.state_projector()
    );
    // Each process projects into its own search index.
    assert_eq!(first.search_projector(), ProjectorRole::Exclusive);
    assert_eq!(second.search_projector(), ProjectorRole::Exclusive);

    // Writes through both, concurrently; each is readable through both at once.
    let mut keys = Vec::new();
    for round in 0..5 {
        let (title_a, title_b) = (format!("first {round}"), format!("second {round}"));
        let (a, b) = tokio::join!(create(&first, &title_a), create(&second, &title_b));
        keys.push(a);
        keys.push(b);
    }
    for key in &keys {
        for ledger in [&first, &second] {
            let state = ledger
                .get(key)
                .await
                .expect("read-your-writes across processes");
            assert_eq!(state.version, 0);
        }
    }
    // Search sees the other process's writes too (each index projects the whole journal).
    for ledger in [&first, &second] {
        let page = ledger
            .search(&adledger_engine::SearchQuery {
                limit: 50,
                ..Default::default()
            })
            .await
            .expect("search");
        assert_eq!(page.total, 10);
    }

    // The holder shuts down (releasing the lease); the standby takes over and projects.
    let (holder, standby) = if matches!(first.state_projector(), ProjectorRole::Holder { .. }) {
        (first, second)
    } else {
        (second, first)
    };
    holder.shutdown().await;
    drop(holder);
    assert!(
        eventually(Duration::from_secs(10), || matches!(
            standby.state_projector(),
            ProjectorRole::Holder { .. }
        ))
        .await,
        "the standby did not take over: {:?}",
        standby.state_projector()
    );
    let key = create(&standby, "after takeover").await;
    assert_eq!(standby.get(&key).await.expect("read").version, 0);
    standby.shutdown().await;
}

fn retitle(key: &AdKey, title: &str, expected: Option<u64>) -> Command {
    Command::UpdateAd {
        key: key.clone(),
        patch: AdPatch {
            ad_title: Some(title.into()),
            ..AdPatch::default()
        },
        expected_version: expected,
    }
}

/// Each process's committer caches ad heads. A head another process has moved since must
/// never decide an answer on its own: not a version conflict, not "nothing changes".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cached_head_gives_no_false_answer() {
    let endpoint = support::endpoint();
    let (client, names) = tables(&endpoint).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let first = process(&client, &names, "process-1", &dir.path().join("s1")).await;
    let second = process(&client, &names, "process-2", &dir.path().join("s2")).await;

    // The first process creates the ad (and caches its head at version 0); the second
    // updates it to version 1 ("b"), caching that.
    let key = create(&first, "a").await;
    let v1 = second
        .execute(retitle(&key, "b", Some(0)))
        .await
        .expect("update through the second process");
    assert_eq!(v1.version, 1);

    // A client that read version 1 updates through the first process, whose cache still
    // says 0: the precondition holds and the update must succeed.
    let v2 = first
        .execute(retitle(&key, "c", Some(1)))
        .await
        .expect("a correct If-Match through a process with a stale cache");
    assert_eq!(v2.version, 2);
    assert_eq!(v2.ad.as_ref().map(|a| a.ad_title.as_str()), Some("c"));

    // The second process's cache says the title is "b"; setting it to "b" does change
    // the ad (it is "c" now), so it must append version 3, not answer "no change".
    let v3 = second
        .execute(retitle(&key, "b", None))
        .await
        .expect("update through the second process");
    assert_eq!(v3.version, 3);
    assert!(v3.revision.is_some(), "a change appends a revision");

    // A stale precondition is still refused, through either process.
    for ledger in [&first, &second] {
        let refused = ledger.execute(retitle(&key, "d", Some(2))).await;
        assert!(
            matches!(refused, Err(adledger_engine::Error::Conflict { .. })),
            "{refused:?}"
        );
    }
    for ledger in [&first, &second] {
        let state = ledger.get(&key).await.expect("read");
        assert_eq!(state.version, 3);
        assert_eq!(state.ad.map(|a| a.ad_title), Some("b".to_string()));
    }
    first.shutdown().await;
    second.shutdown().await;
}
