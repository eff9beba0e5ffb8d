//! Quantized matrix kernels for the formats the default model uses (Q4_1
//! layers, Q8_0 embedding/head), apart from the model's meaning.
//!
//! candle 0.11's Q4_1 dot product is scalar, with an f16 conversion per block,
//! and its Q8_0 SIMD path is only compiled in when the whole build targets AVX.
//! These kernels pick AVX-VNNI or AVX2 at run time (scalar otherwise), keep the
//! weights' block scales as f32 (converted once at load) and split column groups
//! over candle's thread pool. Activations are quantized to 8 bits per 32-value
//! block (as ggml's Q8_1/Q8_0), always by the same scalar code.
//!
//! Layout: at load, weights are repacked eight output columns at a time
//! ("column groups"): for each 32-value block, the bytes of the eight columns are
//! interleaved four at a time, so that one 256-bit register holds four
//! consecutive values of each of the eight columns. A broadcast of four
//! activation bytes then multiplies all eight columns at once, the per-block
//! integer sums land one column per lane (no horizontal reductions), and a
//! weight block is unpacked once and used for several activation rows (the
//! batched decode case).
//!
//! Determinism: the integer block sums are exact (no saturation is possible for
//! these value ranges), whichever instructions compute them. The float part of
//! an output is a fixed sequence per (row, column): for each block in order,
//! `acc = acc + (sumi · (wd · yd) + wm · ys)` (Q4_1) or
//! `acc = acc + sumi · (wd · yd)` (Q8_0), with separate multiplies and adds (no
//! fused multiply-add). The vector paths compute exactly that lane by lane, so
//! AVX-VNNI, AVX2 and scalar give bit-identical results, independent of the
//! batch, the number of rows, the thread count and the machine
//! (`STRATA_KERNEL=scalar|avx2` forces a path, for tests).

use std::sync::OnceLock;

use half::f16;

use crate::error::{EngineError, Result};

const QK: usize = 32;
/// Output columns per repacked group.
const GC: usize = 8;
/// Activation rows processed per pass over a weight block.
const ROWS: usize = 4;

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
    fn qbytes(self) -> usize {
        match self {
            QKind::Q4_1 => 16,
            QKind::Q8_0 => 32,
        }
    }
}

/// A quantized `[n, k]` matrix in kernel layout (column groups, see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct QMatrix {
    kind: QKind,
    n: usize,
    k: usize,
    nb: usize,
    /// Scales, `[group][block][GC]`.
    d: Vec<f32>,
    /// Q4_1 minimums, `[group][block][GC]` (empty for Q8_0).
    m: Vec<f32>,
    /// Q8_0: `128 · Σ q` per block, `[group][block][GC]` (for the unsigned-times-
    /// signed VNNI product of `q` with `y + 128`); empty for Q4_1.
    corr: Vec<i32>,
    /// Quant bytes, `[group][block][GC · qbytes]`, interleaved four bytes per column.
    qs: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Scalar,
    Avx2,
    AvxVnni,
}

fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let forced = std::env::var("STRATA_KERNEL").unwrap_or_default();
        if forced == "scalar" {
            return Isa::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                if forced != "avx2" && is_x86_feature_detected!("avxvnni") {
                    return Isa::AvxVnni;
                }
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    })
}

/// Name of the kernel path in use (for benchmark output).
pub fn kernel_name() -> &'static str {
    match isa() {
        Isa::Scalar => "scalar",
        Isa::Avx2 => "avx2",
        Isa::AvxVnni => "avx-vnni",
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
        let mut corr = if kind == QKind::Q8_0 {
            vec![0i32; slots]
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
                    QKind::Q8_0 => {
                        corr[slot] =
                            128 * src[2..34].iter().map(|&v| i32::from(v as i8)).sum::<i32>();
                        &src[2..34]
                    }
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
            corr,
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
        (self.d.len() + self.m.len() + self.corr.len()) * 4 + self.qs.len()
    }

    /// `x Wᵀ` for `rows` rows of `x` (`rows × k`), giving `rows × n`.
    pub(crate) fn matmul(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let act = Q8Act::quantize(x, rows, self.k, self.kind == QKind::Q8_0);
        let mut out = vec![0f32; rows * self.n];
        let groups = self.n.div_ceil(GC);
        let out_ptr = SharedOut(out.as_mut_ptr());
        let isa = isa();
        let work = |range: std::ops::Range<usize>| {
            let p = &out_ptr;
            let mut tile = [0f32; ROWS * GC];
            for g in range {
                let cols = GC.min(self.n - g * GC);
                let mut r0 = 0;
                while r0 < rows {
                    let nr = ROWS.min(rows - r0);
                    self.group(g, &act, r0, nr, isa, &mut tile);
                    for r in 0..nr {
                        // SAFETY: columns g·GC..g·GC+cols of every row are written
                        // only by the item owning group g, inside `out` (rows · n
                        // values), which outlives the pool call.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                tile.as_ptr().add(r * GC),
                                p.0.add((r0 + r) * self.n + g * GC),
                                cols,
                            )
                        };
                    }
                    r0 += nr;
                }
            }
        };
        if rows * self.n * self.k < 1 << 16 {
            work(0..groups);
        } else {
            candle_core::utils::barrier_pool().execute_chunked(groups, work);
        }
        out
    }

    /// Outputs of column group `g` for activation rows `r0..r0 + nr` (`nr ≤ ROWS`)
    /// into `tile` (`[nr][GC]`).
    fn group(&self, g: usize, act: &Q8Act, r0: usize, nr: usize, isa: Isa, tile: &mut [f32]) {
        let nb = self.nb;
        let sl = g * nb * GC..(g + 1) * nb * GC;
        let qb = self.kind.qbytes();
        let wq = &self.qs[sl.start * qb..sl.end * qb];
        let a = r0 * nb..(r0 + nr) * nb;
        let yq = &act.q[a.start * QK..a.end * QK];
        let wd = &self.d[sl.clone()];
        #[cfg(target_arch = "x86_64")]
        if isa != Isa::Scalar {
            let vnni = isa == Isa::AvxVnni;
            // SAFETY: the ISA was detected at run time; every slice holds the
            // blocks the kernels read (nb blocks of GC columns, nr rows).
            unsafe {
                match self.kind {
                    QKind::Q4_1 => {
                        let wm = &self.m[sl];
                        let (yd, ys) = (&act.d[a.clone()], &act.s[a]);
                        match (vnni, nr) {
                            (true, 4) => q4_1_vnni::<4>(nb, wq, wd, wm, yq, yd, ys, tile),
                            (true, 3) => q4_1_vnni::<3>(nb, wq, wd, wm, yq, yd, ys, tile),
                            (true, 2) => q4_1_vnni::<2>(nb, wq, wd, wm, yq, yd, ys, tile),
                            (true, _) => q4_1_vnni::<1>(nb, wq, wd, wm, yq, yd, ys, tile),
                            (false, 4) => q4_1_avx2::<4>(nb, wq, wd, wm, yq, yd, ys, tile),
                            (false, 3) => q4_1_avx2::<3>(nb, wq, wd, wm, yq, yd, ys, tile),
                            (false, 2) => q4_1_avx2::<2>(nb, wq, wd, wm, yq, yd, ys, tile),
                            (false, _) => q4_1_avx2::<1>(nb, wq, wd, wm, yq, yd, ys, tile),
                        }
                    }
                    QKind::Q8_0 => {
                        let yd = &act.d[a.clone()];
                        if vnni {
                            let corr = &self.corr[sl];
                            let yu = &act.u[a.start * QK..a.end * QK];
                            match nr {
                                4 => q8_0_vnni::<4>(nb, wq, wd, corr, yu, yd, tile),
                                3 => q8_0_vnni::<3>(nb, wq, wd, corr, yu, yd, tile),
                                2 => q8_0_vnni::<2>(nb, wq, wd, corr, yu, yd, tile),
                                _ => q8_0_vnni::<1>(nb, wq, wd, corr, yu, yd, tile),
                            }
                        } else {
                            match nr {
                                4 => q8_0_avx2::<4>(nb, wq, wd, yq, yd, tile),
                                3 => q8_0_avx2::<3>(nb, wq, wd, yq, yd, tile),
                                2 => q8_0_avx2::<2>(nb, wq, wd, yq, yd, tile),
                                _ => q8_0_avx2::<1>(nb, wq, wd, yq, yd, tile),
                            }
                        }
                    }
                }
            }
            return;
        }
        let _ = isa;
        match self.kind {
            QKind::Q4_1 => q4_1_scalar(
                nb,
                nr,
                wq,
                wd,
                &self.m[sl],
                yq,
                &act.d[a.clone()],
                &act.s[a],
                tile,
            ),
            QKind::Q8_0 => q8_0_scalar(nb, nr, wq, wd, yq, &act.d[a], tile),
        }
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
struct Q8Act {
    d: Vec<f32>,
    /// `d · Σq` per block (for Q4_1's minimum term).
    s: Vec<f32>,
    q: Vec<i8>,
    /// `q + 128` as unsigned bytes (for the Q8_0 VNNI product); empty unless asked.
    u: Vec<u8>,
}

impl Q8Act {
    fn quantize(x: &[f32], rows: usize, k: usize, unsigned: bool) -> Self {
        let nb = k / QK;
        let mut d = Vec::with_capacity(rows * nb);
        let mut s = Vec::with_capacity(rows * nb);
        let mut q = vec![0i8; rows * k];
        for (xs, qs) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)) {
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
        let u = if unsigned {
            q.iter().map(|&v| (v as u8) ^ 0x80).collect()
        } else {
            Vec::new()
        };
        Self { d, s, q, u }
    }
}

/// The reference: Q4_1 outputs of one column group for `nr` rows.
#[allow(clippy::too_many_arguments)]
fn q4_1_scalar(
    nb: usize,
    nr: usize,
    wq: &[u8],
    wd: &[f32],
    wm: &[f32],
    yq: &[i8],
    yd: &[f32],
    ys: &[f32],
    tile: &mut [f32],
) {
    for r in 0..nr {
        for c in 0..GC {
            let mut acc = 0f32;
            for b in 0..nb {
                let q = &wq[b * GC * 16..(b + 1) * GC * 16];
                let y = &yq[(r * nb + b) * QK..(r * nb + b + 1) * QK];
                let mut sumi = 0i32;
                for j in 0..4 {
                    for t in 0..4 {
                        let v = q[j * 32 + c * 4 + t];
                        let pos = 4 * j + t;
                        sumi += i32::from(v & 0x0F) * i32::from(y[pos])
                            + i32::from(v >> 4) * i32::from(y[pos + 16]);
                    }
                }
                let slot = b * GC + c;
                let yb = r * nb + b;
                acc += sumi as f32 * (wd[slot] * yd[yb]) + wm[slot] * ys[yb];
            }
            tile[r * GC + c] = acc;
        }
    }
}

/// The reference: Q8_0 outputs of one column group for `nr` rows.
fn q8_0_scalar(
    nb: usize,
    nr: usize,
    wq: &[u8],
    wd: &[f32],
    yq: &[i8],
    yd: &[f32],
    tile: &mut [f32],
) {
    for r in 0..nr {
        for c in 0..GC {
            let mut acc = 0f32;
            for b in 0..nb {
                let q = &wq[b * GC * 32..(b + 1) * GC * 32];
                let y = &yq[(r * nb + b) * QK..(r * nb + b + 1) * QK];
                let mut sumi = 0i32;
                for i in 0..8 {
                    for t in 0..4 {
                        sumi += i32::from(q[i * 32 + c * 4 + t] as i8) * i32::from(y[4 * i + t]);
                    }
                }
                acc += sumi as f32 * (wd[b * GC + c] * yd[r * nb + b]);
            }
            tile[r * GC + c] = acc;
        }
    }
}

/// Generates the Q4_1 group kernel for one ISA; `$sum` turns the eight unpacked
/// weight registers and a row's activation block pointer into the per-column
/// integer block sums.
macro_rules! q4_1_kernel {
    ($name:ident, $features:literal, $sum:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name<const R: usize>(
            nb: usize,
            wq: &[u8],
            wd: &[f32],
            wm: &[f32],
            yq: &[i8],
            yd: &[f32],
            ys: &[f32],
            tile: &mut [f32],
        ) {
            use std::arch::x86_64::*;
            let mask = _mm256_set1_epi8(0x0F);
            let mut acc = [_mm256_setzero_ps(); R];
            for b in 0..nb {
                let base = wq.as_ptr().add(b * GC * 16);
                let mut w = [_mm256_setzero_si256(); 8];
                for j in 0..4 {
                    let v = _mm256_loadu_si256(base.add(j * 32) as *const __m256i);
                    w[j] = _mm256_and_si256(v, mask);
                    w[j + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
                }
                let wd8 = _mm256_loadu_ps(wd.as_ptr().add(b * GC));
                let wm8 = _mm256_loadu_ps(wm.as_ptr().add(b * GC));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let yb = r * nb + b;
                    let y = yq.as_ptr().add(yb * QK) as *const u8;
                    let sumi = $sum(&w, y);
                    let sc = _mm256_mul_ps(wd8, _mm256_set1_ps(*yd.get_unchecked(yb)));
                    let t = _mm256_mul_ps(_mm256_cvtepi32_ps(sumi), sc);
                    let u = _mm256_mul_ps(wm8, _mm256_set1_ps(*ys.get_unchecked(yb)));
                    *acc = _mm256_add_ps(*acc, _mm256_add_ps(t, u));
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(tile.as_mut_ptr().add(r * GC), *acc);
            }
        }
    };
}

/// Four activation bytes at `p` broadcast to every 32-bit lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn bcast4(p: *const u8) -> std::arch::x86_64::__m256i {
    std::arch::x86_64::_mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn q4_sum_avx2(
    w: &[std::arch::x86_64::__m256i; 8],
    y: *const u8,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // Each maddubs lane is at most 2 · 15 · 127, so eight of them fit in i16.
    let mut s = _mm256_maddubs_epi16(w[0], bcast4(y));
    for (i, wi) in w.iter().enumerate().skip(1) {
        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(*wi, bcast4(y.add(4 * i))));
    }
    _mm256_madd_epi16(s, _mm256_set1_epi16(1))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
unsafe fn q4_sum_vnni(
    w: &[std::arch::x86_64::__m256i; 8],
    y: *const u8,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let mut s = _mm256_setzero_si256();
    for (i, wi) in w.iter().enumerate() {
        s = _mm256_dpbusd_avx_epi32(s, *wi, bcast4(y.add(4 * i)));
    }
    s
}

q4_1_kernel!(q4_1_avx2, "avx2", q4_sum_avx2);
q4_1_kernel!(q4_1_vnni, "avx2,avxvnni", q4_sum_vnni);

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn q8_0_avx2<const R: usize>(
    nb: usize,
    wq: &[u8],
    wd: &[f32],
    yq: &[i8],
    yd: &[f32],
    tile: &mut [f32],
) {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let base = wq.as_ptr().add(b * GC * 32);
        let wd8 = _mm256_loadu_ps(wd.as_ptr().add(b * GC));
        for (r, acc) in acc.iter_mut().enumerate() {
            let yb = r * nb + b;
            let y = yq.as_ptr().add(yb * QK) as *const u8;
            let mut sumi = _mm256_setzero_si256();
            for i in 0..8 {
                let w = _mm256_loadu_si256(base.add(i * 32) as *const __m256i);
                // maddubs multiplies unsigned by signed: move w's sign onto y.
                let p = _mm256_maddubs_epi16(
                    _mm256_sign_epi8(w, w),
                    _mm256_sign_epi8(bcast4(y.add(4 * i)), w),
                );
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, ones));
            }
            let sc = _mm256_mul_ps(wd8, _mm256_set1_ps(*yd.get_unchecked(yb)));
            *acc = _mm256_add_ps(*acc, _mm256_mul_ps(_mm256_cvtepi32_ps(sumi), sc));
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        _mm256_storeu_ps(tile.as_mut_ptr().add(r * GC), *acc);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn q8_0_vnni<const R: usize>(
    nb: usize,
    wq: &[u8],
    wd: &[f32],
    corr: &[i32],
    yu: &[u8],
    yd: &[f32],
    tile: &mut [f32],
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let base = wq.as_ptr().add(b * GC * 32);
        let mut w = [_mm256_setzero_si256(); 8];
        for (i, wi) in w.iter_mut().enumerate() {
            *wi = _mm256_loadu_si256(base.add(i * 32) as *const __m256i);
        }
        let wd8 = _mm256_loadu_ps(wd.as_ptr().add(b * GC));
        let c8 = _mm256_loadu_si256(corr.as_ptr().add(b * GC) as *const __m256i);
        for (r, acc) in acc.iter_mut().enumerate() {
            let yb = r * nb + b;
            let y = yu.as_ptr().add(yb * QK);
            // Σ (y + 128) · w − 128 · Σ w = Σ y · w, exactly.
            let mut s = _mm256_setzero_si256();
            for (i, wi) in w.iter().enumerate() {
                s = _mm256_dpbusd_avx_epi32(s, bcast4(y.add(4 * i)), *wi);
            }
            let sumi = _mm256_sub_epi32(s, c8);
            let sc = _mm256_mul_ps(wd8, _mm256_set1_ps(*yd.get_unchecked(yb)));
            *acc = _mm256_add_ps(*acc, _mm256_mul_ps(_mm256_cvtepi32_ps(sumi), sc));
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        _mm256_storeu_ps(tile.as_mut_ptr().add(r * GC), *acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_matrix(kind: QKind, n: usize, k: usize, seed: u64) -> (QMatrix, Vec<u8>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let nb = k / QK;
        let bsize = if kind == QKind::Q4_1 { 20 } else { 34 };
        let mut bytes = Vec::with_capacity(n * nb * bsize);
        for _ in 0..n * nb {
            let d = f16::from_f32(rng.random_range(0.001f32..0.05));
            bytes.extend_from_slice(&d.to_le_bytes());
            if kind == QKind::Q4_1 {
                let m = f16::from_f32(rng.random_range(-0.2f32..0.0));
                bytes.extend_from_slice(&m.to_le_bytes());
                for _ in 0..16 {
                    bytes.push(rng.random());
                }
            } else {
                for _ in 0..32 {
                    bytes.push(rng.random());
                }
            }
        }
        (QMatrix::from_ggml(kind, n, k, &bytes).unwrap(), bytes)
    }

    /// Every kernel path, and every row count, gives the same bits as the scalar
    /// reference; and the reference is close to a float matmul on dequantized rows.
    #[test]
    fn all_paths_are_bit_identical_and_close_to_float() {
        for kind in [QKind::Q4_1, QKind::Q8_0] {
            let (n, k) = (21, 96);
            let (w, _) = random_matrix(kind, n, k, 7);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
            let rows = 7;
            let mut x: Vec<f32> = (0..rows * k)
                .map(|_| rng.random_range(-2f32..2.0))
                .collect();
            x[5] = -127.0 * 0.3; // extremes of the 8-bit range
            let act = Q8Act::quantize(&x, rows, k, true);
            let groups = n.div_ceil(GC);
            let mut isas = vec![Isa::Scalar];
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx2") {
                    isas.push(Isa::Avx2);
                }
                if is_x86_feature_detected!("avxvnni") {
                    isas.push(Isa::AvxVnni);
                }
            }
            let run = |isa: Isa, chunk: usize| {
                let mut out = vec![0f32; rows * n];
                let mut tile = [0f32; ROWS * GC];
                for g in 0..groups {
                    let mut r0 = 0;
                    while r0 < rows {
                        let nr = chunk.min(rows - r0);
                        w.group(g, &act, r0, nr, isa, &mut tile);
                        for r in 0..nr {
                            for c in 0..GC.min(n - g * GC) {
                                out[(r0 + r) * n + g * GC + c] = tile[r * GC + c];
                            }
                        }
                        r0 += nr;
                    }
                }
                out
            };
            let reference = run(Isa::Scalar, 1);
            for &isa in &isas {
                for chunk in 1..=ROWS {
                    let got = run(isa, chunk);
                    for (a, b) in got.iter().zip(&reference) {
                        assert_eq!(a.to_bits(), b.to_bits(), "{kind:?} {isa:?} rows {chunk}");
                    }
                }
            }
            assert_eq!(
                w.matmul(&x, rows)
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
                reference.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            let mut row = vec![0f32; k];
            for r in 0..rows {
                for c in 0..n {
                    w.row(c, &mut row);
                    let exact: f32 = row
                        .iter()
                        .zip(&x[r * k..(r + 1) * k])
                        .map(|(a, b)| a * b)
                        .sum();
                    let got = reference[r * n + c];
                    assert!(
                        (got - exact).abs() < 0.05 * (1.0 + exact.abs()),
                        "{kind:?} {got} vs {exact}"
                    );
                }
            }
        }
    }
}

/// A raw output pointer shared with pool workers that write disjoint parts.
pub(crate) struct SharedOut(pub(crate) *mut f32);
// SAFETY: workers only write disjoint elements (see the call sites).
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}
