//! One binary Merkle tree for every root Strata computes.
//!
//! Leaves are 32-byte hashes that the caller computes with its domain's leaf
//! function; a [`Domain`] says how two children make a parent. The shape is
//! the same everywhere: levels are built left to right, a node without a
//! sibling is carried up unchanged (so a tree of `n` leaves has no padding),
//! and a proof lists the siblings from the leaf up, skipping the levels where
//! the node was carried. The leaf's index decides the side at each level, so a
//! proof cannot be replayed for another position, and leaves and inner nodes
//! are hashed under different tags, so a leaf can never pass for an inner node.
//!
//! The domains, each with its tags, are in [`domains`]: the program's ledger
//! trees (SHA-256, a syscall on-chain), the engine's per-layer commitments and
//! the p2p chunk manifests (blake3).

use core::fmt;
use core::marker::PhantomData;

use crate::limits::MAX_PROOF_LEN;

pub mod domains;

/// How a domain hashes two children into their parent.
pub trait Domain {
    /// The parent of `left` and `right`.
    fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32];
}

/// Why a proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    /// The leaf index is not below the leaf count.
    IndexOutOfRange,
    /// More sibling hashes than the tree has levels (or than [`MAX_PROOF_LEN`]).
    TooLong,
    /// Fewer sibling hashes than the path needs.
    TooShort,
    /// The path does not lead to the expected root.
    WrongRoot,
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProofError::IndexOutOfRange => "leaf index beyond the tree",
            ProofError::TooLong => "proof too long",
            ProofError::TooShort => "proof too short",
            ProofError::WrongRoot => "proof does not lead to the root",
        })
    }
}

impl std::error::Error for ProofError {}

/// A Merkle tree over `D`, keeping every level so proofs are cheap.
#[derive(Clone, PartialEq, Eq)]
pub struct MerkleTree<D> {
    /// `levels[0]` are the leaves, the last level holds the root (empty tree: no levels).
    levels: Vec<Vec<[u8; 32]>>,
    domain: PhantomData<D>,
}

impl<D> fmt::Debug for MerkleTree<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerkleTree")
            .field("leaves", &self.levels.first().map_or(0, Vec::len))
            .finish()
    }
}

impl<D: Domain> MerkleTree<D> {
    /// Builds the tree over `leaves`.
    pub fn new(leaves: Vec<[u8; 32]>) -> Self {
        let mut levels = Vec::new();
        if !leaves.is_empty() {
            levels.push(leaves);
        }
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let parent = level
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => D::node(left, right),
                    [single] => *single,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(parent);
        }
        Self {
            levels,
            domain: PhantomData,
        }
    }

    /// The root; all zeros for an empty tree.
    pub fn root(&self) -> [u8; 32] {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or([0; 32])
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// The leaves.
    pub fn leaves(&self) -> &[[u8; 32]] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// The proof of leaf `index` (siblings from the bottom up), or `None` if
    /// the index is out of range.
    pub fn proof(&self, index: usize) -> Option<Vec<[u8; 32]>> {
        if index >= self.len() {
            return None;
        }
        let mut path = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(i ^ 1) {
                path.push(*sibling);
            }
            i /= 2;
        }
        Some(path)
    }
}

/// The root of `leaves` under `D` (zeros when empty).
pub fn root<D: Domain>(leaves: &[[u8; 32]]) -> [u8; 32] {
    MerkleTree::<D>::new(leaves.to_vec()).root()
}

/// The proof of leaf `index` among `leaves` under `D`, or `None` if out of range.
pub fn proof<D: Domain>(leaves: &[[u8; 32]], index: usize) -> Option<Vec<[u8; 32]>> {
    MerkleTree::<D>::new(leaves.to_vec()).proof(index)
}

/// Checks that `proof` leads from `leaf` at `index`, in a tree of
/// `leaf_count` leaves, to `root`. Never allocates, and refuses proofs
/// longer than [`MAX_PROOF_LEN`] before hashing anything.
pub fn verify<D: Domain>(
    root: &[u8; 32],
    leaf: [u8; 32],
    mut index: u64,
    mut leaf_count: u64,
    proof: &[[u8; 32]],
) -> Result<(), ProofError> {
    if index >= leaf_count {
        return Err(ProofError::IndexOutOfRange);
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::TooLong);
    }
    let mut node = leaf;
    let mut siblings = proof.iter();
    while leaf_count > 1 {
        if (index ^ 1) < leaf_count {
            let sibling = siblings.next().ok_or(ProofError::TooShort)?;
            node = if index.is_multiple_of(2) {
                D::node(&node, sibling)
            } else {
                D::node(sibling, &node)
            };
        }
        index /= 2;
        leaf_count = leaf_count.div_ceil(2);
    }
    if siblings.next().is_some() {
        return Err(ProofError::TooLong);
    }
    if &node == root {
        Ok(())
    } else {
        Err(ProofError::WrongRoot)
    }
}

#[cfg(test)]
mod tests {
    use super::domains::Ledger;
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n).map(|i| [i as u8; 32]).collect()
    }

    #[test]
    fn every_proof_verifies_and_only_at_its_index() {
        for n in 1..=33 {
            let t = MerkleTree::<Ledger>::new(leaves(n));
            assert_eq!(t.len(), n);
            for i in 0..n {
                let p = t.proof(i).unwrap();
                assert_eq!(
                    verify::<Ledger>(&t.root(), [i as u8; 32], i as u64, n as u64, &p),
                    Ok(())
                );
                if n > 1 {
                    let other = (i + 1) % n;
                    assert!(
                        verify::<Ledger>(&t.root(), [i as u8; 32], other as u64, n as u64, &p)
                            .is_err()
                    );
                }
            }
            assert_eq!(t.proof(n), None);
        }
    }

    #[test]
    fn malformed_proofs_are_named() {
        let t = MerkleTree::<Ledger>::new(leaves(5));
        let mut p = t.proof(2).unwrap();
        let r = t.root();
        assert_eq!(
            verify::<Ledger>(&r, [2; 32], 5, 5, &p),
            Err(ProofError::IndexOutOfRange)
        );
        p.push([0; 32]);
        assert_eq!(
            verify::<Ledger>(&r, [2; 32], 2, 5, &p),
            Err(ProofError::TooLong)
        );
        p.truncate(1);
        assert_eq!(
            verify::<Ledger>(&r, [2; 32], 2, 5, &p),
            Err(ProofError::TooShort)
        );
        let p = t.proof(2).unwrap();
        assert_eq!(
            verify::<Ledger>(&r, [3; 32], 2, 5, &p),
            Err(ProofError::WrongRoot)
        );
        assert_eq!(
            verify::<Ledger>(&r, [2; 32], 2, 5, &[[0; 32]; MAX_PROOF_LEN + 1]),
            Err(ProofError::TooLong)
        );
    }

    #[test]
    fn empty_and_single_trees() {
        assert_eq!(MerkleTree::<Ledger>::new(vec![]).root(), [0; 32]);
        assert!(MerkleTree::<Ledger>::new(vec![]).is_empty());
        let one = MerkleTree::<Ledger>::new(vec![[9; 32]]);
        assert_eq!(one.root(), [9; 32]);
        assert_eq!(one.proof(0), Some(vec![]));
    }

    proptest! {
        #[test]
        fn verify_never_panics(
            root in any::<[u8; 32]>(),
            leaf in any::<[u8; 32]>(),
            index in any::<u64>(),
            count in any::<u64>(),
            proof in proptest::collection::vec(any::<[u8; 32]>(), 0..40),
        ) {
            let _ = verify::<Ledger>(&root, leaf, index, count, &proof);
        }
    }
}
