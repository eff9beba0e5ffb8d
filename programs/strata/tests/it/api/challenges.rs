//! Challenges: a node with an open challenge against one of its receipts,
//! its committee drawn, and the verifiers the sortition did and did not
//! select; verdicts signed by chosen verifiers.

use litesvm::types::TransactionMetadata;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_signer::Signer;
use solana_transaction_error::TransactionError;
use strata_chain::ed25519::{verify_instruction, SignedMessage};
use strata_chain::events::{from_logs, StrataEvent};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::{ix, messages, pda, sortition, Pubkey, PROGRAM_ID};
use strata_program::instructions::ReceiptClaim;
use strata_program::state::{Challenge, Node};

use super::{params, Env};

/// Stake of every verifier in a dispute.
pub const VERIFIER_STAKE: u64 = 5_000;
/// Stake of the accused node.
pub const ACCUSED_STAKE: u64 = 10_000;

pub struct Dispute {
    pub env: Env,
    /// The relayer that posted the disputed batch.
    pub relayer: Keypair,
    pub accused: Keypair,
    pub challenger: Keypair,
    pub challenger_ata: Pubkey,
    pub challenge: Pubkey,
    pub batch_id: u64,
    pub leaves: Vec<[u8; 32]>,
    pub verifiers: Vec<Keypair>,
    pub selected: Vec<Keypair>,
    pub not_selected: Vec<Keypair>,
}

/// The claim of leaf `index` among `leaves` (task id `[index; 32]`, digest
/// `[index + 100; 32]`, as [`dispute_leaves`] builds them).
pub fn claim(leaves: &[[u8; 32]], index: u8) -> ReceiptClaim {
    ReceiptClaim {
        leaf_index: u32::from(index),
        task_id: [index; 32],
        receipt_digest: [index + 100; 32],
        proof: merkle::proof::<Ledger>(leaves, usize::from(index)).expect("leaf in range"),
    }
}

/// Four receipt leaves served by `node`.
pub fn dispute_leaves(node: &Pubkey) -> Vec<[u8; 32]> {
    (0..4u8)
        .map(|i| Ledger::receipt_leaf(&[i; 32], node.as_array(), &[i + 100; 32]))
        .collect()
}

/// A network with an accused compute node, `verifiers` staked verifiers and
/// the given committee size and quorum, and a batch of the accused's
/// receipts; no challenge yet.
pub fn disputed_network(verifiers: usize, committee: u8, quorum: u8) -> Dispute {
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
    let leaves = dispute_leaves(&accused.pubkey());
    let batch_id = env.post_batch(&relayer, &leaves);
    // Verifier stake must predate a challenge to count on its committee.
    env.advance_slots(1);
    let (challenger, challenger_ata) = env.user(1_000);
    Dispute {
        env,
        relayer,
        challenge: pda::challenge(&pda::batch(batch_id), 2),
        accused,
        challenger,
        challenger_ata,
        batch_id,
        leaves,
        verifiers: vs,
        selected: Vec::new(),
        not_selected: Vec::new(),
    }
}

/// Opens a challenge against leaf 2 and draws its committee. When the
/// committee is smaller than the verifier set, the seed slot's hash is chosen
/// (off-chain, as anyone could search for one) so that the sortition selects
/// at least a quorum but not everyone.
pub fn open_dispute(verifiers: usize, committee: u8, quorum: u8) -> Dispute {
    let mut d = disputed_network(verifiers, committee, quorum);
    d.open().expect("open challenge");
    d.draw(committee, quorum);
    d
}

impl Dispute {
    /// Sends `open_challenge` for leaf 2 from the challenger.
    pub fn open(&mut self) -> Result<TransactionMetadata, TransactionError> {
        let ix = ix::open_challenge(
            &self.challenger.pubkey(),
            &self.challenger_ata,
            self.batch_id,
            &self.accused.pubkey(),
            claim(&self.leaves, 2),
        );
        let challenger = self.challenger.insecure_clone();
        let meta = self.env.send(&[ix], &challenger, &[])?;
        assert!(matches!(
            from_logs(&meta.logs).as_slice(),
            [StrataEvent::ChallengeOpened(_)]
        ));
        Ok(meta)
    }

    /// Reaches the challenge's seed slot with a hash that splits the
    /// committee, sends `draw_committee` and sorts the verifiers into
    /// selected and not selected.
    pub fn draw(&mut self, committee: u8, quorum: u8) {
        let c = self.challenge_account();
        let key = self.challenge;
        let vs = &self.verifiers;
        let hash = (0u8..=255)
            .map(|i| [i; 32])
            .find(|h| {
                if usize::from(committee) >= vs.len() {
                    return true;
                }
                let seed = sortition::challenge_seed(h, key.as_array());
                let n = vs
                    .iter()
                    .filter(|v| {
                        sortition::is_selected(
                            &seed,
                            v.pubkey().as_array(),
                            VERIFIER_STAKE,
                            c.total_verifier_stake,
                            committee,
                        )
                    })
                    .count();
                n >= usize::from(quorum) && n < vs.len()
            })
            .expect("a slot hash that splits the committee");
        self.env.reach_seed_slot(c.seed_slot, hash);
        let (anyone, _) = self.env.user(0);
        self.env
            .send(&[ix::draw_committee(&self.challenge)], &anyone, &[])
            .expect("draw committee");
        let c = self.challenge_account();
        let (selected, not_selected) =
            self.verifiers
                .iter()
                .map(|v| v.insecure_clone())
                .partition(|v| {
                    sortition::is_selected(
                        &c.seed,
                        v.pubkey().as_array(),
                        VERIFIER_STAKE,
                        c.total_verifier_stake,
                        c.terms.committee_size,
                    )
                });
        self.selected = selected;
        self.not_selected = not_selected;
    }

    /// Submits a verdict signed by `voters` (the first one pays).
    pub fn verdict(
        &mut self,
        voters: &[&Keypair],
        upheld: bool,
    ) -> Result<TransactionMetadata, TransactionError> {
        let ixs = verdict_ixs(
            &self.challenge,
            &pda::batch(self.batch_id),
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

    pub fn challenge_account(&self) -> Challenge {
        self.env.account(&self.challenge)
    }

    /// Sends `expire_challenge` from a stranger.
    pub fn expire(&mut self) -> Result<TransactionMetadata, TransactionError> {
        let (anyone, _) = self.env.user(0);
        self.env.send(
            &[ix::expire_challenge(
                &anyone.pubkey(),
                &self.challenge,
                &pda::batch(self.batch_id),
                &self.accused.pubkey(),
                &self.challenger.pubkey(),
                &self.challenger_ata,
            )],
            &anyone,
            &[],
        )
    }
}

/// The ed25519 + resolve pair for a verdict signed by `voters` (the first submits).
pub fn verdict_ixs(
    challenge: &Pubkey,
    batch: &Pubkey,
    accused: &Pubkey,
    challenger_token: &Pubkey,
    voters: &[&Keypair],
    upheld: bool,
) -> Vec<Instruction> {
    let msg = messages::verdict_message(PROGRAM_ID.as_array(), challenge.as_array(), upheld);
    let signed: Vec<_> = voters
        .iter()
        .map(|v| SignedMessage::sign(v, &msg))
        .collect();
    let keys: Vec<_> = voters.iter().map(|v| v.pubkey()).collect();
    vec![
        verify_instruction(&signed).expect("ed25519 ix"),
        ix::resolve_challenge(
            &keys[0],
            challenge,
            batch,
            accused,
            challenger_token,
            &keys,
            upheld,
        ),
    ]
}
