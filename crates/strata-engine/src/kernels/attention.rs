//! The attention of one position's query heads that share a kv head, over that
//! head's cached keys and values (the inner loop of the model's attention).
//!
//! Determinism: the AVX2 paths do exactly the scalar arithmetic, lane by lane
//! (separate multiplies and adds, never fused; every lane an independent
//! accumulator; the same fixed reduction tree), so both give the same bits.
//! They only change which independent sums are in flight together: four key
//! positions' dot products, and all of a head's output dimensions while
//! walking the cached values once. `STRATA_KERNEL=scalar` selects the scalar
//! path.

use super::{isa, Isa};

/// Positions whose scores are computed together.
const KEYS: usize = 4;

/// The query heads `qs` (`group` heads of `hd` values, side by side) attend to
/// positions `0..n` of one kv head: keys at `k[j · stride + off..][..hd]`,
/// values likewise in `v`. Writes the `group · hd` outputs to `dst`; `scores`
/// is scratch space reused between calls.
///
/// Per head: `s_j = dot(q, k_j) · scale` (`ops::dot`'s arithmetic), softmax
/// with the maximum subtracted, then `0 + Σ_j (e_j · (1 / Σe)) · v_j`
/// accumulated in position order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    qs: &[f32],
    k: &[f32],
    v: &[f32],
    stride: usize,
    off: usize,
    hd: usize,
    n: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    dst: &mut [f32],
) {
    // Both the kernels' vector paths imply AVX2.
    let simd = cfg!(target_arch = "x86_64") && isa() != Isa::Scalar;
    let group = qs.len() / hd;
    scores.clear();
    scores.resize(group * n + group, 0.0);
    // Scores, head after head, then each head's maximum (later 1/sum).
    let (scores, max) = scores.split_at_mut(group * n);
    max.fill(f32::NEG_INFINITY);
    let mut j = 0;
    while j < n {
        let m = KEYS.min(n - j);
        // Short of four positions at the end: repeat the last one (its extra
        // results are dropped).
        let ks: [&[f32]; KEYS] = std::array::from_fn(|i| {
            let p = (j + i.min(m - 1)) * stride + off;
            &k[p..p + hd]
        });
        for (hh, q) in qs.chunks_exact(hd).enumerate() {
            #[cfg(target_arch = "x86_64")]
            let s4 = if simd {
                // SAFETY: AVX2 was detected at run time (`isa`).
                unsafe { dot_keys_avx2(q, &ks) }
            } else {
                dot_keys(q, &ks)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let s4 = dot_keys(q, &ks);
            for (i, s) in s4.iter().take(m).enumerate() {
                let s = s * scale;
                max[hh] = max[hh].max(s);
                scores[hh * n + j + i] = s;
            }
        }
        j += m;
    }
    for (hh, sc) in scores.chunks_exact_mut(n).enumerate() {
        let mut sum = 0f32;
        for s in sc.iter_mut() {
            *s = (*s - max[hh]).exp();
            sum += *s;
        }
        max[hh] = 1.0 / sum;
    }
    let inv = max;
    for (hh, d) in dst.chunks_exact_mut(hd).enumerate() {
        let p = &scores[hh * n..(hh + 1) * n];
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: AVX2 was detected at run time (`isa`).
            unsafe { weighted_values_avx2(p, inv[hh], v, stride, off, d) };
            continue;
        }
        weighted_values(p, inv[hh], v, stride, off, d);
    }
}

/// `d = 0 + Σ_j (p_j · inv) · v_j`, positions in order (`v_j` at
/// `v[j · stride + off..][..d.len()]`).
fn weighted_values(p: &[f32], inv: f32, v: &[f32], stride: usize, off: usize, d: &mut [f32]) {
    d.fill(0.0);
    for (j, &pj) in p.iter().enumerate() {
        let w = pj * inv;
        let vj = &v[j * stride + off..j * stride + off + d.len()];
        for (d, vv) in d.iter_mut().zip(vj) {
            *d += w * vv;
        }
    }
}

/// [`weighted_values`] with the output dimensions held in registers, up to
/// 64 at a time, across the walk over positions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn weighted_values_avx2(
    p: &[f32],
    inv: f32,
    v: &[f32],
    stride: usize,
    off: usize,
    d: &mut [f32],
) {
    use std::arch::x86_64::*;
    let hd = d.len();
    // Every v_j read below lies inside `v[j · stride + off..][..hd]`.
    assert!(p.is_empty() || (p.len() - 1) * stride + off + hd <= v.len());
    let mut c0 = 0;
    while c0 + 64 <= hd {
        let mut acc = [_mm256_setzero_ps(); 8];
        for (j, &pj) in p.iter().enumerate() {
            let w = _mm256_set1_ps(pj * inv);
            let vj = v.as_ptr().add(j * stride + off + c0);
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm256_add_ps(*a, _mm256_mul_ps(w, _mm256_loadu_ps(vj.add(8 * i))));
            }
        }
        for (i, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(d.as_mut_ptr().add(c0 + 8 * i), *a);
        }
        c0 += 64;
    }
    while c0 + 8 <= hd {
        let mut a = _mm256_setzero_ps();
        for (j, &pj) in p.iter().enumerate() {
            let w = _mm256_set1_ps(pj * inv);
            let vj = v.as_ptr().add(j * stride + off + c0);
            a = _mm256_add_ps(a, _mm256_mul_ps(w, _mm256_loadu_ps(vj)));
        }
        _mm256_storeu_ps(d.as_mut_ptr().add(c0), a);
        c0 += 8;
    }
    if c0 < hd {
        let tail = &mut d[c0..];
        weighted_values(p, inv, v, stride, off + c0, tail);
    }
}

/// The dot product of `q` with each of `ks` (each as long as `q`), with the
/// arithmetic of `ops::dot`: eight lane accumulators over chunks of eight,
/// then a fixed tree, then the tail.
fn dot_keys(q: &[f32], ks: &[&[f32]; KEYS]) -> [f32; KEYS] {
    std::array::from_fn(|i| crate::ops::dot(q, ks[i]))
}

/// [`dot_keys`] with the four accumulator sets in flight together.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_keys_avx2(q: &[f32], ks: &[&[f32]; KEYS]) -> [f32; KEYS] {
    use std::arch::x86_64::*;
    let len = q.len();
    let full = len / 8 * 8;
    assert!(ks.iter().all(|k| k.len() == len));
    let mut acc = [_mm256_setzero_ps(); KEYS];
    let mut c = 0;
    while c < full {
        let x = _mm256_loadu_ps(q.as_ptr().add(c));
        for (a, k) in acc.iter_mut().zip(ks) {
            *a = _mm256_add_ps(*a, _mm256_mul_ps(x, _mm256_loadu_ps(k.as_ptr().add(c))));
        }
        c += 8;
    }
    let mut out = [0f32; KEYS];
    for ((o, a), k) in out.iter_mut().zip(&acc).zip(ks) {
        // [a0+a4, a1+a5, a2+a6, a3+a7], then ((s0+s1) + (s2+s3)).
        let s = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps(*a, 1));
        let t = _mm_add_ps(s, _mm_shuffle_ps(s, s, 0b10_11_00_01));
        let u = _mm_add_ss(t, _mm_movehl_ps(t, t));
        let mut tail = 0f32;
        for (x, y) in q[full..].iter().zip(&k[full..]) {
            tail += x * y;
        }
        *o = _mm_cvtss_f32(u) + tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The original loop of `Model::attention` (position-major value sums).
    #[allow(clippy::too_many_arguments)]
    fn reference(
        qs: &[f32],
        k: &[f32],
        v: &[f32],
        stride: usize,
        off: usize,
        hd: usize,
        n: usize,
        scale: f32,
    ) -> Vec<f32> {
        let group = qs.len() / hd;
        let mut scores = vec![0f32; group * n];
        let mut max = vec![f32::NEG_INFINITY; group];
        for j in 0..n {
            let kj = &k[j * stride + off..j * stride + off + hd];
            for (hh, q) in qs.chunks_exact(hd).enumerate() {
                let s = crate::ops::dot(q, kj) * scale;
                max[hh] = max[hh].max(s);
                scores[hh * n + j] = s;
            }
        }
        for (hh, sc) in scores.chunks_exact_mut(n).enumerate() {
            let mut sum = 0f32;
            for s in sc.iter_mut() {
                *s = (*s - max[hh]).exp();
                sum += *s;
            }
            max[hh] = 1.0 / sum;
        }
        let mut dst = vec![0f32; group * hd];
        for j in 0..n {
            let vj = &v[j * stride + off..j * stride + off + hd];
            for (hh, d) in dst.chunks_exact_mut(hd).enumerate() {
                let p = scores[hh * n + j] * max[hh];
                for (d, vv) in d.iter_mut().zip(vj) {
                    *d += p * vv;
                }
            }
        }
        dst
    }

    /// The dispatched path gives the bits of the original loop, and the AVX2
    /// pieces those of the scalar ones, for head widths with and without a
    /// remainder after the 64- and 8-wide chunks.
    #[test]
    fn attend_matches_reference_bits() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for (hd, group, n) in [(64, 3, 1), (64, 3, 77), (128, 2, 6), (44, 2, 33), (6, 1, 5)] {
            let stride = hd * 3 + 8;
            let off = hd + 3;
            let k: Vec<f32> = (0..n * stride)
                .map(|_| rng.random_range(-3f32..3.0))
                .collect();
            let v: Vec<f32> = (0..n * stride)
                .map(|_| rng.random_range(-3f32..3.0))
                .collect();
            let qs: Vec<f32> = (0..group * hd)
                .map(|_| rng.random_range(-3f32..3.0))
                .collect();
            let scale = 1.0 / (hd as f32).sqrt();
            let want = reference(&qs, &k, &v, stride, off, hd, n, scale);
            let mut scores = Vec::new();
            let mut got = vec![0f32; group * hd];
            attend(
                &qs,
                &k,
                &v,
                stride,
                off,
                hd,
                n,
                scale,
                &mut scores,
                &mut got,
            );
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "dispatched hd {hd} n {n}");
            // The scalar pieces against their AVX2 forms.
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") {
                let ks: [&[f32]; KEYS] =
                    std::array::from_fn(|i| &k[i.min(n - 1) * stride + off..][..hd]);
                let q = &qs[..hd];
                // SAFETY: AVX2 was detected just above.
                let fast = unsafe { dot_keys_avx2(q, &ks) };
                assert_eq!(bits(&fast), bits(&dot_keys(q, &ks)), "dots hd {hd}");
                let p: Vec<f32> = (0..n).map(|_| rng.random_range(0f32..1.0)).collect();
                let mut slow = vec![0f32; hd];
                let mut fast = vec![0f32; hd];
                weighted_values(&p, 0.7, &v, stride, off, &mut slow);
                // SAFETY: AVX2 was detected just above.
                unsafe { weighted_values_avx2(&p, 0.7, &v, stride, off, &mut fast) };
                assert_eq!(bits(&fast), bits(&slow), "values hd {hd}");
            }
        }
    }
}
