use anchor_lang::prelude::*;
use strata_primitives::sortition::challenge_seed;

use crate::errors::StrataError;
use crate::events::{emit_event, CommitteeDrawn, SeedRearmed};
use crate::seed::{draw, Drawn};
use crate::state::{Challenge, ChallengeStatus, Config};

/// Draws a challenge's committee seed from the hash of its seed slot, a slot
/// after the challenge was opened: the challenger could not know, let alone
/// steer, who judges it. Anyone may call it once the seed slot has passed.
#[derive(Accounts)]
pub struct DrawCommittee<'info> {
    /// The config (for the seed delay when a draw must be re-armed).
    #[account(seeds = [Config::SEED], bump = config.bump)]
    pub config: Account<'info, Config>,
    /// The challenge.
    #[account(
        mut,
        seeds = [Challenge::SEED, challenge.batch.as_ref(), &challenge.leaf_index.to_le_bytes()],
        bump = challenge.bump,
    )]
    pub challenge: Account<'info, Challenge>,
    /// The SlotHashes sysvar.
    /// CHECK: address constrained; parsed by `seed::draw`.
    #[account(address = solana_sdk_ids::sysvar::slot_hashes::ID)]
    pub slot_hashes: UncheckedAccount<'info>,
}

/// Handler.
pub fn handler(ctx: Context<DrawCommittee>) -> Result<()> {
    let challenge = &mut ctx.accounts.challenge;
    require!(
        challenge.status == ChallengeStatus::Open,
        StrataError::ChallengeNotOpen
    );
    require!(challenge.seed == [0; 32], StrataError::SeedAlreadyDrawn);
    let key = challenge.key();
    match draw(
        &ctx.accounts.slot_hashes,
        challenge.seed_slot,
        ctx.accounts.config.params.seed_delay_slots,
    )? {
        Drawn::Ready { hash, .. } => {
            challenge.seed = challenge_seed(&hash, key.as_array());
            emit_event(&CommitteeDrawn {
                challenge: key,
                seed: challenge.seed,
            });
        }
        Drawn::Rearmed { seed_slot } => {
            challenge.seed_slot = seed_slot;
            emit_event(&SeedRearmed {
                account: key,
                seed_slot,
            });
        }
    }
    Ok(())
}
