//! Set-up shared by the wire tests.

use strata_chain::{Keypair, Signer};
use strata_wire::{ReceiptBody, Voucher};

/// A receipt body served by `node` for `client`, paid by a voucher of
/// `cumulative` that covers `price`.
pub fn body(node: &Keypair, client: &Keypair, price: u64, cumulative: u64) -> ReceiptBody {
    ReceiptBody {
        version: strata_wire::receipt::RECEIPT_VERSION,
        task_id: [7; 32],
        node: node.pubkey().to_bytes(),
        model_hash: [1; 32],
        input_hash: strata_wire::tokens_hash(&[1, 2, 3]),
        output_hash: strata_wire::tokens_hash(&[4, 5]),
        prompt_tokens: 3,
        completion_tokens: 2,
        commitment_root: [9; 32],
        sampling: strata_wire::Sampling {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 7,
        },
        price,
        voucher: Voucher::sign(client, &node.pubkey(), cumulative),
        finished_at_ms: 1,
    }
}
