//! The x86-64 kernels: AVX2+FMA, and AVX-512 VNNI on 256-bit registers. Each
//! computes one column group (eight output columns, one per 32-bit lane) for
//! `R` activation rows, doing the scalar reference's arithmetic lane by lane:
//! exact integer partial sums, one fused multiply-add per block and lane, the
//! same final tree (see the module doc of `kernels`). Callers must have
//! detected the ISA at run time.

use super::{GC, QK};

/// Four activation bytes at `p` broadcast to every 32-bit lane.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn bcast4(p: *const u8) -> std::arch::x86_64::__m256i {
    std::arch::x86_64::_mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
}

/// `scalar::hsum8` across eight registers, lane by lane (one column per lane).
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
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $q4_1<const R: usize>(
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

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn q4_avx2(w: std::arch::x86_64::__m256i, y: *const u8) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, bcast4(y)), _mm256_set1_epi16(1))
}

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
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn q8_0_avx2<const R: usize>(
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
#[target_feature(enable = "avx2,fma,avx512vnni,avx512vl")]
pub(super) unsafe fn q8_0_vnni<const R: usize>(
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
