//! The glue every Strata service shares (node, verifier, gateway, relayer,
//! testnet), written once: logging set-up ([`init_logging`]), the clock
//! ([`now_ms`]) and bootstrapping peers from the node registry on-chain
//! ([`dial_registered_nodes`]).
//!
//! It holds no domain logic: tasks, receipts, audits and money live in the
//! crates named after them.
#![warn(missing_docs)]

use std::time::{SystemTime, UNIX_EPOCH};

use strata_chain::rpc::ChainClient;
use strata_p2p::{NodeId, P2pHandle};

/// Logs to stderr with `tracing`, filtered by `RUST_LOG` or, when it is
/// unset, by `default_filter` (e.g. `"info"`). A second call does nothing.
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Connects to the nodes registered on-chain, at the multiaddrs they
/// registered; returns how many connected. Best effort: an endpoint that
/// refuses `getProgramAccounts`, or nodes that are down, only mean fewer
/// peers to start with.
pub async fn dial_registered_nodes(chain: &ChainClient, p2p: &P2pHandle) -> usize {
    match chain.registered_nodes().await {
        Ok(nodes) => {
            let peers: Vec<(NodeId, Vec<String>)> = nodes
                .into_iter()
                .map(|n| (NodeId(n.operator.to_bytes()), n.multiaddrs))
                .collect();
            p2p.connect_to(&peers).await
        }
        Err(e) => {
            tracing::debug!("reading registered nodes: {e}");
            0
        }
    }
}
