//! What a node announces on the capacity gossip topic: the model it serves,
//! its price, and what it measured of itself. The gossip envelope already
//! carries the node's signature, so this payload is not signed again.
//!
//! A node that follows trainers also announces the policy versions it
//! holds ([`Capacity::policies`]), so that gateways send a task asking for
//! a version only to nodes that hold it. The list is written after every
//! other field and only when it is not empty, so an announcement without
//! one keeps its bytes (older nodes' announcements decode unchanged).

use borsh::{BorshDeserialize, BorshSerialize};

/// Largest encoded announcement accepted.
pub const MAX_CAPACITY_BYTES: usize = 4096;

/// Most policy versions one announcement lists.
pub const MAX_HELD_POLICIES: usize = 8;

/// A policy version a node holds and serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct HeldPolicy {
    /// The version.
    pub version: u64,
    /// SHA-256 of the adapter's canonical bytes (what its receipts name).
    pub adapter: [u8; 32],
}

/// A node's capacity announcement.
///
/// Encoded as Borsh field by field, `policies` last and only when not
/// empty (written by hand below).
#[derive(Debug, Clone, PartialEq)]
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
    /// Policy versions held, oldest first, at most [`MAX_HELD_POLICIES`]
    /// (empty: the base model only).
    pub policies: Vec<HeldPolicy>,
}

impl Capacity {
    /// Writes every field but `policies`.
    fn write_fixed<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        self.model.serialize(w)?;
        self.model_hash.serialize(w)?;
        self.price_per_token.serialize(w)?;
        self.tokens_per_sec.serialize(w)?;
        self.memory_mb.serialize(w)?;
        self.max_concurrent.serialize(w)?;
        self.active.serialize(w)?;
        self.context_length.serialize(w)?;
        self.addrs.serialize(w)?;
        self.sent_at_ms.serialize(w)
    }

    /// Reads every field but `policies` (left empty).
    fn read_fixed<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        Ok(Self {
            model: BorshDeserialize::deserialize_reader(r)?,
            model_hash: BorshDeserialize::deserialize_reader(r)?,
            price_per_token: BorshDeserialize::deserialize_reader(r)?,
            tokens_per_sec: BorshDeserialize::deserialize_reader(r)?,
            memory_mb: BorshDeserialize::deserialize_reader(r)?,
            max_concurrent: BorshDeserialize::deserialize_reader(r)?,
            active: BorshDeserialize::deserialize_reader(r)?,
            context_length: BorshDeserialize::deserialize_reader(r)?,
            addrs: BorshDeserialize::deserialize_reader(r)?,
            sent_at_ms: BorshDeserialize::deserialize_reader(r)?,
            policies: Vec::new(),
        })
    }

    /// Whether a fresh announcement serves `version` (0, the base model,
    /// always).
    pub fn holds_policy(&self, version: u64) -> bool {
        version == 0 || self.policies.iter().any(|p| p.version == version)
    }
}

/// Writes the policy list when there is one.
fn write_policies<W: std::io::Write>(p: &[HeldPolicy], w: &mut W) -> std::io::Result<()> {
    if p.is_empty() {
        return Ok(());
    }
    p.serialize(w)
}

/// Reads the policy list when bytes remain (none: the base model only),
/// refusing more than [`MAX_HELD_POLICIES`] and a list that is present but
/// empty (two encodings of one value).
fn read_policies<R: std::io::Read>(r: &mut R) -> std::io::Result<Vec<HeldPolicy>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..])? {
            0 if got == 0 => return Ok(Vec::new()),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    let n = u32::from_le_bytes(len) as usize;
    if n == 0 || n > MAX_HELD_POLICIES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{n} policies held: 1 to {MAX_HELD_POLICIES} when listed"),
        ));
    }
    (0..n).map(|_| HeldPolicy::deserialize_reader(r)).collect()
}

impl BorshSerialize for Capacity {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        self.write_fixed(w)?;
        write_policies(&self.policies, w)
    }
}

impl BorshDeserialize for Capacity {
    fn deserialize_reader<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        // The list is last and optional: this reads to the end of the
        // input, so a Capacity is only ever decoded as a whole message
        // (HopCapacity reads its own fields first, below).
        let mut c = Self::read_fixed(r)?;
        c.policies = read_policies(r)?;
        Ok(c)
    }
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
///
/// Encoded as the whole node's fixed fields, the hop's, then the
/// capacity's policy list when not empty (so a hop announcement without
/// one keeps its bytes).
#[derive(Debug, Clone, PartialEq)]
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

impl BorshSerialize for HopCapacity {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        self.capacity.write_fixed(w)?;
        self.start.serialize(w)?;
        self.end.serialize(w)?;
        self.n_layers.serialize(w)?;
        self.layer_ms.serialize(w)?;
        self.rtt_us.serialize(w)?;
        write_policies(&self.capacity.policies, w)
    }
}

impl BorshDeserialize for HopCapacity {
    fn deserialize_reader<R: std::io::Read>(r: &mut R) -> std::io::Result<Self> {
        let mut capacity = Capacity::read_fixed(r)?;
        let start = u16::deserialize_reader(r)?;
        let end = u16::deserialize_reader(r)?;
        let n_layers = u16::deserialize_reader(r)?;
        let layer_ms = f32::deserialize_reader(r)?;
        let rtt_us = Vec::deserialize_reader(r)?;
        capacity.policies = read_policies(r)?;
        Ok(Self {
            capacity,
            start,
            end,
            n_layers,
            layer_ms,
            rtt_us,
        })
    }
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
