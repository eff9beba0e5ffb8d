//! `strata audit TASK` for a pipelined task: the relayer lists the task's
//! hop receipts (`GET /v1/tasks/{id}`); every one is decoded and verified
//! here (node and client signatures, its hop id, its own consistency), each
//! stored hop's Merkle proof is checked against its on-chain batch root, and
//! the links between consecutive hops (states handed on, neighbours named,
//! blocks continuing) are judged here, not taken from the relayer.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Deserialize;
use strata_chain::accounts::Batch;
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::rpc::ChainClient;
use strata_chain::{pda, Pubkey};
use strata_wire::api::BatchInclusion;
use strata_wire::{hex32, parse_hex32, Receipt, MAX_RECEIPT_BYTES};

use crate::chain;
use crate::output::{Output, Report};
use strata_chain::amount::format_tokens;

/// What this command reads of the relayer's task listing (the rest it
/// recomputes from the raw receipts).
#[derive(Debug, Deserialize)]
pub struct TaskListing {
    segments: Vec<SegmentListing>,
    truncated: bool,
}

#[derive(Debug, Deserialize)]
struct SegmentListing {
    segment: u8,
    status: String,
    hops: Vec<HopListing>,
}

#[derive(Debug, Deserialize)]
struct HopListing {
    claim: String,
    raw: String,
    batch: Option<BatchInclusion>,
}

/// Why hop receipt `next` does not follow hop receipt `prev` in a route
/// (empty when it does).
fn link_problems(prev: &Receipt, next: &Receipt) -> Vec<String> {
    let (Some(a), Some(b)) = (&prev.body.hop, &next.body.hop) else {
        return vec!["not both hop receipts".into()];
    };
    let (k, j) = (a.index, b.index);
    let mut out = Vec::new();
    if b.input_states != a.output_states {
        out.push(format!(
            "hop {j}'s input states are not hop {k}'s output states"
        ));
    }
    if b.prev != prev.body.node {
        out.push(format!("hop {j} names another node as its previous hop"));
    }
    if a.next != next.body.node {
        out.push(format!("hop {k} names another node as its next hop"));
    }
    if b.start != a.end {
        out.push(format!(
            "blocks do not continue (hop {k} ends at {}, hop {j} starts at {})",
            a.end, b.start
        ));
    }
    if a.count != b.count || a.n_layers != b.n_layers {
        out.push(format!(
            "hops {k} and {j} disagree on the route or the model"
        ));
    }
    if prev.body.model_hash != next.body.model_hash {
        out.push(format!("hops {k} and {j} ran different models"));
    }
    out
}

/// One hop receipt as checked here.
struct Checked {
    stored: bool,
    receipt: Option<Receipt>,
    problems: Vec<String>,
    proof: Option<String>,
}

/// Checks one listed hop receipt of `task`'s segment `segment`.
async fn check_hop(
    client: &ChainClient,
    batches: &mut BTreeMap<u64, Option<Batch>>,
    task: &[u8; 32],
    segment: u8,
    hop: &HopListing,
) -> anyhow::Result<Checked> {
    let stored = hop.claim == "stored";
    let mut problems = Vec::new();
    let receipt = hex::decode(&hop.raw)
        .map_err(|e| e.to_string())
        .and_then(|raw| {
            strata_wire::decode::<Receipt>(&raw, MAX_RECEIPT_BYTES).map_err(|e| e.to_string())
        });
    let receipt = match receipt {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("the relayer's raw receipt does not decode: {e}"));
            return Ok(Checked {
                stored,
                receipt: None,
                problems,
                proof: None,
            });
        }
    };
    if let Err(e) = receipt.verify() {
        problems.push(e.to_string());
    }
    match &receipt.body.hop {
        Some(h) if h.task_id == *task && h.segment == segment => {}
        _ => problems.push("not a hop receipt of this task and segment".into()),
    }
    let mut proof = None;
    if stored {
        match &hop.batch {
            None => problems.push("not in a batch yet".into()),
            Some(inc) => {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    batches.entry(inc.batch_id)
                {
                    let onchain: Option<Batch> = client
                        .account(&pda::batch(inc.batch_id), "batch")
                        .await
                        .map_err(chain::explain)?;
                    slot.insert(onchain);
                }
                let siblings: Result<Vec<[u8; 32]>, _> =
                    inc.proof.iter().map(|h| parse_hex32(h)).collect();
                let ok = match (
                    batches.get(&inc.batch_id).and_then(|b| b.as_ref()),
                    siblings,
                ) {
                    (Some(batch), Ok(siblings)) => merkle::verify::<Ledger>(
                        &batch.root,
                        receipt.leaf(),
                        u64::from(inc.leaf_index),
                        u64::from(batch.task_count),
                        &siblings,
                    )
                    .is_ok(),
                    _ => false,
                };
                if !ok {
                    problems.push(format!(
                        "its proof does not reach on-chain batch {}'s root",
                        inc.batch_id
                    ));
                }
                proof = Some(format!(
                    "batch {} leaf {}{}",
                    inc.batch_id,
                    inc.leaf_index,
                    if ok { " ✓" } else { " ✗" }
                ));
            }
        }
    }
    Ok(Checked {
        stored,
        receipt: Some(receipt),
        problems,
        proof,
    })
}

/// `strata audit TASK` when `TASK` is a pipelined task the relayer listed.
pub async fn audit_task(
    client: &ChainClient,
    task: &[u8; 32],
    listing: TaskListing,
    out: Output,
) -> anyhow::Result<()> {
    let mut report = Report::new()
        .text("task", hex32(task))
        .text("kind", "pipelined");
    let mut batches = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let last_segment = listing.segments.iter().map(|s| s.segment).max();
    for seg in &listing.segments {
        let mut checked = Vec::with_capacity(seg.hops.len());
        for hop in &seg.hops {
            checked.push(check_hop(client, &mut batches, task, seg.segment, hop).await?);
        }
        // The chain of receipts stored under each hop's id, checked clean.
        let mut route: BTreeMap<u8, &Receipt> = BTreeMap::new();
        for c in &checked {
            if let (true, true, Some(r)) = (c.stored, c.problems.is_empty(), &c.receipt) {
                if let Some(h) = &r.body.hop {
                    route.insert(h.index, r);
                }
            }
        }
        let count = route
            .values()
            .filter_map(|r| r.body.hop.map(|h| h.count))
            .max()
            .unwrap_or(0);
        let missing: Vec<u8> = (0..count).filter(|k| !route.contains_key(k)).collect();
        let mut links = Vec::new();
        let mut broken_at = None;
        for to in 1..count {
            let (status, problems) = match (route.get(&(to - 1)), route.get(&to)) {
                (Some(a), Some(b)) => {
                    let p = link_problems(a, b);
                    if p.is_empty() {
                        ("linked", p)
                    } else {
                        broken_at.get_or_insert(to);
                        ("broken", p)
                    }
                }
                _ => ("incomplete", Vec::new()),
            };
            links.push((to, status, problems));
        }
        let status = match (broken_at, missing.is_empty()) {
            (Some(k), _) => format!("broken at hop {k}"),
            (None, false) => format!(
                "incomplete (no receipt for hop {})",
                missing
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (None, true) => "linked".to_string(),
        };
        let mut lines = vec![format!(
            "{status}, {count} hop(s) (the relayer says {})",
            seg.status
        )];
        let mut hops_json = Vec::new();
        for (k, c) in checked.iter().enumerate() {
            let hop = c.receipt.as_ref().and_then(|r| r.body.hop.map(|h| (r, h)));
            if let Some((r, h)) = hop {
                if h.index > 0 && c.stored {
                    if let Some((to, status, problems)) =
                        links.iter().find(|(to, _, _)| *to == h.index)
                    {
                        let mark = match *status {
                            "linked" => "✓".to_string(),
                            "broken" => format!("✗ {}", problems.join("; ")),
                            _ => "… a receipt is missing".to_string(),
                        };
                        lines.push(format!("    link {} → {to}  {mark}", to - 1));
                    }
                }
                let mark = if c.problems.is_empty() { "✓" } else { "✗" };
                lines.push(format!(
                    "  {mark} hop {} {}node {}  blocks {}–{} of {}  {} cells  price {}  receipt {}{}{}",
                    h.index,
                    if c.stored { "" } else { "(CONFLICTING CLAIM) " },
                    Pubkey::from(r.body.node),
                    h.start,
                    h.end,
                    h.n_layers,
                    h.cells,
                    format_tokens(r.body.price),
                    hex32(&r.body.task_id),
                    c.proof.as_ref().map(|p| format!("  {p}")).unwrap_or_default(),
                    if c.problems.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", c.problems.join("; "))
                    }
                ));
                hops_json.push(serde_json::json!({
                    "index": h.index,
                    "claim": if c.stored { "stored" } else { "conflicting" },
                    "node": Pubkey::from(r.body.node).to_string(),
                    "start": h.start,
                    "end": h.end,
                    "cells": h.cells,
                    "price": r.body.price,
                    "receipt_id": hex32(&r.body.task_id),
                    "ok": c.problems.is_empty(),
                    "problems": c.problems,
                }));
            } else {
                lines.push(format!("  ✗ listing entry {k}: {}", c.problems.join("; ")));
                hops_json.push(serde_json::json!({ "ok": false, "problems": c.problems }));
            }
            // A conflicting claim is reported, not counted against the
            // task: the stored receipts are what the links judge.
            if c.stored && !c.problems.is_empty() {
                failures.push(format!(
                    "segment {} hop {k}: {}",
                    seg.segment,
                    c.problems.join("; ")
                ));
            }
        }
        if let Some(k) = broken_at {
            failures.push(format!("segment {} is broken at hop {k}", seg.segment));
        } else if !missing.is_empty() && Some(seg.segment) == last_segment {
            // An earlier segment ended in a failover, so a hop of it may
            // never have sent a receipt; the last one must be whole.
            failures.push(format!("segment {} is {status}", seg.segment));
        }
        report = report.field(
            &format!("segment_{}", seg.segment),
            serde_json::json!({
                "status": if broken_at.is_some() { "broken" } else if missing.is_empty() { "linked" } else { "incomplete" },
                "broken_at": broken_at,
                "missing": missing,
                "relayer_status": seg.status,
                "hops": hops_json,
                "links": links.iter().map(|(to, status, problems)| serde_json::json!({
                    "to": to, "status": status, "problems": problems,
                })).collect::<Vec<_>>(),
            }),
            lines.join("\n"),
        );
    }
    if listing.truncated {
        report = report.field(
            "truncated",
            true,
            "yes: the relayer listed only part of the task's hop receipts",
        );
    }
    report = report.field(
        "verified",
        failures.is_empty(),
        if failures.is_empty() { "yes" } else { "NO" },
    );
    out.report(&report);
    if let Some(first) = failures.first() {
        bail!("audit of pipelined task {} failed: {first}", hex32(task));
    }
    Ok(())
}
