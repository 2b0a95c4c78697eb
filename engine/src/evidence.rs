//! Evidence that one revision of an ad is in the ledger: the revision, the stored bytes of
//! its block that an auditor re-hashes, a digest, and the inclusion proof of the block
//! under that digest. The HTTP proof route and any other client of the engine get the same
//! bundle from [`revision_evidence`], and `adledger proof verify` checks it offline.
//!
//! Everything is read from the journal, never from the read models: a proof is about what
//! is committed, and a write is in the journal before it is acknowledged. The cost is one
//! `ad_revisions` read, one block read, and the O(log n) Merkle nodes of the digest and of
//! the proof.
//!
//! Hashes are deliberately not checked here: the bundle carries the stored bytes as they
//! are, so a tampered block yields a bundle that fails verification (which is the point),
//! rather than an error that hides the evidence. Only a block that no longer holds the
//! revision at all is an error.

use crate::ad::AdKey;
use crate::block::Frame;
use crate::codec::{self, BlockHeader};
use crate::digest::{Digest, digest_at};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::lookup::stored_block;
use crate::ports::Journal;
use crate::proof::{InclusionProof, inclusion_proof};
use crate::revision::{BlockAddress, Revision, STRAND_ID};

/// What proves one revision (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionEvidence {
    /// The revision, as its block stores it.
    pub revision: Revision,
    /// The block's decoded header.
    pub header: BlockHeader,
    /// The block header's stored bytes: their SHA-256 is the block hash.
    pub header_bytes: Vec<u8>,
    /// The revision's position among the block's revisions.
    pub revision_index: usize,
    /// The revision's stored bytes: their SHA-256 is listed in the header.
    pub revision_bytes: Vec<u8>,
    /// The digest the proof leads to.
    pub digest: Digest,
    /// The inclusion proof of the block under `digest`.
    pub proof: InclusionProof,
}

impl RevisionEvidence {
    /// The block's sequence number.
    pub fn sequence(&self) -> u64 {
        self.revision.block_address.sequence_no
    }

    /// The block hash (SHA-256 of the stored header bytes).
    pub fn block_hash(&self) -> Hash {
        Hash::of(&self.header_bytes)
    }
}

/// The evidence for revision `version` (default: the latest) of `key`, under the digest
/// at `digest_sequence` (default: the journal's last block).
///
/// `NotFound` when the ad or the version does not exist; `Invalid` (field
/// `digestSequence`) when the digest asked for is past the journal's end or before the
/// revision was committed.
pub async fn revision_evidence(
    journal: &dyn Journal,
    key: &AdKey,
    version: Option<u64>,
    digest_sequence: Option<u64>,
) -> Result<RevisionEvidence> {
    let refs = journal.ad_revisions(key).await?;
    let Some(latest) = refs.iter().map(|r| r.version).max() else {
        return Err(Error::NotFound {
            what: format!("ad {} of publisher {}", key.ad_id, key.publisher_id),
        });
    };
    let version = version.unwrap_or(latest);
    let Some(found) = refs.iter().find(|r| r.version == version) else {
        return Err(Error::NotFound {
            what: format!(
                "version {version} of ad {} (its versions are 0 to {latest})",
                key.ad_id
            ),
        });
    };
    let sequence = found.sequence;

    let last = journal.last_sequence().await?.ok_or_else(|| {
        Error::Corrupt(format!(
            "ad {} has revisions, but the journal reports no blocks",
            key.ad_id
        ))
    })?;
    let at = digest_sequence.unwrap_or(last);
    if at > last {
        return Err(Error::Invalid {
            field: "digestSequence".into(),
            reason: format!(
                "`digestSequence` is {at}, but the journal's last block is {last}; ask for a \
                 sequence from 0 to {last}"
            ),
        });
    }
    if at < sequence {
        return Err(Error::Invalid {
            field: "digestSequence".into(),
            reason: format!(
                "version {version} of ad {} was committed in block {sequence}, after the \
                 digest at {at}; ask for a digestSequence of {sequence} or later",
                key.ad_id
            ),
        });
    }
    let digest = digest_at(journal, at).await?;
    let stored = stored_block(journal, key, version, sequence).await?;
    let broken = |detail: String| Error::ChainBroken { sequence, detail };
    let frame = Frame::parse(&stored.bytes).map_err(|e| broken(e.to_string()))?;
    let header = codec::decode_header(frame.header).map_err(|e| broken(e.to_string()))?;
    let found = frame.revisions.iter().enumerate().find_map(|(i, bytes)| {
        codec::decode_revision_of(bytes, &header)
            .ok()
            .filter(|body| body.key() == *key && body.metadata.version == version)
            .map(|body| (i, bytes, body))
    });
    let Some((revision_index, bytes, body)) = found else {
        return Err(broken(format!(
            "the block holds no revision of ad {} version {version}",
            key.ad_id
        )));
    };
    let proof = inclusion_proof(journal, sequence, at + 1).await?;
    Ok(RevisionEvidence {
        revision: Revision {
            block_address: BlockAddress {
                strand_id: STRAND_ID.to_string(),
                sequence_no: sequence,
            },
            hash: Hash::of(bytes),
            body,
        },
        header,
        header_bytes: frame.header.to_vec(),
        revision_index,
        revision_bytes: bytes.to_vec(),
        digest,
        proof,
    })
}
