use std::collections::BTreeSet;

use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

use crate::errors::StrataError;
use crate::events::{emit_event, ChallengeResolved};
use crate::signatures::verified_before_current;
use crate::state::{Batch, Challenge, ChallengeStatus, Config, Node, MAX_COMMITTEE};
use crate::vault::{bps_of, pay_out};
use strata_primitives::messages::verdict_message;
use strata_primitives::sortition::is_selected;

/// Settles a challenge with a verdict signed by a quorum of the verifiers the
/// sortition selected from the committee seed (`draw_committee` first). Only
/// verifiers whose stake and role predate the challenge count, never the
/// accused; the quorum, slash and challenger share are the challenge's own
/// terms, fixed when it opened. The ed25519 instruction right before this one carries
/// one signature per verifier; `remaining_accounts` carries their `Node`
/// records in the same order. Upheld: the node is slashed (bonded stake
/// first, then unbonding stake), the challenger gets the bond back plus a
/// share, the rest funds rewards. Rejected: the bond goes to the reward pool.
#[derive(Accounts)]
pub struct ResolveChallenge<'info> {
    /// Anyone may submit a verdict the quorum signed.
    pub submitter: Signer<'info>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump, has_one = vault)]
    pub config: Account<'info, Config>,
    /// The challenge.
    #[account(
        mut,
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
    /// The Instructions sysvar.
    /// CHECK: address checked in `verified_before_current`.
    pub instructions: UncheckedAccount<'info>,
    /// SPL Token.
    pub token_program: Program<'info, Token>,
}

/// Handler.
pub fn handler<'info>(ctx: Context<'info, ResolveChallenge<'info>>, upheld: bool) -> Result<()> {
    let a = ctx.accounts;
    require!(
        a.challenge.status == ChallengeStatus::Open,
        StrataError::ChallengeNotOpen
    );
    require!(
        Clock::get()?.unix_timestamp <= a.challenge.deadline,
        StrataError::DeadlinePassed
    );
    require!(a.challenge.seed != [0; 32], StrataError::CommitteeNotDrawn);

    let signed = verified_before_current(&a.instructions)?;
    require!(
        signed.len() <= usize::from(MAX_COMMITTEE),
        StrataError::BatchTooLarge
    );
    require!(
        signed.len() == ctx.remaining_accounts.len(),
        StrataError::SignatureCountMismatch
    );
    let expected = verdict_message(
        ctx.program_id.as_array(),
        a.challenge.key().as_array(),
        upheld,
    );
    let min_stake = a.config.params.min_stake;
    let terms = a.challenge.terms;
    let mut voters = BTreeSet::new();
    for (sig, info) in signed.iter().zip(ctx.remaining_accounts) {
        let verifier = Account::<Node>::try_from(info)?;
        let (pda, _) =
            Pubkey::find_program_address(&[Node::SEED, verifier.operator.as_ref()], ctx.program_id);
        require_keys_eq!(info.key(), pda, StrataError::InvalidPda);
        require_keys_eq!(sig.signer, verifier.operator, StrataError::WrongSigner);
        require!(sig.message == expected, StrataError::MessageMismatch);
        require_keys_neq!(
            verifier.operator,
            a.challenge.node,
            StrataError::SelfVerification
        );
        require!(
            verifier.is_verifier() && verifier.stake >= min_stake,
            StrataError::NotAVerifier
        );
        // Stake or a role that arrived after the challenge opened could have
        // been placed knowing more than the challenger did: it never counts.
        require!(
            verifier.is_eligible_verifier(min_stake, a.challenge.opened_slot),
            StrataError::VerifierNotEligible
        );
        require!(
            is_selected(
                &a.challenge.seed,
                verifier.operator.as_array(),
                verifier.verifier_stake(),
                a.challenge.total_verifier_stake,
                terms.committee_size
            ),
            StrataError::VerifierNotSelected
        );
        voters.insert(verifier.operator);
    }
    require!(
        voters.len() >= usize::from(terms.verifier_quorum),
        StrataError::QuorumNotReached
    );

    let bond = a.challenge.bond;
    a.config.bonds_held = a
        .config
        .bonds_held
        .checked_sub(bond)
        .ok_or(StrataError::MathOverflow)?;
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
    let (slashed, to_challenger) = if upheld {
        let slashed = slash(&mut a.node, &mut a.config, terms.slash_bps)?;
        let share = bps_of(slashed, terms.challenger_share_bps);
        a.config.reward_pool = a
            .config
            .reward_pool
            .checked_add(slashed - share)
            .ok_or(StrataError::MathOverflow)?;
        (
            slashed,
            bond.checked_add(share).ok_or(StrataError::MathOverflow)?,
        )
    } else {
        a.config.reward_pool = a
            .config
            .reward_pool
            .checked_add(bond)
            .ok_or(StrataError::MathOverflow)?;
        (0, 0)
    };
    a.challenge.status = if upheld {
        ChallengeStatus::Upheld
    } else {
        ChallengeStatus::Rejected
    };
    a.challenge.slashed = slashed;
    pay_out(
        &a.token_program,
        &a.config,
        &a.vault,
        a.challenger_token.to_account_info(),
        to_challenger,
    )?;
    emit_event(&ChallengeResolved {
        challenge: a.challenge.key(),
        node: a.node.operator,
        upheld,
        slashed,
        to_challenger,
        voters: voters.into_iter().collect(),
    });
    Ok(())
}

/// Takes `slash_bps` of everything the node has at stake, bonded first.
fn slash(node: &mut Node, config: &mut Config, slash_bps: u16) -> Result<u64> {
    let at_stake = node
        .stake
        .checked_add(node.unbonding)
        .ok_or(StrataError::MathOverflow)?;
    let amount = bps_of(at_stake, slash_bps);
    let verifier_before = node.verifier_stake();
    let from_stake = amount.min(node.stake);
    node.stake -= from_stake;
    node.unbonding -= amount - from_stake;
    node.slashed_total = node
        .slashed_total
        .checked_add(amount)
        .ok_or(StrataError::MathOverflow)?;
    config.total_stake = config
        .total_stake
        .checked_sub(amount)
        .ok_or(StrataError::MathOverflow)?;
    config.replace_verifier_stake(verifier_before, node.verifier_stake())?;
    Ok(amount)
}
