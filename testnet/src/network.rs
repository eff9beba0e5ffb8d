//! The services of a local testnet, in one process: the relayer (with the
//! explorer), the nodes (some of them cheating on purpose, when asked), the
//! verifiers and a gateway, wired to each other over real p2p on loopback
//! (or on the address a private swarm names) and to the chain over RPC.
//! `strata-testnet up` and the end-to-end tests start exactly this.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use strata_chain::{Keypair, Signer};
use strata_gateway::{GatewayConfig, RunningGateway};
use strata_node::cheat::Cheat;
use strata_node::{NodeConfig, RunningNode};
use strata_p2p::P2pConfig;
use strata_relayer::{Relayer, RelayerConfig, RunningRelayer};
use strata_verifier::{RunningVerifier, VerifierConfig};

/// API key of the demo client on the testnet gateway.
pub const DEMO_API_KEY: &str = "strata-demo-key";

/// How the services are run.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// Gateway HTTP address (port 0 picks one).
    pub gateway_addr: SocketAddr,
    /// Relayer and explorer HTTP address (port 0 picks one).
    pub relayer_addr: SocketAddr,
    /// Price per token each node asks, base units.
    pub price_per_token: u64,
    /// Stake each node holds, base units.
    pub node_stake: u64,
    /// Sequences each node batches.
    pub max_concurrent: usize,
    /// How often the relayer posts a batch.
    pub batch_interval: Duration,
    /// How often the relayer considers publishing rewards.
    pub reward_interval: Duration,
    /// Reward per billed token, base units.
    pub reward_per_work_unit: u64,
    /// Where service state lives (relayer database, gateway totals).
    pub state_dir: PathBuf,
    /// Cheating modes of the last nodes (one per cheating node; the nodes
    /// before them are honest).
    pub cheats: Vec<Cheat>,
    /// Stake each verifier holds, base units.
    pub verifier_stake: u64,
    /// How often verifiers read batches and challenges.
    pub verifier_poll: Duration,
    /// How long a verifier waits for a node's openings.
    pub verifier_opening_timeout: Duration,
    /// Address every p2p listener binds (127.0.0.1; a LAN address for a
    /// private swarm other machines join).
    pub listen_ip: IpAddr,
    /// First of the services' p2p TCP ports, one each in the order relayer,
    /// gateway, nodes, verifiers ([`NetworkOptions::p2p_port_of`]); 0 lets
    /// each pick a free port.
    pub p2p_port: u16,
    /// Blocks held by each of the first nodes, which then serve as pipeline
    /// hops (empty: every node holds the whole model).
    pub pipeline: Vec<Range<usize>>,
    /// Trainers whose policy versions every node and verifier follows
    /// (`--follow-trainer`; empty: none).
    pub follow_trainers: Vec<[u8; 32]>,
}

impl NetworkOptions {
    /// Defaults for a local testnet under `state_dir`.
    pub fn local(state_dir: PathBuf) -> Self {
        Self {
            gateway_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            relayer_addr: SocketAddr::from(([127, 0, 0, 1], 8788)),
            price_per_token: 10,
            node_stake: 1_000 * crate::genesis::TOKEN,
            max_concurrent: 16,
            batch_interval: Duration::from_secs(3),
            reward_interval: Duration::from_secs(5),
            reward_per_work_unit: 2,
            state_dir,
            cheats: Vec::new(),
            verifier_stake: 1_000 * crate::genesis::TOKEN,
            verifier_poll: Duration::from_secs(1),
            verifier_opening_timeout: Duration::from_secs(60),
            listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            p2p_port: 0,
            pipeline: Vec::new(),
            follow_trainers: Vec::new(),
        }
    }

    /// The p2p port of the service in `slot` (0 the relayer, 1 the gateway,
    /// then the nodes, then the verifiers): consecutive from
    /// [`NetworkOptions::p2p_port`] so that a firewall can name them; 0
    /// when ports are picked freely.
    pub fn p2p_port_of(&self, slot: usize) -> anyhow::Result<u16> {
        if self.p2p_port == 0 {
            return Ok(0);
        }
        u16::try_from(slot)
            .ok()
            .and_then(|s| self.p2p_port.checked_add(s))
            .ok_or_else(|| anyhow::anyhow!("p2p port {} + {slot} is past 65535", self.p2p_port))
    }

    /// The p2p settings of the service in `slot`: [`P2pConfig::local`]
    /// (Kademlia server, private addresses accepted) listening on TCP at
    /// [`NetworkOptions::listen_ip`].
    fn p2p(&self, slot: usize) -> anyhow::Result<P2pConfig> {
        let proto = match self.listen_ip {
            IpAddr::V4(_) => "ip4",
            IpAddr::V6(_) => "ip6",
        };
        Ok(P2pConfig {
            listen: vec![format!(
                "/{proto}/{}/tcp/{}",
                self.listen_ip,
                self.p2p_port_of(slot)?
            )],
            ..P2pConfig::local()
        })
    }
}

/// The running services.
pub struct Network {
    /// The relayer (and explorer).
    pub relayer: RunningRelayer,
    /// The nodes (honest first, then the cheating ones).
    pub nodes: Vec<RunningNode>,
    /// The verifiers.
    pub verifiers: Vec<RunningVerifier>,
    cheats: Vec<Cheat>,
    /// The gateway.
    pub gateway: RunningGateway,
}

/// Starts relayer, nodes and verifiers (which register and stake
/// themselves) and the gateway; returns once the gateway sees every node.
pub async fn start(
    rpc_url: &str,
    relayer_key: &Keypair,
    node_keys: &[Keypair],
    verifier_keys: &[Keypair],
    clients: Vec<(String, Keypair)>,
    options: &NetworkOptions,
) -> anyhow::Result<Network> {
    let honest = node_keys
        .len()
        .checked_sub(options.cheats.len())
        .ok_or_else(|| anyhow::anyhow!("more cheating modes than nodes"))?;
    let relayer = Relayer::start(RelayerConfig {
        rpc_url: rpc_url.to_string(),
        keypair: relayer_key.insecure_clone(),
        state_dir: options.state_dir.join("relayer"),
        http_addr: options.relayer_addr,
        p2p: options.p2p(0)?,
        batch_interval: options.batch_interval,
        reward_interval: options.reward_interval,
        reward_per_work_unit: options.reward_per_work_unit,
    })
    .await?;
    let relayer_addr = relayer
        .p2p_addrs()
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("relayer is not listening on p2p"))?;

    let model_path = strata_engine::model_cache_dir().join(strata_engine::DEFAULT_MODEL_FILE);
    let mut nodes = Vec::new();
    for (i, key) in node_keys.iter().enumerate() {
        let cheat = i.checked_sub(honest).map(|c| options.cheats[c]);
        let node = strata_node::start(NodeConfig {
            keypair: key.insecure_clone(),
            rpc_url: Some(rpc_url.to_string()),
            model_path: model_path.clone(),
            model_sha256: Some(strata_engine::DEFAULT_MODEL_SHA256.to_string()),
            model_name: crate::MODEL_NAME.to_string(),
            price_per_token: options.price_per_token,
            max_concurrent: options.max_concurrent,
            max_tokens: 1024,
            stake: options.node_stake,
            p2p: P2pConfig {
                bootstrap: vec![relayer_addr.clone()],
                ..options.p2p(2 + i)?
            },
            relayer: Some(relayer_addr.clone()),
            profile_tokens: 16,
            quiet: true,
            state_dir: Some(options.state_dir.join(format!("node-{}", key.pubkey()))),
            cheat,
            memory: strata_node::memory::MemoryPlan {
                layers: options.pipeline.get(i).cloned().map_or(
                    strata_node::memory::Layers::Whole,
                    strata_node::memory::Layers::Range,
                ),
                offer_mb: None,
            },
            follow_trainers: options.follow_trainers.clone(),
        })
        .await?;
        tracing::info!(node = %key.pubkey(), ?cheat, "node up");
        nodes.push(node);
    }

    let mut verifiers = Vec::new();
    for (j, key) in verifier_keys.iter().enumerate() {
        let verifier = strata_verifier::start(VerifierConfig {
            keypair: key.insecure_clone(),
            rpc_url: rpc_url.to_string(),
            model_path: model_path.clone(),
            model_sha256: Some(strata_engine::DEFAULT_MODEL_SHA256.to_string()),
            p2p: P2pConfig {
                bootstrap: std::iter::once(relayer_addr.clone())
                    .chain(nodes.iter().filter_map(|n| n.addrs.first().cloned()))
                    .collect(),
                ..options.p2p(2 + node_keys.len() + j)?
            },
            relayer_http: relayer.http_url().to_string(),
            stake: options.verifier_stake,
            poll_interval: options.verifier_poll,
            opening_timeout: options.verifier_opening_timeout,
            state_dir: Some(options.state_dir.join(format!("verifier-{}", key.pubkey()))),
            follow_trainers: options.follow_trainers.clone(),
        })
        .await?;
        tracing::info!(verifier = %key.pubkey(), "verifier up");
        verifiers.push(verifier);
    }

    let gateway = strata_gateway::start(GatewayConfig {
        http_addr: options.gateway_addr,
        rpc_url: rpc_url.to_string(),
        accounts: clients,
        state_dir: options.state_dir.join("gateway"),
        p2p: P2pConfig {
            bootstrap: std::iter::once(relayer_addr)
                .chain(nodes.iter().filter_map(|n| n.addrs.first().cloned()))
                .collect(),
            ..options.p2p(1)?
        },
    })
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while gateway.nodes_known() < nodes.len() {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "the gateway heard only {} of {} nodes within 60 s",
                gateway.nodes_known(),
                nodes.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Network {
        relayer,
        nodes,
        verifiers,
        cheats: options.cheats.clone(),
        gateway,
    })
}

impl Network {
    /// The cheating modes of the cheating nodes, in node order.
    pub fn cheats(&self) -> Vec<Cheat> {
        self.cheats.clone()
    }

    /// Stops everything (gateway first, so no new task starts).
    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        for v in self.verifiers {
            v.shutdown().await;
        }
        for n in self.nodes {
            n.shutdown().await;
        }
        self.relayer.shutdown().await;
    }
}
