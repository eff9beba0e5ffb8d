//! Instruction builders, one per program instruction. Each takes the keys a
//! caller knows and derives the rest, so binaries never assemble account
//! lists by hand.

use anchor_lang::{InstructionData, ToAccountMetas};
use solana_instruction::{AccountMeta, Instruction};
/// What `open_challenge` proves about the challenged receipt.
pub use strata_program::instructions::ReceiptClaim;
use strata_program::{accounts as acc, instruction as data, ID};

use crate::{pda, Capacity, ConfigParams, Pubkey};

const SYSTEM: Pubkey = anchor_lang::system_program::ID;
const TOKEN: Pubkey = spl_token_interface::ID;
const INSTRUCTIONS_SYSVAR: Pubkey = solana_sdk_ids::sysvar::instructions::ID;
const SLOT_HASHES_SYSVAR: Pubkey = solana_sdk_ids::sysvar::slot_hashes::ID;

fn build(accounts: impl ToAccountMetas, args: impl InstructionData) -> Instruction {
    Instruction {
        program_id: ID,
        accounts: accounts.to_account_metas(None),
        data: args.data(),
    }
}

/// `initialize`: creates config and vault; `admin` pays and becomes admin
/// (it must be the program's deployer: its upgrade authority, or the key it
/// was built with; anyone on a native host harness).
pub fn initialize(
    admin: &Pubkey,
    mint: &Pubkey,
    params: ConfigParams,
    reward_authority: &Pubkey,
) -> Instruction {
    build(
        acc::Initialize {
            admin: *admin,
            config: pda::config(),
            mint: *mint,
            vault: pda::vault(),
            program: ID,
            program_data: pda::program_data(),
            token_program: TOKEN,
            system_program: SYSTEM,
        },
        data::Initialize {
            params,
            reward_authority: *reward_authority,
        },
    )
}

/// `update_config` (admin).
pub fn update_config(
    admin: &Pubkey,
    params: ConfigParams,
    reward_authority: &Pubkey,
) -> Instruction {
    build(
        acc::UpdateConfig {
            admin: *admin,
            config: pda::config(),
        },
        data::UpdateConfig {
            params,
            reward_authority: *reward_authority,
        },
    )
}

/// `add_relayer` (admin).
pub fn add_relayer(admin: &Pubkey, relayer: &Pubkey) -> Instruction {
    build(
        acc::AddRelayer {
            admin: *admin,
            config: pda::config(),
            relayer_account: pda::relayer(relayer),
            system_program: SYSTEM,
        },
        data::AddRelayer { relayer: *relayer },
    )
}

/// `remove_relayer` (admin).
pub fn remove_relayer(admin: &Pubkey, relayer: &Pubkey) -> Instruction {
    build(
        acc::RemoveRelayer {
            admin: *admin,
            config: pda::config(),
            relayer_account: pda::relayer(relayer),
        },
        data::RemoveRelayer {},
    )
}

/// `register_node`.
pub fn register_node(
    operator: &Pubkey,
    multiaddrs: Vec<String>,
    capacity: Capacity,
    roles: u8,
) -> Instruction {
    build(
        acc::RegisterNode {
            operator: *operator,
            node: pda::node(operator),
            system_program: SYSTEM,
        },
        data::RegisterNode {
            multiaddrs,
            capacity,
            roles,
        },
    )
}

/// `update_node`.
pub fn update_node(
    operator: &Pubkey,
    multiaddrs: Vec<String>,
    capacity: Capacity,
    roles: u8,
) -> Instruction {
    build(
        acc::UpdateNode {
            operator: *operator,
            config: pda::config(),
            node: pda::node(operator),
        },
        data::UpdateNode {
            multiaddrs,
            capacity,
            roles,
        },
    )
}

/// `stake` from `operator_token`.
pub fn stake(
    operator: &Pubkey,
    operator_token: &Pubkey,
    mint: &Pubkey,
    amount: u64,
) -> Instruction {
    build(
        acc::Stake {
            operator: *operator,
            config: pda::config(),
            node: pda::node(operator),
            operator_token: *operator_token,
            vault: pda::vault(),
            mint: *mint,
            token_program: TOKEN,
        },
        data::Stake { amount },
    )
}

/// `request_unstake`.
pub fn request_unstake(operator: &Pubkey, amount: u64) -> Instruction {
    build(
        acc::RequestUnstake {
            operator: *operator,
            config: pda::config(),
            node: pda::node(operator),
        },
        data::RequestUnstake { amount },
    )
}

/// `withdraw_stake` into `operator_token`.
pub fn withdraw_stake(operator: &Pubkey, operator_token: &Pubkey) -> Instruction {
    build(
        acc::WithdrawStake {
            operator: *operator,
            config: pda::config(),
            node: pda::node(operator),
            operator_token: *operator_token,
            vault: pda::vault(),
            token_program: TOKEN,
        },
        data::WithdrawStake {},
    )
}

/// `deregister_node`.
pub fn deregister_node(operator: &Pubkey) -> Instruction {
    build(
        acc::DeregisterNode {
            operator: *operator,
            node: pda::node(operator),
        },
        data::DeregisterNode {},
    )
}

/// `deposit` from `client_token`.
pub fn deposit(client: &Pubkey, client_token: &Pubkey, amount: u64) -> Instruction {
    build(
        acc::Deposit {
            client: *client,
            config: pda::config(),
            escrow: pda::escrow(client),
            client_token: *client_token,
            vault: pda::vault(),
            token_program: TOKEN,
            system_program: SYSTEM,
        },
        data::Deposit { amount },
    )
}

/// `request_withdrawal`.
pub fn request_withdrawal(client: &Pubkey, amount: u64) -> Instruction {
    build(
        acc::RequestWithdrawal {
            client: *client,
            config: pda::config(),
            escrow: pda::escrow(client),
        },
        data::RequestWithdrawal { amount },
    )
}

/// `withdraw` into `client_token`.
pub fn withdraw(client: &Pubkey, client_token: &Pubkey) -> Instruction {
    build(
        acc::Withdraw {
            client: *client,
            config: pda::config(),
            escrow: pda::escrow(client),
            client_token: *client_token,
            vault: pda::vault(),
            token_program: TOKEN,
        },
        data::Withdraw {},
    )
}

/// `post_batch` as batch `batch_id` (the config's `next_batch_id`).
pub fn post_batch(
    relayer: &Pubkey,
    batch_id: u64,
    epoch: i64,
    root: [u8; 32],
    task_count: u32,
    work_units: u64,
) -> Instruction {
    build(
        acc::PostBatch {
            authority: *relayer,
            relayer: pda::relayer(relayer),
            config: pda::config(),
            batch: pda::batch(batch_id),
            system_program: SYSTEM,
        },
        data::PostBatch {
            epoch,
            root,
            task_count,
            work_units,
        },
    )
}

/// One voucher to redeem: who signed it, to which node, and the node's token account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoucherAccounts {
    /// The client who signed.
    pub client: Pubkey,
    /// The node paid.
    pub node: Pubkey,
    /// The node's token account.
    pub node_token: Pubkey,
}

/// `redeem_vouchers`. Must directly follow the ed25519 instruction that
/// carries the vouchers' signatures in the same order (see [`crate::ed25519`]).
pub fn redeem_vouchers(payer: &Pubkey, vouchers: &[VoucherAccounts]) -> Instruction {
    let mut ix = build(
        acc::RedeemVouchers {
            payer: *payer,
            config: pda::config(),
            vault: pda::vault(),
            instructions: INSTRUCTIONS_SYSVAR,
            token_program: TOKEN,
            system_program: SYSTEM,
        },
        data::RedeemVouchers {},
    );
    for v in vouchers {
        ix.accounts
            .push(AccountMeta::new(pda::escrow(&v.client), false));
        ix.accounts
            .push(AccountMeta::new(pda::channel(&v.client, &v.node), false));
        ix.accounts.push(AccountMeta::new(v.node_token, false));
    }
    ix
}

/// `open_challenge` against a receipt of batch `batch_id` served by `node`.
pub fn open_challenge(
    challenger: &Pubkey,
    challenger_token: &Pubkey,
    batch_id: u64,
    node: &Pubkey,
    claim: ReceiptClaim,
) -> Instruction {
    let batch = pda::batch(batch_id);
    build(
        acc::OpenChallenge {
            challenger: *challenger,
            challenger_token: *challenger_token,
            config: pda::config(),
            batch,
            node: pda::node(node),
            challenge: pda::challenge(&batch, claim.leaf_index),
            vault: pda::vault(),
            token_program: TOKEN,
            system_program: SYSTEM,
        },
        data::OpenChallenge { claim },
    )
}

/// `resolve_challenge`; `batch` is the challenge's batch (its `batch`
/// field); `verifiers` are the signing verifiers' operator keys in the order
/// of the preceding ed25519 instruction's signatures.
pub fn resolve_challenge(
    submitter: &Pubkey,
    challenge: &Pubkey,
    batch: &Pubkey,
    node: &Pubkey,
    challenger_token: &Pubkey,
    verifiers: &[Pubkey],
    upheld: bool,
) -> Instruction {
    let mut ix = build(
        acc::ResolveChallenge {
            submitter: *submitter,
            config: pda::config(),
            challenge: *challenge,
            batch: *batch,
            node: pda::node(node),
            challenger_token: *challenger_token,
            vault: pda::vault(),
            instructions: INSTRUCTIONS_SYSVAR,
            token_program: TOKEN,
        },
        data::ResolveChallenge { upheld },
    );
    for v in verifiers {
        ix.accounts
            .push(AccountMeta::new_readonly(pda::node(v), false));
    }
    ix
}

/// `seal_batch`: draws batch `batch_id`'s audit seed (anyone may send it).
pub fn seal_batch(batch_id: u64) -> Instruction {
    build(
        acc::SealBatch {
            config: pda::config(),
            batch: pda::batch(batch_id),
            slot_hashes: SLOT_HASHES_SYSVAR,
        },
        data::SealBatch {},
    )
}

/// `draw_committee`: draws `challenge`'s committee seed (anyone may send it).
pub fn draw_committee(challenge: &Pubkey) -> Instruction {
    build(
        acc::DrawCommittee {
            config: pda::config(),
            challenge: *challenge,
            slot_hashes: SLOT_HASHES_SYSVAR,
        },
        data::DrawCommittee {},
    )
}

/// `expire_challenge`; `batch` is the challenge's batch (its `batch`
/// field); `challenger` is the challenge's challenger (its wallet gets the
/// closed account's rent back).
pub fn expire_challenge(
    submitter: &Pubkey,
    challenge: &Pubkey,
    batch: &Pubkey,
    node: &Pubkey,
    challenger: &Pubkey,
    challenger_token: &Pubkey,
) -> Instruction {
    build(
        acc::ExpireChallenge {
            submitter: *submitter,
            config: pda::config(),
            challenger: *challenger,
            challenge: *challenge,
            batch: *batch,
            node: pda::node(node),
            challenger_token: *challenger_token,
            vault: pda::vault(),
            token_program: TOKEN,
        },
        data::ExpireChallenge {},
    )
}

/// `close_batch`: closes batch `batch_id` after its challenge window;
/// `relayer` must be the relayer that posted it and gets the rent back.
pub fn close_batch(relayer: &Pubkey, batch_id: u64) -> Instruction {
    build(
        acc::CloseBatch {
            authority: *relayer,
            config: pda::config(),
            batch: pda::batch(batch_id),
        },
        data::CloseBatch {},
    )
}

/// `fund_rewards` from `funder_token`.
pub fn fund_rewards(funder: &Pubkey, funder_token: &Pubkey, amount: u64) -> Instruction {
    build(
        acc::FundRewards {
            funder: *funder,
            config: pda::config(),
            funder_token: *funder_token,
            vault: pda::vault(),
            token_program: TOKEN,
        },
        data::FundRewards { amount },
    )
}

/// `publish_rewards` (reward authority).
pub fn publish_rewards(
    authority: &Pubkey,
    epoch: i64,
    root: [u8; 32],
    leaf_count: u32,
    declared: u64,
) -> Instruction {
    build(
        acc::PublishRewards {
            reward_authority: *authority,
            config: pda::config(),
            reward_epoch: pda::reward_epoch(epoch),
            system_program: SYSTEM,
        },
        data::PublishRewards {
            epoch,
            root,
            leaf_count,
            declared,
        },
    )
}

/// `claim_rewards` with a proof against `epoch`'s root.
pub fn claim_rewards(
    operator: &Pubkey,
    operator_token: &Pubkey,
    epoch: i64,
    cumulative: u64,
    leaf_index: u32,
    proof: Vec<[u8; 32]>,
) -> Instruction {
    build(
        acc::ClaimRewards {
            operator: *operator,
            config: pda::config(),
            reward_epoch: pda::reward_epoch(epoch),
            claim_record: pda::claim_record(operator),
            operator_token: *operator_token,
            vault: pda::vault(),
            token_program: TOKEN,
            system_program: SYSTEM,
        },
        data::ClaimRewards {
            cumulative,
            leaf_index,
            proof,
        },
    )
}
