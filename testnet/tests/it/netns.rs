//! A private swarm across machines, with network namespaces as the machines.
//!
//! Inside a new user and network namespace (nothing on the host is touched;
//! a new PID namespace makes everything started there die with it), the
//! "chain host" owns a bridge at 10.78.0.1 and runs `strata-testnet up
//! --listen 10.78.0.1 --nodes 0 --verifiers 0`; a second network namespace,
//! joined to the bridge by a veth pair, is the "joining machine" at
//! 10.78.0.2. There the operator's commands run as the testnet printed them:
//! `strata keygen`, `strata faucet --to` on the chain host, then
//! `strata-node --url http://10.78.0.1:8899 --relayer <multiaddr>` listening
//! on 0.0.0.0. The node must register only its LAN address, the gateway must
//! hear of it on gossip, and a paid chat completion through the gateway's
//! HTTP must be served by it, its receipt batched on-chain by the relayer and
//! its voucher redeemed. The chain's cheatcodes must be locked.
//!
//! The namespaced part runs in this same test binary, re-executed inside the
//! namespaces (`inside_the_namespaces`), so that every socket it opens is on
//! the chain host. Where namespaces cannot be made, the test says why and
//! returns.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use strata_chain::rpc::ChainClient;
use strata_chain::{keys, Signer};
use strata_test_utils::{wait_for, workspace_binary};
use strata_testnet::network::DEMO_API_KEY;
use strata_testnet::{TestnetManifest, MODEL_NAME};
use strata_wire::api::{ReceiptView, SettlementView};

/// Set in the re-executed copy that runs inside the namespaces; names the
/// working directory.
const INSIDE: &str = "STRATA_NETNS_DIR";
const TESTNET_BIN: &str = "STRATA_NETNS_TESTNET";
const NODE_BIN: &str = "STRATA_NETNS_NODE";
const CLI_BIN: &str = "STRATA_NETNS_CLI";
/// The line the inner copy prints last: its test really ran and passed.
const DONE: &str = "PRIVATE SWARM OK";

const CHAIN_HOST: &str = "10.78.0.1";
const JOINER: &str = "10.78.0.2";

/// A user namespace (root inside, our own uid outside), a network namespace
/// (the chain host), a PID namespace with its own /proc (so `nsenter -t`
/// names our children, and all of them die with its first process), and
/// that process killed when `unshare` is.
const UNSHARE: &[&str] = &[
    "--user",
    "--map-root-user",
    "--net",
    "--pid",
    "--fork",
    "--mount-proc",
    "--kill-child",
];

/// The whole namespaced run, set-up to last check.
const INSIDE_DEADLINE: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_another_machine_joins_a_private_swarm_serves_and_is_paid() {
    if std::env::var_os(INSIDE).is_some() {
        return;
    }
    let testnet = PathBuf::from(env!("CARGO_BIN_EXE_strata-testnet"));
    let node = workspace_binary("strata-node", "strata-node");
    refusals(&testnet, &node);
    if let Some(why) = namespaces_unavailable() {
        println!("SKIPPED private swarm test: {why}");
        return;
    }
    let model = strata_engine::model_cache_dir().join(strata_engine::DEFAULT_MODEL_FILE);
    assert!(
        model.exists(),
        "the joining machine has no network to fetch the model: run scripts/fetch-model ({} is missing)",
        model.display()
    );
    let cli = workspace_binary("strata-cli", "strata");
    let _turn = crate::one_at_a_time().await;

    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut inside = Command::new("unshare");
    inside
        .args(UNSHARE)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "netns::inside_the_namespaces",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INSIDE, dir.path())
        .env(TESTNET_BIN, &testnet)
        .env(NODE_BIN, &node)
        .env(CLI_BIN, &cli);
    let mut inside = Proc::spawn("inside", inside);
    let status = loop {
        if let Some(status) = inside.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < INSIDE_DEADLINE,
            "the namespaced run took over {INSIDE_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let output = inside.drain();
    assert!(status.success(), "the namespaced run failed: {status}");
    assert!(
        output.iter().any(|l| l.contains(DONE)),
        "the namespaced test did not run"
    );
    println!("private swarm test: {:.1?} in all", started.elapsed());
}

/// What must be refused before anything listens: every interface without
/// its own flag, cheating nodes on a chain other machines reach, and a node
/// cheating against a LAN chain (the node's own rule, unchanged).
fn refusals(testnet: &Path, node: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let up = |extra: &[&str]| {
        let mut cmd = Command::new(testnet);
        cmd.args(["up", "--chain-only", "--exit-after-setup"])
            .args(["--rpc-port", "0", "--ws-port", "0", "--state-dir"])
            .arg(dir.path())
            .args(extra);
        run_to_end(cmd)
    };
    let any = up(&["--listen", "0.0.0.0"]);
    assert!(
        !any.status.success() && stderr(&any).contains("--listen-any"),
        "{}",
        stderr(&any)
    );
    let cheaters = up(&["--listen", CHAIN_HOST, "--cheaters", "1"]);
    assert!(
        !cheaters.status.success() && stderr(&cheaters).contains("loopback"),
        "{}",
        stderr(&cheaters)
    );
    assert!(
        !dir.path().join("testnet.json").exists(),
        "nothing was set up"
    );
    let mut cheat = Command::new(node);
    cheat
        .arg("--keypair")
        .arg(dir.path().join("cheater.json"))
        .arg("--state-dir")
        .arg(dir.path().join("cheater"))
        .args(["--url", &format!("http://{CHAIN_HOST}:8899")])
        .args(["--cheat", "noise", "--quiet"]);
    let cheat = run_to_end(cheat);
    assert!(
        !cheat.status.success() && stderr(&cheat).contains("only against a local chain"),
        "{}",
        stderr(&cheat)
    );
}

/// Why this machine cannot make the namespaces, if it cannot.
fn namespaces_unavailable() -> Option<String> {
    for (tool, args) in [("ip", &["-V"][..]), ("nsenter", &["--version"][..])] {
        if let Err(e) = Command::new(tool).args(args).output() {
            return Some(format!("`{tool}` cannot run here ({e})"));
        }
    }
    match Command::new("unshare").args(UNSHARE).arg("true").output() {
        Err(e) => Some(format!("`unshare` cannot run here ({e})")),
        Ok(out) if !out.status.success() => Some(format!(
            "`unshare -rn` cannot make user and network namespaces here ({}: {})",
            out.status,
            stderr(&out).trim()
        )),
        Ok(_) => None,
    }
}

/// The run inside the namespaces (a no-op in an ordinary test run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_the_namespaces() {
    let Some(dir) = std::env::var_os(INSIDE).map(PathBuf::from) else {
        return;
    };
    let bin = |var: &str| PathBuf::from(std::env::var_os(var).expect(var));
    let (testnet, node, cli) = (bin(TESTNET_BIN), bin(NODE_BIN), bin(CLI_BIN));
    let t0 = Instant::now();
    let joiner = Machine::join_bridge();
    println!("{:>5.1?} two machines on one bridge", t0.elapsed());

    // The chain host: everything but nodes and verifiers, on its LAN address.
    let state = dir.join("chain-host");
    let mut up = Command::new(&testnet);
    up.args([
        "up",
        "--listen",
        CHAIN_HOST,
        "--nodes",
        "0",
        "--verifiers",
        "0",
    ])
    .arg("--state-dir")
    .arg(&state);
    let mut chain_host = Proc::spawn("chain host", up);
    let join_line = chain_host.wait_line("there:  strata-node", Duration::from_secs(120));
    let manifest = TestnetManifest::read(&state).unwrap();
    let relayer = manifest
        .relayer_multiaddrs
        .first()
        .expect("the relayer's multiaddr")
        .clone();
    assert!(
        relayer.starts_with(&format!("/ip4/{CHAIN_HOST}/tcp/4100/p2p/")),
        "{relayer}"
    );
    let rpc_url = format!("http://{CHAIN_HOST}:8899");
    assert_eq!(manifest.rpc_url, rpc_url);
    assert!(
        join_line.contains(&format!("--url {rpc_url} --relayer {relayer}")),
        "{join_line}"
    );
    println!("{:>5.1?} testnet up on {CHAIN_HOST}", t0.elapsed());

    // The operator's commands, as printed: a key there, the faucet here.
    let key_path = dir.join("joiner").join("node.json");
    std::fs::create_dir_all(dir.join("joiner")).unwrap();
    let mut keygen = joiner.command(&cli);
    keygen.arg("keygen").arg("--outfile").arg(&key_path);
    assert_success(run_to_end(keygen));
    let key = keys::read(&key_path).unwrap();
    let mut faucet = Command::new(&cli);
    faucet.arg("faucet").arg("--testnet-dir").arg(&state).args([
        "--to",
        &key.pubkey().to_string(),
        "--sol",
        "10",
        "--tokens",
        "2000",
    ]);
    assert_success(run_to_end(faucet));

    let mut start = joiner.command(&node);
    start
        .arg("--keypair")
        .arg(&key_path)
        .args(["--url", &rpc_url, "--relayer", &relayer])
        .args(["--listen", "/ip4/0.0.0.0/tcp/4001", "--stake", "1000"])
        .args(["--max-concurrent", "4", "--quiet", "--state-dir"])
        .arg(dir.join("joiner").join("state"));
    let mut joined = Proc::spawn("joining machine", start);
    joined.wait_line("serving:", Duration::from_secs(180));
    println!("{:>5.1?} the joining node serves", t0.elapsed());

    // It registered what the chain host can dial, and nothing else.
    let chain = ChainClient::new(&rpc_url).unwrap();
    let record = chain
        .node(&key.pubkey())
        .await
        .unwrap()
        .expect("registered");
    assert!(!record.multiaddrs.is_empty());
    for a in &record.multiaddrs {
        assert!(
            a.starts_with(&format!("/ip4/{JOINER}/tcp/4001/p2p/")),
            "{a}"
        );
    }
    assert!(record.stake > 0);

    // The gateway hears of it on gossip, and it serves a paid completion.
    let gateway = format!("http://{CHAIN_HOST}:8080");
    let http = reqwest::Client::new();
    wait_for(
        Duration::from_secs(60),
        "the gateway to hear of the node",
        || async {
            let Ok(r) = http.get(format!("{gateway}/v1/models")).send().await else {
                return false;
            };
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            v["data"]
                .as_array()
                .is_some_and(|d| d.iter().any(|m| m["id"] == MODEL_NAME))
        },
    )
    .await;
    let response = http
        .post(format!("{gateway}/v1/chat/completions"))
        .bearer_auth(DEMO_API_KEY)
        .json(&serde_json::json!({
            "model": MODEL_NAME,
            "messages": [{"role": "user", "content": "Name a colour."}],
            "max_tokens": 8,
            "temperature": 0
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["strata"]["node"], key.pubkey().to_string(), "{body}");
    assert!(body["strata"]["price"].as_u64().unwrap_or(0) > 0, "{body}");
    let task_id = body["strata"]["task_id"].as_str().unwrap().to_string();
    println!("{:>5.1?} served task {task_id}", t0.elapsed());

    // Its receipt reaches the relayer and a batch on-chain; its voucher is redeemed.
    let explorer = format!("http://{CHAIN_HOST}:8788");
    let node_hex = hex::encode(key.pubkey().to_bytes());
    wait_for(
        Duration::from_secs(60),
        "the receipt in a posted batch",
        || async {
            let Ok(r) = http
                .get(format!("{explorer}/v1/receipts/{task_id}"))
                .send()
                .await
            else {
                return false;
            };
            let Ok(view) = r.json::<ReceiptView>().await else {
                return false;
            };
            assert_eq!(view.node, node_hex);
            view.batch.is_some_and(|b| b.post_signature.is_some())
        },
    )
    .await;
    wait_for(
        Duration::from_secs(60),
        "the node's voucher redeemed",
        || async {
            let Ok(r) = http.get(format!("{explorer}/v1/settlements")).send().await else {
                return false;
            };
            let list: Vec<SettlementView> = r.json().await.unwrap_or_default();
            list.iter()
                .any(|s| s.node == key.pubkey().to_string() && s.paid > 0)
        },
    )
    .await;
    println!("{:>5.1?} receipt batched, voucher redeemed", t0.elapsed());

    // What a machine on the LAN must not do: rewrite accounts on the chain.
    let cheatcode: serde_json::Value = http
        .post(&rpc_url)
        .json(&serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "surfnet_setTokenAccount",
            "params": [key.pubkey().to_string(), manifest.mint, {"amount": 1}]
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refusal = cheatcode["error"]["message"].as_str().unwrap_or_default();
    assert!(refusal.contains("disabled"), "{cheatcode}");

    drop(joined);
    drop(chain_host);
    println!("{DONE} in {:.1?}", t0.elapsed());
}

/// A second machine: its own network namespace, inside ours, joined to the
/// chain host's bridge by a veth pair.
struct Machine {
    holder: Child,
}

impl Machine {
    /// Makes the chain host's bridge (10.78.0.1/24) and a machine at
    /// 10.78.0.2 on it.
    fn join_bridge() -> Machine {
        ip(&["link", "set", "lo", "up"]);
        ip(&["link", "add", "br0", "type", "bridge"]);
        ip(&["addr", "add", &format!("{CHAIN_HOST}/24"), "dev", "br0"]);
        ip(&["link", "set", "br0", "up"]);
        // A process that only holds the namespace; `nsenter` runs the rest.
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "3600"])
            .spawn()
            .expect("unshare --net");
        let machine = Machine { holder };
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        let pid = machine.holder.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ns(&pid).is_none() || ns(&pid) == ns("self") {
            assert!(Instant::now() < deadline, "the joining machine's namespace");
            std::thread::sleep(Duration::from_millis(10));
        }
        ip(&[
            "link",
            "add",
            "veth-joiner",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &pid,
        ]);
        ip(&["link", "set", "veth-joiner", "master", "br0"]);
        ip(&["link", "set", "veth-joiner", "up"]);
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", &format!("{JOINER}/24"), "dev", "eth0"],
            &["link", "set", "eth0", "up"],
        ] {
            let mut cmd = machine.command(Path::new("ip"));
            cmd.args(args);
            assert_success(run_to_end(cmd));
        }
        machine
    }

    /// `program` to run on this machine.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.holder.id().to_string(), "-n"])
            .arg(program);
        cmd
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// `ip <args>` on the chain host.
fn ip(args: &[&str]) {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    assert_success(run_to_end(cmd));
}

fn run_to_end(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn assert_success(out: Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A child process whose output lines are printed, with its name, as they
/// come, and kept; killed when dropped.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let (tx, lines) = mpsc::channel();
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    println!("[{name}] {line}");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line containing `needle`, waiting up to `timeout`; panics
    /// if the process exits or the time passes first.
    fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the process exited before printing {needle:?}")
                }
            }
        }
        panic!("no line with {needle:?} within {timeout:?}")
    }

    /// Every line printed so far (after the process exited: all of them).
    fn drain(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
