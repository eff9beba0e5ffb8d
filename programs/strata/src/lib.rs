//! Strata's ledger on Solana: node stakes, client escrows, receipt batches,
//! client-signed vouchers, challenges with verifier verdicts and slashing,
//! and per-epoch reward roots.
//!
//! This file only lists the instructions; each lives in
//! `instructions/<name>.rs` with its accounts and checks. Account layouts are
//! in `state/`, refusals in `errors.rs`, events in `events.rs`. Merkle leaves,
//! signed messages and committee sortition come from `strata-primitives`,
//! which the off-chain code uses too, so both sides compute them the same way.
#![allow(unexpected_cfgs)]
// Anchor's generated code trips these; they are not ours to fix.
#![allow(clippy::too_many_arguments, clippy::result_large_err)]

use anchor_lang::prelude::*;

pub mod errors;
pub mod events;
pub mod instructions;
#[cfg(not(target_os = "solana"))]
pub mod native;
pub mod seed;
pub mod signatures;
pub mod state;
pub mod vault;

use instructions::*;
use state::{Capacity, ConfigParams};

declare_id!("StRaTa1111111111111111111111111111111111111");

/// The program's instructions.
#[program]
pub mod strata {
    use super::*;

    /// Creates the config and vault (once; the deployer only).
    pub fn initialize(
        ctx: Context<Initialize>,
        params: ConfigParams,
        reward_authority: Pubkey,
    ) -> Result<()> {
        instructions::initialize::handler(ctx, params, reward_authority)
    }

    /// Updates parameters and the reward authority (admin).
    pub fn update_config(
        ctx: Context<UpdateConfig>,
        params: ConfigParams,
        reward_authority: Pubkey,
    ) -> Result<()> {
        instructions::update_config::handler(ctx, params, reward_authority)
    }

    /// Allows a relayer (admin).
    pub fn add_relayer(ctx: Context<AddRelayer>, relayer: Pubkey) -> Result<()> {
        instructions::add_relayer::handler(ctx, relayer)
    }

    /// Revokes a relayer (admin).
    pub fn remove_relayer(ctx: Context<RemoveRelayer>) -> Result<()> {
        instructions::remove_relayer::handler(ctx)
    }

    /// Registers a node.
    pub fn register_node(
        ctx: Context<RegisterNode>,
        multiaddrs: Vec<String>,
        capacity: Capacity,
        roles: u8,
    ) -> Result<()> {
        instructions::register_node::handler(ctx, multiaddrs, capacity, roles)
    }

    /// Updates a node's endpoints, capacity and roles.
    pub fn update_node(
        ctx: Context<UpdateNode>,
        multiaddrs: Vec<String>,
        capacity: Capacity,
        roles: u8,
    ) -> Result<()> {
        instructions::update_node::handler(ctx, multiaddrs, capacity, roles)
    }

    /// Adds stake.
    pub fn stake(ctx: Context<Stake>, amount: u64) -> Result<()> {
        instructions::stake::handler(ctx, amount)
    }

    /// Starts unbonding stake.
    pub fn request_unstake(ctx: Context<RequestUnstake>, amount: u64) -> Result<()> {
        instructions::request_unstake::handler(ctx, amount)
    }

    /// Withdraws unbonded stake.
    pub fn withdraw_stake(ctx: Context<WithdrawStake>) -> Result<()> {
        instructions::withdraw_stake::handler(ctx)
    }

    /// Closes a node with no stake.
    pub fn deregister_node(ctx: Context<DeregisterNode>) -> Result<()> {
        instructions::deregister_node::handler(ctx)
    }

    /// Deposits into a client's escrow.
    pub fn deposit(ctx: Context<Deposit>, amount: u64) -> Result<()> {
        instructions::deposit::handler(ctx, amount)
    }

    /// Requests an escrow withdrawal.
    pub fn request_withdrawal(ctx: Context<RequestWithdrawal>, amount: u64) -> Result<()> {
        instructions::request_withdrawal::handler(ctx, amount)
    }

    /// Withdraws from escrow after the delay.
    pub fn withdraw(ctx: Context<Withdraw>) -> Result<()> {
        instructions::withdraw::handler(ctx)
    }

    /// Posts a receipt batch root (relayer).
    pub fn post_batch(
        ctx: Context<PostBatch>,
        epoch: i64,
        root: [u8; 32],
        task_count: u32,
        work_units: u64,
    ) -> Result<()> {
        instructions::post_batch::handler(ctx, epoch, root, task_count, work_units)
    }

    /// Draws a batch's audit seed once its seed slot has passed (anyone).
    pub fn seal_batch(ctx: Context<SealBatch>) -> Result<()> {
        instructions::seal_batch::handler(ctx)
    }

    /// Redeems client-signed vouchers in a batch.
    pub fn redeem_vouchers<'info>(ctx: Context<'info, RedeemVouchers<'info>>) -> Result<()> {
        instructions::redeem_vouchers::handler(ctx)
    }

    /// Opens a bonded challenge against a receipt.
    pub fn open_challenge(ctx: Context<OpenChallenge>, claim: ReceiptClaim) -> Result<()> {
        instructions::open_challenge::handler(ctx, claim)
    }

    /// Draws a challenge's committee seed once its seed slot has passed (anyone).
    pub fn draw_committee(ctx: Context<DrawCommittee>) -> Result<()> {
        instructions::draw_committee::handler(ctx)
    }

    /// Resolves a challenge with a quorum-signed verdict.
    pub fn resolve_challenge<'info>(
        ctx: Context<'info, ResolveChallenge<'info>>,
        upheld: bool,
    ) -> Result<()> {
        instructions::resolve_challenge::handler(ctx, upheld)
    }

    /// Expires a challenge past its deadline.
    pub fn expire_challenge(ctx: Context<ExpireChallenge>) -> Result<()> {
        instructions::expire_challenge::handler(ctx)
    }

    /// Closes a batch after its challenge window, rent to its relayer.
    pub fn close_batch(ctx: Context<CloseBatch>) -> Result<()> {
        instructions::close_batch::handler(ctx)
    }

    /// Adds to the reward pool.
    pub fn fund_rewards(ctx: Context<FundRewards>, amount: u64) -> Result<()> {
        instructions::fund_rewards::handler(ctx, amount)
    }

    /// Publishes an epoch's reward root (reward authority).
    pub fn publish_rewards(
        ctx: Context<PublishRewards>,
        epoch: i64,
        root: [u8; 32],
        leaf_count: u32,
        declared: u64,
    ) -> Result<()> {
        instructions::publish_rewards::handler(ctx, epoch, root, leaf_count, declared)
    }

    /// Claims rewards with a Merkle proof.
    pub fn claim_rewards(
        ctx: Context<ClaimRewards>,
        cumulative: u64,
        leaf_index: u32,
        proof: Vec<[u8; 32]>,
    ) -> Result<()> {
        instructions::claim_rewards::handler(ctx, cumulative, leaf_index, proof)
    }
}
