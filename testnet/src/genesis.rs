//! Setting up a fresh chain for the testnet.

use std::path::{Path, PathBuf};

use strata_chain::{
    ix, keys, rpc::ChainClient, token, Capacity, ChainError, ConfigParams, Keypair, Signer,
    ROLE_COMPUTE,
};

use crate::TestnetManifest;

/// Lamports in one SOL.
pub const LAMPORTS_PER_SOL: u64 = 1_000_000_000;
pub use strata_chain::params::TOKEN;

/// The testnet's keys, kept in its state directory.
pub struct TestnetKeys {
    /// Program admin.
    pub admin: Keypair,
    /// Mint authority, used as the faucet.
    pub faucet: Keypair,
    /// The mint's own keypair (fixes the mint address across restarts).
    pub mint: Keypair,
    /// Relayer and reward authority.
    pub relayer: Keypair,
    /// Demo client.
    pub client: Keypair,
    /// Node operators (honest nodes first, then any cheating ones).
    pub nodes: Vec<Keypair>,
    /// Verifier operators.
    pub verifiers: Vec<Keypair>,
    dir: PathBuf,
}

impl TestnetKeys {
    /// Loads the keys of `nodes` nodes and no verifier from `dir`, creating
    /// any that are missing.
    pub fn load_or_create(dir: &Path, nodes: usize) -> Result<Self, ChainError> {
        Self::load_or_create_with(dir, nodes, 0)
    }

    /// Loads the keys of `nodes` nodes and `verifiers` verifiers from `dir`,
    /// creating any that are missing.
    pub fn load_or_create_with(
        dir: &Path,
        nodes: usize,
        verifiers: usize,
    ) -> Result<Self, ChainError> {
        let key = |name: &str| keys::read_or_create(&dir.join("keys").join(format!("{name}.json")));
        Ok(Self {
            admin: key("admin")?,
            faucet: key("faucet")?,
            mint: key("mint")?,
            relayer: key("relayer")?,
            client: key("client")?,
            nodes: (0..nodes)
                .map(|i| key(&format!("node-{i}")))
                .collect::<Result<_, _>>()?,
            verifiers: (0..verifiers)
                .map(|i| key(&format!("verifier-{i}")))
                .collect::<Result<_, _>>()?,
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{name}.json"))
    }
}

/// What the genesis sets up.
#[derive(Debug, Clone)]
pub struct GenesisOptions {
    /// Protocol parameters.
    pub params: ConfigParams,
    /// Stake per node, in token base units.
    pub node_stake: u64,
    /// Deposit of the demo client, in token base units.
    pub client_deposit: u64,
    /// Initial reward pool, in token base units.
    pub reward_pool: u64,
    /// Register and stake the nodes here; when false they are only funded
    /// and `strata-node` registers and stakes itself on first start.
    pub register_nodes: bool,
}

impl Default for GenesisOptions {
    fn default() -> Self {
        Self {
            params: strata_chain::params::local(),
            node_stake: 1_000 * TOKEN,
            client_deposit: 100 * TOKEN,
            reward_pool: 10_000 * TOKEN,
            register_nodes: true,
        }
    }
}

/// Gives `who` SOL for fees and ten times `deposit` in tokens, and deposits
/// `deposit` into its escrow: a client ready to pay for tasks.
pub async fn fund_client(
    client: &ChainClient,
    faucet: &Keypair,
    mint: &strata_chain::Pubkey,
    who: &Keypair,
    deposit: u64,
) -> Result<(), ChainError> {
    client.airdrop(&who.pubkey(), 10 * LAMPORTS_PER_SOL).await?;
    let ata = token::faucet(client, faucet, mint, &who.pubkey(), 0, 10 * deposit).await?;
    client
        .send(&[ix::deposit(&who.pubkey(), &ata, deposit)], who, &[])
        .await?;
    Ok(())
}

/// Creates the mint, initialises the program, allows the relayer, funds
/// the reward pool and the demo client, and funds, registers and stakes each
/// node (compute role), and funds each verifier. Returns the manifest to write.
pub async fn bootstrap(
    client: &ChainClient,
    ws_url: &str,
    keys: &TestnetKeys,
    options: &GenesisOptions,
) -> Result<TestnetManifest, ChainError> {
    let admin = &keys.admin;
    let faucet = &keys.faucet;
    let mint = keys.mint.pubkey();
    for k in [admin, faucet, &keys.relayer] {
        client.airdrop(&k.pubkey(), 100 * LAMPORTS_PER_SOL).await?;
    }
    let rent = client.rent(token::MINT_LEN).await?;
    client
        .send(
            &token::create_mint(&faucet.pubkey(), &mint, &faucet.pubkey(), rent)?,
            faucet,
            &[&keys.mint],
        )
        .await?;
    client
        .send(
            &[ix::initialize(
                &admin.pubkey(),
                &mint,
                options.params,
                &keys.relayer.pubkey(),
            )],
            admin,
            &[],
        )
        .await?;
    client
        .send(
            &[ix::add_relayer(&admin.pubkey(), &keys.relayer.pubkey())],
            admin,
            &[],
        )
        .await?;

    let relayer_ata = token::faucet(
        client,
        faucet,
        &mint,
        &keys.relayer.pubkey(),
        0,
        options.reward_pool,
    )
    .await?;
    client
        .send(
            &[ix::fund_rewards(
                &keys.relayer.pubkey(),
                &relayer_ata,
                options.reward_pool,
            )],
            &keys.relayer,
            &[],
        )
        .await?;

    fund_client(client, faucet, &mint, &keys.client, options.client_deposit).await?;

    for (i, node) in keys.nodes.iter().enumerate() {
        let ata = token::faucet(
            client,
            faucet,
            &mint,
            &node.pubkey(),
            10 * LAMPORTS_PER_SOL,
            2 * options.node_stake,
        )
        .await?;
        let register = ix::register_node(
            &node.pubkey(),
            vec![format!("/ip4/127.0.0.1/tcp/{}", 4_001 + i)],
            Capacity {
                memory_mb: 4_096,
                compute_score: 0,
                bandwidth_mbps: 1_000,
            },
            ROLE_COMPUTE,
        );
        let stake = ix::stake(&node.pubkey(), &ata, &mint, options.node_stake);
        if options.register_nodes {
            client.send(&[register, stake], node, &[]).await?;
        }
    }

    // Verifiers register and stake themselves (`strata-verifier`); they get
    // SOL for fees and tokens for their stake and for challenge bonds.
    for verifier in &keys.verifiers {
        token::faucet(
            client,
            faucet,
            &mint,
            &verifier.pubkey(),
            10 * LAMPORTS_PER_SOL,
            2 * options.node_stake + 100 * options.params.challenge_bond,
        )
        .await?;
    }

    Ok(TestnetManifest {
        rpc_url: client.url().to_string(),
        ws_url: ws_url.to_string(),
        program_id: strata_chain::PROGRAM_ID.to_string(),
        mint: mint.to_string(),
        faucet_keypair: keys.path("faucet"),
        admin_keypair: keys.path("admin"),
        relayer_keypair: keys.path("relayer"),
        client_keypair: keys.path("client"),
        node_keypairs: (0..keys.nodes.len())
            .map(|i| keys.path(&format!("node-{i}")))
            .collect(),
        nodes: keys.nodes.iter().map(|k| k.pubkey().to_string()).collect(),
        verifier_keypairs: (0..keys.verifiers.len())
            .map(|i| keys.path(&format!("verifier-{i}")))
            .collect(),
        verifiers: keys
            .verifiers
            .iter()
            .map(|k| k.pubkey().to_string())
            .collect(),
        listen: None,
        relayer_multiaddrs: Vec::new(),
        relayer_url: None,
        gateway_url: None,
    })
}
