//! Quantized matrix-vector kernels for the formats the default model uses (Q4_1
//! layers, Q8_0 embedding/head), apart from the model's meaning.
//!
//! candle 0.11's Q4_1 dot product is scalar, with an f16 conversion per block,
//! and its Q8_0 SIMD path is only compiled in when the whole build targets AVX.
//! These kernels pick AVX2+FMA at run time (scalar otherwise), keep the weights'
//! block scales as f32 (converted once at load) and split columns over candle's
//! thread pool. Activations are quantized to 8 bits per 32-value block (as ggml's
//! Q8_1/Q8_0), always by the same scalar code.
//!
//! Determinism: an output value is one dot product of one input row with one
//! weight row, computed by a fixed instruction sequence, so it does not depend on
//! the batch, the number of rows or the thread count. Scalar and AVX2 paths sum
//! in different orders: that is the cross-machine deviation the verifier's
//! tolerance is calibrated for (`STRATA_KERNEL=scalar` forces the scalar path).

use std::sync::OnceLock;

use half::f16;

use crate::error::{EngineError, Result};

const QK: usize = 32;

/// Weight formats with a native kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QKind {
    /// 4-bit with per-block scale and minimum (20-byte blocks).
    Q4_1,
    /// 8-bit with per-block scale (34-byte blocks).
    Q8_0,
}

/// A quantized `[n, k]` matrix in kernel layout.
#[derive(Debug, Clone)]
pub(crate) struct QMatrix {
    kind: QKind,
    n: usize,
    k: usize,
    nb: usize,
    d: Vec<f32>,
    m: Vec<f32>,
    qs: Vec<u8>,
}

fn use_avx2() -> bool {
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| {
        if std::env::var("STRATA_KERNEL")
            .map(|v| v == "scalar")
            .unwrap_or(false)
        {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Name of the kernel path in use (for benchmark output).
pub fn kernel_name() -> &'static str {
    if use_avx2() {
        "avx2"
    } else {
        "scalar"
    }
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
        let (bsize, qbytes) = match kind {
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
        let mut d = Vec::with_capacity(n * nb);
        let mut m = Vec::new();
        let mut qs = Vec::with_capacity(n * nb * qbytes);
        for b in bytes.chunks_exact(bsize) {
            d.push(f16::from_le_bytes([b[0], b[1]]).to_f32());
            match kind {
                QKind::Q4_1 => {
                    m.push(f16::from_le_bytes([b[2], b[3]]).to_f32());
                    qs.extend_from_slice(&b[4..20]);
                }
                QKind::Q8_0 => qs.extend_from_slice(&b[2..34]),
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

    /// `x Wᵀ` for `rows` rows of `x` (`rows × k`), giving `rows × n`.
    pub(crate) fn matmul(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let act = Q8Act::quantize(x, rows, self.k);
        let mut out = vec![0f32; rows * self.n];
        let n = self.n;
        // Work items are groups of columns; each item does all rows so a weight
        // row is read once per call while it is hot in cache.
        const COLS: usize = 16;
        let n_items = n.div_ceil(COLS);
        let out_ptr = SharedOut(out.as_mut_ptr());
        let avx2 = use_avx2();
        let work = |range: std::ops::Range<usize>| {
            let p = &out_ptr;
            for item in range {
                let c0 = item * COLS;
                let c1 = (c0 + COLS).min(n);
                for r in 0..rows {
                    for c in c0..c1 {
                        let v = self.dot(c, &act, r, avx2);
                        // SAFETY: (r, c) is written by exactly one item, inside
                        // `out` (rows · n values), which outlives the pool call.
                        unsafe { *p.0.add(r * n + c) = v };
                    }
                }
            }
        };
        if rows * n * self.k < 1 << 16 {
            work(0..n_items);
        } else {
            candle_core::utils::barrier_pool().execute_chunked(n_items, work);
        }
        out
    }

    fn dot(&self, col: usize, act: &Q8Act, row: usize, avx2: bool) -> f32 {
        let nb = self.nb;
        let w = col * nb..(col + 1) * nb;
        let a = row * nb..(row + 1) * nb;
        match self.kind {
            QKind::Q4_1 => {
                let wq = &self.qs[w.start * 16..w.end * 16];
                let yq = &act.q[a.start * 32..a.end * 32];
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: AVX2 and FMA were detected at run time; slices have
                    // nb blocks each (checked by construction).
                    return unsafe {
                        dot_q4_1_avx2(
                            nb,
                            wq,
                            &self.d[w.clone()],
                            &self.m[w],
                            yq,
                            &act.d[a.clone()],
                            &act.s[a],
                        )
                    };
                }
                let _ = avx2;
                dot_q4_1_scalar(
                    nb,
                    wq,
                    &self.d[w.clone()],
                    &self.m[w],
                    yq,
                    &act.d[a.clone()],
                    &act.s[a],
                )
            }
            QKind::Q8_0 => {
                let wq = &self.qs[w.start * 32..w.end * 32];
                let yq = &act.q[a.start * 32..a.end * 32];
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: as above.
                    return unsafe { dot_q8_0_avx2(nb, wq, &self.d[w], yq, &act.d[a]) };
                }
                dot_q8_0_scalar(nb, wq, &self.d[w], yq, &act.d[a])
            }
        }
    }

    /// Dequantized row `r` (the embedding lookup).
    #[allow(dead_code)]
    pub(crate) fn row(&self, r: usize, out: &mut [f32]) {
        for b in 0..self.nb {
            let i = r * self.nb + b;
            let dst = &mut out[b * QK..(b + 1) * QK];
            match self.kind {
                QKind::Q4_1 => {
                    let q = &self.qs[i * 16..(i + 1) * 16];
                    for j in 0..16 {
                        dst[j] = f32::from(q[j] & 0x0F) * self.d[i] + self.m[i];
                        dst[j + 16] = f32::from(q[j] >> 4) * self.d[i] + self.m[i];
                    }
                }
                QKind::Q8_0 => {
                    let q = &self.qs[i * 32..(i + 1) * 32];
                    for j in 0..32 {
                        dst[j] = f32::from(q[j] as i8) * self.d[i];
                    }
                }
            }
        }
    }
}

/// Activations quantized to 8 bits per 32-value block.
struct Q8Act {
    d: Vec<f32>,
    /// `d · Σq` per block (for Q4_1's minimum term).
    s: Vec<f32>,
    q: Vec<i8>,
}

impl Q8Act {
    fn quantize(x: &[f32], rows: usize, k: usize) -> Self {
        let nb = k / QK;
        let mut d = Vec::with_capacity(rows * nb);
        let mut s = Vec::with_capacity(rows * nb);
        let mut q = vec![0i8; rows * k];
        for (blk, (xs, qs)) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).enumerate() {
            let _ = blk;
            let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            let mut sum = 0i32;
            for (qv, xv) in qs.iter_mut().zip(xs) {
                let v = (xv * inv).round().clamp(-127.0, 127.0) as i8;
                *qv = v;
                sum += i32::from(v);
            }
            d.push(scale);
            s.push(scale * sum as f32);
        }
        Self { d, s, q }
    }
}

fn dot_q4_1_scalar(
    nb: usize,
    wq: &[u8],
    wd: &[f32],
    wm: &[f32],
    yq: &[i8],
    yd: &[f32],
    ys: &[f32],
) -> f32 {
    let mut acc = 0f32;
    let mut accm = 0f32;
    for b in 0..nb {
        let q = &wq[b * 16..(b + 1) * 16];
        let y = &yq[b * 32..(b + 1) * 32];
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi += i32::from(q[j] & 0x0F) * i32::from(y[j])
                + i32::from(q[j] >> 4) * i32::from(y[j + 16]);
        }
        acc += sumi as f32 * (wd[b] * yd[b]);
        accm += wm[b] * ys[b];
    }
    acc + accm
}

fn dot_q8_0_scalar(nb: usize, wq: &[u8], wd: &[f32], yq: &[i8], yd: &[f32]) -> f32 {
    let mut acc = 0f32;
    for b in 0..nb {
        let mut sumi = 0i32;
        for j in 0..32 {
            sumi += i32::from(wq[b * 32 + j] as i8) * i32::from(yq[b * 32 + j]);
        }
        acc += sumi as f32 * (wd[b] * yd[b]);
    }
    acc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q4_1_avx2(
    nb: usize,
    wq: &[u8],
    wd: &[f32],
    wm: &[f32],
    yq: &[i8],
    yd: &[f32],
    ys: &[f32],
) -> f32 {
    use std::arch::x86_64::*;
    let mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    let mut accm = 0f32;
    for b in 0..nb {
        let q = _mm_loadu_si128(wq.as_ptr().add(b * 16) as *const __m128i);
        let qh = _mm_srli_epi16(q, 4);
        // Low lane: low nibbles (values 0..16 of the block); high lane: high nibbles.
        let v = _mm256_and_si256(_mm256_set_m128i(qh, q), mask);
        let y = _mm256_loadu_si256(yq.as_ptr().add(b * 32) as *const __m256i);
        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(v, y), ones);
        let scale = _mm256_set1_ps(*wd.get_unchecked(b) * *yd.get_unchecked(b));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, acc);
        accm += *wm.get_unchecked(b) * *ys.get_unchecked(b);
    }
    hsum(acc) + accm
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q8_0_avx2(nb: usize, wq: &[u8], wd: &[f32], yq: &[i8], yd: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    for b in 0..nb {
        let x = _mm256_loadu_si256(wq.as_ptr().add(b * 32) as *const __m256i);
        let y = _mm256_loadu_si256(yq.as_ptr().add(b * 32) as *const __m256i);
        // maddubs multiplies unsigned by signed: move x's sign onto y.
        let ax = _mm256_sign_epi8(x, x);
        let sy = _mm256_sign_epi8(y, x);
        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones);
        let scale = _mm256_set1_ps(*wd.get_unchecked(b) * *yd.get_unchecked(b));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, acc);
    }
    hsum(acc)
}

/// A raw output pointer shared with pool workers that write disjoint parts.
pub(crate) struct SharedOut(pub(crate) *mut f32);
// SAFETY: workers only write disjoint elements (see the call sites).
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}
