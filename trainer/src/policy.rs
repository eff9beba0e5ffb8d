//! The policy being trained: the base llama model, frozen, in full precision
//! on candle's autograd, with LoRA pairs on its projections as the only
//! trainable parameters.
//!
//! Nodes serve the base model quantized (Q4_1) and candle's quantized matmul
//! has no backward pass, so the trainer holds a dequantized copy (f32, ~540 MB
//! for the 135M model) and computes the same function the engine does, up to
//! the quantization of activations in the engine's kernels: the importance
//! ratio between the trainer's policy and the sampling policy starts within
//! rounding of 1, which the truncated importance weight absorbs.
//!
//! The forward pass mirrors `strata_engine`'s model (pre-norm blocks, RoPE on
//! interleaved pairs as GGUF stores llama's q/k, grouped-query attention,
//! SwiGLU), and adds `scale · B·(A·x)` to each adapted projection, as the
//! engine's adapter path does.

use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{CpuStorage, CustomOp1, DType, Device, IndexOp, Layout, Shape, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use strata_engine::{LlamaConfig, LoraTarget};

use crate::error::{Result, TrainerError};

/// What is adapted and how: rank, alpha (the delta's scale is `alpha /
/// rank`) and the projections that carry a pair.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank r of each pair.
    pub rank: usize,
    /// Numerator of the scale.
    pub alpha: f32,
    /// The projections adapted, in every layer.
    pub targets: Vec<LoraTarget>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            targets: LoraTarget::ALL.to_vec(),
        }
    }
}

impl LoraConfig {
    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        f64::from(self.alpha) / self.rank as f64
    }
}

/// One trainable pair: `A` is `[r, in]`, `B` is `[out, r]`.
#[derive(Debug)]
pub struct LoraPair {
    /// The block.
    pub layer: usize,
    /// The projection.
    pub target: LoraTarget,
    /// Down-projection, `[r, in]`, random at the start.
    pub a: Var,
    /// Up-projection, `[out, r]`, zero at the start (the adapted model starts
    /// as the base model).
    pub b: Var,
}

/// A frozen projection stored transposed (`[in, out]`), so a row-major batch
/// of inputs multiplies it directly.
#[derive(Debug)]
struct Proj {
    wt: Tensor,
}

impl Proj {
    /// `x·W`, through [`FrozenMatmul`]: the gradient flows to `x` only.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.contiguous()?.apply_op1(FrozenMatmul {
            wt: self.wt.clone(),
        })?)
    }
}

/// `x·W` for a constant `W`. candle's own matmul also computes the gradient
/// of its right-hand side in the backward pass, which for frozen weights is
/// a third of the work thrown away and a weight-sized buffer per projection
/// kept until the pass ends; this op's backward is `∂x = ∂y·Wᵀ` alone.
struct FrozenMatmul {
    wt: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("frozen-matmul wants a contiguous input".into())
        })?;
        let dev = Device::Cpu;
        let x = match storage {
            CpuStorage::F32(v) => Tensor::from_slice(&v[start..end], layout.shape(), &dev)?,
            CpuStorage::F64(v) => Tensor::from_slice(&v[start..end], layout.shape(), &dev)?,
            _ => {
                return Err(candle_core::Error::Msg(
                    "frozen-matmul computes in f32 or f64".into(),
                ))
            }
        };
        let y = x.matmul(&self.wt)?;
        let shape = y.shape().clone();
        let flat = y.flatten_all()?;
        let out = match y.dtype() {
            DType::F64 => CpuStorage::F64(flat.to_vec1()?),
            _ => CpuStorage::F32(flat.to_vec1()?),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.wt.t()?)?))
    }
}

#[derive(Debug)]
struct FrozenBlock {
    attn_norm: Tensor,
    q: Proj,
    k: Proj,
    v: Proj,
    o: Proj,
    ffn_norm: Tensor,
    gate: Proj,
    up: Proj,
    down: Proj,
}

/// Token sequences to score, right-padded into one `[batch, len]` matrix,
/// and which rows predict which completion token.
#[derive(Debug)]
pub struct TokenBatch {
    ids: Tensor,
    /// Row of the flattened `[batch·len, hidden]` states that predicts each
    /// scored token.
    rows: Tensor,
    targets: Tensor,
    /// Per scored token, the sequence it belongs to.
    pub seq_of: Vec<usize>,
    len: usize,
    batch: usize,
}

impl TokenBatch {
    /// Scores every completion token of each `(prompt, completion)` pair:
    /// token `j` of the completion is predicted by the state at position
    /// `prompt.len() + j - 1`. Padding sits after each sequence, so the causal
    /// mask keeps it out of every scored position.
    pub fn new(seqs: &[(Vec<u32>, Vec<u32>)], device: &Device) -> Result<Self> {
        let len = seqs
            .iter()
            .map(|(p, c)| p.len() + c.len())
            .max()
            .unwrap_or(0);
        if seqs.is_empty() || len == 0 {
            return Err(TrainerError::Invalid("no tokens to score".into()));
        }
        let batch = seqs.len();
        let mut ids = vec![0u32; batch * len];
        let (mut rows, mut targets, mut seq_of) = (Vec::new(), Vec::new(), Vec::new());
        for (b, (prompt, completion)) in seqs.iter().enumerate() {
            if prompt.is_empty() {
                return Err(TrainerError::Invalid(format!("sequence {b} has no prompt")));
            }
            let row = &mut ids[b * len..(b + 1) * len];
            for (slot, t) in row.iter_mut().zip(prompt.iter().chain(completion)) {
                *slot = *t;
            }
            for (j, t) in completion.iter().enumerate() {
                rows.push((b * len + prompt.len() + j - 1) as u32);
                targets.push(*t);
                seq_of.push(b);
            }
        }
        if targets.is_empty() {
            return Err(TrainerError::Invalid(
                "no completion tokens to score".into(),
            ));
        }
        let n = targets.len();
        Ok(Self {
            ids: Tensor::from_vec(ids, (batch, len), device)?,
            rows: Tensor::from_vec(rows, n, device)?,
            targets: Tensor::from_vec(targets, n, device)?,
            seq_of,
            len,
            batch,
        })
    }

    /// Number of scored tokens.
    pub fn n_scored(&self) -> usize {
        self.seq_of.len()
    }
}

/// The base model (frozen) plus its LoRA pairs (trainable).
#[derive(Debug)]
pub struct PolicyModel {
    cfg: LlamaConfig,
    dtype: DType,
    device: Device,
    embd: Tensor,
    /// The head, `[hidden, vocab]` (the embedding's transpose when tied).
    head_t: Tensor,
    out_norm: Tensor,
    blocks: Vec<FrozenBlock>,
    cos: Tensor,
    sin: Tensor,
    lora: LoraConfig,
    /// Layer-major: pair `layer · targets.len() + k` adapts `targets[k]`.
    pairs: Vec<LoraPair>,
}

impl PolicyModel {
    /// Loads the base weights of a llama GGUF file, dequantized to `dtype`,
    /// with fresh LoRA pairs (`A` random from `seed`, `B` zero).
    pub fn load_gguf(
        path: &Path,
        cfg: &LlamaConfig,
        lora: LoraConfig,
        dtype: DType,
        seed: u64,
    ) -> Result<Self> {
        let device = Device::Cpu;
        let mut file = File::open(path)
            .map_err(|e| TrainerError::Invalid(format!("opening {}: {e}", path.display())))?;
        let content = gguf_file::Content::read(&mut file)?;
        let mut get = |name: &str| -> Result<Tensor> {
            let q = content.tensor(&mut file, name, &device)?;
            Ok(q.dequantize(&device)?.to_dtype(dtype)?)
        };
        let embd = get("token_embd.weight")?;
        let out_norm = get("output_norm.weight")?;
        let head_t = match content.tensor_infos.contains_key("output.weight") {
            true => get("output.weight")?.t()?.contiguous()?,
            false => embd.t()?.contiguous()?,
        };
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let mut proj = |n: &str| -> Result<Proj> {
                Ok(Proj {
                    wt: get(&format!("blk.{l}.{n}.weight"))?.t()?.contiguous()?,
                })
            };
            blocks.push(FrozenBlock {
                q: proj("attn_q")?,
                k: proj("attn_k")?,
                v: proj("attn_v")?,
                o: proj("attn_output")?,
                gate: proj("ffn_gate")?,
                up: proj("ffn_up")?,
                down: proj("ffn_down")?,
                attn_norm: get(&format!("blk.{l}.attn_norm.weight"))?,
                ffn_norm: get(&format!("blk.{l}.ffn_norm.weight"))?,
            });
        }
        Self::assemble(
            cfg.clone(),
            dtype,
            embd,
            head_t,
            out_norm,
            blocks,
            lora,
            seed,
        )
    }

    /// A model with random base weights of `cfg`'s shape (tests: small
    /// configurations in f64, where finite differences are meaningful).
    pub fn random(cfg: &LlamaConfig, lora: LoraConfig, dtype: DType, seed: u64) -> Result<Self> {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xba5e);
        let mut rand = |rows: usize, cols: usize, std: f64| -> Result<Tensor> {
            let v: Vec<f64> = (0..rows * cols)
                .map(|_| (rng.random::<f64>() * 2.0 - 1.0) * std * 3f64.sqrt())
                .collect();
            Ok(Tensor::from_vec(v, (rows, cols), &device)?.to_dtype(dtype)?)
        };
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let w = |n: usize| 1.0 / (n as f64).sqrt();
        let embd = rand(cfg.vocab_size, h, 1.0)?;
        let head_t = rand(h, cfg.vocab_size, w(h))?;
        let ones = |n: usize| Tensor::ones(n, dtype, &device);
        let mut blocks = Vec::new();
        for _ in 0..cfg.n_layers {
            blocks.push(FrozenBlock {
                attn_norm: ones(h)?,
                q: Proj {
                    wt: rand(h, cfg.q_dim(), w(h))?,
                },
                k: Proj {
                    wt: rand(h, cfg.kv_dim(), w(h))?,
                },
                v: Proj {
                    wt: rand(h, cfg.kv_dim(), w(h))?,
                },
                o: Proj {
                    wt: rand(cfg.q_dim(), h, w(cfg.q_dim()))?,
                },
                ffn_norm: ones(h)?,
                gate: Proj {
                    wt: rand(h, i, w(h))?,
                },
                up: Proj {
                    wt: rand(h, i, w(h))?,
                },
                down: Proj {
                    wt: rand(i, h, w(i))?,
                },
            });
        }
        let out_norm = ones(h)?;
        Self::assemble(
            cfg.clone(),
            dtype,
            embd,
            head_t,
            out_norm,
            blocks,
            lora,
            seed,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        cfg: LlamaConfig,
        dtype: DType,
        embd: Tensor,
        head_t: Tensor,
        out_norm: Tensor,
        blocks: Vec<FrozenBlock>,
        lora: LoraConfig,
        seed: u64,
    ) -> Result<Self> {
        if lora.rank == 0 || lora.rank > 64 {
            return Err(TrainerError::Invalid(format!(
                "LoRA rank {} is outside 1..=64",
                lora.rank
            )));
        }
        let device = Device::Cpu;
        let (cos, sin) = rope_tables(&cfg, dtype, &device)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut pairs = Vec::new();
        for layer in 0..cfg.n_layers {
            for &target in &lora.targets {
                let (din, dout) = target.dims(&cfg);
                // Kaiming-uniform bound for A (as PEFT does), B = 0.
                let bound = (1.0 / din as f64).sqrt();
                let a: Vec<f64> = (0..lora.rank * din)
                    .map(|_| (rng.random::<f64>() * 2.0 - 1.0) * bound)
                    .collect();
                let a = Tensor::from_vec(a, (lora.rank, din), &device)?.to_dtype(dtype)?;
                let b = Tensor::zeros((dout, lora.rank), dtype, &device)?;
                pairs.push(LoraPair {
                    layer,
                    target,
                    a: Var::from_tensor(&a)?,
                    b: Var::from_tensor(&b)?,
                });
            }
        }
        Ok(Self {
            cfg,
            dtype,
            device,
            embd,
            head_t,
            out_norm,
            blocks,
            cos,
            sin,
            lora,
            pairs,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The LoRA set-up.
    pub fn lora_config(&self) -> &LoraConfig {
        &self.lora
    }

    /// The trainable pairs, in (layer, target) order.
    pub fn pairs(&self) -> &[LoraPair] {
        &self.pairs
    }

    /// Every trainable tensor, `A` then `B` of each pair in order: what the
    /// optimizer steps and a checkpoint saves.
    pub fn vars(&self) -> Vec<&Var> {
        self.pairs.iter().flat_map(|p| [&p.a, &p.b]).collect()
    }

    /// The dtype the model computes in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The log-probability of every scored token of `batch` under the adapted
    /// model (`with_lora`) or the base model, with the logits divided by
    /// `temperature` as the sampler divided them, `[n_scored]`,
    /// differentiable with respect to the LoRA pairs.
    pub fn token_logprobs(
        &self,
        batch: &TokenBatch,
        with_lora: bool,
        temperature: f64,
    ) -> Result<Tensor> {
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(TrainerError::Invalid(format!(
                "temperature {temperature} cannot score sampled tokens (greedy picks have no ratio)"
            )));
        }
        let (b, l, h) = (batch.batch, batch.len, self.cfg.hidden_size);
        let flat = batch.ids.flatten_all()?;
        let mut x = self.embd.index_select(&flat, 0)?; // [b·l, h]
        let mask = causal_mask(l, self.dtype, &self.device)?;
        for (layer, blk) in self.blocks.iter().enumerate() {
            let xn = rms_norm(&x, &blk.attn_norm, self.cfg.rms_eps)?;
            let attn = self.attention(layer, blk, &xn, b, l, &mask, with_lora)?;
            x = (x + attn)?;
            let hn = rms_norm(&x, &blk.ffn_norm, self.cfg.rms_eps)?;
            let gate = self.project(layer, LoraTarget::FfnGate, &blk.gate, &hn, with_lora)?;
            let up = self.project(layer, LoraTarget::FfnUp, &blk.up, &hn, with_lora)?;
            let act = (gate.silu()? * up)?;
            let down = self.project(layer, LoraTarget::FfnDown, &blk.down, &act, with_lora)?;
            x = (x + down)?;
        }
        debug_assert_eq!(x.dims(), &[b * l, h]);
        let picked = x.index_select(&batch.rows, 0)?; // [n, h]
        let picked = rms_norm(&picked, &self.out_norm, self.cfg.rms_eps)?;
        let head = Proj {
            wt: self.head_t.clone(),
        };
        let logits = head.forward(&picked)?.affine(1.0 / temperature, 0.0)?; // [n, vocab]
        let lse = logits.log_sum_exp(D::Minus1)?; // [n]
        let chosen = logits.gather(&batch.targets.unsqueeze(1)?, 1)?.squeeze(1)?;
        Ok((chosen - lse)?)
    }

    /// `x·Wᵀ`, plus `scale·(x·Aᵀ)·Bᵀ` when the projection is adapted.
    fn project(
        &self,
        layer: usize,
        target: LoraTarget,
        p: &Proj,
        x: &Tensor,
        with_lora: bool,
    ) -> Result<Tensor> {
        let base = p.forward(x)?;
        let k = self.lora.targets.iter().position(|t| *t == target);
        let pair = match (with_lora, k) {
            (true, Some(k)) => &self.pairs[layer * self.lora.targets.len() + k],
            _ => return Ok(base),
        };
        let t = x.matmul(&pair.a.as_tensor().t()?)?;
        let t = t.affine(self.lora.scale(), 0.0)?;
        Ok((base + t.matmul(&pair.b.as_tensor().t()?)?)?)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer: usize,
        blk: &FrozenBlock,
        xn: &Tensor,
        b: usize,
        l: usize,
        mask: &Tensor,
        with_lora: bool,
    ) -> Result<Tensor> {
        let (nh, nkv, hd) = (self.cfg.n_heads, self.cfg.n_kv_heads, self.cfg.head_dim);
        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            Ok(t.reshape((b, l, n, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let q = self.project(layer, LoraTarget::AttnQ, &blk.q, xn, with_lora)?;
        let k = self.project(layer, LoraTarget::AttnK, &blk.k, xn, with_lora)?;
        let v = self.project(layer, LoraTarget::AttnV, &blk.v, xn, with_lora)?;
        let q = self.rope(&heads(q, nh)?)?;
        let k = self.rope(&heads(k, nkv)?)?;
        let v = heads(v, nkv)?;
        // Grouped-query attention: query head h reads kv head h / (nh / nkv).
        let rep = nh / nkv;
        let expand = |t: Tensor| -> Result<Tensor> {
            if rep == 1 {
                return Ok(t);
            }
            Ok(t.unsqueeze(2)?
                .broadcast_as((b, nkv, rep, l, hd))?
                .reshape((b, nh, l, hd))?)
        };
        let (k, v) = (expand(k)?, expand(v)?);
        let scores = q
            .matmul(&k.t()?)?
            .affine(1.0 / (hd as f64).sqrt(), 0.0)?
            .broadcast_add(mask)?;
        let probs = softmax_last(&scores)?;
        let out = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b * l, nh * hd))?;
        self.project(layer, LoraTarget::AttnOutput, &blk.o, &out, with_lora)
    }

    /// Rotates `[b, heads, l, hd]` by position, pairs `(2i, 2i+1)` by angle
    /// `pos / theta^(2i/hd)`: the engine's layout.
    fn rope(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, l, hd) = x.dims4()?;
        let pairs = x.reshape((b, n, l, hd / 2, 2))?;
        let x0 = pairs.narrow(4, 0, 1)?.squeeze(4)?;
        let x1 = pairs.narrow(4, 1, 1)?.squeeze(4)?;
        let cos = self.cos.i(..l)?;
        let sin = self.sin.i(..l)?;
        let r0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
        let r1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
        Ok(Tensor::stack(&[r0, r1], 4)?.reshape((b, n, l, hd))?)
    }

    /// Copies trained values into the pairs (checkpoint resume).
    pub fn set_pair(&self, i: usize, a: &Tensor, b: &Tensor) -> Result<()> {
        let p = self
            .pairs
            .get(i)
            .ok_or_else(|| TrainerError::Invalid(format!("no LoRA pair {i}")))?;
        // Copies, so that setting a pair to (a view of) its own value works.
        p.a.set(&a.to_dtype(self.dtype)?.copy()?)?;
        p.b.set(&b.to_dtype(self.dtype)?.copy()?)?;
        Ok(())
    }
}

/// `x / sqrt(mean(x²) + eps) · gain`, per row.
fn rms_norm(x: &Tensor, gain: &Tensor, eps: f32) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (ms + f64::from(eps))?.sqrt()?.recip()?;
    Ok(x.broadcast_mul(&inv)?.broadcast_mul(gain)?)
}

/// Softmax over the last dimension, shifted by the (constant) row maximum.
fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// `[l, l]`: 0 on and below the diagonal, a large negative number above it
/// (finite, so that masked scores give exact zeros and no NaN gradients).
fn causal_mask(l: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let m: Vec<f64> = (0..l * l)
        .map(|i| if i % l > i / l { -1e9 } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(m, (l, l), device)?.to_dtype(dtype)?)
}

/// cos and sin tables `[context, hd/2]` with the engine's angles (computed in
/// f32 as the engine does, then widened).
fn rope_tables(cfg: &LlamaConfig, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let ctx = cfg.context_length.min(4096);
    let mut cos = Vec::with_capacity(ctx * half);
    let mut sin = Vec::with_capacity(ctx * half);
    for pos in 0..ctx {
        for i in 0..half {
            let f = 1f32 / cfg.rope_theta.powf((2 * i) as f32 / cfg.head_dim as f32);
            let angle = pos as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    let t = |v: Vec<f32>| -> Result<Tensor> {
        Ok(Tensor::from_vec(v, (ctx, half), device)?.to_dtype(dtype)?)
    };
    Ok((t(cos)?, t(sin)?))
}
