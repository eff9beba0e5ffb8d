//! The `strata` CLI's integration tests, in one binary: bad input without a
//! chain, the operator and client commands on a local chain, file transfer
//! over p2p, and the whole paid journey on a local testnet.
//! (`audit_claim.rs` and `explorer.rs` beside this folder are binaries of
//! their own, kept with the relayer's tests they share.)

mod bad_input;
mod common;
mod e2e;
mod file_transfer;
mod localnet;
