//! The delivery fault schedule, under tokio's paused clock: a scripted receiver on a real
//! loopback socket answers 500s, 429 with `Retry-After` (seconds and HTTP-date), 410,
//! hangs past the request timeout, and resets the connection mid-request; the tests
//! measure the waits between attempts on the paused clock, so a schedule of several
//! minutes runs in milliseconds and each wait is exact to the millisecond.
//!
//! Why this works with real sockets: the clock auto-advances only when the runtime has
//! nothing to do, and loopback I/O is ready as soon as the peer wrote it, so the only
//! jumps are to the retry loop's `sleep`, the request timeout (when the receiver hangs),
//! and the delivery task's own idle waits. The receiver runs on the same runtime and reads
//! the connection to its end rather than sleeping, so it adds no timer of its own.
//! Nothing of adledger is replaced: `webhook::deliver` and the `Subscriptions` delivery
//! tasks run as in the server, over the in-memory ledger and subscription store.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use adledger_engine::feed::{CloudEvent, EventId, FeedOptions, Position};
use adledger_engine::subscription::{
    FailurePolicy, MemorySubscriptionStore, RetrySchedule, Subscription, SubscriptionState,
    SubscriptionStore, WebhookSink,
};
use adledger_engine::{AdDraft, Command, Ledger, LedgerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::config::{BackendKind, Config};
use crate::delivery::Subscriptions;
use crate::webhook::{self, Delivery, retry_after};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECOND: u64 = 1000;

/// What the receiver does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Status(u16),
    /// 429 (or the status given) with this `Retry-After` value.
    RetryAfter(u16, &'static str),
    /// 429 with `Retry-After` an HTTP-date this many seconds from now (wall clock).
    RetryAt(u64),
    /// Reads the request and never answers (the client's timeout ends it).
    Hang,
    /// Reads the request head, then closes the socket with a reset.
    Reset,
}

/// One request the receiver saw.
#[derive(Debug, Clone)]
struct Arrival {
    /// On the paused clock.
    at: Instant,
    /// Its `webhook-id` header.
    webhook_id: String,
    answer: Answer,
    /// The subscription's stored checkpoint when it arrived (delivery-task tests).
    checkpoint: Option<Position>,
}

/// A subscription the receiver looks at: its store and name.
type Watched = (Arc<dyn SubscriptionStore>, String);

#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Mutex<VecDeque<Answer>>>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    /// The subscription whose checkpoint each arrival records.
    watched: Arc<Mutex<Option<Watched>>>,
}

impl Receiver {
    async fn start(script: &[Answer]) -> (Receiver, String) {
        let receiver = Receiver::default();
        receiver
            .script
            .lock()
            .unwrap()
            .extend(script.iter().copied());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let accepting = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(accepting.clone().answer(stream));
            }
        });
        (receiver, url)
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }

    /// The paused-clock waits between consecutive requests.
    fn waits(&self) -> Vec<Duration> {
        let arrivals = self.arrivals();
        arrivals.windows(2).map(|w| w[1].at - w[0].at).collect()
    }

    async fn answer(self, mut stream: TcpStream) {
        let at = Instant::now();
        let Some((head, mut body_read)) = read_head(&mut stream).await else {
            return;
        };
        let webhook_id = header(&head, "webhook-id").unwrap_or_default();
        let answer = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Answer::Status(200));
        let watched = self.watched.lock().unwrap().clone();
        let checkpoint = match watched {
            Some((store, name)) => store.get(&name).await.unwrap().map(|s| s.checkpoint),
            None => None,
        };
        self.arrivals.lock().unwrap().push(Arrival {
            at,
            webhook_id,
            answer,
            checkpoint,
        });
        if answer == Answer::Reset {
            // SO_LINGER 0: closing sends a reset, not an orderly FIN.
            let _ = stream.set_zero_linger();
            return;
        }
        let length: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut buf = [0u8; 4096];
        while body_read < length {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => body_read += n,
            }
        }
        let (status, extra) = match answer {
            Answer::Status(code) => (code, String::new()),
            Answer::RetryAfter(code, value) => (code, format!("retry-after: {value}\r\n")),
            Answer::RetryAt(seconds) => {
                let at = SystemTime::now() + Duration::from_secs(seconds);
                (
                    429,
                    format!("retry-after: {}\r\n", httpdate::fmt_http_date(at)),
                )
            }
            Answer::Hang => {
                // Until the client gives up and closes: no timer of the receiver's own.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                return;
            }
            Answer::Reset => unreachable!("handled above"),
        };
        let response = format!(
            "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n{extra}\r\n"
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

/// Reads up to the end of the request head; answers it and how many body bytes came
/// with it.
async fn read_head(stream: &mut TcpStream) -> Option<(String, usize)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            return Some((head, data.len() - end - 4));
        }
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// A webhook sink's stored form (built from JSON, as the store reads it, so fields added
/// to the record later with defaults do not break these tests).
fn sink_json(url: &str, timeout_ms: u64, retry: RetrySchedule) -> serde_json::Value {
    serde_json::json!({"type": "webhook", "url": url, "secret": SECRET, "batchSize": 1,
                       "timeoutMs": timeout_ms, "retry": retry})
}

fn sink(url: &str, timeout_ms: u64, retry: RetrySchedule) -> WebhookSink {
    serde_json::from_value(sink_json(url, timeout_ms, retry)).unwrap()
}

fn schedule(attempts: u32, initial: u64, max: u64) -> RetrySchedule {
    RetrySchedule {
        attempts,
        initial_backoff_ms: initial,
        max_backoff_ms: max,
    }
}

/// A feed event of block `sequence` (its content does not matter to the sink).
fn event(sequence: u64) -> CloudEvent {
    let id = EventId { sequence, index: 0 };
    serde_json::from_str(&format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"urn:adledger:test",
            "type":"adledger.ad.created","time":"2026-01-01T00:00:00.000Z",
            "datacontenttype":"application/json","data":{{}},"blocksequence":"{sequence}",
            "blockhash":"{h}","prevblockhash":"{h}"}}"#,
        h = "0".repeat(64)
    ))
    .unwrap()
}

/// The nominal backoff `d` after failed attempt `attempt` (from 1).
fn nominal(retry: &RetrySchedule, attempt: u32) -> Duration {
    Duration::from_millis((retry.initial_backoff_ms << (attempt - 1)).min(retry.max_backoff_ms))
}

/// Asserts `wait` is the jittered backoff after `attempt`: within `[d/2, d]`.
fn assert_jittered(wait: Duration, retry: &RetrySchedule, attempt: u32) {
    let d = nominal(retry, attempt);
    assert!(
        wait >= d / 2 && wait <= d,
        "wait after attempt {attempt}: {wait:?}, not in [{:?}, {d:?}]",
        d / 2
    );
}

async fn run_schedule(retry: RetrySchedule, expected_nominal: &[u64]) {
    let failures = vec![Answer::Status(500); retry.attempts as usize];
    let (receiver, url) = Receiver::start(&failures).await;
    let client = webhook::client().unwrap();
    let started = Instant::now();
    let outcome = webhook::deliver(&client, &sink(&url, 10 * SECOND, retry), &[event(0)]).await;
    let elapsed = started.elapsed();
    assert_eq!(
        outcome,
        Delivery::Failed(format!(
            "{} attempts failed; the last: the endpoint answered 500 Internal Server Error",
            retry.attempts
        ))
    );
    let arrivals = receiver.arrivals();
    assert_eq!(arrivals.len(), retry.attempts as usize);
    assert!(arrivals.iter().all(|a| a.webhook_id == event(0).id));
    let nominals: Vec<u64> = (1..retry.attempts)
        .map(|n| nominal(&retry, n).as_millis() as u64)
        .collect();
    assert_eq!(nominals, expected_nominal, "the schedule's backoffs");
    let waits = receiver.waits();
    for (n, wait) in waits.iter().enumerate() {
        assert_jittered(*wait, &retry, n as u32 + 1);
    }
    // Jittered, not the bare schedule (all seven at `d` has odds below 1 in 10^20).
    assert!(
        (1..retry.attempts).any(|n| waits[n as usize - 1] != nominal(&retry, n)),
        "{waits:?}"
    );
    // The paused clock moved by the waits and nothing else: every attempt took no time.
    assert_eq!(arrivals[0].at, started);
    assert_eq!(elapsed, waits.iter().sum::<Duration>());
}

#[tokio::test(start_paused = true)]
async fn the_default_schedule_backs_off_exponentially_with_jitter() {
    // 8 attempts, 500 ms doubling: seven waits, the longest 32 s.
    run_schedule(
        RetrySchedule::default(),
        &[500, 1000, 2000, 4000, 8000, 16_000, 32_000],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_long_schedule_is_capped_at_its_maximum() {
    // 8 attempts from 10 s, at most 300 s: about 15 minutes of waiting, on the paused clock.
    run_schedule(
        schedule(8, 10 * SECOND, 300 * SECOND),
        &[10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_in_both_forms_and_capped() {
    let retry = schedule(7, SECOND, 60 * SECOND);
    let (receiver, url) = Receiver::start(&[
        Answer::RetryAfter(429, "7"),
        Answer::RetryAt(20),
        Answer::RetryAfter(429, "3600"),
        Answer::RetryAfter(429, "Sun, 06 Nov 1994 08:49:37 GMT"),
        Answer::RetryAfter(503, "0"),
        Answer::RetryAfter(429, "soon"),
        Answer::Status(200),
    ])
    .await;
    let client = webhook::client().unwrap();
    let outcome = webhook::deliver(&client, &sink(&url, 10 * SECOND, retry), &[event(3)]).await;
    assert_eq!(outcome, Delivery::Acknowledged);
    let waits = receiver.waits();
    assert_eq!(waits.len(), 6, "{:?}", receiver.arrivals());
    // Seconds: longer than the 1 s backoff, so exactly what was asked.
    assert_eq!(waits[0], Duration::from_secs(7));
    // An HTTP-date 20 s ahead (whole seconds, so 19 to 20 s from when it is read).
    assert!(
        waits[1] > Duration::from_secs(19) && waits[1] <= Duration::from_secs(20),
        "{:?}",
        waits[1]
    );
    // An hour: capped at the schedule's maximum.
    assert_eq!(waits[2], Duration::from_secs(60));
    // A date in the past, zero seconds, or a value that is neither: the backoff.
    assert_jittered(waits[3], &retry, 4);
    assert_jittered(waits[4], &retry, 5);
    assert_jittered(waits[5], &retry, 6);
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_resets_are_retried() {
    let retry = schedule(4, SECOND, 300 * SECOND);
    let (receiver, url) = Receiver::start(&[
        Answer::Hang,
        Answer::Reset,
        Answer::Status(500),
        Answer::Status(200),
    ])
    .await;
    let client = webhook::client().unwrap();
    let outcome = webhook::deliver(&client, &sink(&url, 5 * SECOND, retry), &[event(1)]).await;
    assert_eq!(outcome, Delivery::Acknowledged);
    let waits = receiver.waits();
    assert_eq!(waits.len(), 3);
    // The hang: the 5 s timeout, then the backoff.
    assert_jittered(waits[0] - Duration::from_secs(5), &retry, 1);
    // The reset fails at once: only the backoff.
    assert_jittered(waits[1], &retry, 2);
    assert_jittered(waits[2], &retry, 3);

    // When they are the last attempts, the failure says what happened.
    let (_, url) = Receiver::start(&[Answer::Reset, Answer::Hang]).await;
    let outcome = webhook::deliver(
        &client,
        &sink(&url, 5 * SECOND, schedule(2, SECOND, SECOND)),
        &[event(1)],
    )
    .await;
    assert_eq!(
        outcome,
        Delivery::Failed("2 attempts failed; the last: no answer within 5000 ms".into())
    );
    let (_, url) = Receiver::start(&[Answer::Hang, Answer::Reset]).await;
    let outcome = webhook::deliver(
        &client,
        &sink(&url, 5 * SECOND, schedule(2, SECOND, SECOND)),
        &[event(1)],
    )
    .await;
    let Delivery::Failed(detail) = outcome else {
        panic!("a reset is a failure: {outcome:?}");
    };
    assert!(detail.contains("request failed"), "{detail}");
}

#[test]
fn retry_after_reads_seconds_and_the_three_http_date_forms() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 06 Nov 1994 08:49:37
    let ahead = Some(Duration::from_secs(3600));
    assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
    assert_eq!(retry_after("Sun, 06 Nov 1994 09:49:37 GMT", now), ahead);
    assert_eq!(retry_after("Sunday, 06-Nov-94 09:49:37 GMT", now), ahead);
    assert_eq!(retry_after("Sun Nov  6 09:49:37 1994", now), ahead);
    assert_eq!(
        retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_after("-1", now), None);
    assert_eq!(retry_after("tomorrow", now), None);
}

/// An in-memory ledger with `ads` created ads (one block, one event each).
async fn ledger(ads: usize) -> Arc<Ledger> {
    let config = Config {
        backend: BackendKind::Memory,
        deterministic: Some(7),
        ..Config::default()
    };
    let ports = crate::backend::open(&config).unwrap();
    let ledger = Arc::new(Ledger::open(ports, LedgerOptions::default()).await.unwrap());
    for i in 0..ads {
        ledger
            .execute(Command::CreateAd {
                publisher_id: "acme".into(),
                draft: AdDraft::titled(&format!("ad {i}")).unwrap(),
                idempotency_key: None,
            })
            .await
            .unwrap();
    }
    ledger
}

/// Starts delivery of one subscription to a receiver answering `script`, and waits (on
/// the paused clock) until it is no longer active or `until` holds.
async fn deliver_subscription(
    policy: FailurePolicy,
    retry: RetrySchedule,
    script: &[Answer],
    until: impl Fn(&Subscription) -> bool,
) -> (Subscription, Vec<Arrival>) {
    let ledger = ledger(3).await;
    let store: Arc<dyn SubscriptionStore> = Arc::new(MemorySubscriptionStore::default());
    let (receiver, url) = Receiver::start(script).await;
    *receiver.watched.lock().unwrap() = Some((store.clone(), "faults".into()));
    let created = store
        .create(
            &serde_json::from_value::<Subscription>(serde_json::json!({
                "name": "faults", "state": "active", "onFailure": policy, "checkpoint": "",
                "epoch": 0, "revision": 0, "sink": sink_json(&url, 10 * SECOND, retry)}))
            .unwrap(),
        )
        .await
        .unwrap();
    assert!(created);
    let subscriptions =
        Subscriptions::start(store.clone(), ledger, FeedOptions::default()).unwrap();
    let mut stored = None;
    for _ in 0..100_000 {
        let sub = store.get("faults").await.unwrap().unwrap();
        if sub.state != SubscriptionState::Active || until(&sub) {
            stored = Some(sub);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    subscriptions.stop().await;
    let stored = stored.expect("delivery settled within 10,000 s of paused time");
    let arrivals = receiver.arrivals();
    // Never past an event before its request was answered: at every arrival, the
    // stored checkpoint is at or before the event being sent.
    for arrival in &arrivals {
        let id = EventId::parse(&arrival.webhook_id).unwrap();
        let at = arrival.checkpoint.unwrap();
        assert!(
            at <= Position {
                block: id.sequence,
                index: id.index
            },
            "the checkpoint {:?} was past {} before it was answered",
            at.token(),
            arrival.webhook_id
        );
    }
    (stored, arrivals)
}

fn id(sequence: u64) -> String {
    EventId { sequence, index: 0 }.to_string()
}

#[tokio::test(start_paused = true)]
async fn dead_letters_go_on_and_410_disables() {
    let retry = schedule(3, 2 * SECOND, 300 * SECOND);
    let (sub, arrivals) = deliver_subscription(
        FailurePolicy::DeadLetter,
        retry,
        &[
            Answer::Status(500),
            Answer::Status(503),
            Answer::Status(500),
            Answer::Status(200),
            Answer::Status(410),
        ],
        |_| false,
    )
    .await;
    let seen: Vec<(&str, Answer)> = arrivals
        .iter()
        .map(|a| (a.webhook_id.as_str(), a.answer))
        .collect();
    assert_eq!(
        seen,
        [
            (id(0).as_str(), Answer::Status(500)),
            (id(0).as_str(), Answer::Status(503)),
            (id(0).as_str(), Answer::Status(500)),
            (id(1).as_str(), Answer::Status(200)),
            (id(2).as_str(), Answer::Status(410)),
        ]
    );
    assert_jittered(arrivals[1].at - arrivals[0].at, &retry, 1);
    assert_jittered(arrivals[2].at - arrivals[1].at, &retry, 2);
    // Event 0's retries ran out: dead-lettered, and delivery went on without a wait.
    assert_eq!(arrivals[3].at, arrivals[2].at);
    assert_eq!(sub.dead_letters, [id(0)]);
    // 410: disabled, and the checkpoint stays before the event it refused.
    assert_eq!(sub.state, SubscriptionState::Disabled);
    assert_eq!(
        sub.checkpoint,
        Position::after_event(EventId {
            sequence: 1,
            index: 0
        })
    );
    assert!(sub.last_error.unwrap_or_default().contains("410"));
}

#[tokio::test(start_paused = true)]
async fn retries_run_out_and_block_under_the_block_policy() {
    let retry = schedule(3, SECOND, 300 * SECOND);
    let (sub, arrivals) = deliver_subscription(
        FailurePolicy::Block,
        retry,
        &[
            Answer::Status(200),
            Answer::Status(500),
            Answer::Reset,
            Answer::Hang,
        ],
        |_| false,
    )
    .await;
    let ids: Vec<&str> = arrivals.iter().map(|a| a.webhook_id.as_str()).collect();
    assert_eq!(ids, [id(0), id(1), id(1), id(1)]);
    assert_eq!(sub.state, SubscriptionState::Blocked);
    assert!(sub.dead_letters.is_empty(), "nothing skipped under `block`");
    // Stopped at event 1: acknowledged event 0 is behind the checkpoint, event 1 is not.
    assert_eq!(
        sub.checkpoint,
        Position::after_event(EventId {
            sequence: 0,
            index: 0
        })
    );
    assert!(
        sub.last_error
            .unwrap_or_default()
            .contains("no answer within 10000 ms")
    );
}

#[tokio::test(start_paused = true)]
async fn the_checkpoint_follows_acknowledgements_through_retries() {
    let retry = schedule(8, 500, 300 * SECOND);
    let done = Position::after_event(EventId {
        sequence: 2,
        index: 0,
    });
    let (sub, arrivals) = deliver_subscription(
        FailurePolicy::Block,
        retry,
        &[
            Answer::Status(500),
            Answer::Status(500),
            Answer::Status(500),
            Answer::Status(200),
            Answer::RetryAfter(429, "30"),
            Answer::Status(200),
            Answer::Reset,
            Answer::Hang,
            Answer::Status(200),
        ],
        |sub| sub.checkpoint >= done,
    )
    .await;
    let ids: Vec<&str> = arrivals.iter().map(|a| a.webhook_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            id(0),
            id(0),
            id(0),
            id(0),
            id(1),
            id(1),
            id(2),
            id(2),
            id(2)
        ]
    );
    // Each event's first attempt sees the checkpoint right after the previous event.
    assert_eq!(arrivals[0].checkpoint, Some(Position::START));
    assert_eq!(
        arrivals[4].checkpoint,
        Some(Position::after_event(EventId {
            sequence: 0,
            index: 0
        }))
    );
    assert_eq!(
        arrivals[6].checkpoint,
        Some(Position::after_event(EventId {
            sequence: 1,
            index: 0
        }))
    );
    assert_eq!(arrivals[5].at - arrivals[4].at, Duration::from_secs(30));
    assert_eq!(sub.state, SubscriptionState::Active);
    // After the last event, or after its block once the page is done (the same place).
    assert!(
        sub.checkpoint == done || sub.checkpoint == Position::after_block(2),
        "{:?}",
        sub.checkpoint
    );
    assert!(sub.dead_letters.is_empty());
}
