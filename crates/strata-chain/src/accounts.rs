//! Decoding the program's accounts from raw account data.

use anchor_lang::AccountDeserialize;
pub use strata_program::state::{
    Batch, Challenge, ChallengeStatus, ChallengeTerms, Channel, ClaimRecord, Config, Escrow, Node,
    Relayer, RewardEpoch,
};

use crate::{ChainError, Pubkey};

/// Decodes `data` as account type `T`, checking its discriminator.
pub fn decode<T: AccountDeserialize>(
    address: &Pubkey,
    data: &[u8],
    kind: &'static str,
) -> Result<T, ChainError> {
    let mut slice = data;
    T::try_deserialize(&mut slice).map_err(|_| ChainError::Decode {
        address: address.to_string(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Garbage never panics the decoder and never decodes as a node.
        #[test]
        fn garbage_is_refused(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            prop_assume!(data.len() < 8 || data[..8] != *<Node as anchor_lang::Discriminator>::DISCRIMINATOR);
            prop_assert!(decode::<Node>(&Pubkey::default(), &data, "node").is_err());
        }
    }
}
