//! The client side of Strata's Solana program, used by every binary and test:
//! PDA derivation ([`pda`]), instruction builders ([`ix`]), the ed25519
//! precompile instruction that carries vouchers and verdicts ([`ed25519`]),
//! account and event decoding ([`accounts`], [`events`]), Solana CLI keypair
//! files ([`keys`]), cluster names ([`cluster`]), compute budgets
//! ([`budget`]) and an RPC backend ([`rpc::ChainClient`]).
//!
//! It is not a program harness: tests that need a runtime use LiteSVM through
//! `native-svm`, and the local chain lives in `strata-localnet`.
#![warn(missing_docs)]

pub mod accounts;
pub mod amount;
pub mod audit;
pub mod budget;
pub mod cluster;
pub mod ed25519;
pub mod error;
pub mod error_names;
pub mod events;
pub mod ix;
pub mod keys;
pub mod params;
pub mod pda;
pub mod registration;
pub mod rpc;
pub mod token;
pub mod tx;

pub use error::ChainError;
pub use solana_keypair::Keypair;
pub use solana_signer::Signer;
pub use strata_primitives::{fees, limits, merkle, messages, sortition};
pub use strata_program::{
    state::{Capacity, ConfigParams, ROLE_COMPUTE, ROLE_VERIFIER},
    ID as PROGRAM_ID,
};
/// Public key type shared with the program.
pub type Pubkey = anchor_lang::prelude::Pubkey;
