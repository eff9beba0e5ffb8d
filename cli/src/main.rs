//! `strata`: the command line for Strata's on-chain books.
//!
//! It makes and shows keys (`keygen`, `address`), funds accounts on a local
//! testnet (`faucet`), registers and stakes nodes (`node register|update|
//! deregister`, `stake`, `unstake`, `withdraw-stake`), manages a client's
//! escrow (`deposit`, `request-withdrawal`, `withdraw`) and reads the chain
//! (`status node|config|escrow`, `balance`); sets up a freshly deployed
//! program (`admin init`); with a relayer it checks a
//! task's receipt against the on-chain batch root (`audit`) and claims a
//! node's rewards (`claim`); it asks a model paying with vouchers it signs
//! itself, no gateway holding the key (`chat`); it shares and fetches files peer to peer with
//! chunk-by-chunk verification (`file seed|fetch`). Global flags follow the Solana
//! CLI: `--url` (a cluster name or an http(s) URL), `--keypair` (a Solana
//! CLI JSON keypair file) and `--json` for machine-readable output.
//!
//! Token amounts are decimal numbers of whole tokens (6 decimals: `2.5` is
//! 2,500,000 base units); JSON output reports base units. Failures print one
//! line on stderr and exit with status 1.
//!
//! This binary only parses and wires: the work is done by `strata-chain`.

use strata_chain::amount;
mod admin;
mod chain;
mod chat;
mod client;
mod faucet;
mod files;
mod keys;
mod node;
mod output;
mod pipeline;
mod relayer;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strata_chain::{Capacity, Pubkey, Signer, ROLE_COMPUTE};

use crate::output::Output;

/// Default `--url`.
const DEFAULT_URL: &str = "localnet";

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: stake, run nodes, pay for compute, and read the chain"
)]
struct Cli {
    /// Cluster: localnet, devnet, testnet, mainnet, or an http(s) RPC URL [default: localnet].
    #[arg(long, short = 'u', global = true)]
    url: Option<String>,
    /// Solana CLI JSON keypair file [default: ~/.config/solana/id.json].
    #[arg(long, short = 'k', global = true)]
    keypair: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Priority fee in micro-lamports per compute unit on the transactions
    /// sent (0: none, the default).
    #[arg(long, global = true, default_value_t = 0)]
    priority_fee_micro_lamports: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new keypair file and print its public key.
    Keygen {
        /// Where to write it [default: --keypair, or ~/.config/solana/id.json].
        #[arg(long, short = 'o')]
        outfile: Option<PathBuf>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of --keypair.
    Address,
    /// Local testnet faucet: SOL by airdrop and Strata tokens from the mint authority.
    Faucet {
        /// SOL to airdrop.
        #[arg(long, default_value = "10", value_parser = amount::sol_or_zero)]
        sol: u64,
        /// Tokens to mint.
        #[arg(long, default_value = "1000", value_parser = amount::tokens_or_zero)]
        tokens: u64,
        /// Recipient [default: the --keypair's key].
        #[arg(long, value_parser = parse_pubkey)]
        to: Option<Pubkey>,
        /// Directory of the local testnet's `testnet.json`.
        #[arg(long, default_value = ".strata/testnet")]
        testnet_dir: PathBuf,
    },
    /// Node registration.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Stake tokens on your node.
    Stake {
        /// Tokens (decimal, e.g. 100 or 2.5).
        #[arg(value_parser = amount::tokens, allow_hyphen_values = true)]
        amount: u64,
    },
    /// Start unbonding stake (request_unstake); withdraw it after the unbonding period.
    Unstake {
        /// Tokens (decimal).
        #[arg(value_parser = amount::tokens, allow_hyphen_values = true)]
        amount: u64,
    },
    /// Withdraw stake whose unbonding period has ended.
    WithdrawStake,
    /// Deposit tokens into your client escrow.
    Deposit {
        /// Tokens (decimal).
        #[arg(value_parser = amount::tokens, allow_hyphen_values = true)]
        amount: u64,
    },
    /// Start the escrow withdrawal delay for an amount.
    RequestWithdrawal {
        /// Tokens (decimal).
        #[arg(value_parser = amount::tokens, allow_hyphen_values = true)]
        amount: u64,
    },
    /// Withdraw the requested amount once its delay has passed.
    Withdraw,
    /// Show on-chain state.
    #[command(subcommand)]
    Status(StatusCommand),
    /// Check a task's receipt: node and client signatures, digest, leaf, and
    /// its Merkle proof against the on-chain batch root; for a pipelined
    /// task, every hop's receipt and the links between consecutive hops.
    Audit {
        /// Task id (64 hex characters).
        task_id: String,
        /// Relayer HTTP URL.
        #[arg(long, default_value = relayer::DEFAULT_RELAYER)]
        relayer: String,
    },
    /// Ask a model, keeping your own key: finds a node on the p2p network,
    /// streams its answer, and pays it with a voucher this command signs
    /// (from your escrow; no gateway holds the key).
    Chat {
        /// Your message.
        message: String,
        /// Model name.
        #[arg(long, default_value = "SmolLM2-135M-Instruct")]
        model: String,
        /// Longest answer, in tokens.
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        /// Sampling temperature (0 is greedy).
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Sampler seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Seconds to look for a node serving the model.
        #[arg(long, default_value_t = 10)]
        find_secs: u64,
        /// Where this client's voucher totals are kept [default: ~/.strata/client].
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Peer to dial besides the registered nodes, ending in /p2p/<id> (repeatable).
        #[arg(long = "peer")]
        peers: Vec<String>,
    },
    /// Claim your node's rewards with the proof the relayer serves.
    Claim {
        /// Relayer HTTP URL.
        #[arg(long, default_value = relayer::DEFAULT_RELAYER)]
        relayer: String,
    },
    /// Share files peer to peer and fetch them by root (verified chunk by chunk).
    #[command(subcommand)]
    File(FileCommand),
    /// The deployer's set-up of a freshly deployed program.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// SOL and Strata token balance.
    Balance {
        /// Account [default: the --keypair's key].
        #[arg(value_parser = parse_pubkey)]
        pubkey: Option<Pubkey>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Initialise the program (once; --keypair must be its upgrade
    /// authority): a new mint unless --mint is given, the testnet
    /// parameters, and the relayer allowed. Safe to run again.
    Init {
        /// An existing SPL mint with 6 decimals [default: create one, with
        /// --keypair as its mint authority].
        #[arg(long, value_parser = parse_pubkey)]
        mint: Option<Pubkey>,
        /// Relayer key to allow (post batches, redeem vouchers).
        #[arg(long, value_parser = parse_pubkey)]
        relayer: Option<Pubkey>,
        /// Reward authority [default: --relayer, else --keypair].
        #[arg(long, value_parser = parse_pubkey)]
        reward_authority: Option<Pubkey>,
    },
}

#[derive(clap::Args)]
struct NodeArgs {
    /// libp2p multiaddr peers can dial (repeat for several, at most 4).
    #[arg(long = "multiaddr", value_parser = node::parse_multiaddr)]
    multiaddrs: Vec<String>,
    /// Memory for weights and KV cache, MiB.
    #[arg(long)]
    memory_mb: Option<u32>,
    /// Profiled decode throughput, tokens/s x 100.
    #[arg(long)]
    compute_score: Option<u32>,
    /// Network bandwidth, Mbit/s.
    #[arg(long)]
    bandwidth_mbps: Option<u32>,
    /// Serve inference and rollouts.
    #[arg(long)]
    compute: bool,
    /// Re-execute audited tasks and sign verdicts.
    #[arg(long)]
    verifier: bool,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Register your key as a node (roles default to --compute).
    Register(NodeArgs),
    /// Change a registered node; flags not given keep their current values.
    Update(NodeArgs),
    /// Close a node that holds no stake.
    Deregister,
}

/// p2p flags shared by `file seed` and `file fetch`.
#[derive(clap::Args)]
struct NetArgs {
    /// Multiaddr to listen on (repeatable) [default: /ip4/0.0.0.0/tcp/0].
    #[arg(long)]
    listen: Vec<String>,
    /// Peer to dial, ending in /p2p/<peer id> (repeatable).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Find peers on the LAN with mDNS.
    #[arg(long)]
    mdns: bool,
    /// Cap this node's upload, in MB/s (decimal megabytes).
    #[arg(long)]
    upload_mbps: Option<f64>,
}

impl NetArgs {
    fn into_options(self) -> anyhow::Result<files::NetOptions> {
        let upload_rate = match self.upload_mbps {
            Some(r) if r.is_finite() && r > 0.0 => Some((r * 1e6) as u64),
            Some(r) => anyhow::bail!("--upload-mbps must be a positive number, got {r}"),
            None => None,
        };
        Ok(files::NetOptions {
            listen: self.listen,
            peers: self.peers,
            mdns: self.mdns,
            upload_rate,
        })
    }
}

#[derive(Subcommand)]
enum FileCommand {
    /// Share a file until Ctrl-C; prints its root and how to fetch it.
    Seed {
        /// The file.
        path: PathBuf,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Download a file by root, resuming a partial download at the same path.
    Fetch {
        /// The file's root (64 hex digits, as `file seed` printed it).
        root: String,
        /// Where to write it.
        #[arg(long, short = 'o')]
        output: PathBuf,
        #[command(flatten)]
        net: NetArgs,
    },
}

#[derive(Subcommand)]
enum StatusCommand {
    /// A node's record [default: the --keypair's key].
    Node {
        /// Operator key.
        #[arg(value_parser = parse_pubkey)]
        pubkey: Option<Pubkey>,
    },
    /// The program's config and ledger totals.
    Config,
    /// A client's escrow [default: the --keypair's key].
    Escrow {
        /// Client key.
        #[arg(value_parser = parse_pubkey)]
        pubkey: Option<Pubkey>,
    },
}

fn parse_pubkey(text: &str) -> Result<Pubkey, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a base58 public key"))
}

/// Resolved global flags.
struct Globals {
    url: Option<String>,
    keypair: PathBuf,
    out: Output,
}

impl Globals {
    fn url(&self) -> &str {
        self.url.as_deref().unwrap_or(DEFAULT_URL)
    }

    /// The `--keypair`'s key, or `explicit` if given (reads need no secret key).
    fn key_or(&self, explicit: Option<Pubkey>) -> anyhow::Result<Pubkey> {
        match explicit {
            Some(pk) => Ok(pk),
            None => Ok(keys::load(&self.keypair)?.pubkey()),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = format!("{e:#}").replace(['\n', '\r'], " ");
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version print as usual; a usage error prints clap's first line
/// only (one line on stderr, like every other error) and exits with 2.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => error.exit(),
        _ => {
            let text = error.to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: invalid arguments");
            eprintln!("{line} (see --help)");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    strata_chain::rpc::set_default_priority_fee(cli.priority_fee_micro_lamports);
    let g = Globals {
        url: cli.url,
        keypair: cli.keypair.unwrap_or_else(keys::default_keypair_path),
        out: Output { json: cli.json },
    };
    let out = g.out;
    match cli.command {
        Command::Keygen { outfile, force } => {
            keys::keygen(&outfile.unwrap_or_else(|| g.keypair.clone()), force, out)
        }
        Command::Address => keys::address(&g.keypair, out),
        Command::Faucet {
            sol,
            tokens,
            to,
            testnet_dir,
        } => {
            let to = g.key_or(to)?;
            let request = faucet::FaucetRequest {
                lamports: sol,
                tokens,
                to,
            };
            faucet::run(g.url.as_deref(), &testnet_dir, request, out).await
        }
        Command::Node(command) => {
            let operator = keys::load(&g.keypair)?;
            let client = chain::connect(g.url()).await?;
            match command {
                NodeCommand::Register(a) => {
                    if a.multiaddrs.is_empty() {
                        anyhow::bail!(
                            "give at least one --multiaddr (e.g. /ip4/203.0.113.5/tcp/4001)"
                        );
                    }
                    let capacity = Capacity {
                        memory_mb: a.memory_mb.unwrap_or(0),
                        compute_score: a.compute_score.unwrap_or(0),
                        bandwidth_mbps: a.bandwidth_mbps.unwrap_or(0),
                    };
                    let roles = node::roles(a.compute, a.verifier).unwrap_or(ROLE_COMPUTE);
                    node::register(&client, &operator, a.multiaddrs, capacity, roles, out).await
                }
                NodeCommand::Update(a) => {
                    let changes = node::NodeChanges {
                        roles: node::roles(a.compute, a.verifier),
                        multiaddrs: a.multiaddrs,
                        memory_mb: a.memory_mb,
                        compute_score: a.compute_score,
                        bandwidth_mbps: a.bandwidth_mbps,
                    };
                    node::update(&client, &operator, changes, out).await
                }
                NodeCommand::Deregister => node::deregister(&client, &operator, out).await,
            }
        }
        Command::Stake { amount } => {
            let (client, operator) = signer(&g).await?;
            node::stake(&client, &operator, amount, out).await
        }
        Command::Unstake { amount } => {
            let (client, operator) = signer(&g).await?;
            node::unstake(&client, &operator, amount, out).await
        }
        Command::WithdrawStake => {
            let (client, operator) = signer(&g).await?;
            node::withdraw_stake(&client, &operator, out).await
        }
        Command::Deposit { amount } => {
            let (client, owner) = signer(&g).await?;
            client::deposit(&client, &owner, amount, out).await
        }
        Command::RequestWithdrawal { amount } => {
            let (client, owner) = signer(&g).await?;
            client::request_withdrawal(&client, &owner, amount, out).await
        }
        Command::Withdraw => {
            let (client, owner) = signer(&g).await?;
            client::withdraw(&client, &owner, out).await
        }
        Command::Status(command) => match command {
            StatusCommand::Node { pubkey } => {
                let pk = g.key_or(pubkey)?;
                status::node(&chain::connect(g.url()).await?, &pk, out).await
            }
            StatusCommand::Config => status::config(&chain::connect(g.url()).await?, out).await,
            StatusCommand::Escrow { pubkey } => {
                let pk = g.key_or(pubkey)?;
                status::escrow(&chain::connect(g.url()).await?, &pk, out).await
            }
        },
        Command::Audit { task_id, relayer } => {
            relayer::audit(&chain::connect(g.url()).await?, &relayer, &task_id, out).await
        }
        Command::Chat {
            message,
            model,
            max_tokens,
            temperature,
            seed,
            find_secs,
            state_dir,
            peers,
        } => {
            if !(temperature.is_finite() && temperature >= 0.0) {
                anyhow::bail!("--temperature must be a number >= 0, got {temperature}");
            }
            let (client, key) = signer(&g).await?;
            let opts = chat::ChatOptions {
                model,
                message,
                max_tokens,
                temperature,
                seed,
                find_within: std::time::Duration::from_secs(find_secs.max(1)),
                state_dir,
                peers,
            };
            chat::chat(&client, &key, opts, out).await
        }
        Command::Claim { relayer } => {
            let (client, operator) = signer(&g).await?;
            relayer::claim(&client, &operator, &relayer, out).await
        }
        Command::File(FileCommand::Seed { path, net }) => {
            files::seed(&g.keypair, &path, net.into_options()?, out).await
        }
        Command::File(FileCommand::Fetch { root, output, net }) => {
            files::fetch(&g.keypair, &root, output, net.into_options()?, out).await
        }
        Command::Admin(AdminCommand::Init {
            mint,
            relayer,
            reward_authority,
        }) => {
            let client = chain::connect(g.url()).await?;
            let admin = keys::load(&g.keypair)?;
            let args = admin::InitArgs {
                mint,
                relayer,
                reward_authority,
            };
            admin::init(&client, &admin, args, out).await
        }
        Command::Balance { pubkey } => {
            let pk = g.key_or(pubkey)?;
            status::balance(&chain::connect(g.url()).await?, &pk, out).await
        }
    }
}

/// The keypair (read first, so a missing file is reported before any network
/// call) and a connected client.
async fn signer(
    g: &Globals,
) -> anyhow::Result<(strata_chain::rpc::ChainClient, strata_chain::Keypair)> {
    let keypair = keys::load(&g.keypair)?;
    let client = chain::connect(g.url()).await?;
    Ok((client, keypair))
}
