//! Commands that read the relayer's HTTP API and check it against the chain:
//! `strata audit` (a receipt, its signatures, its leaf and its Merkle proof
//! against the on-chain batch root; then the task's audit state: whether the
//! audit rules audit it and whom they assign, recomputed from the chain, the
//! verifiers' reports the relayer holds, and any challenge against it) and
//! `strata claim` (a node's reward proof, sent as `claim_rewards`). A
//! pipelined task, which has hop receipts instead of one receipt, is audited
//! by [`crate::pipeline`]. The
//! relayer is never trusted: every hash is recomputed from the raw receipt,
//! and roots and assignments come from the chain.

use anyhow::{anyhow, bail, Context};
use serde::de::DeserializeOwned;
use strata_chain::accounts::{Batch, ClaimRecord};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::rpc::ChainClient;
use strata_chain::{ix, pda, ChainError, Keypair, Pubkey, Signer};
use strata_wire::api::{AuditView, ChallengeView, ErrorResponse, ReceiptView, RewardProofView};
use strata_wire::{hex32, parse_hex32, Receipt, MAX_RECEIPT_BYTES};

use crate::chain;
use crate::output::{Output, Report};
use strata_chain::amount::format_tokens;

/// Default `--relayer`.
pub const DEFAULT_RELAYER: &str = "http://127.0.0.1:8788";

/// GETs `path` from the relayer: `None` on 404, an error with the relayer's
/// message on any other failure.
async fn fetch<T: DeserializeOwned>(relayer: &str, path: &str) -> anyhow::Result<Option<T>> {
    let url = format!("{}{path}", relayer.trim_end_matches('/'));
    let response = reqwest::get(&url).await.map_err(|e| {
        anyhow!("could not reach the relayer at {relayer} ({e}); is it running? pass --relayer URL")
    })?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        let message = response
            .json::<ErrorResponse>()
            .await
            .map(|e| e.error)
            .unwrap_or_else(|_| status.to_string());
        bail!("the relayer at {relayer} answered {status}: {message}");
    }
    let value = response.json().await.with_context(|| {
        format!("the relayer at {relayer} sent an unreadable answer for {path}")
    })?;
    Ok(Some(value))
}

fn hashes(list: &[String], what: &str) -> anyhow::Result<Vec<[u8; 32]>> {
    list.iter()
        .map(|h| parse_hex32(h).map_err(|e| anyhow!("{what}: {e}")))
        .collect()
}

/// One check of an audit: its name, whether it held, and what it compared.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

/// `strata audit TASK_ID`.
pub async fn audit(
    client: &ChainClient,
    relayer: &str,
    task_id: &str,
    out: Output,
) -> anyhow::Result<()> {
    let id = parse_hex32(task_id)
        .map_err(|_| anyhow!("{task_id:?} is not a task id (64 hex characters)"))?;
    let Some(view) = fetch::<ReceiptView>(relayer, &format!("/v1/receipts/{}", hex32(&id))).await?
    else {
        // A pipelined task has no receipt of its own: its hops have.
        let listing = fetch::<crate::pipeline::TaskListing>(relayer, &format!("/v1/tasks/{}", hex32(&id)))
            .await?
            .ok_or_else(|| {
                anyhow!(
                    "the relayer at {relayer} has no receipt for task {} (nor hop receipts of a pipelined task)",
                    hex32(&id)
                )
            })?;
        return crate::pipeline::audit_task(client, &id, listing, out).await;
    };
    let raw =
        hex::decode(&view.raw).map_err(|e| anyhow!("the relayer's raw receipt is not hex: {e}"))?;
    let receipt: Receipt = strata_wire::decode(&raw, MAX_RECEIPT_BYTES)
        .map_err(|e| anyhow!("the relayer's raw receipt does not decode: {e}"))?;
    let b = &receipt.body;
    let node = Pubkey::from(b.node);
    let digest = b.digest();
    let leaf = receipt.leaf();
    let mut checks = Vec::new();
    checks.push(Check {
        name: "task",
        ok: b.task_id == id,
        detail: hex32(&b.task_id),
    });
    let node_signed = receipt.verify_signature().is_ok();
    checks.push(Check {
        name: "node signature",
        ok: node_signed,
        detail: format!("signed by node {node}"),
    });
    let v = &b.voucher;
    checks.push(Check {
        name: "voucher",
        ok: v.verify().is_ok() && v.node == b.node && v.cumulative >= b.price,
        detail: format!(
            "signed by client {}, pays node {}, cumulative {} covers price {}",
            v.client_key(),
            v.node_key(),
            format_tokens(v.cumulative),
            format_tokens(b.price)
        ),
    });
    checks.push(Check {
        name: "digest",
        ok: hex32(&digest) == view.digest,
        detail: hex32(&digest),
    });
    checks.push(Check {
        name: "leaf",
        ok: hex32(&leaf) == view.leaf,
        detail: hex32(&leaf),
    });
    let mut batch_tx = None;
    let mut batch_id = None;
    let mut sealed_batch = None;
    match &view.batch {
        None => checks.push(Check {
            name: "proof",
            ok: false,
            detail: "not in a batch yet (the relayer batches receipts every few seconds)".into(),
        }),
        Some(inclusion) => {
            batch_id = Some(inclusion.batch_id);
            batch_tx = inclusion.post_signature.clone();
            let onchain: Option<Batch> = client
                .account(&pda::batch(inclusion.batch_id), "batch")
                .await
                .map_err(chain::explain)?;
            let proof = hashes(&inclusion.proof, "proof")?;
            sealed_batch.clone_from(&onchain);
            let (ok, detail) = match onchain {
                None => (
                    false,
                    format!("batch {} is not on-chain (yet)", inclusion.batch_id),
                ),
                Some(batch) => (
                    merkle::verify::<Ledger>(
                        &batch.root,
                        leaf,
                        u64::from(inclusion.leaf_index),
                        u64::from(batch.task_count),
                        &proof,
                    )
                    .is_ok(),
                    format!(
                        "leaf {} of {} against on-chain batch {} root {}",
                        inclusion.leaf_index,
                        batch.task_count,
                        inclusion.batch_id,
                        hex32(&batch.root)
                    ),
                ),
            };
            checks.push(Check {
                name: "proof",
                ok,
                detail,
            });
        }
    }
    let mut report = Report::new();
    for c in &checks {
        let mark = if c.ok { "✓" } else { "✗" };
        report = report.field(
            &c.name.replace(' ', "_"),
            serde_json::json!({ "ok": c.ok, "detail": c.detail }),
            format!("{mark} {}", c.detail),
        );
    }
    report = report.field(
        "batch_tx",
        serde_json::json!(batch_tx),
        batch_tx.clone().unwrap_or_else(|| "unknown".into()),
    );
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    report = report.field(
        "verified",
        failed.is_empty(),
        if failed.is_empty() { "yes" } else { "NO" },
    );
    let (json, human) = assignment(client, sealed_batch.as_ref(), &leaf, &node).await;
    report = report.field("audit", json, human);
    let task = hex32(&id);
    let (json, human) = listed(
        fetch::<Vec<AuditView>>(relayer, &format!("/v1/audits?task={task}")).await,
        describe_report,
    );
    report = report.field("audit_reports", json, human);
    let (json, human) = listed(
        fetch::<Vec<ChallengeView>>(relayer, &format!("/v1/challenges?task={task}")).await,
        describe_challenge,
    );
    report = report.field("challenges", json, human);
    out.report(&report);
    if let Some(first) = failed.first() {
        bail!(
            "audit of task {} failed: {} does not match ({}){}",
            hex32(&id),
            first.name,
            first.detail,
            batch_id.map(|b| format!(", batch {b}")).unwrap_or_default()
        );
    }
    Ok(())
}

/// What the audit rules say about the receipt with `leaf` served by `node`,
/// recomputed from the chain (the sealed batch, the config and the
/// registered nodes): JSON and a line for people. Never fails the command:
/// what cannot be known yet, or read, is said instead.
async fn assignment(
    client: &ChainClient,
    batch: Option<&Batch>,
    leaf: &[u8; 32],
    node: &Pubkey,
) -> (serde_json::Value, String) {
    let undecided = |why: String| {
        (
            serde_json::json!({ "decided": false, "audited": null, "verifiers": [], "why": why }),
            format!("not decided: {why}"),
        )
    };
    let Some(batch) = batch else {
        return undecided("the receipt is not in an on-chain batch yet".into());
    };
    if batch.audit_seed == [0; 32] {
        return undecided(format!(
            "batch {} is not sealed yet (its audit seed comes from a slot after it was posted)",
            batch.id
        ));
    }
    let read = async {
        let config = client.config().await?;
        let nodes = client.registered_nodes().await?;
        Ok::<_, ChainError>((config, nodes))
    };
    let (config, nodes) = match read.await {
        Ok(x) => x,
        Err(e) => return undecided(format!("the chain could not be read ({e})")),
    };
    // Only the decision and the verifiers: no layers or steps to draw.
    let Some(plan) = strata_chain::audit::plan(&config, batch, leaf, node, &nodes, 0, 0) else {
        return undecided(format!("batch {} is not sealed yet", batch.id));
    };
    let rate = f64::from(config.params.audit_rate_bps) / 100.0;
    let verifiers: Vec<String> = plan.verifiers.iter().map(|v| v.to_string()).collect();
    let human = if !plan.audited {
        format!("not audited (audit rate {rate} %)")
    } else if verifiers.is_empty() {
        format!("audited (rate {rate} %), but no verifier is eligible")
    } else {
        format!(
            "audited (rate {rate} %), assigned to {}",
            verifiers.join(" and ")
        )
    };
    (
        serde_json::json!({
            "decided": true,
            "audited": plan.audited,
            "verifiers": verifiers,
            "rate_bps": config.params.audit_rate_bps,
        }),
        human,
    )
}

/// A list the relayer serves, as JSON and one line for people (`none`, or
/// the items joined by `; `). A relayer without the route (404) has none; a
/// failed read is said, not fatal: the receipt's own checks stand.
fn listed<T: serde::Serialize>(
    fetched: anyhow::Result<Option<Vec<T>>>,
    describe: fn(&T) -> String,
) -> (serde_json::Value, String) {
    match fetched {
        Ok(list) => {
            let list = list.unwrap_or_default();
            let human = if list.is_empty() {
                "none".to_string()
            } else {
                list.iter().map(describe).collect::<Vec<_>>().join("; ")
            };
            (serde_json::json!(list), human)
        }
        Err(e) => (
            serde_json::json!({ "error": e.to_string() }),
            format!("unknown ({e})"),
        ),
    }
}

/// One report, for people: `passed by KEY`, `failed (layer 3) by KEY`, with
/// its role and flag when they matter.
fn describe_report(r: &AuditView) -> String {
    let outcome = match &r.check {
        Some(check) => format!("failed ({check})"),
        None => r.outcome.clone(),
    };
    let mut line = format!("{outcome} by {}", r.verifier);
    if r.role == "committee" {
        line.push_str(" (committee)");
    }
    if let Some(flag) = &r.flag {
        line.push_str(&format!(" [flagged: {flag}]"));
    }
    line
}

/// One challenge, for people.
fn describe_challenge(c: &ChallengeView) -> String {
    let mut line = format!("{} by {}", c.status, c.challenger);
    if c.status == "upheld" {
        line.push_str(&format!(", slashed {}", format_tokens(c.slashed)));
    }
    if !c.voters.is_empty() {
        line.push_str(&format!(", {} voter(s)", c.voters.len()));
    }
    if c.status == "open" && !c.seed_drawn {
        line.push_str(", committee not drawn yet");
    }
    line
}

/// `strata claim`.
pub async fn claim(
    client: &ChainClient,
    operator: &Keypair,
    relayer: &str,
    out: Output,
) -> anyhow::Result<()> {
    let me = operator.pubkey();
    let proof: RewardProofView = fetch(relayer, &format!("/v1/rewards/{me}"))
        .await?
        .ok_or_else(|| anyhow!("the relayer at {relayer} has published no rewards for {me} yet"))?;
    let claimed = client
        .account::<ClaimRecord>(&pda::claim_record(&me), "claim record")
        .await
        .map_err(chain::explain)?
        .map_or(0, |c| c.claimed);
    let nothing = |claimed: u64| {
        Report::new()
            .text("operator", me)
            .field("paid", 0u64, "0 (nothing to claim)")
            .field(
                "cumulative",
                proof.cumulative,
                format_tokens(proof.cumulative),
            )
            .field("claimed", claimed, format_tokens(claimed))
    };
    if proof.cumulative <= claimed {
        out.report(&nothing(claimed));
        return Ok(());
    }
    let config = chain::config(client).await?;
    let (ata, create) = chain::token_account(operator, &config);
    let claim = ix::claim_rewards(
        &me,
        &ata,
        proof.epoch,
        proof.cumulative,
        proof.leaf_index,
        hashes(&proof.proof, "reward proof")?,
    );
    match client.send(&[create, claim], operator, &[]).await {
        Ok(sig) => {
            // The program pays what the epoch's limit and the pool allow and
            // carries the rest, so what was paid is read back from the chain.
            let now_claimed = client
                .account::<ClaimRecord>(&pda::claim_record(&me), "claim record")
                .await
                .map_err(chain::explain)?
                .map_or(proof.cumulative, |c| c.claimed);
            let paid = now_claimed.saturating_sub(claimed);
            out.report(
                &Report::new()
                    .text("operator", me)
                    .field("paid", paid, format_tokens(paid))
                    .field(
                        "cumulative",
                        proof.cumulative,
                        format_tokens(proof.cumulative),
                    )
                    .number("epoch", proof.epoch)
                    .text("signature", sig),
            );
            Ok(())
        }
        Err(ChainError::Program { name, .. }) if name == "NothingToClaim" => {
            out.report(&nothing(proof.cumulative));
            Ok(())
        }
        Err(e) => Err(chain::explain(e)),
    }
}
