//! The load and fault campaign (`strata-load-campaign`): paying clients
//! hammer a local testnet whose services run as processes of their own,
//! while a fault injector kills and restarts them, takes the chain's RPC
//! away and cuts a node off from its peers. At the end everything is
//! reconciled against the chain and the relayer, to the base unit.
//!
//! - [`load`]: the clients and what each request came to;
//! - [`faults`]: the schedule and the injector;
//! - [`procs`]: the service processes (kill, restart, memory samples);
//! - [`proxy`]: the chain's RPC as the services see it;
//! - [`reconcile`]: the books, checked.

pub mod faults;
pub mod load;
pub mod procs;
pub mod proxy;
pub mod reconcile;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use strata_chain::rpc::ChainClient;
use strata_chain::{keys, Keypair, Signer};
use strata_localnet::{Localnet, LocalnetConfig};

use crate::genesis::TOKEN;
use crate::{bootstrap, fund_client, GenesisOptions, TestnetKeys, MODEL_NAME};
use faults::{FaultKind, FaultTimes, Injected, Targets};
use load::{ClientPlan, Outcome, Request};
use procs::{MemoryGrowth, Service};
use proxy::RpcProxy;

/// What a campaign runs.
#[derive(Debug, Clone)]
pub struct CampaignOptions {
    /// Working directory (keys, service state, logs).
    pub dir: PathBuf,
    /// Where the service binaries are (`strata-node`, `strata-gateway`, ...).
    pub bin_dir: PathBuf,
    /// Concurrent paying clients.
    pub clients: usize,
    /// How long the clients send.
    pub duration: Duration,
    /// Nodes.
    pub nodes: usize,
    /// Verifiers.
    pub verifiers: usize,
    /// Seed of the clients' and the injector's choices.
    pub seed: u64,
    /// Fault durations.
    pub times: FaultTimes,
    /// Inject faults at all.
    pub faults: bool,
    /// Completion lengths clients draw from.
    pub lengths: Vec<u32>,
    /// Share of streams abandoned half way.
    pub cancel_share: f64,
    /// Each client's escrow deposit, base units.
    pub deposit: u64,
    /// How long to wait after the load for receipts and vouchers to settle.
    pub settle_timeout: Duration,
}

/// What a campaign measured and found.
pub struct CampaignReport {
    /// Every request.
    pub requests: Vec<Request>,
    /// Every fault.
    pub faults: Vec<Injected>,
    /// Per service: kills, unexpected exits, memory.
    pub services: Vec<ServiceLine>,
    /// The books.
    pub reconciliation: reconcile::Reconciliation,
    /// How long the load ran.
    pub load_time: Duration,
    /// How long settling took after it.
    pub settle_time: Duration,
}

/// One service's line of the report.
pub struct ServiceLine {
    /// Name.
    pub name: String,
    /// SIGKILLs received.
    pub kills: u32,
    /// Exits nobody asked for.
    pub unexpected_exits: u32,
    /// Memory over its longest life.
    pub memory: Option<MemoryGrowth>,
}

/// The client index of the warm-up request (the testnet's demo client).
pub const WARMUP: usize = usize::MAX;

/// Memory growth past this over a process's longest life counts as growth
/// without bound (caches and the KV pool settle well inside it).
pub const MEMORY_GROWTH_LIMIT: f64 = 1.5;

impl CampaignReport {
    /// Whether the run passed: the books are exact, no process crashed on
    /// its own or grew without bound, and some work was served.
    pub fn passed(&self) -> bool {
        let served = self
            .requests
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Served { .. }));
        served
            && self.reconciliation.problems.is_empty()
            && self.services.iter().all(|s| {
                s.unexpected_exits == 0 && s.memory.is_none_or(|m| m.ratio() <= MEMORY_GROWTH_LIMIT)
            })
    }
}

/// A free TCP port on 127.0.0.1 (bound and released: the campaign runs in
/// its own network namespace, where nothing else takes it meanwhile).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// Runs the campaign.
pub async fn run(options: CampaignOptions) -> anyhow::Result<CampaignReport> {
    let dir = &options.dir;
    // Services keep state (voucher totals, receipts) that belongs to one
    // chain; the embedded chain is new every run.
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!(
            "{} is not empty: the campaign starts a new chain and needs a fresh directory",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("logs"))?;
    let logs = dir.join("logs");
    let keys = TestnetKeys::load_or_create_with(dir, options.nodes, options.verifiers)?;
    let chain = tokio::task::spawn_blocking(|| {
        Localnet::start(&LocalnetConfig {
            rpc_port: 0,
            ws_port: 0,
            slot_time_ms: 100,
        })
    })
    .await??;
    let rpc = ChainClient::new(chain.rpc_url())?;
    let mut genesis = GenesisOptions {
        register_nodes: false,
        ..GenesisOptions::default()
    };
    genesis.params.epoch_length = 2;
    bootstrap(&rpc, chain.ws_url(), &keys, &genesis)
        .await
        .context("genesis")?;
    let mint = keys.mint.pubkey();

    // The clients: a key file each (the gateway signs their vouchers), funded.
    let mut clients: Vec<(String, Keypair, PathBuf)> = Vec::new();
    for i in 0..options.clients {
        let path = dir.join("clients").join(format!("client-{i}.json"));
        let key = keys::read_or_create(&path)?;
        clients.push((format!("campaign-key-{i}"), key, path));
    }
    let t = Instant::now();
    for chunk in clients.chunks(16) {
        let funding = chunk
            .iter()
            .map(|(_, k, _)| fund_client(&rpc, &keys.faucet, &mint, k, options.deposit));
        for r in futures::future::join_all(funding).await {
            r.context("funding a client")?;
        }
    }
    println!(
        "chain up, genesis done, {} clients funded in {:.1?}",
        clients.len(),
        t.elapsed()
    );

    // The chain's RPC as the services see it.
    let chain_addr: SocketAddr = chain
        .rpc_url()
        .trim_start_matches("http://")
        .parse()
        .context("the chain's RPC address")?;
    let proxy = Arc::new(RpcProxy::start(([127, 0, 0, 1], 0).into(), chain_addr).await?);
    let url = proxy.url();

    let bin = |name: &str| options.bin_dir.join(name);
    let mut services = Vec::new();
    let key_path = |name: &str| path_arg(&dir.join("keys").join(format!("{name}.json")));

    let (relayer_http, relayer_p2p) = (free_port()?, free_port()?);
    let relayer_ma = format!(
        "/ip4/127.0.0.1/tcp/{relayer_p2p}/p2p/{}",
        strata_p2p::peer_id_of(keys.relayer.pubkey().to_bytes())
    );
    let relayer_url = format!("http://127.0.0.1:{relayer_http}");
    services.push(Service::new(
        "relayer",
        bin("strata-relayer"),
        vec![
            "--url".into(),
            url.clone(),
            "--keypair".into(),
            key_path("relayer"),
            "--state-dir".into(),
            path_arg(&dir.join("relayer")),
            "--http".into(),
            format!("127.0.0.1:{relayer_http}"),
            "--p2p-listen".into(),
            format!("/ip4/127.0.0.1/tcp/{relayer_p2p}"),
            "--batch-interval".into(),
            "1".into(),
            "--reward-interval".into(),
            "2".into(),
            "--reward-per-work-unit".into(),
            "2".into(),
        ],
        &logs,
    ));
    let relayer = 0;

    let mut node_targets = Vec::new();
    let mut node_addrs = Vec::new();
    let mut node_metrics = Vec::new();
    for i in 0..options.nodes {
        let (p2p, metrics) = (free_port()?, free_port()?);
        node_addrs.push(format!(
            "/ip4/127.0.0.1/tcp/{p2p}/p2p/{}",
            strata_p2p::peer_id_of(keys.nodes[i].pubkey().to_bytes())
        ));
        node_metrics.push(format!("http://127.0.0.1:{metrics}/metrics"));
        node_targets.push((services.len(), p2p));
        services.push(Service::new(
            &format!("node-{i}"),
            bin("strata-node"),
            vec![
                "--keypair".into(),
                key_path(&format!("node-{i}")),
                "--url".into(),
                url.clone(),
                "--price".into(),
                "10".into(),
                "--max-concurrent".into(),
                "16".into(),
                "--max-tokens".into(),
                "256".into(),
                "--stake".into(),
                (genesis.node_stake / TOKEN).to_string(),
                "--listen".into(),
                format!("/ip4/127.0.0.1/tcp/{p2p}"),
                "--bootstrap".into(),
                relayer_ma.clone(),
                "--relayer".into(),
                relayer_ma.clone(),
                "--quiet".into(),
                "--state-dir".into(),
                path_arg(&dir.join(format!("node-{i}"))),
                "--metrics".into(),
                format!("127.0.0.1:{metrics}"),
            ],
            &logs,
        ));
    }
    let mut verifier_targets = Vec::new();
    for j in 0..options.verifiers {
        let p2p = free_port()?;
        let mut args = vec![
            "--keypair".into(),
            key_path(&format!("verifier-{j}")),
            "--url".into(),
            url.clone(),
            "--relayer-http".into(),
            relayer_url.clone(),
            "--stake".into(),
            (genesis.node_stake / TOKEN).to_string(),
            "--listen".into(),
            format!("/ip4/127.0.0.1/tcp/{p2p}"),
            "--poll-secs".into(),
            "1".into(),
            "--state-dir".into(),
            path_arg(&dir.join(format!("verifier-{j}"))),
        ];
        for a in std::iter::once(&relayer_ma).chain(&node_addrs) {
            args.extend(["--bootstrap".into(), a.clone()]);
        }
        verifier_targets.push(services.len());
        services.push(Service::new(
            &format!("verifier-{j}"),
            bin("strata-verifier"),
            args,
            &logs,
        ));
    }
    let gateway_port = free_port()?;
    let gateway_url = format!("http://127.0.0.1:{gateway_port}");
    let mut args = vec![
        "--url".into(),
        url.clone(),
        "--listen".into(),
        format!("127.0.0.1:{gateway_port}"),
        "--state-dir".into(),
        path_arg(&dir.join("gateway")),
        "--p2p-listen".into(),
        format!("/ip4/127.0.0.1/tcp/{}", free_port()?),
        "--account".into(),
        format!("campaign-warmup={}", key_path("client")),
    ];
    for (api_key, _, path) in &clients {
        args.extend(["--account".into(), format!("{api_key}={}", path_arg(path))]);
    }
    for a in std::iter::once(&relayer_ma).chain(&node_addrs) {
        args.extend(["--bootstrap".into(), a.clone()]);
    }
    let gateway = services.len();
    services.push(Service::new("gateway", bin("strata-gateway"), args, &logs));

    // Start in dependency order, each ready before the next.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    services[relayer].spawn()?;
    wait_http(
        &http,
        &format!("{relayer_url}/v1/stats"),
        Duration::from_secs(60),
        "the relayer",
    )
    .await?;
    for (i, _) in &node_targets {
        services[*i].spawn()?;
    }
    for (k, key) in keys.nodes.iter().enumerate() {
        wait_registered(&rpc, &key.pubkey(), Duration::from_secs(180))
            .await
            .with_context(|| {
                format!(
                    "node-{k} (log: {})",
                    logs.join(format!("node-{k}.log")).display()
                )
            })?;
        wait_http(
            &http,
            &node_metrics[k],
            Duration::from_secs(60),
            "a node's metrics",
        )
        .await?;
    }
    for i in &verifier_targets {
        services[*i].spawn()?;
    }
    services[gateway].spawn()?;
    wait_http(
        &http,
        &format!("{gateway_url}/health"),
        Duration::from_secs(60),
        "the gateway",
    )
    .await?;
    let plan = ClientPlan {
        gateway: gateway_url.clone(),
        model: MODEL_NAME.to_string(),
        lengths: options.lengths.clone(),
        cancel_share: options.cancel_share,
        request_timeout: Duration::from_secs(180),
    };
    // One paid request before the clock starts (the gateway has heard of
    // the nodes), paid by the testnet's demo client.
    let mut warmup = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let one_plan = ClientPlan {
        cancel_share: 0.0,
        ..plan.clone()
    };
    while !warmup
        .iter()
        .any(|r: &Request| matches!(r.outcome, Outcome::Served { .. }))
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the gateway served nothing within 120 s (logs: {})",
            logs.display()
        );
        let now = Instant::now();
        let one = load::client(
            WARMUP,
            "campaign-warmup".into(),
            one_plan.clone(),
            1,
            now,
            now,
        )
        .await;
        warmup.extend(one);
    }
    println!(
        "services up: relayer, {} nodes, {} verifiers, gateway at {gateway_url}; rpc proxy {url}",
        options.nodes, options.verifiers
    );

    let baseline = reconcile::Snapshot::read(&rpc, &mint, &keys, &clients).await?;
    let services = Arc::new(Mutex::new(services));
    let t0 = Instant::now();
    let t0_unix_ms = strata_service::now_ms();
    let deadline = t0 + options.duration;
    let mut clients_running = Vec::new();
    for (i, (api_key, _, _)) in clients.iter().enumerate() {
        clients_running.push(tokio::spawn(load::client(
            i,
            api_key.clone(),
            plan.clone(),
            options.seed,
            t0,
            deadline,
        )));
    }
    let injector = options.faults.then(|| {
        let schedule = faults::schedule(options.seed, options.duration, &options.times);
        println!(
            "fault schedule: {}",
            schedule
                .iter()
                .map(|(at, k)| format!("{:?}@{}s", k, at.as_secs()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        tokio::spawn(faults::inject(
            schedule,
            Targets {
                services: services.clone(),
                nodes: node_targets.clone(),
                relayer,
                gateway,
                verifiers: verifier_targets.clone(),
                rpc: proxy.clone(),
            },
            options.times.clone(),
            options.seed,
            t0,
        ))
    });
    // Watch the processes while the load runs.
    let watch = {
        let services = services.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(mut s) = services.lock() {
                    for svc in s.iter_mut() {
                        let _ = svc.check();
                        svc.sample();
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    let progress = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            println!("  {:>4}s into the load", t0.elapsed().as_secs());
        }
    });
    let mut requests = warmup;
    for c in clients_running {
        requests.extend(c.await?);
    }
    let load_time = t0.elapsed();
    progress.abort();
    write_requests(&dir.join("requests.jsonl"), &requests, t0_unix_ms)?;
    let faults = match injector {
        Some(j) => j.await?,
        None => Vec::new(),
    };
    proxy.set_up(true);
    println!("load done after {load_time:.1?}; settling");

    // Settle: every receipt batched on-chain, every voucher redeemed.
    let settle_start = Instant::now();
    let settled =
        reconcile::wait_settled(&http, &relayer_url, &requests, options.settle_timeout).await;
    let settle_time = settle_start.elapsed();
    watch.abort();
    let mut reconciliation = reconcile::reconcile(
        &rpc,
        &http,
        &relayer_url,
        &mint,
        &keys,
        &clients,
        &baseline,
        &requests,
        t0_unix_ms,
        &loss_windows(&faults, &options.times),
    )
    .await?;
    if let Err(e) = settled {
        reconciliation
            .problems
            .insert(0, format!("not settled: {e}"));
    }
    let mut lines = Vec::new();
    if let Ok(mut s) = services.lock() {
        for svc in s.iter_mut() {
            lines.push(ServiceLine {
                name: svc.name.clone(),
                kills: svc.kills,
                unexpected_exits: svc.unexpected_exits,
                memory: svc.growth(),
            });
            svc.stop();
        }
    }
    drop(proxy);
    let _ = tokio::task::spawn_blocking(move || drop(chain)).await;
    Ok(CampaignReport {
        requests,
        faults,
        services: lines,
        reconciliation,
        load_time,
        settle_time,
    })
}

/// Every request as one JSON line (for a post-mortem with the services'
/// logs and the relayer's database, which stay in the directory).
fn write_requests(path: &Path, requests: &[Request], t0_unix_ms: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for q in requests {
        let (outcome, task_id, price) = match &q.outcome {
            Outcome::Served { task_id, price, .. } => {
                ("served".to_string(), Some(task_id), Some(price))
            }
            Outcome::Cancelled => ("cancelled".to_string(), None, None),
            Outcome::Failed(class) => (format!("failed: {class}"), None, None),
        };
        let client = (q.client != WARMUP).then_some(q.client);
        let line = serde_json::json!({
            "client": client,
            "started_unix_ms": t0_unix_ms + q.started.as_millis() as u64,
            "took_ms": q.took.as_millis() as u64,
            "stream": q.stream,
            "outcome": outcome,
            "task_id": task_id,
            "price": price,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

async fn wait_http(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} did not answer at {url} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_registered(
    rpc: &ChainClient,
    operator: &strata_chain::Pubkey,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(n)) = rpc.node(operator).await {
            if n.stake > 0 {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not registered and staked within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Percentile `p` (0..=100) of `values`, milliseconds.
pub fn percentile(values: &mut [Duration], p: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let i = ((values.len() - 1) as f64 * p / 100.0).round() as usize;
    Some(values[i])
}

/// Errors by class, most frequent first.
pub fn errors_by_class(requests: &[Request]) -> Vec<(String, usize)> {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for r in requests {
        if let Outcome::Failed(class) = &r.outcome {
            *by.entry(class.clone()).or_default() += 1;
        }
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v
}

/// When answers could be lost after the node was paid: a killed gateway or
/// node (until restarted) or a partition, each plus 15 s for the failure to
/// reach the client. An RPC outage is not one: nodes take vouchers without
/// the chain.
pub fn loss_windows(faults: &[Injected], times: &FaultTimes) -> Vec<reconcile::LossWindow> {
    const SURFACE: Duration = Duration::from_secs(15);
    faults
        .iter()
        .filter_map(|f| {
            let lasts = match f.kind {
                FaultKind::KillGateway | FaultKind::KillNode => times.down,
                FaultKind::Partition => times.partition,
                _ => return None,
            };
            Some(reconcile::LossWindow {
                from: f.at,
                to: f.at + lasts + SURFACE,
                what: f
                    .detail
                    .split_whitespace()
                    .next()
                    .unwrap_or("?")
                    .to_string(),
            })
        })
        .collect()
}

/// Which kinds of fault the run injected.
pub fn kinds_injected(faults: &[Injected]) -> Vec<FaultKind> {
    FaultKind::ALL
        .into_iter()
        .filter(|k| faults.iter().any(|f| f.kind == *k))
        .collect()
}
