//! Strata's relayer. It takes node-signed task receipts (over HTTP, gossip
//! or p2p requests), validates them and stores them durably before
//! acknowledging; batches them into Merkle roots posted on-chain
//! (`post_batch`); redeems each (client, node) channel's latest voucher in
//! batched transactions (`redeem_vouchers`); as the reward authority,
//! publishes per-epoch roots of cumulative rewards per node
//! (`publish_rewards`); and serves every receipt with its Merkle proof, and
//! every reward with its proof, over HTTP.
//!
//! Crash safety: every plan (a batch's receipts and root, an epoch's
//! leaves) is committed before its transaction is sent and reconciled with
//! the chain afterwards, and vouchers are cumulative, so killing the relayer
//! at any point loses no acknowledged receipt and pays no voucher twice.
//!
//! For the verification network it serves each batch's receipts to
//! verifiers, takes their signed audit reports (only from a verifier the
//! audit rules assign, or a member of a challenge's committee; [`audits`]),
//! indexes challenges from the chain (voters, slashes, expiries), and pays
//! audits and verdicts through the same reward epochs.
//!
//! It also serves the auditor's explorer page ([`explorer`]) at `/`. It is
//! not trusted by auditors: `strata audit` and the page's Verify button check
//! what it serves against the chain.
#![warn(missing_docs)]

pub mod audits;
mod batcher;
mod chain;
mod challenges;
pub mod explorer;
pub mod http;
pub mod ingest;
pub mod p2p;
mod redeemer;
mod rewards;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_chain::rpc::ChainClient;
use strata_chain::{ChainError, Keypair, Signer};
use strata_p2p::{NodeId, NodeIdentity, P2pConfig, P2pHandle};
use strata_wire::protocols::{ALL_PROTOCOLS, ALL_TOPICS};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::{Store, StoreError};

/// Longest time between two challenge-indexing rounds (they otherwise
/// follow the batch interval).
const CHALLENGE_INDEX_MAX_PERIOD: Duration = Duration::from_secs(5);

/// How a relayer runs.
pub struct RelayerConfig {
    /// Solana RPC endpoint (cluster name or URL).
    pub rpc_url: String,
    /// The relayer's key: pays fees, must be a registered relayer and the
    /// config's reward authority.
    pub keypair: Keypair,
    /// Where the database lives (created if missing).
    pub state_dir: PathBuf,
    /// HTTP listen address (port 0 picks a free one).
    pub http_addr: SocketAddr,
    /// The p2p swarm's configuration.
    pub p2p: P2pConfig,
    /// How often unbatched receipts are posted and vouchers redeemed.
    pub batch_interval: Duration,
    /// How often the reward epoch is checked.
    pub reward_interval: Duration,
    /// Reward per work unit (token base units).
    pub reward_per_work_unit: u64,
}

/// Why the relayer could not start or a round failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayerError {
    /// The state directory could not be created.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A chain call failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The HTTP listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The p2p layer failed to start.
    #[error("p2p: {0}")]
    P2p(String),
    /// A background task failed.
    #[error("{0}")]
    Task(String),
}

/// What the background loops share.
pub(crate) struct Ctx {
    pub(crate) store: Arc<Store>,
    pub(crate) chain: ChainClient,
    pub(crate) keypair: Keypair,
    pub(crate) reward_per_work_unit: u64,
    /// Nodes whose token accounts are known to exist.
    pub(crate) token_accounts: std::sync::Mutex<std::collections::HashSet<strata_chain::Pubkey>>,
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The relayer service.
pub struct Relayer;

/// A started relayer; [`RunningRelayer::shutdown`] stops it.
pub struct RunningRelayer {
    http_url: String,
    p2p_addrs: Vec<String>,
    node_id: NodeId,
    p2p: P2pHandle,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    store: std::sync::Weak<Store>,
}

impl Relayer {
    /// Opens the store, binds HTTP, joins the p2p network and starts the
    /// batching, redemption and reward loops. The chain need not be
    /// reachable yet: the loops retry every interval.
    pub async fn start(config: RelayerConfig) -> Result<RunningRelayer, RelayerError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|source| RelayerError::StateDir {
            path: config.state_dir.display().to_string(),
            source,
        })?;
        let path = config.state_dir.join("relayer.redb");
        let store = Arc::new(
            tokio::task::spawn_blocking(move || Store::open(&path))
                .await
                .map_err(|e| RelayerError::Task(e.to_string()))??,
        );
        let chain = ChainClient::new(&config.rpc_url)?;
        let explorer_chain = ChainClient::new(&config.rpc_url)?;
        let api_chain = ChainClient::new(&config.rpc_url)?;
        if let Err(e) = chain.ping().await {
            warn!(error = %e, "chain not reachable yet; will retry");
        }

        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| RelayerError::Bind {
                addr: config.http_addr,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| RelayerError::Bind {
            addr: config.http_addr,
            source,
        })?;
        let http_url = format!("http://{local}");

        let identity = NodeIdentity::from_keypair_bytes(config.keypair.to_bytes())
            .map_err(|e| RelayerError::P2p(e.to_string()))?;
        // The whole catalogue, as every Strata peer speaks it: the relayer
        // takes receipts by request and gossip, and relays every topic.
        let p2p_config = config
            .p2p
            .with_protocols(ALL_PROTOCOLS)
            .with_topics(ALL_TOPICS);
        let (p2p, events) = strata_p2p::start(identity, p2p_config)
            .await
            .map_err(|e| RelayerError::P2p(e.to_string()))?;
        let p2p_addrs = listen_addrs(&p2p).await;

        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        let weak_store = Arc::downgrade(&store);
        let app = http::router(store.clone(), api_chain).merge(explorer::router(
            store.clone(),
            explorer_chain,
            explorer::ExplorerSettings {
                relayer: config.keypair.pubkey(),
                batch_interval: config.batch_interval,
                reward_interval: config.reward_interval,
            },
        ));
        let stop = cancel.clone();
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                warn!(error = %e, "HTTP server stopped");
            }
        }));
        tasks.push(tokio::spawn(p2p::run(
            store.clone(),
            events,
            cancel.clone(),
        )));

        let ctx = Arc::new(Ctx {
            store,
            chain,
            keypair: config.keypair,
            reward_per_work_unit: config.reward_per_work_unit,
            token_accounts: Default::default(),
        });
        let settle = ctx.clone();
        tasks.push(tokio::spawn(every(
            config.batch_interval,
            cancel.clone(),
            move || {
                let ctx = settle.clone();
                async move {
                    if let Err(e) = batcher::round(&ctx).await {
                        warn!(error = %e, "batching round failed");
                    }
                    if let Err(e) = redeemer::round(&ctx).await {
                        warn!(error = %e, "redemption round failed");
                    }
                }
            },
        )));
        let rewards_ctx = ctx.clone();
        tasks.push(tokio::spawn(every(
            config.reward_interval,
            cancel.clone(),
            move || {
                let ctx = rewards_ctx.clone();
                async move {
                    if let Err(e) = rewards::round(&ctx).await {
                        warn!(error = %e, "rewards round failed");
                    }
                }
            },
        )));
        let index_ctx = ctx.clone();
        tasks.push(tokio::spawn(every(
            config.batch_interval.min(CHALLENGE_INDEX_MAX_PERIOD),
            cancel.clone(),
            move || {
                let ctx = index_ctx.clone();
                async move {
                    if let Err(e) = challenges::round(&ctx).await {
                        warn!(error = %e, "challenge indexing round failed");
                    }
                }
            },
        )));
        info!(%http_url, p2p = ?p2p_addrs, relayer = %ctx.keypair.pubkey(), "relayer started");
        Ok(RunningRelayer {
            http_url,
            p2p_addrs,
            node_id: p2p.node_id(),
            p2p,
            cancel,
            tasks,
            store: weak_store,
        })
    }
}

/// The swarm's listen addresses (with `/p2p/<id>`), waiting briefly for the
/// listeners to come up.
async fn listen_addrs(p2p: &P2pHandle) -> Vec<String> {
    for _ in 0..50 {
        if let Ok(addrs) = p2p.listen_addrs().await {
            if !addrs.is_empty() {
                return addrs;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Vec::new()
}

/// Runs `round` every `period` until cancelled; a round in progress is
/// abandoned on cancel (every round is safe to cut anywhere).
async fn every<F, Fut>(period: Duration, cancel: CancellationToken, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = round() => {}
        }
    }
}

impl RunningRelayer {
    /// Base URL of the HTTP API, e.g. `http://127.0.0.1:8788`.
    pub fn http_url(&self) -> &str {
        &self.http_url
    }

    /// p2p listen addresses, each ending in `/p2p/<peer id>` (give them to nodes as bootstrap peers).
    pub fn p2p_addrs(&self) -> &[String] {
        &self.p2p_addrs
    }

    /// The relayer's p2p identity (its Solana key).
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Stops the loops, the HTTP server and the swarm, and waits for them
    /// and for the database to close (so the same state directory can be
    /// opened again at once).
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.p2p.shutdown().await;
        // The server's connection tasks and any store call still on a
        // blocking thread drop their handles just after the tasks above end.
        for _ in 0..100 {
            if self.store.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        warn!("the relayer database is still in use after shutdown");
    }
}
