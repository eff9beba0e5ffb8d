//! The verifier's tests: the pure parts (vote quorums, the relayer's
//! receipt lists and proofs, the state file, start-up refusals) and the
//! opening checker with the real model against openings built by the
//! node's own code, honest and cheating. The end-to-end run on a local
//! chain (a cheater slashed) lives with the testnet.

mod checker;
mod flow;
mod hop_checker;
mod quorum;
mod receipts;
mod start;
mod state;
mod support;
