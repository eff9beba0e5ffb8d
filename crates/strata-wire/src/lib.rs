//! Strata's catalogue of what crosses a process boundary: every message the
//! node, gateway, verifier, relayer and CLI exchange, its encoding, its size
//! limit, and the request-response protocol or gossip topic that carries it
//! ([`protocols`]; each message's limit is checked against its carrier's when
//! compiling).
//!
//! # Formats, and why there are several
//!
//! - **Borsh**, for the protocol's own messages: client-signed [`Voucher`]s,
//!   node-signed [`Receipt`]s, [`Capacity`] announcements, the node [`task`]
//!   protocol, the pipeline [`hop`] protocol, trainers' [`policy`] updates and the verification network's [`audit`] messages (opening
//!   requests and responses, signed audit reports, verdict votes). Borsh has
//!   one canonical byte string per value, so the hashes and signatures over
//!   it are well defined. Everything is read back with [`decode`], which
//!   refuses oversized input before parsing and trailing bytes after it.
//! - **Fixed-layout signed messages** (`strata_primitives::messages`): the
//!   bytes a voucher, a receipt digest or a verdict vote is signed over are
//!   the bytes the on-chain program rebuilds and checks through the ed25519
//!   precompile, so they are laid out by hand in the crate the program shares,
//!   and only used from here.
//! - **The engine's hidden states and commitment openings**
//!   (`strata_engine::HiddenStates::encode`, `Opening::encode`), encoded by
//!   hand: versioned and self-describing (magic, version, dtype, shape), a
//!   header followed by the rows, hashed row by row so that a decode step and
//!   a prefill of the same positions commit to the same bytes, and large (up
//!   to 64 MiB, decoded under a limit before anything is allocated). They
//!   travel between pipeline shards on [`protocols::HIDDEN_STATE`] and, as
//!   opaque bytes inside [`audit::OpenedEntry`], from a node to its verifier:
//!   this crate does not depend on the engine.
//! - **The p2p layer's own encodings** (`strata_p2p`): the length-prefixed
//!   framing of every request, the signed gossip envelope around every topic's
//!   payload, and the chunk manifests and file announcements of file
//!   distribution; hand-written, big-endian, limited before anything is
//!   allocated. They carry this crate's bytes without reading them.
//! - **JSON**, for the relayer's HTTP API ([`api`]), which people, browsers
//!   and the CLI read. Nothing signed or hashed is JSON: a receipt travels in
//!   it as the hex of its Borsh bytes.
//!
//! The task protocol has a typed call, [`task::call`], that encodes, sends
//! over any transport and decodes within the protocol's limit.
#![warn(missing_docs)]

pub mod api;
pub mod audit;
pub mod capacity;
pub mod codec;
pub mod hop;
pub mod policy;
pub mod protocols;
pub mod receipt;
pub mod sampling;
pub mod task;
pub mod voucher;

pub use capacity::Capacity;
pub use codec::{decode, encode, WireError};
pub use receipt::{
    hop_task_id, tokens_hash, AdapterPart, HopPart, Receipt, ReceiptBody, MAX_RECEIPT_BYTES,
};
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
