//! When a node should leave its range for the plan's: the epoch check.
//!
//! Moving is expensive: the node reloads weights (seconds here, minutes for
//! big models) and its in-flight sequences fail over. So a node moves at once
//! only when the swarm is broken (a layer nobody live holds: no request can
//! be served at all), and otherwise only when throughput is clearly skewed
//! *and* the re-plan clearly fixes it, in two consecutive epochs.

use std::ops::Range;

use super::join::{live_contributions, spare_stages, sum, Contribution};
use super::{plan_sorted, validate, AllocError, Holding, NodeCap};

/// Skew threshold: the coefficient of variation (standard deviation over
/// mean) of per-layer throughput above which the swarm counts as skewed.
/// At 0.25 a typical layer is a quarter off the mean, i.e. a bottleneck well
/// beyond the 5–10 % profiling noise measured on shared cores.
pub const SKEW_CV: f64 = 0.25;

/// Least relative gain in the weakest layer's capacity that justifies moving:
/// the re-plan must raise `min_l T_l` by 20 %. Twice the worst profiling
/// noise seen, so a move is never made to chase a measurement error, and big
/// enough to repay a weight reload within an epoch of sustained load.
pub const MIN_GAIN: f64 = 0.20;

/// The outcome of one epoch's check.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Stay: every layer is held and the load is even enough, or a re-plan
    /// would not raise the weakest layer enough to pay for a move.
    Keep {
        /// Coefficient of variation of per-layer free throughput.
        cv: f64,
        /// Relative gain of the re-plan's weakest layer (0 when the skew is
        /// below [`SKEW_CV`] and no re-plan was evaluated).
        gain: f64,
    },
    /// Some layers have no live holder: replan and move now.
    CoverageLost {
        /// Maximal runs of layers with no live holder, ascending.
        gaps: Vec<Range<u16>>,
    },
    /// Throughput is skewed and the re-plan raises the weakest layer enough.
    Skewed {
        /// Coefficient of variation of per-layer free throughput.
        cv: f64,
        /// Relative gain of the re-plan's weakest layer.
        gain: f64,
    },
}

impl Verdict {
    /// Whether to move to the plan's row now, given the previous epoch's
    /// verdict: always on lost coverage; on skew only if the previous epoch
    /// was skewed too, so one lost or late announcement cannot trigger a
    /// reload and two nodes' slightly different views cannot oscillate.
    pub fn should_move(&self, previous: Option<&Verdict>) -> bool {
        match self {
            Verdict::CoverageLost { .. } => true,
            Verdict::Skewed { .. } => matches!(previous, Some(Verdict::Skewed { .. })),
            Verdict::Keep { .. } => false,
        }
    }
}

/// Judges the current `holdings` over the `live` set of a model of
/// `n_layers` layers (§3.7 of the issue 12 design).
///
/// 1. Coverage: a layer no live node holds means no request can complete, so
///    [`Verdict::CoverageLost`] whatever the cost of moving.
/// 2. Skew: the coefficient of variation of per-layer *free* throughput (what
///    each layer can still take, from [`layer_throughput`](super::layer_throughput))
///    must exceed [`SKEW_CV`]; otherwise [`Verdict::Keep`] without planning.
/// 3. Gain: the re-plan ([`plan`](super::plan) plus [`place_spares`](super::place_spares))
///    must raise the weakest layer's *capacity* (everyone idle, both sides
///    alike, since the load after a move is unknown) by at least
///    [`MIN_GAIN`]. High skew that a re-plan cannot fix is a routing matter
///    (load piling onto one pipeline), and moving would not help: `Keep`.
///
/// Refuses what [`layer_throughput`](super::layer_throughput) refuses.
pub fn rebalance(
    n_layers: u16,
    live: &[NodeCap],
    holdings: &[Holding],
) -> Result<Verdict, AllocError> {
    let nodes = validate(n_layers, live)?;
    let l = u32::from(n_layers);
    let with_load = live_contributions(n_layers, &nodes, holdings, true)?;
    let gaps = gaps(l, &with_load);
    if !gaps.is_empty() {
        return Ok(Verdict::CoverageLost { gaps });
    }
    let cv = variation(&sum(l, &with_load));
    if cv <= SKEW_CV {
        return Ok(Verdict::Keep { cv, gain: 0.0 });
    }
    let now = weakest(&sum(
        l,
        &live_contributions(n_layers, &nodes, holdings, false)?,
    ));
    let plan = plan_sorted(l, &nodes, super::dp::choose);
    let spares = spare_stages(l, &nodes, &plan);
    let after: Vec<Holding> = plan
        .pipelines
        .iter()
        .flat_map(|p| p.stages.iter())
        .chain(&spares)
        .map(|s| Holding {
            node: s.node,
            layers: s.layers.clone(),
            free: 1.0,
        })
        .collect();
    let next = weakest(&sum(
        l,
        &live_contributions(n_layers, &nodes, &after, false)?,
    ));
    let gain = if now > 0.0 {
        next / now - 1.0
    } else if next > 0.0 {
        // Speeds so small the capacity underflowed to 0: any real capacity
        // is an unbounded gain.
        f64::INFINITY
    } else {
        0.0
    };
    Ok(if gain >= MIN_GAIN {
        Verdict::Skewed { cv, gain }
    } else {
        Verdict::Keep { cv, gain }
    })
}

/// Maximal runs of layers without a holder. Counted from the ranges, not
/// from throughput, so a fully busy holder (free 0) still covers its layers.
fn gaps(l: u32, held: &[Contribution]) -> Vec<Range<u16>> {
    let mut covered = vec![false; l as usize];
    for c in held {
        covered[c.layers.start as usize..c.layers.end as usize].fill(true);
    }
    let mut out = Vec::new();
    let mut start = None;
    for (i, &c) in covered.iter().chain(std::iter::once(&true)).enumerate() {
        match (c, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push(super::to_u16(s as u32)..super::to_u16(i as u32));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Population coefficient of variation; 0 when the mean is 0 (every layer
/// saturated alike is not skew).
fn variation(t: &[f64]) -> f64 {
    let n = t.len() as f64;
    let mean = t.iter().sum::<f64>() / n;
    if mean <= 0.0 || !mean.is_finite() {
        return 0.0;
    }
    let var = t.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    var.sqrt() / mean
}

/// The weakest layer's throughput.
fn weakest(t: &[f64]) -> f64 {
    t.iter().copied().fold(f64::INFINITY, f64::min)
}
