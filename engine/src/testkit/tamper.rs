//! Tamper tests: a malicious operator with direct database access alters stored blocks
//! while the server is stopped — rewrites a price inside the stored bytes, deletes a
//! block, swaps two, or rewrites history consistently from one block on. Full
//! verification must catch every one and name the first bad sequence number (and the ad,
//! when the bytes still say), and a proof issued before the tamper must no longer verify
//! against a digest recomputed after it.
//!
//! The alterations go through [`Harness::tamper`], which uses the backend's storage
//! directly: the `Journal` port cannot rewrite or remove a block, by design.

use super::RunAsTester;
use rust_decimal::Decimal;

use super::{Harness, all_blocks, all_revisions, draft};
use crate::ad::{AdKey, AdPatch};
use crate::block::{EncodedBlock, Frame};
use crate::codec;
use crate::command::Command;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::merkle;
use crate::ports::Journal;
use crate::proof::{inclusion_proof, verify_inclusion};
use crate::revision::Revision;
use crate::verify::verify_journal;

/// What a malicious operator does to the stored journal, bypassing the `Journal` port.
/// Only the stored block bytes change: the tip, the ad heads and the stored Merkle nodes
/// stay as they were, as after a hand edit of the blocks (a backend that keeps Merkle
/// nodes in the block's own record changes only the bytes of that record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tamper {
    /// Replaces the stored bytes of block `sequence` with `bytes`.
    RewriteBlock {
        /// The block.
        sequence: u64,
        /// Its new stored bytes (a frame, or anything at all).
        bytes: Vec<u8>,
    },
    /// Removes block `sequence`.
    DeleteBlock {
        /// The block.
        sequence: u64,
    },
    /// Exchanges the stored bytes of blocks `a` and `b`.
    SwapBlocks {
        /// One block.
        a: u64,
        /// The other.
        b: u64,
    },
}

/// Where verification located a tamper.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Located {
    sequence: u64,
    ad_id: Option<String>,
    version: Option<u64>,
    field: Option<String>,
    detail: String,
}

/// Runs full verification and returns where it failed; panics if it passed.
///
/// A backend may notice a missing block while reading, before the verifier sees the
/// gap; it reports [`Error::ChainBroken`] with the sequence, which counts as located.
async fn locate(journal: &dyn Journal, expected: Option<Digest>) -> Located {
    let expected = expected.map(|d| (d.sequence, d.root));
    match verify_journal(journal, expected, &mut |_| {}).await {
        Ok(Ok(report)) => panic!("the tamper went unnoticed: {report:?}"),
        Ok(Err(f)) => Located {
            sequence: f.sequence,
            ad_id: f.ad_id,
            version: f.version,
            field: f.field,
            detail: f.detail,
        },
        Err(Error::ChainBroken { sequence, detail }) => Located {
            sequence,
            ad_id: None,
            version: None,
            field: None,
            detail,
        },
        Err(other) => panic!("verification could not run: {other}"),
    }
}

/// A stopped journal of eight blocks: four ads created with prices, then each repriced.
/// Returns its revisions (block `i` holds revision `i`) and its digest, after checking
/// that it verifies as written.
async fn written<H: Harness>(h: &H) -> (H::Place, Vec<Revision>, Digest) {
    let place = h.place().await.expect("place");
    let stores = h.open(&place).await.expect("open");
    let ledger = stores.ledger(31).await.expect("ledger");
    let mut keys: Vec<AdKey> = Vec::new();
    for i in 0..4 {
        let outcome = ledger
            .run(Command::CreateAd {
                publisher_id: format!("pub{}", i % 2),
                draft: draft(
                    &format!("Ad {i}"),
                    Some(&format!("{}.99", 10 + i)),
                    "misc",
                    &["t"],
                ),
                idempotency_key: None,
            })
            .await
            .expect("create");
        keys.push(outcome.ad.expect("created ad").key());
    }
    for (i, key) in keys.iter().enumerate() {
        ledger
            .run(Command::UpdateAd {
                key: key.clone(),
                patch: AdPatch {
                    price: Some(Some(Decimal::new(2000 + i as i64, 2))),
                    ..AdPatch::default()
                },
                expected_version: Some(0),
            })
            .await
            .expect("update");
    }
    let digest = ledger.digest().await.expect("digest").expect("non-empty");
    let revisions = all_revisions(stores.journal.as_ref())
        .await
        .expect("revisions");
    assert_eq!(revisions.len(), 8);
    assert_eq!(digest.sequence, 7);
    let verified = verify_journal(
        stores.journal.as_ref(),
        Some((digest.sequence, digest.root)),
        &mut |_| {},
    )
    .await
    .expect("readable");
    assert!(verified.is_ok(), "untampered: {verified:?}");
    ledger.shutdown().await;
    // The operator works on a stopped server: every handle is dropped first.
    drop(ledger);
    drop(stores);
    (place, revisions, digest)
}

/// The stored bytes of every block of a stopped place.
async fn stored_blocks<H: Harness>(h: &H, place: &H::Place) -> Vec<EncodedBlock> {
    let stores = h.open(place).await.expect("open");
    let blocks = all_blocks(stores.journal.as_ref()).await.expect("blocks");
    drop(stores);
    blocks
}

/// A block frame (the layout of [`crate::block`]'s docs) around these parts.
fn frame(header: &[u8], revisions: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"ADLB\x01".to_vec();
    let len = |n: usize| u32::try_from(n).expect("small part").to_be_bytes();
    out.extend_from_slice(&len(header.len()));
    out.extend_from_slice(header);
    out.extend_from_slice(&len(revisions.len()));
    for r in revisions {
        out.extend_from_slice(&len(r.len()));
        out.extend_from_slice(r);
    }
    out
}

/// The block with the price of its first revision's ad changed to `price`: the revision
/// re-encoded as the engine would have written it. With `fix_header`, the header is
/// rewritten to list the new revision hash (and to follow `previous`, when given), as an
/// operator covering their tracks would; otherwise the header is kept byte for byte.
fn repriced(
    stored: &EncodedBlock,
    price: Decimal,
    fix_header: bool,
    previous: Option<Hash>,
) -> Vec<u8> {
    let parts = Frame::parse(&stored.bytes).expect("frame");
    let mut body = codec::decode_revision(parts.revisions[0]).expect("revision");
    if let Some(ad) = body.data.as_mut() {
        ad.price = Some(price);
    }
    let revision = codec::encode_revision(&body).expect("encode revision");
    let mut revisions: Vec<Vec<u8>> = parts.revisions.iter().map(|r| r.to_vec()).collect();
    revisions[0] = revision;
    if !fix_header {
        return frame(parts.header, &revisions);
    }
    rechained(parts.header, &revisions, previous)
}

/// A frame whose header lists these revisions' hashes and, when given, `previous`.
fn rechained(header: &[u8], revisions: &[Vec<u8>], previous: Option<Hash>) -> Vec<u8> {
    let mut decoded = codec::decode_header(header).expect("header");
    decoded.revision_hashes = revisions.iter().map(|r| Hash::of(r)).collect();
    if let Some(previous) = previous {
        decoded.previous_hash = previous;
    }
    frame(
        &codec::encode_header(&decoded).expect("encode header"),
        revisions,
    )
}

/// Changing a price inside one stored revision is reported at that block, naming the ad
/// and version, and the header field that no longer matches; the digest saved before
/// does not save the journal either.
pub async fn tamper_rewritten_price_is_located<H: Harness>(h: &H) {
    let (place, revisions, digest) = written(h).await;
    let target = &revisions[5];
    let blocks = stored_blocks(h, &place).await;
    let bytes = repriced(&blocks[5], Decimal::new(1, 2), false, None);
    h.tamper(&place, Tamper::RewriteBlock { sequence: 5, bytes })
        .await
        .expect("tamper");

    let stores = h.open(&place).await.expect("reopen");
    for expected in [None, Some(digest)] {
        let found = locate(stores.journal.as_ref(), expected).await;
        assert_eq!(found.sequence, 5, "{found:?}");
        assert_eq!(found.ad_id.as_deref(), Some(target.key().ad_id.as_str()));
        assert_eq!(found.version, Some(target.version()));
        assert_eq!(
            found.field.as_deref(),
            Some("revisionHashes[0]"),
            "{found:?}"
        );
    }
}

/// A block removed from the middle, or the last one, is reported at its sequence.
pub async fn tamper_deleted_block_is_located<H: Harness>(h: &H) {
    for sequence in [3, 7] {
        let (place, _, digest) = written(h).await;
        h.tamper(&place, Tamper::DeleteBlock { sequence })
            .await
            .expect("tamper");
        let stores = h.open(&place).await.expect("reopen");
        let found = locate(stores.journal.as_ref(), Some(digest)).await;
        assert_eq!(found.sequence, sequence, "{found:?}");
    }
}

/// Two swapped blocks are reported at the earlier one: it says it is the later one.
pub async fn tamper_swapped_blocks_are_located<H: Harness>(h: &H) {
    let (place, _, _) = written(h).await;
    h.tamper(&place, Tamper::SwapBlocks { a: 2, b: 6 })
        .await
        .expect("tamper");
    let stores = h.open(&place).await.expect("reopen");
    let found = locate(stores.journal.as_ref(), None).await;
    assert_eq!(found.sequence, 2, "{found:?}");
    assert_eq!(found.field.as_deref(), Some("sequenceNo"), "{found:?}");
}

/// An operator who rewrites history consistently from one block on (new price, header
/// fixed to list the new revision hash, every later block re-chained) leaves a journal
/// whose recomputed digest differs from the one an auditor saved: the proof issued before
/// the tamper verifies against the saved digest (the auditor's copy) but not against the
/// recomputed one, the altered block no longer has the proved hash, and full verification
/// locates the rewrite at its first block.
pub async fn tamper_invalidates_earlier_proofs<H: Harness>(h: &H) {
    let (place, _, saved) = written(h).await;
    let k = 2u64;
    let (proof, proved_hash) = {
        let stores = h.open(&place).await.expect("open");
        let proof = inclusion_proof(stores.journal.as_ref(), k, saved.sequence + 1)
            .await
            .expect("proof");
        let block = all_blocks(stores.journal.as_ref())
            .await
            .expect("blocks")
            .swap_remove(k as usize);
        let hash = Frame::parse(&block.bytes).expect("frame").block_hash();
        verify_inclusion(&hash, &proof, &saved.root).expect("verifies before the tamper");
        (proof, hash)
    };

    // Rewrite block k and re-chain every block after it.
    let blocks = stored_blocks(h, &place).await;
    let mut previous = None;
    for block in &blocks[k as usize..] {
        let bytes = if block.sequence == k {
            repriced(block, Decimal::new(1, 2), true, None)
        } else {
            let parts = Frame::parse(&block.bytes).expect("frame");
            let revisions: Vec<Vec<u8>> = parts.revisions.iter().map(|r| r.to_vec()).collect();
            rechained(parts.header, &revisions, previous)
        };
        previous = Some(Frame::parse(&bytes).expect("frame").block_hash());
        h.tamper(
            &place,
            Tamper::RewriteBlock {
                sequence: block.sequence,
                bytes,
            },
        )
        .await
        .expect("tamper");
    }

    let stores = h.open(&place).await.expect("reopen");
    let now = all_blocks(stores.journal.as_ref()).await.expect("blocks");
    let hashes: Vec<Hash> = now
        .iter()
        .map(|b| Frame::parse(&b.bytes).map(|f| f.block_hash()))
        .collect::<Result<_>>()
        .expect("hashes");
    // The chain itself is consistent again: each header names its predecessor's hash.
    for pair in now.windows(2) {
        let header = codec::decode_header(Frame::parse(&pair[1].bytes).expect("frame").header)
            .expect("header");
        let before = Frame::parse(&pair[0].bytes).expect("frame").block_hash();
        assert_eq!(header.previous_hash, before, "re-chained");
    }
    let recomputed = merkle::root_of(&hashes).expect("non-empty");
    assert_ne!(recomputed, saved.root, "a rewrite changes the root");
    assert_ne!(hashes[k as usize], proved_hash, "the proved block is gone");
    assert!(
        verify_inclusion(&proved_hash, &proof, &recomputed).is_err(),
        "the earlier proof must not verify against the recomputed digest"
    );
    assert!(
        verify_inclusion(&hashes[k as usize], &proof, &recomputed).is_err(),
        "nor does it prove the rewritten block"
    );
    verify_inclusion(&proved_hash, &proof, &saved.root).expect("the auditor's copy still holds");

    let found = locate(stores.journal.as_ref(), Some(saved)).await;
    assert_eq!(found.sequence, k, "{found:?}");
}
