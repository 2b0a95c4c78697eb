//! The consumer's verifier: checks, without trusting the server, that a run of feed
//! events is the journal — nothing missing, duplicated, reordered or altered.
//!
//! # What is checked, event by event
//!
//! - **Order**: each id is exactly the next one: the next index in the same block, or
//!   index 0 of the next block once every event of the current block was seen (its
//!   revision count is in its header; a digest block also needs its digest event once the
//!   digest interval is known). An id already passed is a duplicate or a reordering; a
//!   skipped one is a gap.
//! - **Content** (ad events): `blockhash = SHA-256(blockheader)`; the header names the
//!   same sequence, previous hash and time as the event; `SHA-256(revisionbytes)` is the
//!   header's revision hash at the event's index; the revision bytes decode to exactly
//!   `data` (through the same view the API serializes), and `type` and `subject` match
//!   them.
//! - **Chain**: a block's `prevblockhash` is the hash of the block before it.
//! - **Digests**: a digest event's `tipHash` is its block's hash, its frontier folds to
//!   its root, its consistency proof (verified with [`crate::proof::verify_consistency`])
//!   starts at the previous digest event's digest, and — once the verifier holds a Merkle
//!   frontier, from block 0 or from a first digest event — the hashes of every block seen
//!   since fold to the next digest's root. So a run that spans two digest events proves
//!   every block between them is in the journal the digests describe.
//!
//! The first event may be anywhere (a consumer resumes where it left off); hand the
//! verifier the digest interval when you know it, so a dropped digest event is caught
//! before the first one is seen. A filtered feed has gaps by design and cannot be
//! checked this way.

use crate::codec;
use crate::hash::Hash;
use crate::merkle::Frontier;
use crate::proof::{ProofError, verify_consistency};
use crate::revision::{BlockAddress, Revision, STRAND_ID};
use crate::revision_view::RevisionView;
use crate::time::format_rfc3339_millis;

use super::digest_event::{DigestEventData, is_digest_block};
use super::event::{CloudEvent, LEDGER_DIGEST, SPEC_VERSION};
use super::position::{EventId, Position};
use super::read::event_type;

/// Why a feed does not verify. Every variant names the event id where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The event cannot be read: a bad id, attribute or encoding.
    #[error("event {id}: malformed: {reason}")]
    Malformed {
        /// The event's id as given.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// Events are missing before this one.
    #[error("event {id}: gap: expected event {expected} next")]
    Gap {
        /// The event found.
        id: String,
        /// The event that should have come.
        expected: String,
    },
    /// This event was already delivered.
    #[error("event {id}: duplicate")]
    Duplicate {
        /// The event's id.
        id: String,
    },
    /// This event comes after one that follows it in the journal.
    #[error("event {id}: out of order: it comes after event {previous}")]
    OutOfOrder {
        /// The event's id.
        id: String,
        /// The event it came after.
        previous: String,
    },
    /// The event's block does not link to the block before it.
    #[error(
        "event {id}: broken chain: prevblockhash {found} is not the previous block's hash {expected}"
    )]
    BrokenLink {
        /// The event's id.
        id: String,
        /// The hash the event names.
        found: String,
        /// The previous block's hash.
        expected: String,
    },
    /// The event's content does not match the hashes that cover it.
    #[error("event {id}: altered: {reason}")]
    Altered {
        /// The event's id.
        id: String,
        /// What does not match.
        reason: String,
    },
    /// A digest event does not agree with the blocks seen or the previous digest.
    #[error("event {id}: digest does not verify: {reason}")]
    Digest {
        /// The digest event's id.
        id: String,
        /// What does not match.
        reason: String,
    },
}

/// What a verified run of events covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSummary {
    /// Events checked.
    pub events: u64,
    /// Digest events among them.
    pub digests: u64,
    /// The first and last event ids, if any.
    pub range: Option<(String, String)>,
    /// Blocks whose hashes were checked against a digest root.
    pub blocks_under_digest: u64,
    /// Where to resume: after the last event.
    pub next: Option<Position>,
}

/// The current block, as its first event described it.
#[derive(Debug, Clone)]
struct CurrentBlock {
    sequence: u64,
    hash: Hash,
    previous: Hash,
    /// The time its first event carried (an ad event's is checked against the header).
    time: String,
    /// Revision count from its header; `None` when the run started at its digest event.
    revisions: Option<u32>,
    /// Index of the last event seen in it.
    last_index: u32,
}

/// Checks feed events one at a time, in the order received; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct FeedVerifier {
    every: Option<u64>,
    start: Option<Position>,
    source: Option<String>,
    current: Option<CurrentBlock>,
    /// The tree of every block up to the current one, once known.
    frontier: Option<Frontier>,
    /// The last verified digest event's data.
    last_digest: Option<DigestEventData>,
    events: u64,
    digests: u64,
    blocks_under_digest: u64,
    first: Option<String>,
    last: Option<String>,
}

impl FeedVerifier {
    /// A verifier that learns the digest interval from the first digest event it sees.
    pub fn new() -> FeedVerifier {
        FeedVerifier::default()
    }

    /// A verifier that knows the digest interval (the server's `feed.digest_every`) up
    /// front, so even a dropped first digest event is caught.
    pub fn with_digest_every(every: u64) -> FeedVerifier {
        FeedVerifier {
            every: Some(every),
            ..FeedVerifier::default()
        }
    }

    /// Requires the first event to be the one right after `position` (where the
    /// consumer resumed), so events dropped at the start are caught too. A position at the
    /// end of a block's events also accepts the next block's first event.
    pub fn starting_at(mut self, position: Position) -> FeedVerifier {
        self.start = Some(position);
        self
    }

    /// Checks the next event.
    pub fn check(&mut self, event: &CloudEvent) -> Result<(), FeedError> {
        let id = event.id.clone();
        let malformed = |reason: String| FeedError::Malformed {
            id: id.clone(),
            reason,
        };
        let parsed = EventId::parse(&event.id)
            .filter(|p| p.to_string() == event.id)
            .ok_or_else(|| malformed("the id is not SEQUENCE(20 digits)-INDEX(4 digits)".into()))?;
        if event.specversion != SPEC_VERSION {
            return Err(malformed(format!("specversion {:?}", event.specversion)));
        }
        if event.datacontenttype != "application/json" {
            return Err(malformed(format!(
                "datacontenttype {:?}",
                event.datacontenttype
            )));
        }
        if event.blocksequence != parsed.sequence.to_string() {
            return Err(malformed(format!(
                "blocksequence {} disagrees with the id",
                event.blocksequence
            )));
        }
        match &self.source {
            Some(source) if *source != event.source => {
                return Err(FeedError::Altered {
                    id,
                    reason: format!("source {} is not {source}", event.source),
                });
            }
            Some(_) => {}
            None => self.source = Some(event.source.clone()),
        }
        let hash = parse_hash(&event.blockhash).ok_or_else(|| malformed("blockhash".into()))?;
        let previous =
            parse_hash(&event.prevblockhash).ok_or_else(|| malformed("prevblockhash".into()))?;
        let new_block = self.check_order(parsed, &id, hash, previous, &event.time)?;
        if event.event_type == LEDGER_DIGEST {
            self.check_digest(event, parsed, hash, new_block)?;
        } else {
            let revisions = self.check_revision(event, parsed, hash, previous)?;
            if let Some(current) = &mut self.current {
                current.revisions = Some(revisions);
            }
        }
        self.events += 1;
        self.first.get_or_insert_with(|| id.clone());
        self.last = Some(id);
        Ok(())
    }

    /// Checks a whole run and summarizes it.
    pub fn check_all<'a>(
        mut self,
        events: impl IntoIterator<Item = &'a CloudEvent>,
    ) -> Result<FeedSummary, FeedError> {
        for event in events {
            self.check(event)?;
        }
        Ok(self.summary())
    }

    /// What has been checked so far.
    pub fn summary(&self) -> FeedSummary {
        FeedSummary {
            events: self.events,
            digests: self.digests,
            range: self.first.clone().zip(self.last.clone()),
            blocks_under_digest: self.blocks_under_digest,
            next: self
                .last
                .as_deref()
                .and_then(EventId::parse)
                .map(Position::after_event),
        }
    }

    /// Order and chain: returns whether the event starts a new block.
    fn check_order(
        &mut self,
        at: EventId,
        id: &str,
        hash: Hash,
        previous: Hash,
        time: &str,
    ) -> Result<bool, FeedError> {
        let Some(current) = &mut self.current else {
            if let Some(start) = self.start {
                let here = at.sequence == start.block && at.index == start.index;
                let next_block = start.index > 0 && at.sequence == start.block + 1 && at.index == 0;
                if !here && !next_block {
                    return Err(FeedError::Gap {
                        id: id.into(),
                        expected: EventId {
                            sequence: start.block,
                            index: start.index,
                        }
                        .to_string(),
                    });
                }
            }
            if at.sequence == 0 && previous != Hash::ZERO {
                return Err(FeedError::BrokenLink {
                    id: id.into(),
                    found: previous.to_string(),
                    expected: Hash::ZERO.to_string(),
                });
            }
            if at.sequence == 0 && at.index == 0 {
                self.frontier = Some(Frontier::new());
            }
            self.start_block(at, hash, previous, time);
            return Ok(true);
        };
        let last = EventId {
            sequence: current.sequence,
            index: current.last_index,
        };
        if at <= last {
            return Err(if at == last {
                FeedError::Duplicate { id: id.into() }
            } else {
                FeedError::OutOfOrder {
                    id: id.into(),
                    previous: last.to_string(),
                }
            });
        }
        if at.sequence == current.sequence {
            if at.index != current.last_index + 1 {
                return Err(FeedError::Gap {
                    id: id.into(),
                    expected: EventId {
                        index: current.last_index + 1,
                        ..last
                    }
                    .to_string(),
                });
            }
            if hash != current.hash || previous != current.previous || time != current.time {
                return Err(FeedError::Altered {
                    id: id.into(),
                    reason: format!(
                        "blockhash, prevblockhash or time differs from what its block's other \
                         events carry ({}, {}, {})",
                        current.hash, current.previous, current.time
                    ),
                });
            }
            current.last_index = at.index;
            return Ok(false);
        }
        // A new block: the current one must be complete, and this one must follow it.
        let expected_events = current.revisions.map(|n| {
            let digest = self
                .every
                .is_some_and(|every| is_digest_block(current.sequence, every));
            n + u32::from(digest)
        });
        let complete = expected_events.is_none_or(|n| current.last_index + 1 >= n);
        if !complete || at.sequence != current.sequence + 1 || at.index != 0 {
            let expected = if complete {
                EventId {
                    sequence: current.sequence + 1,
                    index: 0,
                }
            } else {
                EventId {
                    index: current.last_index + 1,
                    ..last
                }
            };
            return Err(FeedError::Gap {
                id: id.into(),
                expected: expected.to_string(),
            });
        }
        if previous != current.hash {
            return Err(FeedError::BrokenLink {
                id: id.into(),
                found: previous.to_string(),
                expected: current.hash.to_string(),
            });
        }
        self.start_block(at, hash, previous, time);
        Ok(true)
    }

    fn start_block(&mut self, at: EventId, hash: Hash, previous: Hash, time: &str) {
        self.current = Some(CurrentBlock {
            sequence: at.sequence,
            hash,
            previous,
            time: time.to_string(),
            revisions: None,
            last_index: at.index,
        });
        if let Some(frontier) = &mut self.frontier {
            if frontier.size() == at.sequence {
                frontier.push(&hash);
            } else {
                self.frontier = None;
            }
        }
    }

    /// An ad event's content against the hashes; returns the block's revision count.
    fn check_revision(
        &self,
        event: &CloudEvent,
        at: EventId,
        hash: Hash,
        previous: Hash,
    ) -> Result<u32, FeedError> {
        let altered = |reason: String| FeedError::Altered {
            id: event.id.clone(),
            reason,
        };
        let bytes = |field: &str, value: &Option<String>| {
            value
                .as_deref()
                .and_then(|h| hex::decode(h).ok())
                .ok_or_else(|| FeedError::Malformed {
                    id: event.id.clone(),
                    reason: format!("{field} is missing or not hex"),
                })
        };
        let header_bytes = bytes("blockheader", &event.blockheader)?;
        let revision_bytes = bytes("revisionbytes", &event.revisionbytes)?;
        if Hash::of(&header_bytes) != hash {
            return Err(altered("blockheader does not hash to blockhash".into()));
        }
        let header = codec::decode_header(&header_bytes)
            .map_err(|e| altered(format!("blockheader does not decode: {e}")))?;
        if header.sequence_no != at.sequence {
            return Err(altered(format!(
                "the header is block {}, the event says {}",
                header.sequence_no, at.sequence
            )));
        }
        if header.previous_hash != previous {
            return Err(altered("prevblockhash differs from the header's".into()));
        }
        if format_rfc3339_millis(&header.tx_time) != event.time {
            return Err(altered(format!(
                "time {} is not the block's txTime",
                event.time
            )));
        }
        let listed = header
            .revision_hashes
            .get(at.index as usize)
            .ok_or_else(|| altered(format!("the block has no revision {}", at.index)))?;
        let revision_hash = Hash::of(&revision_bytes);
        if revision_hash != *listed {
            return Err(altered(format!(
                "revisionbytes hash to {revision_hash}, the header lists {listed}"
            )));
        }
        let body = codec::decode_revision_of(&revision_bytes, &header)
            .map_err(|e| altered(format!("revisionbytes do not decode: {e}")))?;
        let expected_type = event_type(body.event);
        let expected_subject = format!(
            "publisher/{}/ad/{}",
            body.metadata.publisher_id, body.metadata.id
        );
        let revision = Revision {
            block_address: BlockAddress {
                strand_id: STRAND_ID.into(),
                sequence_no: at.sequence,
            },
            hash: revision_hash,
            body,
        };
        let expected_data = serde_json::to_value(RevisionView::from(revision))
            .map_err(|e| altered(format!("revision view: {e}")))?;
        let data: serde_json::Value = serde_json::from_str(event.data.get())
            .map_err(|e| altered(format!("data is not JSON: {e}")))?;
        if data != expected_data {
            return Err(altered("data is not the revision its bytes hold".into()));
        }
        if event.event_type != expected_type {
            return Err(altered(format!(
                "type {} but the revision is {expected_type}",
                event.event_type
            )));
        }
        if event.subject.as_deref() != Some(expected_subject.as_str()) {
            return Err(altered(format!("subject is not {expected_subject}")));
        }
        u32::try_from(header.revision_hashes.len())
            .map_err(|_| altered("too many revisions".into()))
    }

    fn check_digest(
        &mut self,
        event: &CloudEvent,
        at: EventId,
        hash: Hash,
        new_block: bool,
    ) -> Result<(), FeedError> {
        let fail = |reason: String| FeedError::Digest {
            id: event.id.clone(),
            reason,
        };
        let data: DigestEventData =
            serde_json::from_str(event.data.get()).map_err(|e| FeedError::Malformed {
                id: event.id.clone(),
                reason: format!("digest data: {e}"),
            })?;
        if data.every == 0 || !is_digest_block(at.sequence, data.every) {
            return Err(fail(format!(
                "block {} is not a digest block for an interval of {}",
                at.sequence, data.every
            )));
        }
        match self.every {
            Some(every) if every != data.every => {
                return Err(fail(format!(
                    "interval {} differs from the expected {every}",
                    data.every
                )));
            }
            Some(_) => {}
            None => self.every = Some(data.every),
        }
        if let Some(current) = &self.current
            && !new_block
            && current.revisions.is_some_and(|n| n != at.index)
        {
            return Err(fail(format!(
                "a digest event's index is the block's revision count, not {}",
                at.index
            )));
        }
        let digest = data.digest;
        if digest.sequence != at.sequence || digest.tip_hash != hash {
            return Err(fail("the digest is not of this event's block".into()));
        }
        let size = at.sequence + 1;
        let claimed = Frontier::from_nodes(size, &data.frontier)
            .ok_or_else(|| fail("the frontier has the wrong number of hashes".into()))?;
        if claimed.root() != Some(digest.root) {
            return Err(fail("the frontier does not fold to the root".into()));
        }
        match &self.frontier {
            Some(seen) if seen.size() == size => {
                if seen.root() != Some(digest.root) {
                    return Err(fail(
                        "the blocks seen do not fold to the digest's root".into(),
                    ));
                }
                self.blocks_under_digest += match &self.last_digest {
                    Some(last) => size - (last.digest.sequence + 1),
                    None => size,
                };
            }
            _ => self.frontier = Some(claimed),
        }
        match (&data.consistency, &self.last_digest) {
            (None, None) if at.sequence + 1 == data.every => {}
            (None, _) => {
                return Err(fail(
                    "only the first digest event lacks a consistency proof".into(),
                ));
            }
            (Some(consistency), last) => {
                let from = consistency.from;
                if from.sequence + data.every != at.sequence {
                    return Err(fail(format!(
                        "the proof starts at {}, not at the previous digest",
                        from.sequence
                    )));
                }
                if let Some(last) = last
                    && last.digest != from
                {
                    return Err(fail(
                        "the proof starts at a digest other than the previous digest event's"
                            .into(),
                    ));
                }
                let proof = &consistency.proof;
                if proof.first_size != from.sequence + 1 || proof.second_size != size {
                    return Err(fail("the proof's tree sizes are not the digests'".into()));
                }
                verify_consistency(proof, &from.root, &digest.root)
                    .map_err(|e: ProofError| fail(e.to_string()))?;
            }
        }
        self.last_digest = Some(data);
        self.digests += 1;
        Ok(())
    }
}

fn parse_hash(text: &str) -> Option<Hash> {
    hex::decode(text).ok().and_then(|b| Hash::from_slice(&b))
}
