//! Crash safety: the `strata-relayer` binary is killed with SIGKILL again and
//! again while receipts arrive and batches and redemptions are under way,
//! and restarted on the same state directory. At the end every acknowledged
//! receipt is stored and in a posted batch whose on-chain root its proof
//! verifies against, each receipt is in exactly one on-chain batch, and each
//! channel is redeemed exactly to its latest cumulative: token balances add
//! up to the unit, so nothing was paid twice.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;
use strata_chain::accounts::Channel;
use strata_chain::{keys, pda, Signer};
use strata_wire::api::StatsView;

/// Starts the relayer binary and returns it with its HTTP base URL.
fn spawn(url: &str, keypair: &Path, state: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata-relayer"))
        .args(["--url", url, "--keypair"])
        .arg(keypair)
        .arg("--state-dir")
        .arg(state)
        .args([
            "--http",
            "127.0.0.1:0",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--batch-interval",
            "0.2",
            "--reward-interval",
            "5",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn strata-relayer");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("relayer printed its endpoints")
            .expect("read stdout");
        if let Some(url) = line.strip_prefix("http ") {
            break url.to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

fn kill9(mut child: Child) {
    // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no shutdown.
    child.kill().expect("kill -9");
    child.wait().expect("reap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_receipt_and_pays_nothing_twice() {
    let env = setup(2, 2, 60).await;
    let dir = tempfile::tempdir().unwrap();
    let keypair = dir.path().join("relayer.json");
    keys::write_new(&keypair, &env.relayer).unwrap();
    let state = dir.path().join("state");
    let http = http();

    let mut acked = Vec::new();
    let mut latest: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    let mut task = 0u64;
    // Delays (ms) after the last receipt of a round before SIGKILL: at once,
    // inside the first batch round, during redemption, later.
    let kill_after = [0u64, 150, 250, 400, 700, 60, 320];
    for (round, pause) in kill_after.iter().enumerate() {
        let (child, base) = spawn(&env.url, &keypair, &state);
        for i in 0..4 {
            task += 1;
            let (c, n) = ((round + i) % 2, i / 2);
            // Multiples of 20 make the 5 % fee exact, so balances are exact.
            let price = 20 * (1 + (task % 3));
            let cumulative = latest.get(&(c, n)).copied().unwrap_or(0) + price;
            let r = receipt(&env.nodes[n], &env.clients[c], task, price, cumulative);
            let (status, body) = post(&http, &base, r.encode()).await;
            assert_eq!(status, 200, "{body}");
            latest.insert((c, n), cumulative);
            acked.push(r);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        tokio::time::sleep(Duration::from_millis(*pause)).await;
        kill9(child);
    }

    let (child, base) = spawn(&env.url, &keypair, &state);
    wait_for(
        60,
        "every acknowledged receipt in a posted batch",
        || async {
            let mut ok = true;
            for r in &acked {
                let v = get_view(&http, &base, &r.body.task_id).await;
                ok &= v.is_some_and(|v| v.batch.is_some_and(|b| b.status == "posted"));
            }
            ok
        },
    )
    .await;
    let channel =
        |c: usize, n: usize| pda::channel(&env.clients[c].pubkey(), &env.nodes[n].pubkey());
    wait_for(
        60,
        "every channel redeemed to its latest voucher",
        || async {
            let mut ok = true;
            for (&(c, n), &cum) in &latest {
                let ch: Option<Channel> = env.rpc.account(&channel(c, n), "channel").await.unwrap();
                ok &= ch.is_some_and(|ch| ch.redeemed == cum);
            }
            ok
        },
    )
    .await;

    for r in &acked {
        let view = get_view(&http, &base, &r.body.task_id).await.unwrap();
        env.assert_proof_on_chain(&view).await;
    }
    // Each receipt is in exactly one on-chain batch.
    let stats: StatsView = get_json(&http, &base, "/v1/stats").await;
    assert_eq!(stats.receipts, acked.len() as u64);
    assert_eq!(stats.batched, acked.len() as u64);
    let config = env.rpc.config().await.unwrap();
    assert_eq!(config.total_tasks, acked.len() as u64);

    // Money: exactly the latest cumulative left each escrow; each node got
    // exactly 95 % of what its channels redeemed; the fee went to the pool.
    let mut per_client = [0u64; 2];
    let mut per_node = [0u64; 2];
    for (&(c, n), &cum) in &latest {
        per_client[c] += cum;
        per_node[n] += cum;
    }
    for (client, spent) in env.clients.iter().zip(per_client) {
        assert_eq!(env.escrow_balance(&client.pubkey()).await, DEPOSIT - spent);
    }
    for (node, earned) in env.nodes.iter().zip(per_node) {
        assert_eq!(
            env.node_balance(&node.pubkey()).await,
            earned - earned * u64::from(FEE_BPS) / 10_000
        );
    }
    let total: u64 = latest.values().sum();
    assert_eq!(
        config.reward_pool,
        REWARD_POOL + total * u64::from(FEE_BPS) / 10_000
    );
    // What the relayer records converges to the chain (redemptions that
    // landed just before a kill are recorded from the chain on its next round).
    wait_for(30, "recorded settlements to match the chain", || async {
        let stats: StatsView = get_json(&http, &base, "/v1/stats").await;
        stats.settled_paid + stats.settled_fee == total
    })
    .await;
    kill9(child);
}
