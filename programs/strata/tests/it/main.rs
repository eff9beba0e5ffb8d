//! The program's tests, in one binary: real signed transactions against the
//! natively compiled program inside LiteSVM (with the SPL Token programs it
//! preloads).
//!
//! `api/` holds the set-up and one helper family per group of instructions
//! (nodes, payments, batches, challenges); `suites/` holds the scenarios: the
//! success paths (`lifecycle`), the generic attack classes (`accounts`), the
//! protocol's own rules per area, hostile bytes (`garbage`) and transaction
//! sizes (`sizes`).

mod api;
mod suites;

/// What every suite uses.
#[allow(unused_imports)]
mod prelude {
    pub use anchor_lang::{AccountSerialize, Discriminator};
    pub use solana_account::Account;
    pub use solana_instruction::AccountMeta;
    pub use solana_keypair::Keypair;
    pub use solana_signer::Signer;
    pub use strata_chain::ed25519::{verify_instruction, SignedMessage};
    pub use strata_chain::events::{from_logs, StrataEvent};
    pub use strata_chain::merkle::{self, domains::Ledger};
    pub use strata_chain::{
        ix, messages, pda, Capacity, ConfigParams, Pubkey, PROGRAM_ID, ROLE_COMPUTE, ROLE_VERIFIER,
    };
    pub use strata_program::errors::StrataError;
    pub use strata_program::instructions::ReceiptClaim;
    pub use strata_program::state::{
        Batch, Challenge, ChallengeStatus, Channel, Escrow, Node, RewardEpoch,
    };

    pub use crate::api::challenges::{
        claim, dispute_leaves, disputed_network, open_dispute, verdict_ixs, Dispute, ACCUSED_STAKE,
        VERIFIER_STAKE,
    };
    pub use crate::api::*;

    /// Anchor's own error codes (anchor-lang's `ErrorCode`).
    pub const CONSTRAINT_SEEDS: u32 = 2006;
    /// Anchor: a mutable account passed twice.
    pub const CONSTRAINT_DUPLICATE_MUTABLE_ACCOUNT: u32 = 2040;
    /// Anchor: the account's discriminator is another type's.
    pub const ACCOUNT_DISCRIMINATOR_MISMATCH: u32 = 3002;
    /// Anchor: the account is owned by another program.
    pub const ACCOUNT_OWNED_BY_WRONG_PROGRAM: u32 = 3007;
    /// Anchor: a program account is not the expected program.
    pub const INVALID_PROGRAM_ID: u32 = 3008;
    /// Anchor: a required signature is missing.
    pub const ACCOUNT_NOT_SIGNER: u32 = 3010;
    /// Anchor: the account does not exist (not initialised).
    pub const ACCOUNT_NOT_INITIALIZED: u32 = 3012;
    /// The system program's `AccountAlreadyInUse`.
    pub const ACCOUNT_ALREADY_IN_USE: u32 = 0;
}
