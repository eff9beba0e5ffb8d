//! Read-only commands: `status node|config|escrow` and `balance`. Amounts are
//! token base units in JSON and decimal tokens in text.

use anyhow::anyhow;
use serde_json::json;
use strata_chain::accounts::{Config, Escrow, Node};
use strata_chain::rpc::ChainClient;
use strata_chain::{pda, Pubkey};

use crate::chain;
use crate::node::role_names;
use crate::output::{Output, Report};
use strata_chain::amount::{format_sol, format_tokens};

fn tokens(report: Report, name: &str, amount: u64) -> Report {
    report.field(name, amount, format_tokens(amount))
}

/// A node's record as a report.
pub fn node_report(node: &Node) -> Report {
    let roles = role_names(node.roles);
    let report = Report::new()
        .text("address", pda::node(&node.operator))
        .text("operator", node.operator)
        .field("roles", json!(roles), roles.join(", "))
        .field(
            "memory_mb",
            node.capacity.memory_mb,
            format!("{} MiB", node.capacity.memory_mb),
        )
        .number("compute_score", node.capacity.compute_score)
        .field(
            "bandwidth_mbps",
            node.capacity.bandwidth_mbps,
            format!("{} Mbit/s", node.capacity.bandwidth_mbps),
        )
        .field(
            "multiaddrs",
            json!(node.multiaddrs),
            node.multiaddrs.join(" "),
        );
    let report = tokens(report, "stake", node.stake);
    let report = tokens(report, "unbonding", node.unbonding);
    let report = report
        .field(
            "unbonding_ends",
            node.unbonding_ends,
            unix_time(node.unbonding_ends),
        )
        .number("open_challenges", node.open_challenges);
    tokens(report, "slashed_total", node.slashed_total).field(
        "registered_at",
        node.registered_at,
        unix_time(node.registered_at),
    )
}

/// The config as a report.
pub fn config_report(config: &Config) -> Report {
    let p = &config.params;
    let secs = |s: i64| format!("{s} s");
    let bps = |b: u16| format!("{b} bps ({}%)", f64::from(b) / 100.0);
    let report = Report::new()
        .text("address", pda::config())
        .text("admin", config.admin)
        .text("reward_authority", config.reward_authority)
        .text("mint", config.mint)
        .text("vault", config.vault);
    let report = tokens(report, "min_stake", p.min_stake)
        .field(
            "unbonding_period",
            p.unbonding_period,
            secs(p.unbonding_period),
        )
        .field("epoch_length", p.epoch_length, secs(p.epoch_length))
        .field("audit_rate_bps", p.audit_rate_bps, bps(p.audit_rate_bps))
        .field("slash_bps", p.slash_bps, bps(p.slash_bps))
        .field(
            "challenger_share_bps",
            p.challenger_share_bps,
            bps(p.challenger_share_bps),
        )
        .field(
            "challenge_window",
            p.challenge_window,
            secs(p.challenge_window),
        );
    let report = tokens(report, "challenge_bond", p.challenge_bond)
        .field(
            "verdict_timeout",
            p.verdict_timeout,
            secs(p.verdict_timeout),
        )
        .number("verifier_quorum", p.verifier_quorum)
        .number("committee_size", p.committee_size)
        .field(
            "protocol_fee_bps",
            p.protocol_fee_bps,
            bps(p.protocol_fee_bps),
        );
    let report = tokens(report, "epoch_reward_cap", p.epoch_reward_cap)
        .field(
            "escrow_withdraw_delay",
            p.escrow_withdraw_delay,
            secs(p.escrow_withdraw_delay),
        )
        .field(
            "genesis_ts",
            config.genesis_ts,
            unix_time(config.genesis_ts),
        )
        .number("next_batch_id", config.next_batch_id)
        .number("last_reward_epoch", config.last_reward_epoch);
    let report = tokens(report, "total_stake", config.total_stake);
    let report = tokens(report, "total_verifier_stake", config.total_verifier_stake);
    let report = tokens(report, "total_escrow", config.total_escrow);
    let report = tokens(report, "reward_pool", config.reward_pool);
    tokens(report, "bonds_held", config.bonds_held)
        .number("total_tasks", config.total_tasks)
        .number("total_work_units", config.total_work_units)
}

/// An escrow as a report.
pub fn escrow_report(escrow: &Escrow) -> Report {
    let report = Report::new()
        .text("address", pda::escrow(&escrow.client))
        .text("client", escrow.client);
    let report = tokens(report, "balance", escrow.balance);
    let report = tokens(report, "pending_withdrawal", escrow.pending_withdrawal).field(
        "withdraw_after",
        escrow.withdraw_after,
        unix_time(escrow.withdraw_after),
    );
    tokens(report, "total_paid", escrow.total_paid)
}

fn unix_time(ts: i64) -> String {
    if ts == 0 {
        "-".into()
    } else {
        format!("{ts} (unix)")
    }
}

/// `strata status node [PUBKEY]`.
pub async fn node(client: &ChainClient, operator: &Pubkey, out: Output) -> anyhow::Result<()> {
    let node = chain::registered_node(client, operator).await?;
    out.report(&node_report(&node));
    Ok(())
}

/// `strata status config`.
pub async fn config(client: &ChainClient, out: Output) -> anyhow::Result<()> {
    out.report(&config_report(&chain::config(client).await?));
    Ok(())
}

/// `strata status escrow [PUBKEY]`.
pub async fn escrow(client: &ChainClient, owner: &Pubkey, out: Output) -> anyhow::Result<()> {
    let escrow = client
        .escrow(owner)
        .await
        .map_err(chain::explain)?
        .ok_or_else(|| {
            anyhow!("{owner} has no escrow (it is created by the first `strata deposit`)")
        })?;
    out.report(&escrow_report(&escrow));
    Ok(())
}

/// `strata balance [PUBKEY]`: SOL, and the Strata token balance when the
/// program is set up on this cluster.
pub async fn balance(client: &ChainClient, owner: &Pubkey, out: Output) -> anyhow::Result<()> {
    let lamports = client.lamports(owner).await.map_err(chain::explain)?;
    let report =
        Report::new()
            .text("pubkey", owner)
            .field("lamports", lamports, format_sol(lamports));
    let config = chain::config(client).await?;
    let ata = pda::associated_token(owner, &config.mint);
    let tokens_held = client.token_balance(&ata).await.map_err(chain::explain)?;
    let report = report
        .text("mint", config.mint)
        .text("token_account", ata)
        .field("tokens", tokens_held, format_tokens(tokens_held));
    out.report(&report);
    Ok(())
}
