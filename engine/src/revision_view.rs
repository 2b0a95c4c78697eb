//! The JSON shape of a revision as the HTTP API shows it (`?versions=true`, proof
//! bundles) and as the ledger feed carries it in each event's `data`.
//!
//! It lives in the engine, not the server, so the feed and the API cannot drift apart:
//! both serialize this one type. The metadata is the engine's [`RevisionMetadata`]
//! itself, so a field added there appears in every revision the API or the feed shows
//! without being listed a second time.

use serde::Serialize;

use crate::ad::Ad;
use crate::hash::Hash;
use crate::revision::{BlockAddress, Revision, RevisionMetadata};
use crate::time::format_rfc3339_millis;

/// One revision of an ad, as `?versions=true` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionView {
    block_address: BlockAddress,
    /// Serialized as 64 lower-case hex digits.
    hash: Hash,
    /// The ad's fields after the change; `null` after a delete.
    data: Option<Ad>,
    metadata: RevisionMetadata,
    event: &'static str,
    version: u64,
    tx_time: String,
}

impl From<Revision> for RevisionView {
    fn from(revision: Revision) -> Self {
        let version = revision.version();
        let tx_time = format_rfc3339_millis(&revision.body.metadata.tx_time);
        RevisionView {
            block_address: revision.block_address,
            hash: revision.hash,
            data: revision.body.data,
            metadata: revision.body.metadata,
            event: revision.body.event.as_str(),
            version,
            tx_time,
        }
    }
}
