//! The verification network measured on a live local testnet, in two phases
//! (`strata-audit-campaign`):
//!
//! 1. **Detection**: for each cheating mode, a testnet of one honest node
//!    and one node cheating that way serves paid tasks through the gateway
//!    while three verifiers audit every task (audit rate 100 %, so that each
//!    mode is audited often in minutes; the share of audited tasks that are
//!    detected does not depend on the rate).
//!    Per node: tasks served, tasks audited, tasks detected, the median time
//!    from the task's end to the slash (seconds and slots), stake lost.
//! 2. **Cost**: honest nodes serve under the default audit rate, and the
//!    verifiers' CPU time is compared with the nodes' serving CPU time
//!    (both measured per thread: the engines run on their own threads).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use strata_chain::accounts::ChallengeStatus;
use strata_chain::{Pubkey, Signer};
use strata_node::cheat::Cheat;
use strata_wire::api::AuditView;

use crate::local::{LocalOptions, LocalTestnet};
use crate::network::DEMO_API_KEY;

/// What a campaign runs.
#[derive(Debug, Clone)]
pub struct CampaignOptions {
    /// Tasks each node should serve in the detection phase (at least).
    pub detection_tasks: usize,
    /// Tasks served in the cost phase.
    pub cost_tasks: usize,
    /// Tokens generated per task.
    pub max_tokens: u32,
    /// How long to wait for audits and challenges to settle after the load.
    pub settle: Duration,
}

/// One node's line of the detection table.
#[derive(Debug, Clone, Default)]
pub struct DetectionRow {
    /// `honest` or the cheating mode.
    pub mode: String,
    /// Tasks it served.
    pub served: usize,
    /// Of those, tasks whose assigned verifier reported.
    pub audited: usize,
    /// Of those, tasks reported failed.
    pub detected: usize,
    /// Challenges upheld against it.
    pub upheld: usize,
    /// Median seconds from a task's end to the slash it caused.
    pub median_secs_to_slash: Option<f64>,
    /// Median slots from a task's end to the slash it caused.
    pub median_slots_to_slash: Option<u64>,
    /// Stake lost, base units.
    pub stake_lost: u64,
}

/// What the cost phase measured.
#[derive(Debug, Clone, Default)]
pub struct CostReport {
    /// Tasks served.
    pub tasks: usize,
    /// Tasks audited (assigned reports).
    pub audited: usize,
    /// CPU the nodes spent serving, microseconds.
    pub serving_cpu_micros: u64,
    /// CPU the verifiers spent auditing, microseconds.
    pub verifier_cpu_micros: u64,
    /// CPU the nodes spent re-deriving states for openings, microseconds.
    pub opening_cpu_micros: u64,
    /// The audit rate in force, basis points.
    pub audit_rate_bps: u16,
}

struct Served {
    node: Pubkey,
    done: Instant,
    slot: u64,
}

/// Phase 1; see the module docs. Each cheating mode runs on a testnet of its
/// own beside one honest node (two nodes share the gateway's load evenly);
/// the honest node's line adds up its runs.
pub async fn detection(dir: &Path, o: &CampaignOptions) -> anyhow::Result<Vec<DetectionRow>> {
    let mut honest = DetectionRow {
        mode: "honest".into(),
        ..DetectionRow::default()
    };
    let mut rows = Vec::new();
    for cheat in Cheat::ALL {
        let (h, c) = detect_one(&dir.join(cheat.name()), cheat, o).await?;
        honest.served += h.served;
        honest.audited += h.audited;
        honest.detected += h.detected;
        honest.upheld += h.upheld;
        honest.stake_lost += h.stake_lost;
        rows.push(c);
    }
    rows.insert(0, honest);
    Ok(rows)
}

/// One honest node and one node cheating with `cheat`; their two rows.
async fn detect_one(
    dir: &Path,
    cheat: Cheat,
    o: &CampaignOptions,
) -> anyhow::Result<(DetectionRow, DetectionRow)> {
    let mut options = LocalOptions::ephemeral(dir);
    options.nodes = 2;
    options.verifiers = 3;
    options.network.cheats = vec![cheat];
    options.network.verifier_poll = Duration::from_millis(300);
    options.network.verifier_opening_timeout = Duration::from_secs(15);
    options.genesis.params.audit_rate_bps = 10_000;
    let node_stake = options.network.node_stake;
    let t = LocalTestnet::start(dir, options)
        .await
        .context("starting the testnet")?;
    let (honest, cheater) = (t.keys.nodes[0].pubkey(), t.keys.nodes[1].pubkey());
    let mut served: HashMap<String, Served> = HashMap::new();
    let mut upheld_seen: HashMap<[u8; 32], (Instant, u64)> = HashMap::new();
    let started = Instant::now();
    while [honest, cheater]
        .iter()
        .any(|n| served.values().filter(|s| s.node == *n).count() < o.detection_tasks)
        && started.elapsed() < Duration::from_secs(600)
    {
        for (task, node) in round(&t, 4, o.max_tokens).await {
            let slot = t.rpc.slot().await.unwrap_or(0);
            served.insert(
                task,
                Served {
                    node,
                    done: Instant::now(),
                    slot,
                },
            );
        }
        watch_upheld(&t, &mut upheld_seen).await;
    }
    // Settle: until no challenge has been open, and none upheld, for a while.
    let deadline = Instant::now() + o.settle;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        let before = upheld_seen.len();
        watch_upheld(&t, &mut upheld_seen).await;
        let open = t.rpc.challenges().await.map_or(1, |c| {
            c.iter()
                .filter(|(_, c)| c.status == ChallengeStatus::Open)
                .count()
        });
        if open > 0 || upheld_seen.len() != before {
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let audits = assigned_audits(&t).await?;
    let challenges = t.rpc.challenges().await?;
    let mut out = Vec::new();
    for (node, mode) in [(honest, "honest".to_string()), (cheater, cheat.to_string())] {
        let mut row = DetectionRow {
            mode,
            served: served.values().filter(|s| s.node == node).count(),
            ..DetectionRow::default()
        };
        let mine: Vec<&AuditView> = audits
            .values()
            .filter(|a| a.node == node.to_string())
            .collect();
        row.audited = mine.len();
        row.detected = mine.iter().filter(|a| a.outcome == "failed").count();
        let mut secs = Vec::new();
        let mut slots = Vec::new();
        for (_, c) in challenges
            .iter()
            .filter(|(_, c)| c.node == node && c.status == ChallengeStatus::Upheld)
        {
            row.upheld += 1;
            let task = hex::encode(c.task_id);
            if let (Some(s), Some((at, slot))) = (served.get(&task), upheld_seen.get(&c.task_id)) {
                secs.push(at.duration_since(s.done).as_secs_f64());
                slots.push(slot.saturating_sub(s.slot));
            }
        }
        row.median_secs_to_slash = median_f64(&mut secs);
        slots.sort_unstable();
        row.median_slots_to_slash = slots.get(slots.len() / 2).copied();
        let n = t.rpc.node(&node).await?.context("node record")?;
        row.stake_lost = node_stake.saturating_sub(n.stake + n.unbonding);
        out.push(row);
    }
    t.shutdown().await;
    let cheater_row = out.pop().context("two rows")?;
    let honest_row = out.pop().context("two rows")?;
    Ok((honest_row, cheater_row))
}

/// Phase 2; see the module docs.
pub async fn cost(dir: &Path, o: &CampaignOptions) -> anyhow::Result<CostReport> {
    let mut options = LocalOptions::ephemeral(dir);
    options.nodes = 3;
    options.verifiers = 3;
    options.network.verifier_poll = Duration::from_millis(500);
    let audit_rate_bps = options.genesis.params.audit_rate_bps;
    let t = LocalTestnet::start(dir, options)
        .await
        .context("starting the testnet")?;
    let mut tasks = 0;
    while tasks < o.cost_tasks {
        tasks += round(&t, 8, o.max_tokens).await.len();
    }
    // Wait for the last batches to be posted, sealed and audited: until the
    // verifiers' audit counts stop moving.
    let mut last = (u64::MAX, Instant::now());
    let deadline = Instant::now() + o.settle;
    while Instant::now() < deadline {
        let n: u64 = t.net.verifiers.iter().map(|v| v.stats().audits()).sum();
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(15) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let report = CostReport {
        tasks,
        audited: assigned_audits(&t).await?.len(),
        serving_cpu_micros: t
            .net
            .nodes
            .iter()
            .map(|n| n.service.serving_cpu_micros())
            .sum(),
        verifier_cpu_micros: t
            .net
            .verifiers
            .iter()
            .map(|v| v.stats().audit_cpu_micros)
            .sum(),
        opening_cpu_micros: t.net.nodes.iter().map(|n| n.openings.cpu_micros()).sum(),
        audit_rate_bps,
    };
    t.shutdown().await;
    Ok(report)
}

/// `n` concurrent paid completions; returns (task id, serving node) of each
/// that succeeded.
async fn round(t: &LocalTestnet, n: usize, max_tokens: u32) -> Vec<(String, Pubkey)> {
    let http = reqwest::Client::new();
    let calls = (0..n).map(|i| {
        http.post(format!("{}/v1/completions", t.net.gateway.url()))
            .bearer_auth(DEMO_API_KEY)
            .json(&serde_json::json!({
                "model": crate::MODEL_NAME,
                "prompt": format!("Task {i} at {:?}: write one short sentence about rivers.", Instant::now()),
                "max_tokens": max_tokens,
                "temperature": 0.7,
                "seed": i as u64,
            }))
            .send()
    });
    let mut out = Vec::new();
    for r in futures::future::join_all(calls).await {
        let Ok(r) = r else { continue };
        let Ok(v) = r.json::<serde_json::Value>().await else {
            continue;
        };
        let (Some(task), Some(node)) = (
            v["strata"]["task_id"].as_str(),
            v["strata"]["node"]
                .as_str()
                .and_then(|n| n.parse::<Pubkey>().ok()),
        ) else {
            continue;
        };
        out.push((task.to_string(), node));
    }
    out
}

/// Records when each upheld challenge was first seen (time and slot).
async fn watch_upheld(t: &LocalTestnet, seen: &mut HashMap<[u8; 32], (Instant, u64)>) {
    let Ok(challenges) = t.rpc.challenges().await else {
        return;
    };
    let slot = t.rpc.slot().await.unwrap_or(0);
    for (_, c) in challenges {
        if c.status == ChallengeStatus::Upheld {
            seen.entry(c.task_id).or_insert((Instant::now(), slot));
        }
    }
}

/// The assigned verifiers' reports, one per task (the first).
async fn assigned_audits(t: &LocalTestnet) -> anyhow::Result<BTreeMap<String, AuditView>> {
    let url = format!("{}/v1/audits?limit=500", t.net.relayer.http_url());
    let list: Vec<AuditView> = reqwest::get(url).await?.json().await?;
    let mut out = BTreeMap::new();
    for a in list.into_iter().filter(|a| a.role == "assigned") {
        out.entry(a.task_id.clone()).or_insert(a);
    }
    Ok(out)
}

fn median_f64(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}
