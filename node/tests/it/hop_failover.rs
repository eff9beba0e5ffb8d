//! Failover and payment of a pipeline on a real local chain, with real node
//! processes: four `strata-node` binaries hold blocks 0..10, 10..20 (two
//! replicas) and 20..30 of the model. A task (seeded sampling) streams over the route
//! through the first replica; after a few tokens that replica is killed
//! with SIGKILL. The client sees one continuous stream, token for token the
//! whole model's; it pays each live hop of the route that finished the task
//! once for its cells, the dead hop nothing; the hops' receipts reach the
//! relayer, which redeems the vouchers on chain, and every balance comes
//! out exact to the base unit.
//!
//! Then the same task again over a second replica, which is stopped with
//! SIGSTOP mid-stream: it keeps its connections open, so no request fails
//! and only the client's stall detector can tell; the task resumes on a
//! third replica, streams the whole model's tokens and is charged once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use strata_chain::accounts::Channel;
use strata_chain::fees::protocol_fee;
use strata_chain::{ix, keys, pda, Keypair, Pubkey, Signer};
use strata_engine::{ChatMessage, Engine, GenerateRequest};
use strata_p2p::{NodeIdentity, P2pConfig, P2pHandle};
use strata_pipeline::billing::hop_price;
use strata_pipeline::client::{self, Payer, PipelineJob, SegmentRun, Served, Stall};
use strata_relayer::{Relayer, RelayerConfig};
use strata_test_utils::chain::LocalChain;
use strata_test_utils::wait_for;
use strata_wire::hop::RouteHop;
use strata_wire::protocols::ALL_PROTOCOLS;
use strata_wire::task::{ChatTurn, Finish, Prompt, Sampling, TaskSpec};
use strata_wire::{Receipt, Voucher};

const MODEL: &str = "SmolLM2-135M-Instruct";
const PRICE: u64 = 10;
/// Whole tokens each node stakes (the local chain's minimum).
const STAKE_TOKENS: &str = "100";
const SOL: u64 = 1_000_000_000;
const DEPOSIT: u64 = 1_000_000;
const PROMPT: &str = "Tell me about the history of bridges.";
const MAX_TOKENS: u32 = 32;
/// Tokens streamed before the middle hop is killed.
const KILL_AFTER_BYTES: usize = 12;

/// A node process; killed (SIGKILL) when dropped if still running.
struct NodeProcess {
    child: Child,
    key: Keypair,
    addrs: Vec<String>,
    /// Its Prometheus endpoint.
    metrics: String,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_node(
    dir: &Path,
    key: Keypair,
    name: &str,
    url: &str,
    relayer: &str,
    layers: &str,
) -> NodeProcess {
    let keypair = dir.join(format!("{name}.json"));
    keys::write_new(&keypair, &key).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata-node"))
        .arg("--keypair")
        .arg(&keypair)
        .args(["--url", url, "--layers", layers, "--relayer", relayer])
        .args(["--bootstrap", relayer, "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--price", &PRICE.to_string(), "--stake", STAKE_TOKENS])
        .args(["--max-concurrent", "2", "--max-tokens", "64", "--quiet"])
        .args(["--metrics", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(dir.join(name))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn strata-node");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut addrs, mut metrics) = (Vec::new(), String::new());
    while addrs.is_empty() || metrics.is_empty() {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("{name} exited before serving"))
            .expect("read stdout");
        if let Some((_, a)) = line.split_once("listening on ") {
            addrs = a.split(", ").map(str::to_string).collect();
        }
        if let Some(url) = line.strip_prefix("metrics: ") {
            metrics = url.to_string();
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    NodeProcess {
        child,
        key,
        addrs,
        metrics,
    }
}

/// A counter or gauge of a node's `/metrics`, read with a Prometheus
/// text-format parser.
async fn scrape(node: &NodeProcess, name: &str) -> f64 {
    strata_test_utils::scrape(&node.metrics)
        .await
        .value(name, &[])
}

/// The client's vouchers: a running total per node, as a gateway keeps.
struct Vouchers {
    client: Keypair,
    totals: Mutex<HashMap<[u8; 32], u64>>,
}

impl Payer for Vouchers {
    type Error = std::convert::Infallible;
    type Turn = ();

    async fn pay(&self, node: [u8; 32], price: u64) -> Result<(Voucher, ()), Self::Error> {
        let mut totals = self.totals.lock().unwrap();
        let total = totals.entry(node).or_default();
        *total += price;
        Ok((Voucher::sign(&self.client, &Pubkey::from(node), *total), ()))
    }
}

fn hop(node: &NodeProcess, start: u16, end: u16) -> RouteHop {
    RouteHop {
        node: node.key.pubkey().to_bytes(),
        start,
        end,
    }
}

/// Seeded sampling: the resumed route's last hop must continue the
/// sampler at the step the dead route stopped at, or the tokens differ.
fn sampling() -> Sampling {
    Sampling {
        temperature: 0.8,
        top_p: 0.95,
        top_k: 40,
        seed: 11,
    }
}

/// The whole model's tokens for the prompt, as a whole-model node would
/// generate them (same template, same stop tokens, same sampler).
fn whole_model_tokens() -> Vec<u32> {
    let path = strata_engine::model_cache_dir().join(strata_engine::DEFAULT_MODEL_FILE);
    let engine = Engine::load(&path).unwrap();
    let prompt = engine
        .chat_prompt(&[ChatMessage::new("user", PROMPT)])
        .unwrap();
    let req = GenerateRequest {
        stop_tokens: engine.end_of_turn_tokens(),
        sampling: strata_node::openings::sampling_params(&sampling()),
        ..GenerateRequest::greedy(prompt, MAX_TOKENS as usize)
    };
    strata_engine::generate(&engine.model, req).unwrap().tokens
}

/// Checks one continuous stream of exactly the whole model's tokens over
/// two segments, the first broken mid-stream; returns the first.
fn one_failover<'a>(served: &'a Served, streamed: &str, expected: &[u32]) -> &'a SegmentRun {
    assert_eq!(served.tokens, expected, "the tokens are the whole model's");
    assert_eq!(
        streamed, served.text,
        "what streamed is the whole text, once"
    );
    assert_eq!(served.segments.len(), 2, "one failover");
    let first = &served.segments[0];
    assert!(first.failure.is_some());
    assert!(
        first.tokens_to > 0 && first.tokens_to < expected.len() as u32,
        "the route broke mid-stream ({} of {} tokens)",
        first.tokens_to,
        expected.len()
    );
    first
}

/// Prompt and generated tokens a served task bills, and the cells its hop
/// receipts bill in all.
fn billed_and_cells(served: &Served, receipts: &[Receipt]) -> (u64, u64) {
    let billed = u64::from(served.usage.prompt_tokens) + u64::from(served.usage.completion_tokens);
    let cells = receipts
        .iter()
        .map(|r| r.body.hop.as_ref().unwrap().cells)
        .sum();
    (billed, cells)
}

/// Waits until the relayer has redeemed each receipt's voucher on chain.
async fn wait_redeemed(chain: &LocalChain, client: &Pubkey, receipts: &[Receipt]) {
    for r in receipts {
        let channel = pda::channel(client, &Pubkey::from(r.body.node));
        let want = r.body.voucher.cumulative;
        let rpc = &chain.rpc;
        wait_for(
            Duration::from_secs(60),
            "the voucher is redeemed",
            || async move {
                let c: Option<Channel> = rpc.account(&channel, "channel").await.unwrap();
                c.is_some_and(|c| c.redeemed == want)
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_or_stopped_middle_hop_resumes_one_stream_and_charges_once() {
    let expected = tokio::task::spawn_blocking(whole_model_tokens)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain = LocalChain::start(strata_chain::params::local()).await;
    let relayer_key = Keypair::new();
    chain
        .rpc
        .airdrop(&relayer_key.pubkey(), 100 * SOL)
        .await
        .unwrap();
    chain
        .rpc
        .send(
            &[ix::add_relayer(
                &chain.admin.pubkey(),
                &relayer_key.pubkey(),
            )],
            &chain.admin,
            &[],
        )
        .await
        .unwrap();
    let relayer = Relayer::start(RelayerConfig {
        rpc_url: chain.url.clone(),
        keypair: relayer_key,
        state_dir: dir.path().join("relayer"),
        http_addr: ([127, 0, 0, 1], 0).into(),
        p2p: P2pConfig::local(),
        batch_interval: Duration::from_millis(300),
        // Rewards are not what this test is about.
        reward_interval: Duration::from_secs(3600),
        reward_per_work_unit: 0,
    })
    .await
    .unwrap();
    let relayer_addr = relayer.p2p_addrs()[0].clone();

    // Each node gets exactly its stake in tokens: after staking its token
    // account is empty, so what it holds at the end is what it earned.
    let stake = strata_chain::amount::tokens(STAKE_TOKENS).unwrap();
    let mut nodes = Vec::new();
    for (name, layers) in [
        ("a", "0..10"),
        ("b", "10..20"),
        ("b2", "10..20"),
        ("b3", "10..20"),
        ("c", "20..30"),
    ] {
        let key = Keypair::new();
        chain.fund(&key, stake).await;
        let n = spawn_node(dir.path(), key, name, &chain.url, &relayer_addr, layers);
        nodes.push(n);
    }
    let [a, b, b2, b3, c] = &mut nodes[..] else {
        unreachable!()
    };

    let client_key = chain.client(DEPOSIT).await;
    let p2p: P2pHandle = {
        let config = P2pConfig::local().with_protocols(ALL_PROTOCOLS);
        let (p2p, _events) = strata_p2p::start(NodeIdentity::generate(), config)
            .await
            .unwrap();
        for n in [&*a, &*b, &*b2, &*b3, &*c] {
            p2p.dial(&n.addrs[0]).await.unwrap();
        }
        p2p
    };
    let job = PipelineJob {
        spec: TaskSpec {
            task_id: rand::random(),
            client: client_key.pubkey().to_bytes(),
            model: MODEL.into(),
            prompt: Prompt::Chat(vec![ChatTurn {
                role: "user".into(),
                content: PROMPT.into(),
            }]),
            max_tokens: MAX_TOKENS,
            sampling: sampling(),
            stop: vec![],
        },
        routes: vec![
            vec![hop(a, 0, 10), hop(b, 10, 20), hop(c, 20, 30)],
            vec![hop(a, 0, 10), hop(b2, 10, 20), hop(c, 20, 30)],
        ],
        model_hash: hex::decode(strata_engine::DEFAULT_MODEL_SHA256)
            .unwrap()
            .try_into()
            .unwrap(),
        n_layers: 30,
        max_failovers: 2,
        // No announcements here: the stall window is its floor (2 s).
        layer_ms: HashMap::new(),
        stall: Stall::default(),
    };

    // Stream; once some text has arrived, SIGKILL the middle hop.
    let mut streamed = String::new();
    let mut killed = false;
    let served = client::serve(&p2p, &job, |t| {
        streamed.push_str(t);
        if !killed && streamed.len() >= KILL_AFTER_BYTES {
            b.child.kill().expect("SIGKILL the middle hop");
            killed = true;
        }
        ControlFlow::Continue(())
    })
    .await
    .expect("the task completes through the replica");
    assert!(killed, "the stream was long enough to kill the hop mid-way");
    b.child.wait().unwrap();

    // One continuous stream, exactly the whole model's tokens.
    let first = one_failover(&served, &streamed, &expected);
    let expected_finish = if expected.len() as u32 == MAX_TOKENS {
        Finish::Length
    } else {
        Finish::Stop
    };
    assert_eq!(served.finish, expected_finish);
    assert_eq!(served.usage.completion_tokens, expected.len() as u32);

    // Pay: each hop of the completing route its cells, nobody else.
    let payer = Vouchers {
        client: client_key.insecure_clone(),
        totals: Mutex::new(HashMap::new()),
    };
    let receipts = client::settle(&p2p, &served, |_| PRICE, &payer)
        .await
        .expect("every hop settles");
    let (billed, cells) = billed_and_cells(&served, &receipts);
    assert_eq!(cells, billed * 30, "every (layer, token) cell is paid once");
    let paid_nodes: Vec<[u8; 32]> = receipts.iter().map(|r| r.body.node).collect();
    let b_key = b.key.pubkey().to_bytes();
    assert!(!paid_nodes.contains(&b_key), "the dead hop signs nothing");
    assert_eq!(
        paid_nodes,
        vec![
            a.key.pubkey().to_bytes(),
            b2.key.pubkey().to_bytes(),
            c.key.pubkey().to_bytes()
        ]
    );
    let total: u64 = receipts.iter().map(|r| r.body.price).sum();
    assert_eq!(total, 3 * hop_price(PRICE, billed * 10, 30));
    assert!(
        total <= billed * PRICE && total + 3 > billed * PRICE,
        "the client pays what one whole-model node would, up to rounding ({total} vs {})",
        billed * PRICE
    );
    // The receipts link up: what hop k handed on is what hop k+1 received.
    for w in receipts.windows(2) {
        let (h0, h1) = (w[0].body.hop.unwrap(), w[1].body.hop.unwrap());
        assert_eq!(h0.output_states, h1.input_states);
        assert_eq!(h0.next, w[1].body.node);
        assert_eq!(h1.prev, w[0].body.node);
    }

    // Each paid hop counts its voucher and what it paid, as its metrics say.
    for (r, n) in receipts.iter().zip([&*a, &*b2, &*c]) {
        assert_eq!(scrape(n, "strata_node_vouchers_accepted").await, 1.0);
        assert_eq!(
            scrape(n, "strata_node_charged_base_units").await,
            r.body.price as f64
        );
        assert!(scrape(n, "strata_node_hop_bytes_sent").await > 0.0);
        assert_eq!(scrape(n, "strata_node_sequences_active").await, 0.0);
    }

    let scraped = strata_test_utils::scrape(&b2.metrics).await;
    for name in strata_test_utils::dashboard_metrics("strata_node_") {
        assert!(
            scraped.has(&name),
            "the dashboard plots {name}, a hop has none"
        );
    }

    // Each paid hop kept what an audit of its part will re-run.
    for (r, name) in receipts.iter().zip(["a", "b2", "c"]) {
        let kept = dir
            .path()
            .join(name)
            .join("archive")
            .join(format!("{}.hop", hex::encode(r.body.task_id)));
        assert!(
            kept.exists(),
            "hop {name} archived its part at {}",
            kept.display()
        );
    }
    eprintln!(
        "failover after {} of {} tokens; {} receipts, {cells} cells, {total} paid (one node: {})",
        first.tokens_to,
        expected.len(),
        receipts.len(),
        billed * PRICE
    );

    // The relayer redeems every voucher on chain, exactly once.
    let client_pk = client_key.pubkey();
    wait_redeemed(&chain, &client_pk, &receipts).await;
    let escrow = chain.rpc.escrow(&client_pk).await.unwrap().unwrap();
    assert_eq!(
        escrow.balance,
        DEPOSIT - total,
        "the escrow paid exactly once"
    );
    for r in &receipts {
        let node = Pubkey::from(r.body.node);
        let ata = pda::associated_token(&node, &chain.mint.pubkey());
        let earned = chain.rpc.token_balance(&ata).await.unwrap();
        let fee = protocol_fee(r.body.price, chain.params.protocol_fee_bps);
        assert_eq!(
            earned,
            r.body.price - fee,
            "node {node} earned its price less the fee"
        );
    }
    let dead = pda::channel(&client_pk, &Pubkey::from(b_key));
    let none: Option<Channel> = chain.rpc.account(&dead, "channel").await.unwrap();
    assert!(none.is_none(), "the dead hop was never paid");

    // The same task over b2, which is stopped (not killed) mid-stream.
    let stalled = PipelineJob {
        spec: TaskSpec {
            task_id: rand::random(),
            ..job.spec.clone()
        },
        routes: vec![
            vec![hop(a, 0, 10), hop(b2, 10, 20), hop(c, 20, 30)],
            vec![hop(a, 0, 10), hop(b3, 10, 20), hop(c, 20, 30)],
        ],
        ..job.clone()
    };
    let b2_pid = b2.child.id().to_string();
    let mut streamed = String::new();
    let mut stopped = false;
    let started = std::time::Instant::now();
    let served = client::serve(&p2p, &stalled, |t| {
        streamed.push_str(t);
        if !stopped && streamed.len() >= KILL_AFTER_BYTES {
            let sent = Command::new("kill").args(["-STOP", &b2_pid]).status();
            assert!(sent.is_ok_and(|s| s.success()), "SIGSTOP the middle hop");
            stopped = true;
        }
        ControlFlow::Continue(())
    })
    .await
    .expect("the stall is noticed and the task completes through b3");
    let took = started.elapsed();
    assert!(
        stopped,
        "the stream was long enough to stop the hop mid-way"
    );
    let first = one_failover(&served, &streamed, &expected);
    assert!(
        first
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("stalled")),
        "the stall detector broke the route: {:?}",
        first.failure
    );
    // Far sooner than the transport's own timeout (a minute).
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let stalled_receipts = client::settle(&p2p, &served, |_| PRICE, &payer)
        .await
        .expect("every live hop settles");
    let (billed, stalled_cells) = billed_and_cells(&served, &stalled_receipts);
    assert_eq!(stalled_cells, billed * 30, "every cell is paid once");
    let paid: Vec<[u8; 32]> = stalled_receipts.iter().map(|r| r.body.node).collect();
    assert_eq!(
        paid,
        vec![
            a.key.pubkey().to_bytes(),
            b3.key.pubkey().to_bytes(),
            c.key.pubkey().to_bytes()
        ],
        "the stopped hop is not paid"
    );
    let stalled_total: u64 = stalled_receipts.iter().map(|r| r.body.price).sum();
    assert_eq!(stalled_total, 3 * hop_price(PRICE, billed * 10, 30));
    wait_redeemed(&chain, &client_pk, &stalled_receipts).await;
    let escrow = chain.rpc.escrow(&client_pk).await.unwrap().unwrap();
    assert_eq!(
        escrow.balance,
        DEPOSIT - total - stalled_total,
        "each task paid exactly once"
    );
    let b2_channel = pda::channel(&client_pk, &b2.key.pubkey());
    let b2_paid: Channel = chain
        .rpc
        .account(&b2_channel, "channel")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        b2_paid.redeemed, receipts[1].body.voucher.cumulative,
        "the stopped hop is paid for the first task only"
    );
    eprintln!(
        "stall noticed after {} of {} tokens; task took {} ms; {stalled_cells} cells, {stalled_total} paid",
        first.tokens_to,
        expected.len(),
        took.as_millis()
    );
    relayer.shutdown().await;
}
