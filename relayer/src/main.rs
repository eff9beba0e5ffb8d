//! `strata-relayer`: stores node receipts, posts their roots, redeems
//! vouchers, publishes rewards and serves proofs. Thin: flags, logging and
//! Ctrl-C; the work is in the `strata_relayer` library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use strata_p2p::P2pConfig;
use strata_relayer::{Relayer, RelayerConfig};

#[derive(Parser)]
#[command(
    name = "strata-relayer",
    version,
    about = "Strata relayer: receipts to on-chain batches, voucher redemption, rewards, proofs over HTTP"
)]
struct Args {
    /// Cluster: localnet, devnet, testnet, mainnet or an http(s) RPC URL.
    #[arg(long, short = 'u', default_value = "localnet")]
    url: String,
    /// Priority fee in micro-lamports per compute unit on every transaction
    /// sent (0: none). Public clusters under load schedule priced
    /// transactions first; the local chain ignores it.
    #[arg(long, default_value_t = 0)]
    priority_fee_micro_lamports: u64,
    /// The relayer's Solana keypair file (registered relayer and reward authority).
    #[arg(long, short = 'k')]
    keypair: PathBuf,
    /// Directory of the relayer's database.
    #[arg(long, default_value = ".strata/relayer")]
    state_dir: PathBuf,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8788")]
    http: SocketAddr,
    /// p2p listen multiaddr (repeat for several).
    #[arg(long = "p2p-listen", default_values_t = ["/ip4/0.0.0.0/tcp/4100".to_string()])]
    p2p_listen: Vec<String>,
    /// p2p bootstrap peer multiaddr ending in /p2p/<id> (repeat for several).
    #[arg(long)]
    bootstrap: Vec<String>,
    /// Seconds between batching and redemption rounds.
    #[arg(long, default_value = "10")]
    batch_interval: f64,
    /// Seconds between reward-epoch checks.
    #[arg(long, default_value = "10")]
    reward_interval: f64,
    /// Reward per work unit (token base units).
    #[arg(long, default_value = "1")]
    reward_per_work_unit: u64,
}

fn seconds(s: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{what} must be a positive number of seconds"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    strata_chain::rpc::set_default_priority_fee(args.priority_fee_micro_lamports);
    let keypair = strata_chain::keys::read(&args.keypair)
        .with_context(|| format!("reading the relayer keypair {}", args.keypair.display()))?;
    let p2p = P2pConfig {
        listen: args.p2p_listen,
        bootstrap: args.bootstrap,
        ..P2pConfig::default()
    };
    let relayer = Relayer::start(RelayerConfig {
        rpc_url: args.url,
        keypair,
        state_dir: args.state_dir,
        http_addr: args.http,
        p2p,
        batch_interval: seconds(args.batch_interval, "batch-interval")?,
        reward_interval: seconds(args.reward_interval, "reward-interval")?,
        reward_per_work_unit: args.reward_per_work_unit,
    })
    .await?;
    // One line per endpoint on stdout, for people and for scripts.
    println!("http {}", relayer.http_url());
    for addr in relayer.p2p_addrs() {
        println!("p2p {addr}");
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    relayer.shutdown().await;
    Ok(())
}
