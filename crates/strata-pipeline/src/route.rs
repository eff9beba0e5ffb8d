//! Choosing a request's route over the layers nodes announce they hold.
//!
//! A route is a chain of holdings whose ranges follow each other from layer 0
//! to the last (a node holding the whole model is a route of one hop). Its
//! expected time per token is what the gateway minimises:
//! - each hop's compute: its layers × its measured time per layer, stretched
//!   by its load (a hop busy a fraction `u` of the time serves a new stream
//!   at about `1 / (1 − u)` of its idle pace, capped so a saturated node is
//!   expensive, not infinitely so);
//! - the round trips between consecutive hops, and from the last hop back to
//!   the first (the sampled token returns there to be embedded).
//!
//! The return trip depends on the route's first hop, so the search runs a
//! shortest path from each first-hop candidate in turn; holdings are few (one
//! per live node), so this is cheap. Ties go to the route whose node keys
//! compare smallest, so every gateway with the same view picks the same route.

use std::cmp::Ordering;
use std::ops::Range;

use crate::alloc::NodeKey;

/// Highest load counted: a node at or above it costs `1 / (1 − MAX_LOAD)`
/// (20×) its idle time, so it is chosen only when nothing else covers its layers.
pub const MAX_LOAD: f64 = 0.95;

/// What one node offers a route.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The node.
    pub node: NodeKey,
    /// The layers it holds, `[start, end)`.
    pub layers: Range<u16>,
    /// Its measured decode time per layer per token, in milliseconds.
    pub layer_ms: f64,
    /// Fraction of its capacity in use, 0 to 1.
    pub load: f64,
}

/// A chosen route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The hops, first to last.
    pub hops: Vec<(NodeKey, Range<u16>)>,
    /// Expected milliseconds per generated token.
    pub ms_per_token: f64,
}

impl Offer {
    /// Its expected compute time per token, or None when the offer is not
    /// usable (an empty range, a non-finite or negative time).
    fn cost(&self) -> Option<f64> {
        let layers = f64::from(self.layers.end.checked_sub(self.layers.start)?);
        if layers == 0.0 || !self.layer_ms.is_finite() || self.layer_ms < 0.0 {
            return None;
        }
        let load = if self.load.is_finite() {
            self.load.clamp(0.0, MAX_LOAD)
        } else {
            MAX_LOAD
        };
        Some(layers * self.layer_ms / (1.0 - load))
    }
}

/// The route over `offers` with the least expected time per token for a
/// model of `n_layers`, avoiding the nodes in `exclude` (those that just
/// failed); `rtt_ms(a, b)` is the round trip between two nodes
/// (`default_rtt_ms` where unknown). None when no chain of usable offers
/// covers the model.
pub fn best_route(
    n_layers: u16,
    offers: &[Offer],
    exclude: &[NodeKey],
    rtt_ms: impl Fn(&NodeKey, &NodeKey) -> Option<f64>,
    default_rtt_ms: f64,
) -> Option<Route> {
    let usable: Vec<(usize, f64)> = offers
        .iter()
        .enumerate()
        .filter(|(_, o)| !exclude.contains(&o.node) && o.layers.end <= n_layers)
        .filter_map(|(i, o)| o.cost().map(|c| (i, c)))
        .collect();
    let rtt = |a: usize, b: usize| {
        rtt_ms(&offers[a].node, &offers[b].node)
            .filter(|r| r.is_finite() && *r >= 0.0)
            .unwrap_or(default_rtt_ms.max(0.0))
    };
    let mut best: Option<(f64, Vec<usize>)> = None;
    for &(first, first_cost) in usable.iter().filter(|(i, _)| offers[*i].layers.start == 0) {
        // Shortest paths from `first` over holdings (a DAG ordered by start
        // layer, so one pass in start order relaxes every edge once).
        let mut dist: Vec<Option<(f64, Vec<usize>)>> = vec![None; offers.len()];
        dist[first] = Some((first_cost, vec![first]));
        let mut order: Vec<usize> = usable.iter().map(|(i, _)| *i).collect();
        order.sort_by_key(|&i| (offers[i].layers.start, offers[i].node));
        for &u in &order {
            let Some((du, path)) = dist[u].clone() else {
                continue;
            };
            for &(v, cv) in &usable {
                if offers[v].layers.start != offers[u].layers.end || path.contains(&v) {
                    continue;
                }
                let candidate = (du + rtt(u, v) + cv, [path.clone(), vec![v]].concat());
                if better(&candidate, dist[v].as_ref(), offers) {
                    dist[v] = Some(candidate);
                }
            }
        }
        for &(last, _) in usable
            .iter()
            .filter(|(i, _)| offers[*i].layers.end == n_layers)
        {
            if let Some((d, path)) = &dist[last] {
                let back = if last == first { 0.0 } else { rtt(last, first) };
                let candidate = (d + back, path.clone());
                if better(&candidate, best.as_ref(), offers) {
                    best = Some(candidate);
                }
            }
        }
    }
    best.map(|(ms, path)| Route {
        hops: path
            .into_iter()
            .map(|i| (offers[i].node, offers[i].layers.clone()))
            .collect(),
        ms_per_token: ms,
    })
}

/// Whether `a` beats `b`: less time, then smaller node keys.
fn better(a: &(f64, Vec<usize>), b: Option<&(f64, Vec<usize>)>, offers: &[Offer]) -> bool {
    let Some(b) = b else {
        return true;
    };
    let keys = |p: &[usize]| p.iter().map(|&i| offers[i].node).collect::<Vec<_>>();
    match a.0.total_cmp(&b.0) {
        Ordering::Less => true,
        Ordering::Greater => false,
        Ordering::Equal => keys(&a.1) < keys(&b.1),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn offer(i: u8, layers: Range<u16>, layer_ms: f64, load: f64) -> Offer {
        Offer {
            node: [i; 32],
            layers,
            layer_ms,
            load,
        }
    }

    fn no_rtt(_: &NodeKey, _: &NodeKey) -> Option<f64> {
        None
    }

    #[test]
    fn a_whole_node_and_a_pipeline_compete_on_time() {
        let offers = [
            offer(1, 0..30, 1.0, 0.0),
            offer(2, 0..15, 0.5, 0.0),
            offer(3, 15..30, 0.5, 0.0),
        ];
        // With cheap round trips the faster pipeline wins.
        let r = best_route(30, &offers, &[], no_rtt, 1.0).unwrap();
        assert_eq!(r.hops, vec![([2; 32], 0..15), ([3; 32], 15..30)]);
        assert!((r.ms_per_token - 17.0).abs() < 1e-9);
        // With slow ones the single node does.
        let r = best_route(30, &offers, &[], no_rtt, 10.0).unwrap();
        assert_eq!(r.hops, vec![([1; 32], 0..30)]);
        // A loaded pipeline hop tips it back.
        let busy = [
            offers[0].clone(),
            offers[1].clone(),
            offer(3, 15..30, 0.5, 0.9),
        ];
        let r = best_route(30, &busy, &[], no_rtt, 1.0).unwrap();
        assert_eq!(r.hops, vec![([1; 32], 0..30)]);
    }

    #[test]
    fn a_failed_node_is_routed_around_and_gaps_give_none() {
        let offers = [
            offer(1, 0..10, 1.0, 0.0),
            offer(2, 10..20, 1.0, 0.0),
            offer(4, 10..20, 2.0, 0.0),
            offer(3, 20..30, 1.0, 0.0),
        ];
        let r = best_route(30, &offers, &[], no_rtt, 1.0).unwrap();
        assert_eq!(r.hops[1].0, [2; 32]);
        let r = best_route(30, &offers, &[[2; 32]], no_rtt, 1.0).unwrap();
        assert_eq!(r.hops[1].0, [4; 32]);
        assert!(best_route(30, &offers, &[[2; 32], [4; 32]], no_rtt, 1.0).is_none());
        assert!(best_route(31, &offers, &[], no_rtt, 1.0).is_none());
        let bad = [offer(1, 0..30, f64::NAN, 0.0), offer(2, 5..5, 1.0, 0.0)];
        assert!(best_route(30, &bad, &[], no_rtt, 1.0).is_none());
    }

    /// Every route by brute force: (time, node keys) of each.
    fn all_routes(
        n: u16,
        offers: &[Offer],
        rtt: &dyn Fn(usize, usize) -> f64,
    ) -> Vec<(f64, Vec<NodeKey>)> {
        fn walk(
            n: u16,
            offers: &[Offer],
            rtt: &dyn Fn(usize, usize) -> f64,
            path: &mut Vec<usize>,
            out: &mut Vec<(f64, Vec<NodeKey>)>,
        ) {
            let last = *path.last().unwrap_or(&usize::MAX);
            let at = path.last().map_or(0, |&i| offers[i].layers.end);
            if at == n && !path.is_empty() {
                let mut t: f64 = path.iter().map(|&i| offers[i].cost().unwrap()).sum();
                t += path.windows(2).map(|w| rtt(w[0], w[1])).sum::<f64>();
                if path.len() > 1 {
                    t += rtt(last, path[0]);
                }
                out.push((t, path.iter().map(|&i| offers[i].node).collect()));
                return;
            }
            for (i, o) in offers.iter().enumerate() {
                if o.layers.start == at && o.cost().is_some() && !path.contains(&i) {
                    path.push(i);
                    walk(n, offers, rtt, path, out);
                    path.pop();
                }
            }
        }
        let mut out = Vec::new();
        walk(n, offers, rtt, &mut Vec::new(), &mut out);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn the_route_is_the_fastest_there_is(
            raw in proptest::collection::vec((0u16..6, 1u16..4, 1u32..50, 0u32..100), 1..8),
            rtts in proptest::collection::vec(0u32..20, 64),
        ) {
            let n = 6;
            let offers: Vec<Offer> = raw
                .iter()
                .enumerate()
                .map(|(i, &(start, len, ms, load))| {
                    offer(i as u8, start..(start + len).min(n), f64::from(ms) / 10.0, f64::from(load) / 100.0)
                })
                .collect();
            let rtt_of = |a: &NodeKey, b: &NodeKey| {
                Some(f64::from(rtts[usize::from(a[0]) * 8 + usize::from(b[0])]))
            };
            let by_index = |a: usize, b: usize| rtt_of(&offers[a].node, &offers[b].node).unwrap_or(0.0);
            let every = all_routes(n, &offers, &by_index);
            let found = best_route(n, &offers, &[], rtt_of, 0.0);
            match found {
                None => prop_assert!(every.is_empty()),
                Some(r) => {
                    let best = every.iter().map(|(t, _)| *t).fold(f64::INFINITY, f64::min);
                    prop_assert!((r.ms_per_token - best).abs() < 1e-9, "{} vs {}", r.ms_per_token, best);
                    let mut at = 0;
                    for (_, layers) in &r.hops {
                        prop_assert_eq!(layers.start, at);
                        at = layers.end;
                    }
                    prop_assert_eq!(at, n);
                    // Excluding the first hop's node never routes through it.
                    let first = r.hops[0].0;
                    if let Some(r2) = best_route(n, &offers, &[first], rtt_of, 0.0) {
                        prop_assert!(r2.hops.iter().all(|(k, _)| *k != first));
                    }
                }
            }
        }
    }
}
