//! The numeric primitives the model, the kernels and the commitments share:
//! the one place that fixes how a vector is summed, normalized and activated.
//! This module depends on nothing else in the crate.
//!
//! # Determinism contract
//!
//! Every value the engine produces (hidden states, logits, sketches) is
//! computed by the same sequence of floating-point operations whatever the
//! batch composition, the number of rows per call (a whole prompt or one
//! decoded token), the thread count or the kernel ISA (scalar, AVX2, AVX-512
//! VNNI). That is what lets a verifier re-run one layer on its own
//! (`check_layer`) and get, bit for bit, what the node computed inside
//! a batch. The functions here keep their part of it:
//!
//! - each works row by row, and a row's result depends on that row alone;
//! - [`dot`] sums in an order fixed by the length alone (eight lane
//!   accumulators over chunks of eight, a fixed tree, then the tail); code that
//!   needs the same dot product faster reproduces this order lane by lane
//!   (`kernels::attention`) instead of summing its own way;
//! - nothing relies on fused multiply-add: Rust never contracts `a * b + c`,
//!   so auto-vectorized and scalar code give the same bits;
//! - `+ − × ÷` and `sqrt` are correctly rounded (IEEE 754), so identical on
//!   every machine. `exp` ([`silu`], the softmax) and the RoPE table's
//!   `powf`, `sin` and `cos` come from the platform's math library: machines
//!   with another libm may differ in the last bit, which the verifier's
//!   tolerance absorbs but a bit-for-bit comparison would not.
//!
//! The tests pin the output bits of fixed inputs. A change here that moves a
//! single bit fails them, on purpose: nodes running the old and the new code
//! would no longer agree bit for bit.

/// Dot product with eight fixed accumulators: vectorizes, and the summation
/// order never depends on anything but the length.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// RMS norm of each `gain.len()`-wide row of `x`, times the learned gain.
pub(crate) fn rms_norm(x: &[f32], gain: &[f32], eps: f32) -> Vec<f32> {
    let d = gain.len();
    let mut out = vec![0f32; x.len()];
    for (o, row) in out.chunks_mut(d).zip(x.chunks(d)) {
        let ms = dot(row, row) / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, v), g) in o.iter_mut().zip(row).zip(gain) {
            *o = v * inv * g;
        }
    }
    out
}

/// `x += y`, element by element (the residual connections).
pub(crate) fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// SiLU (swish): `x · σ(x)`.
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Inputs from formulas with only correctly rounded operations (an integer
    // pattern divided by 7 or 13), so they are the same on every machine; the
    // divisions fill the mantissas, so sums round and their order matters.
    fn a(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 + 11) % 101) as f32 / 7.0 - 7.0)
            .collect()
    }

    fn b(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 53 + 7) % 97) as f32 / 13.0 - 3.5)
            .collect()
    }

    /// FNV-1a over the values' bit patterns.
    fn fingerprint(v: &[f32]) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for x in v {
            for byte in x.to_bits().to_le_bytes() {
                h = (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    }

    // The constants below were printed by the code before it moved here from
    // `model.rs`, so they also prove the move changed nothing.

    #[test]
    fn dot_bits_are_pinned() {
        for (n, bits) in [
            (7, 0x415b_13ae),
            (8, 0x41b2_db6c),
            (576, 0x4385_68cb),
            (1536, 0x4323_1955),
        ] {
            let got = dot(&a(n), &b(n));
            assert_eq!(got.to_bits(), bits, "dot of length {n}: {got}");
        }
    }

    /// The pins can tell summation orders apart: a plain left-to-right sum of
    /// the same products gives other bits.
    #[test]
    fn dot_pins_detect_another_summation_order() {
        for (n, bits) in [(576, 0x4385_68cb), (1536, 0x4323_1955)] {
            let naive: f32 = a(n).iter().zip(b(n)).map(|(x, y)| x * y).sum();
            assert_ne!(naive.to_bits(), bits, "length {n}");
        }
    }

    #[test]
    fn rms_norm_bits_are_pinned() {
        // Two rows of 576 (the default model's width); the second row's output
        // must not depend on the first.
        let x = a(2 * 576);
        let gain: Vec<f32> = b(576).iter().map(|g| 1.0 + g / 8.0).collect();
        let out = rms_norm(&x, &gain, 1e-5);
        assert_eq!(fingerprint(&out), 0x4499_1dce_302f_a69e);
        assert_eq!(rms_norm(&x[576..], &gain, 1e-5), out[576..]);
    }

    #[test]
    fn add_in_place_is_elementwise() {
        let mut x = a(9);
        add_in_place(&mut x, &b(9));
        let want: Vec<f32> = a(9).iter().zip(b(9)).map(|(p, q)| p + q).collect();
        assert_eq!(x, want);
    }

    // `exp` is the platform libm's (see the module doc): pinned where the
    // constant was generated.
    #[test]
    #[cfg_attr(
        not(all(target_os = "linux", target_env = "gnu")),
        ignore = "silu's exp comes from the platform libm; pinned on linux-gnu"
    )]
    fn silu_bits_are_pinned() {
        let x: Vec<f32> = (0..801).map(|i| (i as f32 - 400.0) / 23.0).collect();
        let out: Vec<f32> = x.iter().map(|&v| silu(v)).collect();
        assert_eq!(fingerprint(&out), 0xc4a6_5b89_4577_36bf);
        assert_eq!(silu(1.5).to_bits(), 0x3f9c_f96b);
    }
}
