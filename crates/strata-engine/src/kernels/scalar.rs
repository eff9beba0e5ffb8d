//! The reference kernels: one column group's outputs computed one value at a
//! time, with the exact arithmetic (and order) the vector kernels reproduce
//! lane by lane; used on CPUs without AVX2 and as the tests' yardstick.

use super::{GC, QK};

/// ggml's order for the eight lane sums of a block dot product:
/// `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
#[inline]
pub(super) fn hsum8(a: &[f32; 8]) -> f32 {
    let s = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

/// The reference: Q4_1 outputs of one column group for `nr` rows.
#[allow(clippy::too_many_arguments)]
pub(super) fn q4_1_scalar(
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
pub(super) fn q8_0_scalar(
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
