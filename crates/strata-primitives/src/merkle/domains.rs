//! The hash domains of Strata's Merkle trees, with every tag in one place.
//!
//! | domain | hash | leaf | inner node | used by |
//! |---|---|---|---|---|
//! | [`Ledger`] | SHA-256 | `0x00 ‖ kind ‖ fields` | `0x01 ‖ left ‖ right` | the program's receipt batches and reward epochs |
//! | [`Commitments`] | blake3 | `"strata/entry/v1" ‖ entry` | `"strata/node/v1" ‖ left ‖ right` | the engine's per-layer activation commitments |
//! | [`Chunks`] | blake3 derive-key | key `"strata p2p chunk leaf v1"`: `index ‖ chunk` | key `"strata p2p merkle node v1"`: `left ‖ right` | p2p file manifests |
//!
//! These bytes are on-chain and on the wire: changing any tag changes every
//! root, so a change here is a new protocol version.

use solana_sha256_hasher::hashv;

use super::Domain;

/// The program's trees: receipt batches and reward epochs (SHA-256, which is
/// a syscall on-chain).
#[derive(Debug, Clone, Copy)]
pub struct Ledger;

impl Ledger {
    /// Prefix of every leaf.
    pub const LEAF_PREFIX: u8 = 0x00;
    /// Prefix of every inner node.
    pub const NODE_PREFIX: u8 = 0x01;
    /// Kind tag of a receipt leaf.
    pub const RECEIPT: &'static [u8] = b"receipt";
    /// Kind tag of a reward leaf.
    pub const REWARD: &'static [u8] = b"reward";

    /// Leaf of a receipt batch: the task, the node that served it, and the
    /// digest of the full receipt (which the relayer serves off-chain).
    pub fn receipt_leaf(
        task_id: &[u8; 32],
        node: &[u8; 32],
        receipt_digest: &[u8; 32],
    ) -> [u8; 32] {
        hashv(&[
            &[Self::LEAF_PREFIX],
            Self::RECEIPT,
            task_id,
            node,
            receipt_digest,
        ])
        .to_bytes()
    }

    /// Leaf of a reward epoch: an operator's cumulative rewards since genesis.
    pub fn reward_leaf(operator: &[u8; 32], cumulative: u64) -> [u8; 32] {
        hashv(&[
            &[Self::LEAF_PREFIX],
            Self::REWARD,
            operator,
            &cumulative.to_le_bytes(),
        ])
        .to_bytes()
    }
}

impl Domain for Ledger {
    fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
        hashv(&[&[Self::NODE_PREFIX], left, right]).to_bytes()
    }
}

/// The engine's per-layer activation commitments (one leaf per layer entry).
#[cfg(feature = "blake3")]
#[derive(Debug, Clone, Copy)]
pub struct Commitments;

#[cfg(feature = "blake3")]
impl Commitments {
    /// Tag hashed before an entry's canonical bytes.
    pub const LEAF_TAG: &'static [u8] = b"strata/entry/v1";
    /// Tag hashed before two children.
    pub const NODE_TAG: &'static [u8] = b"strata/node/v1";

    /// Leaf of one layer entry, given its canonical bytes.
    pub fn leaf(entry_bytes: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(Self::LEAF_TAG);
        h.update(entry_bytes);
        *h.finalize().as_bytes()
    }
}

#[cfg(feature = "blake3")]
impl Domain for Commitments {
    fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(Self::NODE_TAG);
        h.update(left);
        h.update(right);
        *h.finalize().as_bytes()
    }
}

/// p2p file manifests: one leaf per chunk, bound to its index.
#[cfg(feature = "blake3")]
#[derive(Debug, Clone, Copy)]
pub struct Chunks;

#[cfg(feature = "blake3")]
impl Chunks {
    /// blake3 derive-key context of a chunk leaf.
    pub const LEAF_CONTEXT: &'static str = "strata p2p chunk leaf v1";
    /// blake3 derive-key context of an inner node.
    pub const NODE_CONTEXT: &'static str = "strata p2p merkle node v1";

    /// Leaf of chunk `index` with content `data`.
    pub fn leaf(index: u32, data: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(Self::LEAF_CONTEXT);
        h.update(&index.to_be_bytes());
        h.update(data);
        *h.finalize().as_bytes()
    }
}

#[cfg(feature = "blake3")]
impl Domain for Chunks {
    fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(Self::NODE_CONTEXT);
        h.update(left);
        h.update(right);
        *h.finalize().as_bytes()
    }
}

#[cfg(all(test, feature = "blake3"))]
mod tests {
    use super::*;
    use crate::merkle::MerkleTree;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// A file of 10,000 bytes in 1,000-byte chunks: the leaf of chunk 3 and
    /// the file root as the p2p layer computed them before this tree was
    /// shared (`strata-p2p`'s manifest, commit f205cd1).
    #[test]
    fn chunk_tree_bytes_are_pinned() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let leaves: Vec<[u8; 32]> = data
            .chunks(1000)
            .enumerate()
            .map(|(i, c)| Chunks::leaf(i as u32, c))
            .collect();
        assert_eq!(
            hex(&leaves[3]),
            "8ded932483c2feb8cb3acdb8659e9403847e88011015b1e40d9f092353bb3e34"
        );
        let mut h = blake3::Hasher::new_derive_key("strata p2p file root v1");
        h.update(&10_000u64.to_be_bytes());
        h.update(&1000u32.to_be_bytes());
        h.update(&MerkleTree::<Chunks>::new(leaves).root());
        assert_eq!(
            hex(h.finalize().as_bytes()),
            "aaf0392e6ea0e53097dc0c50e4d77a1cbe531651402e52c57fd78bb5cc432f81"
        );
    }
}
