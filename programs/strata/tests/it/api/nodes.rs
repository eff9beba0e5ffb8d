//! Nodes: registration, roles and stake.

use solana_keypair::Keypair;
use solana_signer::Signer;
use strata_chain::{ix, Capacity, Pubkey, ROLE_COMPUTE, ROLE_VERIFIER};

use super::Env;

impl Env {
    /// Registers a node with `roles` and stakes `stake`.
    pub fn node(&mut self, roles: u8, stake: u64) -> (Keypair, Pubkey) {
        let (op, ata) = self.user(stake.max(1) * 10);
        let register = ix::register_node(
            &op.pubkey(),
            vec!["/ip4/127.0.0.1/tcp/4001".into()],
            Capacity {
                memory_mb: 8_192,
                compute_score: 2_600,
                bandwidth_mbps: 100,
            },
            roles,
        );
        let mut ixs = vec![register];
        if stake > 0 {
            ixs.push(ix::stake(&op.pubkey(), &ata, &self.mint, stake));
        }
        self.send(&ixs, &op, &[]).expect("register and stake");
        (op, ata)
    }

    pub fn compute_node(&mut self, stake: u64) -> (Keypair, Pubkey) {
        self.node(ROLE_COMPUTE, stake)
    }

    pub fn verifier(&mut self, stake: u64) -> (Keypair, Pubkey) {
        self.node(ROLE_VERIFIER, stake)
    }
}
