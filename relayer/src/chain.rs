//! Small chain reads the loops share.

use strata_chain::rpc::ChainClient;
use strata_chain::{ChainError, Pubkey};

/// The Clock sysvar's address.
const CLOCK_SYSVAR: Pubkey = Pubkey::from_str_const("SysvarC1ock11111111111111111111111111111111");

/// The chain's own Unix time (the Clock sysvar), which is what the program
/// checks epochs against; a local clock ahead of the chain would make
/// `post_batch` and `publish_rewards` refuse an epoch that has not begun there.
pub async fn chain_now(chain: &ChainClient) -> Result<i64, ChainError> {
    let data = chain
        .account_data(&CLOCK_SYSVAR)
        .await?
        .ok_or_else(|| ChainError::AccountNotFound("the Clock sysvar".into()))?;
    // Clock: slot u64, epoch_start_timestamp i64, epoch u64,
    // leader_schedule_epoch u64, unix_timestamp i64.
    data.get(32..40)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_le_bytes)
        .ok_or(ChainError::Decode {
            address: CLOCK_SYSVAR.to_string(),
            kind: "clock sysvar",
        })
}

/// The transaction that created `address` (its oldest signature), if the
/// endpoint keeps that history. Used to recover a batch's or epoch's
/// transaction after a crash between sending it and recording it.
pub async fn creating_signature(chain: &ChainClient, address: &Pubkey) -> Option<String> {
    let list = chain.rpc().get_signatures_for_address(address).await.ok()?;
    list.last().map(|s| s.signature.clone())
}

/// The program's protocol fee on redeeming `amount` (rounded up, by the
/// very function the program uses).
pub fn bps_of(amount: u64, bps: u16) -> u64 {
    strata_chain::fees::protocol_fee(amount, bps)
}
