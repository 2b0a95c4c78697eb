//! `put_chunk` against a scripted `PutEvents`: what is sent, what is retried, and each
//! event's outcome.

use std::collections::VecDeque;
use std::sync::Mutex;

use adledger_engine::feed::CloudEvent;
use adledger_engine::subscription::{EventBridgeSink, RetrySchedule};

use super::*;

/// Answers calls from a script (one entry per call) and records what was sent.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<std::result::Result<Vec<Answer>, String>>>,
    calls: Mutex<Vec<Vec<Entry>>>,
}

impl Scripted {
    fn new(answers: Vec<std::result::Result<Vec<Answer>, String>>) -> Scripted {
        Scripted {
            answers: Mutex::new(answers.into()),
            calls: Mutex::default(),
        }
    }

    /// The event ids (from `Detail`) sent in each call.
    fn sent(&self) -> Vec<Vec<String>> {
        self.calls
            .lock()
            .expect("test lock")
            .iter()
            .map(|call| {
                call.iter()
                    .map(|e| {
                        let detail: serde_json::Value =
                            serde_json::from_str(&e.detail).expect("detail is JSON");
                        detail["id"].as_str().expect("an id").to_string()
                    })
                    .collect()
            })
            .collect()
    }
}

impl PutEvents for Scripted {
    async fn put_events(&self, entries: &[Entry]) -> std::result::Result<Vec<Answer>, String> {
        self.calls.lock().expect("test lock").push(entries.to_vec());
        self.answers
            .lock()
            .expect("test lock")
            .pop_front()
            .unwrap_or_else(|| Ok(vec![Answer::Accepted; entries.len()]))
    }
}

fn event(n: u64, data: &str) -> CloudEvent {
    serde_json::from_value(serde_json::json!({
        "specversion": "1.0",
        "id": format!("{n:020}-0000"),
        "source": "urn:adledger:abc",
        "type": "adledger.ad.created",
        "subject": "publisher/p/ad/a",
        "time": "2026-01-02T03:04:05.678Z",
        "datacontenttype": "application/json",
        "data": {"title": data},
        "blocksequence": n.to_string(),
        "blockhash": "00",
        "prevblockhash": "00",
    }))
    .expect("a CloudEvent")
}

fn sink(attempts: u32) -> EventBridgeSink {
    EventBridgeSink {
        event_bus_name: "ads".into(),
        source: None,
        detail_type: None,
        max_entry_bytes: 262_144,
        region: None,
        retry: RetrySchedule {
            attempts,
            initial_backoff_ms: 1,
            max_backoff_ms: 2,
        },
    }
}

fn failed(code: &str) -> Answer {
    Answer::Failed {
        code: code.into(),
        message: format!("{code} here"),
    }
}

fn ids(events: &[CloudEvent]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

#[test]
fn an_entry_carries_the_cloud_event_and_is_sized_as_eventbridge_counts() {
    let e = event(1, "x");
    let entry = Entry::new(&sink(1), &e).expect("an entry");
    assert_eq!(
        entry.source, "urn:adledger:abc",
        "the ledger's source by default"
    );
    assert_eq!(entry.detail_type, "adledger.ad.created", "the event's type");
    assert_eq!(entry.detail, serde_json::to_string(&e).expect("encode"));
    assert_eq!(
        entry.time.map(|t| t.timestamp_millis()),
        Some(1_767_323_045_678)
    );
    assert_eq!(
        entry.size(),
        14 + "urn:adledger:abc".len() + "adledger.ad.created".len() + entry.detail.len()
    );
    let mut custom = sink(1);
    custom.source = Some("com.example.ads".into());
    custom.detail_type = Some("Ad changed".into());
    let entry = Entry::new(&custom, &e).expect("an entry");
    assert_eq!(
        (entry.source.as_str(), entry.detail_type.as_str()),
        ("com.example.ads", "Ad changed")
    );
}

#[tokio::test]
async fn retryable_entries_alone_are_sent_again_and_the_others_fail_or_pass() {
    let events: Vec<CloudEvent> = (1..=4).map(|n| event(n, "x")).collect();
    let put = Scripted::new(vec![
        Ok(vec![
            Answer::Accepted,
            failed("ThrottlingException"),
            failed("MalformedDetail"),
            failed("InternalFailure"),
        ]),
        Ok(vec![Answer::Accepted, failed("ThrottlingException")]),
        Ok(vec![Answer::Accepted]),
    ]);
    let outcomes = put_chunk(&put, &sink(3), &events).await;
    assert_eq!(outcomes[0], Outcome::Accepted);
    assert_eq!(outcomes[1], Outcome::Accepted);
    assert!(
        matches!(&outcomes[2], Outcome::Failed(d) if d.contains("MalformedDetail")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[3], Outcome::Accepted);
    let all = ids(&events);
    assert_eq!(
        put.sent(),
        vec![
            all.clone(),
            vec![all[1].clone(), all[3].clone()],
            vec![all[3].clone()]
        ]
    );
}

#[tokio::test]
async fn retries_run_out_and_a_failed_call_is_retried_as_a_whole() {
    let events: Vec<CloudEvent> = (1..=2).map(|n| event(n, "x")).collect();
    let put = Scripted::new(vec![
        Err("connection refused".into()),
        Ok(vec![Answer::Accepted, failed("InternalFailure")]),
        Ok(vec![failed("InternalFailure")]),
    ]);
    let outcomes = put_chunk(&put, &sink(3), &events).await;
    assert_eq!(outcomes[0], Outcome::Accepted);
    assert!(
        matches!(&outcomes[1], Outcome::Failed(d) if d.starts_with("3 attempts failed") && d.contains("InternalFailure")),
        "{outcomes:?}"
    );
    assert_eq!(put.sent().len(), 3, "three attempts, no more");
    // A call answering the wrong number of entries counts as a failed call.
    let put = Scripted::new(vec![Ok(vec![Answer::Accepted])]);
    let outcomes = put_chunk(&put, &sink(2), &events).await;
    assert_eq!(outcomes, vec![Outcome::Accepted, Outcome::Accepted]);
    assert_eq!(put.sent().len(), 2);
}

#[tokio::test]
async fn an_entry_over_the_limit_is_never_sent() {
    let events = vec![
        event(1, "small"),
        event(2, &"x".repeat(2000)),
        event(3, "small"),
    ];
    let mut limited = sink(5);
    limited.max_entry_bytes = 1000;
    let put = Scripted::default();
    let outcomes = put_chunk(&put, &limited, &events).await;
    assert_eq!(outcomes[0], Outcome::Accepted);
    assert!(
        matches!(&outcomes[1], Outcome::Failed(d) if d.contains("over maxEntryBytes (1000)")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2], Outcome::Accepted);
    assert_eq!(
        put.sent(),
        vec![vec![events[0].id.clone(), events[2].id.clone()]]
    );
}

#[tokio::test]
async fn nothing_to_send_makes_no_call() {
    let mut limited = sink(5);
    limited.max_entry_bytes = 10;
    let put = Scripted::default();
    let outcomes = put_chunk(&put, &limited, &[event(1, "x")]).await;
    assert!(matches!(outcomes[0], Outcome::Failed(_)));
    assert!(put.sent().is_empty());
}

mod policy {
    //! `deliver_with`: outcomes applied in journal order to a stored subscription.

    use std::sync::Arc;

    use adledger_engine::feed::{EventId, Position};
    use adledger_engine::subscription::{
        FailurePolicy, MemorySubscriptionStore, Sink, Subscription, SubscriptionState,
        SubscriptionStore,
    };
    use adledger_engine::testkit::subscriptions::sample_subscription;

    use super::*;

    async fn stored(policy: FailurePolicy) -> (Arc<MemorySubscriptionStore>, Subscription) {
        let store = Arc::new(MemorySubscriptionStore::default());
        let mut sub = sample_subscription("bus");
        sub.sink = Sink::EventBridge(sink(1));
        sub.on_failure = policy;
        assert!(store.create(&sub).await.expect("create"));
        let sub = store.get("bus").await.expect("get").expect("stored");
        (store, sub)
    }

    fn after(event: &CloudEvent) -> Position {
        Position::after_event(EventId::parse(&event.id).expect("an id"))
    }

    #[tokio::test]
    async fn dead_letters_go_in_journal_order_and_the_checkpoint_passes_them() {
        let (store, mut sub) = stored(FailurePolicy::DeadLetter).await;
        let events: Vec<CloudEvent> = (1..=12).map(|n| event(n, "x")).collect();
        let put = Scripted::new(vec![
            Ok({
                let mut answers = vec![Answer::Accepted; 10];
                answers[6] = failed("MalformedDetail");
                answers[2] = failed("NotAuthorizedForSourceException");
                answers
            }),
            Ok(vec![Answer::Accepted, failed("InternalFailure")]),
        ]);
        let next = Position {
            block: 40,
            index: 0,
        };
        let going = deliver_with(store.as_ref(), &put, &mut sub, &sink(1), &events, next)
            .await
            .expect("deliver");
        assert!(going);
        let saved = store.get("bus").await.expect("get").expect("stored");
        assert_eq!(
            saved.dead_letters,
            vec![
                events[2].id.clone(),
                events[6].id.clone(),
                events[11].id.clone()
            ]
        );
        assert_eq!(saved.checkpoint, next, "past the page, filtered blocks too");
        assert_eq!(saved.state, SubscriptionState::Active);
        assert_eq!(put.sent().len(), 2, "10 entries, then 2");
    }

    #[tokio::test]
    async fn block_stops_at_the_first_failure_and_keeps_it_next() {
        let (store, mut sub) = stored(FailurePolicy::Block).await;
        let events: Vec<CloudEvent> = (1..=5).map(|n| event(n, "x")).collect();
        let put = Scripted::new(vec![Ok(vec![
            Answer::Accepted,
            Answer::Accepted,
            failed("MalformedDetail"),
            Answer::Accepted,
            failed("MalformedDetail"),
        ])]);
        let next = Position {
            block: 40,
            index: 0,
        };
        let going = deliver_with(store.as_ref(), &put, &mut sub, &sink(1), &events, next)
            .await
            .expect("deliver");
        assert!(!going, "blocked");
        let saved = store.get("bus").await.expect("get").expect("stored");
        assert_eq!(saved.state, SubscriptionState::Blocked);
        assert_eq!(
            saved.checkpoint,
            after(&events[1]),
            "only past what EventBridge accepted before the failure"
        );
        assert!(saved.dead_letters.is_empty());
        assert!(
            saved
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains(&events[2].id) && e.contains("MalformedDetail")),
            "{:?}",
            saved.last_error
        );
    }
}
