use anchor_lang::prelude::*;
use anchor_lang::system_program::{
    allocate, assign, create_account, transfer, Allocate, Assign, CreateAccount, Transfer,
};
use anchor_spl::token::{Token, TokenAccount};

use crate::errors::StrataError;
use crate::events::{emit_event, VoucherRedeemed};
use crate::signatures::verified_before_current;
use crate::state::{Channel, Config, Escrow, STATE_VERSION};
use crate::vault::pay_out;
use strata_primitives::fees::protocol_fee;
use strata_primitives::messages::parse_voucher;

/// Most vouchers one instruction settles; bounds the loop (a 1232-byte
/// transaction fits far fewer anyway).
pub const MAX_VOUCHERS: usize = 16;
/// Accounts each voucher brings in `remaining_accounts`.
pub const ACCOUNTS_PER_VOUCHER: usize = 3;

/// Redeems client-signed vouchers in one go. The ed25519 precompile
/// instruction right before this one carries one signature per voucher, in
/// order; `remaining_accounts` carries, per voucher, the client's escrow, the
/// (client, node) channel, and the node's token account. Anyone may submit:
/// the signatures decide who pays whom, and only the difference over what was
/// already redeemed moves. The protocol fee is rounded up
/// (`strata_primitives::fees::protocol_fee`).
#[derive(Accounts)]
pub struct RedeemVouchers<'info> {
    /// Submitter (normally the relayer); pays rent for new channels.
    #[account(mut)]
    pub payer: Signer<'info>,
    /// The config.
    #[account(mut, seeds = [Config::SEED], bump = config.bump, has_one = vault)]
    pub config: Account<'info, Config>,
    /// The vault.
    #[account(mut)]
    pub vault: Account<'info, TokenAccount>,
    /// The Instructions sysvar, to read the precompile's signatures.
    /// CHECK: address checked in `verified_before_current`.
    pub instructions: UncheckedAccount<'info>,
    /// SPL Token.
    pub token_program: Program<'info, Token>,
    /// System program (creates channels).
    pub system_program: Program<'info, System>,
}

/// Handler.
pub fn handler<'info>(ctx: Context<'info, RedeemVouchers<'info>>) -> Result<()> {
    let signed = verified_before_current(&ctx.accounts.instructions)?;
    require!(!signed.is_empty(), StrataError::MissingSignatures);
    require!(signed.len() <= MAX_VOUCHERS, StrataError::BatchTooLarge);
    require!(
        ctx.remaining_accounts.len() == signed.len() * ACCOUNTS_PER_VOUCHER,
        StrataError::SignatureCountMismatch
    );
    let a = ctx.accounts;
    let fee_bps = a.config.params.protocol_fee_bps;
    for (voucher, accounts) in signed
        .iter()
        .zip(ctx.remaining_accounts.chunks(ACCOUNTS_PER_VOUCHER))
    {
        let [escrow_info, channel_info, node_token_info] = accounts else {
            return err!(StrataError::SignatureCountMismatch);
        };
        let client = voucher.signer;
        let (node, cumulative) = parse_voucher(ctx.program_id.as_array(), &voucher.message)
            .ok_or(StrataError::MessageMismatch)?;
        let node = Pubkey::from(node);

        let (escrow_key, _) =
            Pubkey::find_program_address(&[Escrow::SEED, client.as_ref()], ctx.program_id);
        require_keys_eq!(escrow_info.key(), escrow_key, StrataError::InvalidPda);
        let mut escrow = Account::<Escrow>::try_from(escrow_info)?;

        let mut channel = load_or_create_channel(a, channel_info, &client, &node, ctx.program_id)?;
        require!(cumulative > channel.redeemed, StrataError::StaleVoucher);
        let delta = cumulative - channel.redeemed;
        require!(delta <= escrow.balance, StrataError::InsufficientEscrow);

        require_keys_neq!(
            node_token_info.key(),
            a.vault.key(),
            StrataError::DuplicateAccount
        );
        let node_token = Account::<TokenAccount>::try_from(node_token_info)?;
        require_keys_eq!(node_token.owner, node, StrataError::InvalidAccount);
        require_keys_eq!(node_token.mint, a.config.mint, StrataError::InvalidAccount);

        // Rounded up, so that settling in small slices cannot dodge the fee.
        let fee = protocol_fee(delta, fee_bps);
        let paid = delta - fee;
        channel.redeemed = cumulative;
        escrow.balance -= delta;
        escrow.total_paid = escrow
            .total_paid
            .checked_add(delta)
            .ok_or(StrataError::MathOverflow)?;
        escrow.pending_withdrawal = escrow.pending_withdrawal.min(escrow.balance);
        a.config.total_escrow = a
            .config
            .total_escrow
            .checked_sub(delta)
            .ok_or(StrataError::MathOverflow)?;
        a.config.reward_pool = a
            .config
            .reward_pool
            .checked_add(fee)
            .ok_or(StrataError::MathOverflow)?;
        escrow.exit(ctx.program_id)?;
        channel.exit(ctx.program_id)?;
        pay_out(
            &a.token_program,
            &a.config,
            &a.vault,
            node_token_info.clone(),
            paid,
        )?;
        emit_event(&VoucherRedeemed {
            client,
            node,
            cumulative,
            paid,
            fee,
        });
    }
    Ok(())
}

/// Loads the (client, node) channel, creating it (rent from the payer) on first redemption.
fn load_or_create_channel<'info>(
    a: &RedeemVouchers<'info>,
    info: &'info AccountInfo<'info>,
    client: &Pubkey,
    node: &Pubkey,
    program_id: &Pubkey,
) -> Result<Account<'info, Channel>> {
    let (key, bump) =
        Pubkey::find_program_address(&[Channel::SEED, client.as_ref(), node.as_ref()], program_id);
    require_keys_eq!(info.key(), key, StrataError::InvalidPda);
    if info.owner == &anchor_lang::system_program::ID {
        let space = 8 + Channel::INIT_SPACE;
        let bump_bytes = [bump];
        let seeds: &[&[u8]] = &[Channel::SEED, client.as_ref(), node.as_ref(), &bump_bytes];
        let rent = Rent::get()?.minimum_balance(space);
        let system = a.system_program.key();
        if info.lamports() == 0 {
            create_account(
                CpiContext::new_with_signer(
                    system,
                    CreateAccount {
                        from: a.payer.to_account_info(),
                        to: info.clone(),
                    },
                    &[seeds],
                ),
                rent,
                space as u64,
                program_id,
            )?;
        } else {
            // Someone sent lamports to the address first (which would make
            // `create_account` fail forever): top up, allocate and assign instead.
            let top_up = rent.saturating_sub(info.lamports());
            if top_up > 0 {
                transfer(
                    CpiContext::new(
                        system,
                        Transfer {
                            from: a.payer.to_account_info(),
                            to: info.clone(),
                        },
                    ),
                    top_up,
                )?;
            }
            allocate(
                CpiContext::new_with_signer(
                    system,
                    Allocate {
                        account_to_allocate: info.clone(),
                    },
                    &[seeds],
                ),
                space as u64,
            )?;
            assign(
                CpiContext::new_with_signer(
                    system,
                    Assign {
                        account_to_assign: info.clone(),
                    },
                    &[seeds],
                ),
                program_id,
            )?;
        }
        let fresh = Channel {
            version: STATE_VERSION,
            bump,
            client: *client,
            node: *node,
            redeemed: 0,
            reserved: [0; 16],
        };
        let mut data = info.try_borrow_mut_data()?;
        fresh.try_serialize(&mut &mut data[..])?;
    }
    Account::<Channel>::try_from(info)
}
