//! Filtered text searches against an independent computation: the unfiltered ranking of
//! the same text (every hit), filtered here by each ad's own fields, then paged. The
//! index ranks filtered searches by another route (the text's pruning tested against
//! cached filter bitsets, or the intersection where a filter is rare), so any hit, order
//! or total that route gets wrong shows here.

mod support;

use adledger_engine::Ad;
use adledger_engine::ports::{SearchIndex, SearchQuery};
use adledger_engine::revision::RevisionBody;
use adledger_tantivy::TantivySearchIndex;
use rust_decimal::Decimal;

use support::{Chain, ad, change, created, price};

const N: u64 = 3_000;
const CATEGORIES: [&str; 5] = ["Furniture", "Lighting", "Vehicles", "Garden", ""];
const ADJECTIVES: [&str; 4] = ["red", "old", "brass", "small"];
const ITEMS: [&str; 3] = ["lamp", "chair", "bike"];
const TAGS: [&str; 3] = ["vintage", "new", "sale"];

/// A small deterministic generator (no dependency needed for test data).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Ad `n`: titles and descriptions of varied length and repetition (so scores vary and
/// many tie), a category, tags, a price (none for one in ten); publisher `rare` holds a
/// dozen ads (a rare filter in every segment), `bob` a third.
fn generated(n: u64, rng: &mut Lcg) -> Ad {
    let publisher = if n % 250 == 7 {
        "rare"
    } else if n.is_multiple_of(3) {
        "bob"
    } else {
        "acme"
    };
    let adjective = ADJECTIVES[rng.below(4) as usize];
    let item = ITEMS[rng.below(3) as usize];
    let title = match rng.below(3) {
        0 => format!("{adjective} {item}"),
        1 => format!("{adjective} {item} for sale"),
        _ => format!("{item} {adjective} and {item} with a long description in the title"),
    };
    let mut ad = ad(publisher, n, &title);
    if rng.below(4) == 0 {
        ad.ad_description = format!("{item} {item} in good shape");
    }
    ad.category = CATEGORIES[rng.below(5) as usize].to_string();
    ad.tags = TAGS
        .iter()
        .filter(|_| rng.below(3) == 0)
        .map(|t| t.to_string())
        .collect();
    ad.price = match rng.below(10) {
        0 => None,
        _ => {
            let cents = [0, 50, 99][rng.below(3) as usize];
            price(&format!("{}.{cents:02}", rng.below(600)))
        }
    };
    ad
}

/// Whether `ad` passes the filters of `q`, computed from the ad itself.
fn passes(ad: &Ad, q: &SearchQuery) -> bool {
    let in_range = |p: Decimal| {
        q.min_price.is_none_or(|min| p >= min) && q.max_price.is_none_or(|max| p <= max)
    };
    q.publisher_id
        .as_ref()
        .is_none_or(|p| *p == ad.publisher_id)
        && q.category.as_ref().is_none_or(|c| *c == ad.category)
        && q.tag.as_ref().is_none_or(|t| ad.tags.contains(t))
        && ((q.min_price.is_none() && q.max_price.is_none()) || ad.price.is_some_and(in_range))
}

/// 3,000 ads in three commits (segments), then updates that move some to another
/// category and price, and deletes: segments with deleted documents.
async fn indexed(dir: &std::path::Path) -> TantivySearchIndex {
    let index = TantivySearchIndex::open(dir).expect("open index");
    let mut rng = Lcg(7);
    let ads: Vec<Ad> = (0..N).map(|n| generated(n, &mut rng)).collect();
    let mut chain = Chain::new();
    for (i, part) in ads.chunks(1_000).enumerate() {
        let revisions = chain.batch(part.iter().map(|a| vec![created(a)]).collect());
        index
            .apply(&revisions, (i as u64 + 1) * 1_000)
            .await
            .expect("index ads");
    }
    let changes: Vec<Vec<RevisionBody>> = ads
        .iter()
        .enumerate()
        .filter(|(n, _)| n % 37 == 5 || n % 53 == 11)
        .map(|(n, a)| {
            if n % 53 == 11 {
                vec![change(&a.key(), 1, None)]
            } else {
                let mut moved = a.clone();
                moved.category = "Lighting".into();
                moved.price = price("321.50");
                vec![change(&a.key(), 1, Some(moved))]
            }
        })
        .collect();
    let revisions = chain.batch(changes);
    index.apply(&revisions, N + 1).await.expect("apply changes");
    index
}

fn filters() -> Vec<SearchQuery> {
    let none = SearchQuery::default();
    vec![
        SearchQuery {
            category: Some("Lighting".into()),
            ..none.clone()
        },
        SearchQuery {
            category: Some("Furniture".into()),
            min_price: price("100"),
            ..none.clone()
        },
        SearchQuery {
            min_price: price("250.50"),
            ..none.clone()
        },
        SearchQuery {
            max_price: price("99.99"),
            ..none.clone()
        },
        SearchQuery {
            min_price: price("50"),
            max_price: price("300"),
            ..none.clone()
        },
        SearchQuery {
            min_price: price("321.50"),
            max_price: price("321.50"),
            ..none.clone()
        },
        SearchQuery {
            tag: Some("vintage".into()),
            ..none.clone()
        },
        SearchQuery {
            publisher_id: Some("rare".into()),
            ..none.clone()
        },
        SearchQuery {
            publisher_id: Some("rare".into()),
            min_price: price("10"),
            ..none.clone()
        },
        SearchQuery {
            publisher_id: Some("bob".into()),
            category: Some("Lighting".into()),
            tag: Some("new".into()),
            ..none.clone()
        },
        SearchQuery {
            category: Some("Nope".into()),
            ..none.clone()
        },
        SearchQuery {
            min_price: price("300"),
            max_price: price("100"),
            ..none.clone()
        },
    ]
}

#[tokio::test]
async fn filtered_pages_are_the_unfiltered_ranking_filtered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = indexed(dir.path()).await;
    let mut nonempty = 0;
    for text in [
        "lamp",
        "red",
        "red lamp",
        "\"brass lamp\"",
        "bike sale",
        "zebra",
    ] {
        let everything = index
            .search(&SearchQuery {
                text: text.into(),
                limit: N as usize,
                ..SearchQuery::default()
            })
            .await
            .expect("unfiltered search");
        assert_eq!(everything.total, everything.ads.len() as u64, "{text}");
        for filter in filters() {
            let expected: Vec<&str> = everything
                .ads
                .iter()
                .filter(|a| passes(a, &filter))
                .map(|a| a.ad_id.as_str())
                .collect();
            if !expected.is_empty() {
                nonempty += 1;
            }
            for (offset, limit) in [(0, 20), (0, 1), (20, 20), (137, 50), (0, N as usize)] {
                let q = SearchQuery {
                    text: text.into(),
                    offset,
                    limit,
                    ..filter.clone()
                };
                let page = index.search(&q).await.expect("filtered search");
                let got: Vec<&str> = page.ads.iter().map(|a| a.ad_id.as_str()).collect();
                let want: Vec<&str> = expected.iter().skip(offset).take(limit).copied().collect();
                assert_eq!(page.total, expected.len() as u64, "total of {q:?}");
                assert_eq!(got, want, "page of {q:?}");
            }
        }
    }
    // The data exercise the filters: most combinations match something.
    assert!(nonempty >= 40, "{nonempty} non-empty combinations");
}
