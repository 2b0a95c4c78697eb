//! Property tests of the journal decoders: stored bytes come from disk or DynamoDB and can
//! be anything after damage or tampering. Whatever they are, `block::open` and the codec's
//! decoders answer `Ok` or `Err` — they never panic — and damage to a real block never opens
//! as a block equal to the original.

use adledger_engine::Actor;
use adledger_engine::ad::AdDraft;
use adledger_engine::block::{self, EncodedBlock};
use adledger_engine::codec;
use adledger_engine::hash::Hash;
use adledger_engine::revision::{EventKind, RevisionBody, RevisionMetadata};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;

fn real_block() -> EncodedBlock {
    let t = Utc
        .with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
        .single()
        .expect("time");
    let ad = AdDraft::titled("Bike, red")
        .expect("title")
        .into_ad("acme", "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    let body = RevisionBody {
        data: Some(ad),
        metadata: RevisionMetadata {
            id: "01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            publisher_id: "acme".into(),
            version: 0,
            tx_id: "01ARZ3NDEKTSV4RRFFQ69G5FAW".into(),
            tx_time: t,
            actor: None,
        },
        event: EventKind::AdCreated,
    };
    let actor = Actor::new("alice", "https://issuer.example").expect("actor");
    block::seal_with(
        9,
        "01ARZ3NDEKTSV4RRFFQ69G5FAW",
        t,
        Hash([7; 32]),
        vec![body],
        None,
        Some(actor),
    )
    .expect("seal")
    .1
}

/// A change to stored bytes: flip, set, insert, remove or truncate.
#[derive(Debug, Clone)]
enum Damage {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn damage() -> impl Strategy<Value = Vec<Damage>> {
    proptest::collection::vec(
        prop_oneof![
            (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Damage::Flip(i, x)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Insert(i, b)),
            any::<usize>().prop_map(Damage::Remove),
            any::<usize>().prop_map(Damage::Truncate),
        ],
        1..4,
    )
}

fn apply(bytes: &mut Vec<u8>, damage: &Damage) {
    let len = bytes.len().max(1);
    match *damage {
        Damage::Flip(i, x) => {
            if let Some(b) = bytes.get_mut(i % len) {
                *b ^= x;
            }
        }
        Damage::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
        Damage::Remove(i) => {
            if !bytes.is_empty() {
                bytes.remove(i % len);
            }
        }
        Damage::Truncate(i) => bytes.truncate(i % len),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), sequence in 0u64..20) {
        let _ = block::open(&EncodedBlock { sequence, bytes: bytes.clone() });
        let _ = codec::decode_header(&bytes);
        let _ = codec::decode_revision(&bytes);
        // Ion-looking prefixes reach deeper into the decoders.
        let mut ion = vec![0xE0, 0x01, 0x00, 0xEA];
        ion.extend_from_slice(&bytes);
        let _ = codec::decode_header(&ion);
        let _ = codec::decode_revision(&ion);
    }

    #[test]
    fn damaged_blocks_never_panic_and_never_pass_for_the_original(changes in damage()) {
        let original = real_block();
        let opened = block::open(&original).expect("the original opens");
        let mut bytes = original.bytes.clone();
        for change in &changes {
            apply(&mut bytes, change);
        }
        prop_assume!(bytes != original.bytes);
        let frame = block::Frame::parse(&bytes);
        if let Ok(frame) = &frame {
            let _ = codec::decode_header(frame.header);
            for part in &frame.revisions {
                let _ = codec::decode_revision(part);
            }
        }
        if let Ok(reopened) = block::open(&EncodedBlock { sequence: original.sequence, bytes }) {
            prop_assert_ne!(reopened.hash, opened.hash, "damage hashed like the original");
        }
    }
}
