use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

use crate::errors::StrataError;
use crate::events::{emit_event, RewardsClaimed};
use crate::state::{ClaimRecord, Config, RewardEpoch, STATE_VERSION};
use crate::vault::pay_out;
use strata_primitives::merkle::{domains::Ledger, verify};

/// Pays an operator its cumulative rewards (proved against an epoch's root)
/// minus what it already claimed, as far as the epoch's remaining payout
/// limit and the reward pool allow; the rest stays owed and is claimed
/// against a later root (claims used to be all or nothing, so a node owed
/// more than one epoch's cap could never claim at all). A repeated claim
/// with nothing owed is refused with `NothingToClaim`; a claim when the
/// epoch's limit is used up with `RewardCapExceeded`, when the pool is
/// empty with `InsufficientRewardPool`.
#[derive(Accounts)]
pub struct ClaimRewards<'info> {
    /// The operator named in the reward leaf; pays rent on first claim.
    #[account(mut)]
    pub operator: Signer<'info>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump, has_one = vault)]
    pub config: Account<'info, Config>,
    /// The epoch whose root proves the claim.
    #[account(mut, seeds = [RewardEpoch::SEED, &reward_epoch.epoch.to_le_bytes()], bump = reward_epoch.bump)]
    pub reward_epoch: Account<'info, RewardEpoch>,
    /// What this operator claimed so far.
    #[account(
        init_if_needed,
        payer = operator,
        space = 8 + ClaimRecord::INIT_SPACE,
        seeds = [ClaimRecord::SEED, operator.key().as_ref()],
        bump,
    )]
    pub claim_record: Account<'info, ClaimRecord>,
    /// Destination token account.
    #[account(mut, token::mint = config.mint)]
    pub operator_token: Account<'info, TokenAccount>,
    /// The vault.
    #[account(mut)]
    pub vault: Account<'info, TokenAccount>,
    /// SPL Token.
    pub token_program: Program<'info, Token>,
    /// System program.
    pub system_program: Program<'info, System>,
}

/// Handler.
pub fn handler(
    ctx: Context<ClaimRewards>,
    cumulative: u64,
    leaf_index: u32,
    proof: Vec<[u8; 32]>,
) -> Result<()> {
    let a = ctx.accounts;
    let operator = a.operator.key();
    verify::<Ledger>(
        &a.reward_epoch.root,
        Ledger::reward_leaf(operator.as_array(), cumulative),
        u64::from(leaf_index),
        u64::from(a.reward_epoch.leaf_count),
        &proof,
    )
    .map_err(|_| error!(StrataError::InvalidMerkleProof))?;
    let record = &mut a.claim_record;
    if record.version == 0 {
        record.version = STATE_VERSION;
        record.bump = ctx.bumps.claim_record;
        record.operator = operator;
    }
    require!(cumulative > record.claimed, StrataError::NothingToClaim);
    let owed = cumulative - record.claimed;
    require!(a.reward_epoch.remaining > 0, StrataError::RewardCapExceeded);
    require!(
        a.config.reward_pool > 0,
        StrataError::InsufficientRewardPool
    );
    // Pay what fits; `claimed` grows by what was paid, so the rest is owed
    // against the next root (whose cumulative is at least this one's).
    let payout = owed.min(a.reward_epoch.remaining).min(a.config.reward_pool);
    record.claimed += payout;
    record.last_epoch = a.reward_epoch.epoch;
    a.reward_epoch.remaining -= payout;
    a.config.reward_pool -= payout;
    pay_out(
        &a.token_program,
        &a.config,
        &a.vault,
        a.operator_token.to_account_info(),
        payout,
    )?;
    emit_event(&RewardsClaimed {
        operator,
        epoch: a.reward_epoch.epoch,
        cumulative,
        paid: payout,
    });
    Ok(())
}
