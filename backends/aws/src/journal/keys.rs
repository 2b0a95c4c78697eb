//! The journal table's items: keys, attribute names, and where each record lives.
//!
//! One table, partition key `pk` (string), sort key `sk` (number). Format 2 (this build):
//!
//! | item | `pk` | `sk` | attributes | written |
//! |---|---|---|---|---|
//! | tip | `tip` | 0 | `seq` last sequence, `fmt` format version (2), `idx` the ad index covers every block through this sequence | in each append's transaction; `idx` also after the index is written |
//! | page | `p#<first / 1000>` | first sequence of the page | `blks` the frames of blocks `first ..= last` (a list); `last`; `m` the Merkle nodes those blocks complete (a map `"<level>:<index>"` → hash) | in the append's transaction |
//! | revision | `a#<len>:<publisherId>/<adId>` | version | `seq` the block holding it, `del` whether it is a delete | after the transaction (the derived ad index) |
//! | idempotency | `i#<sha256 hex of len:publisherId/key>` | 0 | `pub`, `key`, `h` request hash, `ad`, `seq` | after the transaction (derived) |
//! | projector lease | `lease#<name>` | 0 | `owner`, `expires`, `renewed` (see `lease.rs`; not part of the journal) | |
//!
//! - **Pages** hold many blocks, so one `TransactWriteItems` (100 actions, 4 MB) carries
//!   hundreds of blocks: the tip plus a few page Puts. A page is cut at
//!   [`PAGE_TARGET_BYTES`] of frames and at every multiple of [`BLOCKS_PER_PARTITION`], so
//!   the page holding block `s` is in partition `s / 1000`: it is the item there with the
//!   greatest `sk <= s` (a Query, newest first, limit 1), and the pages after it follow
//!   with consecutive first sequences. A block larger than a page gets a page of its own
//!   (up to DynamoDB's 400 KB item limit).
//! - **Merkle nodes** live in the page holding the block that completes them: node
//!   `(level, index)` covers leaves `index·2^level ..= (index+1)·2^level − 1`, so it is
//!   completed by block `(index+1)·2^level − 1`. This costs no transaction action.
//! - **The ad index** (revision items, hence heads and histories, and idempotency
//!   records) is derived from the pages and written after the transaction commits, with
//!   `BatchWriteItem`: at 300 ads per append it could not be in the transaction. Every
//!   item is a function of one block, so writing it twice is harmless. The tip's `idx`
//!   is a lower bound of how far it is complete; whoever reads the index (or appends
//!   against it) first completes it from the pages up to the tip it read (see
//!   `journal/index.rs`), so a crash between the transaction and the index writes loses
//!   nothing.
//! - **Idempotency keys** are client-chosen and may be long, so their partition key is a
//!   hash; the publisher and key are stored in the item and checked on read.
//!
//! Format 1 (one item per block, ad heads in the transaction) is refused on open with an
//! error naming the way to move such a journal: export it with the build that wrote it
//! and import the file into a new table.

use adledger_engine::AdKey;
use sha2::{Digest, Sha256};

/// The format this build writes and reads, stored in the tip item.
pub(super) const FORMAT_VERSION: u64 = 2;

pub(super) const PK: &str = "pk";
pub(super) const SK: &str = "sk";

pub(super) const TIP_PK: &str = "tip";
pub(super) const TIP_SEQ: &str = "seq";
pub(super) const TIP_FORMAT: &str = "fmt";
pub(super) const TIP_INDEXED: &str = "idx";

/// Blocks per page partition; no page spans two.
pub(super) const BLOCKS_PER_PARTITION: u64 = 1000;
/// Frame bytes after which a page is closed: small enough that reading one block (a page)
/// costs at most 16 read units, large enough that a 4 MB transaction needs few pages.
pub(super) const PAGE_TARGET_BYTES: usize = 64 * 1024;
pub(super) const PAGE_BLOCKS: &str = "blks";
pub(super) const PAGE_LAST: &str = "last";
pub(super) const PAGE_MERKLE: &str = "m";

pub(super) const REVISION_SEQUENCE: &str = "seq";
pub(super) const REVISION_DELETED: &str = "del";

pub(super) const IDEM_PUBLISHER: &str = "pub";
pub(super) const IDEM_KEY: &str = "key";
pub(super) const IDEM_HASH: &str = "h";
pub(super) const IDEM_AD: &str = "ad";
pub(super) const IDEM_SEQUENCE: &str = "seq";

/// The partition holding the page of block `sequence`.
pub(super) fn page_pk(sequence: u64) -> String {
    format!("p#{}", sequence / BLOCKS_PER_PARTITION)
}

/// The key of Merkle node `(level, index)` in its page's [`PAGE_MERKLE`] map.
pub(super) fn merkle_key(level: u8, index: u64) -> String {
    format!("{level}:{index}")
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
    fn page_partitions() {
        assert_eq!((page_pk(999), page_pk(1000)), ("p#0".into(), "p#1".into()));
        assert_eq!(merkle_key(3, 7), "3:7");
    }
}
