//! Relayers and receipt batches, and drawing a batch's audit seed.

use solana_keypair::Keypair;
use solana_signer::Signer;
use strata_chain::ix;
use strata_chain::merkle::{self, domains::Ledger};

use super::{Env, SOL};

impl Env {
    /// A relayer the admin allowed.
    pub fn relayer(&mut self) -> Keypair {
        let relayer = Keypair::new();
        self.svm
            .airdrop(&relayer.pubkey(), 10 * SOL)
            .expect("airdrop");
        let admin = self.admin.insecure_clone();
        self.send(
            &[ix::add_relayer(&admin.pubkey(), &relayer.pubkey())],
            &admin,
            &[],
        )
        .expect("add relayer");
        relayer
    }

    /// Posts a batch of `leaves` and returns its id.
    pub fn post_batch(&mut self, relayer: &Keypair, leaves: &[[u8; 32]]) -> u64 {
        let id = self.config().next_batch_id;
        let epoch = self.config().epoch_at(self.now());
        let ix = ix::post_batch(
            &relayer.pubkey(),
            id,
            epoch,
            merkle::root::<Ledger>(leaves),
            leaves.len() as u32,
            1_000,
        );
        self.send(&[ix], relayer, &[]).expect("post batch");
        id
    }
}

impl Env {
    /// The batch record of `id`.
    pub fn batch(&self, id: u64) -> strata_program::state::Batch {
        self.account(&strata_chain::pda::batch(id))
    }

    /// Sends `seal_batch` for batch `id` (paid by a fresh key: anyone may).
    pub fn seal_batch(
        &mut self,
        id: u64,
    ) -> Result<litesvm::types::TransactionMetadata, solana_transaction_error::TransactionError>
    {
        let (anyone, _) = self.user(0);
        self.send(&[ix::seal_batch(id)], &anyone, &[])
    }
}
