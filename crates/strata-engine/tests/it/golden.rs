//! Fixed vectors: the bytes of a hidden-state message, its commitment hash,
//! and a commitment opening with its Merkle proof. A refactor that changes any
//! of them changes what crosses the wire between shards and to verifiers.

use strata_engine::{CommitmentTree, HiddenHasher, HiddenStates, LayerEntry, WireDType};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn states() -> HiddenStates {
    let data: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * 0.375).collect();
    HiddenStates::new(3, 4, data).unwrap()
}

#[test]
fn hidden_state_message_is_pinned() {
    let s = states();
    assert_eq!(hex(&s.encode(WireDType::F32).unwrap()), HIDDEN_F32);
    assert_eq!(hex(&s.encode(WireDType::F16).unwrap()), HIDDEN_F16);
    assert_eq!(hex(&HiddenHasher::hash(7, &s)), HIDDEN_HASH_L7);
}

#[test]
fn commitment_opening_is_pinned() {
    let entries: Vec<LayerEntry> = (0..5u32)
        .map(|l| LayerEntry {
            layer: l,
            positions: 3,
            input_hash: [l as u8 + 1; 32],
            sketch: if l == 4 {
                vec![]
            } else {
                vec![l as u16 * 3 + 1; 12]
            },
        })
        .collect();
    let tree = CommitmentTree::new(entries).unwrap();
    assert_eq!(hex(&tree.root()), COMMITMENT_ROOT);
    assert_eq!(hex(&tree.open(2).unwrap().encode()), OPENING_2);
}

const HIDDEN_F32: &str = "53485331010000000300000004000000000004c00000d8bf0000a8bf000070bf000010bf000040be0000403e0000103f0000703f0000a83f0000d83f00000440";
const HIDDEN_F16: &str =
    "5348533101010000030000000400000020c0c0be40bd80bb80b800b200328038803b403dc03e2040";
const HIDDEN_HASH_L7: &str = "3071ea91ffd76dc78bd82c7ff7248860ea6f2a235793e3230b9e8faa56a95576";
const COMMITMENT_ROOT: &str = "8a97b23774295cda7f14b8c4d85674f11668c76c424b3c1c23cf0d536fe25972";
const OPENING_2: &str = "0500000003000000847ea4738b878b0adf6187d7f20403d0a5182e47555b3d8590806cd5e06e1ee0718a0c3c6a172cb2f53c65bbf14548b36b04e619bfb0e69f3a1a3ce78e6096301f1883e4948a1bd8852047275d42a90a0071f9c1a2a66e84b941ecb3dbda9428020000000300000003030303030303030303030303030303030303030303030303030303030303030c000000070007000700070007000700070007000700070007000700";
