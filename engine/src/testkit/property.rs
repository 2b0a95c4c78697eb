//! Property test: random command sequences against a plain `HashMap` model.

use super::RunAsTester;
use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::{Harness, draft, live_ads};
use crate::ad::{Ad, AdKey, AdPatch};
use crate::command::Command;
use crate::error::Error;
use crate::projection::{Projector, ReadModel};

const PUBLISHERS: [&str; 3] = ["alpha", "beta", "gamma"];

#[derive(Debug, Clone)]
enum Op {
    Create {
        publisher: usize,
        title: u8,
        cents: Option<u32>,
    },
    Update {
        target: usize,
        title: Option<u8>,
        cents: Option<Option<u32>>,
        stale: bool,
    },
    Delete {
        target: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..PUBLISHERS.len(), any::<u8>(), proptest::option::of(0u32..100_000))
            .prop_map(|(publisher, title, cents)| Op::Create { publisher, title, cents }),
        3 => (any::<usize>(), proptest::option::of(any::<u8>()),
              proptest::option::of(proptest::option::of(0u32..100_000)), proptest::bool::weighted(0.2))
            .prop_map(|(target, title, cents, stale)| Op::Update { target, title, cents, stale }),
        1 => any::<usize>().prop_map(|target| Op::Delete { target }),
    ]
}

fn price(cents: Option<u32>) -> Option<String> {
    cents.map(|c| format!("{}.{:02}", c / 100, c % 100))
}

/// The model's view of one ad.
#[derive(Debug, Clone)]
struct Modelled {
    version: u64,
    ad: Option<Ad>,
}

/// Random create/update/delete sequences: after each sequence the state store equals a
/// `HashMap` model (live ads, versions, tombstones), every command's outcome matches the
/// model's prediction, and a rebuild from the journal equals the live read model.
pub fn property_random_commands_match_model_and_rebuild<H: Harness>(h: &H) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut runner = TestRunner::new(Config {
        cases: 10,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..30), |ops| {
            runtime.block_on(check_sequence(h, ops));
            Ok(())
        })
        .expect("property holds");
}

async fn check_sequence<H: Harness>(h: &H, ops: Vec<Op>) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(99).await.expect("ledger");
    let mut model: HashMap<AdKey, Modelled> = HashMap::new();
    let mut created: Vec<AdKey> = Vec::new();

    for op in ops {
        match op {
            Op::Create {
                publisher,
                title,
                cents,
            } => {
                let d = draft(
                    &format!("title {title}"),
                    price(cents).as_deref(),
                    "cat",
                    &["t"],
                );
                let outcome = ledger
                    .run(Command::CreateAd {
                        publisher_id: PUBLISHERS[publisher].into(),
                        draft: d,
                        idempotency_key: None,
                    })
                    .await
                    .expect("create");
                let ad = outcome.ad.expect("ad");
                created.push(ad.key());
                model.insert(
                    ad.key(),
                    Modelled {
                        version: 0,
                        ad: Some(ad),
                    },
                );
            }
            Op::Update {
                target,
                title,
                cents,
                stale,
            } => {
                let Some(key) = pick(&created, target) else {
                    continue;
                };
                let patch = AdPatch {
                    ad_title: title.map(|t| format!("title {t}")),
                    price: cents.map(|c| price(c).map(|p| p.parse().unwrap_or_default())),
                    ..AdPatch::default()
                };
                let current = model.get(&key).cloned().expect("modelled");
                let expected_version = Some(current.version + u64::from(stale));
                let result = ledger
                    .run(Command::UpdateAd {
                        key: key.clone(),
                        patch: patch.clone(),
                        expected_version,
                    })
                    .await;
                match (&current.ad, stale) {
                    (None, _) => assert!(matches!(result, Err(Error::Gone { .. })), "{result:?}"),
                    (Some(_), true) => {
                        assert!(matches!(result, Err(Error::Conflict { .. })), "{result:?}")
                    }
                    (Some(ad), false) => {
                        let next = patch.apply_to(ad);
                        let outcome = result.expect("update");
                        let version = if next == *ad {
                            current.version
                        } else {
                            current.version + 1
                        };
                        assert_eq!(outcome.version, version);
                        assert_eq!(outcome.ad.as_ref(), Some(&next));
                        model.insert(
                            key,
                            Modelled {
                                version,
                                ad: Some(next),
                            },
                        );
                    }
                }
            }
            Op::Delete { target } => {
                let Some(key) = pick(&created, target) else {
                    continue;
                };
                let current = model.get(&key).cloned().expect("modelled");
                let result = ledger
                    .run(Command::DeleteAd {
                        key: key.clone(),
                        expected_version: None,
                    })
                    .await;
                if current.ad.is_none() {
                    assert!(matches!(result, Err(Error::Gone { .. })), "{result:?}");
                } else {
                    assert_eq!(result.expect("delete").version, current.version + 1);
                    model.insert(
                        key,
                        Modelled {
                            version: current.version + 1,
                            ad: None,
                        },
                    );
                }
            }
        }
    }

    ledger
        .wait_for_state(ledger.committed())
        .await
        .expect("caught up");
    let expected: BTreeMap<AdKey, Ad> = model
        .iter()
        .filter_map(|(k, m)| m.ad.clone().map(|ad| (k.clone(), ad)))
        .collect();
    let live = live_ads(stores.state.as_ref(), &PUBLISHERS)
        .await
        .expect("live");
    assert_eq!(live, expected, "state store equals the model");
    for (key, m) in &model {
        match ledger.get(key).await {
            Ok(state) => {
                assert_eq!(state.version, m.version);
                assert_eq!(state.ad, m.ad);
            }
            Err(Error::Gone { version, .. }) => {
                assert!(m.ad.is_none());
                assert_eq!(version, m.version);
            }
            other => panic!("unexpected read of {key:?}: {other:?}"),
        }
    }

    let (state, _search) = h.open_read_models(&place, "rebuild").await.expect("fresh");
    Projector::new(stores.journal.clone(), ReadModel::State(state.clone()), 7)
        .catch_up()
        .await
        .expect("rebuild");
    let rebuilt = live_ads(state.as_ref(), &PUBLISHERS)
        .await
        .expect("rebuilt");
    assert_eq!(
        rebuilt, live,
        "rebuild from the journal equals the live read model"
    );
    for key in model.keys() {
        assert_eq!(
            state.get(key).await.expect("get"),
            stores.state.get(key).await.expect("get")
        );
    }
    ledger.shutdown().await;
}

fn pick(created: &[AdKey], target: usize) -> Option<AdKey> {
    (!created.is_empty()).then(|| created[target % created.len()].clone())
}
