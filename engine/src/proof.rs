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

    /// A consistency proof leads to another root for the first tree.
    #[error("the consistency proof leads to first root {computed}, not to the expected {expected}")]
    FirstRootMismatch {
        /// The first root the path leads to.
        computed: Hash,
        /// The first root the caller trusts.
        expected: Hash,
    },

    /// A consistency proof leads to another root for the second tree. For equal sizes the
    /// (empty) proof "leads to" the first root, which must then equal the second.
    #[error("the consistency proof leads to second root {computed}, not to the expected {expected}")]
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
    let held = journal.last_sequence().await?.map_or(0, |last| last + 1);
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
            Error::Corrupt(format!("empty leaf range {}..{} in a proof", range.0, range.1))
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
            node_hash(
                &reference_mth(&leaves[..k]),
                &reference_mth(&leaves[k..]),
            )
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
        (reference_path(m - k, &leaves[k..]), reference_mth(&leaves[..k]))
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
