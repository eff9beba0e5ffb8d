//! The Strata gateway: an OpenAI-compatible HTTP API in front of the network.
//!
//! A request's API key names a client account (`accounts`); the gateway
//! holds the most the task can cost against that client's on-chain escrow,
//! picks a node from the capacity gossip (`routing`) whose stake can answer
//! for that cost (`ceiling`), runs the task over the p2p task protocol
//! (`runner`), streams the text back as server-sent events if asked, pays
//! the node with a voucher and returns the node's signed receipt alongside
//! the completion (`http`, `openai`).
//!
//! Its public face is [`start`] with a [`GatewayConfig`], and the
//! [`RunningGateway`] it returns; everything else is the crate's own.
#![warn(missing_docs)]

mod accounts;
mod batch_store;
mod batches;
mod ceiling;
mod files;
mod http;
mod metrics;
mod openai;
mod rollouts;
mod routing;
mod runner;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use strata_chain::rpc::ChainClient;
use strata_chain::{Keypair, Pubkey};
use strata_p2p::{NodeIdentity, P2pConfig, P2pEvent, P2pHandle};
use strata_wire::capacity::HopCapacity;
use strata_wire::capacity::MAX_CAPACITY_BYTES;
use strata_wire::protocols::{ALL_PROTOCOLS, ALL_TOPICS, CAPACITY, HOP_CAPACITY};
use tokio::task::JoinHandle;

/// How often the gateway looks on-chain for newly registered nodes.
const REDISCOVER_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Errors, each with the HTTP status and OpenAI error type it maps to.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Malformed or out-of-range request (400).
    #[error("{0}")]
    BadRequest(String),
    /// The request body is over the size limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// Missing or unknown API key (401).
    #[error("invalid API key")]
    Unauthorized,
    /// The client's deposit does not cover the task (402).
    #[error("{0}")]
    PaymentRequired(String),
    /// No node serves this model (404).
    #[error("model `{0}` is not served by any node")]
    UnknownModel(String),
    /// No such file or batch, or not this API key's (404).
    #[error("{0}")]
    NotFound(String),
    /// The chosen node is full; another may be tried.
    #[error("{0}")]
    Busy(String),
    /// No node can take the task (503).
    #[error("{0}")]
    NoCapacity(String),
    /// The chain's RPC could not be read (escrow, channel, stake): the
    /// client may retry later (503).
    #[error("the chain cannot be read right now: {0}")]
    ChainUnavailable(String),
    /// A node failed or misbehaved (502).
    #[error("{0}")]
    Node(String),
    /// The gateway's own state failed (500).
    #[error("gateway state: {0}")]
    State(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
    /// Start-up failed.
    #[error(transparent)]
    P2p(#[from] strata_p2p::P2pError),
    /// Chain client failed at start-up.
    #[error(transparent)]
    Chain(#[from] strata_chain::ChainError),
}

impl GatewayError {
    /// The error code a client sees (OpenAI's `error.code`), also the
    /// outcome label of the gateway's task metric.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "invalid_request",
            GatewayError::TooLarge(_) => "request_too_large",
            GatewayError::Unauthorized => "invalid_api_key",
            GatewayError::PaymentRequired(_) => "insufficient_quota",
            GatewayError::UnknownModel(_) => "model_not_found",
            GatewayError::NotFound(_) => "not_found",
            GatewayError::Busy(_) | GatewayError::NoCapacity(_) => "no_capacity",
            GatewayError::Node(_) => "node_error",
            GatewayError::ChainUnavailable(_) => "chain_unavailable",
            _ => "internal_error",
        }
    }
}

/// How a gateway runs.
pub struct GatewayConfig {
    /// HTTP listen address (port 0 picks one).
    pub http_addr: SocketAddr,
    /// Chain RPC URL (escrow balances and channels are read there).
    pub rpc_url: String,
    /// API keys and the client keypairs they pay with.
    pub accounts: Vec<(String, Keypair)>,
    /// Where voucher totals are kept.
    pub state_dir: PathBuf,
    /// p2p settings; bootstrap peers should include a node or the relayer.
    pub p2p: P2pConfig,
}

/// State shared by the HTTP handlers and the task runners.
pub(crate) struct Inner {
    /// Client accounts.
    pub(crate) accounts: accounts::Accounts,
    /// Known nodes.
    pub(crate) router: routing::Router,
    /// p2p handle.
    pub(crate) p2p: P2pHandle,
    /// Chain.
    pub(crate) chain: ChainClient,
    /// Completed tasks, for `/v1/stats`.
    pub(crate) stats: http::Stats,
    /// Prometheus metrics, for `/metrics`.
    pub(crate) metrics: metrics::Metrics,
    /// Per-node price ceilings from their stakes.
    pub(crate) ceilings: ceiling::Ceilings,
    /// Deferred jobs: files, batches and their queue.
    pub(crate) batches: batches::Batches,
}

/// A running gateway.
pub struct RunningGateway {
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
    batch_runner: JoinHandle<()>,
}

impl RunningGateway {
    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Every (client, node, voucher total) this gateway has signed: what the
    /// relayer should end up redeeming on-chain.
    pub fn voucher_totals(&self) -> Vec<(Pubkey, Pubkey, u64)> {
        self.inner.accounts.totals()
    }

    /// Nodes whose capacity announcement is fresh: those a task can be
    /// routed to now (`/v1/stats` reports the same number).
    pub fn nodes_known(&self) -> usize {
        self.inner.router.len()
    }

    /// Stops serving.
    pub async fn shutdown(self) {
        // The batch runner first, awaited: its running requests stop and
        // the batch store lets go of its file before this returns, so a
        // gateway can start again on the same state dir at once.
        self.inner.batches.stop();
        let _ = self.batch_runner.await;
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        self.inner.p2p.shutdown().await;
    }
}

/// Starts the gateway: p2p (a fresh identity: the gateway signs nothing on
/// the network), bootstrapped from `config.p2p` and from the nodes
/// registered on-chain, the capacity listener and the HTTP server.
pub async fn start(config: GatewayConfig) -> Result<RunningGateway, GatewayError> {
    let chain = ChainClient::new(&config.rpc_url)?;
    let accounts = accounts::Accounts::open(config.accounts, &config.state_dir)?;
    let batches = batches::Batches::open(&config.state_dir)?;
    // The whole catalogue, as every Strata peer speaks it: the gateway sends
    // tasks and reads capacity, and relays every topic's gossip.
    let p2p_config = config
        .p2p
        .with_protocols(ALL_PROTOCOLS)
        .with_topics(ALL_TOPICS);
    let (p2p, mut events) = strata_p2p::start(NodeIdentity::generate(), p2p_config).await?;
    let inner = Arc::new(Inner {
        accounts,
        router: routing::Router::default(),
        p2p: p2p.clone(),
        chain,
        stats: http::Stats::default(),
        metrics: metrics::Metrics::default(),
        ceilings: ceiling::Ceilings::default(),
        batches,
    });
    let listen = {
        let inner = inner.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let P2pEvent::Gossip {
                    topic,
                    from,
                    payload,
                } = ev
                else {
                    continue;
                };
                if topic == CAPACITY {
                    match strata_wire::decode::<strata_wire::Capacity>(&payload, MAX_CAPACITY_BYTES)
                    {
                        Ok(c) => {
                            for a in &c.addrs {
                                let _ = inner.p2p.add_address(from, a).await;
                            }
                            inner.router.announce(from, c);
                        }
                        Err(e) => tracing::debug!("bad capacity announcement from {from}: {e}"),
                    }
                } else if topic == HOP_CAPACITY {
                    match HopCapacity::decode(&payload) {
                        Ok(h) => {
                            for a in &h.capacity.addrs {
                                let _ = inner.p2p.add_address(from, a).await;
                            }
                            inner.router.announce_hop(from, h);
                        }
                        Err(e) => tracing::debug!("bad hop announcement from {from}: {e}"),
                    }
                }
            }
        })
    };
    // Bootstrap from the chain too, and look again now and then for nodes
    // that registered since.
    let discover = {
        let inner = inner.clone();
        tokio::spawn(async move {
            loop {
                let n = strata_service::dial_registered_nodes(&inner.chain, &inner.p2p).await;
                tracing::debug!(connected = n, "bootstrap from registered nodes");
                tokio::time::sleep(REDISCOVER_EVERY).await;
            }
        })
    };
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| GatewayError::Internal(format!("binding {}: {e}", config.http_addr)))?;
    let http_addr = listener
        .local_addr()
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    let app = http::router(inner.clone());
    let serve = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("gateway HTTP server stopped: {e}");
        }
    });
    // Batch work, in capacity interactive traffic leaves idle.
    let batch_runner = tokio::spawn(batches::run_queue(inner.clone()));
    Ok(RunningGateway {
        http_addr,
        inner,
        tasks: vec![listen, discover, serve],
        batch_runner,
    })
}
