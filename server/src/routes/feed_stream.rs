//! `GET /ledger/events/stream`: the ledger feed as Server-Sent Events.
//!
//! # Catch-up and live are one loop
//!
//! Each client gets a reader task that reads pages from the journal after its position
//! and, at the tip, waits for the next commit ([`Ledger::wait_for_block`]) and reads
//! again from the same position. There is no separate live fan-out to switch to, so
//! nothing can fall between catch-up and live, and nothing is sent twice, however writes
//! race the switch.
//!
//! # Bounded memory
//!
//! The reader hands events to the connection through a channel of
//! `feed.stream_buffer` events. A client that leaves it full for
//! `feed.slow_client_timeout` is too slow: the buffered events are dropped, the client is
//! sent one final `event: overflow` whose data says how to resume (by pull, after the
//! last id it received), and the stream ends.
//!
//! Each event is `id: <event id>` and `data: <the CloudEvent>`; the id is what the
//! browser sends back as `Last-Event-ID` when it reconnects.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use adledger_engine::feed::{CloudEvent, FeedFilter, Position};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use tokio::sync::{Notify, mpsc, watch};

use crate::error::ApiError;
use crate::params::{QueryParams, RawPairs};
use crate::routes::feed::{FeedRequest, parse_position, past_the_end, read};
use crate::state::AppState;

/// Events read from the journal per page while catching up.
const PAGE: usize = 256;

/// `GET /ledger/events/stream[?after=POSITION][&type=T,…][&publisherId=P]`, resuming
/// from `Last-Event-ID` when the client sends one (it wins over `after`).
#[utoipa::path(
    get, path = "/ledger/events/stream", tag = "feed",
    params(
        ("after" = Option<String>, Query, description = "Start after this position (an event id or a block sequence); absent: from the first event"),
        ("type" = Option<String>, Query, description = "Only these event types, comma-separated"),
        ("publisherId" = Option<String>, Query, description = "Only this publisher's ad events"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (sent by EventSource on reconnection); wins over `after`"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `id: <event id>` and `data: <CloudEvent>` per event, keep-alive comments when idle, and a final `event: overflow` if the client falls too far behind", content_type = "text/event-stream", body = crate::wire_schema::StreamEvent),
        (status = 400, description = "A malformed, unknown or repeated parameter, a malformed `Last-Event-ID`, or a position past the end of the journal", body = crate::wire_schema::Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: RawPairs,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query, &["after", "type", "publisherId"])?;
    let mut request = FeedRequest::parse(&params)?;
    let mut from = "after";
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().map_err(|_| {
            ApiError::invalid_header("Last-Event-ID", "`Last-Event-ID` must be ASCII".into())
        })?;
        if !text.is_empty() {
            request.after = parse_position("Last-Event-ID", text)?;
            from = "Last-Event-ID";
        }
    }
    let tip = state
        .ledger
        .read_point()
        .await
        .map_err(|e| ApiError::from_engine(e, false))?;
    if request.after.block > tip {
        return Err(past_the_end(from, tip));
    }
    let (sender, receiver) = mpsc::channel(state.feed.stream_buffer.max(1));
    let overflow = Arc::new(Overflow::default());
    tokio::spawn(reader(
        state.clone(),
        state.feed.options(),
        request.filter,
        request.after,
        sender,
        overflow.clone(),
        state.feed.slow_client_timeout.get(),
        state.closing.clone(),
    ));
    let keep_alive = KeepAlive::new().interval(state.feed.keep_alive.get());
    Ok(Sse::new(events(receiver, overflow))
        .keep_alive(keep_alive)
        .into_response())
}

/// Set by the reader when the client is too slow; the stream then ends with the notice.
#[derive(Debug, Default)]
struct Overflow {
    happened: AtomicBool,
    notify: Notify,
}

/// Reads the feed after `after` into `sender` until the client goes away, is too slow,
/// the journal cannot be read, or the server shuts down.
#[allow(clippy::too_many_arguments)]
async fn reader(
    state: AppState,
    options: adledger_engine::feed::FeedOptions,
    filter: FeedFilter,
    mut after: Position,
    sender: mpsc::Sender<CloudEvent>,
    overflow: Arc<Overflow>,
    slow: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let ledger = &state.ledger;
    loop {
        if *closing.borrow_and_update() {
            return;
        }
        let tip = match ledger.read_point().await {
            Ok(tip) => tip,
            Err(error) => {
                tracing::warn!(%error, "event stream: cannot read the journal tip; closing");
                return;
            }
        };
        let page = match read(&state, &options, &filter, after, PAGE, tip).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "event stream: cannot read the feed; closing");
                return;
            }
        };
        for event in page.events.iter().cloned() {
            match sender.send_timeout(event, slow).await {
                Ok(()) => {}
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                    overflow.happened.store(true, Ordering::SeqCst);
                    overflow.notify.notify_one();
                    return;
                }
                Err(mpsc::error::SendTimeoutError::Closed(_)) => return,
            }
        }
        after = page.next;
        if page.at_tip() {
            // Wake on the next commit, on shutdown, or when the client goes away; a
            // periodic wake also notices a client gone while idle.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            tokio::select! {
                woke = ledger.wait_for_block(tip, deadline) => if woke.is_err() { return },
                _ = closing.changed() => return,
                _ = sender.closed() => return,
            }
        }
    }
}

/// The SSE events: each feed event as it arrives; after an overflow, one final notice.
fn events(
    receiver: mpsc::Receiver<CloudEvent>,
    overflow: Arc<Overflow>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(
        (receiver, overflow, false),
        |(mut receiver, overflow, done)| async move {
            if done {
                return None;
            }
            let next = tokio::select! {
                biased;
                _ = overflow.notify.notified() => None,
                next = receiver.recv() => next,
            };
            match next {
                Some(event) if !overflow.happened.load(Ordering::SeqCst) => {
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    let sse = Event::default().id(event.id.clone()).data(data);
                    Some((Ok(sse), (receiver, overflow, false)))
                }
                _ if overflow.happened.load(Ordering::SeqCst) => {
                    let notice = Event::default().event("overflow").data(
                        r#"{"detail":"this client fell too far behind the feed and was disconnected; resume with GET /ledger/events?after=<the last event id you received>"}"#,
                    );
                    Some((Ok(notice), (receiver, overflow, true)))
                }
                _ => None,
            }
        },
    )
}
