//! Quantized matrix kernels for the formats the default model uses (Q4_1
//! layers, Q8_0 embedding/head), apart from the model's meaning.
//!
//! candle 0.11's Q4_1 dot product is scalar, with an f16 conversion per block,
//! and its Q8_0 SIMD path is only compiled in when the whole build targets AVX.
//! These kernels pick AVX-512 VNNI (on 256-bit registers) or AVX2+FMA at run
//! time (scalar otherwise), keep the weights' block scales as f32 (converted once
//! at load) and split column groups over candle's thread pool. Activations are
//! quantized to 8 bits per 32-value block (as ggml's Q8_1/Q8_0), always by the
//! same scalar code.
//!
//! Layout: at load, weights are repacked eight output columns at a time
//! ("column groups"): for each 32-value block, the bytes of the eight columns are
//! interleaved four at a time, so that one 256-bit register holds four
//! consecutive values of each of the eight columns. A broadcast of four
//! activation bytes then multiplies all eight columns at once, so results land
//! one column per lane (no horizontal reductions), and a weight block is
//! unpacked once and used for several activation rows (the batched decode case).
//!
//! Determinism: every output keeps ggml's (and this crate's earlier single-row
//! kernels') arithmetic. Per block, eight exact integer partial sums (values
//! `4l..4l+4`, lane `l`; no saturation is possible for these value ranges,
//! whichever instructions compute them) are each fused-multiply-added with the
//! block scale `wd · yd` into accumulator `l` (the VNNI Q8_0 kernel gets the
//! same integers from offset weights `w + 128` and a `−128 · Σy` correction,
//! see [`q8_0_vnni`]); Q4_1 also sums `wm · ys` apart;
//! at the end the eight accumulators are added in a fixed tree ([`hsum8`]). The
//! vector paths do this lane by lane and the scalar path with `f32::mul_add`, so
//! AVX-512 VNNI, AVX2 and scalar give bit-identical results, independent of the
//! batch, of how many rows a pass takes, of the thread count and of the machine
//! (`STRATA_KERNEL=scalar|avx2` forces a path).

use std::sync::OnceLock;

use half::f16;

use crate::error::{EngineError, Result};

pub(crate) mod attention;

const QK: usize = 32;
/// Output columns per repacked group.
const GC: usize = 8;
/// Most activation rows any kernel processes per pass over a weight block.
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
    /// Quant bytes, `[group][block][GC · qbytes]`, interleaved four bytes per column.
    qs: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Scalar,
    Avx2,
    /// AVX-512 VNNI on 256-bit registers (and the 32 registers of AVX-512VL).
    Avx512Vnni,
}

impl Isa {
    /// Activation rows per pass over a weight block (what fits in registers).
    fn rows_per_pass(self) -> usize {
        match self {
            Isa::Scalar => ROWS,
            Isa::Avx2 => 1,
            Isa::Avx512Vnni => 2,
        }
    }
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
                if forced != "avx2"
                    && is_x86_feature_detected!("avx512vnni")
                    && is_x86_feature_detected!("avx512vl")
                {
                    return Isa::Avx512Vnni;
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
        Isa::Avx512Vnni => "avx512-vnni",
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

    /// `x Wᵀ` for `rows` rows of `x` (`rows × k`), giving `rows × n`.
    pub(crate) fn matmul(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let isa = isa();
        let sums = isa == Isa::Avx512Vnni && self.kind == QKind::Q8_0;
        let act = Q8Act::quantize(x, rows, self.k, sums);
        let mut out = vec![0f32; rows * self.n];
        let groups = self.n.div_ceil(GC);
        let out_ptr = SharedOut(out.as_mut_ptr());
        let work = |range: std::ops::Range<usize>| {
            let p = &out_ptr;
            let mut tile = [0f32; ROWS * GC];
            for g in range {
                let cols = GC.min(self.n - g * GC);
                let mut r0 = 0;
                while r0 < rows {
                    let nr = isa.rows_per_pass().min(rows - r0);
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

    /// Outputs of column group `g` for activation rows `r0..r0 + nr`
    /// (`nr ≤ isa.rows_per_pass()`)
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
            let vnni = isa == Isa::Avx512Vnni;
            // SAFETY: the ISA was detected at run time; every slice holds the
            // blocks the kernels read (nb blocks of GC columns, nr rows; for
            // VNNI Q8_0 also the rows' group sums, which `matmul` asks
            // `quantize` for), and `nr` is at most the kernel's row count (see
            // `rows_per_pass`).
            unsafe {
                match self.kind {
                    QKind::Q4_1 => {
                        let wm = &self.m[sl];
                        let (yd, ys) = (&act.d[a.clone()], &act.s[a]);
                        match (vnni, nr) {
                            (true, 2) => q4_1_vnni::<2>(nb, wq, wd, wm, yq, yd, ys, tile),
                            (true, _) => q4_1_vnni::<1>(nb, wq, wd, wm, yq, yd, ys, tile),
                            (false, _) => q4_1_avx2::<1>(nb, wq, wd, wm, yq, yd, ys, tile),
                        }
                    }
                    QKind::Q8_0 => {
                        // The group sums exist only when quantized for VNNI.
                        let yc = if vnni {
                            &act.c[a.start * 8..a.end * 8]
                        } else {
                            &[]
                        };
                        let yd = &act.d[a];
                        match (vnni, nr) {
                            (true, 2) => q8_0_vnni::<2>(nb, wq, wd, yq, yd, yc, tile),
                            (true, _) => q8_0_vnni::<1>(nb, wq, wd, yq, yd, yc, tile),
                            (false, _) => q8_0_avx2::<1>(nb, wq, wd, yq, yd, tile),
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
    /// When asked for: `−128 · (q[4l] + … + q[4l + 3])` for the eight
    /// four-value groups `l` of each block (the VNNI Q8_0 kernel's offset
    /// correction), `[row · block][8]`; empty otherwise.
    c: Vec<i32>,
}

impl Q8Act {
    fn quantize(x: &[f32], rows: usize, k: usize, group_sums: bool) -> Self {
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

/// ggml's order for the eight lane sums of a block dot product:
/// `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
#[inline]
fn hsum8(a: &[f32; 8]) -> f32 {
    let s = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (s[0] + s[2]) + (s[1] + s[3])
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
            let mut acc = [0f32; 8];
            let mut accm = 0f32;
            for b in 0..nb {
                let q = &wq[b * GC * 16..(b + 1) * GC * 16];
                let y = &yq[(r * nb + b) * QK..(r * nb + b + 1) * QK];
                let slot = b * GC + c;
                let yb = r * nb + b;
                let scale = wd[slot] * yd[yb];
                for (l, acc) in acc.iter_mut().enumerate() {
                    // Lane l holds values 4l..4l+4 of the block.
                    let (j, shift) = (l % 4, if l < 4 { 0 } else { 4 });
                    let mut p = 0i32;
                    for t in 0..4 {
                        let v = (q[j * 32 + c * 4 + t] >> shift) & 0x0F;
                        p += i32::from(v) * i32::from(y[4 * l + t]);
                    }
                    *acc = (p as f32).mul_add(scale, *acc);
                }
                accm += wm[slot] * ys[yb];
            }
            tile[r * GC + c] = hsum8(&acc) + accm;
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
            let mut acc = [0f32; 8];
            for b in 0..nb {
                let q = &wq[b * GC * 32..(b + 1) * GC * 32];
                let y = &yq[(r * nb + b) * QK..(r * nb + b + 1) * QK];
                let scale = wd[b * GC + c] * yd[r * nb + b];
                for (l, acc) in acc.iter_mut().enumerate() {
                    let mut p = 0i32;
                    for t in 0..4 {
                        p += i32::from(q[l * 32 + c * 4 + t] as i8) * i32::from(y[4 * l + t]);
                    }
                    *acc = (p as f32).mul_add(scale, *acc);
                }
            }
            tile[r * GC + c] = hsum8(&acc);
        }
    }
}

/// Four activation bytes at `p` broadcast to every 32-bit lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn bcast4(p: *const u8) -> std::arch::x86_64::__m256i {
    std::arch::x86_64::_mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
}

/// [`hsum8`] across eight registers, lane by lane (one column per lane).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn hsum8_cols(a: &[std::arch::x86_64::__m256; 8]) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let s0 = _mm256_add_ps(a[0], a[4]);
    let s1 = _mm256_add_ps(a[1], a[5]);
    let s2 = _mm256_add_ps(a[2], a[6]);
    let s3 = _mm256_add_ps(a[3], a[7]);
    _mm256_add_ps(_mm256_add_ps(s0, s2), _mm256_add_ps(s1, s3))
}

/// Generates the Q4_1 group kernel for one ISA. `$q4` gives the eight-column
/// integer sums of four unsigned weight bytes times four broadcast activation
/// bytes.
macro_rules! q4_1_kernel {
    ($q4_1:ident, $features:literal, $q4:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $q4_1<const R: usize>(
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
            let mut acc = [[_mm256_setzero_ps(); 8]; R];
            let mut accm = [_mm256_setzero_ps(); R];
            for b in 0..nb {
                let base = wq.as_ptr().add(b * GC * 16);
                let wd8 = _mm256_loadu_ps(wd.as_ptr().add(b * GC));
                let wm8 = _mm256_loadu_ps(wm.as_ptr().add(b * GC));
                let mut sc = [_mm256_setzero_ps(); R];
                for r in 0..R {
                    let yb = r * nb + b;
                    sc[r] = _mm256_mul_ps(wd8, _mm256_set1_ps(*yd.get_unchecked(yb)));
                    let u = _mm256_mul_ps(wm8, _mm256_set1_ps(*ys.get_unchecked(yb)));
                    accm[r] = _mm256_add_ps(accm[r], u);
                }
                for l in 0..8 {
                    let v = _mm256_loadu_si256(base.add((l % 4) * 32) as *const __m256i);
                    let w = if l < 4 {
                        _mm256_and_si256(v, mask)
                    } else {
                        _mm256_and_si256(_mm256_srli_epi16(v, 4), mask)
                    };
                    for r in 0..R {
                        let y = yq.as_ptr().add((r * nb + b) * QK + 4 * l) as *const u8;
                        let p = $q4(w, y);
                        acc[r][l] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc[r], acc[r][l]);
                    }
                }
            }
            for r in 0..R {
                let v = _mm256_add_ps(hsum8_cols(&acc[r]), accm[r]);
                _mm256_storeu_ps(tile.as_mut_ptr().add(r * GC), v);
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn q4_avx2(w: std::arch::x86_64::__m256i, y: *const u8) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, bcast4(y)), _mm256_set1_epi16(1))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn q8_avx2(
    aw: std::arch::x86_64::__m256i,
    w: std::arch::x86_64::__m256i,
    y: *const u8,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // maddubs multiplies unsigned by signed: move w's sign onto y.
    let sy = _mm256_sign_epi8(bcast4(y), w);
    _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sy), _mm256_set1_epi16(1))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
#[inline]
unsafe fn q4_vnni(w: std::arch::x86_64::__m256i, y: *const u8) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, bcast4(y))
}

q4_1_kernel!(q4_1_avx2, "avx2,fma", q4_avx2);
q4_1_kernel!(q4_1_vnni, "avx2,fma,avx512vnni,avx512vl", q4_vnni);

/// Q8_0 outputs of one column group for `R` rows (AVX2).
// Row and lane indices address several arrays in step.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_0_avx2<const R: usize>(
    nb: usize,
    wq: &[u8],
    wd: &[f32],
    yq: &[i8],
    yd: &[f32],
    tile: &mut [f32],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 8]; R];
    for b in 0..nb {
        let base = wq.as_ptr().add(b * GC * 32);
        let wd8 = _mm256_loadu_ps(wd.as_ptr().add(b * GC));
        let mut sc = [_mm256_setzero_ps(); R];
        for r in 0..R {
            sc[r] = _mm256_mul_ps(wd8, _mm256_set1_ps(*yd.get_unchecked(r * nb + b)));
        }
        for l in 0..8 {
            let w = _mm256_loadu_si256(base.add(l * 32) as *const __m256i);
            let aw = _mm256_sign_epi8(w, w);
            for r in 0..R {
                let y = yq.as_ptr().add((r * nb + b) * QK + 4 * l) as *const u8;
                let p = q8_avx2(aw, w, y);
                acc[r][l] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc[r], acc[r][l]);
            }
        }
    }
    for r in 0..R {
        _mm256_storeu_ps(tile.as_mut_ptr().add(r * GC), hsum8_cols(&acc[r]));
    }
}

/// Q8_0 outputs of one column group for `R` rows (AVX-512 VNNI). `vpdpbusd`
/// multiplies unsigned by signed bytes, so the weights are offset to
/// `w + 128` (a flip of the top bit) and the accumulator starts at the
/// activations' `−128 · Σy` of the same four values (`yc`): the lane sum is
/// exactly the signed `Σ w·y` (no saturation: `|Σ| ≤ 4 · 255 · 127`).
// Row and lane indices address several arrays in step.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512vnni,avx512vl")]
unsafe fn q8_0_vnni<const R: usize>(
    nb: usize,
    wq: &[u8],
    wd: &[f32],
    yq: &[i8],
    yd: &[f32],
    yc: &[i32],
    tile: &mut [f32],
) {
    use std::arch::x86_64::*;
    let flip = _mm256_set1_epi8(-128);
    let mut acc = [[_mm256_setzero_ps(); 8]; R];
    for b in 0..nb {
        let base = wq.as_ptr().add(b * GC * 32);
        let wd8 = _mm256_loadu_ps(wd.as_ptr().add(b * GC));
        let mut sc = [_mm256_setzero_ps(); R];
        for r in 0..R {
            sc[r] = _mm256_mul_ps(wd8, _mm256_set1_ps(*yd.get_unchecked(r * nb + b)));
        }
        for l in 0..8 {
            let wu = _mm256_xor_si256(_mm256_loadu_si256(base.add(l * 32) as *const __m256i), flip);
            for r in 0..R {
                let y = yq.as_ptr().add((r * nb + b) * QK + 4 * l) as *const u8;
                let c = _mm256_set1_epi32(*yc.get_unchecked((r * nb + b) * 8 + l));
                let p = _mm256_dpbusd_epi32(c, wu, bcast4(y));
                acc[r][l] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc[r], acc[r][l]);
            }
        }
    }
    for r in 0..R {
        _mm256_storeu_ps(tile.as_mut_ptr().add(r * GC), hsum8_cols(&acc[r]));
    }
}

/// A raw output pointer shared with pool workers that write disjoint parts.
pub(crate) struct SharedOut(pub(crate) *mut f32);
// SAFETY: workers only write disjoint elements (see the call sites).
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}

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
                if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                    isas.push(Isa::Avx512Vnni);
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
                for chunk in 1..=isa.rows_per_pass() {
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
            // Row 0 holds the outlier (coarse 8-bit steps in its block): skip it.
            for r in 1..rows {
                for c in 0..n {
                    w.row(c, &mut row);
                    let xr = &x[r * k..(r + 1) * k];
                    let exact: f32 = row.iter().zip(xr).map(|(a, b)| a * b).sum();
                    let mag: f32 = row.iter().zip(xr).map(|(a, b)| (a * b).abs()).sum();
                    let got = reference[r * n + c];
                    // 8-bit activations: error well under 1 % of Σ|w·x|.
                    assert!(
                        (got - exact).abs() < 0.01 * mag + 1e-4,
                        "{kind:?} {got} vs {exact} (Σ|w·x| {mag})"
                    );
                }
            }
        }
    }
}
