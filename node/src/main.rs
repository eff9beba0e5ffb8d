//! `strata-node`: flags in, [`strata_node::start`], wait for Ctrl-C, leave cleanly.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use strata_chain::{cluster, keys, Signer};
use strata_node::memory::Layers;
use strata_node::placement::PlacementConfig;
use strata_node::{start, NodeConfig};
use strata_p2p::P2pConfig;

#[derive(Parser)]
#[command(
    name = "strata-node",
    version,
    about = "Serve paid inference on the Strata network"
)]
struct Cli {
    /// Operator keypair (Solana JSON); created if missing.
    #[arg(long, default_value = "~/.config/strata/node.json")]
    keypair: String,
    /// Cluster: localnet, devnet, testnet or an RPC URL.
    #[arg(long, default_value = "localnet")]
    url: String,
    /// Priority fee in micro-lamports per compute unit on every transaction
    /// sent (0: none). Public clusters under load schedule priced
    /// transactions first; the local chain ignores it.
    #[arg(long, default_value_t = 0)]
    priority_fee_micro_lamports: u64,
    /// Run without a chain (no registration; for trying the engine out).
    #[arg(long)]
    offline: bool,
    /// Your own model: a GGUF file or a Hugging Face directory (config.json,
    /// safetensors, tokenizer.json); hashed, never fetched or replaced.
    /// Default: the default model in the cache, fetched and checked.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Name clients ask for.
    #[arg(long, default_value = "SmolLM2-135M-Instruct")]
    model_name: String,
    /// Price per token (prompt and completion), in base units.
    #[arg(long, default_value_t = 10)]
    price: u64,
    /// Sequences batched at once.
    #[arg(long, default_value_t = 16)]
    max_concurrent: usize,
    /// Longest completion per task.
    #[arg(long, default_value_t = 1024)]
    max_tokens: u32,
    /// Stake to hold, in whole tokens (topped up at start).
    #[arg(long, default_value = "100", value_parser = strata_chain::amount::tokens_or_zero)]
    stake: u64,
    /// p2p listen multiaddr (repeatable).
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/4001")]
    listen: Vec<String>,
    /// Bootstrap peer multiaddr (repeatable).
    #[arg(long)]
    bootstrap: Vec<String>,
    /// The relayer's multiaddr (with /p2p/<id>), which takes receipts.
    #[arg(long)]
    relayer: Option<String>,
    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,
    /// Where the node keeps its receipt outbox and its archive of settled
    /// tasks (what audits open) across restarts.
    #[arg(long, default_value = "~/.strata/node")]
    state_dir: String,
    /// Serve dishonestly, to watch the verification network catch it: one of
    /// skip-layers, truncated-model, noise, junk-tokens, wrong-root,
    /// withhold. Refused unless the chain is a local one.
    #[arg(long, value_name = "MODE")]
    cheat: Option<strata_node::cheat::Cheat>,
    /// Hold only blocks a..b of the model and serve as a pipeline hop
    /// (loads only those weights; the first hop also holds the embedding,
    /// the last the head); or `auto`: as many blocks as --memory-mb holds,
    /// where the swarm is weakest, moving when a block loses its last holder.
    #[arg(long, value_name = "A..B|auto", value_parser = strata_node::memory::parse_layers)]
    layers: Option<strata_node::memory::Layers>,
    /// With --layers auto: seconds to listen to other hops before choosing.
    #[arg(long, value_name = "SECS", default_value_t = 6)]
    join_wait_secs: u64,
    /// With --layers auto: seconds between checks of whether to move.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    rebalance_secs: u64,
    /// Memory this node may use for weights and KV cache, MiB: start is
    /// refused, with the figures, when what it holds would not fit.
    #[arg(long, value_name = "MIB")]
    memory_mb: Option<u64>,
    /// Fetch, keep and seed the policy versions (LoRA adapters) this
    /// trainer publishes: its public key, base58 or hex (repeatable; off by
    /// default). Versions for another base model are refused.
    #[arg(long, value_name = "PUBKEY", value_parser = strata_node::policy::parse_trainer_key)]
    follow_trainer: Vec<[u8; 32]>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9101).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    strata_service::init_logging("info");
    let cli = Cli::parse();
    strata_chain::rpc::set_default_priority_fee(cli.priority_fee_micro_lamports);
    let key_path = strata_service::expand_home(&cli.keypair);
    let keypair = keys::read_or_create(&key_path)
        .with_context(|| format!("keypair {}", key_path.display()))?;
    let (model_path, model_sha256) = strata_engine::model_choice(cli.model);
    let rpc_url = if cli.offline {
        None
    } else {
        Some(cluster::resolve(&cli.url)?)
    };
    println!("strata-node {}", keypair.pubkey());
    let node = start(NodeConfig {
        keypair,
        rpc_url,
        model_path,
        model_sha256,
        model_name: cli.model_name,
        price_per_token: cli.price,
        max_concurrent: cli.max_concurrent,
        max_tokens: cli.max_tokens,
        stake: cli.stake,
        p2p: P2pConfig {
            listen: cli.listen,
            bootstrap: cli.bootstrap,
            ..P2pConfig::default()
        },
        relayer: cli.relayer,
        profile_tokens: 32,
        quiet: cli.quiet,
        state_dir: Some(strata_service::expand_home(&cli.state_dir)),
        cheat: cli.cheat,
        memory: strata_node::memory::MemoryPlan {
            layers: match cli.layers.unwrap_or_default() {
                Layers::Auto(_) => Layers::Auto(PlacementConfig {
                    join_wait: Duration::from_secs(cli.join_wait_secs),
                    epoch: Duration::from_secs(cli.rebalance_secs.max(1)),
                }),
                other => other,
            },
            offer_mb: cli.memory_mb,
        },
        follow_trainers: cli.follow_trainer,
    })
    .await?;
    match &node.hops {
        Some(h) => println!(
            "serving blocks {}..{} as a pipeline hop ({} MiB of weights); listening on {}",
            h.layers().start,
            h.layers().end,
            node.profile.model_mb,
            node.addrs.join(", ")
        ),
        None => println!(
            "serving: {:.1} tokens/s, {} MiB; listening on {}",
            node.profile.tokens_per_sec,
            node.profile.memory_mb,
            node.addrs.join(", ")
        ),
    }
    if let Some(addr) = cli.metrics {
        let (service, hops, p2p) = (node.service.clone(), node.hops.clone(), node.p2p.clone());
        let policies = node.policies.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let (service, hops, p2p) = (service.clone(), hops.clone(), p2p.clone());
                let policies = policies.clone();
                async move {
                    let peers = p2p.stats().await.unwrap_or_default();
                    strata_node::metrics::render(&service, hops.as_ref(), &peers, policies.as_ref())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics address {addr}"))?;
        println!("metrics: http://{}/metrics", listener.local_addr()?);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("metrics server stopped: {e}");
            }
        });
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    if let Some(h) = &node.hops {
        println!("hop bytes sent: {}", h.bytes_sent());
    }
    println!("shutting down: finishing tasks in flight and handing off receipts");
    node.shutdown().await;
    Ok(())
}
