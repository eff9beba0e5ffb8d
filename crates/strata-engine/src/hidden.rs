//! Hidden states and their wire encoding.
//!
//! Hidden states cross process boundaries between pipeline shards and from a
//! prover to a verifier. The message is versioned and self-describing:
//!
//! ```text
//! magic "SHS1" | version u8 = 1 | dtype u8 (0 = f32, 1 = f16) | reserved u16 = 0
//! | rows u32 LE | cols u32 LE | rows·cols values, little-endian
//! ```
//!
//! f32 is exact (pipeline shards must reproduce the single-machine tokens bit for
//! bit); f16 halves the size for callers that accept the rounding. Decoding
//! enforces a byte limit before allocating anything.

use half::f16;

use crate::error::{EngineError, Result};

const MAGIC: &[u8; 4] = b"SHS1";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 16;

/// Default upper bound on an encoded hidden-state message (64 MiB: 8k positions
/// of a 2k-wide model in f32).
pub const DEFAULT_MAX_HIDDEN_BYTES: usize = 64 << 20;

/// Element type on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireDType {
    /// IEEE f32, exact.
    F32,
    /// IEEE f16, rounded.
    F16,
}

impl WireDType {
    fn code(self) -> u8 {
        match self {
            WireDType::F32 => 0,
            WireDType::F16 => 1,
        }
    }
    fn size(self) -> usize {
        match self {
            WireDType::F32 => 4,
            WireDType::F16 => 2,
        }
    }
}

/// A row-major matrix of hidden states: one row of `cols` values per position.
#[derive(Debug, Clone, PartialEq)]
pub struct HiddenStates {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl HiddenStates {
    /// Wraps `data` as `rows × cols`; errors when the length does not match.
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(EngineError::InvalidRequest(format!(
                "hidden states of {} values cannot be {rows} x {cols}",
                data.len()
            )));
        }
        Ok(Self { rows, cols, data })
    }
    /// Number of positions.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Width of each position's vector.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
    /// The values, row-major, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }
    /// One position's vector (None when out of range).
    pub fn row(&self, r: usize) -> Option<&[f32]> {
        if r < self.rows {
            Some(&self.data[r * self.cols..(r + 1) * self.cols])
        } else {
            None
        }
    }
    /// Consumes the states, returning the values.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
    /// Rows `[start, start + len)` as a new matrix.
    pub fn slice_rows(&self, start: usize, len: usize) -> Result<Self> {
        let end = start
            .checked_add(len)
            .filter(|e| *e <= self.rows)
            .ok_or_else(|| EngineError::InvalidRequest("row range out of bounds".into()))?;
        Self::new(
            len,
            self.cols,
            self.data[start * self.cols..end * self.cols].to_vec(),
        )
    }
    /// Stacks matrices of equal width on top of each other.
    pub fn concat_rows(parts: &[HiddenStates]) -> Result<Self> {
        let cols = parts.first().map(|p| p.cols).unwrap_or(0);
        let mut data = Vec::new();
        let mut rows = 0;
        for p in parts {
            if p.cols != cols {
                return Err(EngineError::InvalidRequest(
                    "mismatched hidden widths".into(),
                ));
            }
            data.extend_from_slice(&p.data);
            rows += p.rows;
        }
        Self::new(rows, cols, data)
    }

    /// Encodes the states for the wire.
    pub fn encode(&self, dtype: WireDType) -> Result<Vec<u8>> {
        let rows = u32::try_from(self.rows)
            .map_err(|_| EngineError::InvalidRequest("too many rows to encode".into()))?;
        let cols = u32::try_from(self.cols)
            .map_err(|_| EngineError::InvalidRequest("too many columns to encode".into()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + self.data.len() * dtype.size());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(dtype.code());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&rows.to_le_bytes());
        out.extend_from_slice(&cols.to_le_bytes());
        match dtype {
            WireDType::F32 => {
                for v in &self.data {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            WireDType::F16 => {
                for v in &self.data {
                    out.extend_from_slice(&f16::from_f32(*v).to_le_bytes());
                }
            }
        }
        Ok(out)
    }

    /// Decodes a wire message, refusing anything longer than `max_bytes`, with a
    /// header that does not match its length, or with non-finite values.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Self> {
        let bad = |m: String| EngineError::BadHiddenStates(m);
        if bytes.len() > max_bytes {
            return Err(bad(format!(
                "message of {} bytes exceeds the limit of {max_bytes}",
                bytes.len()
            )));
        }
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!(
                "message of {} bytes is shorter than the header",
                bytes.len()
            )));
        }
        if &bytes[0..4] != MAGIC {
            return Err(bad("bad magic".into()));
        }
        if bytes[4] != VERSION {
            return Err(bad(format!("unsupported version {}", bytes[4])));
        }
        let dtype = match bytes[5] {
            0 => WireDType::F32,
            1 => WireDType::F16,
            d => return Err(bad(format!("unknown dtype code {d}"))),
        };
        if bytes[6..8] != [0, 0] {
            return Err(bad("reserved bytes are not zero".into()));
        }
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let rows = word(8) as usize;
        let cols = word(12) as usize;
        let expected = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(dtype.size()))
            .and_then(|n| n.checked_add(HEADER_LEN));
        if expected != Some(bytes.len()) {
            return Err(bad(format!(
                "header says {rows} x {cols} {dtype:?} but the message has {} bytes",
                bytes.len()
            )));
        }
        let body = &bytes[HEADER_LEN..];
        let data: Vec<f32> = match dtype {
            WireDType::F32 => body
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            WireDType::F16 => body
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        };
        if data.iter().any(|v| !v.is_finite()) {
            return Err(bad("non-finite value".into()));
        }
        Self::new(rows, cols, data)
    }
}

/// Canonical commitment hash of hidden states: blake3 over a domain tag, the
/// layer index, the width, then every row's f32 values little-endian. It is built
/// row by row so that incremental decode (one row per step) and a one-shot
/// prefill of the same rows give the same hash.
#[derive(Clone)]
pub struct HiddenHasher {
    hasher: blake3::Hasher,
    cols: usize,
    rows: usize,
}

impl HiddenHasher {
    /// Starts the hash of layer `layer`'s input states of width `cols`.
    pub fn new(layer: u32, cols: usize) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"strata/hidden/v1");
        hasher.update(&layer.to_le_bytes());
        hasher.update(&(cols as u64).to_le_bytes());
        Self {
            hasher,
            cols,
            rows: 0,
        }
    }
    /// Appends rows (a multiple of `cols` values).
    pub fn update(&mut self, rows: &[f32]) {
        // Hash through a stack buffer: one blake3 call per 1 KiB instead of per value.
        let mut buf = [0u8; 1024];
        for chunk in rows.chunks(256) {
            for (i, v) in chunk.iter().enumerate() {
                buf[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
            }
            self.hasher.update(&buf[..chunk.len() * 4]);
        }
        self.rows += rows.len() / self.cols.max(1);
    }
    /// Rows hashed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// The digest (the row count is bound in so that prefixes differ).
    pub fn finalize(&self) -> [u8; 32] {
        let mut h = self.hasher.clone();
        h.update(&(self.rows as u64).to_le_bytes());
        *h.finalize().as_bytes()
    }
    /// Hash of a whole matrix in one go.
    pub fn hash(layer: u32, states: &HiddenStates) -> [u8; 32] {
        let mut h = Self::new(layer, states.cols());
        h.update(states.as_slice());
        h.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roundtrip_f32_is_exact() {
        let h = HiddenStates::new(2, 3, vec![1.0, -2.5, 3.25, 0.0, 1e-7, -1e7]).unwrap();
        let bytes = h.encode(WireDType::F32).unwrap();
        assert_eq!(HiddenStates::decode(&bytes, 1 << 20).unwrap(), h);
    }

    #[test]
    fn malformed_messages_are_errors() {
        let h = HiddenStates::new(1, 2, vec![1.0, 2.0]).unwrap();
        let good = h.encode(WireDType::F32).unwrap();
        assert!(HiddenStates::decode(&good[..10], 1 << 20).is_err());
        assert!(HiddenStates::decode(&good[..good.len() - 1], 1 << 20).is_err());
        assert!(HiddenStates::decode(&good, 8).is_err());
        let mut bad = good.clone();
        bad[5] = 9;
        assert!(HiddenStates::decode(&bad, 1 << 20).is_err());
        let mut huge = good.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HiddenStates::decode(&huge, usize::MAX).is_err());
        let mut nan = good;
        nan[16..20].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(HiddenStates::decode(&nan, 1 << 20).is_err());
    }

    #[test]
    fn incremental_hash_equals_one_shot() {
        let h = HiddenStates::new(3, 2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let mut inc = HiddenHasher::new(7, 2);
        inc.update(&[1.0, 2.0]);
        inc.update(&[3.0, 4.0, 5.0, 6.0]);
        assert_eq!(inc.finalize(), HiddenHasher::hash(7, &h));
        assert_ne!(HiddenHasher::hash(8, &h), HiddenHasher::hash(7, &h));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = HiddenStates::decode(&bytes, 1 << 16);
        }

        #[test]
        fn decode_header_fuzz_never_panics(rows in any::<u32>(), cols in any::<u32>(), dtype in 0u8..3, tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut m = b"SHS1".to_vec();
            m.push(1); m.push(dtype); m.extend_from_slice(&[0, 0]);
            m.extend_from_slice(&rows.to_le_bytes());
            m.extend_from_slice(&cols.to_le_bytes());
            m.extend_from_slice(&tail);
            let _ = HiddenStates::decode(&m, 1 << 16);
        }

        #[test]
        fn roundtrip(rows in 0usize..8, cols in 1usize..8, seed in any::<u64>()) {
            let data: Vec<f32> = (0..rows * cols).map(|i| ((i as u64).wrapping_mul(seed) % 1000) as f32 / 7.0 - 50.0).collect();
            let h = HiddenStates::new(rows, cols, data).unwrap();
            prop_assert_eq!(HiddenStates::decode(&h.encode(WireDType::F32).unwrap(), 1 << 20).unwrap(), h);
        }
    }
}
