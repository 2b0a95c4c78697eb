//! The feed over an in-memory ledger: pages, filters, positions, and the verifier
//! against every way of dropping, swapping, duplicating or altering events.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use super::*;
use crate::clock::LogicalClock;
use crate::ids::UlidGenerator;
use crate::memory::MemoryBackend;
use crate::ports::{Journal, Ports};
use crate::revision_view::RevisionView;
use crate::{AdDraft, AdKey, AdPatch, Command, Ledger, LedgerOptions};

const EVERY: u64 = 4;

fn options() -> FeedOptions {
    FeedOptions {
        digest_every: EVERY,
        ..FeedOptions::default()
    }
}

/// A deterministic ledger with `creates` ads over two publishers, every other ad updated
/// and every third deleted.
async fn ledger(creates: usize) -> (Ledger, Arc<dyn Journal>) {
    let backend = MemoryBackend::new();
    let ports = Ports {
        journal: backend.journal.clone(),
        state: backend.state.clone(),
        search: backend.search.clone(),
        clock: Arc::new(LogicalClock::new()),
        ids: Arc::new(UlidGenerator::seeded(7)),
        sharing: Default::default(),
    };
    let journal = ports.journal.clone();
    let ledger = Ledger::open(ports, LedgerOptions::default())
        .await
        .expect("open");
    for n in 0..creates {
        let publisher = if n % 2 == 0 { "acme" } else { "globex" };
        let created = ledger
            .execute(Command::CreateAd {
                publisher_id: publisher.into(),
                draft: AdDraft::titled(&format!("ad {n}")).expect("title"),
                idempotency_key: None,
            })
            .await
            .expect("create");
        let ad = created.ad.expect("created ad");
        let key = AdKey::new(publisher, &ad.ad_id);
        if n % 2 == 0 {
            let patch =
                AdPatch::from_json(&json!({"adTitle": format!("ad {n}, changed"), "price": 19.90}))
                    .expect("patch");
            // Updates carry an actor, creates and deletes none: the feed shows both.
            let editor = crate::Actor::new("editor", "https://issuer.example").expect("actor");
            ledger
                .execute_as(
                    Command::UpdateAd {
                        key: key.clone(),
                        patch,
                        expected_version: None,
                    },
                    Some(editor),
                )
                .await
                .expect("update");
        }
        if n % 3 == 0 {
            ledger
                .execute(Command::DeleteAd {
                    key,
                    expected_version: None,
                })
                .await
                .expect("delete");
        }
    }
    (ledger, journal)
}

async fn whole_feed(journal: &dyn Journal, limit: usize, filter: &FeedFilter) -> Vec<CloudEvent> {
    let (source, tip) = source_and_tip(journal).await;
    let mut position = Position::START;
    let mut events = Vec::new();
    loop {
        let page = read_page(journal, &source, &options(), filter, position, limit, tip)
            .await
            .expect("page");
        assert!(
            page.next > position || page.at_tip(),
            "a page always advances"
        );
        events.extend(page.events.clone());
        position = page.next;
        if page.at_tip() {
            return events;
        }
    }
}

async fn source_and_tip(journal: &dyn Journal) -> (String, u64) {
    let source = ledger_source(journal)
        .await
        .expect("source")
        .expect("not empty");
    let tip = journal
        .last_sequence()
        .await
        .expect("tip")
        .map_or(0, |l| l + 1);
    (source, tip)
}

/// The whole feed of a ten-ad ledger, for the tests that damage it.
fn sample_feed() -> Vec<CloudEvent> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (_ledger, journal) = ledger(10).await;
        whole_feed(journal.as_ref(), 100, &FeedFilter::default()).await
    })
}

#[tokio::test]
async fn the_feed_is_every_revision_in_order_with_digests_and_verifies() {
    let (ledger, journal) = ledger(12).await;
    let events = whole_feed(journal.as_ref(), 5, &FeedFilter::default()).await;
    let blocks = ledger.committed();
    let digests = blocks / EVERY;
    assert_eq!(
        events.len() as u64,
        blocks + digests,
        "one event per revision plus digests"
    );
    let summary = FeedVerifier::with_digest_every(EVERY)
        .starting_at(Position::START)
        .check_all(&events)
        .expect("the feed verifies");
    assert_eq!(summary.events, events.len() as u64);
    assert_eq!(summary.digests, digests);
    assert_eq!(summary.blocks_under_digest, digests * EVERY);
    // The updates' actor is in their data (and verified against the header bytes).
    let actors: Vec<Value> = events
        .iter()
        .filter(|e| e.event_type == "adledger.ad.updated")
        .map(|e| {
            let data: Value = serde_json::from_str(e.data.get()).expect("data");
            data["metadata"]["actor"].clone()
        })
        .collect();
    assert!(!actors.is_empty());
    assert!(actors.iter().all(|a| a["sub"] == "editor"), "{actors:?}");
    // Ids sort as strings in the order delivered.
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    // Paging does not change the feed.
    assert_eq!(
        whole_feed(journal.as_ref(), 1, &FeedFilter::default()).await,
        events
    );
    assert_eq!(
        whole_feed(journal.as_ref(), 1000, &FeedFilter::default()).await,
        events
    );
}

#[tokio::test]
async fn data_is_the_revision_as_the_api_shows_it() {
    let (ledger, journal) = ledger(3).await;
    let events = whole_feed(journal.as_ref(), 100, &FeedFilter::default()).await;
    let first = &events[0];
    let first_data: Value = serde_json::from_str(first.data.get()).expect("json");
    let key = AdKey::new("acme", first_data["metadata"]["id"].as_str().expect("id"));
    let history = ledger
        .history(&key, Default::default())
        .await
        .expect("history");
    let expected: Vec<Value> = history
        .into_iter()
        .map(|r| serde_json::to_value(RevisionView::from(r)).expect("view"))
        .collect();
    let subject = format!("publisher/acme/ad/{}", key.ad_id);
    let shown: Vec<Value> = events
        .iter()
        .filter(|e| e.subject.as_deref() == Some(subject.as_str()))
        .map(|e| serde_json::from_str(e.data.get()).expect("json"))
        .collect();
    assert_eq!(shown, expected);
    assert_eq!(first.event_type, AD_CREATED);
    assert_eq!(first.id, "00000000000000000000-0000");
    assert_eq!(first.prevblockhash, "0".repeat(64));
    assert!(first.source.starts_with("urn:adledger:"));
    assert!(
        first
            .data
            .get()
            .starts_with(r#"{"blockAddress":{"strandId":"adledger-0","sequenceNo":0},"hash":"#),
        "struct order kept"
    );
    assert_eq!(shown[0]["data"]["adTitle"], json!("ad 0"));
}

#[tokio::test]
async fn filters_drop_events_but_positions_still_advance() {
    let (_ledger, journal) = ledger(12).await;
    let all = whole_feed(journal.as_ref(), 100, &FeedFilter::default()).await;
    let filter = FeedFilter {
        types: vec![AD_DELETED.into()],
        publisher_id: Some("globex".into()),
    };
    let filtered = whole_feed(journal.as_ref(), 2, &filter).await;
    let expected: Vec<CloudEvent> = all
        .into_iter()
        .filter(|e| {
            e.event_type == AD_DELETED
                && e.subject
                    .as_deref()
                    .is_some_and(|s| s.starts_with("publisher/globex/"))
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(filtered, expected);

    // A filter nothing matches still walks to the tip, a bounded number of blocks at a time.
    let (source, tip) = source_and_tip(journal.as_ref()).await;
    let none = FeedFilter {
        types: vec![],
        publisher_id: Some("nobody".into()),
    };
    let small = FeedOptions {
        max_scan_blocks: 5,
        ..options()
    };
    let page = read_page(
        journal.as_ref(),
        &source,
        &small,
        &none,
        Position::START,
        10,
        tip,
    )
    .await
    .expect("page");
    assert!(page.events.is_empty());
    assert_eq!(page.next, Position { block: 5, index: 0 });
    assert!(!page.at_tip());
}

#[tokio::test]
async fn a_reader_resumes_inside_a_block_after_the_id_it_last_saw() {
    let (_ledger, journal) = ledger(8).await;
    let all = whole_feed(journal.as_ref(), 100, &FeedFilter::default()).await;
    let digest_at = all
        .iter()
        .position(|e| e.event_type == LEDGER_DIGEST)
        .expect("a digest event");
    // Resume after the revision just before the digest event, inside the same block.
    let before = &all[digest_at - 1];
    let position = Position::parse(&before.id).expect("id");
    let (source, tip) = source_and_tip(journal.as_ref()).await;
    let page = read_page(
        journal.as_ref(),
        &source,
        &options(),
        &FeedFilter::default(),
        position,
        1000,
        tip,
    )
    .await
    .expect("page");
    assert_eq!(page.events.as_slice(), &all[digest_at..]);
    FeedVerifier::new()
        .starting_at(position)
        .check_all(&page.events)
        .expect("a resumed run verifies");
}

/// One way to corrupt a feed.
#[derive(Debug, Clone)]
enum Damage {
    Drop(usize),
    Swap(usize, usize),
    Duplicate(usize, usize),
    /// Change the `leaf`-th scalar of event `event` (in a walk of its JSON).
    Alter {
        event: usize,
        leaf: usize,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Drop),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Damage::Swap(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Damage::Duplicate(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(event, leaf)| Damage::Alter { event, leaf }),
    ]
}

/// Applies the damage; `None` when it would leave the feed unchanged or only cut its end
/// (a feed that stops early is indistinguishable from one read earlier: the verifier
/// cannot catch that, and says so).
fn apply(events: &[CloudEvent], damage: &Damage) -> Option<Vec<CloudEvent>> {
    let n = events.len();
    let mut out = events.to_vec();
    match *damage {
        Damage::Drop(i) => {
            let i = i % (n - 1);
            out.remove(i);
        }
        Damage::Swap(a, b) => {
            let (a, b) = (a % n, b % n);
            if a == b {
                return None;
            }
            out.swap(a, b);
        }
        Damage::Duplicate(a, at) => {
            let a = a % n;
            let at = at % (n + 1);
            out.insert(at, events[a].clone());
        }
        Damage::Alter { event, leaf } => {
            let i = event % n;
            let mut value = serde_json::to_value(&events[i]).expect("event json");
            let count = count_leaves(&value);
            alter_leaf(&mut value, &mut (leaf % count));
            match serde_json::from_value::<CloudEvent>(value) {
                Ok(altered) => out[i] = altered,
                // An event no longer shaped like one is caught by any consumer's parser.
                Err(_) => return None,
            }
        }
    }
    (out != events).then_some(out)
}

fn count_leaves(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.values().map(count_leaves).sum(),
        Value::Array(items) => items.iter().map(count_leaves).sum(),
        _ => 1,
    }
}

/// Changes the `*left`-th scalar leaf to a different value of the same kind.
fn alter_leaf(value: &mut Value, left: &mut usize) -> bool {
    match value {
        Value::Object(map) => map.values_mut().any(|v| alter_leaf(v, left)),
        Value::Array(items) => items.iter_mut().any(|v| alter_leaf(v, left)),
        leaf => {
            if *left > 0 {
                *left -= 1;
                return false;
            }
            *leaf = match leaf.take() {
                Value::String(s) => {
                    let mut chars: Vec<char> = s.chars().collect();
                    match chars.last_mut() {
                        Some(c) => *c = if *c == '1' { '2' } else { '1' },
                        None => chars.push('x'),
                    }
                    Value::String(chars.into_iter().collect())
                }
                Value::Number(n) => json!(n.as_u64().map_or(1, |v| v + 1)),
                Value::Bool(b) => Value::Bool(!b),
                _ => json!("x"),
            };
            true
        }
    }
}

#[test]
fn the_verifier_catches_every_drop_swap_duplicate_and_alteration() {
    let events = sample_feed();
    assert!(events.iter().any(|e| e.event_type == LEDGER_DIGEST));
    let mut runner = TestRunner::new(Config {
        cases: 512,
        ..Config::default()
    });
    runner
        .run(&damage(), |damage| {
            let Some(damaged) = apply(&events, &damage) else {
                return Ok(());
            };
            let verdict = FeedVerifier::with_digest_every(EVERY)
                .starting_at(Position::START)
                .check_all(&damaged);
            let diff: Vec<String> = events
                .iter()
                .zip(&damaged)
                .filter(|(a, b)| a != b)
                .map(|(a, b)| {
                    let a = serde_json::to_value(a).unwrap_or_default();
                    let b = serde_json::to_value(b).unwrap_or_default();
                    json_diff(&a, &b, String::new())
                })
                .take(1)
                .collect();
            prop_assert!(verdict.is_err(), "{damage:?} was not caught: {diff:?}");
            Ok(())
        })
        .expect("every damage is caught");
}

#[test]
fn a_learning_verifier_catches_a_dropped_digest_once_it_has_seen_one() {
    let events = sample_feed();
    let digests: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.event_type == LEDGER_DIGEST)
        .map(|(i, _)| i)
        .collect();
    assert!(digests.len() >= 2);
    let mut damaged = events.clone();
    damaged.remove(digests[1]);
    let verdict = FeedVerifier::new().check_all(&damaged);
    assert!(matches!(verdict, Err(FeedError::Gap { .. })), "{verdict:?}");
}

/// Where two JSON values first differ, for failure messages.
fn json_diff(a: &Value, b: &Value, path: String) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .find_map(|(k, v)| {
                (y.get(k) != Some(v))
                    .then(|| json_diff(v, y.get(k).unwrap_or(&Value::Null), format!("{path}.{k}")))
            })
            .unwrap_or(path),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| (v != w).then(|| json_diff(v, w, format!("{path}[{i}]"))))
            .unwrap_or(path),
        _ => format!("{path}: {a} -> {b}"),
    }
}

#[tokio::test]
async fn a_run_that_starts_at_a_digest_event_binds_the_blocks_after_it() {
    let (_ledger, journal) = ledger(10).await;
    let all = whole_feed(journal.as_ref(), 100, &FeedFilter::default()).await;
    let digests: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, e)| e.event_type == LEDGER_DIGEST)
        .map(|(i, _)| i)
        .collect();
    assert!(digests.len() >= 3);
    // Resume right before the first digest event: it hands the verifier the frontier.
    let run = &all[digests[0]..=digests[2]];
    let summary = FeedVerifier::new()
        .check_all(run)
        .expect("a run from a digest event verifies");
    assert_eq!(summary.digests, 3);
    assert_eq!(summary.blocks_under_digest, 2 * EVERY);

    // A block hash that is self-consistent (header and link) but is not in the tree
    // cannot be made: altering any hash breaks the chain or the fold to the root. Here the
    // first digest's frontier is forged; the next digest's root exposes it.
    let mut forged = run.to_vec();
    let mut data: Value = serde_json::from_str(forged[0].data.get()).expect("json");
    data["frontier"][0] = json!("00".repeat(32));
    let size = data["digest"]["sequence"].as_u64().expect("sequence") + 1;
    let frontier: Vec<crate::Hash> =
        serde_json::from_value(data["frontier"].clone()).expect("hashes");
    let root = crate::merkle::Frontier::from_nodes(size, &frontier)
        .and_then(|f| f.root())
        .expect("a root");
    data["digest"]["root"] = json!(root);
    forged[0].data = serde_json::value::to_raw_value(&data).expect("raw");
    let verdict = FeedVerifier::new().check_all(&forged);
    assert!(
        matches!(verdict, Err(FeedError::Digest { .. })),
        "{verdict:?}"
    );
}
