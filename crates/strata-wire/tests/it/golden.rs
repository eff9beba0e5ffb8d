//! Fixed vectors: the bytes of a receipt (version 2: with its sampling
//! settings) and of a hop's receipt (version 3), a voucher, a receipt-batch Merkle proof and the pipeline hop
//! protocol's step and token messages. A refactor that
//! changes any of them changes what is on the wire and on-chain, which must
//! be a deliberate, versioned change, not an accident.

use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::{Keypair, Signer};
use strata_wire::{Receipt, ReceiptBody, Voucher};

use crate::common::body;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn keys() -> (Keypair, Keypair) {
    (
        Keypair::new_from_array([11; 32]),
        Keypair::new_from_array([22; 32]),
    )
}

#[test]
fn voucher_bytes_are_pinned() {
    let (node, client) = keys();
    let v = Voucher::sign(&client, &node.pubkey(), 123_456_789);
    assert_eq!(hex(&v.message()), VOUCHER_MESSAGE);
    assert_eq!(hex(&strata_wire::encode(&v)), VOUCHER);
}

#[test]
fn receipt_bytes_are_pinned() {
    let (node, client) = keys();
    // The wire tests' usual body, with the version and the clock pinned.
    let body = ReceiptBody {
        version: 2,
        finished_at_ms: 1_700_000_000_000,
        ..body(&node, &client, 50, 150)
    };
    let r = Receipt::sign(&node, body).unwrap();
    assert_eq!(hex(&r.encode()), RECEIPT);
    assert_eq!(hex(&r.leaf()), RECEIPT_LEAF);
}

#[test]
fn hop_receipt_bytes_are_pinned() {
    let (node, client) = keys();
    let body = ReceiptBody {
        finished_at_ms: 1_700_000_000_000,
        ..crate::common::hop_body(&node, &client, 2)
    };
    let r = Receipt::sign(&node, body).unwrap();
    assert_eq!(hex(&r.encode()), HOP_RECEIPT);
}

#[test]
fn merkle_proof_bytes_are_pinned() {
    let (node, _) = keys();
    let leaves: Vec<[u8; 32]> = (0..5u8)
        .map(|i| Ledger::receipt_leaf(&[i; 32], node.pubkey().as_array(), &[i + 100; 32]))
        .collect();
    assert_eq!(hex(&merkle::root::<Ledger>(&leaves)), BATCH_ROOT);
    let proof: Vec<u8> = merkle::proof::<Ledger>(&leaves, 3).unwrap().concat();
    assert_eq!(hex(&proof), BATCH_PROOF_3);
    let reward = Ledger::reward_leaf(node.pubkey().as_array(), 4_242);
    assert_eq!(hex(&reward), REWARD_LEAF);
}

#[test]
fn hop_message_bytes_are_pinned() {
    use strata_wire::hop::{HopRequest, StepEntry, TokenEntry};
    let step = HopRequest::Step {
        entries: vec![StepEntry {
            task_id: [1; 32],
            segment: 0,
            position: 5,
            rows: 2,
        }],
        states: vec![0xaa; 4],
    };
    assert_eq!(hex(&strata_wire::encode(&step)), HOP_STEP);
    let tokens = HopRequest::Tokens {
        entries: vec![TokenEntry {
            task_id: [2; 32],
            segment: 1,
            position: 9,
            token: 300,
            last: true,
        }],
    };
    assert_eq!(hex(&strata_wire::encode(&tokens)), HOP_TOKENS);
}

const VOUCHER_MESSAGE: &str = "535452564f55433106a1aa4cc5e23ee075b0261470ee741224165af35665c2690735c0a00000000066be7e332c7a453332bd9d0a7f7db055f5c5ef1a06ada66d98b39fb6810c473a15cd5b0700000000";
const VOUCHER: &str = "511c34a1a2cb521df16bb246b8de8e7997ce235c7e76b22a3d7503a24819dd8a66be7e332c7a453332bd9d0a7f7db055f5c5ef1a06ada66d98b39fb6810c473a15cd5b0700000000c20db87d6b743d89486c2dd0aa045bdc3acbc63f252e19707e2644ff6caa47de53c7b99c5a8ef21a6c57f4f3efbdf8b3665d75a238885f270b534f9a9361e106";
const RECEIPT: &str = "02070707070707070707070707070707070707070707070707070707070707070766be7e332c7a453332bd9d0a7f7db055f5c5ef1a06ada66d98b39fb6810c473a0101010101010101010101010101010101010101010101010101010101010101cb68dcf7fdbfe9bdefa1622e70ae05a0d387f2a0ff09199b451dfe3f558fef2c2b6236bde0773033b88bbdfa3d90073e1a6877700e5a5097e229873cf75bfc6003000000020000000909090909090909090909090909090909090909090909090909090909090909000000000000803f0000000007000000000000003200000000000000511c34a1a2cb521df16bb246b8de8e7997ce235c7e76b22a3d7503a24819dd8a66be7e332c7a453332bd9d0a7f7db055f5c5ef1a06ada66d98b39fb6810c473a9600000000000000783ee5789e6644b8169ba216eb6cc08b9b827e3c98a1466f4468116ba0dfe41df6617f838e584a762fc5932b281c96d37e23b2cebfce745598f446bbe6807e020068e5cf8b010000f53ca3c4d8456665e22eca9d16cc5f880362cef422570d7f321ee8aa7bfce839444f65c74a9a2c937b3664f36bcaa83e7615df0c28c44f8c7594ce4c0de5b501";
const HOP_RECEIPT: &str = "03b17b0763895fe5572b2df35033c9f05d932f4c27abad3901f206c0e285064d8466be7e332c7a453332bd9d0a7f7db055f5c5ef1a06ada66d98b39fb6810c473a0101010101010101010101010101010101010101010101010101010101010101cb68dcf7fdbfe9bdefa1622e70ae05a0d387f2a0ff09199b451dfe3f558fef2c2b6236bde0773033b88bbdfa3d90073e1a6877700e5a5097e229873cf75bfc6003000000020000000909090909090909090909090909090909090909090909090909090909090909000000000000803f0000000007000000000000001000000000000000511c34a1a2cb521df16bb246b8de8e7997ce235c7e76b22a3d7503a24819dd8a66be7e332c7a453332bd9d0a7f7db055f5c5ef1a06ada66d98b39fb6810c473a1000000000000000018dc740bf160e270230a752bd4f0b39c907bb70b8d95c02b6d1348bbe646d7ed5fd9ea12d561dc2ae9a0b31fbe64990ca75234cd98541dc0b31e485916bd4060068e5cf8b010000070707070707070707070707070707070707070707070707070707070707070700020314001e001e00040000003200000000000000000000000202020202020202020202020202020202020202020202020202020202020202030303030303030303030303030303030303030303030303030303030303030300000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000a7f5921c0c20342fadcac4c21fa419133abacd8a138081795ef72045422c30d329959ad4770fa46f53665011d30fd0caa354e6ad02c8432ed74c241bcf47b606";
const RECEIPT_LEAF: &str = "f609dd507b9c04d2ee96894baf5ff49a44110449677449b3ab65bbe19e9e8859";
const BATCH_ROOT: &str = "00759d157d905561e4457dc4d5ea1336efb4034e2fc1d31a8166a6103c18a0dc";
const BATCH_PROOF_3: &str = "9303de585e040d3c95a402651a781604afec750107daa1f7acd670e6fffa874bb3c693c03321f246eab1f6b444fae4946b11680bfca29a9a8f0b720de66779eb075653d874cbcfb1bba75d4c3c45d8c67b3eceaa09a86495e3207477643591c7";
const REWARD_LEAF: &str = "ea87e6176565a127dff0362267eb98a6107ac77f878283de6d2d30ce03040bd9";
const HOP_STEP: &str = "0101000000010101010101010101010101010101010101010101010101010101010101010100050000000200000004000000aaaaaaaa";
const HOP_TOKENS: &str = "0201000000020202020202020202020202020202020202020202020202020202020202020201090000002c01000001";
