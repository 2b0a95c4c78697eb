//! Commands: the only ways to change an ad, and what committing one returns.

use crate::ad::{Ad, AdDraft, AdKey, AdPatch};
use crate::hash::Hash;
use crate::revision::Revision;

/// A request to change the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create a new ad with a server-assigned id.
    CreateAd {
        /// The owning publisher (validated by the caller with
        /// [`validate_publisher_id`](crate::ad::validate_publisher_id)).
        publisher_id: String,
        /// The ad's fields.
        draft: AdDraft,
        /// A client-chosen key: retrying the same create returns the first result, forever.
        idempotency_key: Option<String>,
    },
    /// Change some fields of an ad.
    UpdateAd {
        /// The ad.
        key: AdKey,
        /// The fields to change.
        patch: AdPatch,
        /// If set, the ad must be at this version (`If-Match`).
        expected_version: Option<u64>,
    },
    /// Delete an ad; its history stays.
    DeleteAd {
        /// The ad.
        key: AdKey,
        /// If set, the ad must be at this version (`If-Match`).
        expected_version: Option<u64>,
    },
}

impl Command {
    /// The fingerprint of a create's content, to detect a reused idempotency key.
    pub(crate) fn create_fingerprint(publisher_id: &str, draft: &AdDraft) -> Hash {
        let ad = draft.clone().into_ad(publisher_id, "");
        let json = serde_json::to_vec(&ad).unwrap_or_default();
        Hash::of(&json)
    }
}

/// What a committed command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The ad after the command (`None` after a delete).
    pub ad: Option<Ad>,
    /// The ad's version after the command.
    pub version: u64,
    /// The revision appended; `None` when nothing was appended (an update that changed
    /// nothing, or a create answered from its idempotency record).
    pub revision: Option<Revision>,
    /// The journal sequence a reader must wait for to see this outcome (read-your-writes).
    pub sequence: u64,
    /// True when a create was answered from its idempotency record.
    pub replayed: bool,
}
