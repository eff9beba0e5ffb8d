//! A whole local testnet in one process: the embedded chain, the genesis,
//! extra funded clients, and the services of [`crate::network`]. What
//! `strata-testnet up`, `strata-testnet bench` and the end-to-end tests run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use strata_chain::registration::reachable_addrs;
use strata_chain::rpc::ChainClient;
use strata_chain::{Keypair, Signer};
use strata_localnet::{Localnet, LocalnetConfig};

use crate::network::{self, Network, NetworkOptions, DEMO_API_KEY};
use crate::{bootstrap, fund_client, GenesisOptions, TestnetKeys, TestnetManifest};

/// What to start.
pub struct LocalOptions {
    /// Chain ports and slot time.
    pub chain: LocalnetConfig,
    /// Nodes to run, honest and cheating (`network.cheats` says how many of
    /// the last ones cheat).
    pub nodes: usize,
    /// Verifiers to run.
    pub verifiers: usize,
    /// Genesis (nodes register themselves: `register_nodes` is false).
    pub genesis: GenesisOptions,
    /// Services. Their `listen_ip` is also where the chain's RPC and
    /// websocket bind: one address for the whole testnet.
    pub network: NetworkOptions,
    /// Extra clients: API key, keypair, deposit in base units.
    pub clients: Vec<(String, Keypair, u64)>,
}

impl LocalOptions {
    /// Free ports everywhere, 2-second epochs and sub-second relayer rounds:
    /// what tests want.
    pub fn ephemeral(state_dir: &Path) -> Self {
        let mut genesis = GenesisOptions {
            register_nodes: false,
            ..GenesisOptions::default()
        };
        genesis.params.epoch_length = 2;
        let mut network = NetworkOptions::local(state_dir.join("services"));
        network.gateway_addr = ([127, 0, 0, 1], 0).into();
        network.relayer_addr = ([127, 0, 0, 1], 0).into();
        network.batch_interval = Duration::from_millis(500);
        network.reward_interval = Duration::from_millis(500);
        Self {
            chain: LocalnetConfig {
                rpc_port: 0,
                ws_port: 0,
                slot_time_ms: 100,
            },
            nodes: 3,
            verifiers: 0,
            genesis,
            network,
            clients: Vec::new(),
        }
    }
}

/// A running local testnet.
pub struct LocalTestnet {
    /// The chain (stops when dropped).
    pub chain: Localnet,
    /// An RPC client to it.
    pub rpc: ChainClient,
    /// All keys (also on disk under `dir/keys`).
    pub keys: TestnetKeys,
    /// What `dir/testnet.json` holds: the genesis, then where the services
    /// listen (written again once they are up).
    pub manifest: TestnetManifest,
    /// The services.
    pub net: Network,
    /// The state directory.
    pub dir: PathBuf,
}

impl LocalTestnet {
    /// Starts the chain, runs genesis, funds the extra clients and starts the
    /// services, with the demo client under [`DEMO_API_KEY`].
    pub async fn start(dir: &Path, options: LocalOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // The embedded chain starts empty every time, so what the services
        // kept from an earlier run (relayer batches, gateway voucher totals,
        // node outboxes) belongs to a chain that is gone: reusing it would
        // make vouchers claim old totals from new escrows.
        let services = &options.network.state_dir;
        if services.exists() {
            std::fs::remove_dir_all(services)
                .with_context(|| format!("clearing {}", services.display()))?;
        }
        let keys = TestnetKeys::load_or_create_with(dir, options.nodes, options.verifiers)?;
        let (chain_config, bind) = (options.chain, options.network.listen_ip);
        let chain =
            tokio::task::spawn_blocking(move || Localnet::start_on(&chain_config, bind)).await??;
        let rpc = ChainClient::new(chain.rpc_url())?;
        let mut manifest = bootstrap(&rpc, chain.ws_url(), &keys, &options.genesis)
            .await
            .context("genesis")?;
        manifest.write(dir)?;
        let mut accounts = vec![(DEMO_API_KEY.to_string(), keys.client.insecure_clone())];
        for (api_key, key, deposit) in options.clients {
            fund_client(&rpc, &keys.faucet, &keys.mint.pubkey(), &key, deposit).await?;
            accounts.push((api_key, key));
        }
        let net = network::start(
            chain.rpc_url(),
            &keys.relayer,
            &keys.nodes,
            &keys.verifiers,
            accounts,
            &options.network,
        )
        .await
        .context("starting the services")?;
        // What a machine joining a private swarm needs, beside the chain.
        manifest.listen = (!bind.is_loopback()).then(|| bind.to_string());
        manifest.relayer_multiaddrs = reachable_addrs(net.relayer.p2p_addrs());
        manifest.relayer_url = Some(net.relayer.http_url().to_string());
        manifest.gateway_url = Some(net.gateway.url());
        manifest.write(dir)?;
        Ok(Self {
            chain,
            rpc,
            keys,
            manifest,
            net,
            dir: dir.to_path_buf(),
        })
    }

    /// The keypair file `keys/<name>.json` (e.g. `client`, `node-0`).
    pub fn keypair_path(&self, name: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{name}.json"))
    }

    /// Stops the services, then the chain.
    pub async fn shutdown(self) {
        self.net.shutdown().await;
        let chain = self.chain;
        let _ = tokio::task::spawn_blocking(move || drop(chain)).await;
    }
}
