//! Revisions: the QLDB-shaped record of one change to one ad.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::actor::Actor;
use crate::ad::{Ad, AdKey};
use crate::hash::Hash;

/// What a revision did to its ad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// Version 0: the ad came into existence.
    AdCreated,
    /// A later version with changed fields.
    AdUpdated,
    /// The last version: `data` is `null`.
    AdDeleted,
}

impl EventKind {
    /// The name stored in the journal and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AdCreated => "AdCreated",
            EventKind::AdUpdated => "AdUpdated",
            EventKind::AdDeleted => "AdDeleted",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<EventKind> {
        match name {
            "AdCreated" => Some(EventKind::AdCreated),
            "AdUpdated" => Some(EventKind::AdUpdated),
            "AdDeleted" => Some(EventKind::AdDeleted),
            _ => None,
        }
    }
}

/// Where a revision lives in the journal, as QLDB addresses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockAddress {
    /// The journal strand; this ledger has one.
    pub strand_id: String,
    /// The block's sequence number.
    pub sequence_no: u64,
}

/// The strand id of the single strand of an adledger journal.
pub const STRAND_ID: &str = "adledger-0";

/// A revision's metadata, QLDB-style plus the publisher (needed to address a delete,
/// whose `data` is null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionMetadata {
    /// The ad id.
    pub id: String,
    /// The ad's publisher.
    pub publisher_id: String,
    /// Counts from 0 per ad.
    pub version: u64,
    /// The transaction (block) that committed this revision.
    pub tx_id: String,
    /// When that transaction committed (millisecond precision, UTC).
    #[serde(with = "crate::time::rfc3339_millis")]
    pub tx_time: DateTime<Utc>,
    /// Who committed the transaction, when the server knew (an authenticated caller).
    ///
    /// Recorded once per block, in the hashed block header, not in the revision's own
    /// bytes: reading a block fills it into each of its revisions, and the canonical
    /// revision encoding ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
}

/// The hashed content of a revision: everything but its address and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionBody {
    /// Complete state after the change; `None` after a delete.
    pub data: Option<Ad>,
    /// Version, ids and time.
    pub metadata: RevisionMetadata,
    /// What happened.
    pub event: EventKind,
}

impl RevisionBody {
    /// The ad this revision belongs to.
    pub fn key(&self) -> AdKey {
        AdKey::new(&self.metadata.publisher_id, &self.metadata.id)
    }
}

/// A committed revision, as read back from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The block holding it.
    pub block_address: BlockAddress,
    /// SHA-256 of its canonical bytes.
    pub hash: Hash,
    /// Content.
    pub body: RevisionBody,
}

impl Revision {
    /// The ad this revision belongs to.
    pub fn key(&self) -> AdKey {
        self.body.key()
    }

    /// The ad's version after this revision.
    pub fn version(&self) -> u64 {
        self.body.metadata.version
    }

    /// The journal sequence number of its block.
    pub fn sequence(&self) -> u64 {
        self.block_address.sequence_no
    }
}
