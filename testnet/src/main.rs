//! `strata-testnet up`: starts the embedded local chain with the Strata
//! program, creates the mint, the faucet and a funded demo client, writes
//! `testnet.json`, then starts the relayer (with the explorer), the nodes
//! (which register and stake themselves) and the gateway, prints the URLs and
//! an example `curl`, and stays up until Ctrl-C. `--clients N` adds paying
//! load.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;
use strata_chain::rpc::ChainClient;
use strata_localnet::{Localnet, LocalnetConfig};

use strata_chain::{keys, Signer};
use strata_testnet::genesis::TOKEN;
use strata_testnet::loadgen::{self, LoadOptions};
use strata_testnet::network::{self, NetworkOptions, DEMO_API_KEY};
use strata_testnet::{bootstrap, fund_client, GenesisOptions, TestnetKeys, MODEL_NAME};

#[derive(Parser)]
#[command(name = "strata-testnet", version, about = "Run a local Strata testnet")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the chain, deploy the program, fund and register nodes; stay up until Ctrl-C.
    Up {
        /// JSON-RPC port on 127.0.0.1.
        #[arg(long, default_value_t = 8899)]
        rpc_port: u16,
        /// Websocket port on 127.0.0.1.
        #[arg(long, default_value_t = 8900)]
        ws_port: u16,
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
        /// Gateway HTTP port on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        gateway_port: u16,
        /// Relayer and explorer HTTP port on 127.0.0.1.
        #[arg(long, default_value_t = 8788)]
        relayer_port: u16,
        /// Paying clients of a load generator to run against the gateway.
        #[arg(long, default_value_t = 0)]
        clients: usize,
    },
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Up {
            rpc_port,
            ws_port,
            nodes,
            state_dir,
            exit_after_setup,
            chain_only,
            gateway_port,
            relayer_port,
            clients,
        } => {
            up(Up {
                rpc_port,
                ws_port,
                nodes: usize::from(nodes),
                state_dir,
                exit_after_setup,
                chain_only,
                gateway_port,
                relayer_port,
                clients,
            })
            .await
        }
        Command::Bench {
            clients,
            tasks,
            max_tokens,
            nodes,
        } => bench(clients, tasks, max_tokens, nodes).await,
    }
}

async fn bench(
    clients: Vec<usize>,
    tasks: usize,
    max_tokens: u32,
    nodes: usize,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("strata-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let keys = TestnetKeys::load_or_create(&dir, nodes)?;
    let config = LocalnetConfig {
        rpc_port: 0,
        ws_port: 0,
        slot_time_ms: 100,
    };
    let chain = tokio::task::spawn_blocking(move || Localnet::start(&config)).await??;
    let rpc = ChainClient::new(chain.rpc_url())?;
    let genesis = GenesisOptions {
        register_nodes: false,
        ..GenesisOptions::default()
    };
    bootstrap(&rpc, chain.ws_url(), &keys, &genesis).await?;
    let most = clients.iter().copied().max().unwrap_or(1);
    let mut accounts = Vec::new();
    for i in 0..most {
        let key = strata_chain::Keypair::new();
        fund_client(&rpc, &keys.faucet, &keys.mint.pubkey(), &key, 100 * TOKEN).await?;
        accounts.push((format!("bench-{i}"), key));
    }
    let mut options = NetworkOptions::local(dir.join("services"));
    options.gateway_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    options.relayer_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    options.batch_interval = Duration::from_secs(1);
    let net = network::start(
        chain.rpc_url(),
        &keys.relayer,
        &keys.nodes,
        accounts,
        &options,
    )
    .await?;
    let engine = std::sync::Arc::new(
        tokio::task::spawn_blocking(strata_engine::Engine::load_default).await??,
    );
    let relayer_lamports0 = rpc.lamports(&keys.relayer.pubkey()).await?;
    let load = |n: usize, per_client: usize| LoadOptions {
        gateway: net.gateway.url(),
        api_keys: (0..n).map(|i| format!("bench-{i}")).collect(),
        model: MODEL_NAME.to_string(),
        max_tokens,
        tasks_per_client: Some(per_client),
        duration: Duration::from_secs(3_600),
    };
    // Warm-up: first connections, first channels.
    loadgen::run(&load(most, 1)).await;
    println!(
        "whole path vs the engine alone, {max_tokens}-token completions, {nodes} node(s), 2 cores"
    );
    println!("| clients | tasks | path tasks/s | engine tasks/s | path / engine | time outside the model | p50 latency | p99 latency |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let (mut settled_tasks, mut price_total) = (most as u64, 0u64);
    for &n in &clients {
        let per_client = tasks.div_ceil(n);
        let count = per_client * n;
        let r = loadgen::run(&load(n, per_client)).await;
        if let Some(e) = &r.first_error {
            println!("  ({} errors; first: {e})", r.errors);
        }
        settled_tasks += r.tasks as u64;
        price_total += r.price_total;
        let prompts = strata_testnet::bench::load_prompts(n, per_client);
        let e = engine.clone();
        let reference = tokio::task::spawn_blocking(move || {
            strata_testnet::bench::engine_reference(&e, &prompts, max_tokens as usize, n)
        })
        .await?;
        let path_rate = r.tasks_per_sec();
        let engine_rate = count as f64 / reference.as_secs_f64();
        println!(
            "| {n} | {} | {path_rate:.2} | {engine_rate:.2} | {:.2} | {:.0} % | {:.0} ms | {:.0} ms |",
            r.tasks,
            path_rate / engine_rate,
            100.0 * (1.0 - path_rate / engine_rate).max(0.0),
            r.percentile(50).as_secs_f64() * 1e3,
            r.percentile(99).as_secs_f64() * 1e3,
        );
    }
    let _ = price_total;
    // Fees: wait until the relayer has batched every receipt and redeemed every voucher.
    let http = reqwest::Client::new();
    let stats_url = format!("{}/v1/stats", net.relayer.http_url());
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let s: serde_json::Value = http.get(&stats_url).send().await?.json().await?;
        let batched = s["batched"].as_u64().unwrap_or(0);
        let redeemed = rpc_total_paid(&rpc, &net).await?;
        if batched >= settled_tasks && redeemed {
            break;
        }
        if std::time::Instant::now() > deadline {
            println!("(settlement incomplete after 120 s: {batched} of {settled_tasks} batched)");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let spent = relayer_lamports0.saturating_sub(rpc.lamports(&keys.relayer.pubkey()).await?);
    // Rent is a deposit held by accounts, not a fee: take it out.
    let s: serde_json::Value = http.get(&stats_url).send().await?.json().await?;
    let batches = s["batches"].as_u64().unwrap_or(0);
    let epochs = s["epochs"].as_u64().unwrap_or(0);
    let channels = net
        .gateway
        .inner
        .accounts
        .totals()
        .iter()
        .filter(|t| t.2 > 0)
        .count() as u64;
    let rent = batches
        * rpc
            .rent(8 + <strata_chain::accounts::Batch as anchor_lang::Space>::INIT_SPACE)
            .await?
        + channels
            * rpc
                .rent(8 + <strata_chain::accounts::Channel as anchor_lang::Space>::INIT_SPACE)
                .await?
        + epochs
            * rpc
                .rent(8 + <strata_chain::accounts::RewardEpoch as anchor_lang::Space>::INIT_SPACE)
                .await?;
    let fees = spent.saturating_sub(rent);
    println!(
        "relayer: {settled_tasks} tasks settled in {batches} batches over {channels} channels and {epochs} reward epochs; \
         spent {spent} lamports = {rent} rent (new accounts) + {fees} transaction fees: {:.0} lamports of fees per settled task",
        fees as f64 / settled_tasks.max(1) as f64
    );
    net.shutdown().await;
    tokio::task::spawn_blocking(move || drop(chain)).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// True once every voucher the gateway signed is redeemed on-chain.
async fn rpc_total_paid(rpc: &ChainClient, net: &network::Network) -> anyhow::Result<bool> {
    for (client, node, total) in net.gateway.inner.accounts.totals() {
        let channel = strata_chain::pda::channel(&client, &node);
        let redeemed = rpc
            .account::<strata_chain::accounts::Channel>(&channel, "channel")
            .await?
            .map_or(0, |c| c.redeemed);
        if redeemed < total {
            return Ok(false);
        }
    }
    Ok(true)
}

struct Up {
    rpc_port: u16,
    ws_port: u16,
    nodes: usize,
    state_dir: PathBuf,
    exit_after_setup: bool,
    chain_only: bool,
    gateway_port: u16,
    relayer_port: u16,
    clients: usize,
}

async fn up(a: Up) -> anyhow::Result<()> {
    let state_dir = a.state_dir;
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let keys = TestnetKeys::load_or_create(&state_dir, a.nodes)?;
    let config = LocalnetConfig {
        rpc_port: a.rpc_port,
        ws_port: a.ws_port,
        ..LocalnetConfig::default()
    };
    let chain = tokio::task::spawn_blocking(move || Localnet::start(&config)).await??;
    let client = ChainClient::new(chain.rpc_url())?;
    let genesis = GenesisOptions {
        register_nodes: a.chain_only,
        ..GenesisOptions::default()
    };
    let manifest = bootstrap(&client, chain.ws_url(), &keys, &genesis)
        .await
        .context("setting up the testnet")?;
    let path = manifest.write(&state_dir)?;

    println!("Strata local testnet is up.");
    println!("  RPC:        {}", manifest.rpc_url);
    println!("  websocket:  {}", manifest.ws_url);
    println!("  program:    {}", manifest.program_id);
    println!("  mint:       {}", manifest.mint);
    println!("  manifest:   {}", path.display());

    let mut net = None;
    if !a.chain_only {
        let mut accounts = vec![(DEMO_API_KEY.to_string(), keys.client.insecure_clone())];
        for i in 0..a.clients {
            let key = keys::read_or_create(
                &state_dir.join("keys").join(format!("load-client-{i}.json")),
            )?;
            fund_client(
                &client,
                &keys.faucet,
                &keys.mint.pubkey(),
                &key,
                100 * TOKEN,
            )
            .await?;
            accounts.push((format!("load-key-{i}"), key));
        }
        let mut options = NetworkOptions::local(state_dir.join("services"));
        options.gateway_addr = SocketAddr::from(([127, 0, 0, 1], a.gateway_port));
        options.relayer_addr = SocketAddr::from(([127, 0, 0, 1], a.relayer_port));
        println!(
            "Starting the relayer, {} nodes (loading the model) and the gateway...",
            a.nodes
        );
        let n = network::start(
            chain.rpc_url(),
            &keys.relayer,
            &keys.nodes,
            accounts,
            &options,
        )
        .await
        .context("starting the services")?;
        println!("  nodes:      {}", manifest.nodes.join(", "));
        println!(
            "  gateway:    {}/v1   (OpenAI-compatible; API key {DEMO_API_KEY})",
            n.gateway.url()
        );
        println!("  explorer:   {}/", n.relayer.http_url());
        println!("Try:");
        let body = format!(
            r#"{{"model": "{MODEL_NAME}", "stream": true, "messages": [{{"role": "user", "content": "Hello!"}}]}}"#
        );
        println!(
            "  curl -N {}/v1/chat/completions -H 'Authorization: Bearer {DEMO_API_KEY}' -H 'Content-Type: application/json' -d '{body}'",
            n.gateway.url()
        );
        println!(
            "  strata --url {} audit <task_id from the response> --relayer {}",
            manifest.rpc_url,
            n.relayer.http_url()
        );
        if a.clients > 0 {
            let load = LoadOptions {
                gateway: n.gateway.url(),
                api_keys: (0..a.clients).map(|i| format!("load-key-{i}")).collect(),
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
            let stats_url = format!("{}/v1/stats", n.gateway.url());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut last = 0u64;
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    if let Ok(v) = http.get(&stats_url).send().await {
                        if let Ok(v) = v.json::<serde_json::Value>().await {
                            let tasks = v["tasks"].as_u64().unwrap_or(0);
                            println!(
                                "load: {:.2} tasks/s, {tasks} paid tasks in all",
                                (tasks - last) as f64 / 10.0
                            );
                            last = tasks;
                        }
                    }
                }
            });
            println!("Load generator: {} paying clients.", a.clients);
        }
        net = Some(n);
    } else {
        println!("  nodes:      {}", manifest.nodes.join(", "));
        println!("Try: strata --url {} status config", manifest.rpc_url);
    }
    if a.exit_after_setup {
        if let Some(n) = net {
            n.shutdown().await;
        }
        return Ok(());
    }
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("Stopping.");
    if let Some(n) = net {
        n.shutdown().await;
    }
    tokio::task::spawn_blocking(move || drop(chain)).await?;
    Ok(())
}
