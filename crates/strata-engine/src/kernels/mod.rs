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
//! see `x86::q8_0_vnni`); Q4_1 also sums `wm · ys` apart;
//! at the end the eight accumulators are added in a fixed tree (`scalar::hsum8`). The
//! vector paths do this lane by lane and the scalar path with `f32::mul_add`, so
//! AVX-512 VNNI, AVX2 and scalar give bit-identical results, independent of the
//! batch, of how many rows a pass takes, of the thread count and of the machine
//! (`STRATA_KERNEL=scalar|avx2` forces a path).
//!
//! Files: `repack` (the weights' column-group layout and the activations'
//! 8-bit blocks), `scalar` (the reference kernels), `x86` (AVX2 and AVX-512
//! VNNI), `attention` (the attention inner loop); this file picks the ISA,
//! runs a matmul's column groups on the thread pool, and lends the pool to
//! other loops of independent outputs ([`for_each_chunk`]).

use std::sync::OnceLock;

pub(crate) mod attention;
mod repack;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub(crate) use repack::{QKind, QMatrix};

use repack::Q8Act;
use scalar::{q4_1_scalar, q8_0_scalar};
#[cfg(target_arch = "x86_64")]
use x86::{q4_1_avx2, q4_1_vnni, q8_0_avx2, q8_0_vnni};

const QK: usize = 32;
/// Output columns per repacked group.
const GC: usize = 8;
/// Most activation rows any kernel processes per pass over a weight block.
const ROWS: usize = 4;

/// The instruction set a kernel path uses.
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

/// The best path this CPU supports, unless `STRATA_KERNEL` asks for a lesser
/// one; decided once per process.
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
}

/// A raw output pointer shared with pool workers that write disjoint parts.
struct SharedOut(*mut f32);
// SAFETY: workers only write disjoint elements (see the call sites).
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}

/// Fills `out` chunk by chunk (`span` values each): `fill(i, chunk_i, scratch)`
/// for every chunk `i`, on candle's thread pool when `parallel`, with one
/// scratch value per worker. Each chunk is computed the same way wherever it
/// runs, so the result does not depend on `parallel` or the thread count.
pub(crate) fn for_each_chunk<S: Default>(
    out: &mut [f32],
    span: usize,
    parallel: bool,
    fill: impl Fn(usize, &mut [f32], &mut S) + Sync,
) {
    if !parallel {
        let mut scratch = S::default();
        for (item, dst) in out.chunks_mut(span).enumerate() {
            fill(item, dst, &mut scratch);
        }
        return;
    }
    let n_items = out.len() / span;
    let out_ptr = SharedOut(out.as_mut_ptr());
    candle_core::utils::barrier_pool().execute_chunked(n_items, |range| {
        let mut scratch = S::default();
        let p = &out_ptr;
        for item in range {
            // SAFETY: each item writes only its own `span` values at
            // `item · span`, inside `out` (at least n_items · span values), and
            // the pool hands every item to exactly one worker; `out` outlives
            // the call.
            let dst = unsafe { std::slice::from_raw_parts_mut(p.0.add(item * span), span) };
            fill(item, dst, &mut scratch);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
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
