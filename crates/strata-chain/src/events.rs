//! Decoding the program's events from transaction logs (`Program data:` lines).

use anchor_lang::{AnchorDeserialize, Discriminator};
use base64::Engine;
use strata_program::events as ev;

/// Every event the program emits.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum StrataEvent {
    Initialized(ev::Initialized),
    ConfigUpdated(ev::ConfigUpdated),
    RelayerAdded(ev::RelayerAdded),
    RelayerRemoved(ev::RelayerRemoved),
    NodeUpdated(ev::NodeUpdated),
    NodeDeregistered(ev::NodeDeregistered),
    Staked(ev::Staked),
    UnstakeRequested(ev::UnstakeRequested),
    StakeWithdrawn(ev::StakeWithdrawn),
    Deposited(ev::Deposited),
    WithdrawalRequested(ev::WithdrawalRequested),
    Withdrawn(ev::Withdrawn),
    BatchPosted(ev::BatchPosted),
    VoucherRedeemed(ev::VoucherRedeemed),
    ChallengeOpened(ev::ChallengeOpened),
    CommitteeDrawn(ev::CommitteeDrawn),
    BatchSealed(ev::BatchSealed),
    SeedRearmed(ev::SeedRearmed),
    ChallengeResolved(ev::ChallengeResolved),
    ChallengeExpired(ev::ChallengeExpired),
    RewardsFunded(ev::RewardsFunded),
    RewardsPublished(ev::RewardsPublished),
    RewardsClaimed(ev::RewardsClaimed),
    BatchClosed(ev::BatchClosed),
}

/// Decodes one event payload (discriminator + borsh); `None` if it is not one of ours.
pub fn decode_event(data: &[u8]) -> Option<StrataEvent> {
    macro_rules! try_each {
        ($($name:ident),*) => {
            $(
                if let Some(body) = data.strip_prefix(ev::$name::DISCRIMINATOR) {
                    return ev::$name::try_from_slice(body).ok().map(StrataEvent::$name);
                }
            )*
        };
    }
    try_each!(
        Initialized,
        ConfigUpdated,
        RelayerAdded,
        RelayerRemoved,
        NodeUpdated,
        NodeDeregistered,
        Staked,
        UnstakeRequested,
        StakeWithdrawn,
        Deposited,
        WithdrawalRequested,
        Withdrawn,
        BatchPosted,
        VoucherRedeemed,
        ChallengeOpened,
        CommitteeDrawn,
        BatchSealed,
        SeedRearmed,
        ChallengeResolved,
        ChallengeExpired,
        RewardsFunded,
        RewardsPublished,
        RewardsClaimed,
        BatchClosed
    );
    None
}

/// Decodes every event in a transaction's log lines.
pub fn from_logs<S: AsRef<str>>(logs: &[S]) -> Vec<StrataEvent> {
    logs.iter()
        .filter_map(|line| line.as_ref().strip_prefix("Program data: "))
        .filter_map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .filter_map(|bytes| decode_event(&bytes))
        .collect()
}

#[cfg(test)]
mod tests {
    use anchor_lang::Event;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn round_trip_through_a_log_line() {
        let e = ev::Staked {
            operator: crate::Pubkey::new_unique(),
            amount: 5,
            stake: 9,
        };
        let line = format!(
            "Program data: {}",
            base64::engine::general_purpose::STANDARD.encode(e.data())
        );
        match from_logs(&[line.as_str(), "Program log: hi"]).as_slice() {
            [StrataEvent::Staked(s)] => assert_eq!((s.amount, s.stake), (5, 9)),
            other => panic!("unexpected {other:?}"),
        }
    }

    proptest! {
        #[test]
        fn arbitrary_log_lines_never_panic(lines in proptest::collection::vec(".{0,200}", 0..5), blob in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = from_logs(&lines);
            let _ = decode_event(&blob);
        }
    }
}
