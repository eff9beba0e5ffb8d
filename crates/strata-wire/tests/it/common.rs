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
        hop: None,
        adapter: None,
    }
}

/// The receipt body of hop `index` (of 3, on a 30-block model split
/// 0..10 / 10..20 / 20..30) of task `[7; 32]`, segment 0.
pub fn hop_body(node: &Keypair, client: &Keypair, index: u8) -> ReceiptBody {
    let (start, end) = (u16::from(index) * 10, u16::from(index) * 10 + 10);
    let task_id = [7; 32];
    ReceiptBody {
        version: strata_wire::receipt::HOP_RECEIPT_VERSION,
        task_id: strata_wire::hop_task_id(&task_id, 0, index, &node.pubkey().to_bytes()),
        hop: Some(strata_wire::HopPart {
            task_id,
            segment: 0,
            index,
            count: 3,
            start,
            end,
            n_layers: 30,
            positions: 4,
            cells: 5 * 10,
            sample_offset: 0,
            input_states: [index; 32],
            output_states: [index + 1; 32],
            prev: [0; 32],
            next: [0; 32],
        }),
        adapter: None,
        ..body(node, client, 16, 16)
    }
}
