//! Merkle trees for receipt batches and reward roots, hashed with SHA-256
//! (a syscall on-chain). Leaves and inner nodes carry different prefixes so a
//! leaf can never be passed off as an inner node, and the leaf's index picks
//! the side at each level.

use anchor_lang::prelude::Pubkey;
use solana_sha256_hasher::hashv;

/// Longest proof accepted (trees of up to 2^32 leaves).
pub const MAX_PROOF_LEN: usize = 32;
const LEAF_PREFIX: &[u8] = &[0];
const NODE_PREFIX: &[u8] = &[1];

/// Leaf of a receipt batch: the task, the node that served it, and a digest
/// of the full receipt (which the relayer serves off-chain).
pub fn receipt_leaf(task_id: &[u8; 32], node: &Pubkey, receipt_digest: &[u8; 32]) -> [u8; 32] {
    hashv(&[
        LEAF_PREFIX,
        b"receipt",
        task_id,
        node.as_ref(),
        receipt_digest,
    ])
    .to_bytes()
}

/// Leaf of a reward root: a node's cumulative rewards since genesis.
pub fn reward_leaf(operator: &Pubkey, cumulative: u64) -> [u8; 32] {
    hashv(&[
        LEAF_PREFIX,
        b"reward",
        operator.as_ref(),
        &cumulative.to_le_bytes(),
    ])
    .to_bytes()
}

/// Parent of two nodes.
pub fn parent(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    hashv(&[NODE_PREFIX, left, right]).to_bytes()
}

/// Root of `leaves`; an odd node at any level is carried up unchanged.
/// Returns zeros for an empty list.
pub fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
    let mut level = leaves.to_vec();
    if level.is_empty() {
        return [0; 32];
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => parent(l, r),
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    level[0]
}

/// Proof for leaf `index` (siblings from the bottom up), or `None` if out of range.
pub fn proof(leaves: &[[u8; 32]], mut index: usize) -> Option<Vec<[u8; 32]>> {
    if index >= leaves.len() {
        return None;
    }
    let mut level = leaves.to_vec();
    let mut path = Vec::new();
    while level.len() > 1 {
        let sibling = index ^ 1;
        if sibling < level.len() {
            path.push(level[sibling]);
        }
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => parent(l, r),
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
        index /= 2;
    }
    Some(path)
}

/// Whether `proof` leads from `leaf` at `index` in a tree of `leaf_count`
/// leaves to `root`.
pub fn verify(
    root_hash: &[u8; 32],
    leaf: [u8; 32],
    mut index: u64,
    mut leaf_count: u64,
    proof: &[[u8; 32]],
) -> bool {
    if index >= leaf_count || proof.len() > MAX_PROOF_LEN {
        return false;
    }
    let mut node = leaf;
    let mut siblings = proof.iter();
    while leaf_count > 1 {
        let sibling_index = index ^ 1;
        if sibling_index < leaf_count {
            let Some(sibling) = siblings.next() else {
                return false;
            };
            node = if index.is_multiple_of(2) {
                parent(&node, sibling)
            } else {
                parent(sibling, &node)
            };
        }
        index /= 2;
        leaf_count = leaf_count.div_ceil(2);
    }
    siblings.next().is_none() && &node == root_hash
}
