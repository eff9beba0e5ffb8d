//! What part of the model a node holds, and whether it fits the memory its
//! operator offers: checked from the model file's tensor table
//! ([`ModelLayout`]) before any weight is loaded, so a node that cannot hold
//! what it is asked to refuses at start with the figures, instead of being
//! killed by the kernel later.

use std::ops::Range;
use std::path::Path;

use strata_engine::ModelLayout;

use crate::NodeError;

/// KV-cache positions reserved per concurrent sequence when checking the
/// memory offered (the cache grows with use; this is the working budget a
/// chat turn of a few hundred tokens needs).
pub const KV_POSITIONS_PER_SEQUENCE: u64 = 256;

/// Which blocks to hold and how much memory to offer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Blocks `[a, b)` to hold (a pipeline hop); `None` holds the whole model.
    pub layers: Option<Range<usize>>,
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

/// The blocks to hold: `plan.layers` (checked against the model's depth) or
/// the whole model; refused when they do not fit `plan.offer_mb`.
pub fn resolve(
    model: &Path,
    plan: &MemoryPlan,
    max_concurrent: usize,
) -> Result<Option<Range<usize>>, NodeError> {
    if plan.layers.is_none() && plan.offer_mb.is_none() {
        return Ok(None);
    }
    let layout = ModelLayout::read(model).map_err(|e| NodeError::Model(e.to_string()))?;
    let n = layout.config.n_layers;
    let layers = plan.layers.clone().unwrap_or(0..n);
    if layers.is_empty() || layers.end > n {
        return Err(NodeError::Config(format!(
            "--layers {}..{} is not a non-empty range of the model's {n} blocks",
            layers.start, layers.end
        )));
    }
    if let Some(offer) = plan.offer_mb {
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

/// Parses `a..b` (as `--layers` takes it).
pub fn parse_layers(s: &str) -> Result<Range<usize>, String> {
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
    use super::parse_layers;

    #[test]
    fn layers_parse_or_say_why() {
        assert_eq!(parse_layers("0..10"), Ok(0..10));
        assert_eq!(parse_layers(" 10 .. 20 "), Ok(10..20));
        for bad in ["", "5", "10..5", "3..3", "a..b", "-1..4", "1..2..3"] {
            assert!(parse_layers(bad).is_err(), "{bad:?} accepted");
        }
    }
}
