//! The verifier's duties, run by three tasks: following batches (audits,
//! reports, challenges), committee duty (draws, votes, verdicts, expiries)
//! and listening to the network (votes in, policy updates of followed
//! trainers in, opening requests refused).
//!
//! Both polling loops act on one reading of the chain per poll and keep
//! going past single failures: whatever could not be done now (an RPC or
//! relayer outage, a race lost) is retried at the next poll, and what was
//! done is recorded in the state file first, so a restart never repeats an
//! audit or a vote.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_chain::accounts::{Config, Node};
use strata_chain::rpc::ChainClient;
use strata_chain::{ChainError, Keypair, Pubkey};
use strata_engine::{Adapter, Engine};
use strata_node::policy::PolicyStore;
use strata_p2p::{P2pEvent, P2pEvents, P2pHandle};
use strata_wire::audit::{OpeningResponse, VerdictVote};
use strata_wire::protocols::{OPENING, VERDICTS};
use strata_wire::AdapterPart;
use tokio::task::JoinHandle;

use crate::relayer::RelayerClient;
use crate::state::StateFile;
use crate::votes::VotePool;
use crate::{VerifierError, VerifierStats};

/// Committee polls between re-dials of the registered nodes.
pub(crate) const REDIAL_EVERY: u32 = 15;

/// The shared core of a running verifier.
pub(crate) struct Verifier {
    pub(crate) chain: ChainClient,
    pub(crate) p2p: P2pHandle,
    pub(crate) key: Keypair,
    pub(crate) me: Pubkey,
    pub(crate) engine: Arc<Engine>,
    pub(crate) model_hash: [u8; 32],
    pub(crate) relayer: RelayerClient,
    pub(crate) opening_timeout: Duration,
    pub(crate) state: StateFile,
    pub(crate) votes: Mutex<VotePool>,
    pub(crate) stats: Mutex<VerifierStats>,
    /// The last failure logged per subject (see [`Verifier::note`]).
    pub(crate) notes: Mutex<HashMap<String, String>>,
    /// Held while reports are sent: the batch and committee loops both
    /// flush, and two flushes of one queue would post each report twice.
    pub(crate) flushing: tokio::sync::Mutex<()>,
    /// The policy versions of the trainers it follows: audits of tasks
    /// served with one re-run layers with its adapter.
    pub(crate) policies: Option<PolicyStore>,
    /// It follows exactly one trainer, so a version number names one
    /// adapter (versions are one namespace in a store).
    pub(crate) sole_trainer: bool,
}

/// What a verifier can do with the adapter a receipt names.
#[derive(Debug, Clone)]
pub(crate) enum AdapterVerdict<A = Arc<Adapter>> {
    /// It holds that version with that digest: re-run the layers with it.
    Held(A),
    /// It does not hold that version (not fetched yet, evicted, or a trainer
    /// it does not follow): it cannot judge the task.
    Unknown,
    /// It holds that version from the only trainer it follows, with another
    /// digest: the receipt names weights that trainer never published as
    /// that version. Without this, a node could name any made-up digest and
    /// make every audit of its versioned tasks "cannot audit yet".
    Conflicting {
        /// The digest the trainer published.
        published: [u8; 32],
    },
}

/// The verdict for a receipt's `part`, given the adapter held for its
/// version (if any), its digest function, and whether one trainer is
/// followed. With several trainers a version number may name several
/// adapters, and a mismatch proves nothing: unknown.
pub(crate) fn adapter_verdict<A>(
    held: Option<A>,
    digest: impl Fn(&A) -> [u8; 32],
    part: &AdapterPart,
    sole_trainer: bool,
) -> AdapterVerdict<A> {
    match held {
        Some(a) if digest(&a) == part.adapter => AdapterVerdict::Held(a),
        Some(a) if sole_trainer => AdapterVerdict::Conflicting {
            published: digest(&a),
        },
        _ => AdapterVerdict::Unknown,
    }
}

/// One reading of the chain, shared by everything a poll does.
pub(crate) struct View {
    pub(crate) config: Config,
    pub(crate) slot: u64,
    /// The chain's Unix time (what the program checks windows and deadlines against).
    pub(crate) now: i64,
    pub(crate) nodes: Vec<Node>,
}

/// Starts the verifier's tasks.
pub(crate) fn spawn(
    v: Arc<Verifier>,
    events: P2pEvents,
    poll_interval: Duration,
) -> Vec<JoinHandle<()>> {
    let listen = tokio::spawn(v.clone().listen(events));
    let batches = {
        let v = v.clone();
        tokio::spawn(async move {
            loop {
                let result = v.follow_batches().await;
                v.note("following batches", result);
                tokio::time::sleep(poll_interval).await;
            }
        })
    };
    let committee = tokio::spawn(async move {
        let mut polls = 0u32;
        loop {
            let result = v.committee_duty().await;
            v.note("committee duty", result);
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(REDIAL_EVERY) {
                // Nodes that registered since start: gossip (votes) needs peers.
                strata_service::dial_registered_nodes(&v.chain, &v.p2p).await;
            }
            tokio::time::sleep(poll_interval).await;
        }
    });
    vec![listen, batches, committee]
}
impl Verifier {
    pub(crate) fn stats(&self) -> VerifierStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn count(&self, f: impl FnOnce(&mut VerifierStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Logs the outcome of a step that runs every poll: a failure loudly
    /// when it first happens (or changes), quietly while it repeats (a
    /// relayer or RPC outage would otherwise flood the log).
    pub(crate) fn note(&self, subject: &str, result: Result<(), VerifierError>) {
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                notes.remove(subject);
            }
            Err(e) => {
                let message = e.to_string();
                if notes.get(subject) == Some(&message) {
                    tracing::debug!("{subject}: {message}");
                } else {
                    tracing::warn!("{subject}: {message}");
                    notes.insert(subject.to_string(), message);
                }
            }
        }
    }

    pub(crate) fn votes(&self) -> std::sync::MutexGuard<'_, VotePool> {
        // Every pool operation completes before the guard drops.
        self.votes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) async fn view(&self) -> Result<View, ChainError> {
        Ok(View {
            config: self.chain.config().await?,
            slot: self.chain.slot().await?,
            now: chain_now(&self.chain).await?,
            nodes: self.chain.registered_nodes().await?,
        })
    }

    /// What this verifier knows of the adapter `part` names (see
    /// [`adapter_verdict`]).
    pub(crate) fn adapter(&self, part: &AdapterPart) -> AdapterVerdict {
        let held = self
            .policies
            .as_ref()
            .and_then(|p| p.get(part.policy_version));
        adapter_verdict(held, |a| a.digest(), part, self.sole_trainer)
    }

    /// Votes from gossip go to the pool; policy updates to the store;
    /// opening requests are refused.
    pub(crate) async fn listen(self: Arc<Self>, mut events: P2pEvents) {
        while let Some(event) = events.recv().await {
            if self.policies.as_ref().is_some_and(|p| p.hear(&event)) {
                continue;
            }
            match event {
                P2pEvent::Gossip {
                    topic,
                    from,
                    payload,
                } if topic == VERDICTS => match VerdictVote::decode_verified(&payload) {
                    Ok(vote) => {
                        let added = self.votes().insert(vote);
                        tracing::debug!(peer = %from, ?added, "verdict vote heard");
                    }
                    Err(e) => tracing::debug!(peer = %from, "dropped a verdict vote: {e}"),
                },
                P2pEvent::Request(req) if req.protocol == OPENING => {
                    let refused = OpeningResponse::Refused("a verifier keeps no tasks".into());
                    let _ = req.respond(strata_wire::encode(&refused));
                }
                _ => {}
            }
        }
    }

    // ----- following batches -------------------------------------------------

    /// Sends a transaction anyone may send; `benign` names the program error
    /// that means someone else already did it. True when this one landed.
    pub(crate) async fn send_ignoring(
        &self,
        ixs: &[solana_instruction::Instruction],
        benign: &str,
        what: &str,
    ) -> bool {
        match self.chain.send(ixs, &self.key, &[]).await {
            Ok(_) => true,
            Err(ChainError::Program { name, .. }) if name == benign => {
                tracing::debug!("{what}: {name} (someone else was first)");
                false
            }
            Err(e) => {
                tracing::warn!("{what}: {e}");
                false
            }
        }
    }
}

/// The Clock sysvar's address.
pub(crate) const CLOCK: Pubkey =
    Pubkey::from_str_const("SysvarC1ock11111111111111111111111111111111");

/// The chain's Unix time from the Clock sysvar (whose `unix_timestamp`
/// follows slot, epoch start, epoch and leader-schedule epoch, 8 bytes each).
pub(crate) async fn chain_now(chain: &ChainClient) -> Result<i64, ChainError> {
    let data = chain
        .account_data(&CLOCK)
        .await?
        .ok_or_else(|| ChainError::AccountNotFound("the Clock sysvar".into()))?;
    data.get(32..40)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(i64::from_le_bytes)
        .ok_or(ChainError::Decode {
            address: CLOCK.to_string(),
            kind: "clock sysvar",
        })
}

#[cfg(test)]
mod adapter_tests {
    use super::*;

    fn part(d: u8) -> AdapterPart {
        AdapterPart {
            policy_version: 3,
            adapter: [d; 32],
        }
    }

    #[test]
    fn a_made_up_digest_is_a_fault_only_when_one_trainer_is_followed() {
        let d = |a: &u8| [*a; 32];
        assert!(matches!(
            adapter_verdict(Some(7u8), d, &part(7), true),
            AdapterVerdict::Held(7)
        ));
        assert!(matches!(
            adapter_verdict(Some(7u8), d, &part(9), true),
            AdapterVerdict::Conflicting { published } if published == [7; 32]
        ));
        assert!(matches!(
            adapter_verdict(Some(7u8), d, &part(9), false),
            AdapterVerdict::Unknown
        ));
        assert!(matches!(
            adapter_verdict(None::<u8>, d, &part(9), true),
            AdapterVerdict::Unknown
        ));
    }
}
