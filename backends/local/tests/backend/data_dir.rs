//! `LocalBackend`: one data directory, three stores.

use adledger_engine::Error;
use adledger_engine::ports::{Journal, SearchIndex, SearchQuery, StateStore};
use adledger_local::{LocalBackend, SledStateStore, TantivySearchIndex};

use crate::support::{Chain, ad, created};

#[tokio::test]
async fn open_creates_the_layout_and_reopens() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("nested").join("data");
    let a = ad("acme", 1, "bike");
    let (batch, revisions) = Chain::new().batch(vec![vec![created(&a)]]);
    {
        let backend = LocalBackend::open(&dir).unwrap();
        backend.journal.append(batch.clone()).await.unwrap();
        backend.state.apply(&revisions, 1).await.unwrap();
        backend.search.apply(&revisions, 1).await.unwrap();
    }
    for sub in ["journal", "state", "search"] {
        assert!(dir.join(sub).is_dir(), "{sub} missing");
    }
    assert!(dir.join("journal").join("db").is_file());
    assert!(dir.join("search").join("meta.json").is_file());

    let backend = LocalBackend::open(&dir).unwrap();
    assert_eq!(backend.journal.last_sequence().await.unwrap(), Some(0));
    assert_eq!(
        backend.journal.read_blocks(0, 1).await.unwrap(),
        batch.blocks
    );
    assert_eq!(backend.state.checkpoint().await.unwrap(), 1);
    assert!(backend.state.get(&a.key()).await.unwrap().is_some());
    assert_eq!(backend.search.checkpoint().await.unwrap(), 1);
    let query = SearchQuery {
        text: "bike".into(),
        limit: 10,
        ..SearchQuery::default()
    };
    assert_eq!(backend.search.search(&query).await.unwrap().total, 1);
}

#[tokio::test]
async fn a_directory_in_use_is_refused_by_name() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let _first = LocalBackend::open(&dir).unwrap();
    let error = LocalBackend::open(&dir).unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(
            error,
            Error::Backend {
                backend: "sled",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(text.contains("in use"), "{text}");
    assert!(
        text.contains(&dir.join("journal").display().to_string()),
        "{text}"
    );

    let error = SledStateStore::open(&dir.join("state")).unwrap_err();
    assert!(error.to_string().contains("in use"), "{error}");
    let error = TantivySearchIndex::open(&dir.join("search")).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Backend {
                backend: "tantivy",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("in use"), "{error}");
}

#[tokio::test]
async fn a_foreign_sled_database_is_not_taken_for_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path().join("journal")).unwrap();
        db.insert("unrelated", "data").unwrap();
        db.flush().unwrap();
    }
    let error = LocalBackend::open(dir.path()).unwrap_err();
    assert!(matches!(error, Error::Corrupt(_)), "{error:?}");
}
