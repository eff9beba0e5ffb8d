//! The feed-forward sub-layer: SwiGLU, `Wdown · (silu(Wgate·x) ⊙ Wup·x)`.

use crate::error::Result;
use crate::linear::Linear;
use crate::ops::silu;

/// The MLP of one block.
pub(crate) struct Mlp {
    /// Fused `[Wgate; Wup]`: hidden → 2·intermediate (gate outputs first).
    gate_up: Linear,
    /// Down projection: intermediate → hidden.
    down: Linear,
    intermediate: usize,
}

impl Mlp {
    pub(crate) fn new(gate_up: Linear, down: Linear, intermediate: usize) -> Self {
        Self {
            gate_up,
            down,
            intermediate,
        }
    }

    /// Bytes of weights held.
    pub(crate) fn weight_bytes(&self) -> usize {
        self.gate_up.bytes() + self.down.bytes()
    }

    /// The MLP of the `n` rows of the normed input `xn` (`[n, hidden]`);
    /// returns `[n, hidden]`.
    pub(crate) fn forward(&self, xn: &[f32], n: usize) -> Result<Vec<f32>> {
        let inter = self.intermediate;
        let gu = self.gate_up.forward(xn, n)?; // [n, 2·intermediate]
        let mut act = vec![0f32; n * inter]; // [n, intermediate]
        for (a, row) in act.chunks_mut(inter).zip(gu.chunks(2 * inter)) {
            let (gate, up) = row.split_at(inter);
            for ((a, g), u) in a.iter_mut().zip(gate).zip(up) {
                *a = silu(*g) * u;
            }
        }
        self.down.forward(&act, n) // [n, hidden]
    }
}
