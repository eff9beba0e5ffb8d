//! Where the adapters meet the blocks: each row of a batch runs with its
//! segment's adapter (or none), and every projection of a block is the base
//! matmul plus, for the rows whose adapter adapts it, `scale · B·A·x` added
//! to that projection's slice of the (possibly fused) output.

use crate::adapter::{Adapter, LoraTarget};
use crate::error::Result;
use crate::kernels::for_each_chunk;
use crate::linear::Linear;

use super::Segment;

/// Multiply-adds of adapter work below which one thread does it: under it,
/// handing rows to the pool costs more than it saves.
const PARALLEL_WORK: usize = 1 << 16;

/// The adapter of every row of a batch, from its segments.
pub(crate) struct RowAdapters<'a> {
    /// One entry per row; empty when no segment has an adapter.
    rows: Vec<Option<&'a Adapter>>,
}

impl<'a> RowAdapters<'a> {
    /// Each segment's adapter, repeated over its rows.
    pub(crate) fn new(segments: &[Segment<'a>]) -> Self {
        if segments.iter().all(|s| s.adapter.is_none()) {
            return Self { rows: Vec::new() };
        }
        let rows = segments
            .iter()
            .flat_map(|s| std::iter::repeat_n(s.adapter, s.rows))
            .collect();
        Self { rows }
    }

    /// `x Wᵀ` for the `n` rows of `x`, plus each row's adapter delta for
    /// `parts`: the targets fused in `linear`, in the order of their output
    /// slices, with their widths.
    pub(crate) fn project(
        &self,
        linear: &Linear,
        layer: usize,
        parts: &[(LoraTarget, usize)],
        x: &[f32],
        n: usize,
    ) -> Result<Vec<f32>> {
        let mut y = linear.forward(x, n)?;
        self.add_deltas(layer, parts, x, n, &mut y);
        Ok(y)
    }

    /// Adds each row's deltas for `parts` to `y` (`[n, Σ widths]`), reading
    /// the row's input in `x` (`[n, in]`). Rows without an adapter, or whose
    /// adapter leaves a part alone, are not touched, so they keep the base
    /// model's bits.
    pub(crate) fn add_deltas(
        &self,
        layer: usize,
        parts: &[(LoraTarget, usize)],
        x: &[f32],
        n: usize,
        y: &mut [f32],
    ) {
        if self.rows.is_empty() || n == 0 {
            return;
        }
        let in_dim = x.len() / n;
        let width: usize = parts.iter().map(|(_, w)| w).sum();
        let work: usize = self
            .rows
            .iter()
            .flatten()
            .map(|a| {
                parts
                    .iter()
                    .filter_map(|&(t, _)| a.part(layer, t))
                    .map(|w| w.work())
                    .sum::<usize>()
            })
            .sum();
        if work == 0 {
            return;
        }
        // One item per row: a row's delta is the same arithmetic whichever
        // thread computes it, so the thread count changes no bit.
        for_each_chunk(
            y,
            width,
            work >= PARALLEL_WORK,
            |row, dst, t: &mut Vec<f32>| {
                let Some(adapter) = self.rows[row] else {
                    return;
                };
                let xr = &x[row * in_dim..(row + 1) * in_dim];
                let mut off = 0;
                for &(target, w) in parts {
                    if let Some(lora) = adapter.part(layer, target) {
                        lora.add_delta(xr, &mut dst[off..off + w], adapter.scale(), t);
                    }
                    off += w;
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::adapter::LoraPart;
    use crate::model::Model;

    fn model() -> Model {
        let path = crate::default_model_path().unwrap_or_else(|e| panic!("{e}"));
        Model::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    fn random(n: usize, amp: f32, rng: &mut impl Rng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-amp..amp)).collect()
    }

    /// Every fused projection of a real block, adapted, against a naive
    /// f64 loop for `W·x + scale·B·A·x`: the base part from the same
    /// quantized matmul, the delta computed independently, at each part's
    /// slice of the fused output. Rows 0 and 2 run the adapter, row 1 none
    /// (it must keep the base bits).
    #[test]
    fn adapted_projections_match_a_naive_loop() {
        let m = model();
        let cfg = m.config().clone();
        let layer = 3;
        let rank = 4;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let parts: Vec<LoraPart> = LoraTarget::ALL
            .into_iter()
            .map(|target| {
                let (i, o) = target.dims(&cfg);
                LoraPart {
                    layer,
                    target,
                    a: random(rank * i, 0.1, &mut rng),
                    b: random(o * rank, 0.1, &mut rng),
                }
            })
            .collect();
        let adapter = Arc::new(Adapter::new([0; 32], 1, rank, 8.0, parts).unwrap());
        adapter.check_shapes(&cfg).unwrap();
        let scale = f64::from(adapter.scale());
        let block = m.block(layer);
        let (h, q, kv, inter) = (
            cfg.hidden_size,
            cfg.q_dim(),
            cfg.kv_dim(),
            cfg.intermediate_size,
        );
        use LoraTarget::*;
        // (matrix, its fused parts with their widths, input width)
        type Case<'m> = (&'m Linear, Vec<(LoraTarget, usize)>, usize);
        let cases: [Case<'_>; 4] = [
            (
                &block.attn.wqkv,
                vec![(AttnQ, q), (AttnK, kv), (AttnV, kv)],
                h,
            ),
            (&block.attn.wo, vec![(AttnOutput, h)], q),
            (
                &block.mlp.gate_up,
                vec![(FfnGate, inter), (FfnUp, inter)],
                h,
            ),
            (&block.mlp.down, vec![(FfnDown, h)], inter),
        ];
        let rows = RowAdapters {
            rows: vec![Some(&adapter), None, Some(&adapter)],
        };
        for (linear, fused, in_dim) in cases {
            let x = random(3 * in_dim, 2.0, &mut rng);
            let base = linear.forward(&x, 3).unwrap();
            let got = rows.project(linear, layer, &fused, &x, 3).unwrap();
            let width = base.len() / 3;
            assert_eq!(
                got[width..2 * width],
                base[width..2 * width],
                "row 1 has no adapter"
            );
            let mut biggest_delta = 0f64;
            for r in [0, 2] {
                let xr = &x[r * in_dim..(r + 1) * in_dim];
                let mut off = 0;
                for &(target, w) in &fused {
                    let p = adapter
                        .parts()
                        .into_iter()
                        .find(|p| p.target == target)
                        .unwrap();
                    let t: Vec<f64> = (0..rank)
                        .map(|j| {
                            let row = &p.a[j * in_dim..(j + 1) * in_dim];
                            scale
                                * row
                                    .iter()
                                    .zip(xr)
                                    .map(|(a, v)| f64::from(*a) * f64::from(*v))
                                    .sum::<f64>()
                        })
                        .collect();
                    for o in 0..w {
                        let d: f64 = (0..rank).map(|j| f64::from(p.b[o * rank + j]) * t[j]).sum();
                        let want = f64::from(base[r * width + off + o]) + d;
                        let have = f64::from(got[r * width + off + o]);
                        assert!(
                            (have - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{target:?} row {r} out {o}: {have} vs {want}"
                        );
                        biggest_delta = biggest_delta.max(d.abs());
                    }
                    off += w;
                }
            }
            assert!(
                biggest_delta > 1e-2,
                "the delta is too small to test anything: {biggest_delta}"
            );
        }
    }
}
