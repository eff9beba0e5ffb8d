//! Properties of `plan`: coverage, caps, uniqueness, bounds, proportional
//! splits, and independence from input order.

use proptest::prelude::*;
use strata_pipeline::{plan, NodeCap};

use crate::common::{check_plan, deep_swarm, key, swarm, CASES};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Up to 12 nodes: the dynamic program decides.
    #[test]
    fn small_swarms_give_valid_plans((l, nodes) in swarm(0..=12)) {
        let p = plan(l, &nodes).unwrap();
        check_plan(l, &nodes, &p)?;
    }

    /// 17 to 40 nodes: the greedy pass decides.
    #[test]
    fn large_swarms_give_valid_plans((l, nodes) in swarm(17..=40)) {
        let p = plan(l, &nodes).unwrap();
        check_plan(l, &nodes, &p)?;
    }

    /// Models up to `u16::MAX` layers deep.
    #[test]
    fn deep_models_give_valid_plans((l, nodes) in deep_swarm(20)) {
        let p = plan(l, &nodes).unwrap();
        check_plan(l, &nodes, &p)?;
    }

    /// The same nodes in any order give the identical plan.
    #[test]
    fn input_order_does_not_matter(
        (l, nodes, shuffled) in swarm(0..=20).prop_flat_map(|(l, n)| (Just(l), Just(n.clone()), Just(n).prop_shuffle()))
    ) {
        prop_assert_eq!(plan(l, &nodes).unwrap(), plan(l, &shuffled).unwrap());
    }

    /// Identical nodes: every stage of a pipeline within one layer of the
    /// others, and as many pipelines as the caps allow for the best score.
    #[test]
    fn identical_nodes_split_evenly(l in 1u16..=60, cap in 1u16..=60, n in 1usize..=16, v in 0.1f64..10.0) {
        let nodes: Vec<NodeCap> = (0..n)
            .map(|i| NodeCap { key: key([7; 4], i), cap_first: cap, cap_mid: cap, cap_last: cap, cap_solo: cap, speed: v })
            .collect();
        let p = plan(l, &nodes).unwrap();
        check_plan(l, &nodes, &p)?;
        for pipe in &p.pipelines {
            let sizes: Vec<u16> = pipe.stages.iter().map(|s| s.layers.end - s.layers.start).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "{sizes:?}");
        }
        // Pipelines of one shape: ceil(L / cap) stages each, as many as fit.
        prop_assert_eq!(p.pipelines.len(), n / usize::from(l.div_ceil(cap)));
    }

    /// A node twice as fast as its partner holds about twice the layers.
    #[test]
    fn twice_as_fast_holds_about_twice(half in 2u16..=100, v in 0.1f64..10.0) {
        let l = 3 * half;
        let mk = |i, speed| NodeCap { key: key([0; 4], i), cap_first: l - 1, cap_mid: l - 1, cap_last: l - 1, cap_solo: l - 1, speed };
        let nodes = [mk(0, v), mk(1, 2.0 * v)];
        let p = plan(l, &nodes).unwrap();
        prop_assert_eq!(p.pipelines.len(), 1);
        let slow = p.layers_of(&nodes[0].key).unwrap().len();
        let fast = p.layers_of(&nodes[1].key).unwrap().len();
        prop_assert!(fast.abs_diff(2 * slow) <= 2, "fast {fast} slow {slow}");
    }
}
