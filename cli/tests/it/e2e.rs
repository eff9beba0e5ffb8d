//! The whole paid journey on a real local testnet: chain, program, three
//! nodes running the real model, the gateway, the relayer. A client pays for
//! a streamed completion; its receipt is batched on-chain; `strata audit`
//! verifies it against the on-chain root; the node claims its reward; and
//! the money adds up exactly. Then the gateway's refusals, over real HTTP.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use strata_chain::rpc::ChainClient;
use strata_chain::{pda, Keypair, Signer};
use strata_testnet::local::{LocalOptions, LocalTestnet};
use strata_testnet::network::DEMO_API_KEY;
use strata_testnet::MODEL_NAME;

use crate::common::{self, run};

/// A local testnet (chain, program, three nodes, gateway, relayer); with
/// `poor_client`, a second client ("poor-key") whose deposit of 5 base units
/// covers no task.
async fn testnet(poor_client: Option<&Keypair>) -> (LocalTestnet, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = LocalOptions::ephemeral(dir.path());
    // A client that keeps its key (a file of its own) and pays with
    // `strata chat`.
    let own = Keypair::new();
    strata_chain::keys::write_new(&dir.path().join(SELF_KEY_FILE), &own).unwrap();
    options.clients.push(("self-key".into(), own, SELF_DEPOSIT));
    if let Some(poor) = poor_client {
        options
            .clients
            .push(("poor-key".into(), poor.insecure_clone(), 5));
    }
    let t = LocalTestnet::start(dir.path(), options).await.unwrap();
    (t, dir)
}

fn strata(rpc: &str, keypair: &Path, args: &[&str]) -> (bool, String) {
    let out = run(common::strata()
        .args(["--url", rpc, "--keypair"])
        .arg(keypair)
        .args(args));
    (out.success(), format!("{}{}", out.stdout, out.stderr))
}

/// Parses a server-sent-event body into its JSON data objects (without `[DONE]`).
fn sse_objects(body: &str) -> (Vec<Value>, bool) {
    let mut objs = Vec::new();
    let mut done = false;
    for line in body.lines() {
        if let Some(data) = line.strip_prefix("data: ") {
            if data == "[DONE]" {
                done = true;
            } else {
                objs.push(serde_json::from_str(data).unwrap());
            }
        }
    }
    (objs, done)
}

/// The self-custody client's keypair file, in the testnet's directory.
const SELF_KEY_FILE: &str = "self-key.json";

/// What the self-custody client deposits, base units.
const SELF_DEPOSIT: u64 = 50_000_000;

/// How long the journey's steps (batching, redemption, an epoch) may take.
const STEP: Duration = Duration::from_secs(90);

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, f: impl FnMut() -> F) {
    strata_test_utils::wait_for(STEP, what, f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_pays_node_earns_auditor_verifies() {
    let (t, dir) = testnet(None).await;
    let chain = ChainClient::new(&t.manifest.rpc_url).unwrap();
    let gw = t.net.gateway.url();
    let relayer_url = t.net.relayer.http_url().to_string();
    let client = t.keys.client.pubkey();
    let config0 = chain.config().await.unwrap();
    let escrow0 = chain.escrow(&client).await.unwrap().unwrap();
    let mut tokens0 = std::collections::HashMap::new();
    for k in &t.keys.nodes {
        let ata = pda::associated_token(&k.pubkey(), &config0.mint);
        tokens0.insert(k.pubkey(), chain.token_balance(&ata).await.unwrap());
    }

    // A streamed chat completion from the real model.
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{gw}/v1/chat/completions"))
        .bearer_auth(DEMO_API_KEY)
        .json(&json!({
            "model": MODEL_NAME,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 24, "temperature": 0, "stream": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (chunks, done) = sse_objects(&resp.text().await.unwrap());
    assert!(done, "stream must end with [DONE]");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(chunks.len() >= 3, "expected several chunks, got {chunks:?}");
    assert!(!text.trim().is_empty(), "the model said nothing");
    println!("model said: {text}");
    let last = chunks.last().unwrap();
    let info = &last["strata"];
    let task_id = info["task_id"].as_str().unwrap().to_string();
    let node: strata_chain::Pubkey = info["node"].as_str().unwrap().parse().unwrap();
    let price = info["price"].as_u64().unwrap();
    assert!(price > 0);

    // The receipt is batched on-chain and the auditor's check passes.
    let client_key = t.keypair_path("client");
    let mut audit = String::new();
    wait_for("the receipt to be batched", || {
        let (ok, out) = strata(
            &t.manifest.rpc_url,
            &client_key,
            &["audit", &task_id, "--relayer", &relayer_url],
        );
        audit = out;
        async move { ok }
    })
    .await;
    println!("{audit}");

    // The voucher is redeemed: the client paid exactly what the node earned plus the fee.
    let node_ata = pda::associated_token(&node, &config0.mint);
    let node_tokens0 = tokens0[&node];
    wait_for("the voucher to be redeemed", || {
        let chain = &chain;
        async move { chain.escrow(&client).await.unwrap().unwrap().total_paid > escrow0.total_paid }
    })
    .await;
    let escrow1 = chain.escrow(&client).await.unwrap().unwrap();
    let paid = escrow1.total_paid - escrow0.total_paid;
    assert_eq!(paid, price, "the client paid the task's price");
    assert_eq!(escrow0.balance - escrow1.balance, price);
    let fee = strata_chain::fees::protocol_fee(price, config0.params.protocol_fee_bps);
    let earned = chain.token_balance(&node_ata).await.unwrap() - node_tokens0;
    assert_eq!(
        earned + fee,
        paid,
        "client paid = node earned + protocol fee"
    );

    // Rewards: the node claims once, a second claim pays nothing.
    let node_index = t
        .keys
        .nodes
        .iter()
        .position(|k| k.pubkey() == node)
        .unwrap();
    let node_key = t.keypair_path(&format!("node-{node_index}"));
    let mut claimed = String::new();
    wait_for("a reward epoch covering the task", || {
        let (ok, out) = strata(
            &t.manifest.rpc_url,
            &node_key,
            &["claim", "--relayer", &relayer_url],
        );
        let paid_something = ok && !out.to_lowercase().contains("nothing to claim");
        claimed = out;
        async move { paid_something }
    })
    .await;
    println!("{claimed}");
    let after_claim = chain.token_balance(&node_ata).await.unwrap();
    let reward = after_claim - node_tokens0 - earned;
    assert!(reward > 0);
    let (ok, out) = strata(
        &t.manifest.rpc_url,
        &node_key,
        &["claim", "--relayer", &relayer_url],
    );
    assert!(ok, "{out}");
    assert!(out.to_lowercase().contains("nothing to claim"), "{out}");
    assert_eq!(chain.token_balance(&node_ata).await.unwrap(), after_claim);
    let config1 = chain.config().await.unwrap();
    assert_eq!(
        config1.reward_pool,
        config0.reward_pool + fee - reward,
        "the fee went to the reward pool and the reward came out of it"
    );

    // A client that keeps its own key: `strata chat` finds a node on the
    // p2p network, streams, and signs its own vouchers; twice, so the
    // running total per node shows; the relayer redeems exactly the prices.
    let own = dir.path().join(SELF_KEY_FILE);
    let own_key = strata_chain::keys::read(&own).unwrap().pubkey();
    let state = tempfile::tempdir().unwrap();
    let mut asked = Vec::new();
    for question in ["Name a colour.", "Name a fruit."] {
        let out = run(common::strata()
            .args(["--url", &t.manifest.rpc_url, "--keypair"])
            .arg(&own)
            .args([
                "--json",
                "chat",
                question,
                "--max-tokens",
                "8",
                "--state-dir",
            ])
            .arg(state.path()));
        assert!(out.success(), "{}{}", out.stdout, out.stderr);
        let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
        println!("strata chat: {v}");
        assert!(!v["text"].as_str().unwrap().trim().is_empty());
        asked.push((
            v["node"].as_str().unwrap().to_string(),
            v["price"].as_u64().unwrap(),
            v["voucher_cumulative"].as_u64().unwrap(),
        ));
    }
    let (n1, p1, c1) = asked[0].clone();
    let (n2, p2, c2) = asked[1].clone();
    assert!(p1 > 0 && p2 > 0);
    assert_eq!(c1, p1, "a first voucher's total is its price");
    assert_eq!(
        c2,
        if n1 == n2 { p1 + p2 } else { p2 },
        "totals run per node"
    );
    let own_escrow0 = SELF_DEPOSIT;
    wait_for("the self-signed vouchers to be redeemed", || {
        let chain = &chain;
        async move { chain.escrow(&own_key).await.unwrap().unwrap().total_paid == p1 + p2 }
    })
    .await;
    let own_escrow = chain.escrow(&own_key).await.unwrap().unwrap();
    assert_eq!(own_escrow.balance, own_escrow0 - p1 - p2);
    t.shutdown().await;
}

/// The Python interpreter of the project's venv (made by `scripts/setup-python`).
fn venv_python() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let py = root.join(".strata/venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup-python (scripts/test does)",
        py.display()
    );
    py
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openai_python_client_and_refusals() {
    let poor = Keypair::new();
    let (t, _dir) = testnet(Some(&poor)).await;
    let gw = t.net.gateway.url();
    let chain = ChainClient::new(&t.manifest.rpc_url).unwrap();

    // The official openai client, unchanged, for a chat and a streamed chat,
    // and reading logprobs (chat, streamed chat, completions).
    let (ok, printed) = python_check("openai_client_check.py", &gw).await;
    assert!(ok, "openai client failed:\n{printed}");
    assert!(
        [
            "chat ok",
            "stream ok",
            "chat logprobs ok",
            "streamed chat logprobs ok",
            "completion logprobs ok"
        ]
        .iter()
        .all(|line| printed.contains(line)),
        "{printed}"
    );

    // The Batch API through the same client: files.create, batches.create,
    // batches.retrieve until completed, files.content of both outputs.
    let (ok, printed) = python_check("openai_batch_check.py", &gw).await;
    assert!(
        ok && printed.contains("batch ok"),
        "openai batch check failed:\n{printed}"
    );

    let escrow0 = chain
        .escrow(&t.keys.client.pubkey())
        .await
        .unwrap()
        .unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str, key: &str, body: reqwest::Body| {
        http.post(format!("{gw}{path}"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let check = |status: u16, want: u16, body: &Value, what: &str| {
        assert_eq!(status, want, "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
    };
    let chat = |model: &str, content: &str, stream: bool| {
        json!({"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 8, "stream": stream})
            .to_string()
    };
    for (path, key, body, want, what) in [
        (
            "/v1/chat/completions",
            DEMO_API_KEY,
            "{\"model\": ".to_string(),
            400,
            "malformed JSON",
        ),
        (
            "/v1/chat/completions",
            DEMO_API_KEY,
            "{\"model\": \"x\"}".to_string(),
            400,
            "missing messages",
        ),
        (
            "/v1/chat/completions",
            "not-a-key",
            chat(MODEL_NAME, "hi", false),
            401,
            "bad API key",
        ),
        (
            "/v1/chat/completions",
            "not-a-key",
            chat(MODEL_NAME, "hi", true),
            401,
            "bad API key, streaming",
        ),
        (
            "/v1/chat/completions",
            DEMO_API_KEY,
            chat("gpt-17", "hi", false),
            404,
            "unknown model",
        ),
        (
            "/v1/chat/completions",
            DEMO_API_KEY,
            chat(MODEL_NAME, &"word ".repeat(20_000), false),
            400,
            "prompt beyond the context",
        ),
        (
            "/v1/completions",
            DEMO_API_KEY,
            json!({"model": MODEL_NAME, "prompt": "x", "max_tokens": 0}).to_string(),
            400,
            "max_tokens 0",
        ),
        (
            "/v1/chat/completions",
            "poor-key",
            chat(MODEL_NAME, "hi", false),
            402,
            "exhausted deposit",
        ),
        (
            "/v1/chat/completions",
            "poor-key",
            chat(MODEL_NAME, "hi", true),
            402,
            "exhausted deposit, streaming",
        ),
    ] {
        let resp = post(path, key, body.into()).await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        check(status, want, &body, what);
    }
    // Oversized body: refused before it is parsed.
    let resp = post(
        "/v1/chat/completions",
        DEMO_API_KEY,
        vec![b' '; 600 * 1024].into(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 413);

    // Nothing was charged for refusals, and a good request still works.
    let resp = post("/v1/completions", DEMO_API_KEY, json!({"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}).to_string().into())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert!(!body["choices"][0]["text"].as_str().unwrap().is_empty());
    let escrow1 = chain
        .escrow(&t.keys.client.pubkey())
        .await
        .unwrap()
        .unwrap();
    assert!(escrow1.balance <= escrow0.balance);
    let poor_escrow = chain.escrow(&poor.pubkey()).await.unwrap().unwrap();
    assert_eq!(poor_escrow.balance, 5, "a refused client pays nothing");

    // Concurrent tasks of one client are all served and paid: vouchers are
    // running totals, so their settlements must not overtake each other.
    let burst = (0..6).map(|i| {
        post(
            "/v1/completions",
            DEMO_API_KEY,
            json!({"model": MODEL_NAME, "prompt": format!("Number {i} is"), "max_tokens": 6})
                .to_string()
                .into(),
        )
    });
    for resp in futures::future::join_all(burst).await {
        let resp = resp.unwrap();
        let status = resp.status();
        assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    }

    // /v1/models lists what the nodes serve.
    let models: Value = strata_test_utils::get_json(&format!("{gw}/v1/models")).await;
    assert_eq!(models["data"][0]["id"], MODEL_NAME);
    t.shutdown().await;
}

/// Runs `scripts/<script> <gateway>/v1 <demo key> <model>` with the
/// project's Python (the official `openai` client); whether it exited
/// cleanly, and everything it printed (also echoed).
async fn python_check(script: &'static str, gateway: &str) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let url = format!("{gateway}/v1");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(venv_python())
            .arg(root.join("scripts").join(script))
            .args([&url, DEMO_API_KEY, MODEL_NAME])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{printed}");
    (out.status.success(), printed)
}
