//! What a node announces on the capacity gossip topic: the model it serves,
//! its price, and what it measured of itself. The gossip envelope already
//! carries the node's signature, so this payload is not signed again.

use borsh::{BorshDeserialize, BorshSerialize};

/// Largest encoded announcement accepted.
pub const MAX_CAPACITY_BYTES: usize = 4096;

/// A node's capacity announcement.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct Capacity {
    /// Model name clients ask for (e.g. `SmolLM2-135M-Instruct`).
    pub model: String,
    /// SHA-256 of the model file.
    pub model_hash: [u8; 32],
    /// Price per billed token (prompt and completion), in token base units.
    pub price_per_token: u64,
    /// Profiled decode speed of one sequence, tokens per second.
    pub tokens_per_sec: f32,
    /// Memory the node can use for the model and caches, MiB.
    pub memory_mb: u32,
    /// Sequences it batches at once.
    pub max_concurrent: u32,
    /// Sequences running when this was sent.
    pub active: u32,
    /// Longest prompt plus completion, in tokens.
    pub context_length: u32,
    /// Addresses it listens on (multiaddrs).
    pub addrs: Vec<String>,
    /// When this was sent, Unix milliseconds.
    pub sent_at_ms: u64,
}
