//! The codec's fast path: the Ion binary subset the canonical writer produces, decoded
//! straight from the bytes, because ion-rs's `Element` tree costs ~35 µs per block and
//! every bulk path (verify, rebuild, import, history) decodes every block it reads.
//!
//! It understands exactly what the canonical writer produces: the version marker, one
//! local symbol table, and one struct of strings, ints, decimals, timestamps, symbols,
//! blobs, lists and nested structs. On anything else — another layout, an import in the
//! symbol table, a value it does not expect — it gives up (`None`) and the codec decodes
//! with ion-rs (the reference), so the result and the errors are always the reference's;
//! the tests below compare the two on many values, intact and damaged.

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use smallvec::SmallVec;

use super::{BlockHeader, FORMAT_VERSION, IdempotencyTag};
use crate::actor::Actor;
use crate::ad::Ad;
use crate::hash::Hash;
use crate::revision::{EventKind, RevisionBody, RevisionMetadata};

/// Ion 1.0 system symbols (ids 1..=9); local symbols start at 10.
const SYSTEM_SYMBOLS: usize = 10;
const ION_SYMBOL_TABLE: usize = 3;
const IMPORTS: usize = 6;
const SYMBOLS: usize = 7;

/// One value's type code and body.
#[derive(Clone, Copy)]
struct Value<'a> {
    kind: u8,
    null: bool,
    body: &'a [u8],
}

fn var_uint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for _ in 0..9 {
        let b = *bytes.get(*at)?;
        *at += 1;
        value = (value << 7) | u64::from(b & 0x7F);
        if b & 0x80 != 0 {
            return Some(value);
        }
    }
    None
}

fn var_int(bytes: &[u8], at: &mut usize) -> Option<i64> {
    let first = *bytes.get(*at)?;
    *at += 1;
    let negative = first & 0x40 != 0;
    let mut magnitude = i64::from(first & 0x3F);
    let mut done = first & 0x80 != 0;
    let mut count = 0;
    while !done {
        let b = *bytes.get(*at)?;
        *at += 1;
        magnitude = magnitude.checked_mul(128)? | i64::from(b & 0x7F);
        done = b & 0x80 != 0;
        count += 1;
        if count > 8 {
            return None;
        }
    }
    Some(if negative { -magnitude } else { magnitude })
}

/// The next value at `at`, skipping NOP padding.
fn value<'a>(bytes: &'a [u8], at: &mut usize) -> Option<Value<'a>> {
    loop {
        let descriptor = *bytes.get(*at)?;
        *at += 1;
        let (kind, low) = (descriptor >> 4, descriptor & 0x0F);
        if kind == 0 && low != 0x0F {
            // NOP padding of `low` bytes (or a varuint length).
            let len = if low == 14 {
                var_uint(bytes, at)? as usize
            } else {
                usize::from(low)
            };
            *at = at.checked_add(len)?;
            continue;
        }
        if low == 0x0F {
            return Some(Value {
                kind,
                null: true,
                body: &[],
            });
        }
        let len = match (kind, low) {
            (1, _) => 0, // bool: the value is in `low`
            (13, 1) => var_uint(bytes, at)? as usize,
            (_, 14) => var_uint(bytes, at)? as usize,
            _ => usize::from(low),
        };
        let end = at.checked_add(len)?;
        let body = bytes.get(*at..end)?;
        *at = end;
        return Some(Value {
            kind,
            null: false,
            body,
        });
    }
}

/// A struct's fields, inline: the canonical structs have at most eight, and decoding a
/// block header or revision should not cost an allocation per struct.
type Fields<'a> = SmallVec<[(usize, Value<'a>); 8]>;

/// A list's elements, inline for the short lists of the canonical encoding.
type Elements<'a> = SmallVec<[Value<'a>; 8]>;

/// The fields of a struct body: `(symbol id, value)`.
fn fields<'a>(body: &'a [u8]) -> Option<Fields<'a>> {
    let mut out = Fields::new();
    let mut at = 0;
    while at < body.len() {
        let sid = var_uint(body, &mut at)? as usize;
        let v = value(body, &mut at)?;
        out.push((sid, v));
    }
    Some(out)
}

/// The elements of a list body.
fn elements(body: &[u8]) -> Option<Elements<'_>> {
    let mut out = Elements::new();
    let mut at = 0;
    while at < body.len() {
        out.push(value(body, &mut at)?);
    }
    Some(out)
}

/// A decoded stream: its symbol table and its one top-level struct.
struct Stream<'a> {
    symbols: SmallVec<[&'a str; 16]>,
    fields: Fields<'a>,
}

impl<'a> Stream<'a> {
    fn parse(bytes: &'a [u8]) -> Option<Stream<'a>> {
        let rest = bytes.strip_prefix(&[0xE0, 0x01, 0x00, 0xEA])?;
        let mut at = 0;
        let mut symbols: SmallVec<[&'a str; 16]> = SmallVec::new();
        let mut top = value(rest, &mut at)?;
        if top.kind == 14 {
            // $ion_symbol_table::{ symbols: [...] }
            let mut inner = 0;
            let annotations_len = var_uint(top.body, &mut inner)? as usize;
            let annotations_end = inner.checked_add(annotations_len)?;
            let sid = var_uint(top.body, &mut inner)? as usize;
            if sid != ION_SYMBOL_TABLE || inner != annotations_end {
                return None;
            }
            let table = value(top.body, &mut inner)?;
            if table.kind != 13 || table.null || inner != top.body.len() {
                return None;
            }
            for (sid, v) in fields(table.body)? {
                match sid {
                    SYMBOLS => {
                        for s in elements(v.body)? {
                            if s.kind != 8 || s.null {
                                return None;
                            }
                            symbols.push(std::str::from_utf8(s.body).ok()?);
                        }
                    }
                    // `imports: $ion_symbol_table` appends to the current table, which at
                    // the start of a stream is the system table: nothing to import.
                    IMPORTS if v.kind == 7 && uint(Value { kind: 2, ..v }) == Some(3) => {}
                    IMPORTS => return None,
                    // Other system fields (`name`, `max_id`, …) change nothing here.
                    _ if sid < SYSTEM_SYMBOLS => {}
                    // A field name no table defines yet is an error to the reference.
                    _ => return None,
                }
            }
            top = value(rest, &mut at)?;
        }
        if top.kind != 13 || top.null || at != rest.len() {
            return None;
        }
        Some(Stream {
            fields: fields(top.body)?,
            symbols,
        })
    }

    fn name(&self, sid: usize) -> Option<&'a str> {
        if sid < SYSTEM_SYMBOLS {
            // The canonical writer uses system symbols for names they cover (`version`).
            return [
                None,
                Some("$ion"),
                Some("$ion_1_0"),
                Some("$ion_symbol_table"),
                Some("name"),
                Some("version"),
                Some("imports"),
                Some("symbols"),
                Some("max_id"),
                Some("$ion_shared_symbol_table"),
            ][sid];
        }
        self.symbols.get(sid - SYSTEM_SYMBOLS).copied()
    }

    fn get(&self, fields: &[(usize, Value<'a>)], name: &str) -> Option<Value<'a>> {
        let mut found = None;
        for (sid, v) in fields {
            if self.name(*sid) == Some(name) {
                if found.is_some() {
                    return None; // a repeated field: leave it to the reference
                }
                found = Some(*v);
            }
        }
        found
    }

    fn text(&self, fields: &[(usize, Value<'a>)], name: &str) -> Option<String> {
        string(self.get(fields, name)?)
    }
}

fn uint(v: Value<'_>) -> Option<u64> {
    if v.kind != 2 || v.null || v.body.len() > 8 {
        return None;
    }
    Some(
        v.body
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
    )
}

fn blob_hash(v: Value<'_>) -> Option<Hash> {
    (v.kind == 10 && !v.null).then(|| Hash::from_slice(v.body))?
}

/// A signed-magnitude Int of `bytes` (empty: 0).
fn signed_int(bytes: &[u8]) -> Option<i128> {
    if bytes.len() > 15 {
        return None;
    }
    let Some((&first, rest)) = bytes.split_first() else {
        return Some(0);
    };
    let mut magnitude = i128::from(first & 0x7F);
    for b in rest {
        magnitude = (magnitude << 8) | i128::from(*b);
    }
    Some(if first & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    })
}

fn decimal(v: Value<'_>) -> Option<Decimal> {
    if v.kind != 5 || v.null {
        return None;
    }
    if v.body.is_empty() {
        return Some(Decimal::ZERO);
    }
    let mut at = 0;
    let exponent = var_int(v.body, &mut at)?;
    let coefficient = signed_int(&v.body[at..])?;
    let scale = u32::try_from(-exponent).ok()?;
    Decimal::try_from_i128_with_scale(coefficient, scale).ok()
}

/// A UTC timestamp with second or millisecond precision, as the codec writes it.
fn timestamp(v: Value<'_>) -> Option<DateTime<Utc>> {
    if v.kind != 6 || v.null {
        return None;
    }
    let b = v.body;
    let mut at = 0;
    let offset = var_int(b, &mut at)?;
    if offset != 0 {
        return None;
    }
    let mut next = || -> Option<u32> { u32::try_from(var_uint(b, &mut at)?).ok() };
    let (year, month, day, hour, minute, second) =
        (next()?, next()?, next()?, next()?, next()?, next()?);
    if !(1..=9999).contains(&year) {
        return None; // Ion's range: the reference refuses other years
    }
    let mut millis = 0i64;
    if at < b.len() {
        let exponent = var_int(b, &mut at)?;
        let coefficient = signed_int(&b[at..])?;
        millis = match exponent {
            -3 => i64::try_from(coefficient).ok()?,
            _ => return None,
        };
        if !(0..1000).contains(&millis) {
            return None;
        }
    }
    Utc.with_ymd_and_hms(i32::try_from(year).ok()?, month, day, hour, minute, second)
        .single()
        .map(|t| t + chrono::Duration::milliseconds(millis))
}

fn decode_ad<'a>(stream: &Stream<'a>, fields: &[(usize, Value<'a>)]) -> Option<Ad> {
    let price = stream.get(fields, "price")?;
    let price = if price.null && price.kind == 5 {
        None
    } else {
        Some(decimal(price)?)
    };
    let tags = stream.get(fields, "tags")?;
    if tags.kind != 11 || tags.null {
        return None;
    }
    let tags = elements(tags.body)?
        .into_iter()
        .map(|t| {
            (t.kind == 8 && !t.null)
                .then(|| std::str::from_utf8(t.body).ok().map(str::to_string))?
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Ad {
        ad_id: stream.text(fields, "adId")?,
        publisher_id: stream.text(fields, "publisherId")?,
        ad_title: stream.text(fields, "adTitle")?,
        ad_description: stream.text(fields, "adDescription")?,
        price,
        currency: stream.text(fields, "currency")?,
        category: stream.text(fields, "category")?,
        tags,
    })
}

/// A revision's body from canonical bytes, or `None` to let the reference decide.
pub(super) fn revision(bytes: &[u8]) -> Option<RevisionBody> {
    let stream = Stream::parse(bytes)?;
    let top = &stream.fields;
    if top.len() != 3 {
        return None;
    }
    let data = stream.get(top, "data")?;
    let data = if data.null && data.kind == 13 {
        None
    } else if data.kind == 13 {
        Some(decode_ad(&stream, &fields(data.body)?)?)
    } else {
        return None;
    };
    let metadata = stream.get(top, "metadata")?;
    if metadata.kind != 13 || metadata.null {
        return None;
    }
    let m = fields(metadata.body)?;
    let event = stream.get(top, "event")?;
    if event.kind != 7 || event.null {
        return None;
    }
    let event = EventKind::parse(stream.name(uint(Value { kind: 2, ..event })? as usize)?)?;
    Some(RevisionBody {
        data,
        metadata: RevisionMetadata {
            id: stream.text(&m, "id")?,
            publisher_id: stream.text(&m, "publisherId")?,
            version: uint(stream.get(&m, "version")?)?,
            tx_id: stream.text(&m, "txId")?,
            tx_time: timestamp(stream.get(&m, "txTime")?)?,
            actor: None,
        },
        event,
    })
}

/// A block header from canonical bytes, or `None` to let the reference decide.
///
/// One pass over the fields puts each in its slot (verification decodes a header per
/// block, so looking every field up by name would dominate); a field it does not know,
/// or one that repeats, leaves the header to the codec.
pub(super) fn header(bytes: &[u8]) -> Option<BlockHeader> {
    const FORMAT: usize = 0;
    const SEQUENCE_NO: usize = 1;
    const TX_ID: usize = 2;
    const TX_TIME: usize = 3;
    const PREVIOUS_HASH: usize = 4;
    const REVISION_HASHES: usize = 5;
    const IDEMPOTENCY_KEY: usize = 6;
    const REQUEST_HASH: usize = 7;
    const ACTOR_SUB: usize = 8;
    const ACTOR_ISS: usize = 9;
    let stream = Stream::parse(bytes)?;
    let mut slots: [Option<Value<'_>>; 10] = [None; 10];
    for (sid, value) in &stream.fields {
        let slot = match stream.name(*sid)? {
            "format" => FORMAT,
            "sequenceNo" => SEQUENCE_NO,
            "txId" => TX_ID,
            "txTime" => TX_TIME,
            "previousHash" => PREVIOUS_HASH,
            "revisionHashes" => REVISION_HASHES,
            "idempotencyKey" => IDEMPOTENCY_KEY,
            "requestHash" => REQUEST_HASH,
            "actorSub" => ACTOR_SUB,
            "actorIss" => ACTOR_ISS,
            _ => return None,
        };
        if slots[slot].replace(*value).is_some() {
            return None;
        }
    }
    if uint(slots[FORMAT]?)? != FORMAT_VERSION as u64 {
        return None;
    }
    let hashes = slots[REVISION_HASHES]?;
    if hashes.kind != 11 || hashes.null {
        return None;
    }
    let revision_hashes = elements(hashes.body)?
        .into_iter()
        .map(blob_hash)
        .collect::<Option<Vec<_>>>()?;
    let idempotency = match (slots[IDEMPOTENCY_KEY], slots[REQUEST_HASH]) {
        (None, None) => None,
        (Some(key), Some(request_hash)) => Some(IdempotencyTag {
            key: string(key)?,
            request_hash: blob_hash(request_hash)?,
        }),
        _ => return None,
    };
    let actor = match (slots[ACTOR_SUB], slots[ACTOR_ISS]) {
        (None, None) => None,
        (Some(sub), Some(iss)) => Some(Actor {
            sub: string(sub)?,
            iss: string(iss)?,
        }),
        _ => return None,
    };
    Some(BlockHeader {
        sequence_no: uint(slots[SEQUENCE_NO]?)?,
        tx_id: string(slots[TX_ID]?)?,
        tx_time: timestamp(slots[TX_TIME]?)?,
        previous_hash: blob_hash(slots[PREVIOUS_HASH]?)?,
        revision_hashes,
        idempotency,
        actor,
    })
}

/// A non-null string's text.
fn string(v: Value<'_>) -> Option<String> {
    (v.kind == 8 && !v.null).then(|| std::str::from_utf8(v.body).ok().map(str::to_string))?
}

#[cfg(test)]
mod tests {
    use super::super::{
        decode_header, decode_revision, reference_decode_header, reference_decode_revision,
    };
    use super::*;
    use crate::ad::AdDraft;
    use crate::block::{self, Frame};

    fn sample_bodies() -> Vec<RevisionBody> {
        let base = Utc
            .with_ymd_and_hms(2024, 2, 29, 23, 59, 59)
            .single()
            .expect("time");
        let mut out = Vec::new();
        let prices = [
            None,
            Some("0"),
            Some("19.99"),
            Some("120.50"),
            Some("1000000000.123456789"),
            Some("7"),
        ];
        for (i, price) in prices.iter().enumerate() {
            let draft = AdDraft {
                ad_title: format!("Titre numéro {i} — Café ☕ {}", "x".repeat(i * 7)),
                ad_description: "d".repeat(i * 300),
                price: price.map(|p| p.parse().expect("decimal")),
                currency: if price.is_some() {
                    "EUR".into()
                } else {
                    String::new()
                },
                category: if i % 2 == 0 {
                    "bikes".into()
                } else {
                    String::new()
                },
                tags: (0..i).map(|t| format!("tag{t}")).collect(),
            };
            let ad = draft.into_ad(&format!("pub-{i}"), "01ARZ3NDEKTSV4RRFFQ69G5FAV");
            for (version, event, data) in [
                (0, EventKind::AdCreated, Some(ad.clone())),
                (300, EventKind::AdUpdated, Some(ad.clone())),
                (70_000, EventKind::AdDeleted, None),
            ] {
                out.push(RevisionBody {
                    data,
                    metadata: RevisionMetadata {
                        id: ad.ad_id.clone(),
                        publisher_id: ad.publisher_id.clone(),
                        version,
                        tx_id: format!("01ARZ3NDEKTSV4RRFFQ69G5F{i:02}"),
                        tx_time: base + chrono::Duration::milliseconds(i as i64 * 137),
                        actor: None,
                    },
                    event,
                });
            }
        }
        out
    }

    #[test]
    fn fast_revisions_equal_the_reference() {
        for body in sample_bodies() {
            let bytes = super::super::encode_revision(&body).expect("encode");
            let fast = revision(&bytes).expect("the fast path takes canonical bytes");
            assert_eq!(fast, reference_decode_revision(&bytes).expect("reference"));
            assert_eq!(fast, body);
        }
    }

    #[test]
    fn fast_blocks_equal_the_reference() {
        let bodies = sample_bodies();
        let mut previous = Hash::ZERO;
        for (i, chunk) in bodies.chunks(3).enumerate() {
            let tag = (i % 2 == 0).then(|| IdempotencyTag {
                key: format!("key-{i}"),
                request_hash: Hash([i as u8; 32]),
            });
            let time = chunk[0].metadata.tx_time;
            let actor = (i % 3 != 0).then(|| Actor {
                sub: format!("user-{i} ✓"),
                iss: "https://issuer.example/pool".into(),
            });
            let (sealed, encoded) = block::seal_with(
                i as u64 * 1000,
                "tx",
                time,
                previous,
                chunk.to_vec(),
                tag.clone(),
                actor.clone(),
            )
            .expect("seal");
            previous = sealed.hash;
            let frame = Frame::parse(&encoded.bytes).expect("frame");
            let fast_header = header(frame.header).expect("fast header");
            assert_eq!(
                fast_header,
                reference_decode_header(frame.header).expect("reference")
            );
            assert_eq!(
                fast_header.idempotency, tag,
                "the idempotency key is written into the hashed header and read back"
            );
            assert_eq!(
                fast_header.actor, actor,
                "the actor is written into the hashed header and read back"
            );
            for part in &frame.revisions {
                assert_eq!(
                    revision(part).expect("fast revision"),
                    reference_decode_revision(part).expect("reference")
                );
            }
            assert_eq!(block::open(&encoded).expect("open"), sealed);
        }
    }

    /// Damaged bytes decode to the reference's result (or fail with its error) through
    /// the public decoders, whichever path takes them.
    #[test]
    fn damaged_parts_decode_like_the_reference() {
        let bodies = sample_bodies();
        let (_, encoded) = block::seal(
            5,
            "tx",
            bodies[0].metadata.tx_time,
            Hash::ZERO,
            bodies[..3].to_vec(),
        )
        .expect("seal");
        let mut compared = 0;
        for at in 0..encoded.bytes.len() {
            let mut damaged = encoded.clone();
            damaged.bytes[at] ^= 0x5A;
            let Ok(frame) = Frame::parse(&damaged.bytes) else {
                continue;
            };
            assert_eq!(
                decode_header(frame.header).map_err(|e| e.to_string()),
                reference_decode_header(frame.header).map_err(|e| e.to_string()),
                "header, byte {at}"
            );
            for part in &frame.revisions {
                assert_eq!(
                    decode_revision(part).map_err(|e| e.to_string()),
                    reference_decode_revision(part).map_err(|e| e.to_string()),
                    "revision, byte {at}"
                );
            }
            compared += 1;
        }
        assert!(
            compared > encoded.bytes.len() / 2,
            "most damage leaves the frame intact"
        );
    }
}
