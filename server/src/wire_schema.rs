//! The schemas of the wire format of docs/HTTP.md, for the OpenAPI document
//! ([`crate::openapi`]) and the handlers' `#[utoipa::path]` annotations.
//!
//! They are separate from the types that produce the wire format ([`crate::views`], the
//! engine's structs): those hold decimals, times and hashes that serialize as numbers and
//! strings, and describing them by hand keeps utoipa's `chrono`/`decimal` features out of
//! the build. The two are kept honest by the fuzzing run (`scripts/fuzz-api.sh`), which
//! checks every response the server gives against these schemas. A module of its own, so
//! the routes can name these types without depending on the document, which names them.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

// Fields are never read: these types exist only to be described.

/// An RFC 9457 problem document: the body of every error.
#[derive(ToSchema, Serialize)]
#[allow(dead_code, reason = "described, never built")]
pub struct Problem {
    /// A relative URI naming the kind of problem (`/problems/invalid-field`).
    #[serde(rename = "type")]
    kind: String,
    /// A short, fixed summary of the kind.
    title: String,
    /// The HTTP status.
    #[schema(minimum = 100, maximum = 599)]
    status: u16,
    /// What was wrong and how to fix it.
    detail: String,
    /// The request path.
    #[schema(required = false)]
    instance: String,
    /// The request id (`X-Request-Id`), to find the request's log lines.
    #[serde(rename = "requestId")]
    #[schema(required = false)]
    request_id: String,
    /// The offending field, query parameter or header.
    #[schema(required = false)]
    field: String,
}

/// An ad, with its version and the commit time of that version.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "described, never built")]
pub struct Ad {
    /// Assigned by the server: a 26-character ULID.
    #[schema(pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    ad_id: String,
    /// From the URL.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,128}$")]
    publisher_id: String,
    /// 1–200 characters.
    ad_title: String,
    /// At most 10,000 characters.
    ad_description: String,
    /// An exact decimal ≥ 0, or `null`: no price.
    #[schema(value_type = Option<f64>, minimum = 0)]
    price: (),
    /// An ISO 4217 code, or `""`.
    currency: String,
    /// At most 100 characters.
    category: String,
    /// Distinct tags, in the order given.
    tags: Vec<String>,
    /// Counts from 0 per ad.
    version: u64,
    /// The commit time of this version (RFC 3339, milliseconds, UTC).
    #[schema(format = DateTime)]
    updated_at: String,
}

/// An ad's fields as a revision stores them.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "described, never built")]
pub struct AdData {
    /// A 26-character ULID.
    ad_id: String,
    /// The owning publisher.
    publisher_id: String,
    /// 1–200 characters.
    ad_title: String,
    /// At most 10,000 characters.
    ad_description: String,
    /// An exact decimal ≥ 0, or `null`.
    #[schema(value_type = Option<f64>, minimum = 0)]
    price: (),
    /// An ISO 4217 code, or `""`.
    currency: String,
    /// At most 100 characters.
    category: String,
    /// Distinct tags.
    tags: Vec<String>,
}

/// The body of a create: `adTitle` is required; unknown fields are refused (422).
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code, reason = "described, never built")]
pub struct NewAd {
    /// Trimmed; 1–200 characters; no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    ad_title: String,
    /// At most 10,000 characters.
    #[schema(max_length = 10000, required = false)]
    ad_description: Option<String>,
    /// A number (or numeric string) ≥ 0, stored exactly; `null`: no price.
    #[schema(schema_with = price_input, required = false)]
    price: (),
    /// An ISO 4217 code (`EUR`) or `""`.
    #[schema(pattern = "^([A-Z]{3})?$", required = false)]
    currency: Option<String>,
    /// At most 100 characters.
    #[schema(max_length = 100, required = false)]
    category: Option<String>,
    /// At most 50 distinct tags of 1–50 characters; duplicates are dropped.
    #[schema(max_items = 50, required = false)]
    tags: Option<Vec<String>>,
}

/// The body of an update: absent fields stay, `null` clears (not `adTitle`); unknown
/// fields are refused (422).
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code, reason = "described, never built")]
pub struct AdChanges {
    /// Trimmed; 1–200 characters; cannot be cleared.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$",
        required = false
    )]
    ad_title: String,
    /// At most 10,000 characters.
    #[schema(max_length = 10000, required = false)]
    ad_description: Option<String>,
    /// A number (or numeric string) ≥ 0; `null` clears.
    #[schema(schema_with = price_input, required = false)]
    price: (),
    /// An ISO 4217 code or `""`.
    #[schema(pattern = "^([A-Z]{3})?$", required = false)]
    currency: Option<String>,
    /// At most 100 characters.
    #[schema(max_length = 100, required = false)]
    category: Option<String>,
    /// At most 50 distinct tags of 1–50 characters.
    #[schema(max_items = 50, required = false)]
    tags: Option<Vec<String>>,
}

/// A price in a request: a JSON number, a numeric string, or `null`.
fn price_input() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9]+(\\.[0-9]+)?$")),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

/// `GET …/ad/{adId}`: the ad, or with `versions=true` its revisions.
#[derive(ToSchema, Serialize)]
#[serde(untagged)]
#[allow(dead_code, reason = "described, never built")]
pub enum AdOrRevisions {
    /// The ad (current, or as of a time).
    Ad(Ad),
    /// Every revision, oldest first.
    Revisions(Vec<Revision>),
}

/// Where a revision is stored.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "described, never built")]
pub struct BlockAddress {
    /// Always `adledger-0`.
    strand_id: String,
    /// The journal block.
    sequence_no: u64,
}

/// Who changed an ad, and when.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "described, never built")]
pub struct RevisionMetadata {
    /// The ad id.
    id: String,
    /// The publisher.
    publisher_id: String,
    /// The ad's version after the change.
    version: u64,
    /// The transaction (a ULID).
    tx_id: String,
    /// The commit time.
    #[schema(format = DateTime)]
    tx_time: String,
    /// The authenticated caller who made the change (`--auth hs256` or `jwks`); absent
    /// when the server ran without identity. Recorded in the hashed block header.
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<Actor>,
}

/// The caller recorded with a change: the token's subject and issuer.
#[derive(ToSchema, Serialize)]
#[allow(dead_code, reason = "described, never built")]
pub struct Actor {
    /// The token's `sub`.
    #[schema(min_length = 1, max_length = 255)]
    sub: String,
    /// The token's `iss`.
    #[schema(min_length = 1, max_length = 512)]
    iss: String,
}

/// The kind of change.
#[derive(ToSchema, Serialize)]
#[allow(dead_code, reason = "described, never built")]
pub enum Event {
    /// The ad was created.
    AdCreated,
    /// The ad was changed.
    AdUpdated,
    /// The ad was deleted.
    AdDeleted,
}

/// One revision of an ad (QLDB-shaped), as `?versions=true` lists it.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "described, never built")]
pub struct Revision {
    /// Where the revision is stored.
    block_address: BlockAddress,
    /// SHA-256 of the revision's canonical bytes, 64 hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    hash: String,
    /// The ad after the change; `null` after a delete.
    data: Option<AdData>,
    /// Who and when.
    metadata: RevisionMetadata,
    /// The kind of change.
    event: Event,
    /// The ad's version after the change.
    version: u64,
    /// The commit time.
    #[schema(format = DateTime)]
    tx_time: String,
}

/// A page of `GET /search`.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "described, never built")]
pub struct SearchResults {
    /// How many ads match in all.
    total: u64,
    /// This page.
    items: Vec<Ad>,
    /// The `cursor` of the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// A digest: the RFC 9162 Merkle tree head over blocks `0..=sequence`.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "described, never built")]
pub struct Digest {
    /// The last block covered.
    sequence: u64,
    /// The tree head, 64 hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    root: String,
    /// The hash of block `sequence`, 64 hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    tip_hash: String,
}

/// The block that holds a proved revision.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "described, never built")]
pub struct Block {
    /// The block's sequence number (the proof's leaf index).
    sequence_no: u64,
    /// SHA-256 of `headerBytes`.
    hash: String,
    /// The transaction id.
    tx_id: String,
    /// The commit time.
    #[schema(format = DateTime)]
    tx_time: String,
    /// The previous block's hash.
    previous_hash: String,
    /// The hashes of the block's revisions.
    revision_hashes: Vec<String>,
    /// The proved revision's position among them.
    revision_index: u64,
    /// The header's stored canonical Ion bytes, hex.
    header_bytes: String,
    /// The revision's stored canonical Ion bytes, hex.
    revision_bytes: String,
}

/// RFC 9162 `inclusion_proof`.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "described, never built")]
pub struct InclusionProof {
    /// The block's leaf.
    leaf_index: u64,
    /// Leaves in the tree: the digest's `sequence + 1`.
    tree_size: u64,
    /// Sibling subtree hashes from the leaf up, hex.
    path: Vec<String>,
}

/// `GET …/proof`: everything needed to check a revision offline.
#[derive(ToSchema, Serialize)]
#[allow(dead_code, reason = "described, never built")]
pub struct ProofBundle {
    /// The proved revision.
    revision: Revision,
    /// Its block.
    block: Block,
    /// The digest the proof leads to.
    digest: Digest,
    /// The inclusion proof of the block under the digest.
    proof: InclusionProof,
}

/// RFC 9162 `consistency_proof`.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "described, never built")]
pub struct ConsistencyProof {
    /// Leaves of the earlier tree.
    first_size: u64,
    /// Leaves of the later tree.
    second_size: u64,
    /// The proof's hashes, hex.
    path: Vec<String>,
}

/// `GET /ledger/consistency`.
#[derive(ToSchema, Serialize)]
#[allow(dead_code, reason = "described, never built")]
pub struct Consistency {
    /// The earlier digest.
    from: Digest,
    /// The later digest.
    to: Digest,
    /// The proof between their trees.
    proof: ConsistencyProof,
}

/// Committed blocks.
#[derive(ToSchema, Serialize)]
#[allow(dead_code, reason = "described, never built")]
pub struct JournalHealth {
    /// Blocks this process has committed or seen.
    blocks: u64,
}

/// Blocks each read model has applied.
#[derive(ToSchema, Serialize)]
#[allow(dead_code, reason = "described, never built")]
pub struct ProjectionHealth {
    /// The state store's checkpoint.
    state: u64,
    /// The search index's checkpoint.
    search: u64,
}

/// Who projects into a read model.
#[derive(ToSchema, Serialize)]
#[allow(dead_code, reason = "described, never built")]
pub struct ProjectorHealth {
    /// `exclusive`, `holder` or `standby`.
    #[schema(pattern = "^(exclusive|holder|standby)$")]
    role: String,
    /// This process's lease id (absent when exclusive).
    #[schema(required = false)]
    owner: String,
    /// The lease holder's id, when known.
    #[schema(required = false)]
    holder: String,
}

/// Both read models' projectors.
#[derive(ToSchema, Serialize)]
#[allow(dead_code, reason = "described, never built")]
pub struct ProjectorsHealth {
    /// The state store's.
    state: ProjectorHealth,
    /// The search index's.
    search: ProjectorHealth,
}

/// `GET /healthz`.
#[derive(ToSchema, Serialize)]
#[allow(dead_code, reason = "described, never built")]
pub struct Health {
    /// Always `ok`.
    status: String,
    /// The journal.
    journal: JournalHealth,
    /// The read models' checkpoints.
    projections: ProjectionHealth,
    /// Who projects into each read model.
    projectors: ProjectorsHealth,
    /// AWS backend only: DynamoDB requests of this process by operation.
    #[serde(rename = "dynamodbRequests")]
    #[schema(required = false)]
    dynamodb_requests: std::collections::BTreeMap<String, u64>,
    /// AWS backend only: capacity units this process's requests consumed, by operation
    /// (`{"read": RCU, "write": WCU}`), as DynamoDB reported them.
    #[serde(rename = "dynamodbCapacity")]
    #[schema(required = false)]
    dynamodb_capacity: std::collections::BTreeMap<String, CapacityUnits>,
    /// AWS backend only: the journal tip and state checkpoint this process last learned,
    /// with their age (`/healthz` sends no DynamoDB request for them).
    #[schema(required = false)]
    observed: ObservedHealth,
}

/// What a process last learned from the shared stores.
/// Capacity units consumed by one kind of DynamoDB operation.
#[derive(ToSchema, Serialize)]
#[allow(dead_code, reason = "described, never built")]
pub struct CapacityUnits {
    /// Read capacity units (on demand: read request units).
    read: f64,
    /// Write capacity units (on demand: write request units).
    write: f64,
}

#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "described, never built")]
pub struct ObservedHealth {
    /// The journal's next sequence, as last read or written.
    #[schema(required = false)]
    journal_tip: Observed,
    /// The state store's checkpoint, as last read or written.
    #[schema(required = false)]
    state_checkpoint: Observed,
}

/// A value and how long ago the process learned it.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "described, never built")]
pub struct Observed {
    /// The value.
    value: u64,
    /// Milliseconds since the process learned it.
    age_ms: u64,
}

/// `GET /readyz`.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "described, never built")]
pub struct Readiness {
    /// `ready`, or `unavailable` (with `error`).
    #[schema(pattern = "^(ready|unavailable)$")]
    status: String,
    /// The journal's next sequence, as read by the check.
    #[schema(required = false)]
    journal_tip: u64,
    /// The state store's checkpoint, as read by the check.
    #[schema(required = false)]
    state_checkpoint: u64,
    /// Which store did not answer (details are in the server's log).
    #[schema(required = false)]
    error: String,
    /// Milliseconds since the check (answers are reused for a second).
    age_ms: u64,
}

/// The body of `POST /admin/replay` (empty: every ad).
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code, reason = "described, never built")]
pub struct ReplayRequest {
    /// Replay only this ad.
    #[schema(required = false)]
    ad_id: Option<String>,
    /// Its publisher (found from the journal when absent).
    #[schema(required = false)]
    publisher_id: Option<String>,
    /// Only revisions committed at or after this time.
    #[schema(format = DateTime, required = false)]
    from: Option<String>,
    /// Only revisions committed at or before this time.
    #[schema(format = DateTime, required = false)]
    to: Option<String>,
}

/// The body of `POST /admin/rebuild`.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "described, never built")]
pub struct RebuildRequest {
    /// Must be true (the default) on a serving process.
    #[schema(required = false)]
    shadow: Option<bool>,
    /// Must be false (the default) on a serving process.
    #[schema(required = false)]
    swap: Option<bool>,
}

/// One event of the ledger feed: CloudEvents 1.0, structured JSON mode.
#[derive(ToSchema, Serialize)]
#[allow(dead_code, reason = "described, never built")]
pub struct FeedEvent {
    /// Always `1.0`.
    specversion: String,
    /// `{block sequence, 20 digits}-{index in the block, 4 digits}`: unique, stable,
    /// sortable as a string.
    #[schema(pattern = "^[0-9]{20}-[0-9]{4}$")]
    id: String,
    /// `urn:adledger:` and the hash of the ledger's first block.
    source: String,
    /// `adledger.ad.created`, `adledger.ad.updated`, `adledger.ad.deleted` or
    /// `adledger.ledger.digest`.
    #[serde(rename = "type")]
    kind: String,
    /// `publisher/{publisherId}/ad/{adId}`; absent on digest events.
    #[schema(required = false)]
    subject: String,
    /// The block's txTime.
    time: String,
    /// Always `application/json`.
    datacontenttype: String,
    /// Ad events: the revision as `?versions=true` shows it. Digest events:
    /// `{digest, every, frontier, consistency}`.
    #[schema(value_type = Object)]
    data: (),
    /// The block's sequence, in decimal.
    blocksequence: String,
    /// The block's hash.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    blockhash: String,
    /// The previous block's hash.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    prevblockhash: String,
    /// Ad events: the block header's stored bytes, hex.
    #[schema(required = false)]
    blockheader: String,
    /// Ad events: the revision's stored bytes, hex.
    #[schema(required = false)]
    revisionbytes: String,
}

/// One Server-Sent Event of `GET /ledger/events/stream`, as an SSE client parses it:
/// `data` is a CloudEvent serialized as JSON (see [`FeedEvent`]), or for `event: overflow`
/// a sentence saying to resume by pull.
#[derive(ToSchema, Serialize)]
#[allow(dead_code, reason = "described, never built")]
pub struct StreamEvent {
    /// The event id (`{sequence:020}-{index:04}`); absent on `overflow`.
    id: Option<String>,
    /// `message` (the default) or `overflow`.
    event: Option<String>,
    /// The CloudEvent, as JSON text.
    data: String,
    /// A reconnection delay, in milliseconds, when the server sends one.
    retry: Option<u64>,
}
