//! The journal table's items: keys, attribute names, and where each record lives.
//!
//! One table, partition key `pk` (string), sort key `sk` (number):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | tip | `tip` | 0 | `seq` last sequence, `fmt` format version |
//! | block | `b#<seq / 1000>` | seq | `blk` the block's frame; `m<level>` each Merkle node the block completes |
//! | ad chunk | `a#<len>:<publisherId>/<adId>` | chunk | `ver`, `seq`, `del` (the head); `refs` the sequences of versions `chunk * 1024 ..` |
//! | idempotency | `i#<sha256 hex of len:publisherId/key>` | 0 | `pub`, `key`, `h` request hash, `ad`, `seq` |
//! | projector lease | `lease#<name>` | 0 | `owner`, `expires`, `renewed` (see `lease.rs`; not part of the journal) |
//!
//! - **Blocks** are grouped 1000 to a partition so `read_blocks` is a Query in sequence
//!   order that spreads over partitions as the journal grows.
//! - **Merkle nodes** live as attributes of the block that completes them: node `(level,
//!   index)` covers leaves `index·2^level ..= (index+1)·2^level − 1`, so it is completed by
//!   block `(index+1)·2^level − 1`, and written in the same Put as that block. This costs no
//!   transaction action.
//! - **Ad heads and revision refs** share items: an ad's revisions are listed in chunks of
//!   1024 versions (a list of block sequences, index = version − chunk·1024), and every
//!   chunk written by an append carries the head (`ver`, `seq`, `del`). The head is the one
//!   in the highest chunk (a Query, newest first, limit 1), and all of an ad's revisions
//!   are one Query. Usually one append touches one chunk per ad: one action per ad does
//!   both the head's condition and the refs. A chunk never exceeds ~25 KB, far below
//!   DynamoDB's 400 KB item limit, whatever the number of revisions.
//! - **Idempotency keys** are client-chosen and may be long, so their partition key is a
//!   hash; the publisher and key are stored in the item and checked on read.

use adledger_engine::AdKey;
use sha2::{Digest, Sha256};

/// The format this build writes and reads, stored in the tip item.
pub(super) const FORMAT_VERSION: u64 = 1;

pub(super) const PK: &str = "pk";
pub(super) const SK: &str = "sk";

pub(super) const TIP_PK: &str = "tip";
pub(super) const TIP_SEQ: &str = "seq";
pub(super) const TIP_FORMAT: &str = "fmt";

/// Blocks per block partition.
pub(super) const BLOCKS_PER_PARTITION: u64 = 1000;
pub(super) const BLOCK_BYTES: &str = "blk";

/// Versions per ad chunk.
pub(super) const VERSIONS_PER_CHUNK: u64 = 1024;
pub(super) const HEAD_VERSION: &str = "ver";
pub(super) const HEAD_SEQUENCE: &str = "seq";
pub(super) const HEAD_DELETED: &str = "del";
pub(super) const REFS: &str = "refs";

pub(super) const IDEM_PUBLISHER: &str = "pub";
pub(super) const IDEM_KEY: &str = "key";
pub(super) const IDEM_HASH: &str = "h";
pub(super) const IDEM_AD: &str = "ad";
pub(super) const IDEM_SEQUENCE: &str = "seq";

/// The partition holding block `sequence`.
pub(super) fn block_pk(sequence: u64) -> String {
    format!("b#{}", sequence / BLOCKS_PER_PARTITION)
}

/// The attribute of a block item holding the Merkle node at `level`.
pub(super) fn merkle_attribute(level: u8) -> String {
    format!("m{level}")
}

/// The block whose Put stores Merkle node `(level, index)`, or `None` if no block could
/// (the node would lie beyond `u64` sequences).
pub(super) fn merkle_block(level: u8, index: u64) -> Option<u64> {
    let leaves = 1u64.checked_shl(u32::from(level))?;
    index.checked_add(1)?.checked_mul(leaves)?.checked_sub(1)
}

/// An ad's partition; the length prefix keeps `("a", "b/c")` and `("a/b", "c")` apart.
pub(super) fn ad_pk(key: &AdKey) -> String {
    format!(
        "a#{}:{}/{}",
        key.publisher_id.len(),
        key.publisher_id,
        key.ad_id
    )
}

/// The chunk listing `version`.
pub(super) fn chunk_of(version: u64) -> u64 {
    version / VERSIONS_PER_CHUNK
}

/// An idempotency record's partition.
pub(super) fn idempotency_pk(publisher_id: &str, key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("{}:{publisher_id}/", publisher_id.len()).as_bytes());
    hasher.update(key.as_bytes());
    format!("i#{}", hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merkle_nodes_live_in_the_block_that_completes_them() {
        assert_eq!(merkle_block(0, 5), Some(5));
        assert_eq!(merkle_block(1, 0), Some(1));
        assert_eq!(merkle_block(2, 1), Some(7));
        assert_eq!(merkle_block(3, 0), Some(7));
        assert_eq!(merkle_block(64, 0), None);
        assert_eq!(merkle_block(1, u64::MAX), None);
    }

    #[test]
    fn ad_partitions_are_unambiguous() {
        assert_ne!(
            ad_pk(&AdKey::new("a", "b/c")),
            ad_pk(&AdKey::new("a/b", "c"))
        );
        assert_ne!(idempotency_pk("a", "b/c"), idempotency_pk("a/b", "c"));
    }

    #[test]
    fn chunks_and_block_partitions() {
        assert_eq!((chunk_of(0), chunk_of(1023), chunk_of(1024)), (0, 0, 1));
        assert_eq!(
            (block_pk(999), block_pk(1000)),
            ("b#0".into(), "b#1".into())
        );
    }
}
