//! Page items: how an append's blocks are cut into pages, and how a stored page is read
//! back into blocks and Merkle nodes (the layout is in `keys.rs`).

use std::collections::HashMap;
use std::ops::Range;

use adledger_engine::Hash;
use adledger_engine::block::EncodedBlock;
use adledger_engine::ports::MerkleNode;
use aws_sdk_dynamodb::types::AttributeValue;

use super::keys::{self, PK, SK};
use crate::attributes::{Item, b, get_u64, n, s};
use crate::error::{AwsError, corrupt};

/// A Merkle node's `(level, index)`.
pub(super) type NodeId = (u8, u64);

/// The blocks of each page, as ranges of `blocks` (which must be contiguous): a page is
/// closed before a block that would take it past `target` bytes of frames, and before
/// every block whose sequence starts a partition.
pub(super) fn cut(blocks: &[EncodedBlock], target: usize) -> Vec<Range<usize>> {
    let mut pages = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, block) in blocks.iter().enumerate() {
        let starts_partition = block.sequence % keys::BLOCKS_PER_PARTITION == 0;
        if i > start && (starts_partition || bytes + block.bytes.len() > target) {
            pages.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += block.bytes.len();
    }
    if start < blocks.len() {
        pages.push(start..blocks.len());
    }
    pages
}

/// The item of a page holding `blocks` (contiguous, non-empty) and the Merkle nodes they
/// complete.
pub(super) fn item(blocks: &[EncodedBlock], nodes: &[&MerkleNode]) -> Item {
    let first = blocks.first().map_or(0, |b| b.sequence);
    let last = blocks.last().map_or(first, |b| b.sequence);
    let frames = blocks.iter().map(|block| b(block.bytes.clone())).collect();
    let merkle = nodes
        .iter()
        .map(|node| {
            (
                keys::merkle_key(node.level, node.index),
                b(node.hash.as_bytes().to_vec()),
            )
        })
        .collect();
    HashMap::from([
        (PK.to_string(), s(keys::page_pk(first))),
        (SK.to_string(), n(first)),
        (keys::PAGE_LAST.to_string(), n(last)),
        (keys::PAGE_BLOCKS.to_string(), AttributeValue::L(frames)),
        (keys::PAGE_MERKLE.to_string(), AttributeValue::M(merkle)),
    ])
}

/// A page as read from the table.
#[derive(Debug)]
pub(super) struct StoredPage {
    /// Its first sequence.
    pub first: u64,
    /// Its last sequence.
    pub last: u64,
    /// The item, for its block list and Merkle map.
    item: Item,
}

impl StoredPage {
    /// Checks the page's key attributes.
    pub(super) fn parse(item: Item) -> Result<StoredPage, AwsError> {
        let what = || "journal page".to_string();
        let first = get_u64(&item, SK, &what)?;
        let last = get_u64(&item, keys::PAGE_LAST, &|| format!("journal page {first}"))?;
        if last < first {
            return Err(corrupt(format!(
                "journal page {first} says it ends at block {last}"
            )));
        }
        Ok(StoredPage { first, last, item })
    }

    /// Whether the page is meant to hold `sequence`.
    pub(super) fn covers(&self, sequence: u64) -> bool {
        (self.first..=self.last).contains(&sequence)
    }

    /// The stored frame of block `sequence`, or `None` if it is not in the page (a hole
    /// in a list that should hold it is a missing block, as is a short list).
    pub(super) fn frame(&self, sequence: u64) -> Option<&[u8]> {
        if !self.covers(sequence) {
            return None;
        }
        let index = usize::try_from(sequence - self.first).ok()?;
        match self.item.get(keys::PAGE_BLOCKS) {
            Some(AttributeValue::L(frames)) => match frames.get(index) {
                Some(AttributeValue::B(bytes)) => Some(bytes.as_ref()),
                _ => None,
            },
            _ => None,
        }
    }

    /// The Merkle nodes stored in the page.
    pub(super) fn merkle_nodes(&self) -> Result<Vec<(NodeId, Hash)>, AwsError> {
        let Some(AttributeValue::M(map)) = self.item.get(keys::PAGE_MERKLE) else {
            return Ok(Vec::new());
        };
        let bad = |name: &str| {
            corrupt(format!(
                "journal page {}: Merkle node {name:?} is malformed",
                self.first
            ))
        };
        map.iter()
            .map(|(name, value)| {
                let (level, index) = name.split_once(':').ok_or_else(|| bad(name))?;
                let id = (
                    level.parse().map_err(|_| bad(name))?,
                    index.parse().map_err(|_| bad(name))?,
                );
                let hash = match value {
                    AttributeValue::B(bytes) => Hash::from_slice(bytes.as_ref()),
                    _ => None,
                }
                .ok_or_else(|| bad(name))?;
                Ok((id, hash))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(first: u64, sizes: &[usize]) -> Vec<EncodedBlock> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, size)| EncodedBlock {
                sequence: first + i as u64,
                bytes: vec![7; *size],
            })
            .collect()
    }

    #[test]
    fn pages_close_at_the_target_and_at_partitions() {
        assert_eq!(cut(&blocks(0, &[10, 10, 10]), 25), vec![0..2, 2..3]);
        // A block larger than the target gets a page of its own.
        assert_eq!(cut(&blocks(5, &[10, 100, 10]), 25), vec![0..1, 1..2, 2..3]);
        // Block 1000 starts partition 1.
        assert_eq!(cut(&blocks(998, &[1, 1, 1, 1]), 1000), vec![0..2, 2..4]);
        assert!(cut(&[], 10).is_empty());
        // 300 blocks of about 1 KB make five pages.
        assert_eq!(
            cut(&blocks(1, &[1100; 300]), keys::PAGE_TARGET_BYTES).len(),
            6
        );
    }

    #[test]
    fn a_page_gives_back_its_frames_and_nodes() {
        let stored = blocks(1000, &[3, 4]);
        let node = MerkleNode {
            level: 1,
            index: 500,
            hash: Hash([9; 32]),
        };
        let page = StoredPage::parse(item(&stored, &[&node])).expect("parse");
        assert_eq!((page.first, page.last), (1000, 1001));
        assert_eq!(page.frame(1001), Some(&[7u8; 4][..]));
        assert_eq!(page.frame(999), None);
        assert_eq!(page.frame(1002), None);
        assert_eq!(
            page.merkle_nodes().expect("nodes"),
            vec![((1, 500), Hash([9; 32]))]
        );
    }
}
