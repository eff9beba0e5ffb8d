//! Running one task on a node for one client: hold the most it can cost
//! against the client's escrow, pick a node, start the task, stream its text
//! by long polls, then pay with a voucher and check the node's receipt.
//!
//! The task runs on its own tokio task, independent of the HTTP connection:
//! a client that disconnects mid-stream cancels the generation, but the
//! task is still settled (and billed for what ran), so no node does free work
//! and no voucher total is skipped. The same holds for a task served by a
//! pipeline of hops: its first hop is told to cancel, every hop is
//! finished, and each whose states link up is settled for the tokens that
//! ran (`strata_pipeline::client::serve`).
//!
//! A node is sent a task only when its stake can answer for what the task
//! may pay it (`crate::ceiling`): the whole cost for a whole node, a hop's
//! share of it for a hop.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_chain::{Pubkey, Signer};
use strata_p2p::NodeId;
use strata_pipeline::client::{self, PipelineJob, Stall};
use strata_wire::protocols::TASK;
use strata_wire::task::{
    self, CallError, Finish, PositionLogprobs, Prompt, Sampling, TaskErrorKind, TaskRequest,
    TaskResponse, TaskSpec, Usage,
};
use strata_wire::{Capacity, Receipt};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::accounts::EscrowReading;
use crate::routing::Routes;
use crate::{GatewayError, Inner};

/// Prompt-template tokens added on top of the prompt's bytes when bounding a
/// task's cost before the node has tokenized it.
const TEMPLATE_ALLOWANCE: u64 = 64;
/// Nodes tried before giving up on a busy network.
const MAX_ATTEMPTS: usize = 3;

/// What to run, already validated by the HTTP layer.
#[derive(Debug, Clone)]
pub struct TaskInput {
    /// API key of the paying client.
    pub api_key: String,
    /// Model name.
    pub model: String,
    /// Prompt.
    pub prompt: Prompt,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Sampling.
    pub sampling: Sampling,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Text is wanted as it is generated (otherwise only at the end).
    pub stream: bool,
    /// Per-token log-probabilities with this many alternatives (at most
    /// 20); `None`: none.
    pub logprobs: Option<u8>,
    /// Policy version to serve it with: 0 the base model; above 0 a
    /// version nodes announce holding (whole nodes only).
    pub policy_version: u64,
}

/// A finished, paid task.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Task id.
    pub task_id: [u8; 32],
    /// Node that served it.
    pub node: NodeId,
    /// Why it ended.
    pub finish: Finish,
    /// Usage and price.
    pub usage: Usage,
    /// The node-signed receipt (already verified); for a pipelined task,
    /// the first hop's.
    pub receipt: Receipt,
    /// A pipelined task's hop receipts, route order (empty for a task one
    /// node served whole); `usage.price` is their sum.
    pub hops: Vec<Receipt>,
    /// Time from start to the last token.
    pub generation: Duration,
    /// Time from start to receipt.
    pub total: Duration,
}

/// What a running task reports.
#[derive(Debug)]
pub enum Event {
    /// More text, and the log-probabilities of the tokens that came with
    /// it (empty unless asked for; the two need not cover the same tokens
    /// exactly: text waits for whole characters and is cut at stop strings).
    Text(String, Vec<PositionLogprobs>),
    /// The end.
    Done(Box<Result<Outcome, GatewayError>>),
}

/// Whose task it is: an interactive one goes to the least loaded node at
/// once (another on failover); a deferred (batch) one only to the node the
/// batch runner picked and reserved for it (`crate::batches`: idle room,
/// under the price cap), with no failover: it waits in the queue instead.
#[derive(Debug, Clone)]
pub enum Class {
    /// A client waits on the HTTP connection.
    Interactive,
    /// A batch request: the node picked for it, already counted against
    /// that node by the batch runner (None: none could be; the task fails
    /// with why).
    Batch {
        /// The node and its announcement.
        pick: Option<(NodeId, Capacity)>,
    },
}

/// Starts `input` on a tokio task; events arrive on the returned channel.
pub fn spawn(gw: Arc<Inner>, input: TaskInput) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let flight = gw.metrics.task_started();
        let done = run(&gw, input, &tx, Class::Interactive).await;
        drop(flight);
        gw.metrics.task_ended(&done);
        let _ = tx.send(Event::Done(Box::new(done))).await;
    });
    rx
}

/// Runs a batch request to its end on the caller's task (so that stopping
/// the batch runner stops it too): its whole text, the log-probabilities
/// asked for, and the outcome. Paid and receipted like any task.
pub async fn run_batch(
    gw: &Inner,
    input: TaskInput,
    pick: Option<(NodeId, Capacity)>,
) -> (String, Vec<PositionLogprobs>, Result<Outcome, GatewayError>) {
    let (tx, mut rx) = mpsc::channel(64);
    let work = async move {
        let flight = gw.metrics.task_started();
        let class = Class::Batch { pick };
        let done = run(gw, input, &tx, class).await;
        drop(flight);
        gw.metrics.task_ended(&done);
        done
    };
    let collect = async {
        let (mut text, mut positions) = (String::new(), Vec::new());
        while let Some(ev) = rx.recv().await {
            if let Event::Text(t, p) = ev {
                text.push_str(&t);
                positions.extend(p);
            }
        }
        (text, positions)
    };
    let (done, (text, positions)) = tokio::join!(work, collect);
    (text, positions, done)
}

async fn run(
    gw: &Inner,
    input: TaskInput,
    events: &mpsc::Sender<Event>,
    class: Class,
) -> Result<Outcome, GatewayError> {
    // Batch work holds back while an interactive task has no node yet.
    let interactive = matches!(class, Class::Interactive);
    let mut waiting = interactive.then(|| gw.router.waiting());
    let account = gw
        .accounts
        .get(&input.api_key)
        .ok_or(GatewayError::Unauthorized)?;
    let client = account.keypair.pubkey();
    let mut tried = Vec::new();
    let mut too_costly = 0;
    for _ in 0..MAX_ATTEMPTS {
        let candidates = match &class {
            Class::Interactive => gw
                .router
                .candidates(&input.model, input.policy_version, &tried),
            Class::Batch { pick } if tried.is_empty() => pick.iter().cloned().collect(),
            Class::Batch { .. } => Vec::new(),
        };
        let Some((node, capacity)) = candidates.into_iter().next() else {
            break;
        };
        tried.push(node);
        let max_cost = max_units(&input).saturating_mul(capacity.price_per_token);
        let ceiling = gw
            .ceilings
            .of(&gw.chain, &Pubkey::from(node.0))
            .await
            .map_err(|e| GatewayError::ChainUnavailable(format!("reading node stake: {e}")))?;
        if max_cost > ceiling {
            // Too little at stake on this node for a task this size.
            too_costly += 1;
            continue;
        }
        let t = Instant::now();
        let available = available_funds(gw, &client).await?;
        tracing::debug!(us = t.elapsed().as_micros() as u64, "escrow read");
        if !gw.accounts.reserve(&client, max_cost, available) {
            return Err(GatewayError::PaymentRequired(format!(
                "deposit exhausted: {available} base units available in escrow {}, this task may cost up to {max_cost}; deposit more with `strata deposit`",
                strata_chain::pda::escrow(&client)
            )));
        }
        // Count the task against the node from the moment it is chosen, so
        // that concurrent requests spread over nodes instead of piling on one
        // (a batch task's node was counted when the batch runner picked it).
        if interactive {
            gw.router.track(&node, 1);
        }
        drop(waiting.take());
        let task_id: [u8; 32] = rand::random();
        let result = run_on(gw, account, node, &input, events, task_id)
            .instrument(strata_service::task_span(&task_id))
            .await;
        if interactive {
            gw.router.track(&node, -1);
        }
        gw.accounts.release(&client, max_cost);
        match result {
            Err(GatewayError::Busy(_)) => continue,
            other => return other,
        }
    }
    if let Class::Batch { .. } = class {
        // Batch work runs on whole nodes only (a route's hops announce no
        // room of their own to measure idleness by); it waits for one.
        if tried.is_empty() {
            let models = gw.router.models();
            if !models.is_empty() && !models.contains(&input.model) {
                return Err(GatewayError::UnknownModel(input.model));
            }
            return Err(GatewayError::NoCapacity(
                "no node with idle room under the batch price cap".into(),
            ));
        }
    }
    if input.policy_version > 0 {
        // Only whole nodes serve policy versions: no pipeline fallback.
        let held = gw.router.policy_versions(&input.model);
        return Err(GatewayError::NoCapacity(if tried.is_empty() {
            format!(
                "no node serving {} holds policy version {} (versions served: {held:?})",
                input.model, input.policy_version
            )
        } else {
            format!(
                "all {} nodes holding policy version {} are at capacity or no longer hold it",
                tried.len(),
                input.policy_version
            )
        }));
    }
    if tried.is_empty() {
        // No whole node serves the model: a route of hops may, over the
        // hops whose stake answers for their share of the task.
        if input.logprobs.is_some() && gw.router.routes(&input.model, &[]).is_some() {
            // The route's last hop samples and sends back token ids only.
            return Err(GatewayError::BadRequest(format!(
                "logprobs are not available for {}: no node serves the whole model, and pipelined routes do not return logprobs yet",
                input.model
            )));
        }
        let over = hops_over_ceiling(gw, &input).await?;
        if let Some(routes) = gw.router.routes(&input.model, &over) {
            drop(waiting.take());
            return run_pipeline(gw, account, routes, &input, events).await;
        }
        if !over.is_empty() && gw.router.routes(&input.model, &[]).is_some() {
            return Err(too_costly_error(&input.model));
        }
    }
    if too_costly > 0 && too_costly == tried.len() {
        return Err(too_costly_error(&input.model));
    }
    if tried.is_empty() {
        if gw.router.models().is_empty() {
            return Err(GatewayError::NoCapacity("no node is serving yet".into()));
        }
        return Err(GatewayError::UnknownModel(input.model));
    }
    Err(GatewayError::NoCapacity(format!(
        "all {} nodes tried are at capacity",
        tried.len()
    )))
}

/// The refusal of a task no node (or no route of hops) can take within
/// its stake.
fn too_costly_error(model: &str) -> GatewayError {
    GatewayError::BadRequest(format!(
        "this task may cost more than the stake of any node serving {model} can answer for; lower max_tokens or the prompt"
    ))
}

/// Tokens a task may bill at most: the prompt's bytes (a token is at least
/// one), the template's allowance, and every token asked for.
fn max_units(input: &TaskInput) -> u64 {
    input.prompt.text_len() as u64 + TEMPLATE_ALLOWANCE + u64::from(input.max_tokens)
}

/// Fresh hops of `input`'s model whose stake cannot answer for their share
/// of it.
async fn hops_over_ceiling(gw: &Inner, input: &TaskInput) -> Result<Vec<[u8; 32]>, GatewayError> {
    let holdings = gw.router.hops(&input.model);
    let mut ceilings = HashMap::new();
    for h in &holdings {
        let c = gw
            .ceilings
            .of(&gw.chain, &Pubkey::from(h.node))
            .await
            .map_err(|e| GatewayError::ChainUnavailable(format!("reading node stake: {e}")))?;
        ceilings.insert(h.node, c);
    }
    Ok(crate::ceiling::hops_over(
        &holdings,
        max_units(input),
        |n| ceilings.get(n).copied().unwrap_or(0),
    ))
}

/// Escrow balance not already promised to nodes by vouchers in flight.
/// When the chain cannot be read, a reading younger than the program's
/// withdrawal delay stands in (less what was pending withdrawal then: see
/// [`crate::accounts::ESCROW_STALE_LIMIT`]).
async fn available_funds(gw: &Inner, client: &Pubkey) -> Result<u64, GatewayError> {
    let reading = match gw.chain.escrow(client).await {
        Ok(Some(e)) => {
            let r = EscrowReading {
                balance: e.balance,
                pending_withdrawal: e.pending_withdrawal,
                total_paid: e.total_paid,
            };
            gw.accounts.remember_escrow(client, r);
            EscrowReading {
                pending_withdrawal: 0,
                ..r
            }
        }
        Ok(None) => {
            return Err(GatewayError::PaymentRequired(format!(
                "client {client} has no escrow; deposit with `strata deposit`"
            )))
        }
        Err(e) => match gw.accounts.recent_escrow(client) {
            Some(r) => {
                tracing::warn!(%client, "chain unreadable ({e}); using the last escrow read");
                r
            }
            None => {
                return Err(GatewayError::ChainUnavailable(format!(
                    "reading escrow: {e}"
                )))
            }
        },
    };
    Ok(reading
        .balance
        .saturating_sub(reading.pending_withdrawal)
        .saturating_sub(gw.accounts.unredeemed(client, reading.total_paid)))
}

/// One call of the task protocol to `node` over p2p.
async fn call(gw: &Inner, node: NodeId, req: &TaskRequest) -> Result<TaskResponse, GatewayError> {
    task::call(|bytes| gw.p2p.request(node, &TASK, bytes), req)
        .await
        .map_err(|e| match e {
            CallError::Transport(e) => GatewayError::Node(format!("node {node}: {e}")),
            CallError::Decode(e) => {
                GatewayError::Node(format!("node {node} answered garbage: {e}"))
            }
        })
}

fn node_error(kind: TaskErrorKind, message: String) -> GatewayError {
    match kind {
        TaskErrorKind::BadRequest => GatewayError::BadRequest(message),
        TaskErrorKind::PromptTooLong => GatewayError::BadRequest(message),
        TaskErrorKind::UnknownModel => GatewayError::UnknownModel(message),
        // Another node announcing the version may still hold it.
        TaskErrorKind::Busy | TaskErrorKind::UnknownPolicy => GatewayError::Busy(message),
        TaskErrorKind::Payment => GatewayError::PaymentRequired(message),
        TaskErrorKind::UnknownTask | TaskErrorKind::Internal => GatewayError::Node(message),
    }
}

async fn run_on(
    gw: &Inner,
    account: &crate::accounts::Account,
    node: NodeId,
    input: &TaskInput,
    events: &mpsc::Sender<Event>,
    task_id: [u8; 32],
) -> Result<Outcome, GatewayError> {
    let client = account.keypair.pubkey();
    let node_key = Pubkey::from(node.0);
    catch_up(gw, &client, &node_key).await?;
    let start = Instant::now();
    let spec = TaskSpec {
        task_id,
        client: client.to_bytes(),
        model: input.model.clone(),
        prompt: input.prompt.clone(),
        max_tokens: input.max_tokens,
        sampling: input.sampling,
        stop: input.stop.clone(),
    };
    let start_req = match (input.policy_version, input.logprobs) {
        (0, None) => TaskRequest::Start(spec),
        (0, Some(top_logprobs)) => TaskRequest::StartLogprobs { spec, top_logprobs },
        (policy_version, top_logprobs) => TaskRequest::StartPolicy {
            spec,
            top_logprobs,
            policy_version,
        },
    };
    match call(gw, node, &start_req).await? {
        TaskResponse::Started { .. } => {}
        TaskResponse::Error { kind, message } => return Err(node_error(kind, message)),
        other => return Err(GatewayError::Node(format!("unexpected answer {other:?}"))),
    }
    tracing::debug!(us = start.elapsed().as_micros() as u64, "task started");
    let (finish, usage) = poll_to_end(
        gw,
        node,
        task_id,
        input.stream,
        input.logprobs.is_some(),
        events,
    )
    .await?;
    let generation = start.elapsed();

    tracing::debug!(us = generation.as_micros() as u64, "task generated");
    let turn = gw.accounts.settle_turn(&client, &node_key).await;
    let voucher = gw.accounts.sign_voucher(account, &node_key, usage.price)?;
    tracing::debug!(us = start.elapsed().as_micros() as u64, "voucher signed");
    let receipt = match call(gw, node, &TaskRequest::Settle { task_id, voucher }).await? {
        TaskResponse::Settled(r) => *r,
        TaskResponse::Error { kind, message } => return Err(node_error(kind, message)),
        other => return Err(GatewayError::Node(format!("unexpected answer {other:?}"))),
    };
    drop(turn);
    tracing::debug!(us = start.elapsed().as_micros() as u64, "task settled");
    receipt
        .verify()
        .map_err(|e| GatewayError::Node(format!("node {node} sent a bad receipt: {e}")))?;
    let b = &receipt.body;
    let version = b.adapter.map_or(0, |a| a.policy_version);
    if b.task_id != task_id
        || b.node != node.0
        || b.voucher != voucher
        || b.price != usage.price
        || version != input.policy_version
    {
        return Err(GatewayError::Node(format!(
            "node {node} sent a receipt for something else"
        )));
    }
    Ok(Outcome {
        task_id,
        node,
        finish,
        usage,
        receipt,
        hops: Vec::new(),
        generation,
        total: start.elapsed(),
    })
}

async fn poll_to_end(
    gw: &Inner,
    node: NodeId,
    task_id: [u8; 32],
    stream: bool,
    logprobs: bool,
    events: &mpsc::Sender<Event>,
) -> Result<(Finish, Usage), GatewayError> {
    let mut from_byte = 0u64;
    let mut from_token = 0u32;
    let mut cancelled = false;
    loop {
        let poll = if logprobs {
            TaskRequest::PollLogprobs {
                task_id,
                from_byte,
                from_token,
                to_end: !stream,
            }
        } else {
            TaskRequest::Poll {
                task_id,
                from_byte,
                to_end: !stream,
            }
        };
        let (text, positions, finished) = match call(gw, node, &poll).await? {
            TaskResponse::Output { text, finished } if !logprobs => (text, Vec::new(), finished),
            TaskResponse::LogprobOutput {
                text,
                logprobs: positions,
                finished,
            } if logprobs => (text, positions, finished),
            TaskResponse::Error { kind, message } => return Err(node_error(kind, message)),
            other => return Err(GatewayError::Node(format!("unexpected answer {other:?}"))),
        };
        if !text.is_empty() || !positions.is_empty() {
            from_byte += text.len() as u64;
            from_token =
                from_token.saturating_add(u32::try_from(positions.len()).unwrap_or(u32::MAX));
            if events.send(Event::Text(text, positions)).await.is_err() && !cancelled {
                // The HTTP client went away: stop generating, still settle.
                cancelled = true;
                let _ = call(gw, node, &TaskRequest::Cancel { task_id }).await;
            }
        }
        if let Some(done) = finished {
            return Ok(done);
        }
    }
}

/// Most failovers of one pipelined task.
const MAX_FAILOVERS: usize = 2;

/// Runs `input` over a route of hops (failing over to the next routes),
/// then pays each hop its cells and checks its receipt.
async fn run_pipeline(
    gw: &Inner,
    account: &crate::accounts::Account,
    routes: Routes,
    input: &TaskInput,
    events: &mpsc::Sender<Event>,
) -> Result<Outcome, GatewayError> {
    let client = account.keypair.pubkey();
    let start = Instant::now();
    let top_price = routes.prices.values().copied().max().unwrap_or(0);
    let max_cost = max_units(input).saturating_mul(top_price);
    let available = available_funds(gw, &client).await?;
    if !gw.accounts.reserve(&client, max_cost, available) {
        return Err(GatewayError::PaymentRequired(format!(
            "deposit exhausted: {available} base units available in escrow {}, this task may cost up to {max_cost}; deposit more with `strata deposit`",
            strata_chain::pda::escrow(&client)
        )));
    }
    let route = routes.routes.first().cloned().unwrap_or_default();
    gw.router.track_route(&route, 1);
    let task_id: [u8; 32] = rand::random();
    let result = serve_and_pay(gw, account, &routes, input, events, task_id)
        .instrument(strata_service::task_span(&task_id))
        .await;
    gw.router.track_route(&route, -1);
    gw.accounts.release(&client, max_cost);
    let (served, receipts) = result?;
    let head = receipts
        .first()
        .cloned()
        .ok_or_else(|| GatewayError::Node("no hop was paid".into()))?;
    let generation = start.elapsed();
    let mut usage = served.usage.clone();
    usage.price = receipts.iter().map(|r| r.body.price).sum();
    usage.expected_cumulative = head.body.voucher.cumulative;
    Ok(Outcome {
        task_id: served.task_id,
        node: NodeId(head.body.node),
        finish: served.finish,
        usage,
        receipt: head,
        hops: receipts,
        generation,
        total: start.elapsed(),
    })
}

async fn serve_and_pay(
    gw: &Inner,
    account: &crate::accounts::Account,
    routes: &Routes,
    input: &TaskInput,
    events: &mpsc::Sender<Event>,
    task_id: [u8; 32],
) -> Result<(client::Served, Vec<Receipt>), GatewayError> {
    let client_key = account.keypair.pubkey();
    for node in routes.prices.keys() {
        catch_up(gw, &client_key, &Pubkey::from(*node)).await?;
    }
    let job = PipelineJob {
        spec: TaskSpec {
            task_id,
            client: client_key.to_bytes(),
            model: input.model.clone(),
            prompt: input.prompt.clone(),
            max_tokens: input.max_tokens,
            sampling: input.sampling,
            stop: input.stop.clone(),
        },
        routes: routes.routes.clone(),
        model_hash: routes.model_hash,
        n_layers: routes.n_layers,
        max_failovers: MAX_FAILOVERS,
        layer_ms: routes.layer_ms.clone(),
        stall: Stall::default(),
    };
    // Text goes out as it streams (the client callback cannot wait on the
    // HTTP side, so it hands pieces to a forwarder).
    let (text_tx, mut text_rx) = mpsc::unbounded_channel::<String>();
    let forward = {
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(t) = text_rx.recv().await {
                let _ = events.send(Event::Text(t, Vec::new())).await;
            }
        })
    };
    let served = client::serve(&gw.p2p, &job, |t| {
        // The HTTP side dropped its receiver: the client went away, so the
        // task is cancelled (and still settled for what ran).
        if events.is_closed() {
            return ControlFlow::Break(());
        }
        let _ = text_tx.send(t.to_string());
        ControlFlow::Continue(())
    })
    .await;
    drop(text_tx);
    let _ = forward.await;
    let served = served.map_err(|e| match e {
        client::ClientError::Task { kind, message } => node_error(kind, message),
        other => GatewayError::Node(format!("pipeline: {other}")),
    })?;
    let payer = Payer { gw, account };
    let prices = &routes.prices;
    let receipts = client::settle(
        &gw.p2p,
        &served,
        |node| prices.get(node).copied().unwrap_or(0),
        &payer,
    )
    .await
    .map_err(|e| GatewayError::Node(format!("paying the hops: {e}")))?;
    tracing::debug!(hops = receipts.len(), "pipelined task settled");
    Ok((served, receipts))
}

/// Starts the gateway's total for (client, node) at what the chain redeemed.
async fn catch_up(gw: &Inner, client: &Pubkey, node: &Pubkey) -> Result<(), GatewayError> {
    if gw.accounts.knows(client, node) {
        return Ok(());
    }
    let channel = strata_chain::pda::channel(client, node);
    let redeemed = gw
        .chain
        .account::<strata_chain::accounts::Channel>(&channel, "channel")
        .await
        .map_err(|e| GatewayError::ChainUnavailable(format!("reading channel: {e}")))?
        .map(|c| c.redeemed)
        .unwrap_or(0);
    gw.accounts.catch_up(client, node, redeemed);
    Ok(())
}

/// The gateway's vouchers for one client: totals persisted before a
/// voucher leaves, one settlement per (client, node) at a time.
struct Payer<'a> {
    gw: &'a Inner,
    account: &'a crate::accounts::Account,
}

impl client::Payer for Payer<'_> {
    type Error = GatewayError;
    type Turn = tokio::sync::OwnedMutexGuard<()>;

    async fn pay(
        &self,
        node: [u8; 32],
        price: u64,
    ) -> Result<(strata_wire::Voucher, Self::Turn), GatewayError> {
        let node = Pubkey::from(node);
        let turn = self
            .gw
            .accounts
            .settle_turn(&self.account.keypair.pubkey(), &node)
            .await;
        let voucher = self.gw.accounts.sign_voucher(self.account, &node, price)?;
        Ok((voucher, turn))
    }
}
