//! The auditor's explorer page in a real browser: a local testnet (chain,
//! program, three nodes running the real model, gateway, relayer), a few paid
//! tasks batched on-chain, then headless Chromium loads the relayer's page
//! with `?verify=<task>`; the page verifies the receipt itself (WebCrypto
//! signatures and hashes, the batch root read from the chain's RPC), and the
//! test checks the rendered DOM for what a person would see. A screenshot
//! lands in `target/ci-artifacts/explorer.png`.
//!
//! A second test fills the Audits and Challenges sections from a real flow
//! with the relayer's test harness (a chain where every receipt is audited,
//! registered verifiers, signed reports, an upheld challenge that slashes
//! the node, another whose committee is not drawn) and checks the page shows
//! them, the node's slash and the task's audit state; its screenshot is
//! `target/ci-artifacts/explorer-audits.png`.
//!
//! Needs `/usr/bin/chromium` (run `scripts/setup-browser`; `scripts/test` does).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strata_testnet::local::{LocalOptions, LocalTestnet};
use strata_testnet::network::DEMO_API_KEY;
use strata_testnet::MODEL_NAME;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium with the flags that keep it quiet and offline, plus `extra`.
fn chromium(profile: &Path, extra: &[String]) -> std::process::Output {
    Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("could not run {CHROMIUM}: {e}"))
}

/// Amounts as the page prints them: whole tokens with thousands separators,
/// then up to six decimals without trailing zeros.
fn tokens(base_units: u64) -> String {
    let whole = (base_units / 1_000_000).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let frac = format!("{:06}", base_units % 1_000_000);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        grouped
    } else {
        format!("{grouped}.{frac}")
    }
}

/// Runs the futures concurrently, answers in input order.
async fn futures_join_all<F: std::future::Future>(futures: [F; 3]) -> Vec<F::Output> {
    let [a, b, c] = futures;
    let (a, b, c) = tokio::join!(a, b, c);
    vec![a, b, c]
}

async fn get(url: &str) -> Value {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The inner HTML of the `<div id="{id}">` in a dumped DOM (up to the next section).
fn section_html<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<div id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let rest = &dom[start..];
    &rest[..rest.find("</section>").unwrap_or(rest.len())]
}

/// Dumps the DOM of `page` after its scripts ran, and takes a screenshot of
/// it into `shot`.
async fn render(page: &str, shot: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let profile_path = profile.path().to_path_buf();
    let url = page.to_string();
    let out =
        tokio::task::spawn_blocking(move || chromium(&profile_path, &["--dump-dom".into(), url]))
            .await
            .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(shot);
    let profile = tempfile::tempdir().unwrap();
    let profile_path = profile.path().to_path_buf();
    let args = vec![
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,2400".to_string(),
        page.to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || chromium(&profile_path, &args))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "chromium screenshot failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(shot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()))
        .len();
    println!("explorer screenshot: {} ({size} bytes)", shot.display());
    assert!(size > 10 * 1024, "screenshot is only {size} bytes");
    dom
}

fn artifacts_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("ci-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explorer_page_verifies_a_receipt_in_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/setup-browser (scripts/test does) to install Debian's chromium"
    );

    // A local testnet, relayer rounds a few seconds apart so that the
    // concurrent tasks below tend to share a batch.
    let dir = tempfile::tempdir().unwrap();
    let mut local = LocalOptions::ephemeral(dir.path());
    local.network.batch_interval = Duration::from_secs(3);
    let node_stake = local.network.node_stake;
    let t = LocalTestnet::start(dir.path(), local).await.unwrap();
    let (net, keys, rpc) = (&t.net, &t.keys, t.manifest.rpc_url.clone());
    let gw = net.gateway.url();
    let relayer = net.relayer.http_url().to_string();

    // Three paid tasks through the gateway, sent together so that a batch
    // usually holds several of them (then the page walks a real proof).
    let http = reqwest::Client::new();
    let pays = ["Name a colour.", "Say hello.", "What is 2 + 2?"].map(|prompt| {
        http.post(format!("{gw}/v1/chat/completions"))
            .bearer_auth(DEMO_API_KEY)
            .json(&json!({
                "model": MODEL_NAME,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 8, "temperature": 0,
            }))
            .send()
    });
    let mut task_ids = Vec::new();
    for resp in futures_join_all(pays).await {
        let resp = resp.unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        task_ids.push(body["strata"]["task_id"].as_str().unwrap().to_string());
    }

    // All three batched on-chain, with their post_batch signatures known.
    for id in &task_ids {
        let url = format!("{relayer}/v1/receipts/{id}");
        wait_for("the receipts to be batched on-chain", || {
            let url = url.clone();
            async move {
                let v = get(&url).await;
                v["batch"]["status"] == "posted" && v["batch"]["post_signature"].is_string()
            }
        })
        .await;
    }

    // The JSON the page reads.
    let listed = get(&format!("{relayer}/v1/receipts?limit=2")).await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let all = get(&format!("{relayer}/v1/receipts")).await;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(listed[0], all[0], "newest first");
    let received: Vec<u64> = all
        .iter()
        .map(|r| r["received_at_ms"].as_u64().unwrap())
        .collect();
    assert!(
        received.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {all:?}"
    );
    let bad_limit = reqwest::get(format!("{relayer}/v1/receipts?limit=501"))
        .await
        .unwrap();
    assert_eq!(bad_limit.status(), 400);
    let config = get(&format!("{relayer}/v1/config")).await;
    assert_eq!(config["rpc_url"], rpc.as_str());
    assert_eq!(config["program_id"], strata_chain::PROGRAM_ID.to_string());
    let node_view = get(&format!("{relayer}/v1/nodes")).await;
    let listed_nodes = node_view["nodes"].as_array().unwrap();
    assert!(node_view["chain_error"].is_null(), "{node_view}");
    for k in &keys.nodes {
        let op = strata_chain::Signer::pubkey(k).to_string();
        let n = listed_nodes
            .iter()
            .find(|n| n["operator"] == op.as_str())
            .unwrap_or_else(|| panic!("node {op} missing from /v1/nodes: {node_view}"));
        assert_eq!(n["registered"], true);
        assert_eq!(n["stake"], node_stake, "{n}");
    }
    let seen: u64 = listed_nodes
        .iter()
        .filter_map(|n| n["tasks"].as_u64())
        .sum();
    assert_eq!(seen, 3, "{node_view}");
    let batches = get(&format!("{relayer}/v1/batches")).await;
    // Verify the receipt deepest in the largest batch (a real proof walk when
    // the tasks shared a batch).
    let mut receipts = Vec::new();
    for id in &task_ids {
        receipts.push(get(&format!("{relayer}/v1/receipts/{id}")).await);
    }
    let receipt = receipts
        .iter()
        .max_by_key(|r| {
            (
                r["batch"]["leaf_count"].as_u64(),
                r["batch"]["leaf_index"].as_u64(),
            )
        })
        .unwrap();
    let verified_task = receipt["task_id"].as_str().unwrap().to_string();
    let batch_id = receipt["batch"]["batch_id"].as_u64().unwrap();
    println!(
        "verifying task {verified_task}: leaf {} of {} in batch {batch_id}",
        receipt["batch"]["leaf_index"], receipt["batch"]["leaf_count"]
    );
    let batch_signature = batches
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == batch_id)
        .and_then(|b| b["signature"].as_str())
        .unwrap()
        .to_string();

    // The page, in Chromium, verifying the first task by itself.
    let page = format!("{relayer}/?verify={verified_task}");
    println!("explorer page: {page}");
    let profile = tempfile::tempdir().unwrap();
    let profile_path = profile.path().to_path_buf();
    let page_for_dom = page.clone();
    let out = tokio::task::spawn_blocking(move || {
        chromium(&profile_path, &["--dump-dom".into(), page_for_dom])
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    for k in &keys.nodes {
        let op = strata_chain::Signer::pubkey(k).to_string();
        let row = dom
            .split("<tr>")
            .skip(1)
            .find(|row| row.contains(&format!(">{op}<")) && row.contains("compute"))
            .unwrap_or_else(|| panic!("node {op} is not listed in the Nodes table:\n{dom}"));
        assert!(
            row.contains(&format!(">{}<", tokens(node_stake))),
            "node {op} is listed without its stake {}:\n{row}",
            tokens(node_stake)
        );
    }
    for id in &task_ids {
        assert!(dom.contains(id.as_str()), "task {id} is not on the page");
    }
    assert!(
        dom.contains(&batch_signature),
        "the batch's post_batch signature {batch_signature} is not on the page"
    );
    let checks = [
        "receipt bytes",
        "task id",
        "digest",
        "node signature",
        "voucher",
        "leaf",
        "batch account",
        "Merkle proof",
    ];
    let marks = dom.matches('✓').count();
    assert!(
        !dom.contains('✗'),
        "a verification check failed in the page:\n{dom}"
    );
    assert_eq!(
        marks,
        checks.len(),
        "expected one ✓ per check ({checks:?}):\n{dom}"
    );
    for name in checks {
        assert!(
            dom.contains(&format!("<span class=\"name\">{name}</span>")),
            "check {name:?} is not shown:\n{dom}"
        );
    }
    assert!(dom.contains("Verified: all 8 checks hold"), "{dom}");
    assert!(dom.contains("data-verify=\"verified\""), "{dom}");
    // The audit sections render (empty or not: the testnet's audit rate
    // decides), and nodes have a slashed column.
    for (section, empty_text) in [
        ("audits", "no audit reports yet"),
        ("challenges", "no challenges yet"),
    ] {
        let body = section_html(&dom, section);
        assert!(
            body.contains(empty_text) || body.contains("<table>"),
            "section {section} did not render:\n{body}"
        );
    }
    assert!(dom.contains("<h2>Audits"), "{dom}");
    assert!(dom.contains("<h2>Challenges"), "{dom}");
    assert!(dom.contains("<th class=\"num\">slashed</th>"), "{dom}");

    // A screenshot for people (CI keeps target/ci-artifacts).
    let shot = artifacts_dir().join("explorer.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let profile_path = profile.path().to_path_buf();
    let shot_arg = format!("--screenshot={}", shot.display());
    let out = tokio::task::spawn_blocking(move || {
        chromium(
            &profile_path,
            &[shot_arg, "--window-size=1280,1600".into(), page],
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "chromium screenshot failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(&shot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()))
        .len();
    println!("explorer screenshot: {} ({size} bytes)", shot.display());
    assert!(size > 10 * 1024, "screenshot is only {size} bytes");

    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_page_shows_audits_and_challenges_in_chromium() {
    use crate::relayer_world::{get_json, http, AuditWorld, NODE_STAKE, TOKEN};
    use strata_chain::Signer;
    use strata_wire::audit::{AuditOutcome, FailedCheck};

    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/setup-browser (scripts/test does) to install Debian's chromium"
    );
    let w = AuditWorld::start(3, 1, 60).await;
    let client = http();
    // Task 0: its verifier finds a bad layer, challenges, and the committee
    // upholds it (the node is slashed). Task 1: a pass. Task 2: challenged,
    // committee not drawn yet.
    let (t0, t1, t2) = (&w.tasks[0], &w.tasks[1], &w.tasks[2]);
    let cheat = AuditOutcome::Failed {
        check: FailedCheck::Layer(3),
        detail: "relative deviation 0.8 over 0.05".into(),
    };
    for v in &t0.plan.verifiers {
        let r = w.report(t0, w.verifier(v), cheat.clone(), [7; 32]);
        assert_eq!(w.post_audit(&r.encode()).await.0, 200);
    }
    for v in &t1.plan.verifiers {
        let r = w.report(t1, w.verifier(v), AuditOutcome::Passed, [8; 32]);
        assert_eq!(w.post_audit(&r.encode()).await.0, 200);
    }
    let challenger = w.verifier(&t0.plan.verifiers[0]);
    let upheld = w.open_challenge(challenger, t0).await;
    w.draw(&upheld).await;
    w.resolve(&upheld, &[challenger], true).await;
    let pending = w
        .open_challenge(w.verifier(&t2.plan.verifiers[0]), t2)
        .await;
    wait_for("both challenges indexed", || async {
        let list: serde_json::Value = get_json(&client, &w.base, "/v1/challenges").await;
        let statuses: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["status"].as_str())
            .collect();
        statuses.contains(&"upheld") && statuses.contains(&"open")
    })
    .await;

    let task0 = hex::encode(t0.receipt.body.task_id);
    let page = format!("{}/?verify={task0}", w.base);
    println!("explorer page: {page}");
    let dom = render(&page, &artifacts_dir().join("explorer-audits.png")).await;

    // The receipt (version 2) still verifies in the page.
    assert!(dom.contains("Verified: all 8 checks hold"), "{dom}");
    // Audits: both tasks, the failed check, the verifiers.
    let audits = section_html(&dom, "audits");
    for needle in [
        task0.as_str(),
        &hex::encode(t1.receipt.body.task_id),
        "failed: layer 3",
        "passed",
        &t0.plan.verifiers[0].to_string(),
        "1,250",
    ] {
        assert!(
            audits.contains(needle),
            "{needle:?} not in the Audits section:\n{audits}"
        );
    }
    // Challenges: the upheld one with its voter and slash, the pending one.
    let challenges = section_html(&dom, "challenges");
    let slashed = format!(">{}<", NODE_STAKE / 2 / TOKEN);
    for needle in [
        "upheld",
        "open (committee not drawn)",
        slashed.as_str(),
        &challenger.pubkey().to_string(),
        &w.env.nodes[0].pubkey().to_string(),
    ] {
        assert!(
            challenges.contains(needle),
            "{needle:?} not in the Challenges section:\n{challenges}"
        );
    }
    assert!(
        challenges.contains(&hex::encode(t2.receipt.body.task_id)),
        "challenge {pending} missing:\n{challenges}"
    );
    // The node's row shows its slash.
    let node = w.env.nodes[0].pubkey().to_string();
    let nodes = section_html(&dom, "nodes");
    let row = nodes
        .split("<tr>")
        .find(|r| r.contains(&format!(">{node}<")))
        .unwrap_or_else(|| panic!("node {node} not in the Nodes table:\n{nodes}"));
    assert!(row.contains(&slashed), "no slash in the node's row:\n{row}");
    // The task's own panel lists its reports and its challenge.
    let details = section_html(&dom, "receipt-details");
    assert!(details.contains("audit reports"), "{details}");
    assert!(details.contains("failed: layer 3 by "), "{details}");
    assert!(details.contains("upheld, slashed "), "{details}");
    w.relayer.shutdown().await;
}

/// Dumps the DOM of `page` after its scripts ran.
async fn dump(page: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let profile_path = profile.path().to_path_buf();
    let url = page.to_string();
    let out =
        tokio::task::spawn_blocking(move || chromium(&profile_path, &["--dump-dom".into(), url]))
            .await
            .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_page_checks_a_pipelined_tasks_links_in_chromium() {
    use crate::relayer_world::{
        get_view, hop_parts, hop_receipt, hop_receipts, http, post, setup, wait_for,
    };
    use strata_chain::{Keypair, Signer};
    use strata_relayer::Relayer;

    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/setup-browser (scripts/test does) to install Debian's chromium"
    );
    let env = setup(1, 3, 60).await;
    let dir = tempfile::tempdir().unwrap();
    let relayer = Relayer::start(env.relayer_config(dir.path(), 0))
        .await
        .expect("relayer starts");
    let base = relayer.http_url().to_string();
    let client = http();
    let nodes: Vec<&Keypair> = env.nodes.iter().collect();
    let payer = &env.clients[0];
    // Task A: three linked hops. Task B: hop 1 claims other input states
    // than hop 0 handed on. Task C: hop 1's receipt never arrives.
    let (a, b, c) = ([0xa1; 32], [0xb1; 32], [0xc1; 32]);
    let linked = hop_receipts(&nodes, payer, a, 5, 5);
    let mut parts = hop_parts(&nodes, b, 0);
    parts[1].input_states = [0xee; 32];
    let broken: Vec<_> = parts
        .iter()
        .zip(&nodes)
        .map(|(p, n)| hop_receipt(n, payer, *p, 5, 10))
        .collect();
    let partial = hop_receipts(&nodes, payer, c, 5, 15);
    for r in linked
        .iter()
        .chain(&broken)
        .chain([&partial[0], &partial[2]])
    {
        let (status, body) = post(&client, &base, r.encode()).await;
        assert_eq!(status, 200, "{body}");
    }
    wait_for(60, "task A's hops in a posted batch", || async {
        let mut ok = true;
        for r in &linked {
            let v = get_view(&client, &base, &r.body.task_id).await;
            ok &= v.is_some_and(|v| v.batch.is_some_and(|b| b.status == "posted"));
        }
        ok
    })
    .await;

    // Task A: every hop listed with its node, two ✓ links, nothing broken.
    let page = format!("{base}/?task={}", hex::encode(a));
    println!("explorer page: {page}");
    let dom = render(&page, &artifacts_dir().join("explorer-pipeline.png")).await;
    let hops = section_html(&dom, "task-hops");
    assert!(dom.contains("data-task=\"linked\""), "{hops}");
    assert_eq!(hops.matches('✓').count(), 2, "{hops}");
    assert!(!hops.contains('✗'), "{hops}");
    assert_eq!(hops.matches("receipt checks hold").count(), 3, "{hops}");
    for n in &nodes {
        assert!(hops.contains(&n.pubkey().to_string()), "{hops}");
    }
    assert!(hops.contains("linked"), "{hops}");

    // Task B: ✗ at the link into hop 1, ✓ at the next.
    let dom = dump(&format!("{base}/?task={}", hex::encode(b))).await;
    let hops = section_html(&dom, "task-hops");
    assert!(dom.contains("data-task=\"broken\""), "{hops}");
    assert_eq!(hops.matches('✗').count(), 1, "{hops}");
    assert_eq!(hops.matches('✓').count(), 1, "{hops}");
    assert!(hops.contains("broken at hop 1"), "{hops}");
    assert!(hops.contains("input states are not hop 0"), "{hops}");

    // Task C: incomplete, neither mark.
    let dom = dump(&format!("{base}/?task={}", hex::encode(c))).await;
    let hops = section_html(&dom, "task-hops");
    assert!(dom.contains("data-task=\"incomplete\""), "{hops}");
    assert!(hops.contains("incomplete (missing hop 1)"), "{hops}");
    assert!(!hops.contains('✓') && !hops.contains('✗'), "{hops}");

    // A hop receipt (version 3) verifies in the page like any receipt, plus
    // its hop check: nine checks, the Merkle proof against the chain's root.
    let id = hex::encode(linked[1].body.task_id);
    let dom = dump(&format!("{base}/?verify={id}")).await;
    assert!(dom.contains("Verified: all 9 checks hold"), "{dom}");
    assert!(dom.contains("<span class=\"name\">hop</span>"), "{dom}");
    assert!(dom.contains("data-verify=\"verified\""), "{dom}");
    relayer.shutdown().await;
}
