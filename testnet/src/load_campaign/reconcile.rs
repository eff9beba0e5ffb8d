//! The books after a campaign, checked against the chain and the relayer:
//!
//! 1. every task a client was told succeeded has exactly one receipt, in
//!    exactly one posted batch, whose Merkle proof leads to the root the
//!    chain holds for that batch, at the price the client was told;
//! 2. every (client, node) channel is redeemed on chain exactly to its
//!    latest voucher total, which is the sum of its receipts' prices;
//! 3. each client's escrow went down by exactly what its channels redeemed;
//! 4. the program's vault holds exactly what its ledgers say (stakes,
//!    escrows, reward pool, bonds), and what left the escrows during the
//!    run is what the nodes earned plus the fee the reward pool took;
//! 5. every charge the client was not told of belongs to a stream it walked
//!    away from (billed for what was generated) or to a request whose
//!    answer died with a killed gateway or node, or a cut link, after the
//!    node was paid (at-most-once delivery; reported apart): a charge for a
//!    request that failed outside any such fault is a problem.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_chain::accounts::{Channel, ClaimRecord};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::rpc::ChainClient;
use strata_chain::{pda, Keypair, Pubkey, Signer};
use strata_wire::api::{BatchView, ReceiptView};
use strata_wire::receipt::Receipt;

use super::load::{Outcome, Request};
use crate::TestnetKeys;

/// Balances read from the chain at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Escrow balance per client.
    pub escrows: BTreeMap<Pubkey, u64>,
    /// Token balance per operator (nodes and verifiers).
    pub tokens: BTreeMap<Pubkey, u64>,
    /// Stake per operator.
    pub stakes: BTreeMap<Pubkey, u64>,
    /// Claimed rewards per operator.
    pub claimed: BTreeMap<Pubkey, u64>,
    /// Slashed totals per operator.
    pub slashed: BTreeMap<Pubkey, u64>,
    /// The reward pool.
    pub reward_pool: u64,
}

impl Snapshot {
    /// Reads the balances of the campaign's clients and operators.
    pub async fn read(
        rpc: &ChainClient,
        mint: &Pubkey,
        keys: &TestnetKeys,
        clients: &[(String, Keypair, std::path::PathBuf)],
    ) -> anyhow::Result<Self> {
        let mut s = Snapshot::default();
        for c in std::iter::once(&keys.client).chain(clients.iter().map(|(_, k, _)| k)) {
            let e = rpc.escrow(&c.pubkey()).await?;
            s.escrows.insert(c.pubkey(), e.map_or(0, |e| e.balance));
        }
        for op in keys.nodes.iter().chain(&keys.verifiers).map(|k| k.pubkey()) {
            s.tokens.insert(
                op,
                rpc.token_balance(&pda::associated_token(&op, mint)).await?,
            );
            let node = rpc.node(&op).await?;
            s.stakes
                .insert(op, node.as_ref().map_or(0, |n| n.stake + n.unbonding));
            s.slashed
                .insert(op, node.as_ref().map_or(0, |n| n.slashed_total));
            let claim: Option<ClaimRecord> =
                rpc.account(&pda::claim_record(&op), "claim record").await?;
            s.claimed.insert(op, claim.map_or(0, |c| c.claimed));
        }
        s.reward_pool = rpc.config().await?.reward_pool;
        Ok(s)
    }
}

/// What the books came to.
#[derive(Debug, Clone, Default)]
pub struct Reconciliation {
    /// Tasks clients were told succeeded.
    pub served: usize,
    /// Of those, found exactly once in a posted batch, proof checked against the chain.
    pub served_on_chain: usize,
    /// Receipts in posted batches.
    pub receipts: usize,
    /// Posted batches, each root checked against the chain.
    pub batches: usize,
    /// Channels checked (redeemed == latest voucher == sum of receipts).
    pub channels: usize,
    /// Sum of every receipt's price, base units.
    pub charged: u64,
    /// What left the clients' escrows during the run.
    pub escrow_out: u64,
    /// What the nodes earned from redemptions during the run.
    pub node_earnings: u64,
    /// Fees the reward pool took during the run.
    pub fees: u64,
    /// Rewards claimed during the run (out of the pool).
    pub claimed: u64,
    /// Charges the clients were not told of.
    pub unmatched_charges: usize,
    /// What the charges no client was told of were, by the request of the
    /// same client running when the node finished them (`abandoned stream`,
    /// a failure's class, or `no request running`).
    pub unmatched_by: BTreeMap<String, usize>,
    /// Streams clients walked away from.
    pub cancelled: usize,
    /// Requests that failed.
    pub failed: usize,
    /// Stake slashed during the run (verifiers judged a node).
    pub slashed: u64,
    /// Everything that did not add up.
    pub problems: Vec<String>,
}

/// A stretch of the run in which a fault could swallow an answer the node
/// had already been paid for (a killed gateway or node, a cut link), since
/// the campaign's start.
#[derive(Debug, Clone)]
pub struct LossWindow {
    /// From.
    pub from: Duration,
    /// To (the fault's end plus the time a failure takes to surface).
    pub to: Duration,
    /// Which fault, for the report.
    pub what: String,
}

/// Waits until the relayer has every receipt batched and every voucher
/// redeemed, and holds a posted receipt for every served task.
pub async fn wait_settled(
    http: &reqwest::Client,
    relayer: &str,
    requests: &[Request],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let served: Vec<&str> = served_ids(requests).collect();
    loop {
        let last = match settled_now(http, relayer, &served).await {
            Ok(None) => return Ok(()),
            Ok(Some(why)) => why,
            Err(e) => format!("{e:#}"),
        };
        anyhow::ensure!(Instant::now() < deadline, "after {timeout:?}: {last}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn served_ids(requests: &[Request]) -> impl Iterator<Item = &str> {
    requests.iter().filter_map(|r| match &r.outcome {
        Outcome::Served { task_id, .. } => Some(task_id.as_str()),
        _ => None,
    })
}

/// `None` when settled, else what is still waiting.
async fn settled_now(
    http: &reqwest::Client,
    relayer: &str,
    served: &[&str],
) -> anyhow::Result<Option<String>> {
    let metrics = http
        .get(format!("{relayer}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let gauge = |name: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(f64::NAN)
    };
    let pending = gauge("strata_relayer_receipts_pending");
    let unredeemed = gauge("strata_relayer_unredeemed_base_units");
    if pending != 0.0 || unredeemed != 0.0 {
        return Ok(Some(format!(
            "{pending} receipts not in a posted batch, {unredeemed} base units unredeemed"
        )));
    }
    let batches: Vec<BatchView> = http
        .get(format!("{relayer}/v1/batches"))
        .send()
        .await?
        .json()
        .await?;
    let posted: std::collections::HashSet<&str> = batches
        .iter()
        .filter(|b| b.status == "posted")
        .flat_map(|b| b.task_ids.iter().map(String::as_str))
        .collect();
    let missing = served.iter().filter(|t| !posted.contains(**t)).count();
    Ok((missing > 0).then(|| format!("{missing} served tasks not yet in a posted batch")))
}

/// Checks the books (see the module's doc).
#[allow(clippy::too_many_arguments)]
pub async fn reconcile(
    rpc: &ChainClient,
    http: &reqwest::Client,
    relayer: &str,
    mint: &Pubkey,
    keys: &TestnetKeys,
    clients: &[(String, Keypair, std::path::PathBuf)],
    before: &Snapshot,
    requests: &[Request],
    t0_unix_ms: u64,
    losses: &[LossWindow],
) -> anyhow::Result<Reconciliation> {
    let mut r = Reconciliation::default();
    let batches: Vec<BatchView> = http
        .get(format!("{relayer}/v1/batches"))
        .send()
        .await?
        .json()
        .await?;
    // 1. Batches: each posted root is the chain's.
    let mut batch_of: HashMap<String, Vec<u64>> = HashMap::new();
    let mut roots = HashMap::new();
    for b in &batches {
        if b.status != "posted" {
            r.problems
                .push(format!("batch {} is still {}", b.id, b.status));
            continue;
        }
        match rpc.batch(b.id).await? {
            Some(on_chain) => {
                if hex::encode(on_chain.root) != b.root
                    || on_chain.task_count as usize != b.task_ids.len()
                {
                    r.problems.push(format!(
                        "batch {}: the relayer's root/count differ from the chain's",
                        b.id
                    ));
                }
                roots.insert(b.id, (on_chain.root, on_chain.task_count));
            }
            None => r.problems.push(format!("batch {} is not on chain", b.id)),
        }
        r.batches += 1;
        for t in &b.task_ids {
            batch_of.entry(t.clone()).or_default().push(b.id);
        }
    }
    // Every receipt, with its proof against the chain's root.
    let ids: Vec<String> = batch_of.keys().cloned().collect();
    let views: Vec<anyhow::Result<ReceiptView>> = futures::stream::iter(ids)
        .map(|id| async move {
            let v: ReceiptView = http
                .get(format!("{relayer}/v1/receipts/{id}"))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            Ok(v)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut receipts: HashMap<String, ReceiptView> = HashMap::new();
    for v in views {
        let v = v?;
        if let Some(why) = check_receipt(&v, &roots) {
            r.problems.push(format!("receipt {}: {why}", v.task_id));
        }
        receipts.insert(v.task_id.clone(), v);
    }
    r.receipts = receipts.len();
    for (t, bs) in &batch_of {
        if bs.len() != 1 {
            r.problems
                .push(format!("task {t} is in {} batches {bs:?}", bs.len()));
        }
    }
    // 2. What clients were told, against the receipts.
    let pubkey_of: HashMap<usize, Pubkey> = clients
        .iter()
        .enumerate()
        .map(|(i, (_, k, _))| (i, k.pubkey()))
        .chain(std::iter::once((super::WARMUP, keys.client.pubkey())))
        .collect();
    let mut told = std::collections::HashSet::new();
    for q in requests {
        match &q.outcome {
            Outcome::Served { task_id, price, .. } => {
                r.served += 1;
                told.insert(task_id.clone());
                match receipts.get(task_id) {
                    Some(v)
                        if v.price == *price
                            && pubkey_of.get(&q.client).map(hex_key) == Some(v.client.clone()) =>
                    {
                        r.served_on_chain += 1;
                    }
                    Some(v) => r.problems.push(format!(
                        "task {task_id}: told price {price}, receipt says {} (client {})",
                        v.price, v.client
                    )),
                    None => r
                        .problems
                        .push(format!("task {task_id}: served but no posted receipt")),
                }
            }
            Outcome::Cancelled => r.cancelled += 1,
            Outcome::Failed(_) => r.failed += 1,
        }
    }
    r.unmatched_charges = receipts.keys().filter(|t| !told.contains(*t)).count();
    let mut untold: BTreeMap<usize, Vec<&ReceiptView>> = BTreeMap::new();
    for v in receipts.values().filter(|v| !told.contains(&v.task_id)) {
        match pubkey_of.iter().find(|(_, k)| hex_key(k) == v.client) {
            Some((i, _)) => untold.entry(*i).or_default().push(v),
            None => r.problems.push(format!(
                "task {} charged {} to {}, not a campaign client",
                v.task_id, v.price, v.client
            )),
        }
    }
    for (client, mut charges) in untold {
        charges.sort_by_key(|v| v.finished_at_ms);
        let finished: Vec<u64> = charges.iter().map(|v| v.finished_at_ms).collect();
        for (v, (what, fine)) in charges
            .iter()
            .zip(attribute(requests, client, &finished, t0_unix_ms, losses))
        {
            if !fine {
                r.problems.push(format!(
                    "task {} charged {} to client {}, {what}",
                    v.task_id, v.price, v.client
                ));
            }
            *r.unmatched_by.entry(what).or_default() += 1;
        }
    }
    // 3. Channels: redeemed == latest voucher == sum of receipts.
    let mut channels: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for v in receipts.values() {
        let c = channels
            .entry((v.client.clone(), v.node.clone()))
            .or_default();
        c.0 += v.price;
        c.1 = c.1.max(v.voucher_cumulative);
        r.charged += v.price;
    }
    let mut redeemed_by_client: BTreeMap<String, u64> = BTreeMap::new();
    for ((client, node), (sum, latest)) in &channels {
        let (c, n) = (key_from_hex(client)?, key_from_hex(node)?);
        let ch: Option<Channel> = rpc.account(&pda::channel(&c, &n), "channel").await?;
        let redeemed = ch.map_or(0, |ch| ch.redeemed);
        if *sum != *latest || redeemed != *latest {
            r.problems.push(format!(
                "channel {client}→{node}: receipts sum {sum}, latest voucher {latest}, redeemed {redeemed}; {}",
                voucher_gaps(receipts.values().filter(|v| v.client == *client && v.node == *node))
            ));
        }
        *redeemed_by_client.entry(client.clone()).or_default() += redeemed;
        r.channels += 1;
    }
    // 4. Escrows, earnings, fee and pool.
    let after = Snapshot::read(rpc, mint, keys, clients).await?;
    for (client, was) in &before.escrows {
        let now = after.escrows.get(client).copied().unwrap_or(0);
        r.escrow_out += was.saturating_sub(now);
    }
    let config = rpc.config().await?;
    let vault = rpc.token_balance(&pda::vault()).await?;
    // `total_stake` counts verifiers' stake too (`total_verifier_stake` is
    // the part of it that verifiers hold).
    let ledgers = config.total_stake as u128
        + config.total_escrow as u128
        + config.reward_pool as u128
        + config.bonds_held as u128;
    if vault as u128 != ledgers {
        r.problems.push(format!(
            "the vault holds {vault}, its ledgers say {ledgers} (stake {} + escrow {} + pool {} + bonds {})",
            config.total_stake, config.total_escrow, config.reward_pool, config.bonds_held
        ));
    }
    let delta = |a: &BTreeMap<Pubkey, u64>, b: &BTreeMap<Pubkey, u64>, k: &Pubkey| {
        b.get(k).copied().unwrap_or(0) as i128 - a.get(k).copied().unwrap_or(0) as i128
    };
    let mut earned: i128 = 0;
    let mut claimed: i128 = 0;
    let mut slashed: i128 = 0;
    for k in keys.nodes.iter().map(|k| k.pubkey()) {
        // Tokens in = redemptions + claims; out = stake top-ups.
        earned += delta(&before.tokens, &after.tokens, &k)
            - delta(&before.claimed, &after.claimed, &k)
            + delta(&before.stakes, &after.stakes, &k)
            + delta(&before.slashed, &after.slashed, &k);
    }
    for k in keys.nodes.iter().chain(&keys.verifiers).map(|k| k.pubkey()) {
        claimed += delta(&before.claimed, &after.claimed, &k);
        slashed += delta(&before.slashed, &after.slashed, &k);
    }
    r.node_earnings = u64::try_from(earned).unwrap_or(0);
    r.claimed = u64::try_from(claimed).unwrap_or(0);
    r.slashed = u64::try_from(slashed).unwrap_or(0);
    let pool_delta = after.reward_pool as i128 - before.reward_pool as i128;
    let fees = pool_delta + claimed;
    r.fees = u64::try_from(fees).unwrap_or(0);
    if slashed == 0 {
        if earned + fees != r.escrow_out as i128 {
            r.problems.push(format!(
                "escrows paid out {} but nodes earned {earned} and the pool took {fees} in fees",
                r.escrow_out
            ));
        }
    } else {
        r.problems.push(format!(
            "{slashed} base units were slashed during the run: the fee/pool balance is not checked"
        ));
    }
    // Each client's escrow paid out exactly what its channels redeemed.
    for c in std::iter::once(&keys.client).chain(clients.iter().map(|(_, k, _)| k)) {
        let paid = rpc.escrow(&c.pubkey()).await?.map_or(0, |e| e.total_paid);
        let redeemed = redeemed_by_client
            .get(&hex_key(&c.pubkey()))
            .copied()
            .unwrap_or(0);
        if paid != redeemed {
            r.problems.push(format!(
                "client {}: its escrow paid {paid}, its channels redeemed {redeemed}",
                c.pubkey()
            ));
        }
    }
    Ok(r)
}

/// Where a channel's voucher totals rose by more than the receipt that
/// carries them: (the receipt's finish time in Unix ms, the excess).
fn voucher_gaps<'a>(receipts: impl Iterator<Item = &'a ReceiptView>) -> String {
    let mut rs: Vec<&ReceiptView> = receipts.collect();
    rs.sort_by_key(|v| v.voucher_cumulative);
    let mut before = 0u64;
    let mut gaps = Vec::new();
    for v in rs {
        let excess = v.voucher_cumulative.saturating_sub(before + v.price);
        if excess > 0 {
            gaps.push(format!(
                "+{excess} before the receipt finished at {}",
                v.finished_at_ms
            ));
        }
        before = v.voucher_cumulative;
    }
    format!("gaps: {}", gaps.join(", "))
}

/// Traces one client's charges it was not told of (their finish times,
/// Unix ms, in order) to its requests: each to the earliest stream it
/// abandoned before that time and not yet traced (its charge for what was
/// generated; under load a node may finish it long after the client left),
/// else to a request that failed during a fault that can swallow a paid
/// answer. Anything else is a problem (`false`). A client runs one request
/// at a time, so its abandoned streams and their charges come in the same
/// order.
fn attribute(
    requests: &[Request],
    client: usize,
    finished_ms: &[u64],
    t0_ms: u64,
    losses: &[LossWindow],
) -> Vec<(String, bool)> {
    let start_ms = |q: &Request| t0_ms + q.started.as_millis() as u64;
    let mine: Vec<&Request> = requests.iter().filter(|q| q.client == client).collect();
    let mut cancels: Vec<&Request> = mine
        .iter()
        .copied()
        .filter(|q| matches!(q.outcome, Outcome::Cancelled))
        .collect();
    cancels.sort_by_key(|q| q.started);
    let mut cancels = std::collections::VecDeque::from(cancels);
    let mut traced = std::collections::HashSet::new();
    finished_ms
        .iter()
        .map(|&f| {
            if cancels.front().is_some_and(|q| start_ms(q) <= f) {
                cancels.pop_front();
                return ("abandoned stream".to_string(), true);
            }
            let failed = mine.iter().enumerate().filter(|(i, q)| {
                matches!(q.outcome, Outcome::Failed(_)) && start_ms(q) <= f && !traced.contains(i)
            });
            let lost = failed.clone().filter_map(|(i, q)| {
                let ended = q.started + q.took;
                losses
                    .iter()
                    .find(|l| l.from <= ended && ended <= l.to)
                    .map(|l| (i, *q, l))
            });
            if let Some((i, q, l)) = lost.max_by_key(|(_, q, _)| q.started) {
                traced.insert(i);
                let Outcome::Failed(class) = &q.outcome else {
                    unreachable!("filtered to failures")
                };
                // The node finished and was paid; its answer died with the
                // process or link that carried it (at-most-once delivery).
                return (format!("answer lost to {} ({class})", l.what), true);
            }
            match failed.max_by_key(|(_, q)| q.started) {
                Some((_, q)) => match &q.outcome {
                    Outcome::Failed(class) => (format!("failed outside any fault: {class}"), false),
                    _ => ("?".to_string(), false),
                },
                None => ("no request to trace it to".to_string(), false),
            }
        })
        .collect()
}

/// A key as the relayer's receipt views write it (hex).
fn hex_key(k: &Pubkey) -> String {
    hex::encode(k.to_bytes())
}

fn key_from_hex(s: &str) -> anyhow::Result<Pubkey> {
    let bytes: [u8; 32] = hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("{s:?} is not a hex key"))?;
    Ok(Pubkey::from(bytes))
}

/// What is wrong with one stored receipt: its bytes, its signature, its
/// leaf, and its proof to the chain's root.
fn check_receipt(v: &ReceiptView, roots: &HashMap<u64, ([u8; 32], u32)>) -> Option<String> {
    let raw = hex::decode(&v.raw).ok()?;
    let receipt: Receipt = match strata_wire::decode(&raw, strata_wire::MAX_RECEIPT_BYTES) {
        Ok(r) => r,
        Err(e) => return Some(format!("does not decode: {e}")),
    };
    if receipt.verify_signature().is_err() {
        return Some("bad node signature".into());
    }
    if hex::encode(receipt.leaf()) != v.leaf {
        return Some("leaf differs".into());
    }
    let Some(b) = &v.batch else {
        return Some("not in a batch".into());
    };
    let Some((root, count)) = roots.get(&b.batch_id) else {
        return Some(format!("batch {} not posted", b.batch_id));
    };
    let proof: Option<Vec<[u8; 32]>> = b
        .proof
        .iter()
        .map(|p| hex::decode(p).ok().and_then(|p| p.try_into().ok()))
        .collect();
    let proof = proof?;
    merkle::verify::<Ledger>(
        root,
        receipt.leaf(),
        u64::from(b.leaf_index),
        u64::from(*count),
        &proof,
    )
    .err()
    .map(|e| format!("proof does not reach the chain's root: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(client: usize, started_s: u64, took_s: u64, outcome: Outcome) -> Request {
        Request {
            client,
            started: Duration::from_secs(started_s),
            took: Duration::from_secs(took_s),
            stream: true,
            outcome,
        }
    }

    #[test]
    fn unannounced_charges_are_fine_only_for_abandoned_streams_and_lost_answers() {
        let t0 = 1_000_000u64;
        let requests = vec![
            request(0, 10, 5, Outcome::Cancelled),
            request(0, 16, 1, Outcome::Failed("http 503: busy".into())),
            request(0, 20, 3, Outcome::Failed("transport".into())),
            request(1, 10, 2, Outcome::Failed("http 503: busy".into())),
        ];
        let losses = vec![LossWindow {
            from: Duration::from_secs(22),
            to: Duration::from_secs(40),
            what: "KillGateway (gateway)".into(),
        }];
        // The abandoned stream's charge finished long after (a loaded node),
        // behind a refused request: still the stream's; then one answer lost
        // with the gateway.
        let got = attribute(&requests, 0, &[t0 + 30_000, t0 + 31_000], t0, &losses);
        assert_eq!(got[0], ("abandoned stream".into(), true));
        assert!(got[1].1 && got[1].0.contains("KillGateway"), "{got:?}");
        // A third charge has nothing left to belong to but the refusal.
        let got = attribute(
            &requests,
            0,
            &[t0 + 12_000, t0 + 22_500, t0 + 50_000],
            t0,
            &losses,
        );
        assert!(got[0].1 && got[1].1);
        assert_eq!(
            got[2],
            ("failed outside any fault: http 503: busy".into(), false)
        );
        // A refused request charged outside any fault is a problem.
        let got = attribute(&requests, 1, &[t0 + 11_000], t0, &losses);
        assert_eq!(
            got[0],
            ("failed outside any fault: http 503: busy".into(), false)
        );
        // A charge before any request of that client.
        let got = attribute(&requests, 1, &[t0 + 1_000], t0, &losses);
        assert_eq!(got[0], ("no request to trace it to".into(), false));
    }
}
