//! A linear map `y = x Wᵀ` on quantized weights: the crate's native kernels
//! for the formats they cover, candle's `QMatMul` for the rest. Loaders build
//! it, the model's layers call [`Linear::forward`].

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};

use crate::error::Result;
use crate::kernels::{QKind, QMatrix};

/// A linear map stored quantized; several tensors that share an input (q/k/v,
/// gate/up) are fused into one matrix so that one matmul call (one thread-pool
/// round trip, one quantization of `x`) serves them all. Fusing only
/// concatenates rows, so every output is the same dot product as unfused.
#[derive(Debug, Clone)]
pub(crate) enum Linear {
    /// Formats with a native kernel (Q4_1, Q8_0).
    Native(QMatrix),
    /// Anything else, through candle's `QMatMul` (one per part, outputs side by side).
    Candle {
        parts: Vec<QMatMul>,
        outs: Vec<usize>,
        in_dim: usize,
        out_dim: usize,
    },
}

fn native_kind(dtype: GgmlDType) -> Option<QKind> {
    match dtype {
        GgmlDType::Q4_1 => Some(QKind::Q4_1),
        GgmlDType::Q8_0 => Some(QKind::Q8_0),
        _ => None,
    }
}

impl Linear {
    /// Builds the fastest form for these stacked `[out_i, in_dim]` tensors.
    pub(crate) fn from_tensors(
        tensors: Vec<&QTensor>,
        outs: Vec<usize>,
        in_dim: usize,
    ) -> Result<Self> {
        let out_dim = outs.iter().sum();
        let dtype = tensors.first().map(|t| t.dtype());
        let same = tensors.iter().all(|t| Some(t.dtype()) == dtype);
        if let (true, Some(kind)) = (same, dtype.and_then(native_kind)) {
            // Rows of a quantized matrix are whole blocks laid out one after
            // another, so stacking matrices is concatenating their bytes.
            let mut bytes = Vec::new();
            for t in &tensors {
                bytes.extend_from_slice(&t.data()?);
            }
            return Ok(Linear::Native(QMatrix::from_ggml(
                kind, out_dim, in_dim, &bytes,
            )?));
        }
        let mut parts = Vec::with_capacity(tensors.len());
        for t in tensors {
            let storage =
                QStorage::from_data(Cow::Owned(t.data()?.into_owned()), &Device::Cpu, t.dtype())?;
            parts.push(QMatMul::from_qtensor(QTensor::new(
                storage,
                t.shape().clone(),
            )?)?);
        }
        Ok(Linear::Candle {
            parts,
            outs,
            in_dim,
            out_dim,
        })
    }

    /// Bytes [`Linear::from_tensors`] will hold for stacked tensors of
    /// `dtype` with `out_dim` rows of `in_dim` in all, known before reading
    /// them (a node sizes its shard from this).
    pub(crate) fn bytes_for(dtype: GgmlDType, out_dim: usize, in_dim: usize) -> usize {
        match native_kind(dtype) {
            Some(kind) => QMatrix::bytes_for(kind, out_dim, in_dim),
            None => out_dim * in_dim / dtype.block_size().max(1) * dtype.type_size(),
        }
    }

    /// Bytes of weights held.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Linear::Native(m) => m.bytes(),
            Linear::Candle { parts, .. } => parts
                .iter()
                .map(|p| match p {
                    QMatMul::QTensor(t) => t.storage_size_in_bytes(),
                    QMatMul::Tensor(t) | QMatMul::TensorF16(t) => {
                        t.elem_count() * t.dtype().size_in_bytes()
                    }
                })
                .sum(),
        }
    }

    /// `x Wᵀ` for `rows` rows of `x` (`[rows, in_dim]`), giving `[rows, out_dim]`.
    pub(crate) fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let (parts, outs, in_dim, out_dim) = match self {
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
                out[r * out_dim + off..r * out_dim + off + o]
                    .copy_from_slice(&y[r * o..(r + 1) * o]);
            }
            off += o;
        }
        Ok(out)
    }
}
