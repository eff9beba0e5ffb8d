//! A real local chain for tests: the embedded SVM on free ports
//! ([`start_localnet`]), and [`LocalChain`], that chain with a mint and the
//! program initialised, handing out funded clients and registered nodes.
//!
//! Tests that need the whole testnet genesis (relayer, reward pool, the
//! manifest) use `strata_testnet::bootstrap` instead; this is the smallest
//! chain a service can be tested against.

use strata_chain::registration::ensure_registered;
use strata_chain::rpc::ChainClient;
use strata_chain::{ix, pda, token, Capacity, ConfigParams, Keypair, Signer, ROLE_COMPUTE};
use strata_localnet::{Localnet, LocalnetConfig};

/// Lamports in one SOL.
pub const SOL: u64 = 1_000_000_000;
/// SOL each key handed out gets for transaction fees and rent.
const FEE_FUNDS: u64 = 10 * SOL;

/// Starts the embedded chain on free ports with 100 ms slots. It boots on a
/// blocking thread: its start-up blocks, and would stall the test's runtime.
pub async fn start_localnet() -> Localnet {
    tokio::task::spawn_blocking(|| {
        Localnet::start(&LocalnetConfig {
            rpc_port: 0,
            ws_port: 0,
            slot_time_ms: 100,
        })
    })
    .await
    .expect("the chain's start-up thread")
    .expect("local chain starts")
}

/// A local chain with a mint and the program initialised. One key is the
/// program's admin, the mint authority and the reward authority.
pub struct LocalChain {
    /// The running chain; dropping it stops it.
    pub localnet: Localnet,
    /// Its JSON-RPC URL.
    pub url: String,
    /// A client of it.
    pub rpc: ChainClient,
    /// Admin, mint authority and reward authority.
    pub admin: Keypair,
    /// The token mint.
    pub mint: Keypair,
    /// The parameters the program was initialised with.
    pub params: ConfigParams,
}

impl LocalChain {
    /// Starts a chain and initialises the program with `params`.
    pub async fn start(params: ConfigParams) -> Self {
        let localnet = start_localnet().await;
        let url = localnet.rpc_url().to_string();
        let rpc = ChainClient::new(&url).expect("a client of the local chain");
        let admin = Keypair::new();
        let mint = Keypair::new();
        rpc.airdrop(&admin.pubkey(), 100 * SOL)
            .await
            .expect("airdrop to the admin");
        let rent = rpc.rent(token::MINT_LEN).await.expect("the mint's rent");
        let create = token::create_mint(&admin.pubkey(), &mint.pubkey(), &admin.pubkey(), rent)
            .expect("create-mint instructions");
        rpc.send(&create, &admin, &[&mint])
            .await
            .expect("the mint is created");
        let init = ix::initialize(&admin.pubkey(), &mint.pubkey(), params, &admin.pubkey());
        rpc.send(&[init], &admin, &[])
            .await
            .expect("the program is initialised");
        Self {
            localnet,
            url,
            rpc,
            admin,
            mint,
            params,
        }
    }

    /// Gives `key` SOL for fees and `tokens` of the mint in its associated
    /// token account.
    pub async fn fund(&self, key: &Keypair, tokens: u64) {
        token::faucet(
            &self.rpc,
            &self.admin,
            &self.mint.pubkey(),
            &key.pubkey(),
            FEE_FUNDS,
            tokens,
        )
        .await
        .expect("faucet");
    }

    /// A new client with `deposit` base units in its escrow.
    pub async fn client(&self, deposit: u64) -> Keypair {
        let client = Keypair::new();
        self.fund(&client, deposit).await;
        let ata = pda::associated_token(&client.pubkey(), &self.mint.pubkey());
        self.rpc
            .send(
                &[ix::deposit(&client.pubkey(), &ata, deposit)],
                &client,
                &[],
            )
            .await
            .expect("the deposit lands");
        client
    }

    /// Registers `node` as a compute node reachable at `addrs`, with `stake`
    /// base units bonded (minted to it first).
    pub async fn register_node(&self, node: &Keypair, addrs: &[String], stake: u64) {
        self.fund(node, stake).await;
        let capacity = Capacity {
            memory_mb: 1024,
            compute_score: 100,
            bandwidth_mbps: 100,
        };
        ensure_registered(&self.rpc, node, addrs, capacity, ROLE_COMPUTE, stake)
            .await
            .expect("the node registers and stakes");
    }
}
