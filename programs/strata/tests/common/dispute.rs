//! A node with an open challenge against one of its receipts, and the
//! verifiers the sortition did and did not select for it.

use litesvm::types::TransactionMetadata;
use solana_keypair::Keypair;
use solana_signer::Signer;
use solana_transaction_error::TransactionError;
use strata_chain::events::{from_logs, StrataEvent};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::{ix, pda, sortition, Pubkey};
use strata_program::instructions::ReceiptClaim;
use strata_program::state::{Challenge, Node};

use super::{params, Env};

/// Stake of every verifier in a dispute.
pub const VERIFIER_STAKE: u64 = 5_000;
/// Stake of the accused node.
pub const ACCUSED_STAKE: u64 = 10_000;

pub struct Dispute {
    pub env: Env,
    pub accused: Keypair,
    pub challenger_ata: Pubkey,
    pub challenge: Pubkey,
    pub selected: Vec<Keypair>,
    pub not_selected: Vec<Keypair>,
}

/// Opens a challenge with `verifiers` staked verifiers and the given
/// committee size and quorum. When the committee is smaller than the
/// verifier set, the slot hash is chosen (off-chain, as anyone could) so
/// that the sortition selects at least a quorum but not everyone.
pub fn open_dispute(verifiers: usize, committee: u8, quorum: u8) -> Dispute {
    let mut env = Env::new();
    let admin = env.admin.insecure_clone();
    let mut p = params();
    p.committee_size = committee;
    p.verifier_quorum = quorum;
    let reward = env.reward_authority.pubkey();
    env.send(
        &[ix::update_config(&admin.pubkey(), p, &reward)],
        &admin,
        &[],
    )
    .unwrap();
    let relayer = env.relayer();
    let (accused, _) = env.compute_node(ACCUSED_STAKE);
    let vs: Vec<Keypair> = (0..verifiers)
        .map(|_| env.verifier(VERIFIER_STAKE).0)
        .collect();
    let leaves: Vec<[u8; 32]> = (0..4u8)
        .map(|i| Ledger::receipt_leaf(&[i; 32], accused.pubkey().as_array(), &[i + 100; 32]))
        .collect();
    let id = env.post_batch(&relayer, &leaves);
    let challenge = pda::challenge(&pda::batch(id), 2);
    if usize::from(committee) < verifiers {
        let total = env.config().total_verifier_stake;
        let hash = (0u8..=255)
            .map(|i| [i; 32])
            .find(|h| {
                let seed = sortition::challenge_seed(h, challenge.as_array());
                let n = vs
                    .iter()
                    .filter(|v| {
                        sortition::is_selected(&seed, v.pubkey().as_array(), VERIFIER_STAKE, total, committee)
                    })
                    .count();
                n >= usize::from(quorum) && n < vs.len()
            })
            .expect("a slot hash that splits the committee");
        env.set_slot_hash(hash);
    }
    let (challenger, challenger_ata) = env.user(1_000);
    let claim = ReceiptClaim {
        leaf_index: 2,
        task_id: [2; 32],
        receipt_digest: [102; 32],
        proof: merkle::proof::<Ledger>(&leaves, 2).unwrap(),
    };
    let meta = env
        .send(
            &[ix::open_challenge(
                &challenger.pubkey(),
                &challenger_ata,
                id,
                &accused.pubkey(),
                claim,
            )],
            &challenger,
            &[],
        )
        .unwrap();
    assert!(matches!(
        from_logs(&meta.logs).as_slice(),
        [StrataEvent::ChallengeOpened(_)]
    ));
    let c: Challenge = env.account(&challenge);
    let (selected, not_selected) = vs.into_iter().partition(|v| {
        sortition::is_selected(
            &c.seed,
            v.pubkey().as_array(),
            VERIFIER_STAKE,
            c.total_verifier_stake,
            committee,
        )
    });
    Dispute {
        env,
        accused,
        challenger_ata,
        challenge,
        selected,
        not_selected,
    }
}

impl Dispute {
    /// Submits a verdict signed by `voters` (the first one pays).
    pub fn verdict(
        &mut self,
        voters: &[&Keypair],
        upheld: bool,
    ) -> Result<TransactionMetadata, TransactionError> {
        let ixs = Env::verdict_ixs(
            &self.challenge,
            &self.accused.pubkey(),
            &self.challenger_ata,
            voters,
            upheld,
        );
        let submitter = voters[0].insecure_clone();
        self.env.send(&ixs, &submitter, &[])
    }

    /// Two distinct selected verifiers (a quorum of 2).
    pub fn quorum(&self) -> (Keypair, Keypair) {
        (
            self.selected[0].insecure_clone(),
            self.selected[1].insecure_clone(),
        )
    }

    pub fn accused_node(&self) -> Node {
        self.env.account(&pda::node(&self.accused.pubkey()))
    }
}
