//! `TantivySearchIndex` against a real tantivy index in a temporary directory: the
//! analyzer, the filters, paging and ranking, updates and deletes, the checkpoint.

mod support;

use adledger_engine::Ad;
use adledger_engine::ports::{SearchIndex, SearchQuery};
use adledger_engine::revision::RevisionBody;
use adledger_tantivy::TantivySearchIndex;

use support::{Chain, ad, change, created, price};

/// Five ads, created in this order (so newest first is 4, 3, 2, 1, 0).
fn corpus() -> Vec<Ad> {
    let mut ads = vec![
        ad("acme", 0, "Café racer bike"),
        ad("acme", 1, "Mountain bike"),
        ad("acme", 2, "Sofa"),
        ad("bob", 3, "Bike helmet"),
        ad("acme", 4, "Old lamp"),
    ];
    let details: [(&str, &[&str], Option<&str>, &str); 5] = [
        ("Vehicles", &["bike", "vintage"], Some("150.00"), ""),
        (
            "Vehicles",
            &["bike"],
            Some("19.99"),
            "Full suspension, barely used",
        ),
        ("Furniture", &["home"], None, "comfortable couch"),
        ("Sports", &["bike", "safety"], Some("20"), ""),
        ("Furniture", &[], Some("10"), ""),
    ];
    for (ad, (category, tags, amount, description)) in ads.iter_mut().zip(details) {
        ad.category = category.into();
        ad.tags = tags.iter().map(|t| t.to_string()).collect();
        ad.price = amount.and_then(price);
        ad.ad_description = description.into();
    }
    ads
}

fn query(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.into(),
        limit: 25,
        ..SearchQuery::default()
    }
}

/// Runs `q` and answers (total, the page's ad numbers as in `corpus`).
async fn hits(index: &TantivySearchIndex, ads: &[Ad], q: SearchQuery) -> (u64, Vec<usize>) {
    let page = index.search(&q).await.expect("search");
    let numbers = page
        .ads
        .iter()
        .map(|hit| {
            ads.iter()
                .position(|a| a.ad_id == hit.ad_id)
                .expect("a hit from the corpus")
        })
        .collect();
    (page.total, numbers)
}

async fn indexed(dir: &std::path::Path) -> (TantivySearchIndex, Vec<Ad>, Chain) {
    let index = TantivySearchIndex::open(dir).expect("open index");
    let ads = corpus();
    let mut chain = Chain::new();
    let revisions = chain.batch(ads.iter().map(|a| vec![created(a)]).collect());
    index.apply(&revisions, 5).await.expect("index corpus");
    (index, ads, chain)
}

#[tokio::test]
async fn text_matches_folded_words_in_every_text_field() {
    let dir = tempfile::tempdir().unwrap();
    let (index, ads, _) = indexed(dir.path()).await;

    assert_eq!(hits(&index, &ads, query("cafe")).await, (1, vec![0]));
    assert_eq!(hits(&index, &ads, query("CAFÉ")).await, (1, vec![0]));
    assert_eq!(hits(&index, &ads, query("suspension")).await, (1, vec![1]));
    assert_eq!(hits(&index, &ads, query("furniture")).await.0, 2);
    assert_eq!(hits(&index, &ads, query("vintage")).await, (1, vec![0]));
    let (total, mut found) = hits(&index, &ads, query("bike")).await;
    found.sort_unstable();
    assert_eq!((total, found), (3, vec![0, 1, 3]));
    assert_eq!(hits(&index, &ads, query("submarine")).await, (0, vec![]));

    // What comes back is the ad as written, price digits included.
    let page = index.search(&query("mountain")).await.unwrap();
    assert_eq!(page.ads, vec![ads[1].clone()]);
    assert_eq!(page.ads[0].price.unwrap().to_string(), "19.99");
}

#[tokio::test]
async fn stray_syntax_in_user_text_never_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (index, ads, _) = indexed(dir.path()).await;
    for text in [
        "\"bike",
        "bike\"",
        "title:(",
        "bike AND OR",
        "price:[1 TO",
        "((((",
        "\\",
        "*",
        "!!!",
    ] {
        index
            .search(&query(text))
            .await
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
    assert!(hits(&index, &ads, query("\"bike")).await.0 >= 1);
}

#[tokio::test]
async fn empty_text_lists_everything_newest_first_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (index, ads, _) = indexed(dir.path()).await;

    assert_eq!(
        hits(&index, &ads, query("")).await,
        (5, vec![4, 3, 2, 1, 0])
    );
    assert_eq!(hits(&index, &ads, query("   ")).await.0, 5);
    let page = |limit, offset| SearchQuery {
        limit,
        offset,
        ..query("")
    };
    assert_eq!(hits(&index, &ads, page(2, 0)).await, (5, vec![4, 3]));
    assert_eq!(hits(&index, &ads, page(2, 2)).await, (5, vec![2, 1]));
    assert_eq!(hits(&index, &ads, page(2, 4)).await, (5, vec![0]));
    assert_eq!(hits(&index, &ads, page(2, 5)).await, (5, vec![]));
    assert_eq!(hits(&index, &ads, page(0, 0)).await, (5, vec![]));
    assert_eq!(
        hits(&index, &ads, page(usize::MAX, usize::MAX)).await,
        (5, vec![])
    );
    assert_eq!(
        hits(&index, &ads, page(usize::MAX, 3)).await,
        (5, vec![1, 0])
    );

    // Paging a text query walks the same ranking.
    let text_page = |offset| SearchQuery {
        limit: 1,
        offset,
        ..query("bike")
    };
    let mut seen = Vec::new();
    for offset in 0..3 {
        let (total, found) = hits(&index, &ads, text_page(offset)).await;
        assert_eq!(total, 3);
        seen.extend(found);
    }
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 3]);
}

#[tokio::test]
async fn each_filter_narrows_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (index, ads, _) = indexed(dir.path()).await;

    let publisher = SearchQuery {
        publisher_id: Some("bob".into()),
        ..query("bike")
    };
    assert_eq!(hits(&index, &ads, publisher).await, (1, vec![3]));
    let publisher = SearchQuery {
        publisher_id: Some("acme".into()),
        ..query("")
    };
    assert_eq!(hits(&index, &ads, publisher).await, (4, vec![4, 2, 1, 0]));

    let category = |c: &str| SearchQuery {
        category: Some(c.into()),
        ..query("")
    };
    assert_eq!(
        hits(&index, &ads, category("Furniture")).await,
        (2, vec![4, 2])
    );
    assert_eq!(hits(&index, &ads, category("furniture")).await.0, 0);

    let tag = |t: &str| SearchQuery {
        tag: Some(t.into()),
        ..query("")
    };
    assert_eq!(hits(&index, &ads, tag("bike")).await, (3, vec![3, 1, 0]));
    assert_eq!(hits(&index, &ads, tag("vintage")).await, (1, vec![0]));

    let combined = SearchQuery {
        tag: Some("bike".into()),
        category: Some("Vehicles".into()),
        publisher_id: Some("acme".into()),
        ..query("mountain")
    };
    assert_eq!(hits(&index, &ads, combined).await, (1, vec![1]));
}

#[tokio::test]
async fn price_range_is_inclusive_and_skips_unpriced_ads() {
    let dir = tempfile::tempdir().unwrap();
    let (index, ads, _) = indexed(dir.path()).await;
    let range = |min: Option<&str>, max: Option<&str>| SearchQuery {
        min_price: min.and_then(price),
        max_price: max.and_then(price),
        ..query("")
    };
    assert_eq!(
        hits(&index, &ads, range(Some("10"), Some("20"))).await,
        (3, vec![4, 3, 1])
    );
    assert_eq!(
        hits(&index, &ads, range(Some("19.99"), Some("19.99"))).await,
        (1, vec![1])
    );
    assert_eq!(
        hits(&index, &ads, range(Some("100"), None)).await,
        (1, vec![0])
    );
    assert_eq!(
        hits(&index, &ads, range(None, Some("10"))).await,
        (1, vec![4])
    );
    assert_eq!(hits(&index, &ads, range(None, Some("1000"))).await.0, 4);
    assert_eq!(hits(&index, &ads, range(Some("20"), Some("10"))).await.0, 0);
    let with_text = SearchQuery {
        min_price: price("19"),
        ..query("bike")
    };
    let (total, mut found) = hits(&index, &ads, with_text).await;
    found.sort_unstable();
    assert_eq!((total, found), (3, vec![0, 1, 3]));
}

#[tokio::test]
async fn updates_and_deletes_replace_and_remove_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let (index, ads, mut chain) = indexed(dir.path()).await;

    let mut leather = ads[2].clone();
    leather.ad_title = "Leather sofa".into();
    let changes: Vec<Vec<RevisionBody>> = vec![
        vec![change(&ads[2].key(), 1, Some(leather.clone()))],
        vec![change(&ads[1].key(), 1, None)],
    ];
    let revisions = chain.batch(changes);
    index.apply(&revisions, 7).await.unwrap();

    assert_eq!(hits(&index, &ads, query("leather")).await, (1, vec![2]));
    assert_eq!(hits(&index, &ads, query("mountain")).await, (0, vec![]));
    assert_eq!(hits(&index, &ads, query("bike")).await.0, 2);
    assert_eq!(hits(&index, &ads, query("")).await.0, 4);

    // Replaying older revisions (a projection restarting from an earlier checkpoint) does
    // not bring back the old title or the deleted ad.
    let originals = Chain::new().batch(ads.iter().map(|a| vec![created(a)]).collect());
    index.apply(&originals, 7).await.unwrap();
    index.apply(&revisions, 7).await.unwrap();
    assert_eq!(hits(&index, &ads, query("leather")).await, (1, vec![2]));
    assert_eq!(hits(&index, &ads, query("mountain")).await, (0, vec![]));
    assert_eq!(hits(&index, &ads, query("")).await.0, 4);
    assert_eq!(
        index.search(&query("leather")).await.unwrap().ads,
        vec![leather]
    );
}

#[tokio::test]
async fn checkpoint_survives_reopen_and_clear_resets_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (index, _, _) = indexed(dir.path()).await;
        assert_eq!(index.checkpoint().await.unwrap(), 5);
        // A call with nothing to index still records its checkpoint.
        index.apply(&[], 6).await.unwrap();
        assert_eq!(index.checkpoint().await.unwrap(), 6);
    }
    let index = TantivySearchIndex::open(dir.path()).unwrap();
    assert_eq!(index.checkpoint().await.unwrap(), 6);
    assert_eq!(index.search(&query("cafe")).await.unwrap().total, 1);

    index.clear().await.unwrap();
    assert_eq!(index.checkpoint().await.unwrap(), 0);
    assert_eq!(index.search(&query("")).await.unwrap().total, 0);
    assert_eq!(index.search(&query("bike")).await.unwrap().total, 0);

    // A fresh index starts at 0.
    let other = tempfile::tempdir().unwrap();
    let empty = TantivySearchIndex::open(other.path()).unwrap();
    assert_eq!(empty.checkpoint().await.unwrap(), 0);
    assert_eq!(empty.search(&query("")).await.unwrap().total, 0);
}

/// An index left by an earlier adledger (another document layout) does not stop the
/// server: it is started empty, so the projection refills it from the journal.
#[tokio::test]
async fn an_index_with_another_schema_is_started_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut builder = tantivy::schema::Schema::builder();
        let title = builder.add_text_field("title", tantivy::schema::TEXT);
        let doc = tantivy::doc!(title => "from an earlier layout");
        write_old_index(dir.path(), builder.build(), doc);
    }
    let index = opened_empty(dir.path()).await;
    let page = index
        .search(&SearchQuery {
            text: "earlier".into(),
            ..SearchQuery::default()
        })
        .await
        .expect("search");
    assert_eq!(page.total, 0, "nothing of the old index is served");
}

/// Writes an index of `schema` holding `doc`, as an earlier adledger would have left it.
fn write_old_index(
    dir: &std::path::Path,
    schema: tantivy::schema::Schema,
    doc: tantivy::TantivyDocument,
) {
    let old = tantivy::Index::create_in_dir(dir, schema).expect("old index");
    old.tokenizers().register(
        "adledger_text",
        tantivy::tokenizer::TextAnalyzer::from(tantivy::tokenizer::SimpleTokenizer::default()),
    );
    let mut writer: tantivy::IndexWriter = old.writer(15_000_000).expect("writer");
    writer.add_document(doc).expect("add");
    writer.commit().expect("commit");
}

/// The index opened over an earlier adledger's, which it must have started empty.
async fn opened_empty(dir: &std::path::Path) -> TantivySearchIndex {
    let index = TantivySearchIndex::open(dir).expect("opens despite the old layout");
    assert_eq!(
        index.checkpoint().await.expect("checkpoint"),
        0,
        "starts empty"
    );
    index
}

/// The layout before hits were stored as the API's JSON (a stored `ad` field holding the
/// ad's own JSON, where the index now stores its view in `view`): such an index is
/// detected by its schema and started empty, so no hit is ever served in the old shape.
#[tokio::test]
async fn an_index_storing_the_ad_json_of_the_previous_layout_is_started_empty() {
    use tantivy::schema::{
        FAST, INDEXED, IndexRecordOption, STORED, STRING, TextFieldIndexing, TextOptions,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut builder = tantivy::schema::Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("adledger_text")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let ad_id = builder.add_text_field("adId", STRING | STORED | FAST);
        builder.add_text_field("publisherId", STRING);
        builder.add_text_field("text", text);
        builder.add_text_field("categoryExact", STRING);
        builder.add_text_field("tagExact", STRING);
        builder.add_f64_field("price", FAST | INDEXED);
        builder.add_u64_field("createdMs", FAST);
        builder.add_u64_field("version", FAST | STORED);
        let status = builder.add_text_field("status", STRING);
        builder.add_text_field("updatedAt", STORED);
        let ad = builder.add_text_field("ad", STORED);
        let doc = tantivy::doc!(ad_id => "01OLD", status => "live", ad => "{}");
        write_old_index(dir.path(), builder.build(), doc);
    }
    let index = opened_empty(dir.path()).await;
    let page = index
        .search_json(&SearchQuery {
            limit: 10,
            ..SearchQuery::default()
        })
        .await
        .expect("search")
        .expect("tantivy answers JSON hits");
    assert_eq!(
        (page.total, page.hits.len()),
        (0, 0),
        "nothing of the old index"
    );
}

/// Many ads tie on the best score (the same title): the page is still the tied ads in
/// ascending id order, whether a segment holds them in id order (where the ranking stops
/// reporting ties once its page is full), in reverse, or with updates that put low ids
/// after high ones; a missing term in some fields (no `category`, no `tags`) changes
/// nothing. Checked against the order computed here, page by page.
#[tokio::test]
async fn ties_on_the_best_score_come_in_id_order_however_segments_hold_them() {
    let dir = tempfile::tempdir().unwrap();
    let index = TantivySearchIndex::open(dir.path()).expect("open index");
    const N: u64 = 700;
    // Every seventh ad has a longer title: a lower score for "lamp".
    let ads: Vec<Ad> = (0..N)
        .map(|n| {
            let title = if n % 7 == 3 {
                "brass lamp with a shade"
            } else {
                "brass lamp"
            };
            ad("acme", n, title)
        })
        .collect();
    let mut chain = Chain::new();
    // Ids 0..400 in ascending order, in one commit.
    let first = chain.batch(ads[..400].iter().map(|a| vec![created(a)]).collect());
    index.apply(&first, 400).await.unwrap();
    // Ids 400..700 in descending order.
    let second = chain.batch(ads[400..].iter().rev().map(|a| vec![created(a)]).collect());
    index.apply(&second, 700).await.unwrap();
    // Low ids updated (same content): their documents move after the high ones.
    let updates = chain.batch(
        [5, 64, 130, 390, 650]
            .iter()
            .map(|&n: &usize| vec![change(&ads[n].key(), 1, Some(ads[n].clone()))])
            .collect(),
    );
    index.apply(&updates, 705).await.unwrap();

    let mut best: Vec<&str> = Vec::new();
    let mut rest: Vec<&str> = Vec::new();
    for (n, a) in ads.iter().enumerate() {
        if n % 7 == 3 {
            rest.push(&a.ad_id);
        } else {
            best.push(&a.ad_id);
        }
    }
    best.sort_unstable();
    rest.sort_unstable();
    let expected: Vec<&str> = best.into_iter().chain(rest).collect();
    for (offset, limit) in [(0, 20), (0, 1), (20, 20), (95, 10), (590, 20), (680, 30)] {
        let page = index
            .search(&SearchQuery {
                text: "lamp".into(),
                limit,
                offset,
                ..SearchQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.total, N);
        let got: Vec<&str> = page.ads.iter().map(|a| a.ad_id.as_str()).collect();
        let want: Vec<&str> = expected.iter().skip(offset).take(limit).copied().collect();
        assert_eq!(got, want, "offset {offset}, limit {limit}");
    }
}
