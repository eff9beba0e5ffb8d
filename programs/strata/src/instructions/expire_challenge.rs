use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

use crate::errors::StrataError;
use crate::events::{emit_event, ChallengeExpired};
use crate::state::{Batch, Challenge, ChallengeStatus, Config, Node};
use crate::vault::pay_out;

/// Closes a challenge that got no verdict by its deadline. Nobody proved the
/// challenger wrong, so the bond goes back; the node's stake is freed. The
/// account is closed (its rent goes back to the challenger), so the receipt
/// can be challenged again: a committee that failed to act must not make a
/// receipt unchallengeable.
#[derive(Accounts)]
pub struct ExpireChallenge<'info> {
    /// Anyone may expire a stale challenge.
    pub submitter: Signer<'info>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump, has_one = vault)]
    pub config: Account<'info, Config>,
    /// The challenger's wallet, which paid the challenge's rent.
    #[account(mut, address = challenge.challenger @ StrataError::InvalidAccount)]
    pub challenger: SystemAccount<'info>,
    /// The challenge; closed here.
    #[account(
        mut,
        close = challenger,
        seeds = [Challenge::SEED, challenge.batch.as_ref(), &challenge.leaf_index.to_le_bytes()],
        bump = challenge.bump,
    )]
    pub challenge: Account<'info, Challenge>,
    /// The batch holding the challenged receipt (counts its open challenges).
    #[account(mut, address = challenge.batch @ StrataError::InvalidAccount)]
    pub batch: Account<'info, Batch>,
    /// The accused node.
    #[account(mut, seeds = [Node::SEED, challenge.node.as_ref()], bump = node.bump)]
    pub node: Account<'info, Node>,
    /// The challenger's token account.
    #[account(mut, token::mint = config.mint, token::authority = challenge.challenger)]
    pub challenger_token: Account<'info, TokenAccount>,
    /// The vault.
    #[account(mut)]
    pub vault: Account<'info, TokenAccount>,
    /// SPL Token.
    pub token_program: Program<'info, Token>,
}

/// Handler.
pub fn handler(ctx: Context<ExpireChallenge>) -> Result<()> {
    let a = ctx.accounts;
    require!(
        a.challenge.status == ChallengeStatus::Open,
        StrataError::ChallengeNotOpen
    );
    require!(
        Clock::get()?.unix_timestamp > a.challenge.deadline,
        StrataError::DeadlineNotReached
    );
    let bond = a.challenge.bond;
    // Every open challenge was counted on both when it opened.
    a.node.open_challenges = a
        .node
        .open_challenges
        .checked_sub(1)
        .ok_or(StrataError::MathOverflow)?;
    a.batch.open_challenges = a
        .batch
        .open_challenges
        .checked_sub(1)
        .ok_or(StrataError::MathOverflow)?;
    a.config.bonds_held = a
        .config
        .bonds_held
        .checked_sub(bond)
        .ok_or(StrataError::MathOverflow)?;
    pay_out(
        &a.token_program,
        &a.config,
        &a.vault,
        a.challenger_token.to_account_info(),
        bond,
    )?;
    emit_event(&ChallengeExpired {
        challenge: a.challenge.key(),
        node: a.node.operator,
    });
    Ok(())
}
