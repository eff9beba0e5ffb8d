//! `strata audit` and `strata claim` against a real relayer on a real chain:
//! a batched receipt audits clean line by line; an unknown task fails; the
//! relayer publishes a reward epoch (2-second epochs) and the node claims it
//! once, the second claim paying nothing. And the task's audit state: not
//! decided before its batch is sealed; once sealed, whether the rules audit
//! it and whom they assign, the verifiers' reports and the challenge
//! against it with its slash.

use std::process::Command;

use crate::relayer_world::*;
use serde_json::Value;
use strata_chain::{keys, Signer};
use strata_relayer::Relayer;

/// Runs `strata` with `--url`, `--keypair` and `args`; returns (success, stdout, stderr).
fn strata(url: &str, keypair: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--url", url, "--keypair"])
        .arg(keypair)
        .args(args)
        .output()
        .expect("run strata");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_a_receipt_and_claim_rewards() {
    const REWARD_PER_WORK_UNIT: u64 = 1_000;
    let env = setup(1, 1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let relayer =
        Relayer::start(env.relayer_config(&dir.path().join("relayer"), REWARD_PER_WORK_UNIT))
            .await
            .unwrap();
    let base = relayer.http_url().to_string();
    let http = http();
    let (node, client) = (&env.nodes[0], &env.clients[0]);
    let node_key = dir.path().join("node.json");
    keys::write_new(&node_key, node).unwrap();

    let receipts = [
        receipt(node, client, 1, 100, 100),
        receipt(node, client, 2, 100, 200),
    ];
    for r in &receipts {
        assert_eq!(post(&http, &base, r.encode()).await.0, 200);
    }
    let task = hex::encode(receipts[1].body.task_id);
    wait_for(30, "the receipt in a posted batch", || async {
        get_view(&http, &base, &receipts[1].body.task_id)
            .await
            .is_some_and(|v| v.batch.is_some_and(|b| b.status == "posted"))
    })
    .await;

    // Audit: every line matched, human and JSON.
    let (ok, out, err) = strata(&env.url, &node_key, &["audit", &task, "--relayer", &base]);
    assert!(ok, "{err}");
    for line in [
        "node signature  ✓",
        "voucher         ✓",
        "leaf            ✓",
        "proof           ✓",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    assert!(out.contains("against on-chain batch"), "{out}");
    // Nobody sealed the batch: the audit is not decided yet.
    for line in [
        "audit           not decided: batch",
        "audit reports   none",
        "challenges      none",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    let (ok, out, err) = strata(
        &env.url,
        &node_key,
        &["--json", "audit", &task, "--relayer", &base],
    );
    assert!(ok, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["proof"]["ok"], true);
    assert!(json["batch_tx"].is_string());
    assert_eq!(json["audit"]["decided"], false);
    assert_eq!(json["audit_reports"], serde_json::json!([]));
    assert_eq!(json["challenges"], serde_json::json!([]));

    // An unknown task, and a relayer that is not there: non-zero, one clear line.
    let (ok, _, err) = strata(
        &env.url,
        &node_key,
        &["audit", &"ab".repeat(32), "--relayer", &base],
    );
    assert!(!ok);
    assert!(err.contains("has no receipt for task"), "{err}");
    let (ok, _, err) = strata(
        &env.url,
        &node_key,
        &["audit", &task, "--relayer", "http://127.0.0.1:9"],
    );
    assert!(!ok);
    assert!(err.contains("could not reach the relayer"), "{err}");

    // Rewards: 2 receipts × 32 work units × 1000.
    let expected = 2 * 32 * REWARD_PER_WORK_UNIT;
    wait_for(
        30,
        "a published reward epoch with both receipts",
        || async {
            let r = http
                .get(format!("{base}/v1/rewards/{}", node.pubkey()))
                .send()
                .await
                .unwrap();
            r.status().is_success() && r.json::<Value>().await.unwrap()["cumulative"] == expected
        },
    )
    .await;
    // Let the voucher redemption (into the same token account) land first.
    wait_for(30, "the voucher redeemed", || async {
        env.node_balance(&node.pubkey()).await == 200 - 200 * u64::from(FEE_BPS) / 10_000
    })
    .await;
    let before = env.node_balance(&node.pubkey()).await;
    let (ok, out, err) = strata(
        &env.url,
        &node_key,
        &["--json", "claim", "--relayer", &base],
    );
    assert!(ok, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["paid"], expected);
    let after = env.node_balance(&node.pubkey()).await;
    assert_eq!(after - before, expected);

    let (ok, out, err) = strata(&env.url, &node_key, &["claim", "--relayer", &base]);
    assert!(ok, "{err}");
    assert!(out.contains("nothing to claim"), "{out}");
    assert_eq!(env.node_balance(&node.pubkey()).await, after);

    relayer.shutdown().await;
}

/// `strata audit` on an audited task: the assignment recomputed from the
/// chain, the relayer's reports (outcome, verifier) and the upheld challenge
/// with its slash, in both forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_shows_assignment_reports_and_challenge() {
    use strata_wire::audit::{AuditOutcome, FailedCheck};

    let w = AuditWorld::start(2, 1, 60).await;
    let http = http();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("auditor.json");
    keys::write_new(&key, &strata_chain::Keypair::new()).unwrap();
    let t = &w.tasks[0];
    let task = hex::encode(t.receipt.body.task_id);
    let assigned: Vec<String> = t.plan.verifiers.iter().map(|v| v.to_string()).collect();
    for v in &t.plan.verifiers {
        let outcome = AuditOutcome::Failed {
            check: FailedCheck::Layer(3),
            detail: "relative deviation 0.8".into(),
        };
        let report = w.report(t, w.verifier(v), outcome, [7; 32]);
        assert_eq!(w.post_audit(&report.encode()).await.0, 200);
    }
    let challenger = w.verifier(&t.plan.verifiers[0]);
    let challenge = w.open_challenge(challenger, t).await;
    w.draw(&challenge).await;
    w.resolve(&challenge, &[challenger], true).await;
    wait_for(60, "the challenge indexed as upheld", || async {
        let list: serde_json::Value =
            get_json(&http, &w.base, &format!("/v1/challenges?task={task}")).await;
        list[0]["status"] == "upheld"
    })
    .await;

    let (ok, out, err) = strata(&w.env.url, &key, &["audit", &task, "--relayer", &w.base]);
    println!("{out}");
    assert!(ok, "{err}");
    let audit_line = format!(
        "audited (rate 100 %), assigned to {}",
        assigned.join(" and ")
    );
    let report_line = format!("failed (layer 3) by {}", assigned[0]);
    let challenge_line = format!(
        "upheld by {}, slashed {} tokens, 1 voter(s)",
        challenger.pubkey(),
        NODE_STAKE / 2 / TOKEN
    );
    for needle in [
        "proof           ✓",
        audit_line.as_str(),
        report_line.as_str(),
        challenge_line.as_str(),
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    let (ok, out, err) = strata(
        &w.env.url,
        &key,
        &["--json", "audit", &task, "--relayer", &w.base],
    );
    assert!(ok, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["audit"]["decided"], true);
    assert_eq!(json["audit"]["audited"], true);
    assert_eq!(json["audit"]["verifiers"], serde_json::json!(assigned));
    let reports = json["audit_reports"].as_array().unwrap();
    assert_eq!(reports.len(), assigned.len());
    assert_eq!(reports[0]["outcome"], "failed");
    assert_eq!(reports[0]["check"], "layer 3");
    assert_eq!(json["challenges"][0]["status"], "upheld");
    assert_eq!(json["challenges"][0]["slashed"], NODE_STAKE / 2);
    assert_eq!(
        json["challenges"][0]["voters"],
        serde_json::json!([challenger.pubkey().to_string()])
    );
    w.relayer.shutdown().await;
}

/// `strata audit` on a pipelined task: its hops in route order with a ✓ per
/// link, each hop's proof against its on-chain batch; a task whose hop 1
/// claims other input states than hop 0 handed on fails, broken at hop 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_a_pipelined_task() {
    use strata_chain::Keypair;
    let env = setup(1, 3, 60).await;
    let dir = tempfile::tempdir().unwrap();
    let relayer = Relayer::start(env.relayer_config(&dir.path().join("relayer"), 0))
        .await
        .unwrap();
    let base = relayer.http_url().to_string();
    let http = http();
    let key = dir.path().join("auditor.json");
    keys::write_new(&key, &Keypair::new()).unwrap();
    let nodes: Vec<&Keypair> = env.nodes.iter().collect();
    let (good, bad) = ([0xa7; 32], [0xb7; 32]);
    let linked = hop_receipts(&nodes, &env.clients[0], good, 5, 5);
    let mut parts = hop_parts(&nodes, bad, 0);
    parts[1].input_states = [0xee; 32];
    let broken: Vec<_> = parts
        .iter()
        .zip(&nodes)
        .map(|(p, n)| hop_receipt(n, &env.clients[0], *p, 5, 10))
        .collect();
    for r in linked.iter().chain(&broken) {
        assert_eq!(post(&http, &base, r.encode()).await.0, 200);
    }
    wait_for(30, "the hop receipts in a posted batch", || async {
        let mut ok = true;
        for r in linked.iter().chain(&broken) {
            ok &= get_view(&http, &base, &r.body.task_id)
                .await
                .is_some_and(|v| v.batch.is_some_and(|b| b.status == "posted"));
        }
        ok
    })
    .await;

    let task = hex::encode(good);
    let (ok, out, err) = strata(&env.url, &key, &["audit", &task, "--relayer", &base]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("linked, 3 hop(s)"), "{out}");
    assert_eq!(out.matches("link ").count(), 2, "{out}");
    assert!(
        out.contains("link 0 → 1  ✓") && out.contains("link 1 → 2  ✓"),
        "{out}"
    );
    for (k, n) in nodes.iter().enumerate() {
        assert!(
            out.contains(&format!("✓ hop {k} node {}", n.pubkey())),
            "{out}"
        );
    }
    assert!(
        out.contains("leaf 0 ✓") || out.contains("leaf 1 ✓"),
        "{out}"
    );
    let (ok, out, err) = strata(
        &env.url,
        &key,
        &["--json", "audit", &task, "--relayer", &base],
    );
    assert!(ok, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["segment_0"]["status"], "linked");
    assert_eq!(json["segment_0"]["hops"].as_array().unwrap().len(), 3);

    let (ok, out, err) = strata(
        &env.url,
        &key,
        &["audit", &hex::encode(bad), "--relayer", &base],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("broken at hop 1"), "{out}");
    assert!(out.contains("link 0 → 1  ✗ hop 1's input states"), "{out}");
    assert!(out.contains("link 1 → 2  ✓"), "{out}");
    assert!(err.contains("broken at hop 1"), "{err}");
    relayer.shutdown().await;
}
