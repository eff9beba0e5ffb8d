//! Keys, receipts and batches for the tests.

use strata_chain::accounts::Batch;
use strata_chain::merkle::{domains::Ledger, MerkleTree};
use strata_chain::{Keypair, Pubkey, Signer};
use strata_wire::api::{BatchInclusion, ReceiptView};
use strata_wire::receipt::RECEIPT_VERSION;
use strata_wire::{hex32, tokens_hash, Receipt, ReceiptBody, Sampling, Voucher};

/// A receipt signed by `node` for a task with these tokens and root.
pub fn receipt(
    node: &Keypair,
    task_id: [u8; 32],
    model_hash: [u8; 32],
    prompt: &[u32],
    output: &[u32],
    commitment_root: [u8; 32],
    sampling: Sampling,
) -> Receipt {
    let client = Keypair::new();
    let price = 10 * (prompt.len() + output.len()) as u64;
    let body = ReceiptBody {
        version: RECEIPT_VERSION,
        task_id,
        node: node.pubkey().to_bytes(),
        model_hash,
        input_hash: tokens_hash(prompt),
        output_hash: tokens_hash(output),
        prompt_tokens: prompt.len() as u32,
        completion_tokens: output.len() as u32,
        commitment_root,
        sampling,
        price,
        voucher: Voucher::sign(&client, &node.pubkey(), price),
        finished_at_ms: 1_700_000_000_000,
        hop: None,
        adapter: None,
    };
    match Receipt::sign(node, body) {
        Ok(r) => r,
        Err(e) => panic!("signing a receipt: {e}"),
    }
}

/// Greedy sampling.
pub fn greedy() -> Sampling {
    Sampling::GREEDY
}

/// `n` receipts from a few nodes, with made-up tokens.
pub fn receipts(n: usize) -> Vec<Receipt> {
    let nodes: Vec<Keypair> = (0..3).map(|_| Keypair::new()).collect();
    (0..n)
        .map(|i| {
            let mut task = [0u8; 32];
            task[..8].copy_from_slice(&(i as u64).to_le_bytes());
            receipt(
                &nodes[i % nodes.len()],
                task,
                [9; 32],
                &[1, 2, 3, i as u32],
                &[4, 5],
                [i as u8; 32],
                greedy(),
            )
        })
        .collect()
}

/// The on-chain batch `id` over `receipts`, sealed.
pub fn batch(id: u64, receipts: &[Receipt]) -> Batch {
    let leaves: Vec<[u8; 32]> = receipts.iter().map(Receipt::leaf).collect();
    Batch {
        version: 1,
        bump: 255,
        id,
        relayer: Pubkey::new_unique(),
        epoch: 0,
        root: MerkleTree::<Ledger>::new(leaves).root(),
        task_count: receipts.len() as u32,
        work_units: 0,
        posted_at: 1_700_000_000,
        posted_slot: 100,
        seed_slot: 104,
        audit_seed: [3; 32],
        open_challenges: 0,
        reserved: [0; 12],
    }
}

/// The relayer's view of `r`, at `leaf_index` of batch `batch_id` with `proof`.
pub fn receipt_view(
    r: &Receipt,
    batch_id: u64,
    leaf_index: u32,
    proof: &[[u8; 32]],
) -> ReceiptView {
    ReceiptView::new(
        r,
        0,
        Some(BatchInclusion {
            batch_id,
            status: "posted".into(),
            leaf_index,
            leaf_count: 0,
            proof: proof.iter().map(hex32).collect(),
            root: String::new(),
            post_signature: None,
        }),
    )
}
