//! Client-signed payment vouchers. A voucher names a node and a running
//! total: the client owes that node `cumulative` base units in all, so a
//! newer voucher supersedes every older one and the program pays only the
//! difference over what was already redeemed.

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer as _, SigningKey};
use strata_chain::ed25519::SignedMessage;
use strata_chain::messages::voucher_message;
use strata_chain::{Keypair, Pubkey, PROGRAM_ID};

use crate::WireError;

/// A signed voucher, exactly what the program's `redeem_vouchers` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Voucher {
    /// The paying client (its escrow is debited).
    pub client: [u8; 32],
    /// The node paid.
    pub node: [u8; 32],
    /// Running total owed by `client` to `node`, in token base units.
    pub cumulative: u64,
    /// The client's ed25519 signature over the program's voucher message.
    pub signature: [u8; 64],
}

impl Voucher {
    /// Signs a voucher with the client's key.
    pub fn sign(client: &Keypair, node: &Pubkey, cumulative: u64) -> Self {
        let key = SigningKey::from_bytes(client.secret_bytes());
        let message = voucher_message(PROGRAM_ID.as_array(), node.as_array(), cumulative);
        Self {
            client: key.verifying_key().to_bytes(),
            node: node.to_bytes(),
            cumulative,
            signature: key.sign(&message).to_bytes(),
        }
    }

    /// The bytes the client signed.
    pub fn message(&self) -> Vec<u8> {
        voucher_message(PROGRAM_ID.as_array(), &self.node, self.cumulative).to_vec()
    }

    /// Checks the client's signature.
    pub fn verify(&self) -> Result<(), WireError> {
        if self.signed_message().verify() {
            Ok(())
        } else {
            Err(WireError::Invalid(
                "voucher signature does not match its client".into(),
            ))
        }
    }

    /// The voucher as the ed25519 precompile entry the program reads.
    pub fn signed_message(&self) -> SignedMessage {
        SignedMessage {
            signer: Pubkey::from(self.client),
            signature: self.signature,
            message: self.message(),
        }
    }

    /// The client as a pubkey.
    pub fn client_key(&self) -> Pubkey {
        Pubkey::from(self.client)
    }

    /// The node as a pubkey.
    pub fn node_key(&self) -> Pubkey {
        Pubkey::from(self.node)
    }
}
