use anchor_lang::prelude::*;
use anchor_spl::token::{Mint, Token, TokenAccount};

use crate::errors::StrataError;
use crate::events::{emit_event, Initialized};
use crate::state::{Config, ConfigParams, STATE_VERSION};

/// The admin key this build of the program insists on, if it was built with
/// `STRATA_DEPLOY_ADMIN=<base58 pubkey>` in the environment (checked at
/// compile time: a malformed key fails the build). Meant for deployments
/// that have no upgrade authority to prove the deployer with (an immutable
/// program, or a loader other than the upgradeable one).
pub const DEPLOY_ADMIN: Option<Pubkey> = match option_env!("STRATA_DEPLOY_ADMIN") {
    Some(key) => Some(Pubkey::from_str_const(key)),
    None => None,
};

/// Creates the config and the vault. Runs once: `init` refuses a second call.
///
/// Only the deployer may call it, or whoever sends it first after deployment
/// would become admin (and pick the mint and reward authority). Who counts
/// as the deployer ([`check_deployer`]):
/// - built with `STRATA_DEPLOY_ADMIN`: that key, wherever the program runs;
/// - otherwise, deployed by the upgradeable BPF loader (what `anchor deploy`
///   and `solana program deploy` do): the program's upgrade authority, read
///   from its ProgramData account;
/// - otherwise, on SBF: nobody (`NotDeployer`): build with
///   `STRATA_DEPLOY_ADMIN` to deploy such a program;
/// - natively on a host (LiteSVM, the embedded local chain): there is no
///   loader and no ProgramData; the program is a builtin that the process
///   running the runtime registered, and that process initialises it before
///   anyone else can reach the runtime, so the first caller is the deployer.
#[derive(Accounts)]
pub struct Initialize<'info> {
    /// Pays rent and becomes the admin; must be the deployer.
    #[account(mut)]
    pub admin: Signer<'info>,
    /// The singleton config.
    #[account(init, payer = admin, space = 8 + Config::INIT_SPACE, seeds = [Config::SEED], bump)]
    pub config: Account<'info, Config>,
    /// Stake, payment and reward mint.
    pub mint: Account<'info, Mint>,
    /// The program's token vault, owned by the config PDA.
    #[account(
        init,
        payer = admin,
        seeds = [Config::VAULT_SEED],
        bump,
        token::mint = mint,
        token::authority = config,
    )]
    pub vault: Account<'info, TokenAccount>,
    /// This program's own account: its loader says how it was deployed.
    pub program: Program<'info, crate::program::Strata>,
    /// The program's ProgramData account (the upgradeable loader's PDA of
    /// the program id); read only when the upgradeable loader deployed it.
    /// CHECK: compared with the address the program account names, owner
    /// checked, decoded as ProgramData in `check_deployer`.
    pub program_data: UncheckedAccount<'info>,
    /// SPL Token.
    pub token_program: Program<'info, Token>,
    /// System program.
    pub system_program: Program<'info, System>,
}

/// How the program was deployed, as far as deciding who may initialise it.
#[derive(Debug, Clone, Copy)]
pub enum Deployment<'a> {
    /// By the upgradeable loader.
    Upgradeable {
        /// The ProgramData address the program account names.
        expected: Pubkey,
        /// The ProgramData account given to the instruction.
        given: Pubkey,
        /// The given account's owner.
        owner: Pubkey,
        /// The given account's data.
        data: &'a [u8],
    },
    /// Any other way: a builtin on a host, or another loader on SBF.
    Other,
}

/// Refuses `admin` unless it is the deployer (see [`Initialize`]).
/// `deploy_admin` is [`DEPLOY_ADMIN`] in the program; a parameter so that
/// tests can check every branch.
pub fn check_deployer(
    admin: &Pubkey,
    deploy_admin: Option<Pubkey>,
    deployment: Deployment<'_>,
) -> Result<()> {
    if let Some(key) = deploy_admin {
        require_keys_eq!(*admin, key, StrataError::NotDeployer);
        return Ok(());
    }
    match deployment {
        Deployment::Upgradeable {
            expected,
            given,
            owner,
            data,
        } => {
            require_keys_eq!(given, expected, StrataError::InvalidAccount);
            require_keys_eq!(
                owner,
                anchor_lang::solana_program::bpf_loader_upgradeable::ID,
                StrataError::InvalidAccount
            );
            let program_data = ProgramData::try_deserialize(&mut &data[..])
                .map_err(|_| error!(StrataError::InvalidAccount))?;
            // An immutable program (no authority) has no deployer left to prove.
            require!(
                program_data.upgrade_authority_address == Some(*admin),
                StrataError::NotDeployer
            );
            Ok(())
        }
        Deployment::Other if cfg!(target_os = "solana") => err!(StrataError::NotDeployer),
        Deployment::Other => Ok(()),
    }
}

/// Handler.
pub fn handler(
    ctx: Context<Initialize>,
    params: ConfigParams,
    reward_authority: Pubkey,
) -> Result<()> {
    let program_data = &ctx.accounts.program_data;
    let data = program_data.try_borrow_data()?;
    let deployment = match ctx.accounts.program.programdata_address()? {
        Some(expected) => Deployment::Upgradeable {
            expected,
            given: program_data.key(),
            owner: *program_data.owner,
            data: &data,
        },
        None => Deployment::Other,
    };
    check_deployer(ctx.accounts.admin.key, DEPLOY_ADMIN, deployment)?;
    drop(data);
    params.validate()?;
    let now = Clock::get()?.unix_timestamp;
    let config = &mut ctx.accounts.config;
    config.set_inner(Config {
        version: STATE_VERSION,
        bump: ctx.bumps.config,
        vault_bump: ctx.bumps.vault,
        admin: ctx.accounts.admin.key(),
        reward_authority,
        mint: ctx.accounts.mint.key(),
        vault: ctx.accounts.vault.key(),
        params,
        genesis_ts: now,
        next_batch_id: 0,
        last_reward_epoch: -1,
        total_stake: 0,
        total_verifier_stake: 0,
        total_escrow: 0,
        reward_pool: 0,
        bonds_held: 0,
        total_tasks: 0,
        total_work_units: 0,
        epoch_origin_ts: now,
        epoch_origin: 0,
        reserved: [0; 48],
    });
    emit_event(&Initialized {
        admin: config.admin,
        mint: config.mint,
        reward_authority,
        params,
    });
    Ok(())
}
