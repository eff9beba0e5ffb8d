//! Compute budget: the compute-unit limit every transaction asks for, and
//! the optional priority fee.
//!
//! Here the program runs natively and nothing meters its compute units, so
//! the limits are estimates, built per instruction from published unit
//! costs ([`unit`]): account handling as Anchor's own benchmark measured it,
//! PDA derivations, CPIs into SPL Token and the system program, SHA-256
//! syscalls, event logs, and the loops over vouchers, verifier signatures,
//! Merkle proofs and SlotHashes entries. A transaction asks for
//! `estimate × 3/2`, rounded up to a thousand and capped at the runtime's
//! maximum ([`MAX_COMPUTE_UNIT_LIMIT`]). `docs/devnet.md` has the table and
//! how each line was counted.
//!
//! An estimate that proves short costs one failed transaction's fee, not a
//! stuck service: [`crate::rpc::ChainClient::send`] resends once with the
//! maximum limit when the runtime reports the budget exceeded.

use anchor_lang::{Discriminator, Space};
use solana_compute_budget_interface::ComputeBudgetInstruction;
use solana_instruction::Instruction;
use strata_program::instruction as data;
use strata_program::state::{
    Batch, Challenge, Channel, ClaimRecord, Config, Escrow, Node, Relayer, RewardEpoch,
};

use crate::Pubkey;

/// The most compute units a transaction may ask for (agave's
/// `MAX_COMPUTE_UNIT_LIMIT`).
pub const MAX_COMPUTE_UNIT_LIMIT: u32 = 1_400_000;
/// What the runtime gives an instruction of a program this module does not
/// know (agave's `DEFAULT_INSTRUCTION_COMPUTE_UNIT_LIMIT`): asking for that
/// much keeps such a transaction exactly as it would run without a limit.
pub const UNKNOWN_PROGRAM_UNITS: u64 = 200_000;

/// Unit costs the estimates are made of, in compute units, with where each
/// figure comes from.
pub mod unit {
    /// Anchor's entrypoint, dispatch, the `Instruction: <name>` log and the
    /// arguments' Borsh decoding. Anchor 1.0's benchmark
    /// (`bench/COMPUTE_UNITS.md`, `accountInfo1`) is 702 for one account;
    /// rounded up for arguments and the log line.
    pub const ANCHOR_DISPATCH: u64 = 1_000;
    /// Each account the instruction lists (Anchor 1.0 benchmark:
    /// `accountInfo8 − accountInfo1` = 2,778 over 7 accounts ≈ 400; signers
    /// and programs a little more).
    pub const ACCOUNT: u64 = 450;
    /// A typed program account on top of [`ACCOUNT`]: discriminator and
    /// owner checks (plus the Borsh bytes, counted per byte below).
    pub const TYPED_ACCOUNT: u64 = 150;
    /// Borsh-decoding and re-encoding one byte of account data (an
    /// allowance; the benchmark's sized accounts cost ~50-90 more than empty
    /// ones for a few dozen bytes).
    pub const BORSH_BYTES_PER_UNIT: u64 = 2;
    /// An SPL token account as `Account<TokenAccount>` (benchmark:
    /// `interfaceAccountToken1 − accountInfo1` ≈ 535).
    pub const TOKEN_ACCOUNT: u64 = 550;
    /// An SPL mint as `Account<Mint>` (benchmark: `interfaceAccountMint1 −
    /// accountInfo1` ≈ 400).
    pub const MINT_ACCOUNT: u64 = 400;
    /// `create_program_address` (agave `create_program_address_units`);
    /// also what `invoke_signed` pays to check each signer seed set.
    pub const CREATE_PROGRAM_ADDRESS: u64 = 1_500;
    /// Bump tries budgeted per `find_program_address`: one try costs
    /// [`CREATE_PROGRAM_ADDRESS`] and each lands off the curve with
    /// probability 1/2, so two on average; four leaves room for 15 in 16
    /// addresses, and the 3/2 margin on the whole transaction for more.
    pub const FIND_PROGRAM_ADDRESS_TRIES: u64 = 4;
    /// One CPI (agave `DEFAULT_INVOCATION_COST`, 946), plus ~250 for
    /// translating its accounts and instruction (`cpi_bytes_per_unit` 250).
    pub const INVOKE: u64 = 1_200;
    /// A system program instruction (agave's system processor
    /// `DEFAULT_COMPUTE_UNITS`).
    pub const SYSTEM_PROGRAM: u64 = 150;
    /// A compute budget instruction (agave's compute budget program
    /// `DEFAULT_COMPUTE_UNITS`).
    pub const COMPUTE_BUDGET_PROGRAM: u64 = 150;
    /// Anchor's `init` around its `create_account` CPI: rent, space, owner
    /// and discriminator writes (benchmark: `accountEmptyInit1 −
    /// accountEmpty1` = 3,978, less one CPI and the system instruction).
    pub const ANCHOR_INIT: u64 = 2_700;
    /// SPL Token `Transfer` (p-token README's table for spl-token: 4,645).
    pub const SPL_TRANSFER: u64 = 4_645;
    /// SPL Token `MintTo` (same table: 4,538).
    pub const SPL_MINT_TO: u64 = 4_538;
    /// SPL Token `InitializeMint` (same table: 2,967).
    pub const SPL_INITIALIZE_MINT: u64 = 2_967;
    /// SPL Token `InitializeAccount` (same table: 4,527).
    pub const SPL_INITIALIZE_ACCOUNT: u64 = 4_527;
    /// Any other SPL Token instruction: the largest in that table, rounded.
    pub const SPL_OTHER: u64 = 5_000;
    /// Associated Token Account `CreateIdempotent` on a new account, with
    /// SPL Token: the base figure client tools use (25,000) plus its own
    /// `find_program_address`.
    pub const ATA_CREATE: u64 = 25_000 + FIND_PROGRAM_ADDRESS_TRIES * CREATE_PROGRAM_ADDRESS;
    /// An event (`sol_log_data`: syscall base 100 plus its bytes) with its
    /// Borsh encoding.
    pub const EVENT: u64 = 500;
    /// A `Sysvar::get` (agave `sysvar_base_cost` 100 plus the bytes).
    pub const SYSVAR_GET: u64 = 150;
    /// One SHA-256 syscall's base (agave `sha256_base_cost`).
    pub const SHA256_BASE: u64 = 85;
    /// Per slice hashed: `max(mem_op_base_cost 10, len / 2)` in agave; the
    /// 32-byte slices of a Merkle node cost 16 each, rounded up here.
    pub const SHA256_SLICE: u64 = 20;
    /// Reading the precompile instruction back through the Instructions
    /// sysvar: the current index and one instruction's header.
    pub const INSTRUCTIONS_SYSVAR: u64 = 1_000;
    /// Per signature read back from it: its 14-byte offsets record, the key
    /// and a copy of the message.
    pub const SIGNATURE_READ: u64 = 300;
    /// SlotHashes walked from oldest to newest: 512 entries of 40 bytes at
    /// ~20 units each (bounds-checked reads and a compare).
    pub const SLOT_HASHES_SCAN: u64 = 512 * 20;
    /// The plain arithmetic and checks of a handler (checked adds, state
    /// updates): an allowance per instruction.
    pub const HANDLER: u64 = 1_000;
}

use unit::*;

/// An estimate being added up.
#[derive(Clone, Copy, Default)]
struct Units(u64);

impl Units {
    /// Anchor's dispatch and `accounts` listed accounts.
    fn anchor(accounts: usize) -> Self {
        Units(ANCHOR_DISPATCH + ACCOUNT * accounts as u64 + HANDLER)
    }
    /// A typed program account of `space` bytes, decoded (and written back).
    fn typed(self, space: usize) -> Self {
        Units(self.0 + TYPED_ACCOUNT + (8 + space as u64) / BORSH_BYTES_PER_UNIT)
    }
    fn token_accounts(self, n: u64) -> Self {
        Units(self.0 + TOKEN_ACCOUNT * n)
    }
    fn mints(self, n: u64) -> Self {
        Units(self.0 + MINT_ACCOUNT * n)
    }
    /// `n` PDAs checked with a stored bump (`create_program_address`).
    fn pdas_checked(self, n: u64) -> Self {
        Units(self.0 + CREATE_PROGRAM_ADDRESS * n)
    }
    /// `n` PDAs derived with `find_program_address`.
    fn pdas_found(self, n: u64) -> Self {
        Units(self.0 + FIND_PROGRAM_ADDRESS_TRIES * CREATE_PROGRAM_ADDRESS * n)
    }
    /// `n` accounts created through a system-program CPI (rent read included).
    fn inits(self, n: u64) -> Self {
        Units(self.0 + (ANCHOR_INIT + INVOKE + SYSTEM_PROGRAM + SYSVAR_GET) * n)
    }
    /// `n` token transfers into the vault (signed by the user).
    fn transfers_in(self, n: u64) -> Self {
        Units(self.0 + (INVOKE + SPL_TRANSFER) * n)
    }
    /// `n` token transfers out of the vault (signed by the config PDA, whose
    /// seeds `invoke_signed` checks).
    fn transfers_out(self, n: u64) -> Self {
        Units(self.0 + (INVOKE + SPL_TRANSFER + CREATE_PROGRAM_ADDRESS) * n)
    }
    fn events(self, n: u64) -> Self {
        Units(self.0 + EVENT * n)
    }
    fn sysvars(self, n: u64) -> Self {
        Units(self.0 + SYSVAR_GET * n)
    }
    /// `n` SHA-256 calls of `slices` slices each.
    fn sha256(self, n: u64, slices: u64) -> Self {
        Units(self.0 + (SHA256_BASE + SHA256_SLICE * slices) * n)
    }
    /// `n` signatures read back from the ed25519 instruction.
    fn signatures(self, n: u64) -> Self {
        Units(self.0 + INSTRUCTIONS_SYSVAR + SIGNATURE_READ * n)
    }
    fn plus(self, units: u64) -> Self {
        Units(self.0 + units)
    }
}

/// Accounts of `ix` beyond those its instruction with no entries has.
fn extra_accounts(ix: &Instruction, fixed: usize) -> u64 {
    ix.accounts.len().saturating_sub(fixed) as u64
}

/// 32-byte proof hashes in `ix`'s data beyond a `fixed`-byte prefix.
fn proof_hashes(ix: &Instruction, fixed: usize) -> u64 {
    (ix.data.len().saturating_sub(fixed) / 32) as u64
}

/// Fixed account counts of the instructions whose account lists grow with
/// their entries, read off the builders so that they follow the program.
fn fixed_accounts(kind: Fixed) -> usize {
    let k = Pubkey::default();
    match kind {
        Fixed::Redeem => crate::ix::redeem_vouchers(&k, &[]).accounts.len(),
        Fixed::Resolve => crate::ix::resolve_challenge(&k, &k, &k, &k, &k, &[], true)
            .accounts
            .len(),
    }
}

/// Data bytes before the proof of the instructions that carry one.
fn fixed_data(kind: Proof) -> usize {
    let k = Pubkey::default();
    match kind {
        Proof::Claim => crate::ix::claim_rewards(&k, &k, 0, 0, 0, Vec::new())
            .data
            .len(),
        Proof::Challenge => crate::ix::open_challenge(
            &k,
            &k,
            0,
            &k,
            crate::ix::ReceiptClaim {
                leaf_index: 0,
                task_id: [0; 32],
                receipt_digest: [0; 32],
                proof: Vec::new(),
            },
        )
        .data
        .len(),
    }
}

#[derive(Clone, Copy)]
enum Fixed {
    Redeem,
    Resolve,
}

#[derive(Clone, Copy)]
enum Proof {
    Claim,
    Challenge,
}

/// Compute units one Strata instruction is estimated to use; `None` if the
/// data matches none of the program's instructions.
fn strata(ix: &Instruction) -> Option<u64> {
    let d = ix.data.as_slice();
    let is = |disc: &[u8]| d.starts_with(disc);
    let n = ix.accounts.len();
    let units = if is(data::Initialize::DISCRIMINATOR) {
        // Config and vault created at found PDAs; the vault is initialised
        // through SPL Token; the mint is read; the program's ProgramData is
        // decoded to check the upgrade authority.
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .mints(1)
            .pdas_found(2)
            .inits(2)
            .plus(INVOKE + SPL_INITIALIZE_ACCOUNT)
            .plus(TYPED_ACCOUNT + 100)
            .sysvars(1)
            .events(1)
    } else if is(data::UpdateConfig::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .pdas_checked(1)
            .sysvars(1)
            .events(1)
    } else if is(data::AddRelayer::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Relayer::INIT_SPACE)
            .pdas_checked(1)
            .pdas_found(1)
            .inits(1)
            .events(1)
    } else if is(data::RemoveRelayer::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Relayer::INIT_SPACE)
            .pdas_checked(2)
            .events(1)
    } else if is(data::RegisterNode::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Node::INIT_SPACE)
            .pdas_found(1)
            .inits(1)
            .sysvars(1)
            .events(1)
    } else if is(data::UpdateNode::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Node::INIT_SPACE)
            .pdas_checked(2)
            .sysvars(1)
            .events(1)
    } else if is(data::Stake::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Node::INIT_SPACE)
            .token_accounts(2)
            .pdas_checked(2)
            .transfers_in(1)
            .sysvars(1)
            .events(1)
    } else if is(data::RequestUnstake::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Node::INIT_SPACE)
            .pdas_checked(2)
            .sysvars(1)
            .events(1)
    } else if is(data::WithdrawStake::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Node::INIT_SPACE)
            .token_accounts(2)
            .pdas_checked(2)
            .transfers_out(1)
            .sysvars(1)
            .events(1)
    } else if is(data::DeregisterNode::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Node::INIT_SPACE)
            .pdas_checked(1)
            .events(1)
    } else if is(data::Deposit::DISCRIMINATOR) {
        // init_if_needed: budgeted as the first deposit, which creates the escrow.
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Escrow::INIT_SPACE)
            .token_accounts(2)
            .pdas_checked(1)
            .pdas_found(1)
            .inits(1)
            .transfers_in(1)
            .events(1)
    } else if is(data::RequestWithdrawal::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Escrow::INIT_SPACE)
            .pdas_checked(2)
            .sysvars(1)
            .events(1)
    } else if is(data::Withdraw::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Escrow::INIT_SPACE)
            .token_accounts(2)
            .pdas_checked(2)
            .transfers_out(1)
            .sysvars(1)
            .events(1)
    } else if is(data::PostBatch::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Relayer::INIT_SPACE)
            .typed(Batch::INIT_SPACE)
            .pdas_checked(2)
            .pdas_found(1)
            .inits(1)
            .sysvars(1)
            .events(1)
    } else if is(data::SealBatch::DISCRIMINATOR) {
        // The batch seed hashes the slot hash with the root.
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Batch::INIT_SPACE)
            .pdas_checked(2)
            .plus(SLOT_HASHES_SCAN)
            .sha256(1, 3)
            .sysvars(1)
            .events(1)
    } else if is(data::RedeemVouchers::DISCRIMINATOR) {
        // Per voucher: escrow and channel found (not stored bumps), both
        // decoded and written, the node's token account decoded, a channel
        // created on first redemption (budgeted always) and a transfer out.
        let v = extra_accounts(ix, fixed_accounts(Fixed::Redeem)) / 3;
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .token_accounts(1)
            .pdas_checked(1)
            .signatures(v)
            .plus(
                v * (Units::default()
                    .typed(Escrow::INIT_SPACE)
                    .typed(Channel::INIT_SPACE)
                    .token_accounts(1)
                    .pdas_found(2)
                    .plus(INVOKE + SYSTEM_PROGRAM + CREATE_PROGRAM_ADDRESS + SYSVAR_GET)
                    .transfers_out(1)
                    .events(1)
                    .plus(HANDLER)
                    .0),
            )
    } else if is(data::OpenChallenge::DISCRIMINATOR) {
        // The receipt's leaf and one hash per proof level.
        let depth = proof_hashes(ix, fixed_data(Proof::Challenge));
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Batch::INIT_SPACE)
            .typed(Node::INIT_SPACE)
            .typed(Challenge::INIT_SPACE)
            .token_accounts(2)
            .pdas_checked(3)
            .pdas_found(1)
            .inits(1)
            .sha256(1, 5)
            .sha256(depth, 3)
            .transfers_in(1)
            .sysvars(1)
            .events(1)
    } else if is(data::DrawCommittee::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Challenge::INIT_SPACE)
            .pdas_checked(2)
            .plus(SLOT_HASHES_SCAN)
            .sha256(1, 3)
            .sysvars(1)
            .events(1)
    } else if is(data::ResolveChallenge::DISCRIMINATOR) {
        // Per verifier: its Node decoded, its PDA found, the sortition hash.
        let voters = extra_accounts(ix, fixed_accounts(Fixed::Resolve));
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Challenge::INIT_SPACE)
            .typed(Batch::INIT_SPACE)
            .typed(Node::INIT_SPACE)
            .token_accounts(2)
            .pdas_checked(3)
            .signatures(voters)
            .plus(
                voters
                    * (Units::default()
                        .typed(Node::INIT_SPACE)
                        .pdas_found(1)
                        .sha256(1, 2)
                        .plus(HANDLER)
                        .0),
            )
            .transfers_out(1)
            .sysvars(1)
            .events(1)
    } else if is(data::ExpireChallenge::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Challenge::INIT_SPACE)
            .typed(Batch::INIT_SPACE)
            .typed(Node::INIT_SPACE)
            .token_accounts(2)
            .pdas_checked(3)
            .transfers_out(1)
            .sysvars(1)
            .events(1)
    } else if is(data::CloseBatch::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(Batch::INIT_SPACE)
            .pdas_checked(2)
            .sysvars(1)
            .events(1)
    } else if is(data::FundRewards::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .token_accounts(2)
            .pdas_checked(1)
            .transfers_in(1)
            .events(1)
    } else if is(data::PublishRewards::DISCRIMINATOR) {
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(RewardEpoch::INIT_SPACE)
            .pdas_checked(1)
            .pdas_found(1)
            .inits(1)
            .sysvars(1)
            .events(1)
    } else if is(data::ClaimRewards::DISCRIMINATOR) {
        // init_if_needed: budgeted as the first claim, which creates the record.
        let depth = proof_hashes(ix, fixed_data(Proof::Claim));
        Units::anchor(n)
            .typed(Config::INIT_SPACE)
            .typed(RewardEpoch::INIT_SPACE)
            .typed(ClaimRecord::INIT_SPACE)
            .token_accounts(2)
            .pdas_checked(2)
            .pdas_found(1)
            .inits(1)
            .sha256(1, 4)
            .sha256(depth, 3)
            .transfers_out(1)
            .events(1)
    } else {
        return None;
    };
    Some(units.0)
}

/// Compute units `ix` is estimated to use: Strata's instructions from their
/// shape, SPL Token, the associated token account, system and compute
/// budget programs from published figures, the ed25519 precompile as 0
/// (precompiles are not metered; their signatures are paid in the fee), and
/// any other program as the runtime's per-instruction default.
pub fn estimate(ix: &Instruction) -> u64 {
    let program = ix.program_id;
    if program == crate::PROGRAM_ID {
        strata(ix).unwrap_or(UNKNOWN_PROGRAM_UNITS)
    } else if program == solana_sdk_ids::ed25519_program::ID {
        0
    } else if program == solana_sdk_ids::compute_budget::ID {
        COMPUTE_BUDGET_PROGRAM
    } else if program == solana_sdk_ids::system_program::ID {
        SYSTEM_PROGRAM
    } else if program == spl_token_interface::ID {
        // The first byte is SPL Token's instruction tag.
        match ix.data.first() {
            Some(0 | 20) => SPL_INITIALIZE_MINT,
            Some(1 | 16 | 18) => SPL_INITIALIZE_ACCOUNT,
            Some(3 | 12) => SPL_TRANSFER,
            Some(7 | 14) => SPL_MINT_TO,
            _ => SPL_OTHER,
        }
    } else if program == spl_associated_token_account_interface::program::ID {
        ATA_CREATE
    } else {
        UNKNOWN_PROGRAM_UNITS
    }
}

/// The compute-unit limit a transaction of `instructions` asks for: the sum
/// of their estimates plus the budget instructions themselves, times 3/2,
/// rounded up to a thousand, capped at [`MAX_COMPUTE_UNIT_LIMIT`].
pub fn limit(instructions: &[Instruction], priority_fee: bool) -> u32 {
    let budget_ixs = if priority_fee { 2 } else { 1 };
    let sum: u64 =
        instructions.iter().map(estimate).sum::<u64>() + budget_ixs * COMPUTE_BUDGET_PROGRAM;
    let with_margin = sum.saturating_mul(3).div_ceil(2).div_ceil(1_000) * 1_000;
    u32::try_from(with_margin)
        .unwrap_or(MAX_COMPUTE_UNIT_LIMIT)
        .min(MAX_COMPUTE_UNIT_LIMIT)
}

/// `instructions` preceded by a `SetComputeUnitLimit` sized by [`limit`]
/// (or `limit_override`), and by a `SetComputeUnitPrice` when
/// `priority_fee_micro_lamports` is not 0. Instructions that already carry a
/// compute budget instruction are returned unchanged: the caller chose.
pub fn with_budget(
    instructions: &[Instruction],
    priority_fee_micro_lamports: u64,
    limit_override: Option<u32>,
) -> Vec<Instruction> {
    if instructions
        .iter()
        .any(|ix| ix.program_id == solana_sdk_ids::compute_budget::ID)
    {
        return instructions.to_vec();
    }
    let priced = priority_fee_micro_lamports > 0;
    let units = limit_override.unwrap_or_else(|| limit(instructions, priced));
    let mut out = Vec::with_capacity(instructions.len() + 2);
    out.push(ComputeBudgetInstruction::set_compute_unit_limit(units));
    if priced {
        out.push(ComputeBudgetInstruction::set_compute_unit_price(
            priority_fee_micro_lamports,
        ));
    }
    out.extend_from_slice(instructions);
    out
}

/// The priority fee in lamports a transaction pays for `limit` units at
/// `micro_lamports` per unit (the runtime charges the requested limit, not
/// the units used).
pub fn priority_fee_lamports(limit: u32, micro_lamports: u64) -> u64 {
    u64::from(limit)
        .saturating_mul(micro_lamports)
        .div_ceil(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ix, params, ConfigParams};

    fn k() -> Pubkey {
        Pubkey::new_unique()
    }

    fn claim(levels: usize) -> ix::ReceiptClaim {
        ix::ReceiptClaim {
            leaf_index: 0,
            task_id: [0; 32],
            receipt_digest: [0; 32],
            proof: vec![[0; 32]; levels],
        }
    }

    #[test]
    fn every_program_instruction_has_an_estimate() {
        let p: ConfigParams = params::local();
        let voucher = ix::VoucherAccounts {
            client: k(),
            node: k(),
            node_token: k(),
        };
        let all = [
            ix::initialize(&k(), &k(), p, &k()),
            ix::update_config(&k(), p, &k()),
            ix::add_relayer(&k(), &k()),
            ix::remove_relayer(&k(), &k()),
            ix::register_node(&k(), vec![], Default::default(), 1),
            ix::update_node(&k(), vec![], Default::default(), 1),
            ix::stake(&k(), &k(), &k(), 1),
            ix::request_unstake(&k(), 1),
            ix::withdraw_stake(&k(), &k()),
            ix::deregister_node(&k()),
            ix::deposit(&k(), &k(), 1),
            ix::request_withdrawal(&k(), 1),
            ix::withdraw(&k(), &k()),
            ix::post_batch(&k(), 0, 0, [0; 32], 1, 1),
            ix::seal_batch(0),
            ix::redeem_vouchers(&k(), &[voucher]),
            ix::open_challenge(&k(), &k(), 0, &k(), claim(1)),
            ix::draw_committee(&k()),
            ix::resolve_challenge(&k(), &k(), &k(), &k(), &k(), &[k()], true),
            ix::expire_challenge(&k(), &k(), &k(), &k(), &k(), &k()),
            ix::close_batch(&k(), 0),
            ix::fund_rewards(&k(), &k(), 1),
            ix::publish_rewards(&k(), 0, [0; 32], 1, 1),
            ix::claim_rewards(&k(), &k(), 0, 1, 0, vec![[0; 32]]),
        ];
        for ix in &all {
            let units = strata(ix).expect("a known instruction");
            assert!((5_000..200_000).contains(&units), "{units}");
        }
    }

    #[test]
    fn estimates_grow_with_entries() {
        let voucher = || ix::VoucherAccounts {
            client: k(),
            node: k(),
            node_token: k(),
        };
        let one = estimate(&ix::redeem_vouchers(&k(), &[voucher()]));
        let three = estimate(&ix::redeem_vouchers(
            &k(),
            &[voucher(), voucher(), voucher()],
        ));
        assert!(three > 2 * one, "{one} {three}");
        let shallow = estimate(&ix::claim_rewards(&k(), &k(), 0, 1, 0, vec![]));
        let deep = estimate(&ix::claim_rewards(&k(), &k(), 0, 1, 0, vec![[0; 32]; 20]));
        assert_eq!(deep - shallow, 20 * (SHA256_BASE + 3 * SHA256_SLICE));
        let c0 = estimate(&ix::open_challenge(&k(), &k(), 0, &k(), claim(0)));
        let c20 = estimate(&ix::open_challenge(&k(), &k(), 0, &k(), claim(20)));
        assert_eq!(c20 - c0, 20 * (SHA256_BASE + 3 * SHA256_SLICE));
        let r1 = estimate(&ix::resolve_challenge(
            &k(),
            &k(),
            &k(),
            &k(),
            &k(),
            &[k()],
            true,
        ));
        let r3 = estimate(&ix::resolve_challenge(
            &k(),
            &k(),
            &k(),
            &k(),
            &k(),
            &[k(), k(), k()],
            true,
        ));
        assert!(r3 > r1);
    }

    #[test]
    fn limit_has_margin_and_cap() {
        let ixs = [ix::deposit(&k(), &k(), 1)];
        let sum = estimate(&ixs[0]) + COMPUTE_BUDGET_PROGRAM;
        let l = u64::from(limit(&ixs, false));
        assert!(l >= sum * 3 / 2 && l < sum * 3 / 2 + 1_000, "{l} {sum}");
        assert_eq!(l % 1_000, 0);
        let unknown = Instruction {
            program_id: k(),
            accounts: vec![],
            data: vec![],
        };
        let many = vec![unknown; 10];
        assert_eq!(limit(&many, false), MAX_COMPUTE_UNIT_LIMIT);
    }

    #[test]
    fn budget_instructions_lead_and_price_is_optional() {
        let ixs = [ix::deposit(&k(), &k(), 1)];
        let plain = with_budget(&ixs, 0, None);
        assert_eq!(plain.len(), 2);
        assert_eq!(plain[0].program_id, solana_sdk_ids::compute_budget::ID);
        assert_eq!(plain[0].data[0], 2, "SetComputeUnitLimit");
        assert_eq!(
            u32::from_le_bytes(plain[0].data[1..5].try_into().unwrap()),
            limit(&ixs, false)
        );
        let priced = with_budget(&ixs, 5_000, None);
        assert_eq!(priced.len(), 3);
        assert_eq!(priced[1].data[0], 3, "SetComputeUnitPrice");
        assert_eq!(
            u64::from_le_bytes(priced[1].data[1..9].try_into().unwrap()),
            5_000
        );
        // Already budgeted by the caller: left alone.
        assert_eq!(with_budget(&priced, 7, None), priced);
        let capped = with_budget(&ixs, 0, Some(MAX_COMPUTE_UNIT_LIMIT));
        assert_eq!(
            u32::from_le_bytes(capped[0].data[1..5].try_into().unwrap()),
            MAX_COMPUTE_UNIT_LIMIT
        );
        assert_eq!(priority_fee_lamports(100_000, 5_000), 500);
        assert_eq!(priority_fee_lamports(1, 1), 1);
    }
}
