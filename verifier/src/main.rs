//! `strata-verifier`: flags in, [`strata_verifier::start`], wait for Ctrl-C, leave.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use strata_chain::{cluster, keys, Signer};
use strata_p2p::P2pConfig;
use strata_verifier::{start, VerifierConfig};

#[derive(Parser)]
#[command(
    name = "strata-verifier",
    version,
    about = "Audit the work served on the Strata network, challenge cheaters and judge challenges"
)]
struct Cli {
    /// Operator keypair (Solana JSON); created if missing. It needs SOL for
    /// fees and tokens for the stake and for challenge bonds.
    #[arg(long, default_value = "~/.config/strata/verifier.json")]
    keypair: String,
    /// Cluster: localnet, devnet, testnet or an RPC URL.
    #[arg(long, default_value = "localnet")]
    url: String,
    /// Priority fee in micro-lamports per compute unit on every transaction
    /// sent (0: none). Public clusters under load schedule priced
    /// transactions first; the local chain ignores it.
    #[arg(long, default_value_t = 0)]
    priority_fee_micro_lamports: u64,
    /// Your own model: a GGUF file or a Hugging Face directory; hashed,
    /// never fetched. Default: the default model in the cache, fetched and
    /// checked. Receipts naming another model are not judged.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The relayer's HTTP API (receipts in, audit reports out).
    #[arg(long, default_value = "http://127.0.0.1:8788")]
    relayer_http: String,
    /// Verifier stake to hold, in whole tokens (topped up at start).
    #[arg(long, default_value = "100", value_parser = strata_chain::amount::tokens_or_zero)]
    stake: u64,
    /// p2p listen multiaddr (repeatable).
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/4002")]
    listen: Vec<String>,
    /// Bootstrap peer multiaddr (repeatable).
    #[arg(long)]
    bootstrap: Vec<String>,
    /// Seconds between reads of new batches and challenges.
    #[arg(long, default_value_t = 2)]
    poll_secs: u64,
    /// Seconds a node has to answer an opening request.
    #[arg(long, default_value_t = 60)]
    opening_timeout_secs: u64,
    /// Where the verifier remembers its audits and votes across restarts.
    #[arg(long, default_value = "~/.strata/verifier")]
    state_dir: String,
    /// Follow the policy versions (LoRA adapters) this trainer publishes,
    /// as nodes serving them do, to audit tasks served with them: its
    /// public key, base58 or hex (repeatable; off by default).
    #[arg(long, value_name = "PUBKEY", value_parser = strata_node::policy::parse_trainer_key)]
    follow_trainer: Vec<[u8; 32]>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9102).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    strata_service::init_logging("info");
    let cli = Cli::parse();
    strata_chain::rpc::set_default_priority_fee(cli.priority_fee_micro_lamports);
    if cli.poll_secs == 0 || cli.opening_timeout_secs == 0 {
        anyhow::bail!("--poll-secs and --opening-timeout-secs must be at least 1");
    }
    let key_path = strata_service::expand_home(&cli.keypair);
    let keypair = keys::read_or_create(&key_path)
        .with_context(|| format!("keypair {}", key_path.display()))?;
    let (model_path, model_sha256) = strata_engine::model_choice(cli.model);
    println!("strata-verifier {}", keypair.pubkey());
    let verifier = start(VerifierConfig {
        keypair,
        rpc_url: cluster::resolve(&cli.url)?,
        model_path,
        model_sha256,
        p2p: P2pConfig {
            listen: cli.listen,
            bootstrap: cli.bootstrap,
            ..P2pConfig::default()
        },
        relayer_http: cli.relayer_http,
        stake: cli.stake,
        poll_interval: Duration::from_secs(cli.poll_secs),
        opening_timeout: Duration::from_secs(cli.opening_timeout_secs),
        state_dir: Some(strata_service::expand_home(&cli.state_dir)),
        follow_trainers: cli.follow_trainer,
    })
    .await?;
    println!(
        "verifying with stake {}; listening on {}",
        verifier.registration.stake,
        verifier.addrs.join(", ")
    );
    if let Some(addr) = cli.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics address {addr}"))?;
        println!("metrics: http://{}/metrics", listener.local_addr()?);
        verifier.serve_metrics(listener);
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    let s = verifier.stats();
    println!(
        "shutting down: {} audits ({} passed, {} failed, {} withheld), \
         {} challenges opened, {} votes, {} verdicts",
        s.audits(),
        s.audits_passed,
        s.audits_failed,
        s.audits_withheld,
        s.challenges_opened,
        s.votes_cast,
        s.verdicts_submitted
    );
    verifier.shutdown().await;
    Ok(())
}
