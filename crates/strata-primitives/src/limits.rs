//! Size limits that more than one crate enforces. Each is defined once here;
//! the program sizes its accounts from them and clients check input against
//! them before sending anything.

/// Most multiaddrs a node may register on-chain.
pub const MAX_MULTIADDRS: usize = 4;
/// Longest multiaddr string a node may register on-chain.
pub const MAX_MULTIADDR_LEN: usize = 96;
/// Longest Merkle proof accepted anywhere (trees of up to 2^32 leaves).
pub const MAX_PROOF_LEN: usize = 32;
/// Most work units (tokens processed) one receipt may claim. A batch may
/// declare at most `task_count × MAX_WORK_UNITS_PER_TASK`: far above any
/// model's context (2^24 = 16.7 M tokens per task), yet small enough that a
/// relayer's declaration cannot overflow anything the program or the
/// relayer adds up (a maximal batch is 2^56 units).
pub const MAX_WORK_UNITS_PER_TASK: u64 = 1 << 24;
