//! Reading the feed: the events of committed blocks, one bounded page at a time.
//!
//! Everything is derived from the stored blocks on every read; nothing is written. A
//! page reads the journal with [`Journal::read_blocks`] in chunks, scans at most
//! [`FeedOptions::max_scan_blocks`] blocks, and never splits a block, so the position it
//! returns is always a block boundary and the next page starts cleanly.

use crate::block::{self, EncodedBlock, Frame};
use crate::error::{Error, Result};
use crate::ports::Journal;
use crate::revision::{EventKind, Revision};
use crate::revision_view::RevisionView;
use crate::time::format_rfc3339_millis;

use super::digest_event::{digest_event_data, is_digest_block};
use super::event::{AD_CREATED, AD_DELETED, AD_UPDATED, CloudEvent, LEDGER_DIGEST, SPEC_VERSION};
use super::position::{EventId, MAX_EVENT_INDEX, Position};

/// Default of [`FeedOptions::digest_every`].
pub const DEFAULT_DIGEST_EVERY: u64 = 100;
/// Default of [`FeedOptions::max_scan_blocks`].
pub const DEFAULT_MAX_SCAN_BLOCKS: usize = 4096;
/// Blocks asked of the journal in one read.
const READ_CHUNK: usize = 256;

/// How the feed is cut; the same options on every server of a ledger give the same feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedOptions {
    /// A digest event follows every block `s` with `(s + 1) % digest_every == 0`; at
    /// least 1.
    pub digest_every: u64,
    /// Most blocks one page reads, whatever the filter drops, so a sparse filter answers
    /// promptly with an advanced position instead of scanning the whole journal.
    pub max_scan_blocks: usize,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            digest_every: DEFAULT_DIGEST_EVERY,
            max_scan_blocks: DEFAULT_MAX_SCAN_BLOCKS,
        }
    }
}

/// Which events a reader wants. The empty filter passes everything; only the unfiltered
/// feed can be checked by [`super::FeedVerifier`] (a filter leaves gaps on purpose).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFilter {
    /// Only these `type`s (any of them); empty: every type.
    pub types: Vec<String>,
    /// Only this publisher's ad events (digest events, which belong to no publisher,
    /// are dropped).
    pub publisher_id: Option<String>,
}

impl FeedFilter {
    /// Whether an event already built passes: its `type`, and the publisher of its ad
    /// (`None` for a digest event) — the rule [`read_page`] applies while building them,
    /// for readers that filter shared, prebuilt events (the server's live tail).
    pub fn admits(&self, event_type: &str, publisher_id: Option<&str>) -> bool {
        self.admits_type(event_type)
            && match (&self.publisher_id, publisher_id) {
                (None, _) => true,
                (Some(wanted), Some(publisher)) => wanted == publisher,
                (Some(_), None) => false,
            }
    }

    fn admits_type(&self, event_type: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t == event_type)
    }

    fn admits_revision(&self, revision: &Revision) -> bool {
        self.admits_type(event_type(revision.body.event))
            && self
                .publisher_id
                .as_ref()
                .is_none_or(|p| *p == revision.body.metadata.publisher_id)
    }

    fn admits_digest(&self) -> bool {
        self.publisher_id.is_none() && self.admits_type(LEDGER_DIGEST)
    }
}

/// One page of the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    /// The events, in journal order.
    pub events: Vec<CloudEvent>,
    /// Where the next page starts: after the last block this page read, including blocks
    /// whose events the filter dropped.
    pub next: Position,
    /// The journal's next sequence when the page was read.
    pub tip: u64,
}

impl FeedPage {
    /// Whether the page reached the end of the journal as it was when read.
    pub fn at_tip(&self) -> bool {
        self.next.block >= self.tip
    }
}

/// The feed's `source`: `urn:adledger:` and the hash of block 0, so it names this
/// ledger wherever its journal is stored (an export imported elsewhere, either backend)
/// and never a host. `None` while the journal is empty.
pub async fn ledger_source(journal: &dyn Journal) -> Result<Option<String>> {
    let Some(first) = journal.read_blocks(0, 1).await?.pop() else {
        return Ok(None);
    };
    let hash = Frame::parse(&first.bytes)
        .map_err(|e| Error::ChainBroken {
            sequence: 0,
            detail: e.to_string(),
        })?
        .block_hash();
    Ok(Some(format!("urn:adledger:{hash}")))
}

/// The `type` of a revision's event.
pub fn event_type(kind: EventKind) -> &'static str {
    match kind {
        EventKind::AdCreated => AD_CREATED,
        EventKind::AdUpdated => AD_UPDATED,
        EventKind::AdDeleted => AD_DELETED,
    }
}

/// Reads up to `limit` events after `after` (a page may hold more when it ends inside a
/// block: blocks are never split), from blocks before `tip` (the journal's next sequence,
/// as the caller observed it). `source` is [`ledger_source`]'s answer.
pub async fn read_page(
    journal: &dyn Journal,
    source: &str,
    options: &FeedOptions,
    filter: &FeedFilter,
    after: Position,
    limit: usize,
    tip: u64,
) -> Result<FeedPage> {
    let mut events = Vec::new();
    let mut next = after;
    let mut scanned = 0usize;
    let limit = limit.max(1);
    let unfiltered = filter == &FeedFilter::default();
    while next.block < tip && events.len() < limit && scanned < options.max_scan_blocks {
        let wanted = if unfiltered {
            limit - events.len()
        } else {
            READ_CHUNK
        };
        let wanted = wanted
            .min(READ_CHUNK)
            .min(options.max_scan_blocks - scanned)
            .min(usize::try_from(tip - next.block).unwrap_or(usize::MAX));
        let blocks = journal.read_blocks(next.block, wanted).await?;
        if blocks.is_empty() {
            break;
        }
        for stored in &blocks {
            if events.len() >= limit || scanned >= options.max_scan_blocks {
                break;
            }
            if stored.sequence != next.block {
                return Err(Error::ChainBroken {
                    sequence: next.block,
                    detail: format!(
                        "the journal returned block {} where block {} was expected",
                        stored.sequence, next.block
                    ),
                });
            }
            block_events(
                journal,
                source,
                options,
                filter,
                stored,
                next.index,
                &mut events,
            )
            .await?;
            next = Position::after_block(stored.sequence);
            scanned += 1;
        }
    }
    Ok(FeedPage { events, next, tip })
}

/// Appends the events of one block, from index `from` on, that `filter` admits.
async fn block_events(
    journal: &dyn Journal,
    source: &str,
    options: &FeedOptions,
    filter: &FeedFilter,
    stored: &EncodedBlock,
    from: u32,
    out: &mut Vec<CloudEvent>,
) -> Result<()> {
    let sequence = stored.sequence;
    let broken = |detail: String| Error::ChainBroken { sequence, detail };
    let block = block::open(stored)?;
    let frame = Frame::parse(&stored.bytes).map_err(|e| broken(e.to_string()))?;
    let count = u32::try_from(block.revisions.len())
        .ok()
        .filter(|&n| n <= MAX_EVENT_INDEX)
        .ok_or_else(|| broken("more revisions than an event id can number".into()))?;
    let time = format_rfc3339_millis(&block.header.tx_time);
    let links = Links {
        sequence,
        sequence_text: sequence.to_string(),
        hash: to_hex(block.hash.as_bytes()),
        previous: to_hex(block.header.previous_hash.as_bytes()),
    };
    let header_hex = to_hex(frame.header);
    for ((index, revision), bytes) in (0u32..).zip(block.revisions).zip(&frame.revisions) {
        if index < from || !filter.admits_revision(&revision) {
            continue;
        }
        let metadata = &revision.body.metadata;
        let subject = format!("publisher/{}/ad/{}", metadata.publisher_id, metadata.id);
        let event_type = event_type(revision.body.event);
        let data = serde_json::value::to_raw_value(&RevisionView::from(revision))
            .map_err(|e| Error::Corrupt(format!("revision view: {e}")))?;
        out.push(links.event(
            source,
            index,
            event_type,
            Some(subject),
            &time,
            data,
            Some((header_hex.clone(), to_hex(bytes))),
        ));
    }
    if is_digest_block(sequence, options.digest_every) && count >= from && filter.admits_digest() {
        let data = digest_event_data(journal, sequence, block.hash, options.digest_every).await?;
        let data = serde_json::value::to_raw_value(&data)
            .map_err(|e| Error::Corrupt(format!("digest event: {e}")))?;
        out.push(links.event(source, count, LEDGER_DIGEST, None, &time, data, None));
    }
    Ok(())
}

/// Lower-case hex of `bytes`. (`hex::encode` goes through a `char` iterator: with the
/// hashes it was a fifth of the time of a feed page.)
fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    // Cannot fail: `out` is exactly twice as long as `bytes`, and hex digits are ASCII.
    let _ = hex::encode_to_slice(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// What every event of one block carries about the block, as text once per block.
struct Links {
    sequence: u64,
    sequence_text: String,
    hash: String,
    previous: String,
}

impl Links {
    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        source: &str,
        index: u32,
        event_type: &str,
        subject: Option<String>,
        time: &str,
        data: Box<serde_json::value::RawValue>,
        bytes: Option<(String, String)>,
    ) -> CloudEvent {
        let (blockheader, revisionbytes) = bytes.unzip();
        CloudEvent {
            specversion: SPEC_VERSION.into(),
            id: EventId {
                sequence: self.sequence,
                index,
            }
            .to_string(),
            source: source.into(),
            event_type: event_type.into(),
            subject,
            time: time.into(),
            datacontenttype: "application/json".into(),
            data,
            blocksequence: self.sequence_text.clone(),
            blockhash: self.hash.clone(),
            prevblockhash: self.previous.clone(),
            blockheader,
            revisionbytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_matches_the_hex_crate() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(to_hex(&bytes), hex::encode(&bytes));
        assert_eq!(to_hex(&[]), "");
        assert_eq!(to_hex(&[0xAB, 0x01]), "ab01");
    }

    #[test]
    fn prebuilt_events_are_filtered_as_pages_are() {
        let all = FeedFilter::default();
        assert!(all.admits(AD_CREATED, Some("acme")));
        assert!(all.admits(LEDGER_DIGEST, None));
        let acme = FeedFilter {
            types: vec![],
            publisher_id: Some("acme".into()),
        };
        assert!(acme.admits(AD_UPDATED, Some("acme")));
        assert!(!acme.admits(AD_UPDATED, Some("globex")));
        assert!(
            !acme.admits(LEDGER_DIGEST, None),
            "digests belong to no publisher"
        );
        let deletes = FeedFilter {
            types: vec![AD_DELETED.into()],
            publisher_id: None,
        };
        assert!(deletes.admits(AD_DELETED, Some("acme")));
        assert!(!deletes.admits(AD_CREATED, Some("acme")));
        assert!(!deletes.admits(LEDGER_DIGEST, None));
    }
}
