//! One transformer block: pre-norm attention and MLP, each added to the
//! residual stream.

use crate::error::Result;
use crate::loader::{BlockWeights, LlamaConfig};
use crate::ops::{add_in_place, rms_norm};

use super::attention::{Attention, Rope};
use super::lora::RowAdapters;
use super::mlp::Mlp;
use super::Segment;

/// A residual block.
pub(crate) struct Block {
    /// RMS-norm gain before attention, `[hidden]`.
    attn_norm: Vec<f32>,
    pub(super) attn: Attention,
    /// RMS-norm gain before the MLP, `[hidden]`.
    ffn_norm: Vec<f32>,
    pub(super) mlp: Mlp,
    rms_eps: f32,
}

impl Block {
    /// Block number `layer`, from its loaded weights.
    pub(crate) fn new(layer: usize, w: BlockWeights, cfg: &LlamaConfig) -> Self {
        Self {
            attn_norm: w.attn_norm,
            attn: Attention::new(layer, w.wqkv, w.wo, cfg),
            ffn_norm: w.ffn_norm,
            mlp: Mlp::new(layer, w.w_gate_up, w.w_down, cfg),
            rms_eps: cfg.rms_eps,
        }
    }

    /// Bytes of weights held (the norm gains aside).
    pub(crate) fn weight_bytes(&self) -> usize {
        self.attn.weight_bytes() + self.mlp.weight_bytes()
    }

    /// Runs the block over the residual stream `x` (`[n, hidden]`, the
    /// segments' rows one after another) in place, each row with its
    /// segment's adapter (`lora`).
    pub(crate) fn forward(
        &self,
        x: &mut [f32],
        n: usize,
        segments: &mut [Segment<'_>],
        rope: &Rope,
        lora: &RowAdapters<'_>,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.attention_residual(x, n, segments, rope, lora)?;
        self.mlp_residual(x, n, lora)
    }

    /// `h = x + attn(norm(x))`, in place.
    pub(crate) fn attention_residual(
        &self,
        x: &mut [f32],
        n: usize,
        segments: &mut [Segment<'_>],
        rope: &Rope,
        lora: &RowAdapters<'_>,
    ) -> Result<()> {
        let xn = rms_norm(x, &self.attn_norm, self.rms_eps);
        let attn = self.attn.forward(&xn, n, segments, rope, lora)?;
        add_in_place(x, &attn);
        Ok(())
    }

    /// `out = h + mlp(norm(h))`, in place.
    pub(crate) fn mlp_residual(
        &self,
        h: &mut [f32],
        n: usize,
        lora: &RowAdapters<'_>,
    ) -> Result<()> {
        let hn = rms_norm(h, &self.ffn_norm, self.rms_eps);
        let mlp = self.mlp.forward(&hn, n, lora)?;
        add_in_place(h, &mlp);
        Ok(())
    }
}
