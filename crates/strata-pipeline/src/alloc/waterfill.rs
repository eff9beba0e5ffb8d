//! Phase two: splitting `L` layers among a pipeline's stages by speed.
//!
//! A stage's time per token is its layers over its speed, and a pipeline runs
//! at the pace of its slowest stage, so the ideal split gives each stage
//! layers in proportion to its speed: `t_i = λ·v_i`. Caps bound it, and every
//! stage holds at least one layer, hence `t_i = clamp(λ·v_i, 1, cap_i)` with
//! the one `λ` for which `Σ t_i = L`: water poured into vessels of different
//! widths (speeds) and heights (caps) until it reaches `L`.

/// Layer counts for stages `(cap, speed)` in hop order, summing to `l`, each
/// in `[1, cap]`. `None` if no such split exists (more stages than layers,
/// a zero cap, or caps summing below `l`).
///
/// Rounding: floors first, then the remaining layers go one at a time to the
/// stages with the largest fractional parts that still have room (ties: the
/// faster stage, then the earlier one). Because `t` grows with speed and the
/// fractional parts are compared in the same order, a faster stage never ends
/// with fewer layers than a slower one unless it is at its cap, and stages of
/// equal speed and cap differ by at most one layer.
pub(crate) fn split(l: u32, stages: &[(u32, f64)]) -> Option<Vec<u32>> {
    let m = u32::try_from(stages.len()).ok()?;
    let total_cap: u64 = stages.iter().map(|&(c, _)| u64::from(c)).sum();
    if m == 0 || m > l || stages.iter().any(|&(c, _)| c == 0) || total_cap < u64::from(l) {
        return None;
    }
    let lambda = solve_lambda(f64::from(l), stages);
    let targets: Vec<f64> = stages.iter().map(|&(c, v)| share(lambda, c, v)).collect();
    // t ∈ [1, cap] and cap ≤ u32::MAX, so the cast is exact.
    let mut sizes: Vec<u32> = targets.iter().map(|t| t.floor() as u32).collect();
    let mut order: Vec<usize> = (0..stages.len()).collect();
    order.sort_by(|&a, &b| {
        let fa = targets[a] - targets[a].floor();
        let fb = targets[b] - targets[b].floor();
        fb.total_cmp(&fa)
            .then(stages[b].1.total_cmp(&stages[a].1))
            .then(a.cmp(&b))
    });
    let assigned: u64 = sizes.iter().map(|&s| u64::from(s)).sum();
    // Σ floor(t) ≤ Σ t ≤ l: the bisection keeps the sum at or below l. The
    // leftover is usually below m; float error can leave a little more, hence
    // whole passes until it is gone. Room suffices: Σ cap ≥ l.
    let mut left = u64::from(l).saturating_sub(assigned);
    while left > 0 {
        let before = left;
        for &i in &order {
            if left > 0 && sizes[i] < stages[i].0 {
                sizes[i] += 1;
                left -= 1;
            }
        }
        if left == before {
            return None;
        }
    }
    Some(sizes)
}

/// One stage's continuous share for water level `lambda`.
fn share(lambda: f64, cap: u32, speed: f64) -> f64 {
    // λ·v may overflow to +∞ or underflow to 0 for extreme speeds; the clamp
    // turns both into a cap or one layer, never NaN (λ and v are finite).
    (lambda * speed).clamp(1.0, f64::from(cap))
}

/// The largest `λ ≥ 0` with `Σ share(λ) ≤ l`.
///
/// Bisection on the bit pattern rather than the value: for non-negative
/// finite doubles the bits order as the values, so at most 64 halvings reach
/// the last representable `λ` whatever the scale of the speeds (a value
/// bisection from `f64::MAX` would need over a thousand steps to get the same
/// precision for small `λ`).
fn solve_lambda(l: f64, stages: &[(u32, f64)]) -> f64 {
    let fill = |lambda: f64| -> f64 { stages.iter().map(|&(c, v)| share(lambda, c, v)).sum() };
    let (mut lo, mut hi) = (0f64.to_bits(), f64::MAX.to_bits());
    if fill(f64::MAX) <= l {
        // Every stage is at its cap (or held at 1 by a vanishing speed); the
        // rounding passes hand out whatever is left.
        return f64::MAX;
    }
    // Invariant: fill(lo) ≤ l < fill(hi); fill(0) = m ≤ l.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fill(f64::from_bits(mid)) <= l {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    f64::from_bits(lo)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn equal_speeds_split_evenly() {
        assert_eq!(split(30, &[(12, 1.0); 3]), Some(vec![10, 10, 10]));
        assert_eq!(split(31, &[(12, 1.0); 3]), Some(vec![11, 10, 10]));
    }

    #[test]
    fn twice_as_fast_gets_twice_the_layers() {
        assert_eq!(split(30, &[(30, 2.0), (30, 1.0)]), Some(vec![20, 10]));
        assert_eq!(split(30, &[(30, 1.0), (30, 2.0)]), Some(vec![10, 20]));
    }

    #[test]
    fn caps_bind_and_the_rest_flows_elsewhere() {
        // The fast node would take 25 but holds 12; the others share 18.
        assert_eq!(
            split(30, &[(12, 10.0), (30, 1.0), (30, 1.0)]),
            Some(vec![12, 9, 9])
        );
    }

    #[test]
    fn every_stage_keeps_a_layer() {
        assert_eq!(split(10, &[(10, 1e12), (10, 1.0)]), Some(vec![9, 1]));
        assert_eq!(split(2, &[(1, 1e-300), (1, 1e300)]), Some(vec![1, 1]));
    }

    #[test]
    fn a_vanishing_speed_takes_what_the_capped_stages_cannot() {
        // λ·1e-320 stays below one layer at any λ: the fast stage fills its
        // cap, and the leftover layer must go to the stage with room.
        assert_eq!(split(7, &[(5, 1e-320), (5, 1.0)]), Some(vec![2, 5]));
    }

    #[test]
    fn impossible_splits_are_none() {
        assert_eq!(split(2, &[(5, 1.0); 3]), None);
        assert_eq!(split(30, &[(10, 1.0), (10, 1.0)]), None);
        assert_eq!(split(3, &[(0, 1.0), (5, 1.0)]), None);
        assert_eq!(split(3, &[]), None);
    }
}
