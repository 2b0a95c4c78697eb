//! Pins canonical format version 1: the bytes and hashes of a fixed block must never
//! change, because every stored journal and every saved digest depends on them.
//!
//! If this test fails, the encoding changed. Do not update the expected values: add a new
//! format version instead, and keep reading version 1.

use adledger_engine::ad::{Ad, AdDraft};
use adledger_engine::block::{self, EncodedBlock};
use adledger_engine::hash::Hash;
use adledger_engine::revision::{EventKind, RevisionBody, RevisionMetadata};
use chrono::{TimeZone, Utc};

fn fixed_ad() -> Ad {
    AdDraft {
        ad_title: "awesome title".into(),
        ad_description: "awesome description — ünïcødé".into(),
        price: Some("19.99".parse().expect("decimal")),
        currency: "EUR".into(),
        category: "awesome category".into(),
        tags: vec!["awesome".into(), "category".into()],
    }
    .into_ad("acme", "01DXF6DT000000000000000000")
}

fn fixed_block() -> (adledger_engine::block::Block, EncodedBlock) {
    let t = Utc
        .with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .single()
        .expect("time")
        + chrono::Duration::milliseconds(7);
    let created = RevisionBody {
        data: Some(fixed_ad()),
        metadata: RevisionMetadata {
            id: "01DXF6DT000000000000000000".into(),
            publisher_id: "acme".into(),
            version: 0,
            tx_id: "01DXF6DT000000000000000001".into(),
            tx_time: t,
            actor: None,
        },
        event: EventKind::AdCreated,
    };
    let deleted = RevisionBody {
        data: None,
        metadata: RevisionMetadata {
            version: 1,
            ..created.metadata.clone()
        },
        event: EventKind::AdDeleted,
    };
    block::seal(
        41,
        "01DXF6DT000000000000000001",
        t,
        Hash([0xab; 32]),
        vec![created, deleted],
    )
    .expect("seal")
}

const GOLDEN_BYTES_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/encoding-v1-block.hex"
);

#[test]
fn format_v1_block_bytes_and_hash_are_pinned() {
    let (block, encoded) = fixed_block();
    let hex_bytes = hex::encode(&encoded.bytes);
    let golden = std::fs::read_to_string(GOLDEN_BYTES_FILE).unwrap_or_default();
    if golden.trim().is_empty() {
        std::fs::write(GOLDEN_BYTES_FILE, format!("{hex_bytes}\n")).expect("write golden");
        panic!("wrote {GOLDEN_BYTES_FILE}; commit it and rerun");
    }
    assert_eq!(
        hex_bytes,
        golden.trim(),
        "canonical encoding v1 changed: add a new format version instead"
    );
    assert_eq!(
        block.hash,
        Hash::of(block::Frame::parse(&encoded.bytes).expect("frame").header)
    );
    assert_eq!(block.hash.to_hex(), EXPECTED_BLOCK_HASH);
}

const EXPECTED_BLOCK_HASH: &str =
    "3b7f4c094f0302a26c8eb6564c49670cdb8e3630a94d25e5f70827ca6e0ab052";

#[test]
fn stored_bytes_decode_to_the_same_block() {
    let (block, encoded) = fixed_block();
    let reopened = block::open(&encoded).expect("open");
    assert_eq!(reopened, block);
    assert_eq!(
        reopened.revisions[0]
            .body
            .data
            .as_ref()
            .and_then(|a| a.price)
            .map(|p| p.to_string()),
        Some("19.99".to_string())
    );
}

#[test]
fn a_flipped_byte_anywhere_is_detected() {
    let (_, encoded) = fixed_block();
    for i in 0..encoded.bytes.len() {
        let mut tampered = encoded.clone();
        tampered.bytes[i] ^= 0x01;
        let reopened = block::open(&tampered);
        let same =
            matches!(&reopened, Ok(b) if b.hash == block::open(&encoded).expect("open").hash);
        assert!(!same, "flipping byte {i} went unnoticed");
    }
}

/// The same block committed by an authenticated caller: the header gains `actorSub` and
/// `actorIss` after everything else, and nothing before them moves.
fn fixed_block_with_actor() -> (adledger_engine::block::Block, EncodedBlock) {
    let (plain, _) = fixed_block();
    let actor = adledger_engine::Actor::new(
        "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
    )
    .expect("actor");
    block::seal_with(
        plain.header.sequence_no,
        &plain.header.tx_id,
        plain.header.tx_time,
        plain.header.previous_hash,
        plain.revisions.into_iter().map(|r| r.body).collect(),
        None,
        Some(actor),
    )
    .expect("seal")
}

const GOLDEN_ACTOR_BYTES_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/encoding-v1-actor-block.hex"
);

const EXPECTED_ACTOR_BLOCK_HASH: &str =
    "c6df3d192280237125f69b83c296ce39fbde354f5e6ec42f7fcbdd8ad833f925";

#[test]
fn format_v1_block_with_an_actor_is_pinned() {
    let (block, encoded) = fixed_block_with_actor();
    let hex_bytes = hex::encode(&encoded.bytes);
    let golden = std::fs::read_to_string(GOLDEN_ACTOR_BYTES_FILE).unwrap_or_default();
    if golden.trim().is_empty() {
        std::fs::write(GOLDEN_ACTOR_BYTES_FILE, format!("{hex_bytes}\n")).expect("write golden");
        panic!("wrote {GOLDEN_ACTOR_BYTES_FILE}; commit it and rerun");
    }
    assert_eq!(
        hex_bytes,
        golden.trim(),
        "canonical encoding v1 of a header with an actor changed: add a new format version"
    );
    assert_eq!(block.hash.to_hex(), EXPECTED_ACTOR_BLOCK_HASH);
    // The revisions' bytes are the plain block's: the actor lives in the header only.
    let (plain, plain_encoded) = fixed_block();
    let frame = block::Frame::parse(&encoded.bytes).expect("frame");
    let plain_frame = block::Frame::parse(&plain_encoded.bytes).expect("frame");
    assert_eq!(frame.revisions, plain_frame.revisions);
    assert_ne!(
        block.hash, plain.hash,
        "the actor is covered by the block hash"
    );
    let reopened = block::open(&encoded).expect("open");
    assert_eq!(reopened, block);
    for revision in &reopened.revisions {
        let actor = revision.body.metadata.actor.as_ref().expect("actor shown");
        assert_eq!(actor.sub, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
    }
}
