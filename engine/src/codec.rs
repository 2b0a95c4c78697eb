//! The canonical encoding of revisions and block headers: Amazon Ion binary.
//!
//! # Format version 1 (pinned by golden tests; never change it in place)
//!
//! A **revision** is one Ion binary stream holding one struct, fields in this order:
//!
//! ```text
//! { data: { adId: string, publisherId: string, adTitle: string, adDescription: string,
//!           price: decimal | null.decimal, currency: string, category: string,
//!           tags: [string…] } | null.struct,
//!   metadata: { id: string, publisherId: string, version: int, txId: string,
//!               txTime: timestamp (UTC, milliseconds) },
//!   event: symbol (AdCreated | AdUpdated | AdDeleted) }
//! ```
//!
//! A **block header** is one Ion binary stream holding one struct:
//!
//! ```text
//! { format: 1, sequenceNo: int, txId: string, txTime: timestamp,
//!   previousHash: blob(32), revisionHashes: [blob(32)…],
//!   idempotencyKey: string, requestHash: blob(32),   // only for a create that carried
//!                                                    // an Idempotency-Key
//!   actorSub: string, actorIss: string }             // only when the caller was
//! ```                                                 // authenticated
//!
//! The idempotency key is part of the hashed header, so the idempotency index is derived
//! from the journal like every other index: an exported and re-imported journal still
//! answers a retried create with the ad it created the first time.
//!
//! The actor (the authenticated caller's `sub` and `iss`, see [`crate::actor`]) is part of
//! the hashed header too, so who committed a block is as tamper-evident as what it holds.
//! Both optional parts are absent when unused, which is why headers written before they
//! existed are still format 1 and still hash to what they always did.
//!
//! Hashes are SHA-256 over exactly these bytes. Any change to field order, types or the
//! writer's output is a new format version, because it changes every hash.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use ion_rs::{Element, IonType, Timestamp, v1_0::Binary};
use rust_decimal::Decimal;

mod fast;

use crate::actor::Actor;
use crate::ad::Ad;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::revision::{EventKind, RevisionBody, RevisionMetadata};

/// The canonical format version written by this build.
pub const FORMAT_VERSION: i64 = 1;

/// A block header, the part of a block its hash covers directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader {
    /// Position in the journal, from 0.
    pub sequence_no: u64,
    /// The transaction id.
    pub tx_id: String,
    /// Commit time.
    pub tx_time: DateTime<Utc>,
    /// Hash of the previous block ([`Hash::ZERO`] for the first).
    pub previous_hash: Hash,
    /// Hashes of the block's revisions, in order.
    pub revision_hashes: Vec<Hash>,
    /// The idempotency key of the create this block commits, if it carried one.
    pub idempotency: Option<IdempotencyTag>,
    /// The authenticated caller who committed the block, if there was one.
    pub actor: Option<Actor>,
}

/// The client's idempotency key for a create and the fingerprint of its request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyTag {
    /// The key as the client sent it (scoped to the ad's publisher).
    pub key: String,
    /// SHA-256 fingerprint of the create's content.
    pub request_hash: Hash,
}

fn corrupt(what: impl Into<String>) -> Error {
    Error::Corrupt(what.into())
}

fn ion_err(e: ion_rs::IonError) -> Error {
    corrupt(format!("Ion: {e}"))
}

/// Parses one Ion value from untrusted stored bytes.
///
/// ion-rs 1.2 can panic on some malformed binary input (an unchecked subtraction in its
/// annotation-wrapper parser), and tampered journal bytes are exactly the input a
/// verifier must survive. The parse touches nothing but the borrowed bytes and a value it
/// owns, so a panic leaves no shared state half-updated: catching it is sound, and it is
/// reported as corruption instead of taking the process down.
fn read_element(bytes: &[u8]) -> Result<Element> {
    std::panic::catch_unwind(|| Element::read_one(bytes))
        .map_err(|_| corrupt("Ion decoder rejected malformed bytes"))?
        .map_err(ion_err)
}

fn timestamp(t: &DateTime<Utc>) -> Result<Timestamp> {
    Timestamp::with_ymd(t.year() as u32, t.month(), t.day())
        .with_hms(t.hour(), t.minute(), t.second())
        .with_milliseconds(t.timestamp_subsec_millis())
        .with_offset(0)
        .build()
        .map_err(ion_err)
}

fn from_timestamp(ts: &Timestamp) -> Result<DateTime<Utc>> {
    Utc.with_ymd_and_hms(
        ts.year() as i32,
        ts.month(),
        ts.day(),
        ts.hour(),
        ts.minute(),
        ts.second(),
    )
    .single()
    .map(|t| t + chrono::Duration::milliseconds(i64::from(ts.milliseconds())))
    .ok_or_else(|| corrupt("timestamp out of range"))
}

fn decimal(d: &Decimal) -> ion_rs::Decimal {
    ion_rs::Decimal::new(d.mantissa(), -i64::from(d.scale()))
}

fn from_decimal(d: &ion_rs::Decimal) -> Result<Decimal> {
    let coefficient: i128 = ion_rs::Int::try_from(d.coefficient())
        .ok()
        .and_then(|i| i.as_i128())
        .ok_or_else(|| corrupt("decimal coefficient too large"))?;
    let scale = u32::try_from(-d.exponent()).map_err(|_| corrupt("decimal exponent"))?;
    Decimal::try_from_i128_with_scale(coefficient, scale).map_err(|e| corrupt(e.to_string()))
}

fn string_list(items: &[String]) -> Element {
    let mut list = Element::sequence_builder();
    for item in items {
        list = list.push(Element::from(item.as_str()));
    }
    Element::from(list.build_list())
}

fn ad_element(ad: &Ad) -> Element {
    let price = match &ad.price {
        Some(p) => Element::from(decimal(p)),
        None => Element::null(IonType::Decimal),
    };
    Element::from(
        Element::struct_builder()
            .with_field("adId", ad.ad_id.as_str())
            .with_field("publisherId", ad.publisher_id.as_str())
            .with_field("adTitle", ad.ad_title.as_str())
            .with_field("adDescription", ad.ad_description.as_str())
            .with_field("price", price)
            .with_field("currency", ad.currency.as_str())
            .with_field("category", ad.category.as_str())
            .with_field("tags", string_list(&ad.tags))
            .build(),
    )
}

/// Canonical bytes of a revision.
pub(crate) fn encode_revision(body: &RevisionBody) -> Result<Vec<u8>> {
    let data = match &body.data {
        Some(ad) => ad_element(ad),
        None => Element::null(IonType::Struct),
    };
    let m = &body.metadata;
    let metadata = Element::struct_builder()
        .with_field("id", m.id.as_str())
        .with_field("publisherId", m.publisher_id.as_str())
        .with_field("version", Element::from(m.version as i64))
        .with_field("txId", m.tx_id.as_str())
        .with_field("txTime", timestamp(&m.tx_time)?)
        .build();
    Element::from(
        Element::struct_builder()
            .with_field("data", data)
            .with_field("metadata", metadata)
            .with_field("event", ion_rs::Symbol::from(body.event.as_str()))
            .build(),
    )
    .encode_as(Binary)
    .map_err(ion_err)
}

/// Canonical bytes of a block header.
pub(crate) fn encode_header(header: &BlockHeader) -> Result<Vec<u8>> {
    let mut hashes = Element::sequence_builder();
    for h in &header.revision_hashes {
        hashes = hashes.push(Element::blob(h.as_bytes().as_slice()));
    }
    let mut fields = Element::struct_builder()
        .with_field("format", FORMAT_VERSION)
        .with_field("sequenceNo", header.sequence_no as i64)
        .with_field("txId", header.tx_id.as_str())
        .with_field("txTime", timestamp(&header.tx_time)?)
        .with_field(
            "previousHash",
            Element::blob(header.previous_hash.as_bytes().as_slice()),
        )
        .with_field("revisionHashes", Element::from(hashes.build_list()));
    if let Some(tag) = &header.idempotency {
        fields = fields
            .with_field("idempotencyKey", tag.key.as_str())
            .with_field(
                "requestHash",
                Element::blob(tag.request_hash.as_bytes().as_slice()),
            );
    }
    if let Some(actor) = &header.actor {
        fields = fields
            .with_field("actorSub", actor.sub.as_str())
            .with_field("actorIss", actor.iss.as_str());
    }
    Element::from(fields.build())
        .encode_as(Binary)
        .map_err(ion_err)
}

fn field<'a>(s: &'a ion_rs::Struct, name: &str) -> Result<&'a Element> {
    s.get(name)
        .ok_or_else(|| corrupt(format!("missing field `{name}`")))
}

fn text(s: &ion_rs::Struct, name: &str) -> Result<String> {
    field(s, name)?
        .as_text()
        .map(str::to_string)
        .ok_or_else(|| corrupt(format!("field `{name}` is not text")))
}

fn uint(s: &ion_rs::Struct, name: &str) -> Result<u64> {
    field(s, name)?
        .as_i64()
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| corrupt(format!("field `{name}` is not a non-negative int")))
}

fn hash_of(e: &Element, name: &str) -> Result<Hash> {
    e.as_blob()
        .and_then(Hash::from_slice)
        .ok_or_else(|| corrupt(format!("field `{name}` is not a 32-byte blob")))
}

fn time(s: &ion_rs::Struct, name: &str) -> Result<DateTime<Utc>> {
    let ts = field(s, name)?
        .as_timestamp()
        .ok_or_else(|| corrupt(format!("field `{name}` is not a timestamp")))?;
    from_timestamp(&ts)
}

fn decode_ad(s: &ion_rs::Struct) -> Result<Ad> {
    let price = field(s, "price")?;
    let price = if price.is_null() {
        None
    } else {
        let d = price
            .as_decimal()
            .ok_or_else(|| corrupt("field `price` is not a decimal"))?;
        Some(from_decimal(&d)?)
    };
    let tags = field(s, "tags")?
        .as_list()
        .ok_or_else(|| corrupt("field `tags` is not a list"))?
        .iter()
        .map(|t| {
            t.as_text()
                .map(str::to_string)
                .ok_or_else(|| corrupt("a tag is not text"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Ad {
        ad_id: text(s, "adId")?,
        publisher_id: text(s, "publisherId")?,
        ad_title: text(s, "adTitle")?,
        ad_description: text(s, "adDescription")?,
        price,
        currency: text(s, "currency")?,
        category: text(s, "category")?,
        tags,
    })
}

/// Decodes stored revision bytes.
///
/// Canonical bytes take the fast path (see `fast`); anything else goes to the ion-rs
/// reference decoder, so the result and the errors are the reference's either way.
pub fn decode_revision(bytes: &[u8]) -> Result<RevisionBody> {
    match fast::revision(bytes) {
        Some(body) => Ok(body),
        None => reference_decode_revision(bytes),
    }
}

/// Decodes the stored bytes of a revision of the block whose header is `header`: the
/// revision as readers see it, with the block's actor (recorded once, in the header) in
/// its `metadata.actor`.
pub fn decode_revision_of(bytes: &[u8], header: &BlockHeader) -> Result<RevisionBody> {
    let mut body = decode_revision(bytes)?;
    body.metadata.actor.clone_from(&header.actor);
    Ok(body)
}

/// Decodes stored block header bytes; fast path and reference as for [`decode_revision`].
pub fn decode_header(bytes: &[u8]) -> Result<BlockHeader> {
    match fast::header(bytes) {
        Some(header) => Ok(header),
        None => reference_decode_header(bytes),
    }
}

/// The reference revision decoder: ion-rs reads any Ion, canonical or not.
fn reference_decode_revision(bytes: &[u8]) -> Result<RevisionBody> {
    let element = read_element(bytes)?;
    let s = element
        .as_struct()
        .ok_or_else(|| corrupt("revision is not a struct"))?;
    let data = field(s, "data")?;
    let data = if data.is_null() {
        None
    } else {
        Some(decode_ad(
            data.as_struct()
                .ok_or_else(|| corrupt("field `data` is not a struct"))?,
        )?)
    };
    let m = field(s, "metadata")?
        .as_struct()
        .ok_or_else(|| corrupt("field `metadata` is not a struct"))?;
    let event = field(s, "event")?
        .as_symbol()
        .and_then(|sym| sym.text())
        .and_then(EventKind::parse)
        .ok_or_else(|| corrupt("field `event` is not a known event symbol"))?;
    Ok(RevisionBody {
        data,
        metadata: RevisionMetadata {
            id: text(m, "id")?,
            publisher_id: text(m, "publisherId")?,
            version: uint(m, "version")?,
            tx_id: text(m, "txId")?,
            tx_time: time(m, "txTime")?,
            actor: None,
        },
        event,
    })
}

/// The reference block header decoder (see [`reference_decode_revision`]).
fn reference_decode_header(bytes: &[u8]) -> Result<BlockHeader> {
    let element = read_element(bytes)?;
    let s = element
        .as_struct()
        .ok_or_else(|| corrupt("block header is not a struct"))?;
    let format = field(s, "format")?.as_i64();
    if format != Some(FORMAT_VERSION) {
        return Err(corrupt(format!(
            "block format {format:?} is not supported by this build (it reads format {FORMAT_VERSION})"
        )));
    }
    let revision_hashes = field(s, "revisionHashes")?
        .as_list()
        .ok_or_else(|| corrupt("field `revisionHashes` is not a list"))?
        .iter()
        .map(|e| hash_of(e, "revisionHashes"))
        .collect::<Result<Vec<_>>>()?;
    Ok(BlockHeader {
        sequence_no: uint(s, "sequenceNo")?,
        tx_id: text(s, "txId")?,
        tx_time: time(s, "txTime")?,
        previous_hash: hash_of(field(s, "previousHash")?, "previousHash")?,
        revision_hashes,
        idempotency: match s.get("idempotencyKey") {
            None => None,
            Some(key) => Some(IdempotencyTag {
                key: key
                    .as_text()
                    .ok_or_else(|| corrupt("field `idempotencyKey` is not text"))?
                    .to_string(),
                request_hash: hash_of(field(s, "requestHash")?, "requestHash")?,
            }),
        },
        actor: match s.get("actorSub") {
            None => None,
            Some(_) => Some(Actor {
                sub: text(s, "actorSub")?,
                iss: text(s, "actorIss")?,
            }),
        },
    })
}
