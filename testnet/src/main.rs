//! `strata-testnet up`: starts the embedded local chain with the Strata
//! program, creates the mint, the faucet and funded, registered nodes, writes
//! `testnet.json`, prints the RPC URL, and stays up until Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use strata_chain::rpc::ChainClient;
use strata_localnet::{Localnet, LocalnetConfig};
use strata_testnet::{bootstrap, GenesisOptions, TestnetKeys};

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
        } => {
            up(
                rpc_port,
                ws_port,
                usize::from(nodes),
                state_dir,
                exit_after_setup,
            )
            .await
        }
    }
}

async fn up(
    rpc_port: u16,
    ws_port: u16,
    nodes: usize,
    state_dir: PathBuf,
    exit_after_setup: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let keys = TestnetKeys::load_or_create(&state_dir, nodes)?;
    let config = LocalnetConfig {
        rpc_port,
        ws_port,
        ..LocalnetConfig::default()
    };
    let chain = tokio::task::spawn_blocking(move || Localnet::start(&config)).await??;
    let client = ChainClient::new(chain.rpc_url())?;
    let manifest = bootstrap(&client, chain.ws_url(), &keys, &GenesisOptions::default())
        .await
        .context("setting up the testnet")?;
    let path = manifest.write(&state_dir)?;

    println!("Strata local testnet is up.");
    println!("  RPC:        {}", manifest.rpc_url);
    println!("  websocket:  {}", manifest.ws_url);
    println!("  program:    {}", manifest.program_id);
    println!("  mint:       {}", manifest.mint);
    println!("  nodes:      {}", manifest.nodes.join(", "));
    println!("  manifest:   {}", path.display());
    println!("Try: strata --url {} status config", manifest.rpc_url);
    if exit_after_setup {
        return Ok(());
    }
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("Stopping.");
    tokio::task::spawn_blocking(move || drop(chain)).await?;
    Ok(())
}
