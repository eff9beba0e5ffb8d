//! Clients, escrows and voucher redemption.

use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_signer::Signer;
use strata_chain::ed25519::{verify_instruction, SignedMessage};
use strata_chain::{ix, messages, Pubkey, PROGRAM_ID};

use super::Env;

impl Env {
    /// A client with `deposit` in escrow.
    pub fn client(&mut self, deposit: u64) -> (Keypair, Pubkey) {
        let (client, ata) = self.user(deposit * 2);
        self.send(
            &[ix::deposit(&client.pubkey(), &ata, deposit)],
            &client,
            &[],
        )
        .expect("deposit");
        (client, ata)
    }

    /// The ed25519 + redeem pair for `vouchers` (client, node, node token, cumulative).
    pub fn redeem_ixs(
        &self,
        payer: &Pubkey,
        vouchers: &[(&Keypair, Pubkey, Pubkey, u64)],
    ) -> Vec<Instruction> {
        let signed: Vec<_> = vouchers
            .iter()
            .map(|(client, node, _, cumulative)| {
                SignedMessage::sign(
                    client,
                    &messages::voucher_message(PROGRAM_ID.as_array(), node.as_array(), *cumulative),
                )
            })
            .collect();
        let accounts: Vec<_> = vouchers
            .iter()
            .map(|(client, node, node_token, _)| ix::VoucherAccounts {
                client: client.pubkey(),
                node: *node,
                node_token: *node_token,
            })
            .collect();
        vec![
            verify_instruction(&signed).expect("ed25519 ix"),
            ix::redeem_vouchers(payer, &accounts),
        ]
    }
}
