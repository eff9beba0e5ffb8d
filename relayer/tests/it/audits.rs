//! Audit reports and challenges on a real chain: three registered verifiers,
//! every receipt audited; reports from the assigned verifiers are stored,
//! the same report twice is idempotent, a second different one, a verifier
//! the rules do not name, a wrong leaf or node and a forged signature are
//! refused; a cross-checked task whose two reports disagree is flagged; a
//! committee member may report on a challenged receipt; challenges are
//! indexed to their verdict (voters, slash) or expiry; and the reward epochs
//! pay exactly the audits and the verdict's voter. Everything survives a
//! restart.

use std::collections::BTreeMap;

use serde_json::Value;
use strata_chain::{Pubkey, Signer};
use strata_relayer::Relayer;
use strata_wire::audit::{AuditOutcome, FailedCheck};

use crate::common::*;

const REWARD_PER_WORK_UNIT: u64 = 1_000;
/// `audit_reward_bps` (2 000) × 32 work units × 1 000 / 10 000.
const PER_AUDIT: u64 = 6_400;
/// The local parameters' `committee_reward`.
const COMMITTEE_REWARD: u64 = TOKEN / 10;

fn digest(i: usize) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    d
}

fn error_of(body: &Value) -> String {
    body["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_and_challenges_are_judged_indexed_and_paid() {
    // 40 receipts: a cross-checked task (1 in 5) is all but certain.
    let w = AuditWorld::start(40, REWARD_PER_WORK_UNIT, 2).await;
    let http = http();
    let cross = w
        .tasks
        .iter()
        .position(|t| t.plan.verifiers.len() == 2)
        .expect("a cross-checked task among 40 (probability 1 - 0.8^40)");
    let singles: Vec<usize> = (0..w.tasks.len())
        .filter(|&i| w.tasks[i].plan.verifiers.len() == 1)
        .collect();
    let (unknown_model, failed_layer, expiring) = (singles[0], singles[1], singles[2]);

    // Every assigned verifier reports; the second verifier of the
    // cross-checked task reports another work digest.
    let mut paid: BTreeMap<Pubkey, u64> = BTreeMap::new();
    for (i, t) in w.tasks.iter().enumerate() {
        for (j, v) in t.plan.verifiers.iter().enumerate() {
            let outcome = if i == unknown_model {
                AuditOutcome::Failed {
                    check: FailedCheck::UnknownModel,
                    detail: "model not served here".into(),
                }
            } else if i == failed_layer {
                AuditOutcome::Failed {
                    check: FailedCheck::Layer(3),
                    detail: "relative deviation 0.8 over 0.05".into(),
                }
            } else {
                AuditOutcome::Passed
            };
            let work = if i == cross && j == 1 {
                [0xee; 32]
            } else {
                digest(i)
            };
            let report = w.report(t, w.verifier(v), outcome, work);
            let (status, body) = w.post_audit(&report.encode()).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["status"], "stored", "{body}");
            assert_eq!(body["role"], "assigned", "{body}");
            assert_eq!(body["flagged"], i == cross && j == 1, "{body}");
            if i != cross && i != unknown_model {
                *paid.entry(*v).or_default() += 1;
            }
        }
    }

    // The same report again is idempotent; another one from the same
    // verifier on the same task is refused and changes nothing.
    let plain = (0..w.tasks.len())
        .find(|i| ![cross, unknown_model, failed_layer, expiring].contains(i))
        .unwrap();
    let t0 = &w.tasks[plain];
    let v0 = w.verifier(&t0.plan.verifiers[0]);
    let again = w.report(t0, v0, AuditOutcome::Passed, digest(plain));
    let (status, body) = w.post_audit(&again.encode()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    let other = w.report(t0, v0, AuditOutcome::Passed, [9; 32]);
    let (status, body) = w.post_audit(&other.encode()).await;
    assert_eq!(status, 409, "{body}");
    assert!(error_of(&body).contains("already filed a different report"));
    let stored: serde_json::Value = get_json(
        &http,
        &w.base,
        &format!("/v1/audits?task={}", hex::encode(t0.receipt.body.task_id)),
    )
    .await;
    assert_eq!(stored.as_array().unwrap().len(), t0.plan.verifiers.len());
    assert_eq!(stored[0]["work_digest"], hex::encode(digest(plain)));

    // A verifier the rules do not name for this task.
    let outsider = w
        .verifiers
        .iter()
        .find(|v| !t0.plan.verifiers.contains(&v.pubkey()))
        .unwrap();
    let (status, body) = w
        .post_audit(
            &w.report(t0, outsider, AuditOutcome::Passed, digest(plain))
                .encode(),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        error_of(&body).contains("may not report") && error_of(&body).contains("assign"),
        "{body}"
    );
    // The wrong leaf, the wrong node, a forged signature.
    let t1 = &w.tasks[1];
    let v1 = w.verifier(&t1.plan.verifiers[0]);
    let mut wrong_leaf = w.report(t1, v1, AuditOutcome::Passed, digest(1)).body;
    wrong_leaf.leaf_index += 1;
    let wrong_leaf = strata_wire::audit::AuditReport::sign(v1, wrong_leaf).unwrap();
    let (status, body) = w.post_audit(&wrong_leaf.encode()).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("does not match"), "{body}");
    let mut wrong_node = w.report(t1, v1, AuditOutcome::Passed, digest(1)).body;
    wrong_node.node = v1.pubkey().to_bytes();
    let wrong_node = strata_wire::audit::AuditReport::sign(v1, wrong_node).unwrap();
    let (status, body) = w.post_audit(&wrong_node.encode()).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("names node"), "{body}");
    let mut forged = w.report(t1, v1, AuditOutcome::Passed, digest(1));
    forged.body.cpu_micros += 1;
    let (status, body) = w.post_audit(&forged.encode()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error_of(&body).contains("signature does not match"),
        "{body}"
    );

    // The cross-checked task: both reports flagged, neither paid.
    let task_hex = hex::encode(w.tasks[cross].receipt.body.task_id);
    let both: serde_json::Value =
        get_json(&http, &w.base, &format!("/v1/audits?task={task_hex}")).await;
    let both = both.as_array().unwrap();
    assert_eq!(both.len(), 2, "{both:?}");
    for r in both {
        assert_eq!(r["flagged"], true, "{r}");
        assert!(
            r["flag"]
                .as_str()
                .unwrap()
                .contains("work digests disagree"),
            "{r}"
        );
        assert_eq!(r["role"], "assigned");
        assert_eq!(r["work_units"], 32);
    }
    let failed: serde_json::Value = get_json(
        &http,
        &w.base,
        &format!(
            "/v1/audits?task={}",
            hex::encode(w.tasks[failed_layer].receipt.body.task_id)
        ),
    )
    .await;
    assert_eq!(failed[0]["outcome"], "failed");
    assert_eq!(failed[0]["check"], "layer 3");
    assert_eq!(failed[0]["cpu_micros"], 1_250_000);
    assert_eq!(failed[0]["layers"], serde_json::json!([3, 17]));
    let recent: serde_json::Value = get_json(&http, &w.base, "/v1/audits?limit=3").await;
    assert_eq!(recent.as_array().unwrap().len(), 3);

    // A batch's receipts, in leaf order, under the on-chain root.
    let t = &w.tasks[0];
    let listed: serde_json::Value = get_json(
        &http,
        &w.base,
        &format!("/v1/batches/{}/receipts", t.batch_id),
    )
    .await;
    let onchain = w.env.rpc.batch(t.batch_id).await.unwrap().unwrap();
    assert_eq!(listed["root"], hex::encode(onchain.root));
    assert_eq!(
        strata_chain::merkle::root::<strata_chain::merkle::domains::Ledger>(&t.leaves),
        onchain.root
    );
    assert_eq!(
        listed["receipts"][t.leaf_index as usize]["task_id"],
        hex::encode(t.receipt.body.task_id)
    );
    assert_eq!(
        listed["receipts"][t.leaf_index as usize]["node"],
        w.env.nodes[0].pubkey().to_string()
    );

    // A challenge against the failed task by its verifier: before the
    // committee is drawn, an unassigned verifier may not report; once drawn,
    // a member may. One member's vote upholds it (quorum 1).
    let ft = &w.tasks[failed_layer];
    let challenger = w.verifier(&ft.plan.verifiers[0]);
    let member = w
        .verifiers
        .iter()
        .find(|v| !ft.plan.verifiers.contains(&v.pubkey()))
        .unwrap();
    let challenge = w.open_challenge(challenger, ft).await;
    let member_report = w.report(
        ft,
        member,
        AuditOutcome::Failed {
            check: FailedCheck::Layer(3),
            detail: "confirmed".into(),
        },
        digest(failed_layer),
    );
    let (status, body) = w.post_audit(&member_report.encode()).await;
    assert_eq!(status, 403, "{body}");
    assert!(error_of(&body).contains("no committee drawn yet"), "{body}");
    let drawn = w.draw(&challenge).await;
    assert_ne!(drawn.seed, [0; 32]);
    let (status, body) = w.post_audit(&member_report.encode()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "committee", "{body}");
    w.resolve(&challenge, &[challenger], true).await;

    // A second challenge nobody judges: it expires and its account closes.
    let et = &w.tasks[expiring];
    let second_challenger = w.verifier(&et.plan.verifiers[0]);
    let second = w.open_challenge(second_challenger, et).await;
    w.expire(&second).await;

    let slashed = NODE_STAKE / 2;
    let to_challenger = 10 * TOKEN + slashed / 5;
    wait_for(60, "both challenges indexed to their end", || async {
        let list: serde_json::Value = get_json(&http, &w.base, "/v1/challenges").await;
        let find = |addr: &Pubkey| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|c| c["address"] == addr.to_string())
                .cloned()
        };
        let (Some(a), Some(b)) = (find(&challenge), find(&second)) else {
            return false;
        };
        a["status"] == "upheld"
            && a["voters"] == serde_json::json!([challenger.pubkey().to_string()])
            && a["slashed"] == slashed
            && a["to_challenger"] == to_challenger
            && b["status"] == "expired"
    })
    .await;
    let list: serde_json::Value = get_json(&http, &w.base, "/v1/challenges").await;
    let upheld = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == challenge.to_string())
        .unwrap();
    assert_eq!(upheld["accused"], w.env.nodes[0].pubkey().to_string());
    assert_eq!(upheld["challenger"], challenger.pubkey().to_string());
    assert_eq!(upheld["task_id"], hex::encode(ft.receipt.body.task_id));
    assert_eq!(upheld["batch_id"], ft.batch_id);
    assert_eq!(upheld["leaf_index"], ft.leaf_index);
    assert_eq!(upheld["seed_drawn"], true);
    assert!(upheld["signature"].is_string(), "{upheld}");
    let mut committee: Vec<String> = upheld["committee"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    committee.sort();
    let mut everyone: Vec<String> = w.verifiers.iter().map(|v| v.pubkey().to_string()).collect();
    everyone.sort();
    assert_eq!(committee, everyone, "equal stakes: all three sit");
    let by_task: serde_json::Value = get_json(
        &http,
        &w.base,
        &format!(
            "/v1/challenges?task={}",
            hex::encode(et.receipt.body.task_id)
        ),
    )
    .await;
    assert_eq!(by_task.as_array().unwrap().len(), 1);
    assert_eq!(by_task[0]["status"], "expired");
    assert_eq!(by_task[0]["seed_drawn"], false);
    let node = w
        .env
        .rpc
        .node(&w.env.nodes[0].pubkey())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(node.slashed_total, slashed);

    // Rewards, exactly: the node for its work; each verifier for its paid
    // audits (not the flagged pair, not UnknownModel, not the committee
    // report); the one voter for the verdict. Silent members get nothing.
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    expected.insert(
        w.env.nodes[0].pubkey().to_string(),
        40 * 32 * REWARD_PER_WORK_UNIT,
    );
    for v in &w.verifiers {
        let mut e = paid.get(&v.pubkey()).copied().unwrap_or(0) * PER_AUDIT;
        if v.pubkey() == challenger.pubkey() {
            e += COMMITTEE_REWARD;
        }
        expected.insert(v.pubkey().to_string(), e);
    }
    wait_for(
        60,
        "a reward epoch paying exactly the audits and the vote",
        || async {
            for (op, want) in &expected {
                let r = http
                    .get(format!("{}/v1/rewards/{op}", w.base))
                    .send()
                    .await
                    .unwrap();
                if !r.status().is_success()
                    || r.json::<Value>().await.unwrap()["cumulative"] != *want
                {
                    return false;
                }
            }
            true
        },
    )
    .await;

    // Durable: a restarted relayer serves the same reports and challenges.
    let AuditWorld {
        env, relayer, dir, ..
    } = w;
    relayer.shutdown().await;
    let relayer = Relayer::start(env.relayer_config(dir.path(), REWARD_PER_WORK_UNIT))
        .await
        .unwrap();
    let base = relayer.http_url().to_string();
    let both: serde_json::Value =
        get_json(&http, &base, &format!("/v1/audits?task={task_hex}")).await;
    assert_eq!(both.as_array().unwrap().len(), 2);
    assert!(both
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["flagged"] == true));
    let list: serde_json::Value = get_json(&http, &base, "/v1/challenges").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    relayer.shutdown().await;
}
