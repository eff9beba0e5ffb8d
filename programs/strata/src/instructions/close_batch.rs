use anchor_lang::prelude::*;

use crate::errors::StrataError;
use crate::events::{emit_event, BatchClosed};
use crate::state::{Batch, Config};

/// Closes a batch record once nothing can happen to it any more, returning
/// its rent to the relayer that posted it (which signs: it decides when its
/// off-chain archive no longer needs the on-chain root). Batches used to
/// stay forever, so a relayer's rent grew with every batch it posted.
///
/// Refused while the batch's challenge window is open (`ChallengeWindowOpen`:
/// its receipts may still be challenged, and a challenge needs the root) and
/// while a challenge against it awaits a verdict or expiry
/// (`BatchHasOpenChallenges`). Its root stays auditable afterwards from the
/// `BatchPosted` event in the posting transaction's log.
#[derive(Accounts)]
pub struct CloseBatch<'info> {
    /// The relayer that posted the batch; receives the rent.
    #[account(mut, address = batch.relayer @ StrataError::Unauthorized)]
    pub authority: Signer<'info>,
    /// The config (for the challenge window).
    #[account(seeds = [Config::SEED], bump = config.bump)]
    pub config: Account<'info, Config>,
    /// The batch; closed here.
    #[account(
        mut,
        close = authority,
        seeds = [Batch::SEED, &batch.id.to_le_bytes()],
        bump = batch.bump,
    )]
    pub batch: Account<'info, Batch>,
}

/// Handler.
pub fn handler(ctx: Context<CloseBatch>) -> Result<()> {
    let batch = &ctx.accounts.batch;
    // `open_challenge` accepts up to and including the window's end.
    let window_end = batch
        .posted_at
        .checked_add(ctx.accounts.config.params.challenge_window)
        .ok_or(StrataError::MathOverflow)?;
    require!(
        Clock::get()?.unix_timestamp > window_end,
        StrataError::ChallengeWindowOpen
    );
    require!(
        batch.open_challenges == 0,
        StrataError::BatchHasOpenChallenges
    );
    emit_event(&BatchClosed {
        id: batch.id,
        relayer: batch.relayer,
        lamports: batch.to_account_info().lamports(),
    });
    Ok(())
}
