//! `strata-gateway`: flags in, [`strata_gateway::start`], serve until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use strata_chain::{cluster, keys};
use strata_gateway::{start, GatewayConfig};
use strata_p2p::P2pConfig;

#[derive(Parser)]
#[command(
    name = "strata-gateway",
    version,
    about = "OpenAI-compatible API in front of the Strata network"
)]
struct Cli {
    /// Cluster: localnet, devnet, testnet or an RPC URL.
    #[arg(long, default_value = "localnet")]
    url: String,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A client account: `API_KEY=KEYPAIR_FILE` (repeatable). The gateway signs
    /// that client's vouchers with the keypair.
    #[arg(long = "account", required = true)]
    accounts: Vec<String>,
    /// Where voucher totals are kept.
    #[arg(long, default_value = ".strata/gateway")]
    state_dir: PathBuf,
    /// Bootstrap peer multiaddr (repeatable): a node or the relayer.
    #[arg(long)]
    bootstrap: Vec<String>,
    /// p2p listen multiaddr.
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
    p2p_listen: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    strata_service::init_logging("info");
    let cli = Cli::parse();
    let mut accounts = Vec::new();
    for a in &cli.accounts {
        let (key, path) = a
            .split_once('=')
            .with_context(|| format!("--account {a}: expected API_KEY=KEYPAIR_FILE"))?;
        let keypair =
            keys::read(&PathBuf::from(path)).with_context(|| format!("--account {key}"))?;
        accounts.push((key.to_string(), keypair));
    }
    let gw = start(GatewayConfig {
        http_addr: cli.listen,
        rpc_url: cluster::resolve(&cli.url)?,
        accounts,
        state_dir: cli.state_dir,
        p2p: P2pConfig {
            listen: cli.p2p_listen,
            bootstrap: cli.bootstrap,
            ..P2pConfig::default()
        },
    })
    .await?;
    println!("strata-gateway listening on {}", gw.url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    gw.shutdown().await;
    Ok(())
}
