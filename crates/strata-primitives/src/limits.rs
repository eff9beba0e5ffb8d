//! Size limits that more than one crate enforces. Each is defined once here;
//! the program sizes its accounts from them and clients check input against
//! them before sending anything.

/// Most multiaddrs a node may register on-chain.
pub const MAX_MULTIADDRS: usize = 4;
/// Longest multiaddr string a node may register on-chain.
pub const MAX_MULTIADDR_LEN: usize = 96;
/// Longest Merkle proof accepted anywhere (trees of up to 2^32 leaves).
pub const MAX_PROOF_LEN: usize = 32;
