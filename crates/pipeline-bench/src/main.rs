//! `pipeline-bench`: one `strata-node` holding the whole model against
//! pipelines of 2 and 3 `strata-node` processes holding a share of its blocks
//! each, on loopback, at several numbers of concurrent streams.
//!
//! Every node is its own process limited to one engine thread
//! (`CANDLE_NUM_THREADS=1`), and all of them share this machine's cores, so
//! aggregate tokens per second says little about a pipeline across machines.
//! What this program is for is the protocol's own cost: tokens per CPU-second
//! of the node processes (utime + stime from `/proc`), pipeline against the
//! one node, at the same load. It also prints time to first token,
//! inter-token latency at the client, and the bytes each hop sent per token.
//! Outputs are greedy and checked equal to the one node's, so a row cannot
//! be fast by being wrong.
//!
//! `--hetero` adds a two-node pipeline whose nodes get 1 and 2 engine
//! threads, split equally and split in proportion to their measured speeds.
//!
//! Build and run: `cargo build --release -p strata-node -p pipeline-bench &&
//! target/release/pipeline-bench`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use strata_p2p::{peer_id_of, NodeId, NodeIdentity, P2pConfig, P2pHandle};
use strata_pipeline::client::{self, PipelineTask};
use strata_wire::hop::RouteHop;
use strata_wire::protocols::{ALL_PROTOCOLS, TASK};
use strata_wire::task::{ChatTurn, Prompt, Sampling, TaskRequest, TaskResponse, TaskSpec};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

const MODEL: &str = "SmolLM2-135M-Instruct";
const N_LAYERS: usize = 30;

#[derive(Parser)]
#[command(
    name = "pipeline-bench",
    about = "One node vs pipelines of 2 and 3 nodes on loopback"
)]
struct Cli {
    /// Concurrent streams (comma-separated).
    #[arg(long, default_value = "1,8,32", value_delimiter = ',')]
    streams: Vec<usize>,
    /// Hops per configuration (1 = the whole-model node; comma-separated).
    #[arg(long, default_value = "1,2,3", value_delimiter = ',')]
    hops: Vec<usize>,
    /// Tokens generated per stream.
    #[arg(long, default_value_t = 48)]
    tokens: u32,
    /// Also compare an equal split with a speed-proportional one on two
    /// nodes of 1 and 2 engine threads.
    #[arg(long)]
    hetero: bool,
    /// The `strata-node` binary (default: next to this one).
    #[arg(long)]
    node_bin: Option<PathBuf>,
}

/// A `strata-node` child process.
struct Node {
    child: Child,
    pid: i32,
    id: NodeId,
    addr: String,
    layers: Range<usize>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Node {
    async fn spawn(
        bin: &Path,
        dir: &Path,
        layers: Range<usize>,
        threads: usize,
        max_tokens: u32,
        bootstrap: &[String],
    ) -> Result<Self> {
        let identity = NodeIdentity::generate();
        let id = identity.node_id();
        let key = dir.join(format!("{}.json", hex::encode(&id.0[..6])));
        std::fs::write(&key, identity.to_solana_json())?;
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(["--offline", "--quiet", "--keypair"])
            .arg(&key)
            .arg("--state-dir")
            .arg(dir.join(hex::encode(&id.0[..6])))
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--max-concurrent", "32"])
            .args(["--max-tokens", &max_tokens.to_string()])
            .env("CANDLE_NUM_THREADS", threads.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if layers != (0..N_LAYERS) {
            cmd.args(["--layers", &format!("{}..{}", layers.start, layers.end)]);
        }
        for b in bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("node exited at once"))? as i32;
        let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut stdout = BufReader::new(out).lines();
        let addr = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = stdout.next_line().await? {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let first = rest.split(", ").next().unwrap_or_default().to_string();
                    return Ok::<_, anyhow::Error>(first);
                }
            }
            bail!("the node exited before listening")
        })
        .await
        .context("waiting for the node to listen")??;
        let addr = format!("{addr}/p2p/{}", peer_id_of(id.0));
        Ok(Self {
            child,
            pid,
            id,
            addr,
            layers,
            stdout,
        })
    }

    /// User + system CPU time so far, seconds.
    fn cpu_secs(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return 0.0;
        };
        // Fields after the command name (which may hold spaces, in parentheses).
        let rest = stat.rsplit(')').next().unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of the line, 11 and 12 here.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (ticks(11) + ticks(12)) / hz.max(1.0)
    }

    /// Stops the node (SIGINT, as Ctrl-C) and returns the hop bytes it reports.
    async fn stop(mut self) -> u64 {
        unsafe {
            libc::kill(self.pid, libc::SIGINT);
        }
        let mut bytes = 0;
        let read = async {
            while let Ok(Some(line)) = self.stdout.next_line().await {
                if let Some(n) = line.strip_prefix("hop bytes sent: ") {
                    bytes = n.trim().parse().unwrap_or(0);
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(40), read).await;
        let _ = self.child.kill().await;
        bytes
    }
}

/// One configuration's figures.
#[derive(Debug, Clone, Default)]
struct Row {
    name: String,
    hops: usize,
    streams: usize,
    tokens: u64,
    wall: f64,
    cpu: f64,
    ttft: Vec<f64>,
    gaps: Vec<f64>,
    bytes_per_token_hop: f64,
}

impl Row {
    fn tok_s(&self) -> f64 {
        self.tokens as f64 / self.wall.max(1e-9)
    }
    fn tok_cpu(&self) -> f64 {
        self.tokens as f64 / self.cpu.max(1e-9)
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * p).round() as usize]
}

fn spec(i: usize, tokens: u32) -> TaskSpec {
    let topics = [
        "the sea",
        "a mountain",
        "the moon",
        "a city",
        "rain",
        "a forest",
        "bread",
        "music",
    ];
    TaskSpec {
        task_id: rand::random(),
        // A client per stream: the nodes' unpaid-task credit is per client.
        client: rand::random(),
        model: MODEL.into(),
        prompt: Prompt::Chat(vec![ChatTurn {
            role: "user".into(),
            content: format!(
                "Write a long story about {} number {i}.",
                topics[i % topics.len()]
            ),
        }]),
        max_tokens: tokens,
        sampling: Sampling::GREEDY,
        stop: vec![],
    }
}

/// What one stream gave: its text, completion tokens, TTFT and text gaps.
struct Stream {
    text: String,
    tokens: u64,
    ttft: f64,
    gaps: Vec<f64>,
}

async fn whole_stream(p2p: &P2pHandle, node: NodeId, spec: TaskSpec) -> Result<Stream> {
    let t0 = Instant::now();
    let call = |req: TaskRequest| async move {
        strata_wire::task::call(|b| p2p.request(node, &TASK, b), &req)
            .await
            .map_err(|e| anyhow!("{e}"))
    };
    let id = spec.task_id;
    match call(TaskRequest::Start(spec)).await? {
        TaskResponse::Started { .. } => {}
        other => bail!("not started: {other:?}"),
    }
    let (mut text, mut ttft, mut last, mut gaps) = (String::new(), None, t0, Vec::new());
    loop {
        let poll = TaskRequest::Poll {
            task_id: id,
            from_byte: text.len() as u64,
            to_end: false,
        };
        match call(poll).await? {
            TaskResponse::Output { text: t, finished } => {
                if !t.is_empty() {
                    let now = Instant::now();
                    match ttft {
                        None => ttft = Some(now - t0),
                        Some(_) => gaps.push((now - last).as_secs_f64()),
                    }
                    last = now;
                    text.push_str(&t);
                }
                if let Some((_, u)) = finished {
                    return Ok(Stream {
                        text,
                        tokens: u64::from(u.completion_tokens),
                        ttft: ttft.unwrap_or_default().as_secs_f64(),
                        gaps,
                    });
                }
            }
            other => bail!("bad poll: {other:?}"),
        }
    }
}

async fn pipeline_stream(t: &P2pHandle, route: &[RouteHop], spec: TaskSpec) -> Result<Stream> {
    let t0 = Instant::now();
    let task = PipelineTask {
        spec,
        route: route.to_vec(),
        model_hash: model_hash()?,
        n_layers: N_LAYERS as u16,
        segment: 0,
    };
    let (mut ttft, mut last, mut gaps) = (None, t0, Vec::new());
    let out = client::run(t, &task, |_| {
        let now = Instant::now();
        match ttft {
            None => ttft = Some(now - t0),
            Some(_) => gaps.push((now - last).as_secs_f64()),
        }
        last = now;
    })
    .await?;
    Ok(Stream {
        text: out.text,
        tokens: u64::from(out.usage.completion_tokens),
        ttft: ttft.unwrap_or_default().as_secs_f64(),
        gaps,
    })
}

fn model_hash() -> Result<[u8; 32]> {
    hex::decode(strata_engine::DEFAULT_MODEL_SHA256)?
        .try_into()
        .map_err(|_| anyhow!("bad default model hash"))
}

/// Equal contiguous ranges over the model's blocks.
fn equal_split(hops: usize) -> Vec<Range<usize>> {
    (0..hops)
        .map(|i| i * N_LAYERS / hops..(i + 1) * N_LAYERS / hops)
        .collect()
}

struct Bench {
    bin: PathBuf,
    dir: tempfile::TempDir,
    tokens: u32,
}

impl Bench {
    /// Starts nodes for `split` (with these engine threads each), runs every
    /// stream count on them, stops them; one row per stream count.
    async fn run(
        &self,
        name: &str,
        split: &[Range<usize>],
        threads: &[usize],
        streams: &[usize],
        reference: &mut BTreeMap<usize, Vec<String>>,
    ) -> Result<Vec<Row>> {
        let mut nodes: Vec<Node> = Vec::new();
        for (r, &th) in split.iter().zip(threads) {
            let boot: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
            nodes.push(
                Node::spawn(
                    &self.bin,
                    self.dir.path(),
                    r.clone(),
                    th,
                    self.tokens,
                    &boot,
                )
                .await?,
            );
        }
        let config = P2pConfig::local().with_protocols(ALL_PROTOCOLS);
        let (p2p, _events) = strata_p2p::start(NodeIdentity::generate(), config).await?;
        for n in &nodes {
            p2p.dial(&n.addr).await?;
        }
        let transport = p2p.clone();
        let route: Vec<RouteHop> = nodes
            .iter()
            .map(|n| RouteHop {
                node: n.id.0,
                start: n.layers.start as u16,
                end: n.layers.end as u16,
            })
            .collect();
        let go = |s: usize| {
            let (p2p, transport, route) = (&p2p, &transport, &route);
            let (tokens, head) = (self.tokens, nodes[0].id);
            async move {
                let runs = (0..s).map(|i| async move {
                    if route.len() == 1 {
                        whole_stream(p2p, head, spec(i, tokens)).await
                    } else {
                        pipeline_stream(transport, route, spec(i, tokens)).await
                    }
                });
                futures::future::try_join_all(runs).await
            }
        };
        // Warm-up: two streams, not measured (their tokens count for bytes).
        let warm_up: u64 = go(2).await?.iter().map(|o| o.tokens).sum();
        let mut rows = Vec::new();
        for &s in streams {
            let cpu0: f64 = nodes.iter().map(Node::cpu_secs).sum();
            let t0 = Instant::now();
            let out = go(s).await?;
            let wall = t0.elapsed().as_secs_f64();
            let cpu: f64 = nodes.iter().map(Node::cpu_secs).sum::<f64>() - cpu0;
            let texts: Vec<String> = out.iter().map(|o| o.text.clone()).collect();
            match reference.get(&s) {
                Some(want) if want != &texts => {
                    bail!("{name} at {s} streams: outputs differ from the one node's")
                }
                Some(_) => {}
                None => {
                    reference.insert(s, texts);
                }
            }
            rows.push(Row {
                name: name.to_string(),
                hops: nodes.len(),
                streams: s,
                tokens: out.iter().map(|o| o.tokens).sum(),
                wall,
                cpu,
                ttft: out.iter().map(|o| o.ttft).collect(),
                gaps: out.iter().flat_map(|o| o.gaps.clone()).collect(),
                bytes_per_token_hop: 0.0,
            });
        }
        let total_tokens: u64 = rows.iter().map(|r| r.tokens).sum::<u64>();
        p2p.shutdown().await;
        let mut bytes = 0u64;
        let hops = nodes.len();
        for n in nodes {
            bytes += n.stop().await;
        }
        // Warm-up and every stream count share the nodes; bytes are reported
        // once at exit, so the per-token figure covers all of their tokens.
        let all = total_tokens + warm_up;
        for r in &mut rows {
            r.bytes_per_token_hop = if hops > 1 {
                bytes as f64 / all as f64 / hops as f64
            } else {
                0.0
            };
        }
        Ok(rows)
    }
}

fn print(rows: &[Row], reference: &BTreeMap<usize, Row>) {
    println!(
        "{:<22} {:>4} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10} {:>7} {:>7}",
        "config",
        "hops",
        "streams",
        "tokens",
        "tok/s",
        "ttft p50",
        "itl p50",
        "itl p99",
        "B/tok/hop",
        "tok/CPU-s",
        "vs 1",
        "CPU/1"
    );
    for r in rows {
        let one = reference.get(&r.streams);
        let ratio = one.map_or(f64::NAN, |o| r.tok_cpu() / o.tok_cpu());
        let speed = one.map_or(f64::NAN, |o| r.tok_s() / o.tok_s());
        println!(
            "{:<22} {:>4} {:>7} {:>7} {:>8.1} {:>7.0}ms {:>6.0}ms {:>6.0}ms {:>9.0} {:>10.1} {:>6.2}x {:>6.2}x",
            r.name,
            r.hops,
            r.streams,
            r.tokens,
            r.tok_s(),
            pct(&r.ttft, 0.5) * 1e3,
            pct(&r.gaps, 0.5) * 1e3,
            pct(&r.gaps, 0.99) * 1e3,
            r.bytes_per_token_hop,
            r.tok_cpu(),
            ratio,
            speed,
        );
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let bin = match cli.node_bin {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("no directory"))?
            .join("strata-node"),
    };
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p strata-node`",
            bin.display()
        );
    }
    let bench = Bench {
        bin,
        dir: tempfile::tempdir()?,
        tokens: cli.tokens,
    };
    let mut texts = BTreeMap::new();
    let mut rows = Vec::new();
    for &h in &cli.hops {
        let name = if h == 1 {
            "1 node (whole)".to_string()
        } else {
            format!("{h} hops, equal split")
        };
        eprintln!("running {name}");
        rows.extend(
            bench
                .run(
                    &name,
                    &equal_split(h),
                    &vec![1; h],
                    &cli.streams,
                    &mut texts,
                )
                .await?,
        );
    }
    let reference: BTreeMap<usize, Row> = rows
        .iter()
        .filter(|r| r.hops == 1)
        .map(|r| (r.streams, r.clone()))
        .collect();
    print(&rows, &reference);
    if let Some(r) = rows.iter().find(|r| r.hops == 3 && r.streams == 32) {
        if let Some(o) = reference.get(&32) {
            println!(
                "tok/CPU-s, 3 hops vs 1 node at 32 streams: {:.2} (goal >= 0.90)",
                r.tok_cpu() / o.tok_cpu()
            );
        }
    }
    if cli.hetero {
        let s = *cli.streams.iter().max().unwrap_or(&8);
        // Speeds of a 1-thread and a 2-thread engine, measured as whole nodes.
        let mut hetero = Vec::new();
        let mut speeds = Vec::new();
        for th in [1, 2] {
            eprintln!("measuring a whole node with {th} engine thread(s)");
            let r = bench
                .run(
                    &format!("1 node, {th} thread(s)"),
                    &equal_split(1),
                    &[th],
                    &[s],
                    &mut texts,
                )
                .await?;
            speeds.push(r[0].tok_s());
            hetero.extend(r);
        }
        // The 2-thread node's share in proportion to its speed (water-filling
        // without memory caps: layers ∝ speed).
        let fast = ((N_LAYERS as f64) * speeds[1] / (speeds[0] + speeds[1])).round() as usize;
        let fast = fast.clamp(1, N_LAYERS - 1);
        let splits = [
            ("2 hops 1t+2t, equal".to_string(), vec![0..15, 15..N_LAYERS]),
            (
                format!("2 hops 1t+2t, {}/{}", N_LAYERS - fast, fast),
                vec![0..N_LAYERS - fast, N_LAYERS - fast..N_LAYERS],
            ),
        ];
        for (name, split) in splits {
            eprintln!("running {name}");
            hetero.extend(bench.run(&name, &split, &[1, 2], &[s], &mut texts).await?);
        }
        println!();
        print(&hetero, &reference);
        let eq = hetero.iter().find(|r| r.name.ends_with("equal"));
        let prop = hetero.iter().rfind(|r| r.hops == 2);
        if let (Some(eq), Some(prop)) = (eq, prop) {
            println!(
                "heterogeneous at {s} streams: speed-proportional split {:.1} tok/s vs equal split {:.1} tok/s: {:.2}x",
                prop.tok_s(),
                eq.tok_s(),
                prop.tok_s() / eq.tok_s()
            );
        }
    }
    Ok(())
}
