//! The operands' block layouts: weights repacked at load into column groups
//! (see the module doc of `kernels`), activations quantized to 8-bit blocks
//! once per matmul, always by the same scalar code.

use half::f16;

use crate::error::{EngineError, Result};

use super::{GC, QK};

/// Weight formats with a native kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QKind {
    /// 4-bit with per-block scale and minimum (20-byte blocks).
    Q4_1,
    /// 8-bit with per-block scale (34-byte blocks).
    Q8_0,
}

impl QKind {
    /// Packed quant bytes per block per column.
    pub(super) fn qbytes(self) -> usize {
        match self {
            QKind::Q4_1 => 16,
            QKind::Q8_0 => 32,
        }
    }
}

/// A quantized `[n, k]` matrix in kernel layout (column groups, see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct QMatrix {
    pub(super) kind: QKind,
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) nb: usize,
    /// Scales, `[group][block][GC]`.
    pub(super) d: Vec<f32>,
    /// Q4_1 minimums, `[group][block][GC]` (empty for Q8_0).
    pub(super) m: Vec<f32>,
    /// Quant bytes, `[group][block][GC · qbytes]`, interleaved four bytes per column.
    pub(super) qs: Vec<u8>,
}

impl QMatrix {
    /// Converts raw GGUF block bytes of an `[n, k]` matrix.
    pub(crate) fn from_ggml(kind: QKind, n: usize, k: usize, bytes: &[u8]) -> Result<Self> {
        if !k.is_multiple_of(QK) {
            return Err(EngineError::InvalidModel(format!(
                "row length {k} is not a multiple of 32"
            )));
        }
        let nb = k / QK;
        let (bsize, qb) = match kind {
            QKind::Q4_1 => (20, 16),
            QKind::Q8_0 => (34, 32),
        };
        if bytes.len() != n * nb * bsize {
            return Err(EngineError::InvalidModel(format!(
                "{kind:?} matrix [{n}, {k}] needs {} bytes, has {}",
                n * nb * bsize,
                bytes.len()
            )));
        }
        let groups = n.div_ceil(GC);
        let slots = groups * nb * GC;
        let mut d = vec![0f32; slots];
        let mut m = if kind == QKind::Q4_1 {
            vec![0f32; slots]
        } else {
            Vec::new()
        };
        let mut qs = vec![0u8; slots * qb];
        for col in 0..n {
            let (g, c) = (col / GC, col % GC);
            for b in 0..nb {
                let src = &bytes[(col * nb + b) * bsize..(col * nb + b + 1) * bsize];
                let slot = (g * nb + b) * GC + c;
                d[slot] = f16::from_le_bytes([src[0], src[1]]).to_f32();
                let q = match kind {
                    QKind::Q4_1 => {
                        m[slot] = f16::from_le_bytes([src[2], src[3]]).to_f32();
                        &src[4..20]
                    }
                    QKind::Q8_0 => &src[2..34],
                };
                let dst = &mut qs[(g * nb + b) * GC * qb..(g * nb + b + 1) * GC * qb];
                for (i, four) in q.chunks_exact(4).enumerate() {
                    dst[i * 32 + c * 4..i * 32 + c * 4 + 4].copy_from_slice(four);
                }
            }
        }
        Ok(Self {
            kind,
            n,
            k,
            nb,
            d,
            m,
            qs,
        })
    }

    /// Output width.
    #[allow(dead_code)]
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        (self.d.len() + self.m.len()) * 4 + self.qs.len()
    }

    /// Bytes an `[n, k]` matrix of `kind` takes once repacked (what
    /// [`QMatrix::bytes`] will say), known before loading it: scales widen
    /// to f32 and rows pad to whole groups.
    pub(crate) fn bytes_for(kind: QKind, n: usize, k: usize) -> usize {
        let slots = n.div_ceil(GC) * GC * k.div_ceil(QK);
        let scales = if kind == QKind::Q4_1 { 2 } else { 1 };
        slots * (scales * 4 + kind.qbytes())
    }

    /// Dequantized row `r` (the embedding lookup).
    #[allow(dead_code)]
    pub(crate) fn row(&self, r: usize, out: &mut [f32]) {
        let (g, c) = (r / GC, r % GC);
        let qb = self.kind.qbytes();
        for b in 0..self.nb {
            let slot = (g * self.nb + b) * GC + c;
            let q = &self.qs[(g * self.nb + b) * GC * qb..(g * self.nb + b + 1) * GC * qb];
            let dst = &mut out[b * QK..(b + 1) * QK];
            for i in 0..qb / 4 {
                for t in 0..4 {
                    let v = q[i * 32 + c * 4 + t];
                    match self.kind {
                        QKind::Q4_1 => {
                            let (d, m) = (self.d[slot], self.m[slot]);
                            dst[4 * i + t] = f32::from(v & 0x0F) * d + m;
                            dst[16 + 4 * i + t] = f32::from(v >> 4) * d + m;
                        }
                        QKind::Q8_0 => dst[4 * i + t] = f32::from(v as i8) * self.d[slot],
                    }
                }
            }
        }
    }
}

/// Activations quantized to 8 bits per 32-value block.
pub(super) struct Q8Act {
    /// Scale per block.
    pub(super) d: Vec<f32>,
    /// `d · Σq` per block (for Q4_1's minimum term).
    pub(super) s: Vec<f32>,
    /// The 8-bit values, `[row][k]`.
    pub(super) q: Vec<i8>,
    /// When asked for: `−128 · (q[4l] + … + q[4l + 3])` for the eight
    /// four-value groups `l` of each block (the VNNI Q8_0 kernel's offset
    /// correction), `[row · block][8]`; empty otherwise.
    pub(super) c: Vec<i32>,
}

impl Q8Act {
    /// Quantizes `rows` rows of `k` values; `group_sums` also computes `c`.
    pub(super) fn quantize(x: &[f32], rows: usize, k: usize, group_sums: bool) -> Self {
        let nb = k / QK;
        let mut d = Vec::with_capacity(rows * nb);
        let mut s = Vec::with_capacity(rows * nb);
        let mut q = vec![0i8; rows * k];
        let mut c = Vec::with_capacity(if group_sums { rows * k / 4 } else { 0 });
        for (xs, qs) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)) {
            let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            let mut sum = 0i32;
            for (qv, xv) in qs.iter_mut().zip(xs) {
                let v = round_to_i8(xv * inv);
                *qv = v;
                sum += i32::from(v);
            }
            d.push(scale);
            s.push(scale * sum as f32);
            if group_sums {
                c.extend(
                    qs.chunks_exact(4)
                        .map(|g| -128 * g.iter().map(|&v| i32::from(v)).sum::<i32>()),
                );
            }
        }
        Self { d, s, q, c }
    }
}

/// `v.round().clamp(-127.0, 127.0) as i8` (half away from zero), without a
/// libm call: the truncation and the fraction `v − trunc(v)` are exact.
#[inline]
fn round_to_i8(v: f32) -> i8 {
    let t = v as i32; // truncates; NaN gives 0, as `NaN as i8` does
    let f = v - t as f32;
    let r = if f >= 0.5 {
        t + 1
    } else if f <= -0.5 {
        t - 1
    } else {
        t
    };
    r.clamp(-127, 127) as i8
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn round_to_i8_matches_round_clamp() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut vals: Vec<f32> = vec![
            0.5,
            -0.5,
            1.5,
            -1.5,
            0.49999997,
            -0.49999997,
            126.5,
            127.0,
            127.5,
            -127.5,
            300.0,
            -300.0,
            0.0,
            -0.0,
            f32::NAN,
        ];
        vals.extend((0..100_000).map(|_| rng.random_range(-130f32..130.0)));
        for v in vals {
            assert_eq!(round_to_i8(v), v.round().clamp(-127.0, 127.0) as i8, "{v}");
        }
    }
}
