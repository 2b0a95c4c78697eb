//! The shared live tail of the ledger feed: one task reads each newly committed block
//! once, builds and serializes its events once, and broadcasts them to every event
//! stream that has caught up, instead of every stream reading and encoding the journal
//! itself on every commit.
//!
//! The tail is an optimization only, never the source of truth: a stream takes a block
//! from it only when the block is exactly the one it needs next (its position says
//! which), skips blocks it already sent, and reads the journal itself whenever the tail
//! has something else to offer (a later block, or a gap because the stream lagged
//! behind the broadcast buffer). So a stream stays gapless and free of duplicates
//! however the tail runs, even if it skips blocks while no stream listens.
//!
//! Started on the first stream's request; ends at shutdown.

use std::sync::Arc;
use std::time::Duration;

use adledger_engine::feed::{CloudEvent, EventId, FeedFilter, FeedPage};
use bytes::Bytes;
use tokio::sync::broadcast;

use adledger_engine::Ledger;
use adledger_engine::feed::FeedOptions;

use crate::feed_pages::read;

/// Blocks the broadcast buffer holds; a stream further behind reads the journal.
const BUFFER_BLOCKS: usize = 4096;
/// Events read per journal page by the tail.
const PAGE: usize = 1024;
/// A typical event's frame: a revision's JSON and its stored bytes in hex.
const FRAME_CAPACITY: usize = 3 * 1024;

/// One feed event, serialized once as its Server-Sent Events frame for every stream.
#[derive(Debug)]
pub struct Prepared {
    /// Its position in its block.
    pub index: u32,
    /// Its `type`, for filters.
    pub event_type: String,
    /// The publisher of an ad event (from its subject), for filters.
    pub publisher_id: Option<String>,
    /// `id: <event id>\ndata: <the CloudEvent as JSON>\n\n` (compact JSON holds no
    /// line break, so one `data:` line carries it).
    pub frame: Bytes,
    /// The CloudEvent as JSON: the part of `frame` webhook deliverers send.
    pub json: Bytes,
}

impl Prepared {
    /// Serializes `event`; `None` for an event whose id does not parse (never produced
    /// by the engine) or that cannot be serialized.
    pub fn new(event: &CloudEvent) -> Option<Prepared> {
        let id = EventId::parse(&event.id)?;
        let mut frame = Vec::with_capacity(FRAME_CAPACITY);
        frame.extend_from_slice(b"id: ");
        frame.extend_from_slice(event.id.as_bytes());
        frame.extend_from_slice(b"\ndata: ");
        let json_start = frame.len();
        serde_json::to_writer(&mut frame, event).ok()?;
        let json_end = frame.len();
        frame.extend_from_slice(b"\n\n");
        let frame = Bytes::from(frame);
        let publisher_id = event.subject.as_deref().and_then(|s| {
            let rest = s.strip_prefix("publisher/")?;
            rest.split_once("/ad/").map(|(p, _)| p.to_string())
        });
        Some(Prepared {
            index: id.index,
            event_type: event.event_type.clone(),
            publisher_id,
            json: frame.slice(json_start..json_end),
            frame,
        })
    }

    /// Whether `filter` keeps this event.
    pub fn admitted_by(&self, filter: &FeedFilter) -> bool {
        filter.admits(&self.event_type, self.publisher_id.as_deref())
    }
}

/// The events of one committed block, in order.
#[derive(Debug)]
pub struct TailBlock {
    /// The block's sequence.
    pub sequence: u64,
    /// Its events (all of them: streams filter).
    pub events: Vec<Arc<Prepared>>,
}

/// The running tail: subscribe to receive every block committed from now on.
#[derive(Debug, Clone)]
pub struct FeedTail {
    sender: broadcast::Sender<Arc<TailBlock>>,
}

impl FeedTail {
    /// Starts the tail of `ledger`'s feed (pages read with `options`, the ledger's
    /// source kept in `source`); it ends when `closing` becomes `true`.
    pub fn start(
        ledger: Arc<Ledger>,
        source: Arc<std::sync::OnceLock<String>>,
        options: FeedOptions,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> FeedTail {
        let (sender, _) = broadcast::channel(BUFFER_BLOCKS);
        let tail = Tail {
            ledger,
            source,
            options,
            closing,
        };
        tokio::spawn(run(tail, sender.clone()));
        FeedTail { sender }
    }

    /// Blocks committed from now on (possibly some before: streams skip them).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TailBlock>> {
        self.sender.subscribe()
    }
}

/// What the tail reads, and when it ends.
struct Tail {
    ledger: Arc<Ledger>,
    source: Arc<std::sync::OnceLock<String>>,
    options: FeedOptions,
    closing: tokio::sync::watch::Receiver<bool>,
}

/// Reads every block once as it is committed and broadcasts its events, until shutdown.
async fn run(tail: Tail, sender: broadcast::Sender<Arc<TailBlock>>) {
    let Tail {
        ledger,
        source,
        options,
        mut closing,
    } = tail;
    let unfiltered = FeedFilter::default();
    let mut next = match ledger.read_point().await {
        Ok(tip) => tip,
        Err(error) => {
            tracing::warn!(%error, "feed tail: cannot read the journal tip; streams read the journal themselves");
            return;
        }
    };
    loop {
        if *closing.borrow_and_update() {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let tip = tokio::select! {
            tip = ledger.wait_for_block(next, deadline) => match tip {
                Ok(tip) => tip,
                Err(_) => return,
            },
            _ = closing.changed() => return,
        };
        if tip <= next {
            continue;
        }
        if sender.receiver_count() == 0 {
            // Nobody listens: streams that subscribe later read these from the journal.
            next = tip;
            continue;
        }
        while next < tip {
            let after = adledger_engine::feed::Position {
                block: next,
                index: 0,
            };
            let page = match read(&ledger, &source, &options, &unfiltered, after, PAGE, tip).await {
                Ok(page) => page,
                Err(error) => {
                    // Streams notice the gap and read the journal themselves.
                    tracing::warn!(%error, "feed tail: cannot read the feed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
            };
            if page.next.block <= next {
                break;
            }
            next = page.next.block;
            for block in blocks(page) {
                // An error means no receiver right now: nothing to do.
                let _ = sender.send(Arc::new(block));
            }
        }
    }
}

/// A page's events grouped by block (a page never splits one).
fn blocks(page: FeedPage) -> Vec<TailBlock> {
    let mut out: Vec<TailBlock> = Vec::new();
    for event in &page.events {
        let Some(prepared) = Prepared::new(event) else {
            continue;
        };
        let sequence = event.blocksequence.parse::<u64>().unwrap_or_default();
        match out.last_mut() {
            Some(block) if block.sequence == sequence => block.events.push(Arc::new(prepared)),
            _ => out.push(TailBlock {
                sequence,
                events: vec![Arc::new(prepared)],
            }),
        }
    }
    out
}
