//! The challenge indexer: every round it reads every Challenge account,
//! records what the account says (status, committee seed, slash) with the
//! committee whose votes count, and, once a challenge has ended, reads its
//! transactions for what only they say: the verdict's voters and payouts
//! (`ChallengeResolved`), or the expiry (`ChallengeExpired`, after which the
//! account is closed and its record keeps what was last seen).
//!
//! Events come from the challenge account's transaction history; an endpoint
//! that lacks it may still have the accused node's, which every verdict and
//! expiry also touches.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use solana_rpc_client_api::request::RpcRequest;
use strata_chain::accounts::{Batch, Challenge, ChallengeStatus};
use strata_chain::events::{from_logs, StrataEvent};
use strata_chain::rpc::ChainClient;
use strata_chain::{audit, pda, Pubkey};
use tracing::{debug, info, warn};

use crate::store::{ChallengeRecord, ChallengeState};
use crate::{Ctx, RelayerError};

/// Most transactions of one address read when looking for a challenge's end.
const MAX_SCANNED: usize = 200;

/// How a challenge ended, from its transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ending {
    state: ChallengeState,
    voters: Vec<[u8; 32]>,
    slashed: u64,
    to_challenger: u64,
    signature: String,
}

/// One indexing round.
pub async fn round(ctx: &Ctx) -> Result<(), RelayerError> {
    // A failed listing must not read as "every challenge closed": stop here.
    let listed = ctx.chain.challenges().await?;
    let config = ctx.chain.config().await?;
    let nodes = ctx.chain.registered_nodes().await?;
    let known = ctx.store.challenges()?;
    let by_key: HashMap<([u8; 32], u64), ChallengeRecord> = known
        .iter()
        .map(|r| ((r.address, r.opened_slot), r.clone()))
        .collect();
    let mut live = HashSet::new();

    for (address, c) in &listed {
        let key = (address.to_bytes(), c.opened_slot);
        live.insert(key);
        let mut record = by_key
            .get(&key)
            .cloned()
            .unwrap_or_else(|| new_record(address, c));
        if record.settled {
            continue;
        }
        let before = record.clone();
        if record.batch_id.is_none() {
            record.batch_id = ctx
                .chain
                .account::<Batch>(&c.batch, "batch")
                .await?
                .map(|b| b.id);
        }
        record.seed = c.seed;
        record.deadline = c.deadline;
        record.slashed = c.slashed;
        record.committee = audit::committee(c, &nodes, config.params.min_stake)
            .iter()
            .map(|k| k.to_bytes())
            .collect();
        record.state = match c.status {
            ChallengeStatus::Open => ChallengeState::Open,
            ChallengeStatus::Upheld => ChallengeState::Upheld,
            ChallengeStatus::Rejected => ChallengeState::Rejected,
        };
        if record.state.is_resolved() {
            match find_ending(&ctx.chain, &record).await {
                Some(ending) if ending.state.is_resolved() => {
                    record.voters = ending.voters;
                    record.slashed = ending.slashed;
                    record.to_challenger = ending.to_challenger;
                    record.signature = Some(ending.signature);
                    record.committee_reward = config.params.committee_reward;
                    record.settled = true;
                    info!(
                        challenge = %address,
                        state = record.state.name(),
                        voters = record.voters.len(),
                        slashed = record.slashed,
                        "challenge resolved"
                    );
                }
                _ => debug!(challenge = %address, "verdict transaction not found yet"),
            }
        }
        if record != before {
            ctx.store.put_challenge(&record)?;
        }
    }

    // Known, unfinished, and no longer listed: the account was closed (the
    // challenge expired) or reopened by a later challenge of the same leaf.
    for record in known
        .into_iter()
        .filter(|r| !r.settled && !live.contains(&(r.address, r.opened_slot)))
    {
        let mut record = record;
        let address = Pubkey::from(record.address);
        if let Some(c) = ctx
            .chain
            .account::<Challenge>(&address, "challenge")
            .await?
        {
            if c.opened_slot == record.opened_slot {
                // Listed late (the listing and this read raced): next round.
                continue;
            }
        }
        match find_ending(&ctx.chain, &record).await {
            Some(ending) => {
                record.state = ending.state;
                record.signature = Some(ending.signature);
                if ending.state.is_resolved() {
                    record.voters = ending.voters;
                    record.slashed = ending.slashed;
                    record.to_challenger = ending.to_challenger;
                    record.committee_reward = config.params.committee_reward;
                }
            }
            None => {
                warn!(challenge = %address, "challenge account closed; its expiry transaction was not found");
                record.state = ChallengeState::Expired;
            }
        }
        record.settled = true;
        info!(challenge = %address, state = record.state.name(), "challenge ended");
        ctx.store.put_challenge(&record)?;
    }
    Ok(())
}

fn new_record(address: &Pubkey, c: &Challenge) -> ChallengeRecord {
    ChallengeRecord {
        address: address.to_bytes(),
        opened_slot: c.opened_slot,
        accused: c.node.to_bytes(),
        challenger: c.challenger.to_bytes(),
        batch: c.batch.to_bytes(),
        batch_id: None,
        leaf_index: c.leaf_index,
        task_id: c.task_id,
        bond: c.bond,
        opened_at: c.opened_at,
        deadline: c.deadline,
        seed: c.seed,
        state: ChallengeState::Open,
        committee: Vec::new(),
        voters: Vec::new(),
        slashed: 0,
        to_challenger: 0,
        committee_reward: 0,
        signature: None,
        settled: false,
    }
}

/// The transaction that ended `record`'s challenge, looked up in the
/// challenge account's history, then in the accused node's.
async fn find_ending(chain: &ChainClient, record: &ChallengeRecord) -> Option<Ending> {
    let challenge = Pubkey::from(record.address);
    for address in [challenge, pda::node(&Pubkey::from(record.accused))] {
        if let Some(ending) = scan(chain, &address, &challenge, record.opened_slot).await {
            return Some(ending);
        }
    }
    None
}

/// The first `ChallengeResolved` or `ChallengeExpired` of `challenge` in
/// `address`'s successful transactions since `since_slot`, oldest first (the
/// first end after an opening is that opening's).
async fn scan(
    chain: &ChainClient,
    address: &Pubkey,
    challenge: &Pubkey,
    since_slot: u64,
) -> Option<Ending> {
    let list = match chain.rpc().get_signatures_for_address(address).await {
        Ok(list) => list,
        Err(e) => {
            debug!(%address, error = %e, "getSignaturesForAddress failed");
            return None;
        }
    };
    let mut candidates: Vec<_> = list
        .into_iter()
        .filter(|s| s.err.is_none() && s.slot >= since_slot)
        .take(MAX_SCANNED)
        .collect();
    // Newest first from the RPC; the opening's own end is the oldest one.
    candidates.sort_by_key(|s| s.slot);
    for s in candidates {
        let Some(logs) = transaction_logs(chain, &s.signature).await else {
            continue;
        };
        for event in from_logs(&logs) {
            match event {
                StrataEvent::ChallengeResolved(e) if e.challenge == *challenge => {
                    return Some(Ending {
                        state: if e.upheld {
                            ChallengeState::Upheld
                        } else {
                            ChallengeState::Rejected
                        },
                        voters: e.voters.iter().map(|v| v.to_bytes()).collect(),
                        slashed: e.slashed,
                        to_challenger: e.to_challenger,
                        signature: s.signature.clone(),
                    })
                }
                StrataEvent::ChallengeExpired(e) if e.challenge == *challenge => {
                    return Some(Ending {
                        state: ChallengeState::Expired,
                        voters: Vec::new(),
                        slashed: 0,
                        to_challenger: 0,
                        signature: s.signature.clone(),
                    })
                }
                _ => {}
            }
        }
    }
    None
}

/// A transaction's log lines (`getTransaction`), if the endpoint has them.
async fn transaction_logs(chain: &ChainClient, signature: &str) -> Option<Vec<String>> {
    let params = json!([
        signature,
        {"encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0}
    ]);
    let answer: serde_json::Value = match chain.rpc().send(RpcRequest::GetTransaction, params).await
    {
        Ok(v) => v,
        Err(e) => {
            debug!(%signature, error = %e, "getTransaction failed");
            return None;
        }
    };
    let logs = answer.pointer("/meta/logMessages")?.as_array()?;
    Some(
        logs.iter()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect(),
    )
}
