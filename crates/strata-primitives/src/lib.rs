//! The few definitions that must mean the same thing on-chain and off-chain.
//!
//! What it is: one binary Merkle tree ([`merkle::MerkleTree`]) shared by the
//! program's receipt and reward roots, the engine's activation commitments and
//! the p2p layer's chunk manifests, each with its own explicit hash domain
//! ([`merkle::domains`]); the bytes that clients and verifiers sign
//! ([`messages`]); seeds drawn from later slot hashes ([`slot_hashes`]),
//! committee sortition ([`sortition`]) and audit assignment ([`audit`]); the protocol fee ([`fees`]); cross-crate size limits ([`limits`]); and plain
//! descriptors of the application's p2p protocols ([`protocol`]).
//!
//! What it is not: it has no Anchor, Solana SDK or libp2p dependency (keys are
//! plain 32-byte arrays), so the program, the chain client, the engine and
//! every service can depend on it without pulling each other in. It compiles
//! for SBF: SHA-256 goes through `solana-sha256-hasher`, a syscall on-chain;
//! blake3 is behind the `blake3` feature, which the program leaves off.
#![warn(missing_docs)]

pub mod audit;
pub mod fees;
pub mod limits;
pub mod merkle;
pub mod messages;
pub mod protocol;
pub mod slot_hashes;
pub mod sortition;

/// A 32-byte identifier or hash (task ids, keys, digests, roots).
pub type Bytes32 = [u8; 32];
