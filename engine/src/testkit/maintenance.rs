//! Behaviours of the maintenance tools — the `scan`/`put` port methods they rest on,
//! replay, rebuild, snapshots, export and import — on a real backend.

use super::RunAsTester;
use std::path::Path;

use chrono::{TimeZone, Utc};

use super::{ChainBuilder, Harness, Stores, ad_id, draft, sample_ad};
use crate::ad::{AdKey, AdPatch};
use crate::command::Command;
use crate::diff::diff_states;
use crate::digest::digest_at;
use crate::error::Error;
use crate::export::{ExportFormat, export};
use crate::import::{ImportOptions, import};
use crate::ledger::Ledger;
use crate::ports::{AdState, SearchIndex, SearchQuery, StateStore};
use crate::rebuild::{RebuildOptions, clear_read_models, rebuild};
use crate::replay::replay_ad;
use crate::snapshot;
use crate::time::TimeRange;

fn key(publisher: &str, n: u32) -> AdKey {
    AdKey::new(publisher, ad_id(n))
}

fn state(key: &AdKey, version: u64, title: Option<&str>) -> AdState {
    AdState {
        key: key.clone(),
        version,
        sequence: version * 10,
        updated_at: Utc
            .with_ymd_and_hms(2022, 3, 4, 5, 6, 7)
            .single()
            .unwrap_or_default(),
        ad: title.map(|t| sample_ad(key, t)),
    }
}

fn text(t: &str) -> SearchQuery {
    SearchQuery {
        text: t.to_string(),
        limit: 50,
        ..SearchQuery::default()
    }
}

/// `scan` returns every entry, tombstones included, ordered by (publisher, ad id) as
/// bytes, paging strictly after the cursor.
pub async fn state_scan_orders_by_key_and_keeps_tombstones<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let s = &stores.state;
    assert!(s.scan(None, 10).await.expect("empty scan").is_empty());
    // Publisher "a" sorts before "a.b" and "ab", whatever the ids.
    let keys = [
        key("ab", 1),
        key("a", 9),
        key("a.b", 2),
        key("a", 3),
        key("b", 0),
    ];
    let mut chain = ChainBuilder::new();
    let mut changes: Vec<_> = keys
        .iter()
        .map(|k| (k.clone(), Some(sample_ad(k, "x"))))
        .collect();
    changes.push((keys[1].clone(), None));
    let (_, blocks) = chain.batch(changes).expect("batch");
    let revisions: Vec<_> = blocks.into_iter().flat_map(|b| b.revisions).collect();
    s.apply(&revisions, 6).await.expect("apply");

    let mut expected = keys.to_vec();
    expected.sort();
    let mut seen = Vec::new();
    let mut after: Option<AdKey> = None;
    loop {
        let page = s.scan(after.as_ref(), 2).await.expect("scan");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        seen.extend(page);
    }
    assert_eq!(
        seen.iter().map(|st| st.key.clone()).collect::<Vec<_>>(),
        expected
    );
    let tomb = seen.iter().find(|st| st.key == keys[1]).expect("tombstone");
    assert_eq!((tomb.version, tomb.ad.is_none()), (1, true));
    for st in &seen {
        assert_eq!(Some(st), s.get(&st.key).await.expect("get").as_ref());
    }
    assert!(s.scan(None, 0).await.expect("limit 0").is_empty());
    // A cursor that no longer exists still resumes after it.
    let gone = AdKey::new("a.a", "zzz");
    let page = s.scan(Some(&gone), 10).await.expect("scan");
    assert_eq!(
        page.first().map(|st| st.key.clone()),
        Some(expected[2].clone())
    );
}

/// `put` overwrites unconditionally (older versions and tombstones included), keeps the
/// last state of a key given twice, and sets the checkpoint only when asked.
pub async fn state_put_overwrites_and_sets_checkpoint<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let s = &stores.state;
    let (a, b) = (key("p", 1), key("p", 2));
    s.put(
        &[state(&a, 5, Some("five")), state(&b, 2, Some("two"))],
        Some(7),
    )
    .await
    .expect("put");
    assert_eq!(s.checkpoint().await.expect("cp"), 7);
    assert_eq!(
        s.get(&a).await.expect("get"),
        Some(state(&a, 5, Some("five")))
    );

    // An older version replaces a newer one; no checkpoint leaves it as it is.
    s.put(&[state(&a, 1, Some("one"))], None)
        .await
        .expect("put");
    assert_eq!(
        s.get(&a).await.expect("get"),
        Some(state(&a, 1, Some("one")))
    );
    assert_eq!(s.checkpoint().await.expect("cp"), 7);

    // A tombstone is stored as one; `list` skips it; the last of two states wins.
    s.put(
        &[
            state(&b, 3, None),
            state(&a, 2, Some("two")),
            state(&a, 3, Some("three")),
        ],
        Some(9),
    )
    .await
    .expect("put");
    assert_eq!(s.get(&b).await.expect("get"), Some(state(&b, 3, None)));
    let listed = s.list("p", None, 10).await.expect("list");
    assert_eq!(listed, vec![state(&a, 3, Some("three"))]);
    assert_eq!(s.checkpoint().await.expect("cp"), 9);

    // After a put, `apply` still decides by version against the put state.
    let mut chain = ChainBuilder::new();
    let (_, blocks) = chain
        .batch(vec![
            (a.clone(), Some(sample_ad(&a, "v0"))),
            (a.clone(), Some(sample_ad(&a, "v1"))),
        ])
        .expect("batch");
    let revisions: Vec<_> = blocks.into_iter().flat_map(|b| b.revisions).collect();
    s.apply(&revisions, 10).await.expect("apply");
    assert_eq!(s.get(&a).await.expect("get").map(|st| st.version), Some(3));
}

/// Search `put` overrides whatever is indexed: an older live version replaces a newer
/// one, a tombstone hides a live ad, a live state revives a tombstone; later `apply`
/// calls decide against the put version.
pub async fn search_put_overrides_versions_and_tombstones<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let idx = &stores.search;
    let (a, b) = (key("p", 1), key("p", 2));
    idx.put(
        &[
            state(&a, 4, Some("walnut desk")),
            state(&b, 1, Some("oak chair")),
        ],
        Some(3),
    )
    .await
    .expect("put");
    assert_eq!(idx.checkpoint().await.expect("cp"), 3);
    assert_eq!(idx.search(&text("walnut")).await.expect("search").total, 1);

    // Older version, new title: replaces the newer document.
    idx.put(&[state(&a, 2, Some("pine desk"))], None)
        .await
        .expect("put older");
    assert_eq!(idx.search(&text("walnut")).await.expect("search").total, 0);
    assert_eq!(idx.search(&text("pine")).await.expect("search").total, 1);
    assert_eq!(idx.checkpoint().await.expect("cp"), 3);

    // A tombstone hides the ad; a live put brings it back, even at a lower version.
    idx.put(&[state(&b, 6, None)], Some(4))
        .await
        .expect("tombstone");
    assert_eq!(idx.search(&text("oak")).await.expect("search").total, 0);
    assert_eq!(idx.search(&text("")).await.expect("all").total, 1);
    idx.put(&[state(&b, 5, Some("oak chair"))], Some(5))
        .await
        .expect("revive");
    assert_eq!(idx.search(&text("oak")).await.expect("search").total, 1);
    assert_eq!(idx.checkpoint().await.expect("cp"), 5);

    // `apply` of a revision not newer than the put version is ignored; a newer one wins.
    let mut chain = ChainBuilder::new();
    let changes: Vec<_> = (0..4)
        .map(|i| (a.clone(), Some(sample_ad(&a, &format!("maple {i}")))))
        .collect();
    let (_, blocks) = chain.batch(changes).expect("batch");
    let revisions: Vec<_> = blocks.into_iter().flat_map(|bl| bl.revisions).collect();
    idx.apply(&revisions[..3], 6).await.expect("apply old");
    assert_eq!(idx.search(&text("pine")).await.expect("search").total, 1);
    idx.apply(&revisions[3..], 7).await.expect("apply new");
    assert_eq!(idx.search(&text("pine")).await.expect("search").total, 0);
    assert_eq!(idx.search(&text("maple")).await.expect("search").total, 1);
}

/// An index that reports each hit's version and commit time (`SearchPage::versions`)
/// reports those of the revision or state it indexed, one per hit, in page order: the
/// server serves such pages without reading the state store. An index that does not
/// (OpenSearch) answers `None`. An index that answers hits as JSON (`search_json`)
/// answers each as the API's view of the same revision.
pub async fn search_hits_carry_their_indexed_version<H: Harness>(h: &H) {
    use crate::ports::IndexedVersion;

    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let idx = &stores.search;
    let (a, b) = (key("p", 1), key("p", 2));
    let mut chain = ChainBuilder::new();
    let changes = vec![
        (a.clone(), Some(sample_ad(&a, "teak table"))),
        (b.clone(), Some(sample_ad(&b, "teak stool"))),
        (a.clone(), Some(sample_ad(&a, "teak table, oiled"))),
    ];
    let (_, blocks) = chain.batch(changes).expect("batch");
    let revisions: Vec<_> = blocks.into_iter().flat_map(|bl| bl.revisions).collect();
    idx.apply(&revisions, 3).await.expect("apply");
    let of = |r: &crate::revision::Revision| IndexedVersion {
        version: r.version(),
        updated_at: r.body.metadata.tx_time,
    };
    let expected = |ids: &[String]| -> Vec<IndexedVersion> {
        ids.iter()
            .map(|id| {
                let latest = revisions
                    .iter()
                    .rfind(|r| r.body.metadata.id == *id)
                    .expect("an indexed ad");
                of(latest)
            })
            .collect()
    };
    for q in [text("teak"), text("")] {
        let page = idx.search(&q).await.expect("search");
        assert_eq!(page.ads.len(), 2, "{q:?}");
        let ids: Vec<String> = page.ads.iter().map(|ad| ad.ad_id.clone()).collect();
        if let Some(versions) = &page.versions {
            assert_eq!(versions, &expected(&ids), "{q:?}: the applied revisions");
        }
        // An index that answers hits as JSON answers the bytes of the API's view of the
        // same hits, in the same order: what a GET of each ad answers.
        if let Some(json) = idx.search_json(&q).await.expect("search_json") {
            let views: Vec<String> = page
                .ads
                .iter()
                .zip(expected(&ids))
                .map(|(ad, v)| {
                    let view = crate::ad_view::AdView::new(ad.clone(), v.version, &v.updated_at);
                    serde_json::to_string(&view).expect("view")
                })
                .collect();
            assert_eq!((json.total, json.hits), (page.total, views), "{q:?}");
        }
    }
    assert_eq!(revisions[2].version(), revisions[0].version() + 1);

    // A put state is reported as put (a restore or rebuild writes with it).
    let put = state(&a, 9, Some("teak table, restored"));
    idx.put(std::slice::from_ref(&put), Some(4))
        .await
        .expect("put");
    let page = idx.search(&text("restored")).await.expect("search");
    assert_eq!(page.ads.len(), 1);
    if let Some(json) = idx
        .search_json(&text("restored"))
        .await
        .expect("search_json")
    {
        let view = crate::ad_view::AdView::new(page.ads[0].clone(), 9, &put.updated_at);
        assert_eq!(json.hits, vec![serde_json::to_string(&view).expect("view")]);
    }
    if let Some(versions) = page.versions {
        assert_eq!(
            versions,
            vec![IndexedVersion {
                version: 9,
                updated_at: put.updated_at,
            }]
        );
    }
}

// -- Replay, rebuild, snapshots, export and import over a real ledger --

const PUBLISHERS: [&str; 3] = ["m0", "m1", "m2"];

/// A ledger's worth of history: 15 ads over three publishers, every other one updated
/// twice, every fifth deleted, one create with an idempotency key. Returns the keys.
async fn populate(ledger: &Ledger, offset: usize) -> Vec<AdKey> {
    let mut keys = Vec::new();
    for i in offset..offset + 15 {
        let outcome = ledger
            .run(Command::CreateAd {
                publisher_id: PUBLISHERS[i % 3].to_string(),
                draft: draft(&format!("Gadget {i}"), Some("5.50"), "tools", &["m"]),
                idempotency_key: (i == offset).then(|| format!("key-{i}")),
            })
            .await
            .expect("create");
        keys.push(outcome.ad.expect("ad").key());
    }
    for (n, key) in keys.iter().enumerate().step_by(2) {
        for round in 0..2 {
            ledger
                .run(retitle(key, &format!("Gadget {n} mark {round}")))
                .await
                .expect("update");
        }
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
    caught_up(ledger).await;
    keys
}

fn retitle(key: &AdKey, title: &str) -> Command {
    Command::UpdateAd {
        key: key.clone(),
        patch: AdPatch {
            ad_title: Some(title.to_string()),
            ..AdPatch::default()
        },
        expected_version: None,
    }
}

async fn caught_up(ledger: &Ledger) {
    let next = ledger.committed();
    ledger.wait_for_state(next).await.expect("state caught up");
    ledger
        .wait_for_search(next)
        .await
        .expect("search caught up");
}

/// Every entry of a state store, through `scan`.
async fn entries(state: &dyn StateStore) -> Vec<AdState> {
    let mut out: Vec<AdState> = Vec::new();
    loop {
        let page = state
            .scan(out.last().map(|s| &s.key), 4)
            .await
            .expect("scan");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// What a set of searches returns, as comparable text.
async fn search_view(search: &dyn SearchIndex) -> Vec<String> {
    let mut out = Vec::new();
    for text in ["", "gadget", "mark", "tools"] {
        let page = search
            .search(&SearchQuery {
                text: text.into(),
                limit: 100,
                ..SearchQuery::default()
            })
            .await
            .expect("search");
        let mut ids: Vec<String> = page
            .ads
            .iter()
            .map(|a| format!("{}:{}", a.ad_id, a.ad_title))
            .collect();
        ids.sort();
        out.push(format!("{text:?} total {} {ids:?}", page.total));
    }
    out
}

async fn assert_same_read_models(
    expected: (&dyn StateStore, &dyn SearchIndex),
    actual: (&dyn StateStore, &dyn SearchIndex),
) {
    let diff = diff_states(expected.0, actual.0, 10).await.expect("diff");
    assert!(diff.is_empty(), "state stores differ: {diff:?}");
    assert_eq!(entries(expected.0).await, entries(actual.0).await);
    assert_eq!(
        expected.0.checkpoint().await.expect("cp"),
        actual.0.checkpoint().await.expect("cp")
    );
    assert_eq!(search_view(expected.1).await, search_view(actual.1).await);
    assert_eq!(
        expected.1.checkpoint().await.expect("cp"),
        actual.1.checkpoint().await.expect("cp")
    );
}

fn options(batch_blocks: usize) -> RebuildOptions {
    RebuildOptions {
        batch_blocks,
        ..RebuildOptions::default()
    }
}

/// Replaying one ad over `[from, to]` leaves both read models with the state the live
/// projection had at `to`; without `to`, the current state; an empty range is `NotFound`.
pub async fn maintenance_replay_one_ad_over_a_range_equals_live_state_at_to<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(21).await.expect("ledger");
    let keys = populate(&ledger, 0).await;
    let key = &keys[2]; // created, then updated twice
    let history = ledger
        .history(key, TimeRange::default())
        .await
        .expect("history");
    assert_eq!(history.len(), 3);
    let time = |i: usize| history[i].body.metadata.tx_time;
    let current = stores.state.get(key).await.expect("get").expect("present");

    // Range ending at version 1: the read models go back to version 1.
    let range = TimeRange {
        from: Some(time(0)),
        to: Some(time(1)),
    };
    let report = replay_ad(
        stores.journal.as_ref(),
        stores.state.as_ref(),
        stores.search.as_ref(),
        key,
        range,
    )
    .await
    .expect("replay");
    assert_eq!(
        (report.revisions, report.version, report.head_version),
        (2, 1, 2)
    );
    let at_to = ledger.as_of(key, time(1)).await.expect("as of");
    assert_eq!(
        stores.state.get(key).await.expect("get"),
        Some(AdState::from_revision(&at_to))
    );
    let title = at_to
        .body
        .data
        .as_ref()
        .map(|a| a.ad_title.clone())
        .unwrap_or_default();
    let found = stores
        .search
        .search(&SearchQuery {
            text: "mark".into(),
            limit: 100,
            ..SearchQuery::default()
        })
        .await
        .expect("search");
    let hit = found
        .ads
        .iter()
        .find(|a| a.ad_id == key.ad_id)
        .expect("indexed");
    assert_eq!(hit.ad_title, title);

    // No upper bound: back to the current state.
    let range = TimeRange {
        from: Some(time(1)),
        to: None,
    };
    let report = replay_ad(
        stores.journal.as_ref(),
        stores.state.as_ref(),
        stores.search.as_ref(),
        key,
        range,
    )
    .await
    .expect("replay");
    assert_eq!((report.revisions, report.version), (2, 2));
    assert_eq!(stores.state.get(key).await.expect("get"), Some(current));

    // A deleted ad replays to its tombstone, and stays out of search.
    let deleted = &keys[5];
    let report = replay_ad(
        stores.journal.as_ref(),
        stores.state.as_ref(),
        stores.search.as_ref(),
        deleted,
        TimeRange::default(),
    )
    .await
    .expect("replay deleted");
    assert!(report.deleted);
    assert!(matches!(ledger.get(deleted).await, Err(Error::Gone { .. })));

    // A range holding none of its revisions.
    let empty = TimeRange {
        from: Some(time(2) + chrono::Duration::days(1)),
        to: None,
    };
    let err = replay_ad(
        stores.journal.as_ref(),
        stores.state.as_ref(),
        stores.search.as_ref(),
        key,
        empty,
    )
    .await
    .expect_err("nothing in range");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    ledger.shutdown().await;
}

/// After the read models are lost (cleared), a rebuild from the journal gives them back
/// exactly: every entry, tombstones included, the same searches, the same checkpoints.
pub async fn maintenance_rebuild_after_loss_equals_the_originals<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(22).await.expect("ledger");
    populate(&ledger, 0).await;
    ledger.shutdown().await;
    let (copy_state, copy_search) = h.open_read_models(&place, "copy").await.expect("copy");
    rebuild(
        stores.journal.as_ref(),
        copy_state.as_ref(),
        copy_search.as_ref(),
        &options(4),
        &mut |_| {},
    )
    .await
    .expect("copy");
    let before = entries(stores.state.as_ref()).await;
    let searches = search_view(stores.search.as_ref()).await;

    clear_read_models(stores.state.as_ref(), stores.search.as_ref())
        .await
        .expect("lose");
    assert!(entries(stores.state.as_ref()).await.is_empty());
    let mut calls = Vec::new();
    let report = rebuild(
        stores.journal.as_ref(),
        stores.state.as_ref(),
        stores.search.as_ref(),
        &options(7),
        &mut |p| calls.push(p.next),
    )
    .await
    .expect("rebuild");
    let size = stores
        .journal
        .last_sequence()
        .await
        .expect("last")
        .map_or(0, |l| l + 1);
    assert!(report.complete);
    assert_eq!(
        (report.resumed_from, report.next, report.blocks),
        (0, size, size)
    );
    assert_eq!(
        calls.len() as u64,
        size.div_ceil(7),
        "one progress call per batch"
    );
    assert_eq!(entries(stores.state.as_ref()).await, before);
    assert_eq!(search_view(stores.search.as_ref()).await, searches);
    assert_same_read_models(
        (stores.state.as_ref(), stores.search.as_ref()),
        (copy_state.as_ref(), copy_search.as_ref()),
    )
    .await;
    // A rebuild of up-to-date read models has nothing to do.
    let again = rebuild(
        stores.journal.as_ref(),
        stores.state.as_ref(),
        stores.search.as_ref(),
        &options(7),
        &mut |_| {},
    )
    .await
    .expect("again");
    assert_eq!((again.resumed_from, again.blocks), (size, 0));
}

/// A rebuild stopped after k batches has both checkpoints at its last batch; the next
/// run resumes there (it does not start over) and ends equal to an uninterrupted one.
pub async fn maintenance_interrupted_rebuild_resumes_from_its_checkpoint<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(23).await.expect("ledger");
    populate(&ledger, 0).await;
    ledger.shutdown().await;
    let (state, search) = h.open_read_models(&place, "resumed").await.expect("fresh");
    let stopped = rebuild(
        stores.journal.as_ref(),
        state.as_ref(),
        search.as_ref(),
        &RebuildOptions {
            batch_blocks: 5,
            max_batches: Some(2),
            ..RebuildOptions::default()
        },
        &mut |_| {},
    )
    .await
    .expect("interrupted");
    assert!(!stopped.complete);
    assert_eq!((stopped.next, stopped.blocks), (10, 10));
    assert_eq!(state.checkpoint().await.expect("cp"), 10);
    assert_eq!(search.checkpoint().await.expect("cp"), 10);

    let resumed = rebuild(
        stores.journal.as_ref(),
        state.as_ref(),
        search.as_ref(),
        &options(5),
        &mut |_| {},
    )
    .await
    .expect("resumed");
    let size = stores
        .journal
        .last_sequence()
        .await
        .expect("last")
        .map_or(0, |l| l + 1);
    assert_eq!(resumed.resumed_from, 10, "resumes, does not start over");
    assert_eq!(resumed.blocks, size - 10);
    assert!(resumed.complete);
    assert_same_read_models(
        (stores.state.as_ref(), stores.search.as_ref()),
        (state.as_ref(), search.as_ref()),
    )
    .await;
}

fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// A snapshot taken mid-history, restored into empty read models and followed by the
/// tail, equals a full rebuild.
pub async fn maintenance_snapshot_restore_plus_tail_equals_rebuild<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(24).await.expect("ledger");
    populate(&ledger, 0).await;
    let dir = workdir();
    let path = dir.path().join("first.jsonl");
    let header = snapshot::create(
        stores.journal.as_ref(),
        stores.state.as_ref(),
        &path,
        Utc::now(),
    )
    .await
    .expect("snapshot");
    assert_eq!(header.sequence + 1, ledger.committed());
    assert_eq!(
        snapshot::check_file(&path).expect("checks"),
        header,
        "the file checks on its own"
    );
    populate(&ledger, 100).await; // the tail
    ledger.shutdown().await;

    let (restored_state, restored_search) =
        h.open_read_models(&place, "restored").await.expect("fresh");
    // Stale content in the target is cleared by the restore.
    restored_state
        .put(&[state(&key("zz", 1), 3, Some("stale"))], Some(1))
        .await
        .expect("stale");
    let report = snapshot::restore(
        stores.journal.as_ref(),
        restored_state.as_ref(),
        restored_search.as_ref(),
        &path,
        &options(6),
        &mut |_| {},
    )
    .await
    .expect("restore");
    assert_eq!(report.restored, header.count);
    assert_eq!(report.tail.resumed_from, header.sequence + 1);
    assert!(report.tail.blocks > 0);

    let (rebuilt_state, rebuilt_search) =
        h.open_read_models(&place, "rebuilt").await.expect("fresh");
    rebuild(
        stores.journal.as_ref(),
        rebuilt_state.as_ref(),
        rebuilt_search.as_ref(),
        &options(6),
        &mut |_| {},
    )
    .await
    .expect("rebuild");
    assert_same_read_models(
        (rebuilt_state.as_ref(), rebuilt_search.as_ref()),
        (restored_state.as_ref(), restored_search.as_ref()),
    )
    .await;
    assert_same_read_models(
        (stores.state.as_ref(), stores.search.as_ref()),
        (restored_state.as_ref(), restored_search.as_ref()),
    )
    .await;
}

fn rewrite(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("read");
    change(&mut bytes);
    std::fs::write(path, bytes).expect("write");
}

fn position(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

/// A snapshot with altered content, or one taken from another journal, is refused
/// before the read models are touched.
pub async fn maintenance_tampered_snapshot_is_refused<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(25).await.expect("ledger");
    populate(&ledger, 0).await;
    let dir = workdir();
    let good = dir.path().join("good.jsonl");
    snapshot::create(
        stores.journal.as_ref(),
        stores.state.as_ref(),
        &good,
        Utc::now(),
    )
    .await
    .expect("snapshot");
    ledger.shutdown().await;
    let before = entries(stores.state.as_ref()).await;
    let restore = |path: std::path::PathBuf| {
        let stores = stores.clone();
        async move {
            snapshot::restore(
                stores.journal.as_ref(),
                stores.state.as_ref(),
                stores.search.as_ref(),
                &path,
                &RebuildOptions::default(),
                &mut |_| {},
            )
            .await
        }
    };

    // One character of one ad's title.
    let altered = dir.path().join("altered.jsonl");
    std::fs::copy(&good, &altered).expect("copy");
    rewrite(&altered, |b| {
        let at = position(b, b"Gadget 3");
        b[at + 7] = b'4';
    });
    let err = restore(altered).await.expect_err("altered content");
    assert!(
        matches!(&err, Error::Invalid { field, reason } if field == "snapshot" && reason.contains("altered")),
        "{err}"
    );
    // A line removed from the end.
    let cut = dir.path().join("cut.jsonl");
    std::fs::copy(&good, &cut).expect("copy");
    rewrite(&cut, |b| {
        b.pop();
        let end = b.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
        b.truncate(end);
    });
    let err = restore(cut).await.expect_err("truncated");
    assert!(err.to_string().contains("altered"), "{err}");
    assert_eq!(
        entries(stores.state.as_ref()).await,
        before,
        "nothing was touched"
    );

    // A consistent snapshot of another journal: refused by the digest, naming it.
    let other_place = h.place().await.expect("place");
    let other = h.open(&other_place).await.expect("open");
    let other_ledger = other.ledger(26).await.expect("ledger");
    populate(&other_ledger, 50).await;
    let foreign = dir.path().join("foreign.jsonl");
    let header = snapshot::create(
        other.journal.as_ref(),
        other.state.as_ref(),
        &foreign,
        Utc::now(),
    )
    .await
    .expect("snapshot");
    other_ledger.shutdown().await;
    let err = restore(foreign).await.expect_err("foreign snapshot");
    let text = err.to_string();
    assert!(
        text.contains(&format!("sequence {}", header.sequence)) && text.contains("another journal"),
        "{text}"
    );
    assert_eq!(
        entries(stores.state.as_ref()).await,
        before,
        "nothing was touched"
    );
}

async fn export_to(
    stores: &Stores,
    format: ExportFormat,
    path: &Path,
) -> crate::export::ExportReport {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let report = export(
        stores.journal.as_ref(),
        TimeRange::default(),
        format,
        &mut file,
        &mut |_, _| {},
    )
    .await
    .expect("export");
    drop(file);
    report
}

/// Export then import into a fresh place, in both formats: the same blocks, digest and
/// tip hash, heads, revision refs and idempotency records; a ledger on the imported
/// journal continues the chain and still answers a retried create from its key.
pub async fn maintenance_export_import_round_trip_keeps_the_digest<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(27).await.expect("ledger");
    let keys = populate(&ledger, 0).await;
    ledger.shutdown().await;
    let last = stores
        .journal
        .last_sequence()
        .await
        .expect("last")
        .expect("blocks");
    let digest = digest_at(stores.journal.as_ref(), last)
        .await
        .expect("digest");
    let dir = workdir();
    for format in [ExportFormat::Ion, ExportFormat::Jsonl] {
        let path = dir.path().join(format!("{format:?}.export"));
        let report = export_to(&stores, format, &path).await;
        assert_eq!(report.blocks, last + 1);
        assert_eq!(report.digest, Some(digest));

        let target_place = h.place().await.expect("place");
        let target = h.open(&target_place).await.expect("open");
        let summary = import(
            target.journal.as_ref(),
            &path,
            &ImportOptions {
                batch_blocks: 8,
                ..ImportOptions::default()
            },
            &mut |_| {},
        )
        .await
        .expect("import");
        assert_eq!(summary.blocks, last + 1);
        assert_eq!(
            digest_at(target.journal.as_ref(), last)
                .await
                .expect("digest"),
            digest,
            "{format:?}"
        );
        assert_eq!(
            super::all_blocks(target.journal.as_ref())
                .await
                .expect("blocks"),
            super::all_blocks(stores.journal.as_ref())
                .await
                .expect("blocks")
        );
        for key in &keys {
            assert_eq!(
                target.journal.ad_head(key).await.expect("head"),
                stores.journal.ad_head(key).await.expect("head")
            );
            assert_eq!(
                target.journal.ad_revisions(key).await.expect("refs"),
                stores.journal.ad_revisions(key).await.expect("refs")
            );
        }
        // Idempotency records are re-derived from the idempotency tag in the hashed
        // header, so a moved ledger still answers a retried create.
        let record = stores
            .journal
            .idempotency("m0", "key-0")
            .await
            .expect("record");
        assert!(record.is_some(), "the source recorded the key");
        assert_eq!(
            target
                .journal
                .idempotency("m0", "key-0")
                .await
                .expect("record"),
            record
        );
        // Importing twice is refused: the journal is not empty any more.
        let again = import(
            target.journal.as_ref(),
            &path,
            &ImportOptions::default(),
            &mut |_| {},
        )
        .await
        .expect_err("not empty");
        assert!(matches!(again, Error::Invalid { .. }), "{again:?}");

        // A ledger on the imported journal: the retried create is answered from its key,
        // and the chain continues.
        let imported = target.ledger(27).await.expect("ledger");
        let retried = imported
            .run(Command::CreateAd {
                publisher_id: "m0".into(),
                draft: draft("Gadget 0", Some("5.50"), "tools", &["m"]),
                idempotency_key: Some("key-0".into()),
            })
            .await
            .expect("retry");
        assert!(
            retried.replayed,
            "the retry is answered from the imported key"
        );
        assert_eq!(retried.ad.map(|a| a.key()), Some(keys[0].clone()));
        imported
            .run(retitle(&keys[1], "after the move"))
            .await
            .expect("update");
        caught_up(&imported).await;
        imported.shutdown().await;
    }
}

fn expect_refused_at(err: Error, sequence: u64) {
    match err {
        Error::ChainBroken {
            sequence: at,
            detail,
        } => {
            assert_eq!(at, sequence, "{detail}");
        }
        other => panic!("expected a refusal at sequence {sequence}, got {other:?}"),
    }
}

/// An export cut short, or with one byte of one block altered, is refused naming the
/// failing sequence, and nothing is written to the target journal.
pub async fn maintenance_truncated_or_altered_export_is_refused<H: Harness>(h: &H) {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(28).await.expect("ledger");
    let keys = populate(&ledger, 0).await;
    ledger.shutdown().await;
    // The block creating ad 7 holds the title "Gadget 7".
    let target_sequence = stores.journal.ad_revisions(&keys[7]).await.expect("refs")[0].sequence;
    let dir = workdir();
    let attempt = |path: std::path::PathBuf| async move {
        let target_place = h.place().await.expect("place");
        let target = h.open(&target_place).await.expect("open");
        let result = import(
            target.journal.as_ref(),
            &path,
            &ImportOptions::default(),
            &mut |_| {},
        )
        .await;
        assert_eq!(
            target.journal.last_sequence().await.expect("last"),
            None,
            "a refused import writes nothing"
        );
        result
    };

    for format in [ExportFormat::Ion, ExportFormat::Jsonl] {
        let good = dir.path().join(format!("{format:?}.good"));
        export_to(&stores, format, &good).await;

        // Altered: one character of a title inside block `target_sequence`.
        let altered = dir.path().join(format!("{format:?}.altered"));
        std::fs::copy(&good, &altered).expect("copy");
        match format {
            ExportFormat::Ion => rewrite(&altered, |b| {
                let at = position(b, b"Gadget 7");
                b[at + 7] = b'8';
            }),
            ExportFormat::Jsonl => rewrite(&altered, |b| {
                let text = String::from_utf8(b.clone()).expect("utf-8");
                let lines: Vec<String> = text
                    .lines()
                    .map(|line| {
                        let mut v: serde_json::Value = serde_json::from_str(line).expect("json");
                        if v["sequenceNo"].as_u64() == Some(target_sequence) {
                            let mut frame = base64
                                .decode(v["frame"].as_str().expect("frame"))
                                .expect("base64");
                            let at = position(&frame, b"Gadget 7");
                            frame[at + 7] = b'8';
                            v["frame"] = base64.encode(frame).into();
                        }
                        v.to_string()
                    })
                    .collect();
                *b = (lines.join("\n") + "\n").into_bytes();
            }),
        }
        let err = attempt(altered).await.expect_err("altered export");
        expect_refused_at(err, target_sequence);

        // Truncated: cut in the middle of block `target_sequence`'s record.
        let cut = dir.path().join(format!("{format:?}.cut"));
        std::fs::copy(&good, &cut).expect("copy");
        if format == ExportFormat::Ion {
            rewrite(&cut, |b| {
                let at = position(b, b"Gadget 7");
                b.truncate(at);
            });
        } else {
            // The base64 text does not contain the title: cut before that block's line.
            let text = std::fs::read_to_string(&good).expect("read");
            let keep: Vec<&str> = text.lines().take(1 + target_sequence as usize).collect();
            std::fs::write(&cut, keep.join("\n") + "\n").expect("write");
        }
        let err = attempt(cut).await.expect_err("truncated export");
        expect_refused_at(err, target_sequence);

        // The closing digest removed: everything verifies but the file has no end.
        let headless = dir.path().join(format!("{format:?}.nodigest"));
        if format == ExportFormat::Jsonl {
            let text = std::fs::read_to_string(&good).expect("read");
            let lines: Vec<&str> = text.lines().collect();
            std::fs::write(&headless, lines[..lines.len() - 1].join("\n") + "\n").expect("write");
            let err = attempt(headless).await.expect_err("no digest");
            let blocks = stores
                .journal
                .last_sequence()
                .await
                .expect("last")
                .map_or(0, |l| l + 1);
            expect_refused_at(err, blocks);
        }
    }
}
