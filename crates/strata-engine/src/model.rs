//! The llama-family transformer, written so that each piece can run on its own:
//! embedding, any range of blocks `[a, b)` on explicit hidden states, and the final
//! norm plus head. A pipeline of shards is these calls on different machines.
//!
//! Per block, with `x` the residual stream (one row per position):
//!
//! ```text
//! h   = x + Wo · attention(rope(Wq·rms(x)), rope(Wk·rms(x)), Wv·rms(x))
//! out = h + Wdown · (silu(Wgate·rms(h)) ⊙ Wup·rms(h))
//! ```
//!
//! Determinism: every output value is computed by the same sequence of
//! floating-point operations whatever the batch composition, the number of rows
//! in the call (prefill or one-token decode) or the thread count. Quantized
//! matmuls compute each output as one block dot product of one input row; the
//! attention, norms and activations below work row by row in a fixed order.
//! That is what lets a verifier re-run a layer and compare closely.

use std::ops::Range;
use std::path::Path;

use candle_core::{Device, Module, Tensor};

use crate::commitment::CommitmentRecorder;
use crate::error::{EngineError, Result};
use crate::hidden::HiddenStates;
use crate::kernels::{attention, SharedOut};
use crate::kv_cache::{KvCache, LayerKv};
use crate::weights::{self, GgufFile, Linear, LlamaConfig, ModelWeights};

/// One sequence's share of a batched forward pass: its next `rows` rows of the
/// hidden-state matrix, its KV cache and, optionally, its commitment recorder.
pub struct Segment<'a> {
    /// The sequence's cache for (at least) the layers being run.
    pub cache: &'a mut KvCache,
    /// How many consecutive rows of the batch belong to this sequence (its new
    /// positions: the whole prompt when prefilling, one when decoding).
    pub rows: usize,
    /// Records per-layer commitment entries when present.
    pub recorder: Option<&'a mut CommitmentRecorder>,
}

/// A loaded llama-family model.
pub struct Model {
    w: ModelWeights,
    /// cos/sin of the rotary angles, `[position][head_dim / 2]`.
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.w.config)
            .finish()
    }
}

impl Model {
    /// Loads a llama-family model from `path`: a GGUF file, or a Hugging Face
    /// model directory (`config.json` plus safetensors weights, see
    /// [`crate::Engine::load`]).
    pub fn load(path: &Path) -> Result<Self> {
        if crate::safetensors::is_model_dir(path) {
            let weights = crate::safetensors::load_model_dir(path)?;
            return Ok(Self::from_weights(weights));
        }
        let file = GgufFile::open(path)?;
        Self::from_gguf_file(file)
    }

    /// Loads a model from GGUF bytes in memory.
    pub fn from_gguf_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::from_gguf_file(GgufFile::from_bytes(bytes)?)
    }

    pub(crate) fn from_gguf_file(file: GgufFile) -> Result<Self> {
        let w = weights::load_gguf(file)?;
        Ok(Self::from_weights(w))
    }

    pub(crate) fn from_weights(w: ModelWeights) -> Self {
        let cfg = &w.config;
        let half = cfg.head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1f32 / cfg.rope_theta.powf((2 * i) as f32 / cfg.head_dim as f32))
            .collect();
        let mut rope_cos = Vec::with_capacity(cfg.context_length * half);
        let mut rope_sin = Vec::with_capacity(cfg.context_length * half);
        for pos in 0..cfg.context_length {
            for f in &inv_freq {
                let angle = pos as f32 * f;
                rope_cos.push(angle.cos());
                rope_sin.push(angle.sin());
            }
        }
        Self {
            w,
            rope_cos,
            rope_sin,
        }
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.w.config
    }

    /// Number of transformer blocks.
    pub fn n_layers(&self) -> usize {
        self.w.config.n_layers
    }

    /// Bytes of weights held in memory.
    pub fn weight_bytes(&self) -> usize {
        let blocks: usize = self
            .w
            .blocks
            .iter()
            .map(|b| b.wqkv.bytes() + b.wo.bytes() + b.w_gate_up.bytes() + b.w_down.bytes())
            .sum();
        blocks + self.w.output.bytes() + self.w.tok_embd.storage_size_in_bytes()
    }

    /// An empty KV cache for layers `range` (use `0..n_layers` for the whole model).
    pub fn new_cache(&self, range: Range<usize>) -> Result<KvCache> {
        self.check_range(&range)?;
        Ok(KvCache::new(range))
    }

    fn check_range(&self, range: &Range<usize>) -> Result<()> {
        if range.start > range.end || range.end > self.n_layers() {
            return Err(EngineError::InvalidRequest(format!(
                "layer range {range:?} is not within 0..{}",
                self.n_layers()
            )));
        }
        Ok(())
    }

    /// Step 1: token embeddings, one row per token.
    pub fn embed(&self, tokens: &[u32]) -> Result<HiddenStates> {
        let vocab = self.w.config.vocab_size;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::BadToken { id, vocab });
        }
        let h = self.w.config.hidden_size;
        if tokens.is_empty() {
            return HiddenStates::new(0, h, Vec::new());
        }
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        let data = self
            .w
            .tok_embd
            .embedding(&ids)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        HiddenStates::new(tokens.len(), h, data)
    }

    /// Step 2: runs blocks `layers` over `x` in place. The rows of `x` are the
    /// segments' new positions, segment after segment; each segment attends to its
    /// own cache, which must cover `layers`.
    pub fn forward_layers(
        &self,
        layers: Range<usize>,
        x: &mut HiddenStates,
        segments: &mut [Segment<'_>],
    ) -> Result<()> {
        self.check_range(&layers)?;
        let cfg = &self.w.config;
        if x.cols() != cfg.hidden_size {
            return Err(EngineError::InvalidRequest(format!(
                "hidden states are {} wide, the model expects {}",
                x.cols(),
                cfg.hidden_size
            )));
        }
        let total: usize = segments.iter().map(|s| s.rows).sum();
        if total != x.rows() {
            return Err(EngineError::InvalidRequest(format!(
                "segments cover {total} rows but the hidden states have {}",
                x.rows()
            )));
        }
        for seg in segments.iter() {
            let cr = seg.cache.layer_range();
            if layers.start < cr.start || layers.end > cr.end {
                return Err(EngineError::InvalidRequest(format!(
                    "cache covers layers {cr:?}, asked to run {layers:?}"
                )));
            }
            for l in layers.clone() {
                let len = seg.cache.layer(l).map(|k| k.len).unwrap_or(0);
                if len + seg.rows > cfg.context_length {
                    return Err(EngineError::PromptTooLong {
                        tokens: len + seg.rows,
                        max_new: 0,
                        context: cfg.context_length,
                    });
                }
            }
        }
        for l in layers {
            let mut row = 0;
            for seg in segments.iter_mut() {
                if let Some(rec) = seg.recorder.as_deref_mut() {
                    let s =
                        &x.as_slice()[row * cfg.hidden_size..(row + seg.rows) * cfg.hidden_size];
                    rec.record_input(l, s)?;
                }
                row += seg.rows;
            }
            self.block_forward(l, x, segments)?;
            let mut row = 0;
            for seg in segments.iter_mut() {
                if let Some(rec) = seg.recorder.as_deref_mut() {
                    let s =
                        &x.as_slice()[row * cfg.hidden_size..(row + seg.rows) * cfg.hidden_size];
                    rec.record_output(l, s)?;
                }
                row += seg.rows;
            }
        }
        Ok(())
    }

    /// Step 3: final norm and head on the selected rows of `x` (usually each
    /// sequence's last row); one logits vector per selected row.
    pub fn logits(&self, x: &HiddenStates, rows: &[usize]) -> Result<Vec<Vec<f32>>> {
        let cfg = &self.w.config;
        if x.cols() != cfg.hidden_size {
            return Err(EngineError::InvalidRequest("hidden width mismatch".into()));
        }
        let mut sel = Vec::with_capacity(rows.len() * cfg.hidden_size);
        for &r in rows {
            let row = x
                .row(r)
                .ok_or_else(|| EngineError::InvalidRequest(format!("row {r} out of range")))?;
            sel.extend_from_slice(row);
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let normed = rms_norm(&sel, &self.w.output_norm, cfg.rms_eps);
        let logits = matmul(&self.w.output, &normed, rows.len())?;
        Ok(logits
            .chunks(cfg.vocab_size.max(1))
            .map(|c| c.to_vec())
            .collect())
    }

    /// One transformer block over all segments' rows.
    fn block_forward(
        &self,
        layer: usize,
        x: &mut HiddenStates,
        segments: &mut [Segment<'_>],
    ) -> Result<()> {
        let cfg = &self.w.config;
        let w = &self.w.blocks[layer];
        let n = x.rows();
        if n == 0 {
            return Ok(());
        }
        // Attention sub-block.
        let xn = rms_norm(x.as_slice(), &w.attn_norm, cfg.rms_eps);
        let mut qkv = matmul(&w.wqkv, &xn, n)?; // [n, q_dim + 2 kv_dim]
        let attn = self.attention(layer, &mut qkv, segments)?; // [n, q_dim]
        let o = matmul(&w.wo, &attn, n)?; // [n, hidden]
        add_in_place(x.as_mut_slice(), &o);
        // MLP sub-block.
        let hn = rms_norm(x.as_slice(), &w.ffn_norm, cfg.rms_eps);
        let gu = matmul(&w.w_gate_up, &hn, n)?; // [n, 2 · intermediate]
        let inter = cfg.intermediate_size;
        let mut act = vec![0f32; n * inter];
        for (a, row) in act.chunks_mut(inter).zip(gu.chunks(2 * inter)) {
            let (gate, up) = row.split_at(inter);
            for ((a, g), u) in a.iter_mut().zip(gate).zip(up) {
                *a = silu(*g) * u;
            }
        }
        let down = matmul(&w.w_down, &act, n)?; // [n, hidden]
        add_in_place(x.as_mut_slice(), &down);
        Ok(())
    }

    /// Applies RoPE to the new queries and keys, appends keys and values to each
    /// segment's cache, then computes causal attention for every new row.
    fn attention(
        &self,
        layer: usize,
        qkv: &mut [f32],
        segments: &mut [Segment<'_>],
    ) -> Result<Vec<f32>> {
        let cfg = &self.w.config;
        let (q_dim, kv_dim, hd) = (cfg.q_dim(), cfg.kv_dim(), cfg.head_dim);
        let width = q_dim + 2 * kv_dim;
        let n_rows = qkv.len() / width;
        // Phase 1 (sequential, cheap): rotate and append to the caches.
        let mut starts = Vec::with_capacity(segments.len());
        let mut row = 0;
        for seg in segments.iter_mut() {
            let kv = seg.cache.layer_mut(layer)?;
            starts.push(kv.len);
            for r in 0..seg.rows {
                let pos = kv.len;
                let line = &mut qkv[(row + r) * width..(row + r + 1) * width];
                let (q, rest) = line.split_at_mut(q_dim);
                let (k, v) = rest.split_at_mut(kv_dim);
                for head in q.chunks_mut(hd) {
                    self.rope(head, pos);
                }
                for head in k.chunks_mut(hd) {
                    self.rope(head, pos);
                }
                kv.k.extend_from_slice(k);
                kv.v.extend_from_slice(v);
                kv.len += 1;
            }
            row += seg.rows;
        }
        // Phase 2: one work item per (row, head), each independent.
        let mut items: Vec<(usize, usize, usize)> = Vec::with_capacity(n_rows); // (row, seg, pos)
        let mut row = 0;
        for (si, seg) in segments.iter().enumerate() {
            for r in 0..seg.rows {
                items.push((row + r, si, starts[si] + r));
            }
            row += seg.rows;
        }
        let caches: Vec<&LayerKv> = segments
            .iter()
            .map(|s| s.cache.layer(layer))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| EngineError::InvalidRequest("cache layer missing".into()))?;
        let mut out = vec![0f32; n_rows * q_dim];
        let group = cfg.n_heads / cfg.n_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let qkv: &[f32] = qkv;
        // One work item per (row, kv head): the `group` query heads sharing a
        // kv head read each cached key and value once. Each head's arithmetic
        // (and its order) is the same as computing it alone.
        let compute = |item: usize, dst: &mut [f32], scores: &mut Vec<f32>| {
            let (r, g) = (item / cfg.n_kv_heads, item % cfg.n_kv_heads);
            let (row, si, pos) = items[r];
            let kv = caches[si];
            let qs = &qkv[row * width + g * group * hd..row * width + (g + 1) * group * hd];
            attention::attend(
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
        };
        let n_items = n_rows * cfg.n_kv_heads;
        let span = group * hd;
        let work: usize = items.iter().map(|(_, _, pos)| pos + 1).sum::<usize>() * cfg.n_heads;
        if work < 4096 {
            let mut scores = Vec::new();
            for (item, dst) in out.chunks_mut(span).enumerate() {
                compute(item, dst, &mut scores);
            }
        } else {
            let out_ptr = SharedOut(out.as_mut_ptr());
            candle_core::utils::barrier_pool().execute_chunked(n_items, |range| {
                let mut scores = Vec::new();
                let p = &out_ptr;
                for item in range {
                    // SAFETY: each item writes only its own `span` values at
                    // `item · span`, inside `out` (n_items · span values), and the
                    // pool hands every item to exactly one worker; `out` outlives
                    // the call.
                    let dst = unsafe { std::slice::from_raw_parts_mut(p.0.add(item * span), span) };
                    compute(item, dst, &mut scores);
                }
            });
        }
        Ok(out)
    }

    /// Rotates one head's vector by the position's angles (interleaved pairs, the
    /// layout GGUF llama weights are stored in).
    fn rope(&self, head: &mut [f32], pos: usize) {
        let half = head.len() / 2;
        let cos = &self.rope_cos[pos * half..(pos + 1) * half];
        let sin = &self.rope_sin[pos * half..(pos + 1) * half];
        for (i, pair) in head.chunks_exact_mut(2).enumerate() {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos[i] - b * sin[i];
            pair[1] = a * sin[i] + b * cos[i];
        }
    }

    /// Runs a single block over `input` (all positions from 0) with a fresh cache,
    /// as a verifier does: one prefill-style pass.
    pub fn run_layer_fresh(&self, layer: usize, input: &HiddenStates) -> Result<HiddenStates> {
        let mut cache = self.new_cache(layer..layer + 1)?;
        let mut x = input.clone();
        let rows = x.rows();
        let mut segs = [Segment {
            cache: &mut cache,
            rows,
            recorder: None,
        }];
        self.forward_layers(layer..layer + 1, &mut x, &mut segs)?;
        Ok(x)
    }
}

/// `x Wᵀ` for `rows` rows of `x`.
fn matmul(w: &Linear, x: &[f32], rows: usize) -> Result<Vec<f32>> {
    let (parts, outs, in_dim, out_dim) = match w {
        Linear::Native(m) => {
            return Ok(m.matmul(x, rows));
        }
        Linear::Candle {
            parts,
            outs,
            in_dim,
            out_dim,
        } => (parts, outs, *in_dim, *out_dim),
    };
    let t = Tensor::from_slice(x, (rows, in_dim), &Device::Cpu)?;
    if let [part] = parts.as_slice() {
        return Ok(part.forward(&t)?.flatten_all()?.to_vec1::<f32>()?);
    }
    let mut out = vec![0f32; rows * out_dim];
    let mut off = 0;
    for (part, &o) in parts.iter().zip(outs) {
        let y = part.forward(&t)?.flatten_all()?.to_vec1::<f32>()?;
        for r in 0..rows {
            out[r * out_dim + off..r * out_dim + off + o].copy_from_slice(&y[r * o..(r + 1) * o]);
        }
        off += o;
    }
    Ok(out)
}

/// RMS norm of each row, times the learned gain.
fn rms_norm(x: &[f32], gain: &[f32], eps: f32) -> Vec<f32> {
    let d = gain.len();
    let mut out = vec![0f32; x.len()];
    for (o, row) in out.chunks_mut(d).zip(x.chunks(d)) {
        let ms = dot(row, row) / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, v), g) in o.iter_mut().zip(row).zip(gain) {
            *o = v * inv * g;
        }
    }
    out
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Dot product with eight fixed accumulators: vectorizes, and the summation
/// order never depends on anything but the length.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}
