//! The RFC 6962 / RFC 9162 Merkle tree over block hashes.
//!
//! `leaf = SHA-256(0x00 ‖ block hash)`, `node = SHA-256(0x01 ‖ left ‖ right)`. Leaf `i` is
//! the block with sequence number `i`. The tree is kept as stored perfect-subtree roots
//! ([`MerkleNode`]): appending a leaf completes at most one node per level, so the
//! journal stores about two nodes per block, and a digest or proof needs O(log n) reads.

use crate::hash::Hash;
use crate::ports::MerkleNode;

/// `SHA-256(0x00 ‖ block hash)`.
pub fn leaf_hash(block_hash: &Hash) -> Hash {
    Hash::of_parts(&[&[0x00], block_hash.as_bytes()])
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::of_parts(&[&[0x01], left.as_bytes(), right.as_bytes()])
}

/// The `(level, index)` of the perfect subtrees that make up a tree of `size` leaves, left
/// to right (largest first): one per set bit of `size`.
pub(crate) fn frontier_ids(size: u64) -> Vec<(u8, u64)> {
    let mut ids = Vec::new();
    let mut covered = 0u64;
    for level in (0..64u8).rev() {
        let width = 1u64 << level;
        if size & width != 0 {
            ids.push((level, covered >> level));
            covered += width;
        }
    }
    ids
}

/// The right edge of the tree: the roots of its perfect subtrees, enough to append leaves
/// and to compute the root without reading anything else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Largest (leftmost) subtree first.
    nodes: Vec<MerkleNode>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from the stored subtree roots listed by [`frontier_ids`].
    pub(crate) fn from_nodes(size: u64, hashes: &[Hash]) -> Option<Frontier> {
        let ids = frontier_ids(size);
        if ids.len() != hashes.len() {
            return None;
        }
        let nodes = ids
            .into_iter()
            .zip(hashes)
            .map(|((level, index), hash)| MerkleNode {
                level,
                index,
                hash: *hash,
            })
            .collect();
        Some(Frontier { size, nodes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the leaf for `block_hash`; returns every node it completes (the leaf
    /// itself included), which the journal stores.
    pub fn push(&mut self, block_hash: &Hash) -> Vec<MerkleNode> {
        let mut completed = Vec::new();
        self.push_into(block_hash, &mut completed);
        completed
    }

    /// [`Frontier::push`] into a buffer the caller reuses (it is cleared first): loops over
    /// millions of blocks (verification) should not allocate per block.
    pub(crate) fn push_into(&mut self, block_hash: &Hash, completed: &mut Vec<MerkleNode>) {
        completed.clear();
        let mut node = MerkleNode {
            level: 0,
            index: self.size,
            hash: leaf_hash(block_hash),
        };
        completed.push(node);
        while node.index % 2 == 1 {
            let Some(left) = self.nodes.pop() else { break };
            node = MerkleNode {
                level: node.level + 1,
                index: node.index / 2,
                hash: node_hash(&left.hash, &node.hash),
            };
            completed.push(node);
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The tree head (`None` for the empty tree).
    pub fn root(&self) -> Option<Hash> {
        let mut nodes = self.nodes.iter().rev();
        let mut acc = nodes.next()?.hash;
        for left in nodes {
            acc = node_hash(&left.hash, &acc);
        }
        Some(acc)
    }
}

/// The RFC 9162 Merkle tree hash of `leaves` (block hashes), computed directly. The
/// reference against which the stored, incremental tree is checked.
pub fn root_of(block_hashes: &[Hash]) -> Option<Hash> {
    fn mth(leaves: &[Hash]) -> Hash {
        if leaves.len() == 1 {
            return leaf_hash(&leaves[0]);
        }
        let k = largest_power_of_two_below(leaves.len() as u64) as usize;
        node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
    }
    (!block_hashes.is_empty()).then(|| mth(block_hashes))
}

/// The largest power of two strictly less than `n` (for `n ≥ 2`).
pub(crate) fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| Hash::of(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn frontier_root_equals_reference_for_every_size() {
        let leaves = hashes(70);
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), None);
        for n in 1..=leaves.len() {
            frontier.push(&leaves[n - 1]);
            assert_eq!(frontier.root(), root_of(&leaves[..n]), "size {n}");
        }
    }

    #[test]
    fn frontier_reloads_from_its_ids() {
        let leaves = hashes(13);
        let mut frontier = Frontier::new();
        let mut stored = std::collections::HashMap::new();
        for leaf in &leaves {
            for node in frontier.push(leaf) {
                stored.insert((node.level, node.index), node.hash);
            }
        }
        let ids = frontier_ids(13);
        assert_eq!(ids, vec![(3, 0), (2, 2), (0, 12)]);
        let found: Vec<Hash> = ids.iter().map(|id| stored[id]).collect();
        let reloaded = Frontier::from_nodes(13, &found).expect("matching ids");
        assert_eq!(reloaded, frontier);
    }

    #[test]
    fn known_vector_two_leaves() {
        let a = Hash::ZERO;
        let b = Hash([1; 32]);
        let expected = node_hash(&leaf_hash(&a), &leaf_hash(&b));
        assert_eq!(root_of(&[a, b]), Some(expected));
    }
}
