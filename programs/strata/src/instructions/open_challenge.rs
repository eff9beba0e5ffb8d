use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};
use strata_primitives::merkle::{domains::Ledger, verify};

use crate::errors::StrataError;
use crate::events::{emit_event, ChallengeOpened};
use crate::state::{
    Batch, Challenge, ChallengeStatus, ChallengeTerms, Config, Node, STATE_VERSION,
};
use crate::vault::pay_in;

/// What the challenger proves: one receipt leaf of a posted batch.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReceiptClaim {
    /// Index of the leaf in the batch.
    pub leaf_index: u32,
    /// Task id in the receipt.
    pub task_id: [u8; 32],
    /// Digest of the full receipt.
    pub receipt_digest: [u8; 32],
    /// Merkle proof (siblings from the bottom up).
    pub proof: Vec<[u8; 32]>,
}

/// Opens a bonded challenge against one receipt within the batch's challenge
/// window. The committee that judges it is drawn later (`draw_committee`)
/// from the hash of a slot after this one, so the challenger can neither know
/// nor steer it; the parameters it is judged by are fixed now.
///
/// Refused: a node challenging its own receipt (`SelfChallenge`); a proof
/// that does not lead to the batch root; a closed window; a network with no
/// verifier stake besides the accused's.
#[derive(Accounts)]
#[instruction(claim: ReceiptClaim)]
pub struct OpenChallenge<'info> {
    /// The challenger; pays rent and the bond. Never the accused: a node
    /// could otherwise recover part of its own slash.
    #[account(mut, constraint = challenger.key() != node.operator @ StrataError::SelfChallenge)]
    pub challenger: Signer<'info>,
    /// Source of the bond (the challenger's, so payouts go back to it).
    #[account(
        mut,
        token::mint = config.mint,
        token::authority = challenger,
    )]
    pub challenger_token: Account<'info, TokenAccount>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump, has_one = vault)]
    pub config: Account<'info, Config>,
    /// The batch holding the receipt (counts its open challenges).
    #[account(mut, seeds = [Batch::SEED, &batch.id.to_le_bytes()], bump = batch.bump)]
    pub batch: Account<'info, Batch>,
    /// The accused node.
    #[account(mut, seeds = [Node::SEED, node.operator.as_ref()], bump = node.bump)]
    pub node: Account<'info, Node>,
    /// The new challenge. A challenge that expired without a verdict was
    /// closed, so the same receipt can be challenged again.
    #[account(
        init,
        payer = challenger,
        space = 8 + Challenge::INIT_SPACE,
        seeds = [Challenge::SEED, batch.key().as_ref(), &claim.leaf_index.to_le_bytes()],
        bump,
    )]
    pub challenge: Account<'info, Challenge>,
    /// The vault.
    #[account(mut)]
    pub vault: Account<'info, TokenAccount>,
    /// SPL Token.
    pub token_program: Program<'info, Token>,
    /// System program.
    pub system_program: Program<'info, System>,
}

/// Handler.
pub fn handler(ctx: Context<OpenChallenge>, claim: ReceiptClaim) -> Result<()> {
    let a = ctx.accounts;
    let clock = Clock::get()?;
    let params = a.config.params;
    let window_end = a
        .batch
        .posted_at
        .checked_add(params.challenge_window)
        .ok_or(StrataError::MathOverflow)?;
    require!(
        clock.unix_timestamp <= window_end,
        StrataError::ChallengeWindowClosed
    );
    let leaf = Ledger::receipt_leaf(
        &claim.task_id,
        a.node.operator.as_array(),
        &claim.receipt_digest,
    );
    verify::<Ledger>(
        &a.batch.root,
        leaf,
        u64::from(claim.leaf_index),
        u64::from(a.batch.task_count),
        &claim.proof,
    )
    .map_err(|_| error!(StrataError::InvalidMerkleProof))?;
    // The accused never sits on its own committee, so its stake is not in
    // the sortition's denominator either.
    let total_verifier_stake = a
        .config
        .total_verifier_stake
        .checked_sub(a.node.verifier_stake())
        .ok_or(StrataError::MathOverflow)?;
    require!(total_verifier_stake > 0, StrataError::NoVerifiers);

    let bond = params.challenge_bond;
    pay_in(
        &a.token_program,
        &a.challenger_token,
        &a.vault,
        &a.challenger,
        bond,
    )?;
    a.config.bonds_held = a
        .config
        .bonds_held
        .checked_add(bond)
        .ok_or(StrataError::MathOverflow)?;
    // Full counters refuse the challenge by name rather than wrap (which
    // would free a node's stake, or a batch for closing, under an open one).
    a.node.open_challenges = a
        .node
        .open_challenges
        .checked_add(1)
        .ok_or(StrataError::TooManyOpenChallenges)?;
    a.batch.open_challenges = a
        .batch
        .open_challenges
        .checked_add(1)
        .ok_or(StrataError::TooManyOpenChallenges)?;

    let seed_slot = clock
        .slot
        .checked_add(u64::from(params.seed_delay_slots))
        .ok_or(StrataError::MathOverflow)?;
    a.challenge.set_inner(Challenge {
        version: STATE_VERSION,
        bump: ctx.bumps.challenge,
        challenger: a.challenger.key(),
        node: a.node.operator,
        batch: a.batch.key(),
        leaf_index: claim.leaf_index,
        task_id: claim.task_id,
        bond,
        opened_at: clock.unix_timestamp,
        deadline: clock
            .unix_timestamp
            .checked_add(params.verdict_timeout)
            .ok_or(StrataError::MathOverflow)?,
        opened_slot: clock.slot,
        seed_slot,
        seed: [0; 32],
        total_verifier_stake,
        terms: ChallengeTerms {
            slash_bps: params.slash_bps,
            challenger_share_bps: params.challenger_share_bps,
            verifier_quorum: params.verifier_quorum,
            committee_size: params.committee_size,
        },
        status: ChallengeStatus::Open,
        slashed: 0,
        reserved: [0; 16],
    });
    emit_event(&ChallengeOpened {
        challenge: a.challenge.key(),
        node: a.node.operator,
        batch: a.batch.key(),
        leaf_index: claim.leaf_index,
        challenger: a.challenger.key(),
        task_id: claim.task_id,
        seed_slot,
    });
    Ok(())
}
