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

/// Most round trips one hop announcement carries.
pub const MAX_HOP_RTTS: usize = 16;

/// Largest encoded hop announcement accepted: a whole node's, the blocks,
/// and [`MAX_HOP_RTTS`] round trips.
pub const MAX_HOP_CAPACITY_BYTES: usize = MAX_CAPACITY_BYTES + 64 + MAX_HOP_RTTS * 36;

/// A pipeline hop's announcement: what a whole-model node announces (its
/// `tokens_per_sec` is 0: a hop cannot generate alone) and the blocks it
/// holds, with its measured time per block. A hop that stops announcing
/// leaves gateways' routing once its last announcement is stale.
#[derive(Debug, Clone, PartialEq, BorshSerialize, BorshDeserialize)]
pub struct HopCapacity {
    /// Model, price, load, addresses, time, as for a whole node.
    pub capacity: Capacity,
    /// First block held.
    pub start: u16,
    /// One past the last block held.
    pub end: u16,
    /// The model's block count.
    pub n_layers: u16,
    /// Profiled decode time of one token through one of its blocks, ms.
    pub layer_ms: f32,
    /// Measured round trips to other hops (node key, microseconds), at
    /// most [`MAX_HOP_RTTS`]: what a route pays between this hop and the
    /// next.
    pub rtt_us: Vec<([u8; 32], u32)>,
}

impl HopCapacity {
    /// Decodes an announcement (size-limited) and checks that its blocks
    /// are a non-empty range inside the model, its time per block is a
    /// positive finite number, and it carries at most [`MAX_HOP_RTTS`]
    /// round trips.
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::WireError> {
        let h: Self = crate::decode(bytes, MAX_HOP_CAPACITY_BYTES)?;
        if h.start >= h.end || h.end > h.n_layers {
            return Err(crate::WireError::Invalid(format!(
                "blocks {}..{} of a {}-block model",
                h.start, h.end, h.n_layers
            )));
        }
        if h.rtt_us.len() > MAX_HOP_RTTS {
            return Err(crate::WireError::Invalid(format!(
                "{} round trips, more than {MAX_HOP_RTTS}",
                h.rtt_us.len()
            )));
        }
        if !(h.layer_ms.is_finite() && h.layer_ms > 0.0) {
            return Err(crate::WireError::Invalid(format!(
                "time per block {} ms",
                h.layer_ms
            )));
        }
        Ok(h)
    }
}
