//! Merkle proofs over the journal's digest: that a block is under a digest (inclusion),
//! and that a later digest extends an earlier one (consistency), as RFC 9162 §2.1.3 and
//! §2.1.4 define them.
//!
//! # Three parts
//!
//! - **Verifiers** ([`verify_inclusion`], [`verify_consistency`]): pure functions that
//!   need only the proof and digests saved earlier. They follow RFC 9162 §2.1.3.2 and
//!   §2.1.4.2 step by step, after checking the path length up front so a failure says
//!   exactly what is wrong ([`ProofError`]).
//! - **Generators over stored nodes** ([`inclusion_proof`], [`consistency_proof`]): every
//!   hash on a proof path is the Merkle tree hash of a range of leaves. Each range
//!   decomposes into a few perfect subtrees, whose roots the journal stores
//!   ([`MerkleNode`](crate::ports::MerkleNode)); the generators read all of them in one
//!   [`Journal::merkle_nodes`] call and fold them. A proof costs O(log n) node reads
//!   (O(log² n) at worst), never a scan.
//! - **Reference generators** ([`inclusion_path`], [`consistency_path`]): RFC 9162's
//!   recursive `PATH` and `SUBPROOF` over an in-memory list of block hashes, written as
//!   literally as possible. They are O(n) and serve as the oracle the stored-node
//!   generators are tested against.
//!
//! # What a proof does not bind
//!
//! A root hash does not say how many leaves its tree has. For some pairs of sizes the RFC
//! verification performs exactly the same hash operations (for example leaf 0 in trees
//! of 3 and of 4 leaves), so a proof whose size was altered can still verify against the
//! original root. Callers must therefore take the tree size from the digest they trust
//! (`sequence + 1`) and check that the proof's size equals it, as RFC 9162 clients do
//! with signed tree heads.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::merkle::{largest_power_of_two_below, leaf_hash, node_hash};
use crate::ports::Journal;

/// Proof that the block at `leaf_index` is in the tree of `tree_size` leaves
/// (RFC 9162 `inclusion_proof_v2`, without the log id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    /// The leaf: the block's sequence number.
    pub leaf_index: u64,
    /// Leaves in the tree proved against: the digest's sequence + 1.
    pub tree_size: u64,
    /// Sibling subtree hashes from the leaf up to the root.
    pub path: Vec<Hash>,
}

/// Proof that the tree of `first_size` leaves is a prefix of the tree of `second_size`
/// leaves (RFC 9162 `consistency_proof_v2`, without the log id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencyProof {
    /// Leaves in the earlier tree.
    pub first_size: u64,
    /// Leaves in the later tree.
    pub second_size: u64,
    /// Subtree hashes, as RFC 9162 `PROOF(first_size, D[second_size])` lists them.
    pub path: Vec<Hash>,
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {leaf_index} is out of range for a tree of {tree_size} leaves")]
    LeafIndexOutOfRange {
        /// The proof's leaf index.
        leaf_index: u64,
        /// The proof's tree size.
        tree_size: u64,
    },

    /// A consistency proof from the empty tree: it has no root to prove anything about.
    #[error("the first tree size is 0: the empty tree has no root to prove consistency from")]
    EmptyFirstTree,

    /// A consistency proof from a larger tree to a smaller one.
    #[error("the first tree size {first_size} is larger than the second tree size {second_size}")]
    FirstLargerThanSecond {
        /// The proof's first size.
        first_size: u64,
        /// The proof's second size.
        second_size: u64,
    },

    /// The path does not have the length these sizes call for (truncated or extended).
    #[error("the proof path has {actual} hashes; a proof for these sizes has exactly {expected}")]
    WrongPathLength {
        /// The length RFC 9162 gives for these sizes.
        expected: usize,
        /// The proof's length.
        actual: usize,
    },

    /// An inclusion proof leads to another root.
    #[error("the inclusion proof leads to root {computed}, not to the expected root {expected}")]
    RootMismatch {
        /// The root the path leads to.
        computed: Hash,
        /// The root the caller trusts.
        expected: Hash,
    },

    /// A consistency proof leads to another root for the first tree. (When the first
    /// size is a power of two the RFC starts from the first root itself, so a wrong first
    /// root shows up as [`ProofError::SecondRootMismatch`] instead.)
    #[error("the consistency proof leads to first root {computed}, not to the expected {expected}")]
    FirstRootMismatch {
        /// The first root the path leads to.
        computed: Hash,
        /// The first root the caller trusts.
        expected: Hash,
    },

    /// A consistency proof leads to another root for the second tree. For equal sizes the
    /// (empty) proof "leads to" the first root, which must then equal the second.
    #[error(
        "the consistency proof leads to second root {computed}, not to the expected {expected}"
    )]
    SecondRootMismatch {
        /// The second root the path leads to.
        computed: Hash,
        /// The second root the caller trusts.
        expected: Hash,
    },
}

// ---------------------------------------------------------------------------------------
// Verifiers (RFC 9162 §2.1.3.2 and §2.1.4.2)
// ---------------------------------------------------------------------------------------

/// Verifies that the block whose hash is `block_hash` is leaf `proof.leaf_index` of the
/// tree of `proof.tree_size` leaves whose root is `root` (RFC 9162 §2.1.3.2).
///
/// `root` must be the root of a tree of exactly `proof.tree_size` leaves: check the
/// proof's size against the trusted digest (see the module docs).
pub fn verify_inclusion(
    block_hash: &Hash,
    proof: &InclusionProof,
    root: &Hash,
) -> Result<(), ProofError> {
    verify_inclusion_of_leaf(
        &leaf_hash(block_hash),
        proof.leaf_index,
        proof.tree_size,
        &proof.path,
        root,
    )
}

/// Verifies that the tree of `proof.first_size` leaves with root `first_root` is a prefix
/// of the tree of `proof.second_size` leaves with root `second_root` (RFC 9162 §2.1.4.2).
///
/// RFC 9162 defines the proof for `0 < first_size < second_size`. For equal sizes this
/// accepts exactly the empty proof with equal roots; `first_size = 0` is refused, since
/// an empty tree has no root to compare.
pub fn verify_consistency(
    proof: &ConsistencyProof,
    first_root: &Hash,
    second_root: &Hash,
) -> Result<(), ProofError> {
    let (first_size, second_size) = (proof.first_size, proof.second_size);
    if first_size == 0 {
        return Err(ProofError::EmptyFirstTree);
    }
    if first_size > second_size {
        return Err(ProofError::FirstLargerThanSecond {
            first_size,
            second_size,
        });
    }
    if first_size == second_size {
        if !proof.path.is_empty() {
            return Err(ProofError::WrongPathLength {
                expected: 0,
                actual: proof.path.len(),
            });
        }
        if first_root != second_root {
            return Err(ProofError::SecondRootMismatch {
                computed: *first_root,
                expected: *second_root,
            });
        }
        return Ok(());
    }
    let (fr, sr) = roots_from_consistency(first_size, second_size, first_root, &proof.path)?;
    if fr != *first_root {
        return Err(ProofError::FirstRootMismatch {
            computed: fr,
            expected: *first_root,
        });
    }
    if sr != *second_root {
        return Err(ProofError::SecondRootMismatch {
            computed: sr,
            expected: *second_root,
        });
    }
    Ok(())
}

/// [`verify_inclusion`] over a leaf hash (`SHA-256(0x00 ‖ entry)`) rather than a block
/// hash, so the RFC 6962 test vectors, whose entries are not 32 bytes, apply directly.
fn verify_inclusion_of_leaf(
    leaf: &Hash,
    leaf_index: u64,
    tree_size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion(leaf, leaf_index, tree_size, path)?;
    if computed != *root {
        return Err(ProofError::RootMismatch {
            computed,
            expected: *root,
        });
    }
    Ok(())
}

/// RFC 9162 §2.1.3.2 steps 1–5, returning `r` for the caller to compare with the root.
fn root_from_inclusion(
    leaf: &Hash,
    leaf_index: u64,
    tree_size: u64,
    path: &[Hash],
) -> Result<Hash, ProofError> {
    // Step 1.
    if leaf_index >= tree_size {
        return Err(ProofError::LeafIndexOutOfRange {
            leaf_index,
            tree_size,
        });
    }
    // Not in the RFC's steps, which reject a wrong length only implicitly (steps 4a and
    // 5); checking it first names the failure precisely and changes nothing else.
    let expected = inclusion_ranges(leaf_index, tree_size).len();
    let wrong_length = ProofError::WrongPathLength {
        expected,
        actual: path.len(),
    };
    if path.len() != expected {
        return Err(wrong_length);
    }
    // Steps 2 and 3.
    let (mut fn_, mut sn) = (leaf_index, tree_size - 1);
    let mut r = *leaf;
    // Step 4.
    for p in path {
        if sn == 0 {
            return Err(wrong_length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5 (the root comparison is the caller's).
    if sn != 0 {
        return Err(wrong_length);
    }
    Ok(r)
}

/// RFC 9162 §2.1.4.2 steps 1–6 for `0 < first_size < second_size`, returning `(fr, sr)`
/// for the caller to compare with the two roots (step 7).
fn roots_from_consistency(
    first_size: u64,
    second_size: u64,
    first_root: &Hash,
    path: &[Hash],
) -> Result<(Hash, Hash), ProofError> {
    // As for inclusion: the length is checked first for a precise error; steps 1, 6a and
    // 7 would reject a wrong length too.
    let expected = consistency_ranges(first_size, second_size).len();
    let wrong_length = ProofError::WrongPathLength {
        expected,
        actual: path.len(),
    };
    // Step 1.
    if path.is_empty() || path.len() != expected {
        return Err(wrong_length);
    }
    // Step 2.
    let prefix = first_size.is_power_of_two().then_some(first_root);
    let mut items = prefix.into_iter().chain(path);
    // Step 3.
    let (mut fn_, mut sn) = (first_size - 1, second_size - 1);
    // Step 4.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    let Some(&first) = items.next() else {
        return Err(wrong_length);
    };
    let (mut fr, mut sr) = (first, first);
    // Step 6.
    for c in items {
        if sn == 0 {
            return Err(wrong_length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7 (the root comparisons are the caller's).
    if sn != 0 {
        return Err(wrong_length);
    }
    Ok((fr, sr))
}

// ---------------------------------------------------------------------------------------
// The shape of a proof: which leaf ranges its hashes cover
// ---------------------------------------------------------------------------------------

/// A half-open range of leaves `[start, end)`.
type LeafRange = (u64, u64);

/// The leaf ranges whose tree hashes make up `PATH(index, D[0:size])`, in the RFC's
/// order (from the leaf up). `index < size`.
///
/// The iterative form of RFC 9162 §2.1.3.1: descend from the root, keeping the half that
/// holds the leaf and recording the other half.
fn inclusion_ranges(index: u64, size: u64) -> Vec<LeafRange> {
    let mut ranges = Vec::new();
    let (mut lo, mut hi) = (0, size);
    while hi - lo > 1 {
        let k = largest_power_of_two_below(hi - lo);
        if index < lo + k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
        }
    }
    ranges.reverse();
    ranges
}

/// The leaf ranges whose tree hashes make up `PROOF(first, D[0:second])`, in the RFC's
/// order. `0 < first ≤ second`; empty when they are equal.
///
/// The iterative form of RFC 9162 §2.1.4.1 `SUBPROOF(m, D[n], b)`.
fn consistency_ranges(first: u64, second: u64) -> Vec<LeafRange> {
    let mut ranges = Vec::new();
    let (mut lo, mut hi) = (0, second);
    let mut whole_first_tree_known = true; // the RFC's `b`
    loop {
        let size = hi - lo;
        let m = first - lo;
        if m == size {
            if !whole_first_tree_known {
                ranges.push((lo, hi));
            }
            break;
        }
        let k = largest_power_of_two_below(size);
        if m <= k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
            whole_first_tree_known = false;
        }
    }
    ranges.reverse();
    ranges
}

/// The stored perfect subtrees `(level, index)` that make up the range, largest first.
///
/// Every range of a proof starts at a multiple of the power of two at or above its
/// length (the RFC splits at powers of two), so its binary decomposition is aligned and
/// every piece is a node the journal stores.
fn subtree_ids((start, end): LeafRange) -> Vec<(u8, u64)> {
    let size = end - start;
    let mut ids = Vec::new();
    let mut at = start;
    for level in (0..64u8).rev() {
        let width = 1u64 << level;
        if size & width != 0 {
            debug_assert_eq!(at % width, 0, "unaligned proof range {start}..{end}");
            ids.push((level, at >> level));
            at += width;
        }
    }
    ids
}

/// The tree hash of a range from its subtree roots (largest first): the RFC's split at
/// the largest power of two below the length takes the first subtree as the left child
/// and recurses on the rest, so fold from the right.
fn fold_subtrees(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(
        rest.iter()
            .rev()
            .fold(*last, |acc, left| node_hash(left, &acc)),
    )
}

// ---------------------------------------------------------------------------------------
// Generators over stored nodes
// ---------------------------------------------------------------------------------------

/// The inclusion proof of block `leaf_index` in the tree of the first `tree_size` blocks,
/// from O(log n) stored nodes read in one [`Journal::merkle_nodes`] call.
///
/// [`Error::Invalid`] if `leaf_index ≥ tree_size`; [`Error::NotFound`] if the journal
/// holds fewer than `tree_size` blocks; [`Error::ChainBroken`] if a node that must be
/// stored is missing.
pub async fn inclusion_proof(
    journal: &dyn Journal,
    leaf_index: u64,
    tree_size: u64,
) -> Result<InclusionProof> {
    if tree_size == 0 {
        return Err(Error::invalid(
            "treeSize",
            "the empty tree has no leaves; ask for a tree of at least one block",
        ));
    }
    if leaf_index >= tree_size {
        return Err(Error::invalid(
            "leafIndex",
            format!(
                "block {leaf_index} is not in a tree of {tree_size} blocks (sequences \
                 0..={}); ask for a later digest",
                tree_size - 1
            ),
        ));
    }
    ensure_stored(journal, tree_size).await?;
    let path = range_hashes(journal, &inclusion_ranges(leaf_index, tree_size)).await?;
    Ok(InclusionProof {
        leaf_index,
        tree_size,
        path,
    })
}

/// The consistency proof from the tree of the first `first_size` blocks to the tree of
/// the first `second_size` blocks, from O(log n) stored nodes read in one
/// [`Journal::merkle_nodes`] call. Equal sizes give the empty proof.
///
/// [`Error::Invalid`] if `first_size` is 0 or larger than `second_size`;
/// [`Error::NotFound`] if the journal holds fewer than `second_size` blocks;
/// [`Error::ChainBroken`] if a node that must be stored is missing.
pub async fn consistency_proof(
    journal: &dyn Journal,
    first_size: u64,
    second_size: u64,
) -> Result<ConsistencyProof> {
    if first_size == 0 {
        return Err(Error::invalid(
            "firstSize",
            "the empty tree has no root to prove consistency from; ask from a tree of at \
             least one block",
        ));
    }
    if first_size > second_size {
        return Err(Error::invalid(
            "firstSize",
            format!(
                "a tree of {first_size} blocks cannot be a prefix of a tree of {second_size}; \
                 put the earlier digest first"
            ),
        ));
    }
    ensure_stored(journal, second_size).await?;
    let path = range_hashes(journal, &consistency_ranges(first_size, second_size)).await?;
    Ok(ConsistencyProof {
        first_size,
        second_size,
        path,
    })
}

/// [`Error::NotFound`] unless the journal holds at least `tree_size` blocks.
async fn ensure_stored(journal: &dyn Journal, tree_size: u64) -> Result<()> {
    let held = journal
        .last_sequence()
        .await?
        .map_or(0, |last| last.saturating_add(1));
    if tree_size > held {
        return Err(Error::NotFound {
            what: format!("a digest over {tree_size} blocks (the journal holds {held})"),
        });
    }
    Ok(())
}

/// The tree hash of each range, from one read of all the stored subtrees they need.
async fn range_hashes(journal: &dyn Journal, ranges: &[LeafRange]) -> Result<Vec<Hash>> {
    let pieces: Vec<Vec<(u8, u64)>> = ranges.iter().map(|&r| subtree_ids(r)).collect();
    let ids: Vec<(u8, u64)> = pieces.concat();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found = journal.merkle_nodes(&ids).await?;
    if found.len() != ids.len() {
        return Err(Error::Corrupt(format!(
            "asked the journal for {} Merkle nodes and got {}",
            ids.len(),
            found.len()
        )));
    }
    let mut found = found.into_iter().zip(&ids);
    let mut path = Vec::with_capacity(ranges.len());
    for (range, piece) in ranges.iter().zip(&pieces) {
        let hashes = found
            .by_ref()
            .take(piece.len())
            .map(|(hash, &(level, index))| hash.ok_or_else(|| missing_node(level, index)))
            .collect::<Result<Vec<Hash>>>()?;
        let hash = fold_subtrees(&hashes).ok_or_else(|| {
            Error::Corrupt(format!(
                "empty leaf range {}..{} in a proof",
                range.0, range.1
            ))
        })?;
        path.push(hash);
    }
    Ok(path)
}

/// A node every journal of this size must hold is absent: report it at the block whose
/// append completed it.
fn missing_node(level: u8, index: u64) -> Error {
    let last_leaf = index
        .checked_add(1)
        .and_then(|i| i.checked_shl(u32::from(level)))
        .map_or(u64::MAX, |end| end - 1);
    Error::ChainBroken {
        sequence: last_leaf,
        detail: format!("Merkle node (level {level}, index {index}) is not stored"),
    }
}

// ---------------------------------------------------------------------------------------
// Reference generators (RFC 9162 §2.1.3.1 and §2.1.4.1, literally)
// ---------------------------------------------------------------------------------------

/// RFC 9162 `PATH(index, D[n])` over the block hashes `D` (leaf `i` = block `i`), by the
/// RFC's recursive definition; `None` if `index` is out of range. O(n): a test oracle and
/// a tool for offline checks, not for serving.
pub fn inclusion_path(block_hashes: &[Hash], index: u64) -> Option<Vec<Hash>> {
    let leaves: Vec<Hash> = block_hashes.iter().map(leaf_hash).collect();
    let index = usize::try_from(index).ok()?;
    (index < leaves.len()).then(|| reference_path(index, &leaves))
}

/// RFC 9162 `PROOF(first_size, D[n])` over the block hashes `D`, by the RFC's recursive
/// `SUBPROOF`; empty when `first_size = n`, `None` if `first_size` is 0 or above `n`.
/// O(n): a test oracle and a tool for offline checks, not for serving.
pub fn consistency_path(block_hashes: &[Hash], first_size: u64) -> Option<Vec<Hash>> {
    let leaves: Vec<Hash> = block_hashes.iter().map(leaf_hash).collect();
    let m = usize::try_from(first_size).ok()?;
    (m >= 1 && m <= leaves.len()).then(|| reference_subproof(m, &leaves, true))
}

/// `MTH(D)` over leaf hashes (already `SHA-256(0x00 ‖ d)`).
fn reference_mth(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => Hash::of(&[]),
        [leaf] => *leaf,
        _ => {
            let k = split_point(leaves.len());
            node_hash(&reference_mth(&leaves[..k]), &reference_mth(&leaves[k..]))
        }
    }
}

/// `PATH(m, D[n])` over leaf hashes.
fn reference_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let k = split_point(leaves.len());
    let (mut path, sibling) = if m < k {
        (reference_path(m, &leaves[..k]), reference_mth(&leaves[k..]))
    } else {
        (
            reference_path(m - k, &leaves[k..]),
            reference_mth(&leaves[..k]),
        )
    };
    path.push(sibling);
    path
}

/// `SUBPROOF(m, D[n], b)` over leaf hashes.
fn reference_subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b {
            Vec::new()
        } else {
            vec![reference_mth(leaves)]
        };
    }
    let k = split_point(n);
    let (mut proof, other) = if m <= k {
        (
            reference_subproof(m, &leaves[..k], b),
            reference_mth(&leaves[k..]),
        )
    } else {
        (
            reference_subproof(m - k, &leaves[k..], false),
            reference_mth(&leaves[..k]),
        )
    };
    proof.push(other);
    proof
}

/// The largest power of two strictly below `n ≥ 2`, as an index.
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use proptest::prelude::*;

    use super::*;
    use crate::block::EncodedBlock;
    use crate::memory::MemoryJournal;
    use crate::merkle::{Frontier, root_of};
    use crate::ports::{AppendBatch, MerkleNode};

    /// An in-memory journal of `size` blocks storing `nodes`. Proofs read only the tip and
    /// the Merkle nodes, so the blocks' frames are left empty.
    fn journal_with(size: u64, nodes: impl IntoIterator<Item = MerkleNode>) -> MemoryJournal {
        let journal = MemoryJournal::new();
        let batch = AppendBatch {
            blocks: (0..size)
                .map(|sequence| EncodedBlock {
                    sequence,
                    bytes: Vec::new(),
                })
                .collect(),
            merkle_nodes: nodes.into_iter().collect(),
            ..AppendBatch::default()
        };
        journal
            .append(batch)
            .now_or_never()
            .expect("an in-memory append completes at once")
            .expect("append");
        journal
    }

    /// The nodes `Frontier::push` completes for these blocks, as a journal stores them.
    fn frontier_nodes(block_hashes: &[Hash]) -> Vec<MerkleNode> {
        let mut frontier = Frontier::new();
        block_hashes
            .iter()
            .flat_map(|hash| frontier.push(hash))
            .collect()
    }

    /// A journal of these blocks.
    fn journal_of(block_hashes: &[Hash]) -> MemoryJournal {
        journal_with(block_hashes.len() as u64, frontier_nodes(block_hashes))
    }

    /// The same nodes built from leaf hashes directly (for the RFC 6962 vectors, whose
    /// entries are not block hashes): every perfect subtree, level by level.
    fn journal_of_leaf_hashes(leaves: &[Hash]) -> MemoryJournal {
        let mut nodes = Vec::new();
        let mut level: Vec<Hash> = leaves.to_vec();
        let mut height = 0u8;
        while !level.is_empty() {
            for (i, hash) in level.iter().enumerate() {
                nodes.push(MerkleNode {
                    level: height,
                    index: i as u64,
                    hash: *hash,
                });
            }
            level = level
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            height += 1;
        }
        journal_with(leaves.len() as u64, nodes)
    }

    /// `(calls, nodes asked)` of Merkle-node reads since the last look.
    fn take_counts(journal: &MemoryJournal) -> (usize, usize) {
        let reads = journal.take_merkle_reads();
        (reads.calls, reads.nodes)
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    /// Distinct block hashes; a longer list extends a shorter one with the same seed.
    fn blocks(seed: u64, n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| Hash::of_parts(&[&seed.to_be_bytes(), &i.to_be_bytes()]))
            .collect()
    }

    /// `roots[s]` is the root of the first `s` blocks (`roots[0]` unused).
    fn prefix_roots(block_hashes: &[Hash]) -> Vec<Hash> {
        let mut frontier = Frontier::new();
        let mut roots = vec![Hash::ZERO];
        for hash in block_hashes {
            frontier.push(hash);
            roots.push(frontier.root().expect("non-empty"));
        }
        roots
    }

    fn h(hex: &str) -> Hash {
        hex.parse().expect("64 hex digits")
    }

    fn bits(n: u64) -> usize {
        (64 - n.leading_zeros()) as usize
    }

    // -- RFC 6962 test vectors (Certificate Transparency; as published in
    //    transparency-dev/merkle proof/verify_test.go, leaf numbers there are 1-based) --

    const CT_ENTRIES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// `(leaf index (0-based), tree size, path)`.
    const CT_INCLUSION: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    /// `(first size, second size, path)`.
    const CT_CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn ct_leaves() -> Vec<Hash> {
        CT_ENTRIES
            .iter()
            .map(|e| Hash::of_parts(&[&[0x00], &hex::decode(e).expect("hex")]))
            .collect()
    }

    fn hashes_of(hexes: &[&str]) -> Vec<Hash> {
        hexes.iter().map(|x| h(x)).collect()
    }

    #[test]
    fn rfc6962_vectors_roots() {
        let leaves = ct_leaves();
        assert_eq!(
            reference_mth(&[]),
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        for size in 1..=8 {
            assert_eq!(
                reference_mth(&leaves[..size]),
                h(CT_ROOTS[size - 1]),
                "size {size}"
            );
        }
    }

    #[test]
    fn rfc6962_vectors_inclusion() {
        let leaves = ct_leaves();
        let journal = journal_of_leaf_hashes(&leaves);
        for (index, size, path) in CT_INCLUSION {
            let path = hashes_of(path);
            let root = h(CT_ROOTS[size as usize - 1]);
            let leaf = leaves[index as usize];
            assert_eq!(
                reference_path(index as usize, &leaves[..size as usize]),
                path,
                "reference PATH({index}, D[{size}])"
            );
            let stored = block_on(inclusion_proof(&journal, index, size)).expect("proof");
            assert_eq!(stored.path, path, "stored PATH({index}, D[{size}])");
            verify_inclusion_of_leaf(&leaf, index, size, &path, &root).expect("verifies");
            // The corruptions the CT suite probes.
            let other_root = h(CT_ROOTS[(size as usize) % 8]);
            assert!(verify_inclusion_of_leaf(&leaf, index, size, &path, &other_root).is_err());
            assert!(verify_inclusion_of_leaf(&leaf, index + 1, size, &path, &root).is_err());
            if index > 0 {
                assert!(verify_inclusion_of_leaf(&leaf, index - 1, size, &path, &root).is_err());
            }
            assert!(verify_inclusion_of_leaf(&leaf, index, size * 2, &path, &root).is_err());
            let wrong_leaf = Hash::of(b"WrongLeaf");
            assert!(verify_inclusion_of_leaf(&wrong_leaf, index, size, &path, &root).is_err());
            let mut extended = path.clone();
            extended.push(root);
            assert!(verify_inclusion_of_leaf(&leaf, index, size, &extended, &root).is_err());
            let mut preceded = vec![root];
            preceded.extend(&path);
            assert!(verify_inclusion_of_leaf(&leaf, index, size, &preceded, &root).is_err());
        }
    }

    #[test]
    fn rfc6962_vectors_consistency() {
        let leaves = ct_leaves();
        let journal = journal_of_leaf_hashes(&leaves);
        for (first, second, path) in CT_CONSISTENCY {
            let path = hashes_of(path);
            let first_root = h(CT_ROOTS[first as usize - 1]);
            let second_root = h(CT_ROOTS[second as usize - 1]);
            assert_eq!(
                reference_subproof(first as usize, &leaves[..second as usize], true),
                path,
                "reference PROOF({first}, D[{second}])"
            );
            let stored = block_on(consistency_proof(&journal, first, second)).expect("proof");
            assert_eq!(stored.path, path, "stored PROOF({first}, D[{second}])");
            verify_consistency(&stored, &first_root, &second_root).expect("verifies");
            if first < second {
                let swapped = verify_consistency(&stored, &second_root, &first_root);
                assert!(swapped.is_err());
                let truncated = ConsistencyProof {
                    path: path[..path.len() - 1].to_vec(),
                    ..stored.clone()
                };
                assert!(verify_consistency(&truncated, &first_root, &second_root).is_err());
                let mut doubled = stored.clone();
                doubled.path.insert(0, path[0]);
                assert!(verify_consistency(&doubled, &first_root, &second_root).is_err());
            }
        }
    }

    // -- Trees built by hand, as drawn in RFC 6962 §2.1.3 --

    #[test]
    fn hand_built_tree_of_seven() {
        let d = blocks(7, 7);
        let [a, b, c, dd, e, f, j] = [0, 1, 2, 3, 4, 5, 6].map(|i| leaf_hash(&d[i]));
        let g = node_hash(&a, &b);
        let hh = node_hash(&c, &dd);
        let i = node_hash(&e, &f);
        let k = node_hash(&g, &hh);
        let l = node_hash(&i, &j);
        let root = node_hash(&k, &l);
        assert_eq!(root_of(&d), Some(root));
        let hash0 = node_hash(&g, &c); // the tree of 3 leaves
        let hash1 = k; // 4 leaves
        let hash2 = node_hash(&k, &i); // 6 leaves

        let journal = journal_of(&d);
        for (leaf, path) in [
            (0, vec![b, hh, l]),
            (3, vec![c, g, l]),
            (4, vec![f, j, k]),
            (6, vec![i, k]),
        ] {
            assert_eq!(
                inclusion_path(&d, leaf).as_ref(),
                Some(&path),
                "leaf {leaf}"
            );
            let proof = block_on(inclusion_proof(&journal, leaf, 7)).expect("proof");
            assert_eq!(proof.path, path, "stored, leaf {leaf}");
            verify_inclusion(&d[leaf as usize], &proof, &root).expect("verifies");
        }
        for (first, first_root, path) in [
            (3, hash0, vec![c, dd, g, l]),
            (4, hash1, vec![l]),
            (6, hash2, vec![i, j, k]),
        ] {
            assert_eq!(
                consistency_path(&d, first).as_ref(),
                Some(&path),
                "from {first}"
            );
            let proof = block_on(consistency_proof(&journal, first, 7)).expect("proof");
            assert_eq!(proof.path, path, "stored, from {first}");
            verify_consistency(&proof, &first_root, &root).expect("verifies");
        }
    }

    #[test]
    fn hand_built_tree_of_eight() {
        let d = blocks(8, 8);
        let [a, b, c, dd, e, f, g, hh] = [0, 1, 2, 3, 4, 5, 6, 7].map(|i| leaf_hash(&d[i]));
        let i = node_hash(&a, &b);
        let j = node_hash(&c, &dd);
        let k = node_hash(&e, &f);
        let l = node_hash(&g, &hh);
        let m = node_hash(&i, &j);
        let n = node_hash(&k, &l);
        let root = node_hash(&m, &n);
        assert_eq!(root_of(&d), Some(root));

        let journal = journal_of(&d);
        for (leaf, path) in [(0, vec![b, j, n]), (5, vec![e, l, m]), (7, vec![g, k, m])] {
            assert_eq!(
                inclusion_path(&d, leaf).as_ref(),
                Some(&path),
                "leaf {leaf}"
            );
            let proof = block_on(inclusion_proof(&journal, leaf, 8)).expect("proof");
            assert_eq!(proof.path, path, "stored, leaf {leaf}");
            verify_inclusion(&d[leaf as usize], &proof, &root).expect("verifies");
        }
        for (first, first_root, path) in [
            (1, a, vec![b, j, n]),
            (2, i, vec![j, n]),
            (5, node_hash(&m, &e), vec![e, f, l, m]),
            (7, node_hash(&m, &node_hash(&k, &g)), vec![g, hh, k, m]),
            (8, root, vec![]),
        ] {
            assert_eq!(
                consistency_path(&d, first).as_ref(),
                Some(&path),
                "from {first}"
            );
            let proof = block_on(consistency_proof(&journal, first, 8)).expect("proof");
            assert_eq!(proof.path, path, "stored, from {first}");
            verify_consistency(&proof, &first_root, &root).expect("verifies");
        }
    }

    #[test]
    fn single_leaf_tree() {
        let d = blocks(1, 1);
        let root = leaf_hash(&d[0]);
        let journal = journal_of(&d);
        let proof = block_on(inclusion_proof(&journal, 0, 1)).expect("proof");
        assert!(proof.path.is_empty());
        verify_inclusion(&d[0], &proof, &root).expect("verifies");
        assert_eq!(
            verify_inclusion(&Hash::ZERO, &proof, &root),
            Err(ProofError::RootMismatch {
                computed: leaf_hash(&Hash::ZERO),
                expected: root
            })
        );
        // A single-leaf tree's node reads: none at all, the path is empty.
        assert_eq!(take_counts(&journal), (0, 0));
    }

    // -- Every pair up to 64 leaves, exhaustively --

    #[test]
    fn stored_proofs_equal_reference_for_every_pair_up_to_64() {
        let d = blocks(64, 64);
        let roots = prefix_roots(&d);
        let journal = journal_of(&d);
        block_on(async {
            for n in 1..=64u64 {
                let prefix = &d[..n as usize];
                for i in 0..n {
                    let proof = inclusion_proof(&journal, i, n).await.expect("proof");
                    assert_eq!(Some(&proof.path), inclusion_path(prefix, i).as_ref());
                    verify_inclusion(&d[i as usize], &proof, &roots[n as usize]).expect("verifies");
                    let (calls, asked) = take_counts(&journal);
                    assert!(calls <= 1 && asked <= bits(n) * bits(n), "{calls} {asked}");
                }
                for m in 1..=n {
                    let proof = consistency_proof(&journal, m, n).await.expect("proof");
                    assert_eq!(Some(&proof.path), consistency_path(prefix, m).as_ref());
                    verify_consistency(&proof, &roots[m as usize], &roots[n as usize])
                        .expect("verifies");
                    let (calls, asked) = take_counts(&journal);
                    assert!(calls <= 1 && asked <= bits(n) * bits(n), "{calls} {asked}");
                }
            }
        });
    }

    // -- Arguments and storage errors --

    #[test]
    fn generators_refuse_out_of_range_arguments() {
        let d = blocks(10, 10);
        let journal = journal_of(&d);
        block_on(async {
            let invalid = |r: Result<_>, field: &str| match r {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected Invalid({field}), got {other:?}"),
            };
            invalid(
                inclusion_proof(&journal, 0, 0).await.map(|_| ()),
                "treeSize",
            );
            invalid(
                inclusion_proof(&journal, 3, 3).await.map(|_| ()),
                "leafIndex",
            );
            invalid(
                consistency_proof(&journal, 0, 5).await.map(|_| ()),
                "firstSize",
            );
            invalid(
                consistency_proof(&journal, 6, 5).await.map(|_| ()),
                "firstSize",
            );
            assert!(matches!(
                inclusion_proof(&journal, 0, 11).await,
                Err(Error::NotFound { .. })
            ));
            assert!(matches!(
                consistency_proof(&journal, 1, 11).await,
                Err(Error::NotFound { .. })
            ));
            let same = consistency_proof(&journal, 10, 10).await.expect("proof");
            assert!(same.path.is_empty());
        });
    }

    #[test]
    fn a_missing_stored_node_is_a_broken_chain() {
        let d = blocks(10, 10);
        // Leaves 0..4, completed by block 3, lose their node.
        let nodes = frontier_nodes(&d)
            .into_iter()
            .filter(|node| (node.level, node.index) != (2, 0));
        let journal = journal_with(d.len() as u64, nodes);
        match block_on(inclusion_proof(&journal, 5, 10)) {
            Err(Error::ChainBroken { sequence, detail }) => {
                assert_eq!(sequence, 3);
                assert!(detail.contains("level 2, index 0"), "{detail}");
            }
            other => panic!("expected ChainBroken, got {other:?}"),
        }
    }

    // -- Verifier errors say what failed --

    #[test]
    fn verifier_errors_are_precise() {
        let d = blocks(5, 5);
        let roots = prefix_roots(&d);
        let path = inclusion_path(&d, 1).expect("in range");
        let proof = |leaf_index, tree_size, path: &[Hash]| InclusionProof {
            leaf_index,
            tree_size,
            path: path.to_vec(),
        };
        assert_eq!(
            verify_inclusion(&d[1], &proof(5, 5, &path), &roots[5]),
            Err(ProofError::LeafIndexOutOfRange {
                leaf_index: 5,
                tree_size: 5
            })
        );
        assert_eq!(
            verify_inclusion(&d[1], &proof(1, 5, &path[1..]), &roots[5]),
            Err(ProofError::WrongPathLength {
                expected: 3,
                actual: 2
            })
        );
        assert!(matches!(
            verify_inclusion(&d[1], &proof(1, 5, &path), &roots[4]),
            Err(ProofError::RootMismatch { .. })
        ));

        let consistency = |first_size, second_size, path: Vec<Hash>| ConsistencyProof {
            first_size,
            second_size,
            path,
        };
        let good = consistency_path(&d, 3).expect("in range");
        assert_eq!(
            verify_consistency(&consistency(0, 5, vec![]), &roots[1], &roots[5]),
            Err(ProofError::EmptyFirstTree)
        );
        assert_eq!(
            verify_consistency(&consistency(5, 2, good.clone()), &roots[5], &roots[2]),
            Err(ProofError::FirstLargerThanSecond {
                first_size: 5,
                second_size: 2
            })
        );
        assert_eq!(
            verify_consistency(&consistency(3, 5, vec![]), &roots[3], &roots[5]),
            Err(ProofError::WrongPathLength {
                expected: 4,
                actual: 0
            })
        );
        assert!(matches!(
            verify_consistency(&consistency(3, 5, good.clone()), &roots[2], &roots[5]),
            Err(ProofError::FirstRootMismatch { .. })
        ));
        assert!(matches!(
            verify_consistency(&consistency(3, 5, good.clone()), &roots[3], &roots[4]),
            Err(ProofError::SecondRootMismatch { .. })
        ));
        // Equal sizes: only the empty proof between equal roots.
        verify_consistency(&consistency(5, 5, vec![]), &roots[5], &roots[5]).expect("same");
        assert!(matches!(
            verify_consistency(&consistency(5, 5, vec![]), &roots[5], &roots[4]),
            Err(ProofError::SecondRootMismatch { .. })
        ));
        assert_eq!(
            verify_consistency(&consistency(5, 5, vec![roots[5]]), &roots[5], &roots[5]),
            Err(ProofError::WrongPathLength {
                expected: 0,
                actual: 1
            })
        );
    }

    /// Documents the limit stated in the module docs: the RFC verification does the same
    /// hash operations for leaf 0 of 3 leaves and of 4, so a root alone cannot tell which
    /// size a proof was made for. Callers check the size against their digest.
    #[test]
    fn the_tree_size_is_bound_by_the_digest_not_by_the_root() {
        let d = blocks(3, 3);
        let root = root_of(&d).expect("non-empty");
        let mut proof = InclusionProof {
            leaf_index: 0,
            tree_size: 3,
            path: inclusion_path(&d, 0).expect("in range"),
        };
        verify_inclusion(&d[0], &proof, &root).expect("honest");
        proof.tree_size = 4;
        assert_eq!(verify_inclusion(&d[0], &proof, &root), Ok(()));
    }

    #[test]
    fn proofs_serialize_as_camel_case_json_with_hex_hashes() {
        let proof = InclusionProof {
            leaf_index: 1,
            tree_size: 2,
            path: vec![Hash([0xab; 32])],
        };
        let json = serde_json::to_value(&proof).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({ "leafIndex": 1, "treeSize": 2, "path": ["ab".repeat(32)] })
        );
        let back: InclusionProof = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, proof);

        let proof = ConsistencyProof {
            first_size: 1,
            second_size: 3,
            path: vec![Hash::ZERO],
        };
        let json = serde_json::to_value(&proof).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({ "firstSize": 1, "secondSize": 3, "path": ["00".repeat(32)] })
        );
        let back: ConsistencyProof = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, proof);
    }

    // -- Property tests over random trees --

    /// A copy of `path` with one bit of entry `i` flipped.
    fn flipped(path: &[Hash], i: usize) -> Vec<Hash> {
        let mut path = path.to_vec();
        path[i].0[0] ^= 0x10;
        path
    }

    /// Copies of `path` swapped at each adjacent pair of distinct entries.
    fn swaps(path: &[Hash]) -> Vec<Vec<Hash>> {
        (1..path.len())
            .filter(|&i| path[i - 1] != path[i])
            .map(|i| {
                let mut p = path.to_vec();
                p.swap(i - 1, i);
                p
            })
            .collect()
    }

    /// Truncated and extended copies of `path`.
    fn wrong_lengths(path: &[Hash], root: Hash) -> Vec<Vec<Hash>> {
        let mut out = vec![];
        if !path.is_empty() {
            out.push(path[..path.len() - 1].to_vec());
            out.push(path[1..].to_vec());
        }
        for extra in [root, Hash::ZERO] {
            let mut p = path.to_vec();
            p.push(extra);
            out.push(p);
            let mut p = vec![extra];
            p.extend_from_slice(path);
            out.push(p);
        }
        out
    }

    proptest! {
        // Each case checks every leaf and every first size of a tree of up to 300 leaves
        // against the O(n) reference: about 2·n² hashes, so few cases suffice.
        #![proptest_config(ProptestConfig::with_cases(10))]

        /// For every leaf and every first size of a random tree, the stored-node generator
        /// gives the RFC's path, and it verifies; so do random smaller trees.
        #[test]
        fn stored_proofs_equal_the_reference_and_verify(
            n in 1u64..=300,
            seed in any::<u64>(),
            picks in prop::collection::vec((any::<u64>(), any::<u64>()), 8),
        ) {
            let d = blocks(seed, n);
            let roots = prefix_roots(&d);
            let journal = journal_of(&d);
            // The public reference functions hash the leaves on every call; hash them once.
            let leaves: Vec<Hash> = d.iter().map(leaf_hash).collect();
            block_on(async {
                for i in 0..n {
                    let proof = inclusion_proof(&journal, i, n).await.expect("proof");
                    assert_eq!(proof.path, reference_path(i as usize, &leaves), "leaf {i}");
                    verify_inclusion(&d[i as usize], &proof, &roots[n as usize])
                        .expect("verifies");
                }
                for m in 1..=n {
                    let proof = consistency_proof(&journal, m, n).await.expect("proof");
                    assert_eq!(proof.path, reference_subproof(m as usize, &leaves, true), "from {m}");
                    verify_consistency(&proof, &roots[m as usize], &roots[n as usize])
                        .expect("verifies");
                }
                for (a, b) in &picks {
                    let second = 1 + a % n;
                    let prefix = &leaves[..second as usize];
                    let first = 1 + b % second;
                    let leaf = b % second;
                    let proof = consistency_proof(&journal, first, second).await.expect("proof");
                    assert_eq!(proof.path, reference_subproof(first as usize, prefix, true));
                    verify_consistency(&proof, &roots[first as usize], &roots[second as usize])
                        .expect("verifies");
                    let proof = inclusion_proof(&journal, leaf, second).await.expect("proof");
                    assert_eq!(proof.path, reference_path(leaf as usize, prefix));
                    verify_inclusion(&d[leaf as usize], &proof, &roots[second as usize])
                        .expect("verifies");
                }
            });
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Forged inclusion proofs fail: wrong index, wrong size, wrong block, swapped or
        /// altered siblings, truncated or extended paths.
        #[test]
        fn forged_inclusion_proofs_fail(n in 1u64..=300, pick in any::<u64>(), seed in any::<u64>()) {
            let i = pick % n;
            let d = blocks(seed, 2 * n + 1);
            let roots = prefix_roots(&d);
            let root = roots[n as usize];
            let honest = InclusionProof {
                leaf_index: i,
                tree_size: n,
                path: inclusion_path(&d[..n as usize], i).expect("in range"),
            };
            let block = d[i as usize];
            prop_assert_eq!(verify_inclusion(&block, &honest, &root), Ok(()));
            let forged = |leaf_index, tree_size, path: Vec<Hash>| InclusionProof { leaf_index, tree_size, path };

            for j in [i.wrapping_sub(1), i + 1, i ^ 1, i ^ 2, n, u64::MAX] {
                if j != i {
                    let p = forged(j, n, honest.path.clone());
                    prop_assert!(verify_inclusion(&block, &p, &root).is_err(), "index {}", j);
                }
            }
            for size in [n - 1, n + 1, 2 * n, n / 2, 0] {
                if size != n {
                    let p = forged(i, size, honest.path.clone());
                    // Against the genuine root of the claimed size: always refused.
                    prop_assert!(verify_inclusion(&block, &p, &roots[size as usize]).is_err(), "size {}", size);
                    // Against the original root: refused whenever the shape differs.
                    if i >= size || inclusion_ranges(i, size).len() != honest.path.len() {
                        prop_assert!(verify_inclusion(&block, &p, &root).is_err(), "size {}", size);
                    }
                }
            }
            prop_assert!(verify_inclusion(&d[n as usize], &honest, &root).is_err());
            prop_assert!(verify_inclusion(&block, &honest, &Hash::ZERO).is_err());
            for k in 0..honest.path.len() {
                let p = forged(i, n, flipped(&honest.path, k));
                let result = verify_inclusion(&block, &p, &root);
                prop_assert!(matches!(result, Err(ProofError::RootMismatch { .. })), "{:?}", result);
            }
            for path in swaps(&honest.path) {
                let p = forged(i, n, path);
                let result = verify_inclusion(&block, &p, &root);
                prop_assert!(matches!(result, Err(ProofError::RootMismatch { .. })), "{:?}", result);
            }
            for path in wrong_lengths(&honest.path, root) {
                let p = forged(i, n, path);
                let result = verify_inclusion(&block, &p, &root);
                prop_assert!(matches!(result, Err(ProofError::WrongPathLength { .. })), "{:?}", result);
            }
        }

        /// Forged consistency proofs fail: wrong sizes, m > n, m = 0, swapped roots,
        /// swapped or altered entries, truncated or extended paths.
        #[test]
        fn forged_consistency_proofs_fail(n in 1u64..=300, pick in any::<u64>(), seed in any::<u64>()) {
            let m = 1 + pick % n;
            let d = blocks(seed, 2 * n + 1);
            let roots = prefix_roots(&d);
            let (first_root, second_root) = (roots[m as usize], roots[n as usize]);
            let honest = ConsistencyProof {
                first_size: m,
                second_size: n,
                path: consistency_path(&d[..n as usize], m).expect("in range"),
            };
            prop_assert_eq!(verify_consistency(&honest, &first_root, &second_root), Ok(()));
            let forged = |first_size, second_size, path: Vec<Hash>| ConsistencyProof { first_size, second_size, path };

            prop_assert_eq!(
                verify_consistency(&forged(0, n, honest.path.clone()), &first_root, &second_root),
                Err(ProofError::EmptyFirstTree)
            );
            let result = verify_consistency(&forged(n + 1, n, honest.path.clone()), &first_root, &second_root);
            prop_assert!(matches!(result, Err(ProofError::FirstLargerThanSecond { .. })), "{:?}", result);
            for first in [m - 1, m + 1, m ^ 1, m ^ 2] {
                if first != m && first >= 1 && first <= n {
                    let p = forged(first, n, honest.path.clone());
                    prop_assert!(verify_consistency(&p, &roots[first as usize], &second_root).is_err(), "first {}", first);
                }
            }
            for second in [n - 1, n + 1, 2 * n, n / 2] {
                if second != n && second >= m {
                    let p = forged(m, second, honest.path.clone());
                    prop_assert!(verify_consistency(&p, &first_root, &roots[second as usize]).is_err(), "second {}", second);
                    if consistency_ranges(m, second).len() != honest.path.len() {
                        prop_assert!(verify_consistency(&p, &first_root, &second_root).is_err(), "second {}", second);
                    }
                }
            }
            if m < n {
                prop_assert!(verify_consistency(&honest, &second_root, &first_root).is_err());
                prop_assert!(verify_consistency(&honest, &first_root, &roots[n as usize + 1]).is_err());
                prop_assert!(verify_consistency(&honest, &roots[m as usize - 1], &second_root).is_err());
            } else {
                prop_assert!(verify_consistency(&honest, &first_root, &roots[n as usize - 1]).is_err());
            }
            for k in 0..honest.path.len() {
                let p = forged(m, n, flipped(&honest.path, k));
                prop_assert!(verify_consistency(&p, &first_root, &second_root).is_err(), "flipped {}", k);
            }
            for path in swaps(&honest.path) {
                let p = forged(m, n, path);
                prop_assert!(verify_consistency(&p, &first_root, &second_root).is_err());
            }
            for path in wrong_lengths(&honest.path, second_root) {
                let p = forged(m, n, path);
                let result = verify_consistency(&p, &first_root, &second_root);
                prop_assert!(matches!(result, Err(ProofError::WrongPathLength { .. })), "{:?}", result);
            }
        }
    }
}
