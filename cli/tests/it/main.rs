//! The `strata` CLI's integration tests, in one binary: bad input without a
//! chain, the operator and client commands on a local chain, file transfer
//! over p2p, the whole paid journey on a local testnet, `strata audit` and
//! `strata claim` against a real relayer, and the explorer in a real browser.

mod audit_claim;
mod bad_input;
mod common;
mod e2e;
mod explorer;
mod file_transfer;
mod localnet;
/// The relayer's test world (a chain, a relayer, receipts, audits,
/// challenges), shared with the relayer's own tests.
#[path = "../../../relayer/tests/it/common.rs"]
mod relayer_world;
