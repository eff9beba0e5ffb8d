//! Size-limited Borsh encoding for everything read from the network.

use borsh::{BorshDeserialize, BorshSerialize};

/// Errors of decoding and validating wire values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The input is larger than the caller allows.
    #[error("message of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Bytes given.
        len: usize,
        /// Limit.
        limit: usize,
    },
    /// The bytes are not a valid encoding (or have trailing bytes).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Well-formed but wrong: bad signature, unknown version, inconsistent fields.
    #[error("invalid: {0}")]
    Invalid(String),
}

/// Canonical bytes of a value.
pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    // Writing into a Vec cannot fail.
    borsh::to_vec(value).unwrap_or_default()
}

/// Decodes `bytes` as one `T`, refusing more than `limit` bytes up front and
/// any bytes left over. Borsh bounds each length prefix by the remaining
/// input, so a hostile length cannot make it allocate beyond `limit`.
pub fn decode<T: BorshDeserialize>(bytes: &[u8], limit: usize) -> Result<T, WireError> {
    if bytes.len() > limit {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    borsh::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}
