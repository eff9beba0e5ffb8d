//! Named refusals, one per reason, so tests and clients can match on the code.

use anchor_lang::prelude::*;

/// Every refusal the program can give, by name. Codes start at 6000.
#[error_code]
pub enum StrataError {
    /// A parameter is outside its allowed range.
    #[msg("parameter out of bounds")]
    InvalidParameter,
    /// The signer is not the authority this instruction needs.
    #[msg("signer is not authorised for this instruction")]
    Unauthorized,
    /// Checked arithmetic overflowed or underflowed.
    #[msg("arithmetic overflow")]
    MathOverflow,
    /// An amount of zero where something must move.
    #[msg("amount must be greater than zero")]
    ZeroAmount,
    /// More multiaddrs than a node may register.
    #[msg("too many multiaddrs")]
    TooManyMultiaddrs,
    /// A multiaddr is empty, too long, or not a multiaddr.
    #[msg("invalid multiaddr")]
    InvalidMultiaddr,
    /// Roles must be a non-empty subset of compute and verifier.
    #[msg("invalid roles")]
    InvalidRoles,
    /// The node would hold less than the minimum stake.
    #[msg("stake below the minimum")]
    BelowMinimumStake,
    /// Asked to unstake or withdraw more than is there.
    #[msg("insufficient stake")]
    InsufficientStake,
    /// The unbonding period has not ended yet.
    #[msg("unbonding period has not ended")]
    UnbondingNotElapsed,
    /// Nothing is unbonding.
    #[msg("nothing to withdraw")]
    NothingToWithdraw,
    /// An open challenge keeps the stake in place.
    #[msg("a challenge against this node is open")]
    ChallengePending,
    /// The node still holds stake.
    #[msg("node still holds stake")]
    NodeHasStake,
    /// Two account slots that must differ were given the same account.
    #[msg("the same account was passed twice")]
    DuplicateAccount,
    /// The escrow balance cannot cover the request.
    #[msg("insufficient escrow balance")]
    InsufficientEscrow,
    /// The escrow withdrawal delay has not passed.
    #[msg("withdrawal delay has not passed")]
    WithdrawalDelayNotElapsed,
    /// The epoch is in the future or otherwise not acceptable.
    #[msg("invalid epoch")]
    InvalidEpoch,
    /// A batch must hold at least one receipt and a non-zero root.
    #[msg("empty batch")]
    EmptyBatch,
    /// The instruction before this one is not the ed25519 precompile.
    #[msg("missing ed25519 signature instruction")]
    MissingSignatures,
    /// The ed25519 instruction is malformed or references other instructions.
    #[msg("malformed ed25519 signature instruction")]
    MalformedSignatures,
    /// The signed count does not match the accounts given.
    #[msg("signature count does not match the accounts")]
    SignatureCountMismatch,
    /// A signed message is not the one this instruction expects.
    #[msg("signed message does not match")]
    MessageMismatch,
    /// The key that signed is not the one the account names.
    #[msg("wrong signer")]
    WrongSigner,
    /// An account is not the PDA its seeds require.
    #[msg("account does not match its seeds")]
    InvalidPda,
    /// An account is not what this instruction needs.
    #[msg("invalid account")]
    InvalidAccount,
    /// A voucher's cumulative amount does not exceed what was already redeemed.
    #[msg("stale or replayed voucher")]
    StaleVoucher,
    /// Too many items for one instruction.
    #[msg("batch too large")]
    BatchTooLarge,
    /// The Merkle proof does not lead to the posted root.
    #[msg("invalid Merkle proof")]
    InvalidMerkleProof,
    /// The batch's challenge window has closed.
    #[msg("challenge window has closed")]
    ChallengeWindowClosed,
    /// The challenge is not open.
    #[msg("challenge is not open")]
    ChallengeNotOpen,
    /// The verdict deadline has passed.
    #[msg("verdict deadline has passed")]
    DeadlinePassed,
    /// The verdict deadline has not passed.
    #[msg("verdict deadline has not passed")]
    DeadlineNotReached,
    /// There is no verifier stake to select a committee from.
    #[msg("no verifier stake")]
    NoVerifiers,
    /// A signer is not a registered, staked verifier.
    #[msg("signer is not an active verifier")]
    NotAVerifier,
    /// A verifier was not selected for this challenge.
    #[msg("verifier was not selected for this challenge")]
    VerifierNotSelected,
    /// Fewer distinct selected verifiers signed than the quorum requires.
    #[msg("verdict quorum not reached")]
    QuorumNotReached,
    /// The accused node may not judge itself.
    #[msg("accused node cannot verify its own challenge")]
    SelfVerification,
    /// Reward roots must be published for increasing epochs.
    #[msg("reward epoch already published or out of order")]
    EpochOutOfOrder,
    /// The declared or claimed amount exceeds the epoch's cap.
    #[msg("epoch reward cap exceeded")]
    RewardCapExceeded,
    /// Nothing new to claim (claims are idempotent).
    #[msg("nothing to claim")]
    NothingToClaim,
    /// The reward pool cannot cover the claim.
    #[msg("reward pool exhausted")]
    InsufficientRewardPool,
    /// The SlotHashes sysvar is empty or malformed.
    #[msg("slot hashes unavailable")]
    SlotHashesUnavailable,
    /// A node may not challenge its own receipts (nor have the payout sent to itself).
    #[msg("a node cannot challenge its own receipt")]
    SelfChallenge,
    /// The seed slot has not been reached yet.
    #[msg("seed slot not reached yet")]
    SeedNotReady,
    /// The seed was already drawn.
    #[msg("seed already drawn")]
    SeedAlreadyDrawn,
    /// The challenge's committee has not been drawn yet (`draw_committee`).
    #[msg("committee not drawn yet")]
    CommitteeNotDrawn,
    /// A verifier's weight was not in place before the challenge opened.
    #[msg("verifier stake or role is newer than the challenge")]
    VerifierNotEligible,
    /// A batch declares more work units than its receipts can hold
    /// (`task_count × limits::MAX_WORK_UNITS_PER_TASK`).
    #[msg("work units exceed what the batch's receipts can hold")]
    WorkUnitsOutOfBounds,
    /// Reward roots are published for the current epoch only, so a burst
    /// of skipped epochs cannot each pay out a cap.
    #[msg("reward roots may only be published for the current epoch")]
    RewardEpochNotCurrent,
    /// `initialize` was not signed by the program's upgrade authority (or
    /// the deploy-time admin key the program was built with).
    #[msg("initialize must be signed by the program's deployer")]
    NotDeployer,
    /// The escrow withdrawal delay is shorter than the floor that gives the
    /// relayer time to redeem vouchers already signed.
    #[msg("escrow withdrawal delay below the minimum")]
    WithdrawDelayTooShort,
    /// A node's (or a batch's) open-challenge counter is full.
    #[msg("too many open challenges")]
    TooManyOpenChallenges,
    /// The batch's challenge window has not closed yet.
    #[msg("challenge window has not closed")]
    ChallengeWindowOpen,
    /// A challenge against one of the batch's receipts is still open.
    #[msg("a challenge against this batch is open")]
    BatchHasOpenChallenges,
}
