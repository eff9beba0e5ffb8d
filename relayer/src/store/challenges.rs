//! Challenges as the indexer last saw them on-chain, with what only their
//! transactions tell (voters, payouts). Keyed by account and opening slot:
//! an expired challenge's account is closed and the same receipt can be
//! challenged again at the same address.

use borsh::{BorshDeserialize, BorshSerialize};
use redb::{ReadableTable, TableDefinition};

use super::{decode, encode, Store, StoreError};

/// challenge account ‖ opened slot (big endian) → borsh [`ChallengeRecord`].
pub(super) const CHALLENGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("challenges");

/// Where a challenge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ChallengeState {
    /// Waiting for a verdict.
    Open,
    /// The node was found guilty and slashed.
    Upheld,
    /// The receipt was found honest; the bond was forfeited.
    Rejected,
    /// No verdict by the deadline; the account was closed.
    Expired,
}

impl ChallengeState {
    /// The API's name for it.
    pub fn name(&self) -> &'static str {
        match self {
            ChallengeState::Open => "open",
            ChallengeState::Upheld => "upheld",
            ChallengeState::Rejected => "rejected",
            ChallengeState::Expired => "expired",
        }
    }

    /// Whether a verdict was reached.
    pub fn is_resolved(&self) -> bool {
        matches!(self, ChallengeState::Upheld | ChallengeState::Rejected)
    }
}

/// One challenge.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ChallengeRecord {
    /// The challenge account.
    pub address: [u8; 32],
    /// Slot it was opened in (tells apart challenges at one address).
    pub opened_slot: u64,
    /// The accused node.
    pub accused: [u8; 32],
    /// Who opened it.
    pub challenger: [u8; 32],
    /// The batch account.
    pub batch: [u8; 32],
    /// The batch id, once read.
    pub batch_id: Option<u64>,
    /// Leaf index of the receipt.
    pub leaf_index: u32,
    /// The challenged task.
    pub task_id: [u8; 32],
    /// Bond locked.
    pub bond: u64,
    /// Unix time opened (chain clock).
    pub opened_at: i64,
    /// Verdict deadline (Unix time).
    pub deadline: i64,
    /// Committee seed (zeros until drawn).
    pub seed: [u8; 32],
    /// Status.
    pub state: ChallengeState,
    /// Committee members whose votes count (frozen once the challenge ended).
    pub committee: Vec<[u8; 32]>,
    /// Members whose signatures made the verdict.
    pub voters: Vec<[u8; 32]>,
    /// Slashed from the accused.
    pub slashed: u64,
    /// Paid to the challenger.
    pub to_challenger: u64,
    /// Each voter's reward: the chain's `committee_reward` when the verdict was indexed.
    pub committee_reward: u64,
    /// The resolving or expiring transaction, when found.
    pub signature: Option<String>,
    /// Nothing more will be learnt about it.
    pub settled: bool,
}

impl ChallengeRecord {
    fn key(&self) -> Vec<u8> {
        [
            self.address.as_slice(),
            self.opened_slot.to_be_bytes().as_slice(),
        ]
        .concat()
    }
}

impl Store {
    /// Writes (or overwrites) a challenge record.
    pub fn put_challenge(&self, record: &ChallengeRecord) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(CHALLENGES)?
            .insert(record.key().as_slice(), encode(record).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Every challenge record, by account then opening slot.
    pub fn challenges(&self) -> Result<Vec<ChallengeRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(CHALLENGES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(decode(v.value(), "challenges")?);
        }
        Ok(out)
    }
}
