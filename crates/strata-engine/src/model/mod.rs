//! The llama-family transformer, written so that each piece can run on its own:
//! embedding, any range of blocks `[a, b)` on explicit hidden states, and the final
//! norm plus head. A pipeline of shards is these calls on different machines.
//!
//! - `block`: the residual block, `h = x + attn(norm(x)); out = h + mlp(norm(h))`;
//! - `attention`: RoPE and causal grouped-query attention, each sequence
//!   (a [`Segment`]) over its own KV cache;
//! - `mlp`: the SwiGLU feed-forward.
//!
//! Per block, with `x` the residual stream (one row per position):
//!
//! ```text
//! h   = x + Wo · attention(rope(Wq·rms(x)), rope(Wk·rms(x)), Wv·rms(x))
//! out = h + Wdown · (silu(Wgate·rms(h)) ⊙ Wup·rms(h))
//! ```
//!
//! The arithmetic lives apart from this meaning: `crate::ops` (dot products,
//! norms, activations, with the determinism contract a verifier relies on) and
//! `crate::kernels` (quantized matmuls, the attention inner loop). The model
//! does not know who watches a layer's inputs and outputs: the commitments hook
//! in through [`LayerObserver`].

mod attention;
mod block;
mod lora;
mod mlp;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};

use crate::adapter::Adapter;
use crate::error::{EngineError, Result};
use crate::hidden::HiddenStates;
use crate::kv_cache::KvCache;
use crate::loader::{self, gguf::GgufFile, Head, LlamaConfig, ModelWeights, Shard};
use crate::ops::rms_norm;

use self::attention::Rope;
use self::block::Block;
use self::lora::RowAdapters;

/// Sees every layer's input and output rows of one sequence as
/// [`Model::forward_layers`] runs: how the per-layer commitments are recorded
/// without the model knowing about them.
pub trait LayerObserver {
    /// Called with the sequence's rows of the hidden states just before block
    /// `layer` runs (`rows.len()` is a multiple of the hidden width).
    fn before_layer(&mut self, layer: usize, rows: &[f32]) -> Result<()>;
    /// Called with the same rows just after block `layer` ran. The rows are
    /// mutable so that a tamperer can be an observer too (the testnet's
    /// cheating nodes, [`crate::LayerTamper`]); honest observers only read.
    fn after_layer(&mut self, layer: usize, rows: &mut [f32]) -> Result<()>;
}

/// One sequence's share of a batched forward pass: its next `rows` rows of the
/// hidden-state matrix, its KV cache and, optionally, an observer of its
/// layers and the LoRA adapter it runs with.
pub struct Segment<'a> {
    /// The sequence's cache for (at least) the layers being run.
    pub cache: &'a mut KvCache,
    /// How many consecutive rows of the batch belong to this sequence (its new
    /// positions: the whole prompt when prefilling, one when decoding).
    pub rows: usize,
    /// Shown the sequence's rows before and after every layer when present.
    pub observer: Option<&'a mut dyn LayerObserver>,
    /// The adapter the sequence's policy adds to the base model (`None`: the
    /// base model, bit for bit). Per sequence, because a node switching
    /// policy versions lets older sequences finish on theirs while new ones
    /// start on the next. Its shapes are checked against the model on every
    /// [`Model::forward_layers`]; that it was trained on this model's file
    /// is the caller's to check ([`Adapter::check_for`]).
    pub adapter: Option<&'a Adapter>,
}

impl<'a> Segment<'a> {
    /// A segment of `rows` rows over `cache`, without observer or adapter.
    pub fn new(cache: &'a mut KvCache, rows: usize) -> Self {
        Self {
            cache,
            rows,
            observer: None,
            adapter: None,
        }
    }
}

/// A loaded llama-family model, whole or a pipeline shard of it (see [`Shard`]).
pub struct Model {
    config: LlamaConfig,
    /// `[vocab, hidden]`, quantized; rows are looked up, never multiplied.
    /// Present when this shard is a pipeline's first hop.
    tok_embd: Option<Arc<QTensor>>,
    /// Blocks `layers`, in order.
    blocks: Vec<Block>,
    /// Which blocks are loaded.
    layers: Range<usize>,
    /// The final norm and the head (hidden → vocab): the last hop's.
    head: Option<Head>,
    rope: Rope,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish()
    }
}

impl Model {
    /// Loads a llama-family model from `path`: a GGUF file, or a Hugging Face
    /// model directory (`config.json` plus safetensors weights, see
    /// [`crate::Engine::load`]).
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_shard(path, &Shard::Whole)
    }

    /// Loads only `shard` of the model at `path` (a pipeline hop's blocks,
    /// with the embedding or the head when it is the first or last hop).
    pub fn load_shard(path: &Path, shard: &Shard) -> Result<Self> {
        if loader::hf::is_model_dir(path) {
            let weights = loader::hf::load_model_dir(path, shard)?;
            return Ok(Self::from_weights(weights));
        }
        let file = GgufFile::open(path)?;
        Self::from_gguf_file(file, shard)
    }

    /// Loads a model from GGUF bytes in memory.
    pub fn from_gguf_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::from_gguf_file(GgufFile::from_bytes(bytes)?, &Shard::Whole)
    }

    pub(crate) fn from_gguf_file(file: GgufFile, shard: &Shard) -> Result<Self> {
        let w = loader::gguf::load_gguf(file, shard)?;
        Ok(Self::from_weights(w))
    }

    /// Assembles the layers from loaded weights (whichever file they came from).
    fn from_weights(w: ModelWeights) -> Self {
        let ModelWeights {
            config,
            tok_embd,
            blocks,
            layers,
            head,
        } = w;
        let rope = Rope::new(&config);
        let blocks = layers
            .clone()
            .zip(blocks)
            .map(|(layer, bw)| Block::new(layer, bw, &config))
            .collect();
        Self {
            config,
            tok_embd,
            blocks,
            layers,
            head,
            rope,
        }
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Number of transformer blocks.
    pub fn n_layers(&self) -> usize {
        self.config.n_layers
    }

    /// The blocks loaded here (`0..n_layers` unless this is a shard).
    pub fn layers(&self) -> Range<usize> {
        self.layers.clone()
    }

    /// Whether the embedding is loaded (the whole model, or a first hop).
    pub fn has_embedding(&self) -> bool {
        self.tok_embd.is_some()
    }

    /// Whether the final norm and head are loaded (the whole model, or a last hop).
    pub fn has_head(&self) -> bool {
        self.head.is_some()
    }

    /// Bytes of weights held in memory.
    pub fn weight_bytes(&self) -> usize {
        let blocks: usize = self.blocks.iter().map(Block::weight_bytes).sum();
        let head = self.head.as_ref().map_or(0, |h| h.output.bytes());
        let embd = self
            .tok_embd
            .as_ref()
            .map_or(0, |t| t.storage_size_in_bytes());
        blocks + head + embd
    }

    /// An empty KV cache for layers `range` (use `0..n_layers` for the whole model).
    pub fn new_cache(&self, range: Range<usize>) -> Result<KvCache> {
        self.check_range(&range)?;
        Ok(KvCache::new(range))
    }

    /// Refuses a range that is malformed, outside the model, or outside the
    /// blocks loaded here.
    fn check_range(&self, range: &Range<usize>) -> Result<()> {
        if range.start > range.end || range.end > self.n_layers() {
            return Err(EngineError::InvalidRequest(format!(
                "layer range {range:?} is not within 0..{}",
                self.n_layers()
            )));
        }
        if !range.is_empty() && (range.start < self.layers.start || range.end > self.layers.end) {
            return Err(EngineError::LayerNotLoaded {
                asked: range.clone(),
                loaded: self.layers.clone(),
            });
        }
        Ok(())
    }

    /// The loaded block `layer` (the caller checked the range).
    fn block(&self, layer: usize) -> &Block {
        &self.blocks[layer - self.layers.start]
    }

    /// Step 1: token embeddings, one row per token.
    pub fn embed(&self, tokens: &[u32]) -> Result<HiddenStates> {
        let tok_embd = self
            .tok_embd
            .as_ref()
            .ok_or(EngineError::PartNotLoaded("embedding", "first"))?;
        let vocab = self.config.vocab_size;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::BadToken { id, vocab });
        }
        let h = self.config.hidden_size;
        if tokens.is_empty() {
            return HiddenStates::new(0, h, Vec::new());
        }
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        let data = tok_embd.embedding(&ids)?.flatten_all()?.to_vec1::<f32>()?;
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
        let cfg = &self.config;
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
            if let Some(adapter) = seg.adapter {
                adapter.check_shapes(cfg)?;
            }
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
        let n = x.rows();
        for l in layers {
            notify(segments, x, |o, rows| o.before_layer(l, rows))?;
            let lora = RowAdapters::new(segments);
            self.block(l)
                .forward(x.as_mut_slice(), n, segments, &self.rope, &lora)?;
            notify(segments, x, |o, rows| o.after_layer(l, rows))?;
        }
        Ok(())
    }

    /// Step 3: final norm and head on the selected rows of `x` (usually each
    /// sequence's last row); one logits vector per selected row.
    pub fn logits(&self, x: &HiddenStates, rows: &[usize]) -> Result<Vec<Vec<f32>>> {
        let cfg = &self.config;
        let head = self
            .head
            .as_ref()
            .ok_or(EngineError::PartNotLoaded("head", "last"))?;
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
        let normed = rms_norm(&sel, &head.norm, cfg.rms_eps); // [rows, hidden]
        let logits = head.output.forward(&normed, rows.len())?; // [rows, vocab]
        Ok(logits
            .chunks(cfg.vocab_size.max(1))
            .map(|c| c.to_vec())
            .collect())
    }

    /// Runs a single block over `input` (all positions from 0) with a fresh cache,
    /// as a verifier does: one prefill-style pass.
    pub fn run_layer_fresh(&self, layer: usize, input: &HiddenStates) -> Result<HiddenStates> {
        Ok(self.rerun_layer(layer, input)?.output)
    }

    /// [`Model::run_layer_fresh`], also returning a digest of the block's
    /// intermediate residual `h = x + attn(norm(x))`, which no commitment or
    /// opening contains: only someone who ran the layer knows it, so a
    /// verifier's audit report carries it as proof of work (and two verifiers
    /// who audited the same layer must report the same digest).
    pub fn rerun_layer(&self, layer: usize, input: &HiddenStates) -> Result<LayerRerun> {
        self.rerun_layer_adapted(layer, input, None)
    }

    /// [`Model::rerun_layer`] of the adapted model (base plus `adapter`):
    /// what a verifier runs to re-check a layer of a task served with an
    /// adapter, bit-identical to the serving run.
    pub fn rerun_layer_adapted(
        &self,
        layer: usize,
        input: &HiddenStates,
        adapter: Option<&Adapter>,
    ) -> Result<LayerRerun> {
        self.check_range(&(layer..layer + 1))?;
        if let Some(adapter) = adapter {
            adapter.check_shapes(&self.config)?;
        }
        if input.cols() != self.config.hidden_size {
            return Err(EngineError::InvalidRequest(format!(
                "hidden states are {} wide, the model expects {}",
                input.cols(),
                self.config.hidden_size
            )));
        }
        let mut cache = self.new_cache(layer..layer + 1)?;
        let mut x = input.clone();
        let n = x.rows();
        if n > self.config.context_length {
            return Err(EngineError::PromptTooLong {
                tokens: n,
                max_new: 0,
                context: self.config.context_length,
            });
        }
        let mut segs = [Segment {
            adapter,
            ..Segment::new(&mut cache, n)
        }];
        let lora = RowAdapters::new(&segs);
        let block = self.block(layer);
        let mut work = blake3::Hasher::new();
        work.update(b"strata/work/v1");
        work.update(&(layer as u32).to_le_bytes());
        if n > 0 {
            block.attention_residual(x.as_mut_slice(), n, &mut segs, &self.rope, &lora)?;
            for v in x.as_slice() {
                work.update(&v.to_le_bytes());
            }
            block.mlp_residual(x.as_mut_slice(), n, &lora)?;
        }
        Ok(LayerRerun {
            output: x,
            work_digest: *work.finalize().as_bytes(),
        })
    }
}

/// A block re-run on its own: its output and the digest of its intermediate
/// residual (see [`Model::rerun_layer`]).
#[derive(Debug, Clone)]
pub struct LayerRerun {
    /// The block's output for every position.
    pub output: HiddenStates,
    /// blake3 over the layer index and the intermediate residual's values.
    pub work_digest: [u8; 32],
}

/// Shows every observed segment its own rows of `x`, segment after segment.
fn notify(
    segments: &mut [Segment<'_>],
    x: &mut HiddenStates,
    mut call: impl FnMut(&mut dyn LayerObserver, &mut [f32]) -> Result<()>,
) -> Result<()> {
    let width = x.cols();
    let mut row = 0;
    for seg in segments.iter_mut() {
        if let Some(observer) = seg.observer.as_deref_mut() {
            call(
                observer,
                &mut x.as_mut_slice()[row * width..(row + seg.rows) * width],
            )?;
        }
        row += seg.rows;
    }
    Ok(())
}
