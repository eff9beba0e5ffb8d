//! `strata chat`: a client that keeps its own key. No gateway holds it: the
//! command finds a node serving the model on the p2p network (registered
//! nodes from the chain, their capacity gossip), runs the task protocol with
//! it directly, streams the text to stdout, checks the price the node asks
//! against the price it announced, signs the voucher itself and checks the
//! receipt. The relayer redeems the voucher from the node's receipt as for
//! any task; the custodial API-key path of the gateway is unchanged.
//!
//! Vouchers are running totals per (client, node): the total this client
//! signed for each node is kept in a state file next to nothing else
//! (`~/.strata/client/<pubkey>.json`), written before a voucher leaves, and
//! never below what the chain has already redeemed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use strata_chain::amount::format_tokens;
use strata_chain::rpc::ChainClient;
use strata_chain::{pda, Keypair, Pubkey, Signer};
use strata_p2p::{NodeId, NodeIdentity, P2pConfig, P2pEvent, P2pHandle};
use strata_service::now_ms;
use strata_wire::capacity::MAX_CAPACITY_BYTES;
use strata_wire::protocols::{ALL_PROTOCOLS, ALL_TOPICS, CAPACITY, TASK};
use strata_wire::task::{
    ChatTurn, Finish, Prompt, Sampling, TaskRequest, TaskResponse, TaskSpec, Usage,
};
use strata_wire::{Capacity, Voucher};

use crate::output::{Output, Report};

/// What to ask and where to listen.
pub struct ChatOptions {
    /// Model name, as nodes announce it.
    pub model: String,
    /// The user's message.
    pub message: String,
    /// Longest completion.
    pub max_tokens: u32,
    /// Sampling temperature (0 is greedy).
    pub temperature: f32,
    /// Seed of the sampler.
    pub seed: u64,
    /// How long to look for a node serving the model.
    pub find_within: Duration,
    /// Where the voucher totals are kept; default `~/.strata/client`.
    pub state_dir: Option<PathBuf>,
    /// Extra peers to dial (multiaddrs ending in /p2p/<id>).
    pub peers: Vec<String>,
}

/// Capacity announcements older than this are not used to pick a node.
const FRESH_MS: u64 = 10_000;

/// `strata chat MESSAGE`.
pub async fn chat(
    chain: &ChainClient,
    key: &Keypair,
    opts: ChatOptions,
    out: Output,
) -> anyhow::Result<()> {
    let me = key.pubkey();
    let escrow = chain
        .escrow(&me)
        .await
        .map_err(crate::chain::explain)?
        .ok_or_else(|| anyhow!("{me} has no escrow; deposit first with `strata deposit AMOUNT`"))?;
    let identity = NodeIdentity::from_keypair_bytes(key.to_bytes())
        .map_err(|e| anyhow!("p2p identity: {e}"))?;
    let config = P2pConfig {
        listen: vec!["/ip4/0.0.0.0/tcp/0".into()],
        bootstrap: opts.peers.clone(),
        ..P2pConfig::default()
            .with_protocols(ALL_PROTOCOLS)
            .with_topics(ALL_TOPICS)
    };
    let (p2p, mut events) = strata_p2p::start(identity, config).await?;
    strata_service::dial_registered_nodes(chain, &p2p).await;

    // The least loaded fresh node serving the model, from its gossip.
    let mut offers: BTreeMap<NodeId, Capacity> = BTreeMap::new();
    let deadline = Instant::now() + opts.find_within;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(P2pEvent::Gossip {
                topic,
                from,
                payload,
            })) if topic == CAPACITY => {
                if let Ok(c) = strata_wire::decode::<Capacity>(&payload, MAX_CAPACITY_BYTES) {
                    if c.model == opts.model && now_ms().saturating_sub(c.sent_at_ms) < FRESH_MS {
                        offers.insert(from, c);
                    }
                }
                // A few announcements are enough to choose from.
                if offers.len() >= 3 {
                    break;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let load = |c: &Capacity| f64::from(c.active) / f64::from(c.max_concurrent.max(1));
    let (node, offer) = offers
        .into_iter()
        .min_by(|a, b| load(&a.1).total_cmp(&load(&b.1)))
        .ok_or_else(|| {
            anyhow!(
                "no node announced model {:?} within {} s",
                opts.model,
                opts.find_within.as_secs()
            )
        })?;
    let node_key = Pubkey::from(node.0);
    // Its addresses, from its announcement, in case gossip came via a relay.
    for a in &offer.addrs {
        let _ = p2p.add_address(node, a).await;
    }

    let max_cost = (u64::from(opts.max_tokens) + opts.message.len() as u64 + 64)
        .saturating_mul(offer.price_per_token);
    if escrow.balance < max_cost {
        bail!(
            "the escrow holds {} tokens; this task may cost up to {} at {} per token",
            format_tokens(escrow.balance),
            format_tokens(max_cost),
            offer.price_per_token
        );
    }

    let task_id: [u8; 32] = rand::random();
    let spec = TaskSpec {
        task_id,
        client: me.to_bytes(),
        model: opts.model.clone(),
        prompt: Prompt::Chat(vec![ChatTurn {
            role: "user".into(),
            content: opts.message.clone(),
        }]),
        max_tokens: opts.max_tokens,
        sampling: Sampling {
            temperature: opts.temperature,
            top_p: 1.0,
            top_k: 0,
            seed: opts.seed,
        },
        stop: vec![],
    };
    match call(&p2p, node, &TaskRequest::Start(spec)).await? {
        TaskResponse::Started { .. } => {}
        TaskResponse::Error { kind, message } => bail!("node {node_key}: {kind:?}: {message}"),
        other => bail!("node {node_key}: unexpected answer {other:?}"),
    }
    let (text, finish, usage) = stream(&p2p, node, task_id, !out.json).await?;
    let billed = u64::from(usage.prompt_tokens) + u64::from(usage.completion_tokens);
    // A token is at least a byte of the message, plus the chat template's
    // few dozen: a node cannot bill a longer prompt than was sent.
    let prompt_bound = opts.message.len() as u64 + 64;
    if usage.completion_tokens > opts.max_tokens
        || u64::from(usage.prompt_tokens) > prompt_bound
        || usage.price > billed.saturating_mul(offer.price_per_token)
    {
        bail!(
            "node {node_key} asks {} for {billed} tokens at an announced {} per token: not paying",
            usage.price,
            offer.price_per_token
        );
    }

    // The running total for this node: never below what the chain redeemed,
    // saved before the voucher leaves (a crash then costs nothing).
    let state = VoucherTotals::path(opts.state_dir.as_deref(), &me)?;
    let mut totals = VoucherTotals::load(&state)?;
    let redeemed = chain
        .account::<strata_chain::accounts::Channel>(&pda::channel(&me, &node_key), "channel")
        .await
        .map_err(crate::chain::explain)?
        .map_or(0, |c| c.redeemed);
    let ours = totals.get(&node_key).max(redeemed) + usage.price;
    // The node says what total it expects (what it was paid before, plus
    // this price). Less than ours: a voucher of ours never reached it, and
    // its figure is what is owed. More: it claims a debt this client has no
    // record of, which is not paid blindly.
    if usage.expected_cumulative > ours {
        bail!(
            "node {node_key} expects a voucher total of {}, this client's records say {ours} \
             (state file {}): not paying a debt it has no record of",
            usage.expected_cumulative,
            state.display()
        );
    }
    let cumulative = usage.expected_cumulative.max(redeemed + usage.price);
    totals.set(&node_key, cumulative);
    totals.save(&state)?;
    let voucher = Voucher::sign(key, &node_key, cumulative);
    let receipt = match call(&p2p, node, &TaskRequest::Settle { task_id, voucher }).await? {
        TaskResponse::Settled(r) => *r,
        TaskResponse::Error { kind, message } => bail!("node {node_key}: {kind:?}: {message}"),
        other => bail!("node {node_key}: unexpected answer {other:?}"),
    };
    receipt
        .verify()
        .map_err(|e| anyhow!("the node's receipt does not verify: {e}"))?;
    let b = &receipt.body;
    if b.task_id != task_id || b.node != node.0 || b.voucher != voucher || b.price != usage.price {
        bail!("the node's receipt is not for this task, voucher and price");
    }
    p2p.shutdown().await;

    if !out.json {
        println!();
    }
    let report = Report::new()
        .text("task_id", hex::encode(task_id))
        .text("node", node_key)
        .text("finish", format!("{finish:?}").to_lowercase())
        .number("prompt_tokens", usage.prompt_tokens)
        .number("completion_tokens", usage.completion_tokens)
        .number("price", usage.price)
        .number("voucher_cumulative", cumulative)
        .text("receipt_digest", hex::encode(b.digest()));
    // People saw the text stream by; machines get it in the object.
    out.report(&if out.json {
        report.field("text", text, "")
    } else {
        report
    });
    Ok(())
}

/// Polls the task to its end, printing text as it comes when `print`.
async fn stream(
    p2p: &P2pHandle,
    node: NodeId,
    task_id: [u8; 32],
    print: bool,
) -> anyhow::Result<(String, Finish, Usage)> {
    let mut text = String::new();
    loop {
        let poll = TaskRequest::Poll {
            task_id,
            from_byte: text.len() as u64,
            to_end: !print,
        };
        match call(p2p, node, &poll).await? {
            TaskResponse::Output { text: t, finished } => {
                if print && !t.is_empty() {
                    print!("{t}");
                    let _ = std::io::stdout().flush();
                }
                text.push_str(&t);
                if let Some((finish, usage)) = finished {
                    return Ok((text, finish, usage));
                }
            }
            TaskResponse::Error { kind, message } => bail!("{kind:?}: {message}"),
            other => bail!("unexpected answer {other:?}"),
        }
    }
}

async fn call(p2p: &P2pHandle, node: NodeId, req: &TaskRequest) -> anyhow::Result<TaskResponse> {
    strata_wire::task::call(|b| p2p.request(node, &TASK, b), req)
        .await
        .map_err(|e| anyhow!("node {node}: {e}"))
}

/// The totals this client signed per node.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct VoucherTotals {
    /// Node (base58) → cumulative.
    nodes: BTreeMap<String, u64>,
}

impl VoucherTotals {
    fn path(dir: Option<&Path>, me: &Pubkey) -> anyhow::Result<PathBuf> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => strata_service::expand_home("~/.strata/client"),
        };
        Ok(dir.join(format!("{me}.json")))
    }

    fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a voucher totals file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn get(&self, node: &Pubkey) -> u64 {
        self.nodes.get(&node.to_string()).copied().unwrap_or(0)
    }

    fn set(&mut self, node: &Pubkey, total: u64) {
        self.nodes.insert(node.to_string(), total);
    }

    /// Written whole to a temporary file, then renamed over the old one.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self)?;
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}
