//! Moving tokens into and out of the program's single vault. The vault's
//! authority is the config PDA, so only this program can sign for it.

use anchor_lang::prelude::*;
use anchor_spl::token::{self, Token, TokenAccount, Transfer};

use crate::state::Config;

/// Transfers `amount` from a user's token account (signed by `authority`) into the vault.
pub fn pay_in<'info>(
    token_program: &Program<'info, Token>,
    from: &Account<'info, TokenAccount>,
    vault: &Account<'info, TokenAccount>,
    authority: &Signer<'info>,
    amount: u64,
) -> Result<()> {
    token::transfer(
        CpiContext::new(
            token_program.key(),
            Transfer {
                from: from.to_account_info(),
                to: vault.to_account_info(),
                authority: authority.to_account_info(),
            },
        ),
        amount,
    )
}

/// Transfers `amount` from the vault to `to`, signed by the config PDA.
pub fn pay_out<'info>(
    token_program: &Program<'info, Token>,
    config: &Account<'info, Config>,
    vault: &Account<'info, TokenAccount>,
    to: AccountInfo<'info>,
    amount: u64,
) -> Result<()> {
    if amount == 0 {
        return Ok(());
    }
    let bump = [config.bump];
    let seeds: &[&[u8]] = &[Config::SEED, &bump];
    token::transfer(
        CpiContext::new_with_signer(
            token_program.key(),
            Transfer {
                from: vault.to_account_info(),
                to,
                authority: config.to_account_info(),
            },
            &[seeds],
        ),
        amount,
    )
}

/// `amount * bps / 10_000`, rounded down, without overflow.
pub fn bps_of(amount: u64, bps: u16) -> u64 {
    // The product of a u64 and a u16 fits in u128; the quotient is at most `amount`.
    u64::try_from(u128::from(amount) * u128::from(bps) / 10_000).unwrap_or(amount)
}
