//! The journal's on-disk format: keys and values of its one sled tree.
//!
//! Every record lives in one tree so that an append is one `apply_batch` (atomic, also
//! across a crash). Keys start with a one-byte tag; numbers are big-endian so that sled's
//! byte order is numeric order and range scans come out sorted.
//!
//! | key | value |
//! |---|---|
//! | `V` | format version, `u32` BE (currently [`FORMAT_VERSION`]) |
//! | `T` | last sequence number, `u64` BE (absent: empty journal) |
//! | `B` seq:u64 | block frame bytes |
//! | `H` publisher `00` adId | head: version u64 ‖ sequence u64 ‖ deleted u8 |
//! | `R` publisher `00` adId `00` version:u64 | sequence u64 |
//! | `I` publisher `00` idempotency-key | request hash (32) ‖ sequence u64 ‖ adId (UTF-8) |
//! | `M` level:u8 index:u64 | hash (32) |
//!
//! Publisher ids are `[A-Za-z0-9_.-]` and ad ids are ULIDs, so neither contains `00`: the
//! separator makes keys unambiguous (publisher `a` + ad `bc` never meets publisher `ab` +
//! ad `c`), and the `00` after the ad id keeps one ad's revisions from sharing a prefix
//! with another ad whose id extends it. The client-chosen idempotency key comes last, so
//! it may hold any byte.

use adledger_engine::AdKey;
use adledger_engine::Hash;
use adledger_engine::ports::{AdHead, IdempotencyRecord};

use crate::error::{LocalError, corrupt};

/// The layout described above. Bump it (and keep a reader for the old one) on any change.
pub(super) const FORMAT_VERSION: u32 = 1;

pub(super) const FORMAT_KEY: &[u8] = b"V";
pub(super) const LAST_KEY: &[u8] = b"T";
const BLOCK: u8 = b'B';
const HEAD: u8 = b'H';
const REVISION: u8 = b'R';
const IDEMPOTENCY: u8 = b'I';
const MERKLE: u8 = b'M';
const SEP: u8 = 0;

/// Refuses a key part that would make keys ambiguous.
pub(super) fn check_part(what: &str, part: &str) -> Result<(), LocalError> {
    if part.as_bytes().contains(&SEP) {
        return Err(LocalError::BadBatch(format!(
            "{what} {part:?} contains a NUL byte"
        )));
    }
    Ok(())
}

pub(super) fn block(sequence: u64) -> [u8; 9] {
    let mut key = [BLOCK; 9];
    key[1..].copy_from_slice(&sequence.to_be_bytes());
    key
}

/// The sequence number a block key names, if `key` is a block key.
pub(super) fn block_sequence(key: &[u8]) -> Option<u64> {
    match key {
        [BLOCK, rest @ ..] => rest.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

fn ad_key(tag: u8, key: &AdKey, extra: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.publisher_id.len() + 1 + key.ad_id.len() + extra);
    out.push(tag);
    out.extend_from_slice(key.publisher_id.as_bytes());
    out.push(SEP);
    out.extend_from_slice(key.ad_id.as_bytes());
    out
}

pub(super) fn head(key: &AdKey) -> Vec<u8> {
    ad_key(HEAD, key, 0)
}

/// The prefix every revision ref of one ad shares (and no other ad's does).
pub(super) fn revision_prefix(key: &AdKey) -> Vec<u8> {
    let mut out = ad_key(REVISION, key, 9);
    out.push(SEP);
    out
}

pub(super) fn revision(key: &AdKey, version: u64) -> Vec<u8> {
    let mut out = revision_prefix(key);
    out.extend_from_slice(&version.to_be_bytes());
    out
}

/// The version a revision key under `prefix` names.
pub(super) fn revision_version(prefix: &[u8], key: &[u8]) -> Result<u64, LocalError> {
    key.strip_prefix(prefix)
        .and_then(|rest| <[u8; 8]>::try_from(rest).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| corrupt(format!("malformed revision key {}", hex::encode(key))))
}

pub(super) fn idempotency(publisher_id: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + publisher_id.len() + key.len());
    out.push(IDEMPOTENCY);
    out.extend_from_slice(publisher_id.as_bytes());
    out.push(SEP);
    out.extend_from_slice(key.as_bytes());
    out
}

pub(super) fn merkle(level: u8, index: u64) -> [u8; 10] {
    let mut key = [MERKLE; 10];
    key[1] = level;
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The `(level, index)` a Merkle node key names, if `key` is one.
pub(super) fn merkle_id(key: &[u8]) -> Option<(u8, u64)> {
    match key {
        [MERKLE, level, rest @ ..] => rest
            .try_into()
            .ok()
            .map(|index| (*level, u64::from_be_bytes(index))),
        _ => None,
    }
}

pub(super) fn encode_u64(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

pub(super) fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64, LocalError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(format!("{what}: expected 8 bytes, found {}", bytes.len())))
}

pub(super) fn encode_head(head: &AdHead) -> [u8; 17] {
    let mut out = [0u8; 17];
    out[..8].copy_from_slice(&head.version.to_be_bytes());
    out[8..16].copy_from_slice(&head.sequence.to_be_bytes());
    out[16] = u8::from(head.deleted);
    out
}

pub(super) fn decode_head(bytes: &[u8]) -> Result<AdHead, LocalError> {
    let bad = || corrupt(format!("ad head: malformed value {}", hex::encode(bytes)));
    let bytes: &[u8; 17] = bytes.try_into().map_err(|_| bad())?;
    let deleted = match bytes[16] {
        0 => false,
        1 => true,
        _ => return Err(bad()),
    };
    Ok(AdHead {
        version: decode_u64("ad head version", &bytes[..8])?,
        sequence: decode_u64("ad head sequence", &bytes[8..16])?,
        deleted,
    })
}

pub(super) fn encode_idempotency(record: &IdempotencyRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + record.ad_id.len());
    out.extend_from_slice(record.request_hash.as_bytes());
    out.extend_from_slice(&record.sequence.to_be_bytes());
    out.extend_from_slice(record.ad_id.as_bytes());
    out
}

pub(super) fn decode_idempotency(
    publisher_id: &str,
    key: &str,
    bytes: &[u8],
) -> Result<IdempotencyRecord, LocalError> {
    let bad = || {
        corrupt(format!(
            "idempotency record ({publisher_id:?}, {key:?}): malformed value"
        ))
    };
    if bytes.len() < 40 {
        return Err(bad());
    }
    let (hash, rest) = bytes.split_at(32);
    let (sequence, ad_id) = rest.split_at(8);
    Ok(IdempotencyRecord {
        publisher_id: publisher_id.to_string(),
        key: key.to_string(),
        request_hash: Hash::from_slice(hash).ok_or_else(bad)?,
        ad_id: std::str::from_utf8(ad_id).map_err(|_| bad())?.to_string(),
        sequence: decode_u64("idempotency sequence", sequence)?,
    })
}

pub(super) fn decode_hash(what: &str, bytes: &[u8]) -> Result<Hash, LocalError> {
    Hash::from_slice(bytes)
        .ok_or_else(|| corrupt(format!("{what}: expected 32 bytes, found {}", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ad_keys_are_unambiguous() {
        let a = revision_prefix(&AdKey::new("a", "bc"));
        let b = revision_prefix(&AdKey::new("ab", "c"));
        assert_ne!(a, b);
        // An ad whose id extends another's never falls under the other's prefix.
        let short = revision_prefix(&AdKey::new("p", "01AB"));
        let long = revision(&AdKey::new("p", "01ABC"), 0);
        assert!(!long.starts_with(&short));
    }

    #[test]
    fn block_keys_sort_numerically() {
        assert!(block(255) < block(256));
        assert_eq!(block_sequence(&block(42)), Some(42));
        assert_eq!(block_sequence(&head(&AdKey::new("p", "a"))), None);
    }

    #[test]
    fn values_round_trip() {
        let head = AdHead {
            version: 3,
            sequence: 9,
            deleted: true,
        };
        assert_eq!(decode_head(&encode_head(&head)).unwrap(), head);
        let record = IdempotencyRecord {
            publisher_id: "p".into(),
            key: "k\0x".into(),
            request_hash: Hash::of(b"body"),
            ad_id: "01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            sequence: 7,
        };
        let bytes = encode_idempotency(&record);
        assert_eq!(decode_idempotency("p", "k\0x", &bytes).unwrap(), record);
        assert!(decode_head(&[1, 2, 3]).is_err());
    }
}
