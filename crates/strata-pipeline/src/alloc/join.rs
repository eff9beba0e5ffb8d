//! Petals' rule for nodes outside the pipelines: take the weakest layers.
//!
//! Throughput of a layer is what the swarm can push through it per second:
//! a holder of speed `v` (layers per second) holding `n` layers runs a token
//! through all of them in `n / v` seconds, so it adds `v / n` tokens per
//! second to each of its layers, scaled by the fraction of its serving slots
//! that are free. A spare or joining node holds the window of consecutive
//! layers where the swarm is weakest, so it relieves the bottleneck first.

use std::ops::Range;

use super::{to_u16, validate, AllocError, Node, NodeCap, NodeKey, Plan, Stage};

/// What a live node currently holds, as it announces it.
#[derive(Debug, Clone, PartialEq)]
pub struct Holding {
    /// The holder.
    pub node: NodeKey,
    /// The layers it holds, `[start, end)`.
    pub layers: Range<u16>,
    /// Fraction of its serving slots free, in `[0, 1]` (1 for an idle node):
    /// a busy replica adds little to what a layer can still take.
    pub free: f64,
}

/// One holding ready to be summed: layers, and tokens per second it adds to
/// each of them.
pub(crate) struct Contribution {
    pub(crate) layers: Range<u32>,
    pub(crate) per_layer: f64,
}

impl Contribution {
    fn new(layers: Range<u32>, speed: f64, free: f64) -> Contribution {
        let n = f64::from(layers.end - layers.start);
        Contribution {
            layers,
            per_layer: speed / n * free,
        }
    }
}

/// Per-layer throughput (tokens per second each layer can still take) of the
/// `holdings` whose node is in `live`; holdings of other nodes are ignored,
/// which is how a dead node stops counting.
///
/// Refuses what [`plan`](super::plan) refuses for `live`, plus a range that
/// is empty or reaches past `n_layers`, a free fraction outside `[0, 1]` and
/// two holdings for one node. Cost: the total number of layers held.
pub fn layer_throughput(
    n_layers: u16,
    live: &[NodeCap],
    holdings: &[Holding],
) -> Result<Vec<f64>, AllocError> {
    let nodes = validate(n_layers, live)?;
    let contributions = live_contributions(n_layers, &nodes, holdings, true)?;
    Ok(sum(u32::from(n_layers), &contributions))
}

/// Checks `holdings` and turns the live ones into contributions, sorted by
/// node key so the float sums happen in one order on every machine. With
/// `use_free` false every holder counts as idle: capacity rather than what
/// is left of it.
pub(crate) fn live_contributions(
    n_layers: u16,
    nodes: &[Node],
    holdings: &[Holding],
    use_free: bool,
) -> Result<Vec<Contribution>, AllocError> {
    let mut sorted: Vec<&Holding> = holdings.iter().collect();
    sorted.sort_unstable_by_key(|h| h.node);
    if let Some(pair) = sorted.windows(2).find(|w| w[0].node == w[1].node) {
        return Err(AllocError::DuplicateHolding(pair[0].node));
    }
    let mut out = Vec::new();
    for h in sorted {
        if h.layers.start >= h.layers.end || h.layers.end > n_layers {
            return Err(AllocError::BadRange {
                node: h.node,
                start: h.layers.start,
                end: h.layers.end,
                n_layers,
            });
        }
        if !(0.0..=1.0).contains(&h.free) {
            return Err(AllocError::BadFree {
                node: h.node,
                free: h.free,
            });
        }
        if let Some(n) = nodes.iter().find(|n| n.key == h.node) {
            let free = if use_free { h.free } else { 1.0 };
            let layers = u32::from(h.layers.start)..u32::from(h.layers.end);
            out.push(Contribution::new(layers, n.speed, free));
        }
    }
    Ok(out)
}

/// Adds contributions layer by layer, in the order given. Direct sums rather
/// than a difference array: a prefix sum would leave rounding residue on
/// layers nobody holds, and a layer nobody holds must read exactly 0.
pub(crate) fn sum(l: u32, contributions: &[Contribution]) -> Vec<f64> {
    let mut t = vec![0.0; l as usize];
    for c in contributions {
        for x in &mut t[c.layers.start as usize..c.layers.end as usize] {
            *x += c.per_layer;
        }
    }
    t
}

/// Petals' join rule: the window of `min(cap, L)` consecutive layers whose
/// throughputs, sorted ascending, are lexicographically smallest (ties: the
/// lowest start). `throughput[l]` is layer `l`'s, e.g. from
/// [`layer_throughput`].
///
/// Sorted-lexicographic rather than the smallest sum: the window with the
/// single weakest layer wins, because that layer caps every pipeline through
/// it, however strong its neighbours are.
///
/// Only a few windows are compared. Sliding a window one layer moves one
/// count from the value leaving to the value entering; while neither changes,
/// every step improves the window (entering < leaving), worsens it, or keeps
/// it, so the best start of such a stretch is one of its ends. Stretches end
/// where a run of equal throughput starts at the window's first or one-past-
/// last layer. Throughput is constant between holdings' boundaries, so there
/// are few runs: cost `O(R² log R)` for `R` runs.
///
/// Refuses an empty slice, more layers than a `u16` names, `cap == 0`, and
/// throughputs that are NaN, infinite or negative.
pub fn join_window(throughput: &[f64], cap: u16) -> Result<Range<u16>, AllocError> {
    if throughput.is_empty() {
        return Err(AllocError::NoLayers);
    }
    if throughput.len() > usize::from(u16::MAX) {
        return Err(AllocError::TooManyLayers(throughput.len()));
    }
    if cap == 0 {
        return Err(AllocError::ZeroCap);
    }
    if let Some((layer, &value)) = throughput
        .iter()
        .enumerate()
        .find(|(_, t)| !(t.is_finite() && **t >= 0.0))
    {
        return Err(AllocError::BadThroughput { layer, value });
    }
    // -0.0 + 0.0 is +0.0: one zero, so the bitwise run test below and the
    // total order agree with numeric equality.
    let throughput: Vec<f64> = throughput.iter().map(|t| t + 0.0).collect();
    let throughput = &throughput[..];
    let l = throughput.len();
    let n = usize::from(cap).min(l);
    let last = l - n;
    // Run starts: layer 0 and every layer whose throughput differs from the
    // one before (bitwise equality: the values are finite).
    let runs: Vec<usize> = (0..l)
        .filter(|&i| i == 0 || throughput[i].to_bits() != throughput[i - 1].to_bits())
        .collect();
    let mut candidates: Vec<usize> = runs
        .iter()
        .flat_map(|&r| [Some(r), r.checked_sub(n)])
        .flatten()
        .chain([0, last])
        .filter(|&s| s <= last)
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    let mut best: Option<(usize, Vec<(f64, usize)>)> = None;
    for s in candidates {
        let h = histogram(throughput, &runs, s, s + n);
        // Ascending starts, strict improvement only: ties keep the lowest.
        if best.as_ref().is_none_or(|(_, b)| lex_less(&h, b)) {
            best = Some((s, h));
        }
    }
    let start = best.map_or(0, |(s, _)| s);
    Ok(to_u16(start as u32)..to_u16((start + n) as u32))
}

/// [`join_window`] for hops that serve exactly the blocks they hold: the
/// window must start and end where a route can meet it (the model's ends,
/// an end of another live holding, or anywhere inside a run of layers no
/// one holds), so it can be chained with its neighbours. Of those windows of
/// at most `cap` layers, the one whose sorted throughputs are smallest wins;
/// when one window's sorted list is a prefix of another's, the longer wins
/// (it relieves the same layers and more); ties go to the lowest start.
///
/// `held` are the other live holdings' ranges. Without the alignment a
/// third node capped at 11 of 30 layers behind 0..11 and 11..22 would take
/// 19..30, and no route could use it. Cost: `O(L · cap² log cap)`.
pub fn aligned_window(
    throughput: &[f64],
    cap: u16,
    held: &[Range<u16>],
) -> Result<Option<Range<u16>>, AllocError> {
    // The checks of `join_window` (it also answers the unaligned case).
    join_window(throughput, cap)?;
    let l = throughput.len();
    let mut covered = vec![false; l];
    let mut edge = vec![false; l + 1];
    edge[0] = true;
    edge[l] = true;
    for r in held {
        let (a, b) = (usize::from(r.start).min(l), usize::from(r.end).min(l));
        covered[a..b].fill(true);
        edge[a] = true;
        edge[b] = true;
    }
    for (i, c) in covered.iter().enumerate() {
        if !c {
            edge[i] = true;
            edge[i + 1] = true;
        }
    }
    let cap = usize::from(cap);
    let mut best: Option<(Range<usize>, Vec<f64>)> = None;
    for s in (0..l).filter(|&s| edge[s]) {
        for e in (s + 1..=(s + cap).min(l)).filter(|&e| edge[e]) {
            let mut sorted = throughput[s..e].to_vec();
            sorted.sort_by(f64::total_cmp);
            if best.as_ref().is_none_or(|(_, b)| better(&sorted, b)) {
                best = Some((s..e, sorted));
            }
        }
    }
    Ok(best.map(|(r, _)| to_u16(r.start as u32)..to_u16(r.end as u32)))
}

/// `a` beats `b`: smaller at the first difference, or longer when one is a
/// prefix of the other.
fn better(a: &[f64], b: &[f64]) -> bool {
    for (x, y) in a.iter().zip(b) {
        match x.total_cmp(y) {
            std::cmp::Ordering::Less => return true,
            std::cmp::Ordering::Greater => return false,
            std::cmp::Ordering::Equal => {}
        }
    }
    a.len() > b.len()
}

/// The window `[from, to)`'s throughputs as (value, count), ascending by
/// value: its sorted list, run-length encoded.
fn histogram(t: &[f64], runs: &[usize], from: usize, to: usize) -> Vec<(f64, usize)> {
    let first = runs.partition_point(|&r| r <= from) - 1;
    let mut h: Vec<(f64, usize)> = Vec::new();
    for (i, &r) in runs.iter().enumerate().skip(first) {
        if r >= to {
            break;
        }
        let end = runs.get(i + 1).copied().unwrap_or(t.len()).min(to);
        h.push((t[r], end - r.max(from)));
    }
    h.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, usize)> = Vec::with_capacity(h.len());
    for (v, c) in h {
        match merged.last_mut() {
            Some(last) if last.0.to_bits() == v.to_bits() => last.1 += c,
            _ => merged.push((v, c)),
        }
    }
    merged
}

/// `a < b` for two windows of equal length given as histograms: their
/// sorted lists compared element by element. At the first difference, a
/// smaller value wins, and for the same value more copies win (the other
/// list moves on to a bigger value first).
fn lex_less(a: &[(f64, usize)], b: &[(f64, usize)]) -> bool {
    for (x, y) in a.iter().zip(b) {
        match x.0.total_cmp(&y.0) {
            std::cmp::Ordering::Less => return true,
            std::cmp::Ordering::Greater => return false,
            std::cmp::Ordering::Equal if x.1 != y.1 => return x.1 > y.1,
            std::cmp::Ordering::Equal => {}
        }
    }
    false
}

/// Where `plan`'s spare nodes go: each, in the plan's canonical order, takes
/// its [`join_window`] over the throughput of the pipelines plus the spares
/// placed before it (all counted idle), so consecutive spares spread over the
/// weakest layers instead of piling onto one window.
///
/// A spare's window can land at either end of the model, so its length is
/// the smaller of its first- and last-hop caps (and less than the whole model
/// unless it can hold the model alone); a spare that cannot hold a layer in
/// every role gets no window. `plan` should come from [`plan`](super::plan)
/// over the same `nodes`; stages of unknown nodes count for nothing.
pub fn place_spares(
    n_layers: u16,
    nodes: &[NodeCap],
    plan: &Plan,
) -> Result<Vec<Stage>, AllocError> {
    let nodes = validate(n_layers, nodes)?;
    Ok(spare_stages(u32::from(n_layers), &nodes, plan))
}

/// [`place_spares`] over validated nodes.
pub(crate) fn spare_stages(l: u32, nodes: &[Node], plan: &Plan) -> Vec<Stage> {
    let speed_of = |key: &NodeKey| nodes.iter().find(|n| &n.key == key).map(|n| n.speed);
    let held: Vec<Contribution> = plan
        .pipelines
        .iter()
        .flat_map(|p| p.stages.iter())
        .filter(|s| s.layers.start < s.layers.end && u32::from(s.layers.end) <= l)
        .filter_map(|s| {
            let layers = u32::from(s.layers.start)..u32::from(s.layers.end);
            speed_of(&s.node).map(|v| Contribution::new(layers, v, 1.0))
        })
        .collect();
    // Each placed spare is added last, exactly as `sum` over the longer list
    // would add it, so the running total is the same bits without the
    // repeated O(L) passes.
    let mut t = sum(l, &held);
    let mut placed = Vec::new();
    for key in &plan.spare {
        let Some(node) = nodes.iter().find(|n| &n.key == key) else {
            continue;
        };
        let cap = node.any_role_cap(l);
        if cap == 0 {
            continue;
        }
        // The throughputs are sums of finite non-negative terms and l ≥ 1,
        // so this only fails if a sum overflowed to infinity.
        let Ok(window) = join_window(&t, to_u16(cap)) else {
            continue;
        };
        let added = Contribution::new(
            u32::from(window.start)..u32::from(window.end),
            node.speed,
            1.0,
        );
        for x in &mut t[window.start as usize..window.end as usize] {
            *x += added.per_layer;
        }
        placed.push(Stage {
            node: *key,
            layers: window,
        });
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::join_window;

    #[test]
    fn weakest_layer_decides_not_the_sum() {
        // Window 0..2 has the smallest sum; 2..4 holds the weakest layer.
        let t = [1.0, 1.0, 9.0, 0.5, 9.0];
        assert_eq!(join_window(&t, 2), Ok(2..4));
    }

    #[test]
    fn ties_go_to_the_lowest_start_and_cap_clamps() {
        assert_eq!(join_window(&[0.0; 6], 3), Ok(0..3));
        assert_eq!(join_window(&[2.0, 1.0], 9), Ok(0..2));
    }

    #[test]
    fn aligned_windows_meet_their_neighbours() {
        use super::aligned_window;
        use std::ops::Range;
        // Behind 0..11 and 11..22, a node capped at 11 takes 22..30, not 19..30.
        let mut t = [1.0; 30];
        t[22..].fill(0.0);
        assert_eq!(join_window(&t, 11), Ok(19..30));
        assert_eq!(aligned_window(&t, 11, &[0..11, 11..22]), Ok(Some(22..30)));
        // A replica doubles a whole holding rather than straddling two.
        let mut t = [2.0; 30];
        t[10..20].fill(1.0);
        let held = [0..10, 10..20, 20..30];
        assert_eq!(aligned_window(&t, 12, &held), Ok(Some(10..20)));
        // Nothing fits between the edges: no window.
        let whole = [Range { start: 0, end: 30 }];
        assert_eq!(aligned_window(&[1.0; 30], 5, &whole), Ok(None));
        // Nobody holds anything: the first cap layers.
        assert_eq!(aligned_window(&[0.0; 30], 11, &[]), Ok(Some(0..11)));
    }

    #[test]
    fn an_uncovered_gap_is_filled_first() {
        let t = [4.0, 4.0, 4.0, 0.0, 0.0, 4.0, 4.0];
        assert_eq!(join_window(&t, 2), Ok(3..5));
        assert_eq!(join_window(&t, 3), Ok(2..5));
    }
}
