//! LoRA adapters: a policy is a base GGUF model plus an [`Adapter`], low-rank
//! deltas `scale · B·A` added to some of its projections (`alpha / rank` is
//! the scale). The RL trainer writes adapters, nodes serve them, verifiers
//! re-run adapted layers.
//!
//! # File format (`strata-lora-v1`)
//!
//! A safetensors file holding, for any subset of layers `L` and targets (the
//! GGUF tensor names of [`LoraTarget`]), F32 pairs `blk.{L}.{target}.lora_a`
//! of shape `[r, in]` and `blk.{L}.{target}.lora_b` of shape `[out, r]`, and
//! exactly these `__metadata__` strings: `strata.format` (= [`ADAPTER_FORMAT`]),
//! `strata.base_model` (lowercase hex sha256 of the base model file),
//! `strata.version` (decimal u64 policy version), `strata.rank` (decimal `r`,
//! `1..=`[`MAX_ADAPTER_RANK`]) and `strata.alpha` (a positive f32 in decimal).
//!
//! # Identity
//!
//! [`Adapter::digest`] is the sha256 of [`Adapter::to_bytes`], which is
//! canonical: the same adapter always encodes to the same bytes. The
//! `safetensors` crate's own serializer is not (it writes `__metadata__` from
//! a `HashMap`, in an order that changes from process to process), so the
//! header is written here: metadata keys sorted, tensors sorted by name and
//! laid out in that order. A file written by [`Adapter::to_bytes`] therefore
//! has the sha256 [`Adapter::digest`] reports; [`Adapter::from_bytes`] also
//! accepts other valid encodings of an adapter (another writer's key order),
//! whose identity is still the digest of the canonical form.
//!
//! # Arithmetic
//!
//! For a projection with input row `x` and base output row `y`:
//! `t = A·x` (r dot products), `t *= scale`, then `y[o] += B[o,:]·t`, every
//! dot product through `crate::ops::dot`, so a row's delta depends on that
//! row alone (the determinism contract of `crate::ops`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use sha2::Digest;

use crate::error::{EngineError, Result};
use crate::loader::LlamaConfig;
use crate::ops::dot;

/// The `strata.format` value of the adapter files this engine reads and writes.
pub const ADAPTER_FORMAT: &str = "strata-lora-v1";

/// Largest adapter file accepted (and written): 64 MiB, far above any
/// useful rank on the models the network serves, and a bound on what a
/// hostile file can make the node allocate.
pub const MAX_ADAPTER_BYTES: usize = 64 << 20;

/// Largest LoRA rank accepted.
pub const MAX_ADAPTER_RANK: usize = 64;

/// Layer indices at or above this are refused while parsing, before any
/// model is known: no llama-family model comes near it, and it keeps an
/// absurd index in a hostile file from ever reaching a lookup.
const MAX_ADAPTER_LAYER: usize = 4096;

const KEY_FORMAT: &str = "strata.format";
const KEY_BASE_MODEL: &str = "strata.base_model";
const KEY_VERSION: &str = "strata.version";
const KEY_RANK: &str = "strata.rank";
const KEY_ALPHA: &str = "strata.alpha";

/// A projection of a transformer block that an adapter can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoraTarget {
    /// Query projection, hidden → q_dim.
    AttnQ,
    /// Key projection, hidden → kv_dim.
    AttnK,
    /// Value projection, hidden → kv_dim.
    AttnV,
    /// Attention output projection, q_dim → hidden.
    AttnOutput,
    /// MLP gate projection, hidden → intermediate.
    FfnGate,
    /// MLP up projection, hidden → intermediate.
    FfnUp,
    /// MLP down projection, intermediate → hidden.
    FfnDown,
}

impl LoraTarget {
    /// Every target, in block order.
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::AttnQ,
        LoraTarget::AttnK,
        LoraTarget::AttnV,
        LoraTarget::AttnOutput,
        LoraTarget::FfnGate,
        LoraTarget::FfnUp,
        LoraTarget::FfnDown,
    ];

    /// The GGUF tensor name of the projection (`attn_q`, …, `ffn_down`), as
    /// used in adapter tensor names.
    pub fn name(self) -> &'static str {
        match self {
            LoraTarget::AttnQ => "attn_q",
            LoraTarget::AttnK => "attn_k",
            LoraTarget::AttnV => "attn_v",
            LoraTarget::AttnOutput => "attn_output",
            LoraTarget::FfnGate => "ffn_gate",
            LoraTarget::FfnUp => "ffn_up",
            LoraTarget::FfnDown => "ffn_down",
        }
    }

    /// The target named `name` (see [`LoraTarget::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// `(in, out)`: the projection's input and output widths in `config`.
    pub fn dims(self, config: &LlamaConfig) -> (usize, usize) {
        let (h, q, kv, i) = (
            config.hidden_size,
            config.q_dim(),
            config.kv_dim(),
            config.intermediate_size,
        );
        match self {
            LoraTarget::AttnQ => (h, q),
            LoraTarget::AttnK | LoraTarget::AttnV => (h, kv),
            LoraTarget::AttnOutput => (q, h),
            LoraTarget::FfnGate | LoraTarget::FfnUp => (h, i),
            LoraTarget::FfnDown => (i, h),
        }
    }
}

/// One adapted projection, as the trainer hands it to [`Adapter::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPart {
    /// The block.
    pub layer: usize,
    /// The projection.
    pub target: LoraTarget,
    /// `A`, `[r, in]` row-major.
    pub a: Vec<f32>,
    /// `B`, `[out, r]` row-major.
    pub b: Vec<f32>,
}

/// The two factors of one adapted projection, with their widths.
#[derive(Clone, PartialEq)]
pub(crate) struct LoraWeights {
    /// `[rank, in_dim]`.
    a: Vec<f32>,
    /// `[out_dim, rank]`.
    b: Vec<f32>,
    in_dim: usize,
    out_dim: usize,
}

impl LoraWeights {
    /// Multiply-adds one row's delta costs: what sizes the thread pool's use.
    pub(crate) fn work(&self) -> usize {
        self.a.len() + self.b.len()
    }

    /// `y += scale · B·(A·x)` for one row: `x` is `in_dim` wide, `y`
    /// `out_dim` wide (the caller slices them; the shapes were checked
    /// against the model). `t` is scratch, reused across rows.
    pub(crate) fn add_delta(&self, x: &[f32], y: &mut [f32], scale: f32, t: &mut Vec<f32>) {
        let rank = self.a.len() / self.in_dim.max(1);
        t.clear();
        t.extend(
            self.a
                .chunks_exact(self.in_dim)
                .map(|row| dot(row, x) * scale),
        );
        for (yo, brow) in y.iter_mut().zip(self.b.chunks_exact(rank)) {
            *yo += dot(brow, t);
        }
    }
}

/// A LoRA adapter: immutable once built, shared as `Arc<Adapter>` by the
/// sequences that run it.
#[derive(Clone, PartialEq)]
pub struct Adapter {
    base_model: [u8; 32],
    version: u64,
    rank: usize,
    alpha: f32,
    /// `alpha / rank`, computed once so every use multiplies by the same bits.
    scale: f32,
    parts: BTreeMap<(usize, LoraTarget), LoraWeights>,
    digest: [u8; 32],
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The weights are megabytes of floats: show what identifies the adapter.
        f.debug_struct("Adapter")
            .field("digest", &hex::encode(self.digest))
            .field("base_model", &hex::encode(self.base_model))
            .field("version", &self.version)
            .field("rank", &self.rank)
            .field("alpha", &self.alpha)
            .field("parts", &self.parts.len())
            .finish()
    }
}

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::Adapter(msg.into())
}

/// Parses a plain decimal integer (ASCII digits only: no sign, no spaces),
/// which `str::parse` alone would not insist on.
fn parse_decimal(key: &str, value: &str) -> Result<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("{key} = {value:?} is not a decimal integer")));
    }
    value
        .parse()
        .map_err(|_| bad(format!("{key} = {value:?} is out of range")))
}

/// Splits `blk.{L}.{target}.lora_{a|b}` into its layer, target and factor
/// (`true` for `a`).
fn parse_tensor_name(name: &str) -> Result<(usize, LoraTarget, bool)> {
    let unknown = || {
        bad(format!(
            "unknown tensor {name:?} (expected blk.<layer>.<target>.lora_a or .lora_b)"
        ))
    };
    let fields: Vec<&str> = name.split('.').collect();
    let [blk, layer, target, factor] = fields.as_slice() else {
        return Err(unknown());
    };
    if *blk != "blk" {
        return Err(unknown());
    }
    let is_a = match *factor {
        "lora_a" => true,
        "lora_b" => false,
        _ => return Err(unknown()),
    };
    let target = LoraTarget::from_name(target)
        .ok_or_else(|| bad(format!("tensor {name:?}: unknown target {target:?}")))?;
    let layer = parse_decimal(name, layer)?;
    let layer = usize::try_from(layer)
        .ok()
        .filter(|&l| l < MAX_ADAPTER_LAYER)
        .ok_or_else(|| {
            bad(format!(
                "tensor {name:?}: layer {layer} is not below {MAX_ADAPTER_LAYER}"
            ))
        })?;
    Ok((layer, target, is_a))
}

/// A tensor read from the file: its shape and values.
struct Read {
    shape: Vec<usize>,
    values: Vec<f32>,
}

impl Adapter {
    /// Builds an adapter from the trainer's factors (see [`LoraPart`]);
    /// `in` and `out` of each part follow from the lengths of `a` and `b`
    /// and `rank`. Refuses a rank outside `1..=`[`MAX_ADAPTER_RANK`], an
    /// `alpha` that is not a positive finite number, empty or non-finite
    /// factors, lengths that are not multiples of `rank`, a layer index
    /// absurdly high, the same projection twice, and an adapter whose
    /// encoding would be over [`MAX_ADAPTER_BYTES`]. Shapes against a model
    /// are checked by [`Adapter::check_for`].
    pub fn new(
        base_model: [u8; 32],
        version: u64,
        rank: usize,
        alpha: f32,
        parts: Vec<LoraPart>,
    ) -> Result<Self> {
        if !(1..=MAX_ADAPTER_RANK).contains(&rank) {
            return Err(bad(format!(
                "rank {rank} is outside 1..={MAX_ADAPTER_RANK}"
            )));
        }
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(bad(format!(
                "alpha {alpha} is not a positive finite number"
            )));
        }
        let mut map = BTreeMap::new();
        for part in parts {
            let name = format!("blk.{}.{}", part.layer, part.target.name());
            if part.layer >= MAX_ADAPTER_LAYER {
                return Err(bad(format!(
                    "{name}: layer {} is not below {MAX_ADAPTER_LAYER}",
                    part.layer
                )));
            }
            if part.a.is_empty() || part.a.len() % rank != 0 {
                return Err(bad(format!(
                    "{name}.lora_a has {} values, not a non-zero multiple of rank {rank}",
                    part.a.len()
                )));
            }
            if part.b.is_empty() || part.b.len() % rank != 0 {
                return Err(bad(format!(
                    "{name}.lora_b has {} values, not a non-zero multiple of rank {rank}",
                    part.b.len()
                )));
            }
            if let Some(v) = part.a.iter().chain(&part.b).find(|v| !v.is_finite()) {
                return Err(bad(format!("{name} holds a non-finite value ({v})")));
            }
            let weights = LoraWeights {
                in_dim: part.a.len() / rank,
                out_dim: part.b.len() / rank,
                a: part.a,
                b: part.b,
            };
            if map.insert((part.layer, part.target), weights).is_some() {
                return Err(bad(format!("{name} appears twice")));
            }
        }
        let mut adapter = Self {
            base_model,
            version,
            rank,
            alpha,
            scale: alpha / rank as f32,
            parts: map,
            digest: [0; 32],
        };
        let bytes = adapter.to_bytes();
        if bytes.len() > MAX_ADAPTER_BYTES {
            return Err(EngineError::AdapterTooLarge {
                bytes: bytes.len(),
                max: MAX_ADAPTER_BYTES,
            });
        }
        adapter.digest = sha2::Sha256::digest(&bytes).into();
        Ok(adapter)
    }

    /// Reads an adapter file's bytes (see the module doc for the format).
    /// Every refusal is an [`EngineError::Adapter`] naming what is wrong, or
    /// [`EngineError::AdapterTooLarge`]; no input makes it panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_ADAPTER_BYTES {
            return Err(EngineError::AdapterTooLarge {
                bytes: bytes.len(),
                max: MAX_ADAPTER_BYTES,
            });
        }
        let not_st = |e: safetensors::SafeTensorError| bad(format!("not a safetensors file: {e}"));
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(not_st)?;
        let meta = header
            .metadata()
            .as_ref()
            .ok_or_else(|| bad("no __metadata__ (a strata-lora-v1 file names its format)"))?;
        let (base_model, version, rank, alpha) = parse_metadata(meta)?;
        let file = safetensors::SafeTensors::deserialize(bytes).map_err(not_st)?;
        let mut pairs: BTreeMap<(usize, LoraTarget), (Option<Read>, Option<Read>)> =
            BTreeMap::new();
        for (name, view) in file.iter() {
            let (layer, target, is_a) = parse_tensor_name(name)?;
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(bad(format!(
                    "tensor {name:?} is {:?}, adapters are F32",
                    view.dtype()
                )));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "tensor {name:?} holds a non-finite value ({v})"
                )));
            }
            let read = Read {
                shape: view.shape().to_vec(),
                values,
            };
            let slot = pairs.entry((layer, target)).or_default();
            if is_a {
                slot.0 = Some(read);
            } else {
                slot.1 = Some(read);
            }
        }
        let mut parts = Vec::with_capacity(pairs.len());
        for ((layer, target), pair) in pairs {
            let name = format!("blk.{layer}.{}", target.name());
            let (a, b) = match pair {
                (Some(a), Some(b)) => (a, b),
                (Some(_), None) => return Err(bad(format!("{name}.lora_a has no lora_b"))),
                (None, _) => return Err(bad(format!("{name}.lora_b has no lora_a"))),
            };
            let (&[ra, in_dim], &[out_dim, rb]) = (a.shape.as_slice(), b.shape.as_slice()) else {
                return Err(bad(format!(
                    "{name}: lora_a is {:?} and lora_b {:?}, both must be 2-D ([r, in] and [out, r])",
                    a.shape, b.shape
                )));
            };
            if ra != rank || rb != rank {
                return Err(bad(format!(
                    "{name}: lora_a has rank {ra} and lora_b rank {rb}, strata.rank is {rank}"
                )));
            }
            if in_dim == 0 || out_dim == 0 {
                return Err(bad(format!(
                    "{name}: empty projection ({in_dim} → {out_dim})"
                )));
            }
            parts.push(LoraPart {
                layer,
                target,
                a: a.values,
                b: b.values,
            });
        }
        Self::new(base_model, version, rank, alpha, parts)
    }

    /// Reads an adapter file (see [`Adapter::from_bytes`]); the size limit
    /// is checked before the file is read.
    pub fn load(path: &Path) -> Result<Self> {
        let io = |source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_ADAPTER_BYTES as u64 {
            return Err(EngineError::AdapterTooLarge {
                bytes: usize::try_from(len).unwrap_or(usize::MAX),
                max: MAX_ADAPTER_BYTES,
            });
        }
        Self::from_bytes(&std::fs::read(path).map_err(io)?)
    }

    /// The canonical file encoding (see the module doc): same adapter, same
    /// bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut tensors: Vec<(String, [usize; 2], &[f32])> =
            Vec::with_capacity(2 * self.parts.len());
        for (&(layer, target), w) in &self.parts {
            let stem = format!("blk.{layer}.{}", target.name());
            tensors.push((format!("{stem}.lora_a"), [self.rank, w.in_dim], &w.a));
            tensors.push((format!("{stem}.lora_b"), [w.out_dim, self.rank], &w.b));
        }
        // safetensors lays tensors out in name order; so do we.
        tensors.sort_by(|x, y| x.0.cmp(&y.0));
        // Every string below is ASCII without quotes or backslashes (fixed
        // keys, hex, decimal numbers, tensor names built above), so writing
        // the JSON by hand needs no escaping.
        let mut header = format!(
            "{{\"__metadata__\":{{\"{KEY_ALPHA}\":\"{}\",\"{KEY_BASE_MODEL}\":\"{}\",\"{KEY_FORMAT}\":\"{ADAPTER_FORMAT}\",\"{KEY_RANK}\":\"{}\",\"{KEY_VERSION}\":\"{}\"}}",
            self.alpha,
            hex::encode(self.base_model),
            self.rank,
            self.version
        );
        let mut offset = 0usize;
        for (name, [rows, cols], values) in &tensors {
            let end = offset + 4 * values.len();
            header.push_str(&format!(
                ",\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{rows},{cols}],\"data_offsets\":[{offset},{end}]}}"
            ));
            offset = end;
        }
        header.push('}');
        // safetensors pads the header with spaces to a multiple of 8 bytes.
        while header.len() % 8 != 0 {
            header.push(' ');
        }
        let mut out = Vec::with_capacity(8 + header.len() + offset);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        for (_, _, values) in &tensors {
            for v in values.iter() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// sha256 of [`Adapter::to_bytes`]: the adapter's identity (computed once,
    /// when it was built).
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The policy version the trainer stamped on it.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// sha256 of the base model file it was trained on (a receipt's model hash).
    pub fn base_model(&self) -> [u8; 32] {
        self.base_model
    }

    /// The LoRA rank `r`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// LoRA's `alpha`; the delta is scaled by `alpha / rank`.
    pub fn alpha(&self) -> f32 {
        self.alpha
    }

    /// `alpha / rank`, the factor every delta is multiplied by.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// The adapted projections, in (layer, target) order, as [`LoraPart`]s
    /// (copies: for a trainer that resumes from a file).
    pub fn parts(&self) -> Vec<LoraPart> {
        self.parts
            .iter()
            .map(|(&(layer, target), w)| LoraPart {
                layer,
                target,
                a: w.a.clone(),
                b: w.b.clone(),
            })
            .collect()
    }

    /// The factors for `target` of block `layer`, if adapted.
    pub(crate) fn part(&self, layer: usize, target: LoraTarget) -> Option<&LoraWeights> {
        self.parts.get(&(layer, target))
    }

    /// Refuses this adapter for a model that is not its base: another
    /// `model_sha256`, a layer the model does not have, or a projection
    /// whose widths differ from `config`'s.
    pub fn check_for(&self, config: &LlamaConfig, model_sha256: &[u8; 32]) -> Result<()> {
        if &self.base_model != model_sha256 {
            return Err(EngineError::AdapterBaseModel {
                adapter: hex::encode(self.base_model),
                model: hex::encode(model_sha256),
            });
        }
        self.check_shapes(config)
    }

    /// The shape half of [`Adapter::check_for`]: what the forward pass needs
    /// to slice rows safely (it does not know the model file's digest).
    pub(crate) fn check_shapes(&self, config: &LlamaConfig) -> Result<()> {
        for (&(layer, target), w) in &self.parts {
            let name = format!("blk.{layer}.{}", target.name());
            if layer >= config.n_layers {
                return Err(EngineError::AdapterShape(format!(
                    "{name}: the model has {} layers",
                    config.n_layers
                )));
            }
            let (in_dim, out_dim) = target.dims(config);
            if (w.in_dim, w.out_dim) != (in_dim, out_dim) {
                return Err(EngineError::AdapterShape(format!(
                    "{name} maps {} → {}, the model's projection maps {in_dim} → {out_dim}",
                    w.in_dim, w.out_dim
                )));
            }
        }
        Ok(())
    }
}

/// The five `strata.*` entries: `(base_model, version, rank, alpha)`.
fn parse_metadata(meta: &HashMap<String, String>) -> Result<([u8; 32], u64, usize, f32)> {
    // Nothing else is allowed: an entry the canonical encoding would drop
    // would make two different files one adapter.
    let known = [KEY_FORMAT, KEY_BASE_MODEL, KEY_VERSION, KEY_RANK, KEY_ALPHA];
    let mut unknown: Vec<&String> = meta
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .collect();
    unknown.sort();
    if let Some(k) = unknown.first() {
        return Err(bad(format!("unknown metadata entry {k:?}")));
    }
    let get = |key: &str| {
        meta.get(key)
            .map(String::as_str)
            .ok_or_else(|| bad(format!("metadata entry {key} is missing")))
    };
    let format = get(KEY_FORMAT)?;
    if format != ADAPTER_FORMAT {
        return Err(bad(format!(
            "{KEY_FORMAT} is {format:?}, this engine reads {ADAPTER_FORMAT:?}"
        )));
    }
    let base_hex = get(KEY_BASE_MODEL)?;
    let base_ok = base_hex.len() == 64
        && base_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mut base_model = [0u8; 32];
    if !base_ok || hex::decode_to_slice(base_hex, &mut base_model).is_err() {
        return Err(bad(format!(
            "{KEY_BASE_MODEL} = {base_hex:?} is not a lowercase hex sha256"
        )));
    }
    let version = parse_decimal(KEY_VERSION, get(KEY_VERSION)?)?;
    let rank = parse_decimal(KEY_RANK, get(KEY_RANK)?)?;
    let rank = usize::try_from(rank)
        .ok()
        .filter(|r| (1..=MAX_ADAPTER_RANK).contains(r))
        .ok_or_else(|| {
            bad(format!(
                "{KEY_RANK} {rank} is outside 1..={MAX_ADAPTER_RANK}"
            ))
        })?;
    let alpha_str = get(KEY_ALPHA)?;
    let alpha: f32 = alpha_str
        .parse()
        .ok()
        .filter(|a: &f32| a.is_finite() && *a > 0.0)
        .ok_or_else(|| {
            bad(format!(
                "{KEY_ALPHA} = {alpha_str:?} is not a positive finite number"
            ))
        })?;
    Ok((base_model, version, rank, alpha))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    const BASE: [u8; 32] = [7; 32];

    /// A tensor to write: name, dtype, shape, bytes.
    type Tensor = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

    fn random(n: usize, rng: &mut impl Rng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// A small adapter on made-up widths (no model needed).
    fn small(parts_order_reversed: bool) -> Adapter {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut parts = vec![
            LoraPart {
                layer: 0,
                target: LoraTarget::AttnQ,
                a: random(2 * 6, &mut rng),
                b: random(5 * 2, &mut rng),
            },
            LoraPart {
                layer: 11,
                target: LoraTarget::FfnDown,
                a: random(2 * 3, &mut rng),
                b: random(4 * 2, &mut rng),
            },
            LoraPart {
                layer: 2,
                target: LoraTarget::AttnV,
                a: random(2 * 6, &mut rng),
                b: random(3 * 2, &mut rng),
            },
        ];
        if parts_order_reversed {
            parts.reverse();
        }
        Adapter::new(BASE, 42, 2, 16.0, parts).unwrap()
    }

    /// Writes a file with the `safetensors` crate: how a foreign writer
    /// (or an attacker) would build one.
    fn write(tensors: &[Tensor], meta: &[(&str, &str)]) -> Vec<u8> {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| {
                (
                    n.to_string(),
                    safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let meta: HashMap<String, String> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        safetensors::serialize(views, Some(meta)).unwrap()
    }

    fn f32_bytes(n: usize, v: f32) -> Vec<u8> {
        (0..n).flat_map(|_| v.to_le_bytes()).collect()
    }

    fn good_meta() -> Vec<(&'static str, String)> {
        vec![
            (KEY_FORMAT, ADAPTER_FORMAT.to_string()),
            (KEY_BASE_MODEL, hex::encode(BASE)),
            (KEY_VERSION, "3".into()),
            (KEY_RANK, "2".into()),
            (KEY_ALPHA, "4".into()),
        ]
    }

    /// A valid pair (rank 2, 3 → 4) plus whatever `edit` changes.
    fn file_with(
        edit_meta: impl Fn(&mut Vec<(&'static str, String)>),
        tensors: Vec<Tensor>,
    ) -> Vec<u8> {
        let mut meta = good_meta();
        edit_meta(&mut meta);
        let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (*k, v.as_str())).collect();
        write(&tensors, &meta)
    }

    fn pair(layer: &str, target: &str) -> Vec<Tensor> {
        vec![
            (
                format!("blk.{layer}.{target}.lora_a"),
                safetensors::Dtype::F32,
                vec![2, 3],
                f32_bytes(6, 0.5),
            ),
            (
                format!("blk.{layer}.{target}.lora_b"),
                safetensors::Dtype::F32,
                vec![4, 2],
                f32_bytes(8, -0.25),
            ),
        ]
    }

    fn refused(bytes: &[u8], needle: &str) {
        match Adapter::from_bytes(bytes) {
            Err(EngineError::Adapter(msg)) => {
                assert!(msg.contains(needle), "{msg:?} does not mention {needle:?}")
            }
            other => panic!("expected an Adapter error mentioning {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_is_identical_and_digest_stable() {
        let a = small(false);
        let bytes = a.to_bytes();
        let b = Adapter::from_bytes(&bytes).unwrap();
        assert_eq!(a, b);
        assert_eq!(b.to_bytes(), bytes);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.digest(), <[u8; 32]>::from(sha2::Sha256::digest(&bytes)));
        assert_eq!(
            (b.version(), b.rank(), b.alpha(), b.base_model()),
            (42, 2, 16.0, BASE)
        );
        assert_eq!(b.scale(), 8.0);
        // The parts come back as given, in (layer, target) order.
        let parts = b.parts();
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.layer, p.target))
                .collect::<Vec<_>>(),
            [
                (0, LoraTarget::AttnQ),
                (2, LoraTarget::AttnV),
                (11, LoraTarget::FfnDown)
            ]
        );
        assert_eq!(Adapter::new(BASE, 42, 2, 16.0, parts).unwrap(), a);
    }

    /// The encoding is canonical: part order does not matter, tensors are
    /// laid out in name order (so `blk.11` before `blk.2`), and the
    /// `safetensors` crate reads the file back.
    #[test]
    fn encoding_is_canonical_and_readable_by_safetensors() {
        let (a, b) = (small(false), small(true));
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(a.digest(), b.digest());
        let bytes = a.to_bytes();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            meta.offset_keys(),
            [
                "blk.0.attn_q.lora_a",
                "blk.0.attn_q.lora_b",
                "blk.11.ffn_down.lora_a",
                "blk.11.ffn_down.lora_b",
                "blk.2.attn_v.lora_a",
                "blk.2.attn_v.lora_b",
            ]
        );
        let m = meta.metadata().as_ref().unwrap();
        assert_eq!(m[KEY_ALPHA], "16");
        assert_eq!(m[KEY_FORMAT], ADAPTER_FORMAT);
        // A foreign writer's encoding of the same adapter (the safetensors
        // crate's own serializer) is accepted and has the same identity.
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let foreign = safetensors::serialize(st.tensors(), Some(m.clone())).unwrap();
        assert_eq!(Adapter::from_bytes(&foreign).unwrap().digest(), a.digest());
        // Changing one weight changes the identity.
        let mut parts = a.parts();
        parts[0].a[0] += 1.0;
        assert_ne!(
            Adapter::new(BASE, 42, 2, 16.0, parts).unwrap().digest(),
            a.digest()
        );
    }

    #[test]
    fn a_valid_foreign_file_is_read() {
        let bytes = file_with(|_| {}, pair("5", "ffn_up"));
        let a = Adapter::from_bytes(&bytes).unwrap();
        assert_eq!((a.version(), a.rank(), a.alpha()), (3, 2, 4.0));
        let w = a.part(5, LoraTarget::FfnUp).unwrap();
        assert_eq!((w.in_dim, w.out_dim), (3, 4));
    }

    #[test]
    fn refuses_oversized_and_non_safetensors_input() {
        assert!(matches!(
            Adapter::from_bytes(&vec![0u8; MAX_ADAPTER_BYTES + 1]),
            Err(EngineError::AdapterTooLarge { .. })
        ));
        refused(b"", "not a safetensors file");
        refused(b"GGUF\x03\0\0\0garbage", "not a safetensors file");
        let mut truncated = small(false).to_bytes();
        truncated.pop();
        refused(&truncated, "not a safetensors file");
    }

    #[test]
    fn refuses_bad_metadata() {
        let t = || pair("0", "attn_q");
        let no_meta = write(&t(), &[]);
        // An empty map is written as `{}`; a missing map is refused too.
        refused(&no_meta, "missing");
        let set = |k: &'static str, v: &'static str| {
            move |m: &mut Vec<(&'static str, String)>| {
                m.retain(|(key, _)| *key != k);
                m.push((k, v.to_string()));
            }
        };
        let drop = |k: &'static str| {
            move |m: &mut Vec<(&'static str, String)>| m.retain(|(key, _)| *key != k)
        };
        refused(
            &file_with(set(KEY_FORMAT, "strata-lora-v2"), t()),
            "strata-lora-v2",
        );
        refused(
            &file_with(drop(KEY_FORMAT), t()),
            "strata.format is missing",
        );
        refused(&file_with(drop(KEY_ALPHA), t()), "strata.alpha is missing");
        refused(&file_with(set(KEY_BASE_MODEL, "abc"), t()), "lowercase hex");
        // Upper-case hex decodes, but is not the canonical spelling.
        let upper: &'static str = Box::leak("AB".repeat(32).into_boxed_str());
        refused(&file_with(set(KEY_BASE_MODEL, upper), t()), "lowercase hex");
        refused(&file_with(set(KEY_VERSION, "+3"), t()), "decimal");
        refused(
            &file_with(set(KEY_VERSION, "99999999999999999999"), t()),
            "out of range",
        );
        refused(&file_with(set(KEY_RANK, "0"), t()), "outside 1..=64");
        refused(&file_with(set(KEY_RANK, "65"), t()), "outside 1..=64");
        refused(&file_with(set(KEY_ALPHA, "NaN"), t()), "positive finite");
        refused(&file_with(set(KEY_ALPHA, "inf"), t()), "positive finite");
        refused(&file_with(set(KEY_ALPHA, "-1"), t()), "positive finite");
        refused(
            &file_with(set("strata.note", "hi"), t()),
            "unknown metadata",
        );
    }

    #[test]
    fn refuses_bad_tensors() {
        use safetensors::Dtype;
        let ok = pair("0", "attn_q");
        // Unknown names and targets, absurd layers.
        for name in [
            "blk.0.attn_q.lora_c",
            "blk.0.attn_q",
            "layer.0.attn_q.lora_a",
            "blk.0.attn_q.lora_a.x",
            "blk.x.attn_q.lora_a",
        ] {
            let mut t = ok.to_vec();
            t.push((name.to_string(), Dtype::F32, vec![2, 3], f32_bytes(6, 1.0)));
            let bytes = file_with(|_| {}, t);
            assert!(Adapter::from_bytes(&bytes).is_err(), "{name}");
        }
        let mut t = pair("0", "attn_z");
        t.truncate(2);
        refused(&file_with(|_| {}, t), "unknown target");
        refused(&file_with(|_| {}, pair("4096", "attn_q")), "not below 4096");
        refused(&file_with(|_| {}, pair("-1", "attn_q")), "decimal");
        // Non-F32.
        let mut t = ok.to_vec();
        t[0] = (t[0].0.clone(), Dtype::F16, vec![2, 3], vec![0; 12]);
        refused(&file_with(|_| {}, t), "adapters are F32");
        // Unpaired factors.
        refused(&file_with(|_| {}, ok[..1].to_vec()), "has no lora_b");
        refused(&file_with(|_| {}, ok[1..].to_vec()), "has no lora_a");
        // Rank mismatches: a's rank, b's rank, and both against strata.rank.
        let mut t = ok.to_vec();
        t[0] = (t[0].0.clone(), Dtype::F32, vec![3, 2], f32_bytes(6, 1.0));
        refused(&file_with(|_| {}, t), "rank");
        let mut t = ok.to_vec();
        t[1] = (t[1].0.clone(), Dtype::F32, vec![2, 4], f32_bytes(8, 1.0));
        refused(&file_with(|_| {}, t), "rank");
        let rank3 = |m: &mut Vec<(&'static str, String)>| {
            m.retain(|(k, _)| *k != KEY_RANK);
            m.push((KEY_RANK, "3".into()));
        };
        refused(&file_with(rank3, ok.to_vec()), "strata.rank is 3");
        // Not 2-D, or empty.
        let mut t = ok.to_vec();
        t[0] = (t[0].0.clone(), Dtype::F32, vec![6], f32_bytes(6, 1.0));
        refused(&file_with(|_| {}, t), "2-D");
        let mut t = ok.to_vec();
        t[0] = (t[0].0.clone(), Dtype::F32, vec![2, 0], Vec::new());
        refused(&file_with(|_| {}, t), "empty projection");
        // NaN and infinity.
        for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut t = ok.to_vec();
            t[1] = (t[1].0.clone(), Dtype::F32, vec![4, 2], f32_bytes(8, v));
            refused(&file_with(|_| {}, t), "non-finite");
        }
    }

    #[test]
    fn new_refuses_what_from_bytes_would() {
        let part = |a: usize, b: usize| LoraPart {
            layer: 1,
            target: LoraTarget::FfnGate,
            a: vec![0.5; a],
            b: vec![0.5; b],
        };
        let err = |r: Result<Adapter>| match r {
            Err(EngineError::Adapter(m)) => m,
            other => panic!("expected an Adapter error, got {other:?}"),
        };
        assert!(err(Adapter::new(BASE, 0, 0, 1.0, vec![])).contains("rank 0"));
        assert!(err(Adapter::new(BASE, 0, 65, 1.0, vec![])).contains("rank 65"));
        assert!(err(Adapter::new(BASE, 0, 2, 0.0, vec![])).contains("alpha"));
        assert!(err(Adapter::new(BASE, 0, 2, f32::NAN, vec![])).contains("alpha"));
        assert!(err(Adapter::new(BASE, 0, 2, 1.0, vec![part(5, 4)])).contains("lora_a"));
        assert!(err(Adapter::new(BASE, 0, 2, 1.0, vec![part(4, 0)])).contains("lora_b"));
        assert!(err(Adapter::new(BASE, 0, 2, 1.0, vec![part(4, 4), part(4, 4)])).contains("twice"));
        let mut nan = part(4, 4);
        nan.b[3] = f32::NAN;
        assert!(err(Adapter::new(BASE, 0, 2, 1.0, vec![nan])).contains("non-finite"));
        let mut deep = part(4, 4);
        deep.layer = MAX_ADAPTER_LAYER;
        assert!(err(Adapter::new(BASE, 0, 2, 1.0, vec![deep])).contains("not below"));
        // Too big to encode within the limit.
        let huge = LoraPart {
            layer: 0,
            target: LoraTarget::FfnUp,
            a: vec![0.0; MAX_ADAPTER_BYTES / 8],
            b: vec![0.0; MAX_ADAPTER_BYTES / 8],
        };
        assert!(matches!(
            Adapter::new(BASE, 0, 1, 1.0, vec![huge]),
            Err(EngineError::AdapterTooLarge { .. })
        ));
        // An adapter with no parts is the base model, and is valid.
        assert!(Adapter::new(BASE, 0, 1, 1.0, vec![]).is_ok());
    }

    #[test]
    fn target_names_round_trip() {
        for t in LoraTarget::ALL {
            assert_eq!(LoraTarget::from_name(t.name()), Some(t));
        }
        assert_eq!(LoraTarget::from_name("attn_qkv"), None);
    }

    /// The delta is `scale · B·(A·x)`, checked on a tiny case by hand.
    #[test]
    fn add_delta_is_scaled_b_a_x() {
        let w = LoraWeights {
            a: vec![1.0, 2.0, 0.0, -1.0],           // [2, 2]
            b: vec![1.0, 1.0, 3.0, 0.0, 0.0, -2.0], // [3, 2]
            in_dim: 2,
            out_dim: 3,
        };
        let mut y = vec![10.0, 20.0, 30.0];
        w.add_delta(&[3.0, 4.0], &mut y, 0.5, &mut Vec::new());
        // A·x = [11, -4]; ×0.5 = [5.5, -2]; B·t = [3.5, 16.5, 4].
        assert_eq!(y, [13.5, 36.5, 34.0]);
    }

    proptest! {
        #[test]
        fn from_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Adapter::from_bytes(&bytes);
        }

        /// Hostile edits of a valid file (a flipped byte anywhere, which
        /// reaches the header's JSON, shapes and offsets) never panic.
        #[test]
        fn corrupted_file_never_panics(pos in 0usize..4096, byte in any::<u8>()) {
            let mut bytes = small(false).to_bytes();
            let i = pos % bytes.len();
            bytes[i] = byte;
            if let Ok(a) = Adapter::from_bytes(&bytes) {
                // Whatever is accepted encodes canonically.
                prop_assert_eq!(Adapter::from_bytes(&a.to_bytes()).unwrap(), a);
            }
        }
    }
}
