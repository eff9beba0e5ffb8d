//! The RPC backend every binary uses: any Solana JSON-RPC endpoint, the
//! embedded local chain or a public cluster.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anchor_lang::AccountDeserialize;
use solana_commitment_config::CommitmentConfig;
use solana_instruction::error::InstructionError;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client_api::client_error::Error as ClientError;
use solana_signature::Signature;
use solana_transaction_error::TransactionError;

use crate::accounts::{decode, Batch, Challenge, Config, Escrow, Node};
use crate::{budget, cluster, error_names, pda, tx, ChainError, Pubkey};

/// The priority fee clients get when made, in micro-lamports per compute
/// unit. A binary sets it once from its `--priority-fee-micro-lamports`
/// flag; a process-wide default rather than a field in every service's
/// config because every client a process makes (the relayer makes three,
/// the node and verifier theirs deep inside) should pay the same price.
static DEFAULT_PRIORITY_FEE: AtomicU64 = AtomicU64::new(0);

/// Sets the priority fee (micro-lamports per compute unit; 0, the default,
/// sends no price instruction) of every [`ChainClient`] made afterwards.
pub fn set_default_priority_fee(micro_lamports: u64) {
    DEFAULT_PRIORITY_FEE.store(micro_lamports, Ordering::Relaxed);
}

/// A connection to a cluster; cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct ChainClient {
    rpc: std::sync::Arc<RpcClient>,
    url: String,
    priority_fee: u64,
}

impl ChainClient {
    /// Connects to `url` (a cluster name or an http(s) URL), at `confirmed` commitment.
    pub fn new(url: &str) -> Result<Self, ChainError> {
        let url = cluster::resolve(url)?;
        let rpc = RpcClient::new_with_timeout_and_commitment(
            url.clone(),
            Duration::from_secs(30),
            CommitmentConfig::confirmed(),
        );
        Ok(Self {
            rpc: std::sync::Arc::new(rpc),
            url,
            priority_fee: DEFAULT_PRIORITY_FEE.load(Ordering::Relaxed),
        })
    }

    /// The same client paying `micro_lamports` per compute unit (0: no price).
    pub fn with_priority_fee(mut self, micro_lamports: u64) -> Self {
        self.priority_fee = micro_lamports;
        self
    }

    /// The priority fee this client pays, in micro-lamports per compute unit.
    pub fn priority_fee(&self) -> u64 {
        self.priority_fee
    }

    /// The resolved RPC URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying RPC client, for calls this type does not wrap.
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    fn rpc_error(&self, e: ClientError) -> ChainError {
        if let Some(TransactionError::InstructionError(_, InstructionError::Custom(code))) =
            e.get_transaction_error()
        {
            let (name, message) = error_names::describe(code);
            return ChainError::Program {
                code,
                name,
                message,
            };
        }
        ChainError::Rpc {
            url: self.url.clone(),
            message: e.to_string(),
        }
    }

    /// Checks the endpoint answers; the error says where it tried.
    pub async fn ping(&self) -> Result<(), ChainError> {
        self.rpc
            .get_version()
            .await
            .map(|_| ())
            .map_err(|e| self.rpc_error(e))
    }

    /// Signs, sends and confirms `instructions`, paid by `payer`, behind a
    /// compute-unit limit sized for them ([`budget`]) and this client's
    /// priority fee. If the runtime reports the budget exceeded (the
    /// estimate was short; nothing changed on chain), it is sent once more
    /// with the largest limit.
    pub async fn send(
        &self,
        instructions: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> Result<Signature, ChainError> {
        match self.send_budgeted(instructions, payer, signers, None).await {
            Err(SendError::Client(e)) if budget_exceeded(&e) => self
                .send_budgeted(
                    instructions,
                    payer,
                    signers,
                    Some(budget::MAX_COMPUTE_UNIT_LIMIT),
                )
                .await
                .map_err(|e| self.send_error(e)),
            other => other.map_err(|e| self.send_error(e)),
        }
    }

    async fn send_budgeted(
        &self,
        instructions: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
        limit: Option<u32>,
    ) -> Result<Signature, SendError> {
        let blockhash = self
            .rpc
            .get_latest_blockhash()
            .await
            .map_err(SendError::Client)?;
        let budgeted = budget::with_budget(instructions, self.priority_fee, limit);
        let transaction = tx::sign(&budgeted, payer, signers, blockhash);
        tx::check_size(&transaction).map_err(SendError::Chain)?;
        self.rpc
            .send_and_confirm_transaction(&transaction)
            .await
            .map_err(SendError::Client)
    }

    fn send_error(&self, e: SendError) -> ChainError {
        match e {
            SendError::Chain(e) => e,
            SendError::Client(e) => self.rpc_error(e),
        }
    }

    /// Requests an airdrop of SOL lamports and waits until it is confirmed.
    pub async fn airdrop(&self, to: &Pubkey, lamports: u64) -> Result<(), ChainError> {
        let sig = self
            .rpc
            .request_airdrop(to, lamports)
            .await
            .map_err(|e| self.rpc_error(e))?;
        for _ in 0..60 {
            if self
                .rpc
                .confirm_transaction(&sig)
                .await
                .map_err(|e| self.rpc_error(e))?
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(ChainError::Rpc {
            url: self.url.clone(),
            message: format!("airdrop {sig} not confirmed after 15 s"),
        })
    }

    /// Raw account data, or `None` if the account does not exist.
    pub async fn account_data(&self, address: &Pubkey) -> Result<Option<Vec<u8>>, ChainError> {
        let response = self
            .rpc
            .get_account_with_commitment(address, self.rpc.commitment())
            .await
            .map_err(|e| self.rpc_error(e))?;
        Ok(response.value.map(|a| a.data))
    }

    /// Decodes a program account, or `None` if it does not exist.
    pub async fn account<T: AccountDeserialize>(
        &self,
        address: &Pubkey,
        kind: &'static str,
    ) -> Result<Option<T>, ChainError> {
        match self.account_data(address).await? {
            Some(data) => decode(address, &data, kind).map(Some),
            None => Ok(None),
        }
    }

    /// The program's config; an error if the program is not initialised on this cluster.
    pub async fn config(&self) -> Result<Config, ChainError> {
        self.account(&pda::config(), "config")
            .await?
            .ok_or_else(|| {
                ChainError::AccountNotFound(format!(
                    "Strata config at {} (is the program deployed and initialised on {}?)",
                    pda::config(),
                    self.url
                ))
            })
    }

    /// A node's record, or `None` if it is not registered.
    pub async fn node(&self, operator: &Pubkey) -> Result<Option<Node>, ChainError> {
        self.account(&pda::node(operator), "node").await
    }

    /// Every registered node (one `getProgramAccounts` filtered on the Node
    /// discriminator). Some public endpoints refuse this call: callers fall
    /// back to what they know.
    pub async fn registered_nodes(&self) -> Result<Vec<Node>, ChainError> {
        Ok(self
            .program_accounts::<Node>("node")
            .await?
            .into_iter()
            .map(|(_, n)| n)
            .collect())
    }

    /// Every challenge account with its address (open ones and judged ones;
    /// expired ones are closed).
    pub async fn challenges(&self) -> Result<Vec<(Pubkey, Challenge)>, ChainError> {
        self.program_accounts::<Challenge>("challenge").await
    }

    /// Batch `id`, or `None` if it was not posted.
    pub async fn batch(&self, id: u64) -> Result<Option<Batch>, ChainError> {
        self.account(&pda::batch(id), "batch").await
    }

    /// The current slot (confirmed).
    pub async fn slot(&self) -> Result<u64, ChainError> {
        self.rpc
            .get_slot_with_commitment(solana_commitment_config::CommitmentConfig::confirmed())
            .await
            .map_err(|e| self.rpc_error(e))
    }

    /// Every account of the program of type `T` (one `getProgramAccounts`
    /// filtered on its discriminator); accounts that do not decode are skipped.
    async fn program_accounts<T: AccountDeserialize + anchor_lang::Discriminator>(
        &self,
        kind: &'static str,
    ) -> Result<Vec<(Pubkey, T)>, ChainError> {
        use base64::Engine as _;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let params = serde_json::json!([
            crate::PROGRAM_ID.to_string(),
            {
                "encoding": "base64",
                "commitment": "confirmed",
                "filters": [{"memcmp": {"offset": 0, "bytes": b64.encode(T::DISCRIMINATOR), "encoding": "base64"}}],
            }
        ]);
        let answer: serde_json::Value = self
            .rpc
            .send(
                solana_rpc_client_api::request::RpcRequest::GetProgramAccounts,
                params,
            )
            .await
            .map_err(|e| self.rpc_error(e))?;
        // Either a bare list or, with context, {context, value}.
        let list = answer
            .as_array()
            .or_else(|| answer.get("value").and_then(|v| v.as_array()))
            .ok_or_else(|| ChainError::Rpc {
                url: self.url.clone(),
                message: "getProgramAccounts: unexpected answer".into(),
            })?;
        let mut out = Vec::new();
        for item in list {
            let (Some(address), Some(data)) = (
                item.get("pubkey")
                    .and_then(|p| p.as_str())
                    .and_then(|p| p.parse::<Pubkey>().ok()),
                item.pointer("/account/data/0").and_then(|d| d.as_str()),
            ) else {
                continue;
            };
            let Ok(bytes) = b64.decode(data) else {
                continue;
            };
            if let Ok(account) = decode::<T>(&address, &bytes, kind) {
                out.push((address, account));
            }
        }
        Ok(out)
    }

    /// A client's escrow, or `None` if it never deposited.
    pub async fn escrow(&self, client: &Pubkey) -> Result<Option<Escrow>, ChainError> {
        self.account(&pda::escrow(client), "escrow").await
    }

    /// SOL balance in lamports.
    pub async fn lamports(&self, address: &Pubkey) -> Result<u64, ChainError> {
        self.rpc
            .get_balance(address)
            .await
            .map_err(|e| self.rpc_error(e))
    }

    /// Token balance (base units) of a token account; 0 if it does not exist.
    pub async fn token_balance(&self, token_account: &Pubkey) -> Result<u64, ChainError> {
        let Some(data) = self.account_data(token_account).await? else {
            return Ok(0);
        };
        // SPL token account layout: mint (32), owner (32), amount (u64 LE).
        data.get(64..72)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| ChainError::Decode {
                address: token_account.to_string(),
                kind: "token account",
            })
    }

    /// Lamports for rent exemption of `len` bytes.
    pub async fn rent(&self, len: usize) -> Result<u64, ChainError> {
        self.rpc
            .get_minimum_balance_for_rent_exemption(len)
            .await
            .map_err(|e| self.rpc_error(e))
    }
}

/// A send failure before it is described for the caller.
enum SendError {
    Chain(ChainError),
    Client(ClientError),
}

/// The runtime ran out of the transaction's compute units.
fn budget_exceeded(e: &ClientError) -> bool {
    matches!(
        e.get_transaction_error(),
        Some(TransactionError::InstructionError(
            _,
            InstructionError::ComputationalBudgetExceeded
        ))
    )
}
