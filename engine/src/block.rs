//! Blocks: one committed transaction, sealed into the bytes a journal stores.
//!
//! # Stored form
//!
//! A journal stores each block as one byte string, the *frame*:
//!
//! ```text
//! "ADLB" | frame version: u8 = 1 | header length: u32 BE | header (Ion binary)
//!        | revision count: u32 BE | { revision length: u32 BE | revision (Ion binary) }…
//! ```
//!
//! The frame only delimits; everything that matters is inside the hashed Ion parts.
//! Delimiting lets a verifier hash the stored bytes of each part directly, without
//! decoding Ion first (see [`Frame`]).
//!
//! # Hashes
//!
//! `revision hash = SHA-256(revision bytes)`; `block hash = SHA-256(header bytes)`, and the
//! header holds the sequence number, transaction id and time, the previous block's hash,
//! the revision hashes and the actor, so the block hash covers all of them and, through
//! the chain, every block before it.

use chrono::{DateTime, Utc};

use crate::actor::Actor;
use crate::codec::{self, BlockHeader, IdempotencyTag};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::revision::{BlockAddress, Revision, RevisionBody, STRAND_ID};

const MAGIC: &[u8; 4] = b"ADLB";
const FRAME_VERSION: u8 = 1;

/// A block as stored by a journal: its sequence number and its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBlock {
    /// Position in the journal, from 0.
    pub sequence: u64,
    /// The frame (see the module docs).
    pub bytes: Vec<u8>,
}

/// A decoded, internally consistent block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The hashed header.
    pub header: BlockHeader,
    /// SHA-256 of the header bytes.
    pub hash: Hash,
    /// The revisions, in order.
    pub revisions: Vec<Revision>,
}

impl Block {
    /// The block's sequence number.
    pub fn sequence(&self) -> u64 {
        self.header.sequence_no
    }
}

/// The parts of a frame, borrowed from the stored bytes.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    /// The header's Ion bytes.
    pub header: &'a [u8],
    /// Each revision's Ion bytes.
    pub revisions: Vec<&'a [u8]>,
}

impl<'a> Frame<'a> {
    /// Splits stored bytes into their parts; fails if the frame is malformed.
    pub fn parse(bytes: &'a [u8]) -> Result<Frame<'a>> {
        let bad = |what: &str| Error::Corrupt(format!("block frame: {what}"));
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("bad magic"))?;
        let (&version, rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
        if version != FRAME_VERSION {
            return Err(bad("unknown frame version"));
        }
        let (header, rest) = take_part(rest).ok_or_else(|| bad("truncated header"))?;
        let (count, mut rest) = take_u32(rest).ok_or_else(|| bad("truncated count"))?;
        let mut revisions = Vec::with_capacity(count.min(1024) as usize);
        for _ in 0..count {
            let (part, tail) = take_part(rest).ok_or_else(|| bad("truncated revision"))?;
            revisions.push(part);
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(Frame { header, revisions })
    }

    /// The block hash: SHA-256 of the header bytes.
    pub fn block_hash(&self) -> Hash {
        Hash::of(self.header)
    }
}

fn take_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*len), rest))
}

fn take_part(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = take_u32(bytes)?;
    let len = len as usize;
    (rest.len() >= len).then(|| rest.split_at(len))
}

fn put_part(out: &mut Vec<u8>, part: &[u8]) -> Result<()> {
    let len = u32::try_from(part.len())
        .map_err(|_| Error::TooLarge("a revision larger than 4 GiB".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(part);
    Ok(())
}

/// Builds, hashes and encodes a new block.
pub fn seal(
    sequence: u64,
    tx_id: &str,
    tx_time: DateTime<Utc>,
    previous_hash: Hash,
    bodies: Vec<RevisionBody>,
) -> Result<(Block, EncodedBlock)> {
    seal_with(sequence, tx_id, tx_time, previous_hash, bodies, None, None)
}

/// Like [`seal`], with the header's optional parts: the idempotency key of a create that
/// carried one, and the authenticated caller. The actor is the header's; whatever the
/// bodies' `metadata.actor` says is replaced by it, so a sealed block reads back equal.
pub fn seal_with(
    sequence: u64,
    tx_id: &str,
    tx_time: DateTime<Utc>,
    previous_hash: Hash,
    mut bodies: Vec<RevisionBody>,
    idempotency: Option<IdempotencyTag>,
    actor: Option<Actor>,
) -> Result<(Block, EncodedBlock)> {
    for body in &mut bodies {
        body.metadata.actor.clone_from(&actor);
    }
    let encoded: Vec<Vec<u8>> = bodies
        .iter()
        .map(codec::encode_revision)
        .collect::<Result<_>>()?;
    let revision_hashes: Vec<Hash> = encoded.iter().map(|b| Hash::of(b)).collect();
    let header = BlockHeader {
        sequence_no: sequence,
        tx_id: tx_id.to_string(),
        tx_time,
        previous_hash,
        revision_hashes: revision_hashes.clone(),
        idempotency,
        actor,
    };
    let header_bytes = codec::encode_header(&header)?;
    let hash = Hash::of(&header_bytes);

    let size = 13 + header_bytes.len() + encoded.iter().map(|r| 4 + r.len()).sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(MAGIC);
    bytes.push(FRAME_VERSION);
    put_part(&mut bytes, &header_bytes)?;
    let count = u32::try_from(encoded.len())
        .map_err(|_| Error::TooLarge("too many revisions in one block".into()))?;
    bytes.extend_from_slice(&count.to_be_bytes());
    for part in &encoded {
        put_part(&mut bytes, part)?;
    }

    let address = BlockAddress {
        strand_id: STRAND_ID.to_string(),
        sequence_no: sequence,
    };
    let revisions = bodies
        .into_iter()
        .zip(revision_hashes)
        .map(|(body, hash)| Revision {
            block_address: address.clone(),
            hash,
            body,
        })
        .collect();
    Ok((
        Block {
            header,
            hash,
            revisions,
        },
        EncodedBlock { sequence, bytes },
    ))
}

/// Decodes a stored block and checks it against itself: the frame parses, the header's
/// sequence number is the one it is stored under, and every revision's bytes hash to the
/// hash the header lists. A mismatch is [`Error::ChainBroken`] naming the sequence.
///
/// The link to the previous block is checked by whoever reads blocks in order
/// (verification, rebuild), since one block alone cannot know its predecessor.
pub fn open(stored: &EncodedBlock) -> Result<Block> {
    let sequence = stored.sequence;
    let broken = |detail: String| Error::ChainBroken { sequence, detail };
    let frame = Frame::parse(&stored.bytes).map_err(|e| broken(e.to_string()))?;
    let header = codec::decode_header(frame.header).map_err(|e| broken(e.to_string()))?;
    if header.sequence_no != sequence {
        return Err(broken(format!(
            "block stored at sequence {sequence} says it is sequence {}",
            header.sequence_no
        )));
    }
    if header.revision_hashes.len() != frame.revisions.len() {
        return Err(broken(format!(
            "header lists {} revisions, the block holds {}",
            header.revision_hashes.len(),
            frame.revisions.len()
        )));
    }
    let address = BlockAddress {
        strand_id: STRAND_ID.to_string(),
        sequence_no: sequence,
    };
    let mut revisions = Vec::with_capacity(frame.revisions.len());
    for (i, (bytes, expected)) in frame
        .revisions
        .iter()
        .zip(&header.revision_hashes)
        .enumerate()
    {
        let hash = Hash::of(bytes);
        if hash != *expected {
            let what = codec::decode_revision(bytes)
                .map(|b| format!("ad {} version {}", b.metadata.id, b.metadata.version))
                .unwrap_or_else(|_| "an undecodable revision".into());
            return Err(broken(format!(
                "revision {i} ({what}) hashes to {hash}, the header says {expected}"
            )));
        }
        let body = codec::decode_revision_of(bytes, &header).map_err(|e| broken(e.to_string()))?;
        revisions.push(Revision {
            block_address: address.clone(),
            hash,
            body,
        });
    }
    Ok(Block {
        hash: frame.block_hash(),
        header,
        revisions,
    })
}
