use anchor_lang::prelude::*;

use crate::errors::StrataError;
use strata_primitives::limits::{MAX_MULTIADDRS, MAX_MULTIADDR_LEN};

/// The node serves inference and rollouts.
pub const ROLE_COMPUTE: u8 = 1;
/// The node re-executes audited tasks and signs verdicts.
pub const ROLE_VERIFIER: u8 = 2;

/// What a node declares it can offer; the scheduler sizes layer ranges from it.
#[derive(
    AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, Default, PartialEq, Eq, InitSpace,
)]
pub struct Capacity {
    /// Memory available for model weights and KV cache, in MiB.
    pub memory_mb: u32,
    /// Profiled decode throughput, in tokens per second times 100.
    pub compute_score: u32,
    /// Network bandwidth in Mbit/s.
    pub bandwidth_mbps: u32,
}

/// A registered node. Its operator key is also its libp2p identity and its
/// receipt-signing key.
#[account]
#[derive(InitSpace, Debug)]
pub struct Node {
    /// Layout version.
    pub version: u8,
    /// Canonical bump.
    pub bump: u8,
    /// The operator's ed25519 key.
    pub operator: Pubkey,
    /// Role bits: [`ROLE_COMPUTE`], [`ROLE_VERIFIER`].
    pub roles: u8,
    /// Declared capacity.
    pub capacity: Capacity,
    /// Where peers can dial it (libp2p multiaddrs, bounded).
    #[max_len(MAX_MULTIADDRS, MAX_MULTIADDR_LEN)]
    pub multiaddrs: Vec<String>,
    /// Bonded stake.
    pub stake: u64,
    /// Stake waiting out its unbonding period (still slashable).
    pub unbonding: u64,
    /// When the unbonding stake may be withdrawn.
    pub unbonding_ends: i64,
    /// Open challenges against this node; stake cannot leave while any is open.
    pub open_challenges: u16,
    /// Everything ever slashed from this node.
    pub slashed_total: u64,
    /// Slot at which the node's verifier weight last grew (registered as a
    /// verifier, staked as one, or took the role). A committee or an audit
    /// assignment only counts verifiers whose weight was in place before its
    /// seed could be known.
    pub verifier_since_slot: u64,
    /// Unix time of registration.
    pub registered_at: i64,
    /// Room for later fields.
    pub reserved: [u8; 32],
}

impl Node {
    /// PDA seed prefix; the operator's key follows.
    pub const SEED: &'static [u8] = b"node";

    /// Whether the node currently counts toward the verifier sortition.
    pub fn is_verifier(&self) -> bool {
        self.roles & ROLE_VERIFIER != 0
    }

    /// Records that the verifier weight may have grown at `slot`.
    pub fn verifier_weight_changed(&mut self, before: u64, slot: u64) {
        if self.verifier_stake() > before {
            self.verifier_since_slot = slot;
        }
    }

    /// Whether this node may judge something whose seed was fixed after
    /// `slot`: a staked verifier whose weight was in place before it.
    pub fn is_eligible_verifier(&self, min_stake: u64, slot: u64) -> bool {
        self.is_verifier() && self.stake >= min_stake && self.verifier_since_slot < slot
    }

    /// Stake that counts for verifier selection.
    pub fn verifier_stake(&self) -> u64 {
        if self.is_verifier() {
            self.stake
        } else {
            0
        }
    }
}

/// Checks what an operator declares about its node.
pub fn validate_endpoints(multiaddrs: &[String], roles: u8) -> Result<()> {
    require!(
        multiaddrs.len() <= MAX_MULTIADDRS,
        StrataError::TooManyMultiaddrs
    );
    for addr in multiaddrs {
        require!(
            !addr.is_empty() && addr.len() <= MAX_MULTIADDR_LEN && addr.starts_with('/'),
            StrataError::InvalidMultiaddr
        );
    }
    require!(
        roles != 0 && roles & !(ROLE_COMPUTE | ROLE_VERIFIER) == 0,
        StrataError::InvalidRoles
    );
    Ok(())
}
