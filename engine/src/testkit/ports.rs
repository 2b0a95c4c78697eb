//! Behaviours of the three storage ports, checked directly.

use rust_decimal::Decimal;

use super::{ChainBuilder, Harness, ad_id, all_blocks, mostly_deleted_ads, sample_ad};
use crate::ad::AdKey;
use crate::error::Error;
use crate::ports::{AdHead, IdempotencyRecord, SearchQuery};
use crate::revision::Revision;

fn key(publisher: &str, n: u32) -> AdKey {
    AdKey::new(publisher, ad_id(n))
}

/// An empty journal has no tip, blocks, heads, revisions, records or nodes.
pub async fn journal_starts_empty<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let j = &stores.journal;
    assert_eq!(j.last_sequence().await.expect("last"), None);
    assert!(j.read_blocks(0, 10).await.expect("read").is_empty());
    assert_eq!(j.ad_head(&key("p", 1)).await.expect("head"), None);
    assert!(j.ad_revisions(&key("p", 1)).await.expect("revs").is_empty());
    assert_eq!(j.idempotency("p", "k").await.expect("idem"), None);
    assert_eq!(j.merkle_nodes(&[(0, 0)]).await.expect("nodes"), vec![None]);
}

/// Appended blocks read back byte for byte, in order, with heads and revision refs.
pub async fn journal_append_then_read_back<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let j = &stores.journal;
    let mut chain = ChainBuilder::new();
    let (a, b) = (key("p", 1), key("q", 2));
    let (batch, _) = chain
        .batch(vec![
            (a.clone(), Some(sample_ad(&a, "one"))),
            (b.clone(), Some(sample_ad(&b, "two"))),
            (a.clone(), Some(sample_ad(&a, "one, again"))),
        ])
        .expect("batch");
    j.append(batch.clone()).await.expect("append");
    assert_eq!(j.last_sequence().await.expect("last"), Some(2));
    assert_eq!(all_blocks(j.as_ref()).await.expect("blocks"), batch.blocks);
    let middle = j.read_blocks(1, 1).await.expect("read");
    assert_eq!(middle, vec![batch.blocks[1].clone()]);
    // Scattered blocks in one call, in the order asked; a sequence past the end is left out.
    assert_eq!(
        j.read_blocks_at(&[0, 2, 7]).await.expect("read at"),
        vec![batch.blocks[0].clone(), batch.blocks[2].clone()]
    );
    assert_eq!(
        j.read_blocks_at(&[1, 2]).await.expect("read run"),
        batch.blocks[1..].to_vec()
    );
    assert!(j.read_blocks_at(&[]).await.expect("read none").is_empty());
    assert!(
        j.read_blocks(3, 10)
            .await
            .expect("read past end")
            .is_empty()
    );
    assert_eq!(
        j.ad_head(&a).await.expect("head"),
        Some(AdHead {
            version: 1,
            sequence: 2,
            deleted: false
        })
    );
    let refs = j.ad_revisions(&a).await.expect("refs");
    assert_eq!(
        refs.iter()
            .map(|r| (r.version, r.sequence))
            .collect::<Vec<_>>(),
        vec![(0, 0), (1, 2)]
    );
    // Another publisher's key with the same id is a different ad.
    assert_eq!(
        j.ad_head(&AdKey::new("q", &a.ad_id)).await.expect("head"),
        None
    );

    let (delete, _) = chain.batch(vec![(b.clone(), None)]).expect("batch");
    j.append(delete).await.expect("append delete");
    assert_eq!(
        j.ad_head(&b).await.expect("head"),
        Some(AdHead {
            version: 1,
            sequence: 3,
            deleted: true
        })
    );
}

/// A batch whose expected tip is stale is refused with `Conflict`, and nothing of it is
/// written.
pub async fn journal_refuses_stale_tip_and_writes_nothing<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let j = &stores.journal;
    let a = key("p", 1);
    let mut chain = ChainBuilder::new();
    let (first, _) = chain
        .batch(vec![(a.clone(), Some(sample_ad(&a, "a")))])
        .expect("batch");
    j.append(first.clone()).await.expect("append");

    // The same batch again: its expected tip (empty journal) is stale now.
    let err = j.append(first).await.expect_err("stale tip must fail");
    assert!(matches!(err, Error::Conflict { .. }), "got {err:?}");
    assert_eq!(j.last_sequence().await.expect("last"), Some(0));

    // A batch claiming a tip beyond the real one fails too.
    let b = key("p", 2);
    let (mut ahead, _) = chain
        .batch(vec![(b.clone(), Some(sample_ad(&b, "b")))])
        .expect("batch");
    ahead.expected_last = Some(5);
    let err = j.append(ahead).await.expect_err("wrong tip must fail");
    assert!(matches!(err, Error::Conflict { .. }), "got {err:?}");
    assert_eq!(j.last_sequence().await.expect("last"), Some(0));
    assert_eq!(j.ad_head(&b).await.expect("head"), None);
    assert!(j.ad_revisions(&b).await.expect("refs").is_empty());
}

/// A batch whose expected ad head is stale is refused with `Conflict`, and nothing of it
/// (block, head, refs, idempotency record, Merkle node) is written.
pub async fn journal_refuses_stale_head_and_writes_nothing<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let j = &stores.journal;
    let a = key("p", 1);
    let mut chain = ChainBuilder::new();
    let (first, _) = chain
        .batch(vec![(a.clone(), Some(sample_ad(&a, "a")))])
        .expect("batch");
    j.append(first).await.expect("append");

    let (mut update, _) = chain
        .batch(vec![(a.clone(), Some(sample_ad(&a, "a2")))])
        .expect("batch");
    update.heads[0].expected_version = Some(7);
    update.idempotency.push(IdempotencyRecord {
        publisher_id: "p".into(),
        key: "k1".into(),
        request_hash: crate::Hash::ZERO,
        ad_id: a.ad_id.clone(),
        sequence: 1,
    });
    let err = j
        .append(update.clone())
        .await
        .expect_err("stale head must fail");
    assert!(matches!(err, Error::Conflict { .. }), "got {err:?}");
    assert_eq!(j.last_sequence().await.expect("last"), Some(0));
    assert_eq!(
        j.ad_head(&a).await.expect("head").map(|h| h.version),
        Some(0)
    );
    assert_eq!(j.ad_revisions(&a).await.expect("refs").len(), 1);
    assert_eq!(j.idempotency("p", "k1").await.expect("idem"), None);
    assert_eq!(j.merkle_nodes(&[(0, 1)]).await.expect("nodes"), vec![None]);

    // "Must not exist" is a condition too.
    let mut create_again = update;
    create_again.heads[0].expected_version = None;
    let err = j
        .append(create_again)
        .await
        .expect_err("existing ad must fail");
    assert!(matches!(err, Error::Conflict { .. }), "got {err:?}");
    assert_eq!(j.last_sequence().await.expect("last"), Some(0));
}

/// Everything appended is there after the stores are dropped and reopened.
pub async fn journal_survives_reopen<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let a = key("p", 1);
    let mut chain = ChainBuilder::new();
    let (batch, _) = chain
        .batch(
            (0..20)
                .map(|i| (a.clone(), Some(sample_ad(&a, &format!("v{i}")))))
                .collect(),
        )
        .expect("batch");
    {
        let stores = h.open(&place).await.expect("open");
        stores.journal.append(batch.clone()).await.expect("append");
    }
    let stores = h.open(&place).await.expect("reopen");
    let j = &stores.journal;
    assert_eq!(j.last_sequence().await.expect("last"), Some(19));
    assert_eq!(all_blocks(j.as_ref()).await.expect("blocks"), batch.blocks);
    assert_eq!(
        j.ad_head(&a).await.expect("head").map(|h| h.version),
        Some(19)
    );
    let ids: Vec<(u8, u64)> = batch
        .merkle_nodes
        .iter()
        .map(|n| (n.level, n.index))
        .collect();
    let stored = j.merkle_nodes(&ids).await.expect("nodes");
    let expected: Vec<_> = batch.merkle_nodes.iter().map(|n| Some(n.hash)).collect();
    assert_eq!(stored, expected);
}

/// Idempotency records and Merkle nodes written with a batch read back exactly.
pub async fn journal_stores_idempotency_and_merkle_nodes<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let j = &stores.journal;
    let a = key("p", 1);
    let mut chain = ChainBuilder::new();
    let (mut batch, _) = chain
        .batch(vec![
            (a.clone(), Some(sample_ad(&a, "a"))),
            (key("p", 2), Some(sample_ad(&key("p", 2), "b"))),
            (key("p", 3), Some(sample_ad(&key("p", 3), "c"))),
        ])
        .expect("batch");
    let record = IdempotencyRecord {
        publisher_id: "p".into(),
        key: "order-17/retry".into(),
        request_hash: crate::Hash([7; 32]),
        ad_id: a.ad_id.clone(),
        sequence: 0,
    };
    batch.idempotency.push(record.clone());
    j.append(batch.clone()).await.expect("append");
    assert_eq!(
        j.idempotency("p", "order-17/retry").await.expect("idem"),
        Some(record)
    );
    assert_eq!(
        j.idempotency("q", "order-17/retry").await.expect("idem"),
        None
    );
    // Leaves 0..3 and node (1, 0) are complete; (1, 1) is not.
    let got = j
        .merkle_nodes(&[(1, 0), (0, 2), (1, 1), (0, 0)])
        .await
        .expect("nodes");
    let find = |level: u8, index: u64| {
        batch
            .merkle_nodes
            .iter()
            .find(|n| n.level == level && n.index == index)
            .map(|n| n.hash)
    };
    assert_eq!(got, vec![find(1, 0), find(0, 2), None, find(0, 0)]);
    assert!(got[0].is_some() && got[1].is_some() && got[3].is_some());
}

fn revisions_of(blocks: Vec<crate::block::Block>) -> Vec<Revision> {
    blocks.into_iter().flat_map(|b| b.revisions).collect()
}

/// Re-applying revisions, or applying an older one after a newer, changes nothing.
pub async fn state_apply_is_idempotent_by_version<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let s = &stores.state;
    assert_eq!(s.checkpoint().await.expect("cp"), 0);
    let a = key("p", 1);
    let mut chain = ChainBuilder::new();
    let (_, blocks) = chain
        .batch(vec![
            (a.clone(), Some(sample_ad(&a, "v0"))),
            (a.clone(), Some(sample_ad(&a, "v1"))),
        ])
        .expect("batch");
    let revs = revisions_of(blocks);
    s.apply(&revs, 2).await.expect("apply");
    s.apply(&revs[..1], 1).await.expect("apply older");
    let got = s.get(&a).await.expect("get").expect("present");
    assert_eq!(got.version, 1);
    assert_eq!(got.ad.map(|ad| ad.ad_title), Some("v1".to_string()));
    assert_eq!(got.sequence, 1);
    assert_eq!(s.get(&key("p", 9)).await.expect("get"), None);
    assert_eq!(
        s.get(&AdKey::new("other", &a.ad_id)).await.expect("get"),
        None
    );
}

/// `list` pages by ad id, strictly after the cursor, and leaves deleted ads out; `get`
/// still returns their tombstone.
pub async fn state_list_pages_and_skips_tombstones<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let s = &stores.state;
    let mut chain = ChainBuilder::new();
    let mut changes: Vec<_> = (1..=7)
        .map(|n| {
            (
                key("p", n),
                Some(sample_ad(&key("p", n), &format!("ad {n}"))),
            )
        })
        .collect();
    changes.push((
        key("other", 50),
        Some(sample_ad(&key("other", 50), "elsewhere")),
    ));
    changes.push((key("p", 3), None));
    changes.push((key("p", 4), None));
    let (_, blocks) = chain.batch(changes).expect("batch");
    s.apply(&revisions_of(blocks), 10).await.expect("apply");
    assert_eq!(s.checkpoint().await.expect("cp"), 10);

    let first = s.list("p", None, 2).await.expect("page 1");
    let ids: Vec<_> = first.iter().map(|a| a.key.ad_id.clone()).collect();
    assert_eq!(ids, vec![ad_id(1), ad_id(2)]);
    let second = s.list("p", Some(&ad_id(2)), 2).await.expect("page 2");
    let ids: Vec<_> = second.iter().map(|a| a.key.ad_id.clone()).collect();
    assert_eq!(
        ids,
        vec![ad_id(5), ad_id(6)],
        "tombstones 3 and 4 are skipped"
    );
    let last = s.list("p", Some(&ad_id(6)), 2).await.expect("page 3");
    assert_eq!(last.len(), 1);
    assert!(
        s.list("p", Some(&ad_id(7)), 2)
            .await
            .expect("end")
            .is_empty()
    );
    assert!(s.list("nobody", None, 10).await.expect("empty").is_empty());
    let tomb = s.get(&key("p", 3)).await.expect("get").expect("tombstone");
    assert_eq!((tomb.version, tomb.ad), (1, None));
}

/// A publisher with 100,000 deleted ads and 10 live ones among them lists its 10 in one
/// page, and pages from a cursor between them: a list never walks the tombstones (each
/// backend keeps its live ads indexed apart; the AWS backend's own test counts the
/// requests one list costs).
pub async fn state_list_skips_a_hundred_thousand_tombstones<H: Harness>(h: &H) {
    const ADS: u32 = 110_000;
    const LIVE_EVERY: u32 = 11_000;
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let s = &stores.state;
    let states = mostly_deleted_ads("p", ADS, LIVE_EVERY);
    for chunk in states.chunks(10_000) {
        s.put(chunk, None).await.expect("put");
    }
    let live: Vec<String> = (1..=ADS / LIVE_EVERY)
        .map(|i| ad_id(i * LIVE_EVERY))
        .collect();

    let page = s.list("p", None, 100).await.expect("list");
    let ids: Vec<String> = page.iter().map(|a| a.key.ad_id.clone()).collect();
    assert_eq!(ids, live, "one page holds every live ad, in ad-id order");
    let page = s.list("p", Some(&live[4]), 3).await.expect("list");
    let ids: Vec<String> = page.iter().map(|a| a.key.ad_id.clone()).collect();
    assert_eq!(ids, live[5..8].to_vec(), "a page after a cursor");
    let after_last = s.list("p", Some(&live[9]), 100).await.expect("list");
    assert!(
        after_last.is_empty(),
        "only tombstones after the last live ad"
    );
}

/// `get_many` answers each key as `get` does, in the order asked: live ads, tombstones,
/// keys never seen, and a key asked twice.
pub async fn state_get_many_answers_each_key_in_order<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let s = &stores.state;
    let mut chain = ChainBuilder::new();
    let mut changes: Vec<_> = (1..=5)
        .map(|n| {
            (
                key("p", n),
                Some(sample_ad(&key("p", n), &format!("ad {n}"))),
            )
        })
        .collect();
    changes.push((key("p", 2), None));
    let (_, blocks) = chain.batch(changes).expect("batch");
    s.apply(&revisions_of(blocks), 6).await.expect("apply");

    assert!(s.get_many(&[]).await.expect("none asked").is_empty());
    let asked = vec![
        key("p", 5),
        key("p", 9),
        key("p", 2),
        key("other", 1),
        key("p", 1),
        key("p", 5),
    ];
    let got = s.get_many(&asked).await.expect("get_many");
    assert_eq!(got.len(), asked.len());
    for (asked, got) in asked.iter().zip(&got) {
        assert_eq!(*got, s.get(asked).await.expect("get"), "{asked:?}");
    }
    let titles: Vec<_> = got
        .iter()
        .map(|state| {
            state
                .as_ref()
                .map(|s| s.ad.as_ref().map(|ad| ad.ad_title.clone()))
        })
        .collect();
    assert_eq!(
        titles,
        vec![
            Some(Some("ad 5".to_string())),
            None,
            Some(None),
            None,
            Some(Some("ad 1".to_string())),
            Some(Some("ad 5".to_string())),
        ]
    );
}

/// `clear` removes every ad and resets the checkpoint.
pub async fn state_clear_resets_everything<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let (s, idx) = (&stores.state, &stores.search);
    let a = key("p", 1);
    let (_, blocks) = ChainBuilder::new()
        .batch(vec![(a.clone(), Some(sample_ad(&a, "gone soon")))])
        .expect("batch");
    let revs = revisions_of(blocks);
    s.apply(&revs, 1).await.expect("apply");
    idx.apply(&revs, 1).await.expect("index");
    s.clear().await.expect("clear");
    idx.clear().await.expect("clear index");
    assert_eq!(s.checkpoint().await.expect("cp"), 0);
    assert_eq!(s.get(&a).await.expect("get"), None);
    assert!(s.list("p", None, 10).await.expect("list").is_empty());
    assert_eq!(idx.checkpoint().await.expect("cp"), 0);
    let all = idx.search(&query("", 10)).await.expect("search");
    assert_eq!(all.total, 0);
}

fn query(text: &str, limit: usize) -> SearchQuery {
    SearchQuery {
        text: text.to_string(),
        limit,
        ..SearchQuery::default()
    }
}

async fn index_sample_catalogue(stores: &super::Stores) -> Vec<AdKey> {
    let mut chain = ChainBuilder::new();
    let mut ads = Vec::new();
    type Spec<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, &'a [&'a str]);
    let specs: [Spec<'_>; 5] = [
        (
            "p",
            "Red bicycle for sale",
            Some("120.50"),
            "bikes",
            &["red", "sport"],
        ),
        (
            "p",
            "Blue sofa, barely used",
            Some("19.99"),
            "furniture",
            &["blue"],
        ),
        (
            "q",
            "Vintage red lamp",
            Some("20"),
            "furniture",
            &["red", "vintage"],
        ),
        ("q", "Free kittens", None, "pets", &["cute"]),
        ("p", "Café table", Some("19.98"), "furniture", &["wood"]),
    ];
    for (n, (publisher, title, price, category, tags)) in specs.iter().enumerate() {
        let k = key(publisher, n as u32 + 1);
        let ad = super::draft(title, *price, category, tags).into_ad(&k.publisher_id, &k.ad_id);
        ads.push((k, Some(ad)));
    }
    let keys = ads.iter().map(|(k, _)| k.clone()).collect();
    let (_, blocks) = chain.batch(ads).expect("batch");
    stores
        .search
        .apply(&revisions_of(blocks), 5)
        .await
        .expect("index");
    keys
}

fn titles(page: &crate::ports::SearchPage) -> Vec<String> {
    let mut t: Vec<String> = page.ads.iter().map(|a| a.ad_title.clone()).collect();
    t.sort();
    t
}

/// Text matches title, description, category and tags, case- and accent-insensitively;
/// each filter narrows exactly; price bounds are inclusive and exact at the boundary.
pub async fn search_finds_by_text_and_filters<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    index_sample_catalogue(&stores).await;
    let idx = &stores.search;

    let red = idx.search(&query("RED", 10)).await.expect("search");
    assert_eq!(red.total, 2);
    assert_eq!(
        titles(&red),
        vec!["Red bicycle for sale", "Vintage red lamp"]
    );
    let cafe = idx
        .search(&query("cafe", 10))
        .await
        .expect("accent folding");
    assert_eq!(titles(&cafe), vec!["Café table"]);
    let by_category_word = idx.search(&query("pets", 10)).await.expect("category text");
    assert_eq!(titles(&by_category_word), vec!["Free kittens"]);

    let mut q = query("", 10);
    q.category = Some("furniture".into());
    q.max_price = Some(Decimal::new(1999, 2));
    let cheap = idx.search(&q).await.expect("filters");
    assert_eq!(titles(&cheap), vec!["Blue sofa, barely used", "Café table"]);

    q.min_price = Some(Decimal::new(1999, 2));
    let exact = idx.search(&q).await.expect("inclusive bounds");
    assert_eq!(titles(&exact), vec!["Blue sofa, barely used"]);

    let mut q = query("", 10);
    q.tag = Some("red".into());
    q.publisher_id = Some("q".into());
    assert_eq!(
        titles(&idx.search(&q).await.expect("tag")),
        vec!["Vintage red lamp"]
    );

    let mut q = query("", 10);
    q.min_price = Some(Decimal::ZERO);
    let priced = idx.search(&q).await.expect("price");
    assert_eq!(
        priced.total, 4,
        "an ad without a price never matches a price bound"
    );

    let weird = idx.search(&query("\"unbalanced AND (", 10)).await;
    assert!(weird.is_ok(), "user syntax never errors: {weird:?}");
}

/// Paging covers every hit once; a deleted ad disappears from results.
pub async fn search_pages_and_forgets_deleted_ads<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let keys = index_sample_catalogue(&stores).await;
    let idx = &stores.search;
    let mut seen = Vec::new();
    for offset in [0, 2, 4] {
        let mut q = query("", 2);
        q.offset = offset;
        let page = idx.search(&q).await.expect("page");
        assert_eq!(page.total, 5);
        seen.extend(page.ads.into_iter().map(|a| a.ad_id));
    }
    seen.sort();
    let mut all: Vec<_> = keys.iter().map(|k| k.ad_id.clone()).collect();
    all.sort();
    assert_eq!(seen, all);

    // Delete "Red bicycle" (ad 1): version 1, a delete revision.
    let mut chain = ChainBuilder::new();
    let k = keys[0].clone();
    let (_, blocks) = chain
        .batch(vec![
            (k.clone(), Some(sample_ad(&k, "x"))),
            (k.clone(), None),
        ])
        .expect("batch");
    let delete: Vec<Revision> = revisions_of(blocks).into_iter().skip(1).collect();
    idx.apply(&delete, 6).await.expect("delete");
    let red = idx.search(&query("red", 10)).await.expect("search");
    assert_eq!(titles(&red), vec!["Vintage red lamp"]);
    assert_eq!(idx.search(&query("", 10)).await.expect("all").total, 4);
}

/// The search checkpoint and documents survive a reopen.
pub async fn search_checkpoint_survives_reopen<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    {
        let stores = h.open(&place).await.expect("open");
        index_sample_catalogue(&stores).await;
        assert_eq!(stores.search.checkpoint().await.expect("cp"), 5);
    }
    let stores = h.open(&place).await.expect("reopen");
    assert_eq!(stores.search.checkpoint().await.expect("cp"), 5);
    let red = stores
        .search
        .search(&query("red", 10))
        .await
        .expect("search");
    assert_eq!(red.total, 2);
}

/// Equally ranked hits come back in ad id order (ascending after the score; descending
/// after the creation time, so still newest first), whatever the index's history: the
/// same ads indexed in another order, in several commits, after a clear and with updates
/// in between give the same pages, so a rebuild or an import never changes which of
/// several equally relevant ads make a page.
pub async fn search_ties_break_by_ad_id<H: Harness>(h: &H) {
    use crate::ports::AdState;

    const ADS: u128 = 12;
    // Created in one millisecond: ties on the creation time too.
    let id = |r: u128| ulid::Ulid::from_parts(1_600_000_000_000, r * 7919).to_string();
    let keys: Vec<AdKey> = (1..=ADS).map(|r| AdKey::new("p", id(r))).collect();
    let ad = |k: &AdKey| {
        super::draft("Brass lamp", Some("15"), "lights", &["lamp"])
            .into_ad(&k.publisher_id, &k.ad_id)
    };
    let scrambled = |step: usize| -> Vec<AdKey> {
        (0..keys.len())
            .map(|i| keys[(i * step + 3) % keys.len()].clone())
            .collect()
    };

    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let idx = &stores.search;
    let count = keys.len();
    let pages = |text: &'static str| async move {
        let mut ids = Vec::new();
        for offset in (0..count + 5).step_by(5) {
            let mut q = query(text, 5);
            q.offset = offset;
            let page = idx.search(&q).await.expect("page");
            assert_eq!(page.total, ADS as u64, "{text:?} at {offset}");
            ids.extend(page.ads.into_iter().map(|a| a.ad_id));
        }
        ids
    };
    let mut ascending: Vec<String> = keys.iter().map(|k| k.ad_id.clone()).collect();
    ascending.sort();
    let descending: Vec<String> = ascending.iter().rev().cloned().collect();

    // History 1: one apply, in a scrambled order.
    let mut chain = ChainBuilder::new();
    let (_, blocks) = chain
        .batch(
            scrambled(5)
                .into_iter()
                .map(|k| (k.clone(), Some(ad(&k))))
                .collect(),
        )
        .expect("batch");
    idx.apply(&revisions_of(blocks), ADS as u64)
        .await
        .expect("index");
    let first = (pages("lamp").await, pages("").await);
    assert_eq!(first.0, ascending, "by score, then ascending ad id");
    assert_eq!(first.1, descending, "newest first, then descending ad id");

    // History 2: cleared, put back in another order over three commits, then some ads
    // updated (their documents replaced) with the same content.
    idx.clear().await.expect("clear");
    let mut chain = ChainBuilder::new();
    let (_, blocks) = chain
        .batch(
            scrambled(7)
                .into_iter()
                .map(|k| (k.clone(), Some(ad(&k))))
                .collect(),
        )
        .expect("batch");
    let states: Vec<AdState> = revisions_of(blocks)
        .iter()
        .map(AdState::from_revision)
        .collect();
    for part in states.chunks(5) {
        idx.put(part, None).await.expect("put");
    }
    let (_, blocks) = chain
        .batch(
            [&keys[0], &keys[6], &keys[11]]
                .into_iter()
                .map(|k| (k.clone(), Some(ad(k))))
                .collect(),
        )
        .expect("updates");
    idx.apply(&revisions_of(blocks), 2 * ADS as u64)
        .await
        .expect("updates");
    let second = (pages("lamp").await, pages("").await);
    assert_eq!(second, first, "the same pages whatever the history");
}
