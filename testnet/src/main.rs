//! `strata-testnet up`: starts the embedded local chain with the Strata
//! program, creates the mint, the faucet and a funded demo client, writes
//! `testnet.json`, then starts the relayer (with the explorer), the nodes
//! and the verifiers (which register and stake themselves) and the gateway,
//! prints the URLs and an example `curl`, and stays up until Ctrl-C.
//! `--clients N` adds paying load, `--cheaters N` nodes that cheat on purpose
//! (for the verifiers to catch), `--listen <ip>` opens it to other machines
//! (a private swarm: see [`strata_testnet::swarm`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use strata_chain::rpc::ChainClient;
use strata_localnet::{Localnet, LocalnetConfig};

use strata_chain::keys;
use strata_node::cheat::Cheat;
use strata_testnet::bench::BenchOptions;
use strata_testnet::genesis::TOKEN;
use strata_testnet::loadgen::{self, LoadOptions};
use strata_testnet::local::{LocalOptions, LocalTestnet};
use strata_testnet::network::{NetworkOptions, DEMO_API_KEY};
use strata_testnet::swarm::{self, SwarmPorts, DEFAULT_P2P_PORT};
use strata_testnet::{bootstrap, GenesisOptions, TestnetKeys, MODEL_NAME};

#[derive(Parser)]
#[command(name = "strata-testnet", version, about = "Run a local Strata testnet")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the chain, deploy the program, fund and register nodes; stay up until Ctrl-C.
    Up(Up),
    /// Measure paid tasks per second through the whole path (gateway, p2p,
    /// node, receipts, relayer) against the same work run straight on the
    /// engine, and the chain fees per settled task. Uses its own chain.
    Bench {
        /// Concurrent clients to measure at.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        clients: Vec<usize>,
        /// Tasks per client count.
        #[arg(long, default_value_t = 32)]
        tasks: usize,
        /// Tokens per completion.
        #[arg(long, default_value_t = 32)]
        max_tokens: u32,
        /// Nodes serving.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
    },
}

/// `strata-testnet up`'s flags.
#[derive(clap::Args)]
struct Up {
    /// JSON-RPC port (on 127.0.0.1, or the --listen address).
    #[arg(long, default_value_t = 8899)]
    rpc_port: u16,
    /// Websocket port (on 127.0.0.1, or the --listen address).
    #[arg(long, default_value_t = 8900)]
    ws_port: u16,
    /// Open the testnet to other machines (a private swarm): the chain's RPC
    /// and websocket, the relayer, the gateway and the services' p2p bind on
    /// this address of this machine instead of 127.0.0.1, and the commands a
    /// joining machine runs are printed. Whoever reaches it can use the chain
    /// and the gateway: your own machines only (README).
    #[arg(long, value_name = "IP")]
    listen: Option<IpAddr>,
    /// Allow --listen 0.0.0.0 (or ::): every interface of this machine.
    #[arg(long, requires = "listen")]
    listen_any: bool,
    /// First p2p TCP port of the in-process services (relayer, gateway,
    /// nodes, verifiers, one each) [default: 4100 with --listen, else any free ports].
    #[arg(long)]
    p2p_port: Option<u16>,
    /// Number of nodes to register and stake.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(0..=64))]
    nodes: u16,
    /// Where keys and testnet.json live.
    #[arg(long, default_value = ".strata/testnet")]
    state_dir: PathBuf,
    /// Set up, print, and exit (for scripts and smoke tests) instead of staying up.
    #[arg(long)]
    exit_after_setup: bool,
    /// Only the chain and genesis: no relayer, nodes or gateway.
    #[arg(long)]
    chain_only: bool,
    /// Gateway HTTP port (on 127.0.0.1, or the --listen address).
    #[arg(long, default_value_t = 8080)]
    gateway_port: u16,
    /// Relayer and explorer HTTP port (on 127.0.0.1, or the --listen address).
    #[arg(long, default_value_t = 8788)]
    relayer_port: u16,
    /// Paying clients of a load generator to run against the gateway.
    #[arg(long, default_value_t = 0)]
    clients: usize,
    /// Verifiers to run (at least three, so that a committee can reach its quorum).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(0..=16))]
    verifiers: u16,
    /// Cheating nodes to run beside the honest ones, each with the next mode
    /// of skip-layers, truncated-model, noise, junk-tokens, wrong-root, withhold.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=16))]
    cheaters: u16,
    /// Serve the model as a pipeline: one node per range of blocks, e.g.
    /// `0..10,10..20,20..30` (these replace --nodes; replicas of a range
    /// give failover).
    #[arg(long, value_delimiter = ',', value_name = "A..B,...", value_parser = strata_node::memory::parse_layers)]
    pipeline: Vec<std::ops::Range<usize>>,
    /// Share of tasks audited, in basis points (default: the local parameters' 200, 2 %).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    audit_rate_bps: Option<u16>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Every engine (nodes, verifiers) runs on its own thread rather than
    // sharing candle's pool, which serialises its callers: on a few cores
    // that keeps them all busy, and it makes each one's CPU time measurable.
    // Set before any engine exists, while this process has one thread.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    strata_service::init_logging("warn");
    match Cli::parse().command {
        Command::Up(up_args) => up(up_args).await,
        Command::Bench {
            clients,
            tasks,
            max_tokens,
            nodes,
        } => {
            strata_testnet::bench::run(&BenchOptions {
                clients,
                tasks,
                max_tokens,
                nodes,
            })
            .await
        }
    }
}

async fn up(a: Up) -> anyhow::Result<()> {
    let (verifiers, cheaters) = (usize::from(a.verifiers), usize::from(a.cheaters));
    // Refused before anything binds or is written.
    if let Some(ip) = a.listen {
        swarm::check_listen(ip, a.listen_any, cheaters)?;
    }
    let ip = a.listen.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let state_dir = a.state_dir;
    let chain = LocalnetConfig {
        rpc_port: a.rpc_port,
        ws_port: a.ws_port,
        ..LocalnetConfig::default()
    };
    let nodes = if a.pipeline.is_empty() {
        usize::from(a.nodes)
    } else {
        a.pipeline.len()
    };
    if a.chain_only {
        return chain_only(chain, ip, nodes, &state_dir, a.exit_after_setup).await;
    }
    let mut options = LocalOptions::ephemeral(&state_dir);
    options.chain = chain;
    options.nodes = nodes + cheaters;
    options.verifiers = verifiers;
    options.genesis.params = strata_chain::params::local();
    if let Some(rate) = a.audit_rate_bps {
        options.genesis.params.audit_rate_bps = rate;
    }
    options.network = NetworkOptions::local(state_dir.join("services"));
    options.network.gateway_addr = SocketAddr::new(ip, a.gateway_port);
    options.network.relayer_addr = SocketAddr::new(ip, a.relayer_port);
    options.network.listen_ip = ip;
    options.network.p2p_port = a.p2p_port.unwrap_or(match a.listen {
        Some(_) => DEFAULT_P2P_PORT,
        None => 0,
    });
    // Relayer, gateway, then every node and verifier: one port each.
    let p2p_ports = (
        options.network.p2p_port,
        options
            .network
            .p2p_port_of(1 + nodes + cheaters + verifiers)?,
    );
    options.network.cheats = Cheat::ALL.iter().copied().cycle().take(cheaters).collect();
    options.network.pipeline = a.pipeline;
    for i in 0..a.clients {
        let key =
            keys::read_or_create(&state_dir.join("keys").join(format!("load-client-{i}.json")))?;
        options
            .clients
            .push((format!("load-key-{i}"), key, 100 * TOKEN));
    }
    println!(
        "Starting the chain, the relayer, {nodes} nodes, {cheaters} cheating nodes and {verifiers} verifiers (each loading the model) and the gateway..."
    );
    let t = LocalTestnet::start(&state_dir, options).await?;
    let (m, gateway, relayer) = (&t.manifest, t.net.gateway.url(), t.net.relayer.http_url());
    println!("Strata local testnet is up.");
    println!("  RPC:        {}", m.rpc_url);
    println!("  program:    {}", m.program_id);
    println!("  mint:       {}", m.mint);
    println!("  nodes:      {}", m.nodes[..nodes].join(", "));
    for (key, cheat) in m.nodes[nodes..].iter().zip(&t.net.cheats()) {
        println!("  cheater:    {key} ({cheat})");
    }
    println!("  verifiers:  {}", m.verifiers.join(", "));
    println!("  gateway:    {gateway}/v1   (OpenAI-compatible; API key {DEMO_API_KEY})");
    println!("  explorer:   {relayer}/");
    println!(
        "  manifest:   {}",
        state_dir.join(strata_testnet::manifest::FILE).display()
    );
    let body = format!(
        r#"{{"model": "{MODEL_NAME}", "stream": true, "messages": [{{"role": "user", "content": "Hello!"}}]}}"#
    );
    println!("Try:");
    println!(
        "  curl -N {gateway}/v1/chat/completions -H 'Authorization: Bearer {DEMO_API_KEY}' -H 'Content-Type: application/json' -d '{body}'"
    );
    println!(
        "  strata --url {} audit <strata.task_id of the response> --relayer {relayer}",
        m.rpc_url
    );
    if a.listen.is_some_and(|ip| !ip.is_loopback()) {
        let ports = SwarmPorts {
            rpc: port_of(&m.rpc_url).unwrap_or(a.rpc_port),
            ws: port_of(&m.ws_url).unwrap_or(a.ws_port),
            relayer_http: port_of(relayer).unwrap_or(a.relayer_port),
            gateway_http: port_of(&gateway).unwrap_or(a.gateway_port),
            p2p: (p2p_ports.0 != 0).then_some(p2p_ports),
        };
        println!("{}", swarm::join_instructions(ip, m, &state_dir, &ports));
    }
    if a.clients > 0 {
        start_load(&gateway, a.clients);
    }
    if !a.exit_after_setup {
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        println!("Stopping: nodes finish their tasks and hand off receipts.");
    }
    t.shutdown().await;
    Ok(())
}

/// The port at the end of a URL such as `http://10.0.0.5:8899`.
fn port_of(url: &str) -> Option<u16> {
    url.trim_end_matches('/').rsplit(':').next()?.parse().ok()
}

/// `--clients N`: paying clients in a loop, and a throughput line every 10 s.
fn start_load(gateway: &str, clients: usize) {
    let load = LoadOptions {
        gateway: gateway.to_string(),
        api_keys: (0..clients).map(|i| format!("load-key-{i}")).collect(),
        model: MODEL_NAME.to_string(),
        max_tokens: 32,
        tasks_per_client: None,
        duration: Duration::from_secs(u64::MAX / 4),
    };
    tokio::spawn(async move {
        let r = loadgen::run(&load).await;
        println!(
            "load generator stopped: {} tasks, {} errors",
            r.tasks, r.errors
        );
    });
    let stats_url = format!("{gateway}/v1/stats");
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut last = 0u64;
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let Ok(resp) = http.get(&stats_url).send().await else {
                continue;
            };
            if let Ok(v) = resp.json::<serde_json::Value>().await {
                let tasks = v["tasks"].as_u64().unwrap_or(0);
                println!(
                    "load: {:.2} paid tasks/s, {tasks} in all",
                    tasks.saturating_sub(last) as f64 / 10.0
                );
                last = tasks;
            }
        }
    });
    println!("Load generator: {clients} paying clients.");
}

/// `--chain-only`: the chain and a genesis with registered nodes, no services.
async fn chain_only(
    config: LocalnetConfig,
    ip: IpAddr,
    nodes: usize,
    state_dir: &std::path::Path,
    exit_after_setup: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let keys = TestnetKeys::load_or_create(state_dir, nodes)?;
    let chain = tokio::task::spawn_blocking(move || Localnet::start_on(&config, ip)).await??;
    let client = ChainClient::new(chain.rpc_url())?;
    let mut manifest = bootstrap(&client, chain.ws_url(), &keys, &GenesisOptions::default())
        .await
        .context("setting up the testnet")?;
    manifest.listen = (!ip.is_loopback()).then(|| ip.to_string());
    let path = manifest.write(state_dir)?;
    println!("Strata local chain is up (no services).");
    println!("  RPC:        {}", manifest.rpc_url);
    println!("  websocket:  {}", manifest.ws_url);
    println!("  program:    {}", manifest.program_id);
    println!("  mint:       {}", manifest.mint);
    println!("  nodes:      {}", manifest.nodes.join(", "));
    println!("  manifest:   {}", path.display());
    println!("Try: strata --url {} status config", manifest.rpc_url);
    if !exit_after_setup {
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    tokio::task::spawn_blocking(move || drop(chain)).await?;
    Ok(())
}
