//! Causal grouped-query self-attention with rotary position embeddings, each
//! sequence of the batch (a [`Segment`]) attending to its own KV cache.

use crate::adapter::LoraTarget;
use crate::error::{EngineError, Result};
use crate::kernels::{attention::attend, for_each_chunk};
use crate::kv_cache::LayerKv;
use crate::linear::Linear;
use crate::loader::LlamaConfig;

use super::lora::RowAdapters;
use super::Segment;

/// Work (cached positions × heads) below which one thread does the attention:
/// under it, handing items to the pool costs more than it saves.
const PARALLEL_WORK: usize = 4096;

/// The rotary embedding's cos/sin table, `[position][head_dim / 2]`, computed
/// once for the whole context.
pub(crate) struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    /// The table for `cfg`'s head width, base frequency and context length.
    pub(crate) fn new(cfg: &LlamaConfig) -> Self {
        let half = cfg.head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1f32 / cfg.rope_theta.powf((2 * i) as f32 / cfg.head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(cfg.context_length * half);
        let mut sin = Vec::with_capacity(cfg.context_length * half);
        for pos in 0..cfg.context_length {
            for f in &inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Self { cos, sin }
    }

    /// Rotates one head's vector by the position's angles (interleaved pairs, the
    /// layout GGUF llama weights are stored in).
    fn apply(&self, head: &mut [f32], pos: usize) {
        let half = head.len() / 2;
        let cos = &self.cos[pos * half..(pos + 1) * half];
        let sin = &self.sin[pos * half..(pos + 1) * half];
        for (i, pair) in head.chunks_exact_mut(2).enumerate() {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos[i] - b * sin[i];
            pair[1] = a * sin[i] + b * cos[i];
        }
    }
}

/// The attention sub-layer of one block.
pub(crate) struct Attention {
    /// The block's index: which layer of each segment's cache it uses.
    layer: usize,
    /// Fused `[Wq; Wk; Wv]`: hidden → q_dim + 2·kv_dim.
    pub(super) wqkv: Linear,
    /// Output projection: q_dim → hidden.
    pub(super) wo: Linear,
    hidden: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub(crate) fn new(layer: usize, wqkv: Linear, wo: Linear, cfg: &LlamaConfig) -> Self {
        Self {
            layer,
            wqkv,
            wo,
            hidden: cfg.hidden_size,
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
            head_dim: cfg.head_dim,
        }
    }

    /// Bytes of weights held.
    pub(crate) fn weight_bytes(&self) -> usize {
        self.wqkv.bytes() + self.wo.bytes()
    }

    /// `Wo · attention(rope(Wq·x), rope(Wk·x), Wv·x)` for the `n` rows of the
    /// normed input `xn` (`[n, hidden]`), segment after segment, each row's
    /// projections with its adapter's deltas (before RoPE, where an unfused
    /// `W·x + scale·B·A·x` would be); appends each segment's new keys and
    /// values to its cache. Returns `[n, hidden]`.
    pub(crate) fn forward(
        &self,
        xn: &[f32],
        n: usize,
        segments: &mut [Segment<'_>],
        rope: &Rope,
        lora: &RowAdapters<'_>,
    ) -> Result<Vec<f32>> {
        let (q_dim, kv_dim, _) = self.dims();
        let qkv_parts = [
            (LoraTarget::AttnQ, q_dim),
            (LoraTarget::AttnK, kv_dim),
            (LoraTarget::AttnV, kv_dim),
        ];
        let mut qkv = lora.project(&self.wqkv, self.layer, &qkv_parts, xn, n)?; // [n, q_dim + 2·kv_dim]
        let starts = self.rotate_and_cache(&mut qkv, segments, rope)?;
        let heads = self.attend(&qkv, segments, &starts)?; // [n, q_dim]
        let o_parts = [(LoraTarget::AttnOutput, self.hidden)];
        lora.project(&self.wo, self.layer, &o_parts, &heads, n) // [n, hidden]
    }

    /// Applies RoPE to the new queries and keys (in `qkv`, at each row's
    /// position) and appends keys and values to each segment's cache. Returns
    /// each segment's first new position.
    fn rotate_and_cache(
        &self,
        qkv: &mut [f32],
        segments: &mut [Segment<'_>],
        rope: &Rope,
    ) -> Result<Vec<usize>> {
        let (q_dim, kv_dim, hd) = self.dims();
        let width = q_dim + 2 * kv_dim;
        let mut starts = Vec::with_capacity(segments.len());
        let mut row = 0;
        for seg in segments.iter_mut() {
            let kv = seg.cache.layer_mut(self.layer)?;
            starts.push(kv.len);
            for r in 0..seg.rows {
                let pos = kv.len;
                let line = &mut qkv[(row + r) * width..(row + r + 1) * width];
                let (q, rest) = line.split_at_mut(q_dim);
                let (k, v) = rest.split_at_mut(kv_dim);
                for head in q.chunks_mut(hd) {
                    rope.apply(head, pos);
                }
                for head in k.chunks_mut(hd) {
                    rope.apply(head, pos);
                }
                kv.k.extend_from_slice(k);
                kv.v.extend_from_slice(v);
                kv.len += 1;
            }
            row += seg.rows;
        }
        Ok(starts)
    }

    /// Causal attention of every new row's query heads over its segment's
    /// cache (which already holds the row's own key and value). `qkv` is
    /// `[n, q_dim + 2·kv_dim]`; returns `[n, q_dim]`.
    fn attend(&self, qkv: &[f32], segments: &[Segment<'_>], starts: &[usize]) -> Result<Vec<f32>> {
        let (q_dim, kv_dim, hd) = self.dims();
        let width = q_dim + 2 * kv_dim;
        let n_rows = qkv.len() / width;
        // Each new row: (row, segment, position).
        let mut items: Vec<(usize, usize, usize)> = Vec::with_capacity(n_rows);
        let mut row = 0;
        for (si, seg) in segments.iter().enumerate() {
            for r in 0..seg.rows {
                items.push((row + r, si, starts[si] + r));
            }
            row += seg.rows;
        }
        let caches: Vec<&LayerKv> = segments
            .iter()
            .map(|s| s.cache.layer(self.layer))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| EngineError::InvalidRequest("cache layer missing".into()))?;
        let mut out = vec![0f32; n_rows * q_dim];
        let group = self.n_heads / self.n_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        // One work item per (row, kv head): the `group` query heads sharing a
        // kv head read each cached key and value once. Each head's arithmetic
        // (and its order) is the same as computing it alone, so neither the
        // grouping nor the thread count changes a bit.
        let work: usize = items.iter().map(|(_, _, pos)| pos + 1).sum::<usize>() * self.n_heads;
        let n_kv_heads = self.n_kv_heads;
        for_each_chunk(
            &mut out,
            group * hd,
            work >= PARALLEL_WORK,
            |item, dst, scores: &mut Vec<f32>| {
                let (r, g) = (item / n_kv_heads, item % n_kv_heads);
                let (row, si, pos) = items[r];
                let kv = caches[si];
                let qs = &qkv[row * width + g * group * hd..row * width + (g + 1) * group * hd];
                attend(
                    qs,
                    &kv.k,
                    &kv.v,
                    kv_dim,
                    g * hd,
                    hd,
                    pos + 1,
                    scale,
                    scores,
                    dst,
                );
            },
        );
        Ok(out)
    }

    /// `(q_dim, kv_dim, head_dim)`.
    fn dims(&self) -> (usize, usize, usize) {
        (
            self.n_heads * self.head_dim,
            self.n_kv_heads * self.head_dim,
            self.head_dim,
        )
    }
}
