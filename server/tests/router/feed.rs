//! Handler tests of the event stream's bounds: a client that stops reading is told it is
//! too slow and the stream ends, and a stream ends when the server starts shutting down.
//! The real router over a real local backend, driven with `tower::ServiceExt::oneshot`;
//! the response body is polled by hand, as a client that reads nothing would.

use std::sync::Arc;
use std::time::Duration;

use adledger::backend;
use adledger::config::Config;
use adledger::edge::DurationSetting;
use adledger::feed_config::FeedConfig;
use adledger::{AppState, app};
use adledger_engine::{AdDraft, Command, Ledger, LedgerOptions};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

async fn ledger(dir: &tempfile::TempDir, ads: usize) -> Arc<Ledger> {
    let config = Config {
        data_dir: dir.path().join("data"),
        deterministic: Some(7),
        ..Config::default()
    };
    let ports = backend::open(&config).expect("open the local backend");
    let ledger = Arc::new(
        Ledger::open(ports, LedgerOptions::default())
            .await
            .expect("open the ledger"),
    );
    for i in 0..ads {
        ledger
            .execute(Command::CreateAd {
                publisher_id: "acme".into(),
                draft: AdDraft::titled(&format!("ad {i}")).expect("title"),
                idempotency_key: None,
            })
            .await
            .expect("create");
    }
    ledger
}

/// The whole body, as text; panics unless it ends within `within`.
async fn body_text(body: Body, within: Duration) -> String {
    let bytes = tokio::time::timeout(within, axum::body::to_bytes(body, usize::MAX))
        .await
        .expect("the stream ends")
        .expect("the stream is readable");
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_told_and_disconnected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = ledger(&dir, 20).await;
    let feed = FeedConfig {
        stream_buffer: 2,
        slow_client_timeout: "200ms".parse::<DurationSetting>().expect("duration"),
        ..FeedConfig::default()
    };
    let (_closing, closing_rx) = tokio::sync::watch::channel(false);
    let router = app(AppState::new(ledger.clone()).with_feed(feed, closing_rx));
    let request = Request::get("/ledger/events/stream")
        .body(Body::empty())
        .expect("request");
    let response = router.oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    // Read nothing for longer than the slow-client timeout.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let text = body_text(response.into_body(), Duration::from_secs(5)).await;
    assert!(text.contains("event: overflow"), "{text}");
    assert!(
        text.contains("resume with GET /ledger/events?after="),
        "{text}"
    );
    let data_events = text.matches("\ndata: {\"specversion\"").count()
        + usize::from(text.starts_with("data: {\"specversion\""));
    assert!(data_events <= 2, "at most the buffer is delivered: {text}");
    assert!(
        text.trim_end().ends_with('}'),
        "the notice is the last thing sent: {text}"
    );
    ledger.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_the_server_starts_shutting_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = ledger(&dir, 3).await;
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let router = app(AppState::new(ledger.clone()).with_feed(FeedConfig::default(), closing_rx));
    let request = Request::get("/ledger/events/stream")
        .body(Body::empty())
        .expect("request");
    let response = router.oneshot(request).await.expect("response");
    let reader = tokio::spawn(body_text(response.into_body(), Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    closing.send_replace(true);
    let text = reader.await.expect("the stream ended at shutdown");
    assert_eq!(
        text.matches("id: ").count(),
        3,
        "the three events came first: {text}"
    );
    ledger.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_sends_keep_alives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = ledger(&dir, 1).await;
    let feed = FeedConfig {
        keep_alive: "100ms".parse::<DurationSetting>().expect("duration"),
        ..FeedConfig::default()
    };
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let router = app(AppState::new(ledger.clone()).with_feed(feed, closing_rx));
    let request = Request::get("/ledger/events/stream?after=0")
        .body(Body::empty())
        .expect("request");
    let response = router.oneshot(request).await.expect("response");
    let reader = tokio::spawn(body_text(response.into_body(), Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(450)).await;
    closing.send_replace(true);
    let text = reader.await.expect("the stream ended at shutdown");
    assert!(!text.contains("id: "), "nothing after block 0 yet: {text}");
    assert!(
        text.lines().filter(|l| l.starts_with(':')).count() >= 2,
        "keep-alive comments while idle: {text:?}"
    );
    ledger.shutdown().await;
}
