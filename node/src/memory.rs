//! What part of the model a node holds, and whether it fits the memory its
//! operator offers: checked from the model file's tensor table
//! ([`ModelLayout`]) before any weight is loaded, so a node that cannot hold
//! what it is asked to refuses at start with the figures, instead of being
//! killed by the kernel later.

use std::ops::Range;
use std::path::Path;

use strata_engine::ModelLayout;

use crate::placement::PlacementConfig;
use crate::NodeError;

/// KV-cache positions reserved per concurrent sequence when checking the
/// memory offered (the cache grows with use; this is the working budget a
/// chat turn of a few hundred tokens needs).
pub const KV_POSITIONS_PER_SEQUENCE: u64 = 256;

/// Which blocks a node holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Layers {
    /// The whole model: a node that serves whole tasks.
    #[default]
    Whole,
    /// Blocks `[a, b)`: a pipeline hop, placed by its operator.
    Range(Range<usize>),
    /// As many blocks as the memory offered holds, where the swarm needs them
    /// ([`crate::placement`]): the node chooses at join and may move later.
    Auto(PlacementConfig),
}

/// Which blocks to hold and how much memory to offer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The blocks to hold.
    pub layers: Layers,
    /// Memory the node may use for weights and KV cache, MiB; `None` does
    /// not check.
    pub offer_mb: Option<u64>,
}

/// Bytes a node holding `layers` of `layout` needs for weights plus the KV
/// cache of `max_concurrent` sequences of [`KV_POSITIONS_PER_SEQUENCE`].
pub fn bytes_needed(layout: &ModelLayout, layers: Range<usize>, max_concurrent: usize) -> u64 {
    let held = layers.len() as u64;
    let kv =
        max_concurrent as u64 * KV_POSITIONS_PER_SEQUENCE * layout.kv_bytes_per_position() * held;
    layout.shard_bytes(layers) + kv
}

/// How many blocks a node offered `offer_mb` MiB can hold in each role
/// (first hop: with the embedding; last: with the head; solo: both), each
/// block with its share of the KV budget of `max_concurrent` sequences.
pub fn caps(layout: &ModelLayout, offer_mb: u64, max_concurrent: usize) -> Caps {
    let offer = offer_mb << 20;
    let kv = max_concurrent as u64 * KV_POSITIONS_PER_SEQUENCE * layout.kv_bytes_per_position();
    let per_block = layout.layer_bytes.iter().copied().max().unwrap_or(0) + kv;
    let n = layout.layer_bytes.len() as u64;
    let fit = |extra: u64| {
        let blocks = offer.saturating_sub(extra) / per_block.max(1);
        u16::try_from(blocks.min(n)).unwrap_or(u16::MAX)
    };
    let (e, h) = (layout.embedding_bytes, layout.head_bytes);
    Caps {
        first: fit(e),
        mid: fit(0),
        last: fit(h),
        solo: fit(e + h),
    }
}

/// Blocks a node can hold in each role ([`caps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// As the first hop (with the embedding).
    pub first: u16,
    /// As a middle hop.
    pub mid: u16,
    /// As the last hop (with the head).
    pub last: u16,
    /// As the only hop (the whole model).
    pub solo: u16,
}

/// The blocks to hold: `layers` (checked against the model's depth) or the
/// whole model; refused when they do not fit `offer_mb`. `Layers::Auto` is
/// decided by `crate::placement` before this is called.
pub fn resolve(
    model: &Path,
    layers: Option<Range<usize>>,
    offer_mb: Option<u64>,
    max_concurrent: usize,
) -> Result<Option<Range<usize>>, NodeError> {
    if layers.is_none() && offer_mb.is_none() {
        return Ok(None);
    }
    let layout = ModelLayout::read(model).map_err(|e| NodeError::Model(e.to_string()))?;
    let n = layout.config.n_layers;
    let layers = layers.unwrap_or(0..n);
    if layers.is_empty() || layers.end > n {
        return Err(NodeError::Config(format!(
            "--layers {}..{} is not a non-empty range of the model's {n} blocks",
            layers.start, layers.end
        )));
    }
    if let Some(offer) = offer_mb {
        let need = bytes_needed(&layout, layers.clone(), max_concurrent);
        let need_mb = need.div_ceil(1 << 20);
        if need_mb > offer {
            return Err(NodeError::Config(format!(
                "blocks {}..{} need {need_mb} MiB (weights {} MiB, KV cache for {max_concurrent} \
                 sequences of {KV_POSITIONS_PER_SEQUENCE} positions), more than the {offer} MiB \
                 offered: hold fewer blocks with --layers a..b, or lower --max-concurrent",
                layers.start,
                layers.end,
                layout.shard_bytes(layers.clone()) >> 20,
            )));
        }
    }
    Ok((layers != (0..n)).then_some(layers))
}

/// Parses `auto` or `a..b` (as `--layers` takes it).
pub fn parse_layers(s: &str) -> Result<Layers, String> {
    if s.trim() == "auto" {
        return Ok(Layers::Auto(PlacementConfig::default()));
    }
    parse_range(s).map(Layers::Range)
}

fn parse_range(s: &str) -> Result<Range<usize>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("expected a..b, got {s:?}"))?;
    let a: usize = a
        .trim()
        .parse()
        .map_err(|_| format!("bad start in {s:?}"))?;
    let b: usize = b.trim().parse().map_err(|_| format!("bad end in {s:?}"))?;
    if a >= b {
        return Err(format!("{s:?} is empty"));
    }
    Ok(a..b)
}

#[cfg(test)]
mod tests {
    use super::{parse_layers, Layers};

    #[test]
    fn layers_parse_or_say_why() {
        assert_eq!(parse_layers("0..10"), Ok(Layers::Range(0..10)));
        assert_eq!(parse_layers(" 10 .. 20 "), Ok(Layers::Range(10..20)));
        assert_eq!(parse_layers("auto"), Ok(Layers::Auto(Default::default())));
        for bad in [
            "",
            "5",
            "10..5",
            "3..3",
            "a..b",
            "-1..4",
            "1..2..3",
            "automatic",
        ] {
            assert!(parse_layers(bad).is_err(), "{bad:?} accepted");
        }
    }
}
