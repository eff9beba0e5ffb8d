//! Properties of the Petals join rule, spare placement and the rebalance
//! check.

use proptest::prelude::*;
use strata_pipeline::{
    join_window, layer_throughput, place_spares, plan, rebalance, Holding, NodeCap, Verdict,
};

use crate::common::{swarm, CASES};

/// The brute-force reference: every window sorted, the smallest first found.
fn weakest_window(t: &[f64], cap: usize) -> (usize, Vec<f64>) {
    let n = cap.min(t.len());
    let sorted = |s: usize| {
        let mut w = t[s..s + n].to_vec();
        w.sort_by(f64::total_cmp);
        w
    };
    let mut best = (0, sorted(0));
    for s in 1..=t.len() - n {
        let w = sorted(s);
        if w.iter()
            .zip(&best.1)
            .map(|(a, b)| a.total_cmp(b))
            .find(|o| o.is_ne())
            == Some(std::cmp::Ordering::Less)
        {
            best = (s, w);
        }
    }
    best
}

/// Throughputs with long runs and many ties (as holdings produce), or
/// arbitrary values.
fn throughputs() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        prop::collection::vec((0u8..4, 1usize..6), 1..20).prop_map(|runs| runs
            .into_iter()
            .flat_map(|(v, len)| std::iter::repeat_n(f64::from(v), len))
            .collect()),
        prop::collection::vec(0.0f64..5.0, 1..60),
    ]
}

/// The plan's own stages and placed spares as idle holdings.
fn holdings_of(l: u16, nodes: &[NodeCap]) -> Vec<Holding> {
    let p = plan(l, nodes).unwrap();
    let spares = place_spares(l, nodes, &p).unwrap();
    p.pipelines
        .iter()
        .flat_map(|pipe| pipe.stages.iter())
        .chain(&spares)
        .map(|s| Holding {
            node: s.node,
            layers: s.layers.clone(),
            free: 1.0,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// The window's sorted throughputs are minimal among all windows, and
    /// it is the first such window.
    #[test]
    fn join_window_is_the_weakest(t in throughputs(), cap in 1u16..80) {
        let w = join_window(&t, cap).unwrap();
        let n = usize::from(cap).min(t.len());
        prop_assert_eq!(w.len(), n);
        let (start, best) = weakest_window(&t, n);
        let mut got = t[usize::from(w.start)..usize::from(w.end)].to_vec();
        got.sort_by(f64::total_cmp);
        prop_assert_eq!(got, best);
        prop_assert_eq!(usize::from(w.start), start);
    }

    /// Spares get windows inside the model that they can hold in any role,
    /// and only spares get one.
    #[test]
    fn spares_get_windows_they_can_hold((l, nodes) in swarm(0..=20)) {
        let p = plan(l, &nodes).unwrap();
        let placed = place_spares(l, &nodes, &p).unwrap();
        let mut seen = std::collections::HashSet::new();
        for s in &placed {
            prop_assert!(p.spare.contains(&s.node));
            prop_assert!(seen.insert(s.node), "a spare placed twice");
            prop_assert!(s.layers.start < s.layers.end && s.layers.end <= l);
            let n = nodes.iter().find(|n| n.key == s.node).unwrap();
            let len = s.layers.end - s.layers.start;
            prop_assert!(len <= n.cap_first && len <= n.cap_last);
            prop_assert!(len < l || n.cap_solo >= l);
        }
    }

    /// Nodes that applied the plan are never told to move again by the same
    /// live set: no oscillation from the check itself.
    #[test]
    fn the_plan_is_a_fixed_point((l, nodes) in swarm(0..=14)) {
        let holdings = holdings_of(l, &nodes);
        let v = rebalance(l, &nodes, &holdings).unwrap();
        if plan(l, &nodes).unwrap().pipelines.is_empty() && !holdings_cover(l, &holdings) {
            prop_assert!(matches!(v, Verdict::CoverageLost { .. }), "{v:?}");
        } else {
            prop_assert!(matches!(v, Verdict::Keep { .. }), "{v:?}");
            prop_assert!(!v.should_move(Some(&v)));
        }
    }

    /// When a node dies, exactly the layers nobody else holds are reported.
    #[test]
    fn a_death_reports_exactly_the_uncovered_layers((l, nodes) in swarm(1..=14), pick in any::<prop::sample::Index>()) {
        let holdings = holdings_of(l, &nodes);
        prop_assume!(!holdings.is_empty());
        let dead = holdings[pick.index(holdings.len())].node;
        let live: Vec<NodeCap> = nodes.iter().filter(|n| n.key != dead).copied().collect();
        let v = rebalance(l, &live, &holdings).unwrap();
        let survivors: Vec<Holding> = holdings.iter().filter(|h| h.node != dead).cloned().collect();
        let t = layer_throughput(l, &live, &survivors).unwrap();
        let expected: Vec<u16> = (0..l).filter(|&i| t[usize::from(i)] == 0.0).collect();
        match v {
            Verdict::CoverageLost { gaps } => {
                let reported: Vec<u16> = gaps.into_iter().flatten().collect();
                prop_assert_eq!(reported, expected);
            }
            other => prop_assert!(expected.is_empty(), "{other:?} but {expected:?} uncovered"),
        }
    }
}

fn holdings_cover(l: u16, holdings: &[Holding]) -> bool {
    (0..l).all(|i| holdings.iter().any(|h| h.layers.contains(&i)))
}
