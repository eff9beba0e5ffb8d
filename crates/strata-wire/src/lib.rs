//! Strata's wire types, shared by the node, the gateway, the relayer and the
//! CLI: client-signed payment [`Voucher`]s, node-signed task [`Receipt`]s,
//! [`Capacity`] announcements and the node [`task`] protocol.
//!
//! Everything that crosses a process boundary is Borsh-encoded (one canonical
//! byte string per value, so hashes and signatures are well defined) and read
//! back with [`decode`], which refuses oversized input before parsing and
//! trailing bytes after it.
#![warn(missing_docs)]

pub mod api;
pub mod audit;
pub mod capacity;
pub mod codec;
pub mod protocols;
pub mod receipt;
pub mod sampling;
pub mod task;
pub mod voucher;

pub use capacity::Capacity;
pub use codec::{decode, encode, WireError};
pub use receipt::{tokens_hash, Receipt, ReceiptBody, MAX_RECEIPT_BYTES};
pub use sampling::Sampling;
pub use voucher::Voucher;

/// Hex of 32 bytes, as every Strata tool prints ids and hashes.
pub fn hex32(bytes: &[u8; 32]) -> String {
    hex::encode(bytes)
}

/// Parses 64 hex characters into 32 bytes.
pub fn parse_hex32(s: &str) -> Result<[u8; 32], WireError> {
    let v = hex::decode(s.trim()).map_err(|e| WireError::Invalid(format!("bad hex: {e}")))?;
    v.try_into()
        .map_err(|_| WireError::Invalid("expected 32 bytes (64 hex characters)".into()))
}
