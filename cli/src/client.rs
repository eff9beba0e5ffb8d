//! Client commands: deposit into escrow, request a withdrawal, withdraw.

use anyhow::anyhow;
use strata_chain::accounts::Escrow;
use strata_chain::rpc::ChainClient;
use strata_chain::{ix, Keypair, Pubkey, Signer};

use crate::chain;
use crate::output::Output;
use strata_chain::amount::format_tokens;

async fn existing_escrow(client: &ChainClient, owner: &Pubkey) -> anyhow::Result<Escrow> {
    client
        .escrow(owner)
        .await
        .map_err(chain::explain)?
        .ok_or_else(|| anyhow!("{owner} has no escrow; deposit first with `strata deposit AMOUNT`"))
}

/// `strata deposit AMOUNT`.
pub async fn deposit(
    client: &ChainClient,
    owner: &Keypair,
    amount: u64,
    out: Output,
) -> anyhow::Result<()> {
    let config = chain::config(client).await?;
    let (ata, create) = chain::token_account(owner, &config);
    chain::ensure_tokens(client, &ata, amount, "the deposit").await?;
    let sig = chain::send(
        client,
        &[create, ix::deposit(&owner.pubkey(), &ata, amount)],
        owner,
    )
    .await?;
    out.signature(sig);
    Ok(())
}

/// `strata request-withdrawal AMOUNT`.
pub async fn request_withdrawal(
    client: &ChainClient,
    owner: &Keypair,
    amount: u64,
    out: Output,
) -> anyhow::Result<()> {
    let pk = owner.pubkey();
    let escrow = existing_escrow(client, &pk).await?;
    if amount > escrow.balance {
        return Err(anyhow!(
            "insufficient funds: asked to withdraw {} but the escrow holds {}",
            format_tokens(amount),
            format_tokens(escrow.balance)
        ));
    }
    let sig = chain::send(client, &[ix::request_withdrawal(&pk, amount)], owner).await?;
    out.signature(sig);
    Ok(())
}

/// `strata withdraw`.
pub async fn withdraw(client: &ChainClient, owner: &Keypair, out: Output) -> anyhow::Result<()> {
    let pk = owner.pubkey();
    let escrow = existing_escrow(client, &pk).await?;
    if escrow.pending_withdrawal == 0 {
        return Err(anyhow!(
            "no withdrawal pending for {pk}; request one with `strata request-withdrawal AMOUNT`"
        ));
    }
    let config = chain::config(client).await?;
    let (ata, create) = chain::token_account(owner, &config);
    let sig = chain::send(client, &[create, ix::withdraw(&pk, &ata)], owner).await?;
    out.signature(sig);
    Ok(())
}
