//! `SledStateStore` against a real sled database.

use adledger_engine::ports::StateStore;
use adledger_engine::{AdKey, Revision};
use adledger_local::SledStateStore;

use crate::support::{Chain, ad, change, created};

#[tokio::test]
async fn apply_is_idempotent_and_ignores_older_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStateStore::open(dir.path()).unwrap();
    assert_eq!(store.checkpoint().await.unwrap(), 0);

    let a = ad("acme", 1, "bike");
    let mut renamed = a.clone();
    renamed.ad_title = "red bike".into();
    let (_, revisions) = Chain::new().batch(vec![
        vec![created(&a)],
        vec![change(&a.key(), 1, Some(renamed.clone()))],
    ]);

    store.apply(&revisions, 2).await.unwrap();
    let state = store.get(&a.key()).await.unwrap().unwrap();
    assert_eq!((state.version, state.sequence), (1, 1));
    assert_eq!(state.ad.as_ref(), Some(&renamed));
    assert_eq!(state.updated_at, revisions[1].body.metadata.tx_time);

    // Replaying the same revisions, or only the older one, changes nothing but the
    // checkpoint.
    store.apply(&revisions, 2).await.unwrap();
    store.apply(&revisions[..1], 3).await.unwrap();
    let again = store.get(&a.key()).await.unwrap().unwrap();
    assert_eq!(again, state);
    assert_eq!(store.checkpoint().await.unwrap(), 3);

    // Within one call, the later revision wins whatever the order.
    let dir = tempfile::tempdir().unwrap();
    let store = SledStateStore::open(dir.path()).unwrap();
    let reversed: Vec<Revision> = revisions.iter().rev().cloned().collect();
    store.apply(&reversed, 2).await.unwrap();
    assert_eq!(store.get(&a.key()).await.unwrap().unwrap().version, 1);
}

#[tokio::test]
async fn list_pages_by_ad_id_and_skips_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStateStore::open(dir.path()).unwrap();
    let ads: Vec<_> = (0..5).map(|n| ad("acme", n, &format!("ad {n}"))).collect();
    let mut blocks: Vec<_> = ads.iter().map(|a| vec![created(a)]).collect();
    // Another publisher whose id extends this one's must not leak into its list.
    blocks.push(vec![created(&ad("acme.eu", 9, "other"))]);
    blocks.push(vec![change(&ads[2].key(), 1, None)]);
    let (_, revisions) = Chain::new().batch(blocks);
    store.apply(&revisions, 7).await.unwrap();

    let ids = |page: Vec<adledger_engine::AdState>| -> Vec<String> {
        page.into_iter().map(|s| s.key.ad_id).collect()
    };
    let page = store.list("acme", None, 2).await.unwrap();
    assert_eq!(ids(page), vec![ads[0].ad_id.clone(), ads[1].ad_id.clone()]);
    let page = store.list("acme", Some(&ads[1].ad_id), 2).await.unwrap();
    assert_eq!(ids(page), vec![ads[3].ad_id.clone(), ads[4].ad_id.clone()]);
    assert!(
        store
            .list("acme", Some(&ads[4].ad_id), 2)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.list("acme", None, 100).await.unwrap().len(), 4);
    assert!(store.list("acme", None, 0).await.unwrap().is_empty());
    assert!(store.list("acm", None, 10).await.unwrap().is_empty());
    assert_eq!(store.list("acme.eu", None, 10).await.unwrap().len(), 1);

    // The deleted ad is still readable as a tombstone.
    let tombstone = store.get(&ads[2].key()).await.unwrap().unwrap();
    assert_eq!((tombstone.version, tombstone.ad), (1, None));
    assert_eq!(
        store
            .get(&AdKey::new("other", &ads[0].ad_id))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn clear_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let a = ad("acme", 1, "bike");
    let (_, revisions) = Chain::new().batch(vec![vec![created(&a)]]);
    {
        let store = SledStateStore::open(dir.path()).unwrap();
        store.apply(&revisions, 1).await.unwrap();
    }
    let store = SledStateStore::open(dir.path()).unwrap();
    assert_eq!(store.checkpoint().await.unwrap(), 1);
    assert!(store.get(&a.key()).await.unwrap().is_some());

    store.clear().await.unwrap();
    assert_eq!(store.checkpoint().await.unwrap(), 0);
    assert_eq!(store.get(&a.key()).await.unwrap(), None);
    assert!(store.list("acme", None, 10).await.unwrap().is_empty());
}
