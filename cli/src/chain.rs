//! Talking to the cluster: connecting (with a reachability check), sending
//! transactions, and turning chain failures into one readable line.

use anyhow::anyhow;
use solana_instruction::Instruction;
use strata_chain::accounts::{Config, Node};
use strata_chain::rpc::ChainClient;
use strata_chain::{cluster, pda, token, ChainError, Keypair, Pubkey, Signer};

use strata_chain::amount::format_tokens;

/// SPL Token's `InsufficientFunds` (and the system program's
/// `ResultWithNegativeLamports`) share custom code 1.
const INSUFFICIENT_FUNDS: u32 = 1;

/// Resolves `--url` and checks the endpoint answers.
pub async fn connect(url: &str) -> anyhow::Result<ChainClient> {
    let resolved = cluster::resolve(url).map_err(|e| anyhow!("{e}"))?;
    let client = ChainClient::new(&resolved).map_err(|e| anyhow!("{e}"))?;
    client.ping().await.map_err(|e| match e {
        ChainError::Rpc { url, message } => anyhow!(
            "could not reach the RPC endpoint {url} ({message}); is the chain running? \
             Start a local one with `strata-testnet up` or pass --url"
        ),
        other => explain(other),
    })?;
    Ok(client)
}

/// Signs and sends `instructions` paid by `payer`, with readable errors.
pub async fn send(
    client: &ChainClient,
    instructions: &[Instruction],
    payer: &Keypair,
) -> anyhow::Result<String> {
    let lamports = client.lamports(&payer.pubkey()).await.map_err(explain)?;
    if lamports == 0 {
        return Err(anyhow!(
            "insufficient funds: {} has no SOL to pay transaction fees; get some with `strata faucet` (local testnet) or `solana airdrop`",
            payer.pubkey()
        ));
    }
    client
        .send(instructions, payer, &[])
        .await
        .map(|s| s.to_string())
        .map_err(explain)
}

/// One readable line for a chain failure, with a hint where one helps.
pub fn explain(error: ChainError) -> anyhow::Error {
    match error {
        ChainError::Program { code, name, message } => match code {
            INSUFFICIENT_FUNDS => anyhow!(
                "insufficient funds: the token account (or SOL balance) cannot cover this amount; \
                 check with `strata balance` and get more with `strata faucet`"
            ),
            _ if name == "InsufficientEscrow" => {
                anyhow!("insufficient funds: the escrow balance cannot cover this amount; check with `strata status escrow`")
            }
            _ if name == "InsufficientStake" => {
                anyhow!("insufficient stake: the node's bonded stake is smaller than this amount; check with `strata status node`")
            }
            _ => anyhow!("the Strata program refused the transaction: {name} ({code}): {message}"),
        },
        ChainError::Rpc { url, message } if is_out_of_sol(&message) => anyhow!(
            "insufficient funds: not enough SOL for fees or rent (RPC {url}: {message}); get some with `strata faucet`"
        ),
        other => anyhow!("{other}"),
    }
}

fn is_out_of_sol(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("prior credit")
        || m.contains("insufficient funds for fee")
        || m.contains("insufficient funds for rent")
}

/// The program's config, with a hint when the program is not set up there.
pub async fn config(client: &ChainClient) -> anyhow::Result<Config> {
    client.config().await.map_err(explain)
}

/// A node that must exist.
pub async fn registered_node(client: &ChainClient, operator: &Pubkey) -> anyhow::Result<Node> {
    client
        .node(operator)
        .await
        .map_err(explain)?
        .ok_or_else(|| {
            anyhow!("node {operator} is not registered (register it with `strata node register`)")
        })
}

/// The keypair's associated token account for the Strata mint, with the
/// instruction that creates it if missing (idempotent, so always safe to send).
pub fn token_account(owner: &Keypair, config: &Config) -> (Pubkey, Instruction) {
    let owner = owner.pubkey();
    let ata = pda::associated_token(&owner, &config.mint);
    (
        ata,
        token::create_ata_idempotent(&owner, &owner, &config.mint),
    )
}

/// Refuses early, with the numbers, when `owner`'s token account holds less than `amount`.
pub async fn ensure_tokens(
    client: &ChainClient,
    ata: &Pubkey,
    amount: u64,
    what: &str,
) -> anyhow::Result<()> {
    let balance = client.token_balance(ata).await.map_err(explain)?;
    if balance < amount {
        return Err(anyhow!(
            "insufficient funds: {what} needs {} but token account {ata} holds {}; get tokens with `strata faucet`",
            format_tokens(amount),
            format_tokens(balance)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use strata_chain::error_names;

    use super::*;

    #[test]
    fn program_errors_become_readable_lines() {
        let (name, message) = error_names::describe(1);
        let spl = explain(ChainError::Program {
            code: 1,
            name,
            message,
        })
        .to_string();
        assert!(spl.starts_with("insufficient funds"), "{spl}");
        let (name, message) = error_names::describe(6014);
        let escrow = explain(ChainError::Program {
            code: 6014,
            name,
            message,
        })
        .to_string();
        assert!(escrow.contains("escrow balance"), "{escrow}");
        let (name, message) = error_names::describe(6012);
        let other = explain(ChainError::Program {
            code: 6012,
            name,
            message,
        })
        .to_string();
        assert!(other.contains("NodeHasStake"), "{other}");
        let sol = explain(ChainError::Rpc {
            url: "u".into(),
            message: "Attempt to debit an account but found no record of a prior credit.".into(),
        });
        assert!(sol.to_string().contains("not enough SOL"));
    }
}
