//! The happy path against a real chain: an embedded `strata-localnet`
//! bootstrapped with a mint and the program's config, a testnet manifest
//! for the faucet, then every `strata` write command, checked through the
//! CLI's own `--json` reads. Also the refusals that need a chain (unknown
//! node, insufficient funds).

use std::path::Path;

use serde_json::Value;
use strata_chain::params::TOKEN;
use strata_chain::{keys, Signer};
use strata_test_utils::chain::{LocalChain, SOL};

use crate::common::{in_home, run};

struct Cli<'a> {
    home: &'a Path,
    url: &'a str,
    keypair: String,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = run(in_home(self.home)
            .args(["--url", self.url, "--keypair", &self.keypair])
            .args(args));
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        (out.success(), out.stdout, out.stderr)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(ok, "strata {args:?} failed: {stderr}");
        stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let stdout = self.ok(&all);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("strata {args:?}: {e}: {stdout}"))
    }

    fn fails(&self, args: &[&str], needle: &str) {
        let (ok, _, stderr) = self.run(args);
        assert!(!ok, "strata {args:?} should fail");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
}

#[test]
fn operator_and_client_flow_on_a_local_chain() {
    // The program's admin is the testnet faucet: the mint authority.
    let chain = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(LocalChain::start(strata_chain::params::fast()));
    let url = chain.url.clone();
    let home = tempfile::tempdir().unwrap();
    let testnet_dir = home.path().join("testnet");
    let (faucet, mint) = (&chain.admin, &chain.mint);
    let faucet_path = testnet_dir.join("keys/faucet.json");
    keys::write_new(&faucet_path, faucet).unwrap();
    let manifest = serde_json::json!({
        "rpc_url": url,
        "mint": mint.pubkey().to_string(),
        "faucet_keypair": faucet_path,
    });
    std::fs::write(testnet_dir.join("testnet.json"), manifest.to_string()).unwrap();

    let keypair = home.path().join("operator.json").display().to_string();
    let cli = Cli {
        home: home.path(),
        url: &url,
        keypair: keypair.clone(),
    };
    let me = cli
        .ok(&["keygen", "--outfile", &keypair])
        .trim()
        .to_string();
    let testnet = testnet_dir.display().to_string();

    // Nothing yet: no SOL, not registered, no escrow.
    cli.fails(&["status", "node"], &format!("node {me} is not registered"));
    cli.fails(&["stake", "150"], &format!("node {me} is not registered"));
    cli.fails(
        &["node", "register", "--multiaddr", "/ip4/127.0.0.1/tcp/4001"],
        "insufficient funds",
    );

    let got = cli.json(&[
        "faucet",
        "--testnet-dir",
        &testnet,
        "--sol",
        "5",
        "--tokens",
        "1000",
    ]);
    assert_eq!(got["tokens"], 1_000 * TOKEN);
    let balance = cli.json(&["balance"]);
    assert_eq!(balance["lamports"], 5 * SOL);
    assert_eq!(balance["tokens"], 1_000 * TOKEN);
    assert_eq!(balance["mint"], mint.pubkey().to_string());

    // Operator: register, update, stake, unstake, withdraw, deregister.
    let sig = cli.json(&[
        "node",
        "register",
        "--multiaddr",
        "/ip4/127.0.0.1/tcp/4001",
        "--memory-mb",
        "4096",
        "--compute",
        "--verifier",
    ]);
    assert!(
        sig["signature"].as_str().is_some_and(|s| s.len() > 40),
        "{sig}"
    );
    // What the binary sent carries its compute budget: a limit sized for
    // register_node, and no price unless asked for.
    let register_sig = sig["signature"].as_str().unwrap_or_default();
    let (limit, price) = compute_budget_of(&url, register_sig);
    let limit = limit.expect("a SetComputeUnitLimit instruction");
    assert!((10_000..200_000).contains(&limit), "{limit}");
    assert_eq!(price, None);
    cli.fails(
        &["node", "register", "--multiaddr", "/ip4/127.0.0.1/tcp/4001"],
        "already registered",
    );
    cli.ok(&["node", "update", "--bandwidth-mbps", "500"]);
    let node = cli.json(&["status", "node", &me]);
    assert_eq!(node["roles"], serde_json::json!(["compute", "verifier"]));
    assert_eq!(node["memory_mb"], 4096);
    assert_eq!(node["bandwidth_mbps"], 500);
    assert_eq!(
        node["multiaddrs"],
        serde_json::json!(["/ip4/127.0.0.1/tcp/4001"])
    );

    cli.fails(&["stake", "50"], "below the minimum stake");
    cli.fails(&["stake", "5000"], "insufficient funds");
    let staked = cli.json(&["stake", "150", "--priority-fee-micro-lamports", "2500"]);
    let (limit, price) = compute_budget_of(&url, staked["signature"].as_str().unwrap_or_default());
    assert!(
        limit.is_some_and(|l| (10_000..200_000).contains(&l)),
        "{limit:?}"
    );
    assert_eq!(price, Some(2_500));
    cli.fails(&["unstake", "151"], "insufficient stake");
    cli.ok(&["unstake", "150"]);
    cli.fails(&["withdraw-stake"], "unbonding period has not ended");
    let node = cli.json(&["status", "node"]);
    assert_eq!(node["stake"], 0);
    assert_eq!(node["unbonding"], 150 * TOKEN);
    let config = cli.json(&["status", "config"]);
    assert_eq!(config["total_stake"], 150 * TOKEN);
    assert_eq!(config["mint"], mint.pubkey().to_string());
    cli.fails(&["node", "deregister"], "still holds stake");
    // The unbonding period (2 s in these parameters) covers the challenge
    // window plus the verdict timeout.
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    cli.ok(&["withdraw-stake"]);
    assert_eq!(cli.json(&["balance"])["tokens"], 1_000 * TOKEN);
    cli.ok(&["node", "deregister"]);
    cli.fails(&["status", "node"], "is not registered");

    // Client: deposit, request a withdrawal, withdraw.
    cli.fails(&["status", "escrow"], "has no escrow");
    cli.fails(&["deposit", "2000"], "insufficient funds");
    cli.ok(&["deposit", "100"]);
    cli.fails(&["request-withdrawal", "101"], "insufficient funds");
    cli.ok(&["request-withdrawal", "40.5"]);
    // The program's floor on the withdrawal delay (time for a relayer to
    // redeem vouchers already signed) holds even with the fastest parameters.
    cli.fails(&["withdraw"], "withdrawal delay has not passed");
    let delay = strata_chain::params::fast().escrow_withdraw_delay;
    std::thread::sleep(std::time::Duration::from_millis(
        delay as u64 * 1_000 + 1_500,
    ));
    cli.ok(&["withdraw"]);
    let escrow = cli.json(&["status", "escrow"]);
    assert_eq!(escrow["balance"], 59_500_000);
    assert_eq!(escrow["pending_withdrawal"], 0);
    assert_eq!(cli.json(&["balance", &me])["tokens"], 940_500_000);
    cli.fails(&["withdraw"], "no withdrawal pending");

    // Text output reads as tokens.
    let text = cli.ok(&["status", "escrow"]);
    assert!(text.contains("59.5 tokens"), "{text}");
}

/// The compute-unit limit and price of a confirmed transaction, read back
/// over JSON-RPC (`getTransaction`), as any explorer would.
fn compute_budget_of(url: &str, signature: &str) -> (Option<u32>, Option<u64>) {
    let request = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "getTransaction",
        "params": [signature, {"encoding": "json", "commitment": "confirmed"}],
    });
    let answer: Value = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async {
            reqwest::Client::new()
                .post(url)
                .json(&request)
                .send()
                .await?
                .json()
                .await
        })
        .expect("getTransaction answers");
    let message = &answer["result"]["transaction"]["message"];
    let keys = message["accountKeys"].as_array().expect("account keys");
    let (mut limit, mut price) = (None, None);
    for ix in message["instructions"].as_array().expect("instructions") {
        let program = ix["programIdIndex"]
            .as_u64()
            .and_then(|i| keys.get(i as usize))
            .and_then(Value::as_str);
        if program != Some("ComputeBudget111111111111111111111111111111") {
            continue;
        }
        let data = bs58::decode(ix["data"].as_str().unwrap_or_default())
            .into_vec()
            .expect("base58 instruction data");
        match data.split_first() {
            Some((2, units)) => limit = units.try_into().ok().map(u32::from_le_bytes),
            Some((3, micro_lamports)) => {
                price = micro_lamports.try_into().ok().map(u64::from_le_bytes)
            }
            _ => {}
        }
    }
    (limit, price)
}

/// `strata admin init` on a freshly deployed program (what
/// `scripts/devnet-deploy` runs): a new mint, the config, the relayer
/// allowed; run again, it changes nothing.
#[test]
fn admin_init_sets_up_a_fresh_program_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let localnet = rt.block_on(strata_test_utils::chain::start_localnet());
    let url = localnet.rpc_url().to_string();
    let home = tempfile::tempdir().unwrap();
    let keypair = home.path().join("admin.json").display().to_string();
    let cli = Cli {
        home: home.path(),
        url: &url,
        keypair: keypair.clone(),
    };
    let admin = cli
        .ok(&["keygen", "--outfile", &keypair])
        .trim()
        .parse::<strata_chain::Pubkey>()
        .unwrap();
    let rpc = strata_chain::rpc::ChainClient::new(&url).unwrap();
    rt.block_on(rpc.airdrop(&admin, 10 * SOL)).unwrap();
    let relayer = strata_chain::Keypair::new().pubkey().to_string();

    let first = cli.json(&["admin", "init", "--relayer", &relayer]);
    assert_eq!(first["initialized"], true, "{first}");
    assert_eq!(first["relayer"], relayer.as_str());
    assert_eq!(first["reward_authority"], relayer.as_str());
    let mint = first["mint"].as_str().expect("the new mint").to_string();
    let config = cli.json(&["status", "config"]);
    assert_eq!(config["mint"], mint.as_str());

    let again = cli.json(&["admin", "init", "--relayer", &relayer]);
    assert_eq!(again["initialized"], false, "{again}");
    assert_eq!(again["mint"], mint.as_str());
    assert!(again.get("add_relayer_signature").is_none(), "{again}");
    drop(localnet);
}
