//! Program-derived addresses, with the same seeds as the program's `state/`.

use strata_program::state::{
    Batch, Challenge, Channel, ClaimRecord, Config, Escrow, Node, Relayer, RewardEpoch,
};
use strata_program::ID;

use crate::Pubkey;

fn find(seeds: &[&[u8]]) -> Pubkey {
    Pubkey::find_program_address(seeds, &ID).0
}

/// The config singleton.
pub fn config() -> Pubkey {
    find(&[Config::SEED])
}
/// The token vault.
pub fn vault() -> Pubkey {
    find(&[Config::VAULT_SEED])
}
/// A node's record.
pub fn node(operator: &Pubkey) -> Pubkey {
    find(&[Node::SEED, operator.as_ref()])
}
/// A client's escrow.
pub fn escrow(client: &Pubkey) -> Pubkey {
    find(&[Escrow::SEED, client.as_ref()])
}
/// A (client, node) voucher channel.
pub fn channel(client: &Pubkey, node: &Pubkey) -> Pubkey {
    find(&[Channel::SEED, client.as_ref(), node.as_ref()])
}
/// A relayer's record.
pub fn relayer(authority: &Pubkey) -> Pubkey {
    find(&[Relayer::SEED, authority.as_ref()])
}
/// A receipt batch.
pub fn batch(id: u64) -> Pubkey {
    find(&[Batch::SEED, &id.to_le_bytes()])
}
/// A challenge against leaf `leaf_index` of `batch`.
pub fn challenge(batch: &Pubkey, leaf_index: u32) -> Pubkey {
    find(&[Challenge::SEED, batch.as_ref(), &leaf_index.to_le_bytes()])
}
/// An epoch's reward root.
pub fn reward_epoch(epoch: i64) -> Pubkey {
    find(&[RewardEpoch::SEED, &epoch.to_le_bytes()])
}
/// An operator's claim record.
pub fn claim_record(operator: &Pubkey) -> Pubkey {
    find(&[ClaimRecord::SEED, operator.as_ref()])
}
/// The program's ProgramData account (the upgradeable loader's PDA of the
/// program id). It exists only when the upgradeable loader deployed the
/// program; `initialize` reads it then to check the upgrade authority.
pub fn program_data() -> Pubkey {
    Pubkey::find_program_address(&[ID.as_ref()], &solana_sdk_ids::bpf_loader_upgradeable::ID).0
}
/// The associated token account of `owner` for `mint`.
pub fn associated_token(owner: &Pubkey, mint: &Pubkey) -> Pubkey {
    spl_associated_token_account_interface::address::get_associated_token_address(owner, mint)
}
