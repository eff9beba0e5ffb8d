//! The feed-forward sub-layer: SwiGLU, `Wdown · (silu(Wgate·x) ⊙ Wup·x)`.

use crate::adapter::LoraTarget;
use crate::error::Result;
use crate::linear::Linear;
use crate::loader::LlamaConfig;
use crate::ops::silu;

use super::lora::RowAdapters;

/// The MLP of one block.
pub(crate) struct Mlp {
    /// The block's index: which of an adapter's parts apply here.
    layer: usize,
    /// Fused `[Wgate; Wup]`: hidden → 2·intermediate (gate outputs first).
    pub(super) gate_up: Linear,
    /// Down projection: intermediate → hidden.
    pub(super) down: Linear,
    intermediate: usize,
    hidden: usize,
}

impl Mlp {
    pub(crate) fn new(layer: usize, gate_up: Linear, down: Linear, cfg: &LlamaConfig) -> Self {
        Self {
            layer,
            gate_up,
            down,
            intermediate: cfg.intermediate_size,
            hidden: cfg.hidden_size,
        }
    }

    /// Bytes of weights held.
    pub(crate) fn weight_bytes(&self) -> usize {
        self.gate_up.bytes() + self.down.bytes()
    }

    /// The MLP of the `n` rows of the normed input `xn` (`[n, hidden]`),
    /// each row with its adapter's deltas; returns `[n, hidden]`.
    pub(crate) fn forward(&self, xn: &[f32], n: usize, lora: &RowAdapters<'_>) -> Result<Vec<f32>> {
        let (inter, layer) = (self.intermediate, self.layer);
        let gate_up = [(LoraTarget::FfnGate, inter), (LoraTarget::FfnUp, inter)];
        let gu = lora.project(&self.gate_up, layer, &gate_up, xn, n)?; // [n, 2·intermediate]
        let mut act = vec![0f32; n * inter]; // [n, intermediate]
        for (a, row) in act.chunks_mut(inter).zip(gu.chunks(2 * inter)) {
            let (gate, up) = row.split_at(inter);
            for ((a, g), u) in a.iter_mut().zip(gate).zip(up) {
                *a = silu(*g) * u;
            }
        }
        let down = [(LoraTarget::FfnDown, self.hidden)];
        lora.project(&self.down, layer, &down, &act, n) // [n, hidden]
    }
}
