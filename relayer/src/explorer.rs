//! The auditor's web page: a static HTML page, one script and one style
//! sheet (embedded, no build step) served at `/` and `/explorer`, and the
//! JSON the page needs beyond the receipt API: `GET /v1/nodes` (nodes with
//! their on-chain stake, capacity and claims) and `GET /v1/config` (the
//! chain's RPC URL, program id and mint).
//!
//! The page trusts the relayer for nothing it verifies: a receipt's
//! signatures, digest, leaf and Merkle proof are recomputed in the browser
//! (WebCrypto), and the batch root is read straight from the chain's RPC.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use strata_chain::accounts::{decode, ClaimRecord, Node};
use strata_chain::rpc::ChainClient;
use strata_chain::{pda, Pubkey, PROGRAM_ID, ROLE_COMPUTE, ROLE_VERIFIER};
use strata_wire::api::{ConfigView, ErrorResponse, NodeView, NodesView};
use tokio::sync::Mutex;

use crate::now_ms;
use crate::store::Store;

const INDEX_HTML: &str = include_str!("explorer/index.html");
const APP_JS: &str = include_str!("explorer/app.js");
const STYLE_CSS: &str = include_str!("explorer/style.css");

/// How long a chain read behind `/v1/nodes` is reused.
pub const NODES_CACHE: Duration = Duration::from_secs(2);
/// Most accounts asked for in one `getMultipleAccounts`.
const MULTIPLE_ACCOUNTS_MAX: usize = 100;

/// What the explorer shows about the relayer itself.
#[derive(Debug, Clone)]
pub struct ExplorerSettings {
    /// The relayer's key.
    pub relayer: Pubkey,
    /// Time between batching rounds.
    pub batch_interval: Duration,
    /// Time between reward-epoch checks.
    pub reward_interval: Duration,
}

/// Shared state of the explorer's routes.
struct Explorer {
    store: Arc<Store>,
    chain: ChainClient,
    settings: ExplorerSettings,
    nodes: Mutex<Option<(Instant, Arc<NodesView>)>>,
    mint: Mutex<Option<Pubkey>>,
}

/// The page and its JSON: `/`, `/explorer`, `/explorer/app.js`,
/// `/explorer/style.css`, `GET /v1/nodes` and `GET /v1/config`.
pub fn router(store: Arc<Store>, chain: ChainClient, settings: ExplorerSettings) -> Router {
    let state = Arc::new(Explorer {
        store,
        chain,
        settings,
        nodes: Mutex::new(None),
        mint: Mutex::new(None),
    });
    Router::new()
        .route("/", get(page))
        .route("/explorer", get(page))
        .route("/explorer/", get(page))
        .route("/explorer/app.js", get(script))
        .route("/explorer/style.css", get(style))
        .route("/v1/nodes", get(get_nodes))
        .route("/v1/config", get(get_config))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

async fn get_config(State(state): State<Arc<Explorer>>) -> Response {
    let mint = {
        let mut cached = state.mint.lock().await;
        if cached.is_none() {
            match state.chain.config().await {
                Ok(config) => *cached = Some(config.mint),
                Err(e) => tracing::debug!(error = %e, "explorer: chain config not readable"),
            }
        }
        *cached
    };
    let s = &state.settings;
    Json(ConfigView {
        rpc_url: state.chain.url().to_string(),
        program_id: PROGRAM_ID.to_string(),
        mint: mint.map(|m| m.to_string()),
        token_decimals: strata_chain::token::DECIMALS,
        relayer: s.relayer.to_string(),
        batch_interval_ms: u64::try_from(s.batch_interval.as_millis()).unwrap_or(u64::MAX),
        reward_interval_ms: u64::try_from(s.reward_interval.as_millis()).unwrap_or(u64::MAX),
    })
    .into_response()
}

async fn get_nodes(State(state): State<Arc<Explorer>>) -> Response {
    let mut cache = state.nodes.lock().await;
    if let Some((at, view)) = cache.as_ref() {
        if at.elapsed() < NODES_CACHE {
            return Json(view.as_ref().clone()).into_response();
        }
    }
    let store = state.store.clone();
    let totals = match tokio::task::spawn_blocking(move || store.node_totals()).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("relayer store: {e}"),
            )
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let view = Arc::new(nodes_view(&state.chain, &totals).await);
    *cache = Some((Instant::now(), view.clone()));
    Json(view.as_ref().clone()).into_response()
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorResponse { error: message })).into_response()
}

/// Every registered node (one `getProgramAccounts` filtered on the Node
/// discriminator) and every node seen in a receipt, with their claim records.
async fn nodes_view(chain: &ChainClient, totals: &[([u8; 32], u64, u64)]) -> NodesView {
    let mut chain_error = None;
    let mut onchain: BTreeMap<Pubkey, Node> = BTreeMap::new();
    match chain.registered_nodes().await {
        Ok(nodes) => onchain.extend(nodes.into_iter().map(|n| (n.operator, n))),
        // Some public endpoints refuse getProgramAccounts: the nodes seen in
        // receipts are still read one by one below.
        Err(e) => tracing::debug!(error = %e, "explorer: getProgramAccounts failed"),
    }
    let seen: Vec<Pubkey> = totals.iter().map(|(n, _, _)| Pubkey::from(*n)).collect();
    let missing: Vec<Pubkey> = seen
        .iter()
        .filter(|k| !onchain.contains_key(k))
        .copied()
        .collect();
    let addresses: Vec<Pubkey> = missing.iter().map(pda::node).collect();
    match multiple_accounts(chain, &addresses).await {
        Ok(datas) => {
            for (address, data) in addresses.iter().zip(datas) {
                if let Some(node) = data.and_then(|d| decode::<Node>(address, &d, "node").ok()) {
                    onchain.insert(node.operator, node);
                }
            }
        }
        Err(e) => chain_error = Some(e),
    }

    let mut operators: Vec<Pubkey> = onchain.keys().copied().collect();
    for k in seen {
        if !onchain.contains_key(&k) {
            operators.push(k);
        }
    }
    let claim_addresses: Vec<Pubkey> = operators.iter().map(pda::claim_record).collect();
    let claims: Vec<Option<ClaimRecord>> = match multiple_accounts(chain, &claim_addresses).await {
        Ok(datas) => claim_addresses
            .iter()
            .zip(datas)
            .map(|(a, d)| d.and_then(|d| decode::<ClaimRecord>(a, &d, "claim record").ok()))
            .collect(),
        Err(e) => {
            chain_error.get_or_insert(e);
            vec![None; operators.len()]
        }
    };
    let seen_totals: BTreeMap<Pubkey, (u64, u64)> = totals
        .iter()
        .map(|(n, tasks, work)| (Pubkey::from(*n), (*tasks, *work)))
        .collect();

    let mut nodes: Vec<NodeView> = operators
        .iter()
        .zip(claims)
        .map(|(op, claim)| {
            let (tasks, work_units) = seen_totals.get(op).copied().unwrap_or((0, 0));
            let node = onchain.get(op);
            let roles = node.map_or(0, |n| n.roles);
            let capacity = node.map(|n| n.capacity).unwrap_or_default();
            NodeView {
                operator: op.to_string(),
                registered: node.is_some(),
                roles: [(ROLE_COMPUTE, "compute"), (ROLE_VERIFIER, "verifier")]
                    .iter()
                    .filter(|(bit, _)| roles & bit != 0)
                    .map(|(_, name)| (*name).to_string())
                    .collect(),
                stake: node.map_or(0, |n| n.stake),
                unbonding: node.map_or(0, |n| n.unbonding),
                unbonding_ends: node.map_or(0, |n| n.unbonding_ends),
                slashed_total: node.map_or(0, |n| n.slashed_total),
                memory_mb: capacity.memory_mb,
                compute_score: capacity.compute_score,
                tokens_per_second: f64::from(capacity.compute_score) / 100.0,
                bandwidth_mbps: capacity.bandwidth_mbps,
                multiaddrs: node.map(|n| n.multiaddrs.clone()).unwrap_or_default(),
                claimed: claim.as_ref().map_or(0, |c| c.claimed),
                last_claim_epoch: claim.as_ref().map_or(0, |c| c.last_epoch),
                tasks,
                work_units,
            }
        })
        .collect();
    nodes.sort_by(|a, b| {
        b.stake
            .cmp(&a.stake)
            .then_with(|| a.operator.cmp(&b.operator))
    });
    NodesView {
        nodes,
        read_at_ms: now_ms(),
        chain_error,
    }
}

/// Data of each account (in order), `None` where it does not exist.
async fn multiple_accounts(
    chain: &ChainClient,
    addresses: &[Pubkey],
) -> Result<Vec<Option<Vec<u8>>>, String> {
    let mut out = Vec::with_capacity(addresses.len());
    for chunk in addresses.chunks(MULTIPLE_ACCOUNTS_MAX) {
        let accounts = chain
            .rpc()
            .get_multiple_accounts(chunk)
            .await
            .map_err(|e| format!("getMultipleAccounts at {}: {e}", chain.url()))?;
        out.extend(accounts.into_iter().map(|a| a.map(|a| a.data)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's files come with their content types, and `/v1/nodes` and
    /// `/v1/config` still answer (saying so) when the chain is unreachable.
    #[tokio::test]
    async fn serves_the_page_and_degrades_without_a_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("relayer.redb")).unwrap());
        // Nothing listens on the discard port.
        let chain = ChainClient::new("http://127.0.0.1:9").unwrap();
        let app = router(
            store,
            chain,
            ExplorerSettings {
                relayer: Pubkey::new_unique(),
                batch_interval: Duration::from_millis(1500),
                reward_interval: Duration::from_secs(2),
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        for (path, content_type, needle) in [
            ("/", "text/html", "/explorer/app.js"),
            ("/explorer", "text/html", "/explorer/style.css"),
            ("/explorer/app.js", "text/javascript", "crypto.subtle"),
            ("/explorer/style.css", "text/css", ".check"),
        ] {
            let resp = reqwest::get(format!("{url}{path}")).await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            let ct = resp.headers()[header::CONTENT_TYPE].to_str().unwrap();
            assert!(ct.starts_with(content_type), "{path}: {ct}");
            assert!(resp.text().await.unwrap().contains(needle), "{path}");
        }

        let nodes: NodesView = reqwest::get(format!("{url}/v1/nodes"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(nodes.nodes.is_empty());
        let config: ConfigView = reqwest::get(format!("{url}/v1/config"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(config.rpc_url, "http://127.0.0.1:9");
        assert_eq!(config.program_id, PROGRAM_ID.to_string());
        assert_eq!(config.mint, None);
        assert_eq!(config.batch_interval_ms, 1500);
    }
}
