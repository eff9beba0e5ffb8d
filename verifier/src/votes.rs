//! Collecting committee votes until a quorum agrees.
//!
//! Votes arrive by gossip from anyone. The pool keeps a correctly signed
//! vote only on a challenge that is open on-chain and from a staked
//! verifier (its [scope](VotePool::set_scope), refreshed from the chain),
//! one per voter and challenge (the first one heard), within fixed bounds,
//! so nobody can crowd out real votes with keys of their own. The
//! committee is applied when counting ([`VotePool::quorum`]): a vote from a
//! verifier the sortition did not select never counts.

use std::collections::{BTreeMap, HashMap, HashSet};

use strata_chain::ed25519::SignedMessage;
use strata_chain::Pubkey;
use strata_wire::audit::VerdictVote;

/// Most challenges the pool holds votes for (gossip cannot grow it further).
pub const MAX_CHALLENGES: usize = 1_024;
/// Most voters kept per challenge (twice the largest committee the program counts).
pub const MAX_VOTERS: usize = 32;

/// What happened to a vote offered to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Kept.
    New,
    /// This voter already has a vote on this challenge (the first one stays).
    Duplicate,
    /// The pool is full.
    Full,
    /// Not on an open challenge, or not from a staked verifier.
    OutOfScope,
}

/// A verdict a quorum agrees on, ready to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the accused cheated.
    pub upheld: bool,
    /// Exactly a quorum of agreeing committee votes, sorted by voter.
    pub votes: Vec<VerdictVote>,
}

impl Verdict {
    /// The voters, in the order of [`Verdict::signed_messages`].
    pub fn voters(&self) -> Vec<Pubkey> {
        self.votes.iter().map(|v| Pubkey::from(v.voter)).collect()
    }

    /// The votes as the ed25519 precompile entries `resolve_challenge` reads.
    pub fn signed_messages(&self) -> Vec<SignedMessage> {
        self.votes.iter().map(signed_message).collect()
    }
}

/// A vote as the ed25519 precompile entry the program checks.
pub fn signed_message(vote: &VerdictVote) -> SignedMessage {
    SignedMessage {
        signer: Pubkey::from(vote.voter),
        signature: vote.signature,
        message: VerdictVote::message(&vote.challenge, vote.upheld),
    }
}

/// Signed votes heard so far, by challenge and voter.
#[derive(Debug, Default)]
pub struct VotePool {
    votes: HashMap<[u8; 32], BTreeMap<[u8; 32], VerdictVote>>,
    open: HashSet<[u8; 32]>,
    verifiers: HashSet<[u8; 32]>,
}

impl VotePool {
    /// An empty pool that accepts nothing until [`VotePool::set_scope`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what votes may be about and who may cast them: the challenges
    /// open on-chain and the staked verifiers. Votes on challenges no
    /// longer open are forgotten.
    pub fn set_scope(
        &mut self,
        open: impl IntoIterator<Item = [u8; 32]>,
        verifiers: impl IntoIterator<Item = [u8; 32]>,
    ) {
        self.open = open.into_iter().collect();
        self.verifiers = verifiers.into_iter().collect();
        let open = &self.open;
        self.votes.retain(|c, _| open.contains(c));
    }

    /// Offers a vote whose signature was checked (`VerdictVote::decode_verified`
    /// or one this verifier signed).
    pub fn insert(&mut self, vote: VerdictVote) -> Added {
        if !self.open.contains(&vote.challenge) || !self.verifiers.contains(&vote.voter) {
            return Added::OutOfScope;
        }
        if !self.votes.contains_key(&vote.challenge) && self.votes.len() >= MAX_CHALLENGES {
            return Added::Full;
        }
        let voters = self.votes.entry(vote.challenge).or_default();
        if voters.contains_key(&vote.voter) {
            return Added::Duplicate;
        }
        if voters.len() >= MAX_VOTERS {
            return Added::Full;
        }
        voters.insert(vote.voter, vote);
        Added::New
    }

    /// Votes held on `challenge`.
    pub fn count(&self, challenge: &[u8; 32]) -> usize {
        self.votes.get(challenge).map_or(0, BTreeMap::len)
    }

    /// The verdict `quorum` members of `committee` agree on, if any. When
    /// both sides reach the quorum (a committee larger than twice it), the
    /// side with more votes wins; a tie waits for more votes.
    pub fn quorum(
        &self,
        challenge: &[u8; 32],
        committee: &[Pubkey],
        quorum: u8,
    ) -> Option<Verdict> {
        let quorum = usize::from(quorum.max(1));
        let voters = self.votes.get(challenge)?;
        let counted = |upheld: bool| -> Vec<VerdictVote> {
            voters
                .values()
                .filter(|v| v.upheld == upheld && committee.contains(&Pubkey::from(v.voter)))
                .copied()
                .collect()
        };
        let (yes, no) = (counted(true), counted(false));
        let (upheld, mut votes) = match (yes.len() >= quorum, no.len() >= quorum) {
            (true, false) => (true, yes),
            (false, true) => (false, no),
            (true, true) if yes.len() > no.len() => (true, yes),
            (true, true) if no.len() > yes.len() => (false, no),
            _ => return None,
        };
        // The BTreeMap already sorts by voter; keep exactly a quorum so the
        // transaction stays small.
        votes.truncate(quorum);
        Some(Verdict { upheld, votes })
    }
}
