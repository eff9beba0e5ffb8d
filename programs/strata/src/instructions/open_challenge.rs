use anchor_lang::prelude::*;
use anchor_spl::token::{Token, TokenAccount};

use crate::errors::StrataError;
use crate::events::{emit_event, ChallengeOpened};
use crate::state::{Batch, Challenge, ChallengeStatus, Config, Node, STATE_VERSION};
use crate::vault::pay_in;
use strata_primitives::merkle::{domains::Ledger, verify};
use strata_primitives::sortition::challenge_seed;

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

/// Opens a bonded challenge against one receipt within the batch's
/// challenge window. The verifier committee is fixed by the latest slot hash,
/// which the challenger cannot choose.
#[derive(Accounts)]
#[instruction(claim: ReceiptClaim)]
pub struct OpenChallenge<'info> {
    /// The challenger; pays rent and the bond.
    #[account(mut)]
    pub challenger: Signer<'info>,
    /// Source of the bond.
    #[account(
        mut,
        token::mint = config.mint,
        token::authority = challenger,
    )]
    pub challenger_token: Account<'info, TokenAccount>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump, has_one = vault)]
    pub config: Account<'info, Config>,
    /// The batch holding the receipt.
    #[account(seeds = [Batch::SEED, &batch.id.to_le_bytes()], bump = batch.bump)]
    pub batch: Account<'info, Batch>,
    /// The accused node.
    #[account(mut, seeds = [Node::SEED, node.operator.as_ref()], bump = node.bump)]
    pub node: Account<'info, Node>,
    /// The new challenge.
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
    /// The SlotHashes sysvar.
    /// CHECK: address constrained; parsed by `latest_slot_hash`.
    #[account(address = solana_sdk_ids::sysvar::slot_hashes::ID)]
    pub slot_hashes: UncheckedAccount<'info>,
    /// SPL Token.
    pub token_program: Program<'info, Token>,
    /// System program.
    pub system_program: Program<'info, System>,
}

/// Handler.
pub fn handler(ctx: Context<OpenChallenge>, claim: ReceiptClaim) -> Result<()> {
    let a = ctx.accounts;
    let now = Clock::get()?.unix_timestamp;
    let window_end = a
        .batch
        .posted_at
        .checked_add(a.config.params.challenge_window)
        .ok_or(StrataError::MathOverflow)?;
    require!(now <= window_end, StrataError::ChallengeWindowClosed);
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
    require!(a.config.total_verifier_stake > 0, StrataError::NoVerifiers);

    let bond = a.config.params.challenge_bond;
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
    a.node.open_challenges = a
        .node
        .open_challenges
        .checked_add(1)
        .ok_or(StrataError::MathOverflow)?;

    let key = a.challenge.key();
    let seed = challenge_seed(&latest_slot_hash(&a.slot_hashes)?, key.as_array());
    a.challenge.set_inner(Challenge {
        version: STATE_VERSION,
        bump: ctx.bumps.challenge,
        challenger: a.challenger.key(),
        node: a.node.operator,
        batch: a.batch.key(),
        leaf_index: claim.leaf_index,
        task_id: claim.task_id,
        bond,
        opened_at: now,
        deadline: now
            .checked_add(a.config.params.verdict_timeout)
            .ok_or(StrataError::MathOverflow)?,
        seed,
        total_verifier_stake: a.config.total_verifier_stake,
        status: ChallengeStatus::Open,
        slashed: 0,
        reserved: [0; 16],
    });
    emit_event(&ChallengeOpened {
        challenge: key,
        node: a.node.operator,
        batch: a.batch.key(),
        leaf_index: claim.leaf_index,
        challenger: a.challenger.key(),
        seed,
    });
    Ok(())
}

/// The most recent hash in the SlotHashes sysvar (layout: u64 count, then
/// (slot u64, hash [32]) entries, newest first).
fn latest_slot_hash(info: &AccountInfo) -> Result<[u8; 32]> {
    let data = info.try_borrow_data()?;
    let count = data
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(StrataError::SlotHashesUnavailable)?;
    require!(count > 0, StrataError::SlotHashesUnavailable);
    data.get(16..48)
        .and_then(|b| b.try_into().ok())
        .ok_or(error!(StrataError::SlotHashesUnavailable))
}
