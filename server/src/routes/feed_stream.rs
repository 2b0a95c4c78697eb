//! `GET /ledger/events/stream`: the ledger feed as Server-Sent Events.
//!
//! # Catch-up and live are one loop
//!
//! Each client gets a reader task that keeps one position (the next event it has not
//! sent) and reads pages from the journal after it. At the tip it takes new blocks from
//! the shared live tail ([`FeedTail`](crate::feed_tail::FeedTail): one task reads and
//! serializes each committed block once for every stream) — but only a block that is
//! exactly the next one at its position; a block it already sent is skipped, and
//! anything else (a later block, a lag behind the tail's buffer, a tail that stays
//! silent while the journal grows) sends it back to reading the journal from its
//! position. The position alone decides what is sent, so nothing can fall between
//! catch-up and live, and nothing is sent twice, however writes race the switch.
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
//! browser sends back as `Last-Event-ID` when it reconnects. Frames are serialized once
//! ([`Prepared`]) and written as they are, several at a time when several are ready.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use adledger_engine::feed::{FeedFilter, Position};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::{Notify, broadcast, mpsc, watch};

use crate::error::ApiError;
use crate::feed_tail::Prepared;
use crate::params::{QueryParams, RawPairs};
use crate::routes::feed::{FeedRequest, parse_position, past_the_end, read};
use crate::state::AppState;

/// Events read from the journal per page while catching up.
const PAGE: usize = 256;
/// How long a caught-up stream waits for the tail before checking the journal itself.
const TAIL_SILENCE: Duration = Duration::from_secs(1);

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
    let body = Body::from_stream(frames(receiver, overflow, state.feed.keep_alive.get()));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
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
    sender: mpsc::Sender<Arc<Prepared>>,
    overflow: Arc<Overflow>,
    slow: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let ledger = &state.ledger;
    // Subscribed before the first read, so every block committed after it is offered.
    let mut live = state.feed_tail().subscribe();
    let forward = |event: Arc<Prepared>| {
        let (sender, overflow) = (&sender, &overflow);
        async move {
            match sender.send_timeout(event, slow).await {
                Ok(()) => true,
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                    overflow.happened.store(true, Ordering::SeqCst);
                    overflow.notify.notify_one();
                    false
                }
                Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
            }
        }
    };
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
        let at_tip = page.at_tip();
        for event in &page.events {
            let Some(prepared) = Prepared::new(event) else {
                tracing::warn!(id = %event.id, "event stream: cannot serialize an event; closing");
                return;
            };
            if !forward(Arc::new(prepared)).await {
                return;
            }
        }
        after = page.next;
        if !at_tip {
            continue;
        }
        // Caught up: take blocks from the tail while each is the next one.
        loop {
            let received = tokio::select! {
                received = tokio::time::timeout(TAIL_SILENCE, live.recv()) => received,
                _ = closing.changed() => return,
                _ = sender.closed() => return,
            };
            match received {
                Ok(Ok(block)) if block.sequence < after.block => {}
                Ok(Ok(block)) if block.sequence == after.block => {
                    for event in &block.events {
                        if event.index >= after.index
                            && event.admitted_by(&filter)
                            && !forward(event.clone()).await
                        {
                            return;
                        }
                    }
                    after = Position::after_block(block.sequence);
                }
                // A later block, or blocks lost to lag: read the journal from `after`.
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                Ok(Err(broadcast::error::RecvError::Closed)) => return,
                // The tail is silent: if the journal moved anyway, read it.
                Err(_) => match ledger.read_point().await {
                    Ok(tip) if tip > after.block => break,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "event stream: cannot read the journal tip; closing");
                        return;
                    }
                },
            }
        }
    }
}

/// The notice a client too slow to keep up gets before its stream ends.
const OVERFLOW_NOTICE: &[u8] = b"event: overflow\ndata: {\"detail\":\"this client fell too far behind the feed and was disconnected; resume with GET /ledger/events?after=<the last event id you received>\"}\n\n";
/// A keep-alive comment.
const KEEP_ALIVE: &[u8] = b":\n\n";
/// Most events written to the connection in one piece.
const FRAMES_PER_WRITE: usize = 64;

/// The response body: each feed event's prepared frame as it arrives (the frames ready
/// at once in one piece), a keep-alive comment after `keep_alive` of silence, and after
/// an overflow one final notice.
fn frames(
    receiver: mpsc::Receiver<Arc<Prepared>>,
    overflow: Arc<Overflow>,
    keep_alive: Duration,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    futures::stream::unfold(
        (receiver, overflow, false),
        move |(mut receiver, overflow, done)| async move {
            if done {
                return None;
            }
            let next = tokio::select! {
                biased;
                _ = overflow.notify.notified() => None,
                next = receiver.recv() => next.map(Some),
                _ = tokio::time::sleep(keep_alive) => Some(None),
            };
            if overflow.happened.load(Ordering::SeqCst) {
                return Some((
                    Ok(Bytes::from_static(OVERFLOW_NOTICE)),
                    (receiver, overflow, true),
                ));
            }
            let first = match next {
                Some(Some(event)) => event,
                Some(None) => {
                    return Some((
                        Ok(Bytes::from_static(KEEP_ALIVE)),
                        (receiver, overflow, false),
                    ));
                }
                None => return None,
            };
            let mut ready = Vec::new();
            while ready.len() + 1 < FRAMES_PER_WRITE {
                match receiver.try_recv() {
                    Ok(event) => ready.push(event),
                    Err(_) => break,
                }
            }
            let bytes = if ready.is_empty() {
                first.frame.clone()
            } else {
                let size = first.frame.len() + ready.iter().map(|e| e.frame.len()).sum::<usize>();
                let mut joined = BytesMut::with_capacity(size);
                joined.extend_from_slice(&first.frame);
                for event in &ready {
                    joined.extend_from_slice(&event.frame);
                }
                joined.freeze()
            };
            Some((Ok(bytes), (receiver, overflow, false)))
        },
    )
}
