//! The deployer's one-time set-up of a freshly deployed program: a mint
//! (new, or one that exists), `initialize` with the testnet parameters, and
//! the relayer allowed. What `strata-testnet up` does for the local chain,
//! for a program deployed on a public cluster (`scripts/devnet-deploy`).

use anyhow::anyhow;
use strata_chain::rpc::ChainClient;
use strata_chain::{ix, params, pda, token, Keypair, Pubkey, Signer, PROGRAM_ID};

use crate::chain;
use crate::output::{Output, Report};

/// What `admin init` was asked to do.
pub struct InitArgs {
    /// An existing mint (6 decimals); a new one is made when `None`.
    pub mint: Option<Pubkey>,
    /// The relayer to allow, if any.
    pub relayer: Option<Pubkey>,
    /// The reward authority [default: the relayer, else the admin].
    pub reward_authority: Option<Pubkey>,
}

/// Initialises the program with `admin` (which must be the program's upgrade
/// authority) unless it already is; then allows the relayer if one is given.
/// Running it again changes nothing and reports what is there.
pub async fn init(
    client: &ChainClient,
    admin: &Keypair,
    args: InitArgs,
    out: Output,
) -> anyhow::Result<()> {
    let mut report = Report::new()
        .text("program", PROGRAM_ID)
        .text("config", pda::config());
    let config = client
        .account_data(&pda::config())
        .await
        .map_err(chain::explain)?;
    let mint = if config.is_some() {
        let config = chain::config(client).await?;
        report = report.field("initialized", false, "already initialised");
        config.mint
    } else {
        let mint = match args.mint {
            Some(mint) => mint,
            None => create_mint(client, admin).await?,
        };
        let reward_authority = args
            .reward_authority
            .or(args.relayer)
            .unwrap_or_else(|| admin.pubkey());
        let init = ix::initialize(&admin.pubkey(), &mint, params::local(), &reward_authority);
        let signature = chain::send(client, &[init], admin).await?;
        report = report
            .field("initialized", true, "initialised")
            .text("initialize_signature", signature)
            .text("reward_authority", reward_authority);
        mint
    };
    report = report.text("mint", mint).text("vault", pda::vault());
    if let Some(relayer) = args.relayer {
        if client
            .account_data(&pda::relayer(&relayer))
            .await
            .map_err(chain::explain)?
            .is_none()
        {
            let add = ix::add_relayer(&admin.pubkey(), &relayer);
            let signature = chain::send(client, &[add], admin).await?;
            report = report.text("add_relayer_signature", signature);
        }
        report = report.text("relayer", relayer);
    }
    out.report(&report);
    Ok(())
}

/// A new mint with `admin` as its authority; returns its address.
async fn create_mint(client: &ChainClient, admin: &Keypair) -> anyhow::Result<Pubkey> {
    let mint = Keypair::new();
    let rent = client.rent(token::MINT_LEN).await.map_err(chain::explain)?;
    let create = token::create_mint(&admin.pubkey(), &mint.pubkey(), &admin.pubkey(), rent)
        .map_err(|e| anyhow!("{e}"))?;
    client
        .send(&create, admin, &[&mint])
        .await
        .map_err(chain::explain)?;
    Ok(mint.pubkey())
}
