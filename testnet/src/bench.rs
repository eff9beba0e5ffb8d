//! The whole-path benchmark: paid tasks per second through gateway, p2p,
//! node, receipts and relayer, at 1 and at many concurrent clients, against
//! a reference run of the same requests straight on the engine in the same
//! process; the difference is the share of time spent outside the model.
//! Then the chain fees the relayer paid per settled task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anchor_lang::Space;
use strata_chain::accounts::{Batch, Channel, RewardEpoch};
use strata_chain::rpc::ChainClient;
use strata_chain::{Keypair, Signer};
use strata_engine::{Batcher, ChatMessage, Engine, GenerateRequest};

use crate::genesis::TOKEN;
use crate::loadgen::{self, LoadOptions};
use crate::local::{LocalOptions, LocalTestnet};
use crate::network::Network;
use crate::MODEL_NAME;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Concurrent client counts to measure at.
    pub clients: Vec<usize>,
    /// Tasks per measurement.
    pub tasks: usize,
    /// Tokens per completion.
    pub max_tokens: u32,
    /// Nodes serving.
    pub nodes: usize,
}

/// Runs `prompts` as chat requests of `max_tokens` each through one engine
/// with `concurrency` sequences batched at a time, recording commitments as
/// the node does; returns the wall time.
pub fn engine_reference(
    engine: &Engine,
    prompts: &[String],
    max_tokens: usize,
    concurrency: usize,
) -> Duration {
    let start = Instant::now();
    let mut queue = prompts.iter();
    let mut batcher = Batcher::new(&engine.model);
    let stop = engine.end_of_turn_tokens();
    loop {
        while batcher.active_len() < concurrency {
            let Some(p) = queue.next() else { break };
            let Ok(prompt) = engine.chat_prompt(&[ChatMessage::new("user", p)]) else {
                continue;
            };
            let mut req = GenerateRequest::greedy(prompt, max_tokens);
            req.stop_tokens = stop.clone();
            req.record_commitments = true;
            if batcher.add(req).is_err() {
                continue;
            }
        }
        if batcher.is_idle() || batcher.step().is_err() {
            break;
        }
        batcher.take_finished();
    }
    start.elapsed()
}

/// The prompts `clients` load-generator clients send, `per_client` each.
pub fn load_prompts(clients: usize, per_client: usize) -> Vec<String> {
    (0..clients)
        .flat_map(|i| (1..=per_client).map(move |n| loadgen::prompt(i, n)))
        .collect()
}

/// Runs the benchmark on its own local testnet and prints a table.
pub async fn run(o: &BenchOptions) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("strata-bench-{}", std::process::id()));
    let most = o.clients.iter().copied().max().unwrap_or(1);
    let mut options = LocalOptions::ephemeral(&dir);
    options.nodes = o.nodes;
    options.genesis.params.epoch_length = 60;
    options.network.batch_interval = Duration::from_secs(1);
    options.network.reward_interval = Duration::from_secs(5);
    options.clients = (0..most)
        .map(|i| (format!("bench-{i}"), Keypair::new(), 100 * TOKEN))
        .collect();
    let t = LocalTestnet::start(&dir, options).await?;
    let engine = Arc::new(tokio::task::spawn_blocking(Engine::load_default).await??);
    let relayer = t.keys.relayer.pubkey();
    let lamports0 = t.rpc.lamports(&relayer).await?;
    let load = |n: usize, per_client: usize| LoadOptions {
        gateway: t.net.gateway.url(),
        api_keys: (0..n).map(|i| format!("bench-{i}")).collect(),
        model: MODEL_NAME.to_string(),
        max_tokens: o.max_tokens,
        tasks_per_client: Some(per_client),
        duration: Duration::from_secs(3_600),
    };
    // Warm-up: first connections and the first voucher of every channel.
    let mut settled = loadgen::run(&load(most, 1)).await.tasks as u64;
    println!(
        "whole path vs the engine alone: {}-token greedy chat completions, {} node(s), this machine's {} cores",
        o.max_tokens,
        o.nodes,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| clients | tasks | path tasks/s | engine tasks/s | path / engine | time outside the model | p50 latency | p99 latency |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &o.clients {
        let per_client = o.tasks.div_ceil(n);
        let r = loadgen::run(&load(n, per_client)).await;
        if let Some(e) = &r.first_error {
            println!("  ({} errors; first: {e})", r.errors);
        }
        settled += r.tasks as u64;
        let prompts = load_prompts(n, per_client);
        let count = prompts.len();
        let (e, max_tokens) = (engine.clone(), o.max_tokens as usize);
        let reference =
            tokio::task::spawn_blocking(move || engine_reference(&e, &prompts, max_tokens, n))
                .await?;
        let path_rate = r.tasks_per_sec();
        let engine_rate = count as f64 / reference.as_secs_f64();
        println!(
            "| {n} | {} | {path_rate:.2} | {engine_rate:.2} | {:.2} | {:.0} % | {:.0} ms | {:.0} ms |",
            r.tasks,
            path_rate / engine_rate,
            100.0 * (1.0 - path_rate / engine_rate).max(0.0),
            r.percentile(50).as_secs_f64() * 1e3,
            r.percentile(99).as_secs_f64() * 1e3,
        );
    }

    // Fees: once every receipt is batched and every voucher redeemed.
    let http = reqwest::Client::new();
    let stats_url = format!("{}/v1/stats", t.net.relayer.http_url());
    let deadline = Instant::now() + Duration::from_secs(120);
    let stats = loop {
        let s: serde_json::Value = http.get(&stats_url).send().await?.json().await?;
        let batched = s["batched"].as_u64().unwrap_or(0);
        if batched >= settled && all_redeemed(&t.rpc, &t.net).await? {
            break s;
        }
        if Instant::now() > deadline {
            println!("(settlement incomplete after 120 s: {batched} of {settled} batched)");
            break s;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let spent = lamports0.saturating_sub(t.rpc.lamports(&relayer).await?);
    // Rent is a deposit held by new accounts, not a fee: count it apart.
    let batches = stats["batches"].as_u64().unwrap_or(0);
    let epochs = stats["epochs"].as_u64().unwrap_or(0);
    let channels = t
        .net
        .gateway
        .voucher_totals()
        .iter()
        .filter(|(_, _, total)| *total > 0)
        .count() as u64;
    let rent = batches * t.rpc.rent(8 + Batch::INIT_SPACE).await?
        + channels * t.rpc.rent(8 + Channel::INIT_SPACE).await?
        + epochs * t.rpc.rent(8 + RewardEpoch::INIT_SPACE).await?;
    let fees = spent.saturating_sub(rent);
    println!(
        "relayer: {settled} tasks settled in {batches} batches over {channels} channels and {epochs} reward epochs; \
         spent {spent} lamports = {rent} rent of new accounts + {fees} transaction fees: {:.0} lamports of fees per settled task",
        fees as f64 / settled.max(1) as f64
    );
    t.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// True once every voucher the gateway signed is redeemed on-chain.
async fn all_redeemed(rpc: &ChainClient, net: &Network) -> anyhow::Result<bool> {
    for (client, node, total) in net.gateway.voucher_totals() {
        let channel = strata_chain::pda::channel(&client, &node);
        let redeemed = rpc
            .account::<Channel>(&channel, "channel")
            .await?
            .map_or(0, |c| c.redeemed);
        if redeemed < total {
            return Ok(false);
        }
    }
    Ok(true)
}
