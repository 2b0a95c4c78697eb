//! The feed's event: CloudEvents 1.0 in its structured JSON form, as a small serde type
//! (the `cloudevents-sdk` crate's axum support does not build with axum 0.8, and the
//! feed needs nothing from it but the shape).

use serde::{Deserialize, Serialize};

/// `type` of the event for a revision that created an ad.
pub const AD_CREATED: &str = "adledger.ad.created";
/// `type` of the event for a revision that changed an ad.
pub const AD_UPDATED: &str = "adledger.ad.updated";
/// `type` of the event for a revision that deleted an ad.
pub const AD_DELETED: &str = "adledger.ad.deleted";
/// `type` of the periodic digest event (see [`super::DigestEventData`]).
pub const LEDGER_DIGEST: &str = "adledger.ledger.digest";
/// Every `type` the feed emits, for validating filters.
pub const EVENT_TYPES: [&str; 4] = [AD_CREATED, AD_UPDATED, AD_DELETED, LEDGER_DIGEST];

/// The CloudEvents version the feed speaks.
pub const SPEC_VERSION: &str = "1.0";

/// One feed event, serialized exactly in this field order (the order is part of what
/// makes two backends' feed pages byte-identical).
///
/// Extension attributes are strings because CloudEvents integers are 32-bit and block
/// sequences are not. `blockheader` and `revisionbytes` carry the stored bytes the
/// hashes cover, so a consumer can check `data` against `blockhash` without trusting
/// the server (see [`super::FeedVerifier`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudEvent {
    /// Always `"1.0"`.
    pub specversion: String,
    /// `{sequence:020}-{index:04}`: the block and the event's position in it (see
    /// [`super::EventId`]); unique, stable, and sortable as a string.
    pub id: String,
    /// This ledger: `urn:adledger:` and the hash of its first block (see
    /// [`super::ledger_source`]).
    pub source: String,
    /// One of [`EVENT_TYPES`].
    #[serde(rename = "type")]
    pub event_type: String,
    /// `publisher/{publisherId}/ad/{adId}` for ad events; absent for digest events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The block's txTime (RFC 3339, milliseconds, UTC).
    pub time: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// Ad events: the revision exactly as `GET …/ad/{adId}?versions=true` shows it.
    /// Digest events: a [`super::DigestEventData`]. Kept as the serialized text, so
    /// its fields stay in the order the API writes them.
    pub data: Box<serde_json::value::RawValue>,
    /// The block's sequence number, in decimal.
    pub blocksequence: String,
    /// The block's hash (64 hex digits).
    pub blockhash: String,
    /// The previous block's hash (all zeros for block 0).
    pub prevblockhash: String,
    /// Ad events: the block header's stored Ion bytes, in hex; `blockhash` is their
    /// SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blockheader: Option<String>,
    /// Ad events: the revision's stored Ion bytes, in hex; their SHA-256 is listed in the
    /// header and they decode to `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisionbytes: Option<String>,
}

/// Equal when every attribute is equal and `data` is the same JSON (whatever its
/// formatting).
impl PartialEq for CloudEvent {
    fn eq(&self, other: &Self) -> bool {
        let data = |e: &CloudEvent| serde_json::from_str::<serde_json::Value>(e.data.get()).ok();
        self.specversion == other.specversion
            && self.id == other.id
            && self.source == other.source
            && self.event_type == other.event_type
            && self.subject == other.subject
            && self.time == other.time
            && self.datacontenttype == other.datacontenttype
            && self.blocksequence == other.blocksequence
            && self.blockhash == other.blockhash
            && self.prevblockhash == other.prevblockhash
            && self.blockheader == other.blockheader
            && self.revisionbytes == other.revisionbytes
            && (self.data.get() == other.data.get() || data(self) == data(other))
    }
}
