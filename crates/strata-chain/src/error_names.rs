//! Names and messages for the error codes a transaction can fail with, so
//! the CLI can say "6025 StaleVoucher: stale or replayed voucher" rather
//! than "custom program error: 0x1789".

use strata_program::errors::StrataError;

macro_rules! program_errors {
    ($($v:ident),* $(,)?) => {
        /// Every program error, in code order.
        pub fn all() -> Vec<(u32, String, String)> {
            vec![$((u32::from(StrataError::$v), StrataError::$v.name(), StrataError::$v.to_string())),*]
        }
    };
}

program_errors!(
    InvalidParameter,
    Unauthorized,
    MathOverflow,
    ZeroAmount,
    TooManyMultiaddrs,
    InvalidMultiaddr,
    InvalidRoles,
    BelowMinimumStake,
    InsufficientStake,
    UnbondingNotElapsed,
    NothingToWithdraw,
    ChallengePending,
    NodeHasStake,
    DuplicateAccount,
    InsufficientEscrow,
    WithdrawalDelayNotElapsed,
    InvalidEpoch,
    EmptyBatch,
    MissingSignatures,
    MalformedSignatures,
    SignatureCountMismatch,
    MessageMismatch,
    WrongSigner,
    InvalidPda,
    InvalidAccount,
    StaleVoucher,
    BatchTooLarge,
    InvalidMerkleProof,
    ChallengeWindowClosed,
    ChallengeNotOpen,
    DeadlinePassed,
    DeadlineNotReached,
    NoVerifiers,
    NotAVerifier,
    VerifierNotSelected,
    QuorumNotReached,
    SelfVerification,
    EpochOutOfOrder,
    RewardCapExceeded,
    NothingToClaim,
    InsufficientRewardPool,
    SlotHashesUnavailable,
    SelfChallenge,
    SeedNotReady,
    SeedAlreadyDrawn,
    CommitteeNotDrawn,
    VerifierNotEligible,
    WorkUnitsOutOfBounds,
    RewardEpochNotCurrent,
    NotDeployer,
    WithdrawDelayTooShort,
    TooManyOpenChallenges,
    ChallengeWindowOpen,
    BatchHasOpenChallenges,
);

/// Anchor's own codes that a caller can run into (constraints, account checks).
const ANCHOR: &[(u32, &str, &str)] = &[
    (2000, "ConstraintMut", "a mut constraint was violated"),
    (
        2001,
        "ConstraintHasOne",
        "a has_one constraint was violated",
    ),
    (2002, "ConstraintSigner", "a signer constraint was violated"),
    (2003, "ConstraintRaw", "a raw constraint was violated"),
    (2006, "ConstraintSeeds", "a seeds constraint was violated"),
    (
        2012,
        "ConstraintAddress",
        "an address constraint was violated",
    ),
    (
        2014,
        "ConstraintTokenMint",
        "a token mint constraint was violated",
    ),
    (
        2015,
        "ConstraintTokenOwner",
        "a token owner constraint was violated",
    ),
    (
        3001,
        "AccountDiscriminatorNotFound",
        "no account discriminator was found",
    ),
    (
        3002,
        "AccountDiscriminatorMismatch",
        "account discriminator did not match",
    ),
    (
        3003,
        "AccountDidNotDeserialize",
        "failed to deserialize the account",
    ),
    (
        3007,
        "AccountOwnedByWrongProgram",
        "the account is owned by a different program",
    ),
    (3008, "InvalidProgramId", "program ID was not as expected"),
    (3010, "AccountNotSigner", "the account did not sign"),
    (
        3012,
        "AccountNotInitialized",
        "the account is not initialized",
    ),
];

/// (name, message) for an error code.
pub fn describe(code: u32) -> (String, String) {
    if let Some((_, name, msg)) = all().into_iter().find(|(c, _, _)| *c == code) {
        return (name, msg);
    }
    if let Some((_, name, msg)) = ANCHOR.iter().find(|(c, _, _)| *c == code) {
        return (name.to_string(), msg.to_string());
    }
    (
        "Unknown".to_string(),
        format!("custom program error {code}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_from_6000() {
        let all = all();
        for (i, (code, _, _)) in all.iter().enumerate() {
            assert_eq!(*code, 6000 + i as u32);
        }
        assert_eq!(describe(6025).0, "StaleVoucher");
        // The last variant is listed (a new error must be added here too).
        let last = u32::from(StrataError::BatchHasOpenChallenges);
        assert_eq!(describe(last).0, "BatchHasOpenChallenges");
        assert_eq!(describe(last + 1).0, "Unknown");
        assert_eq!(describe(2006).0, "ConstraintSeeds");
        assert_eq!(describe(1).0, "Unknown");
    }
}
