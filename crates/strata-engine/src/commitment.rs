//! Per-layer activation commitments and their Merkle tree.
//!
//! While a node executes a task it records, for every layer `l` it runs, an entry
//! holding the blake3 hash of the layer's input hidden states (all positions, in
//! the canonical encoding of [`HiddenHasher`]) and a sketch of the layer's output.
//! A last entry (index `n_layers`) holds the hash of the final hidden state, so
//! that the output of every layer is committed as the next entry's input.
//!
//! The sketch is a seeded random projection: each position's output vector is
//! projected on [`SKETCH_DIM`] fixed ±1 directions (derived from the layer index),
//! scaled by `1/√d` and stored as f16: 8 bytes per position per layer. It lets a
//! verifier spot-check an output without opening the next entry, and costs a few
//! thousand additions per position, far below the layer's own work.
//!
//! The [`CommitmentRecorder`] collects a sequence's entries as a
//! [`LayerObserver`] of the model's forward pass: the model calls it with the
//! sequence's rows around every layer, and never names it.
//!
//! The entries are the leaves of a binary Merkle tree (domain-separated blake3;
//! an odd node is promoted unchanged). The root goes into the task's receipt; any
//! entry can be opened with a proof of `⌈log2(n)⌉` hashes.

use std::ops::Range;

use half::f16;
use strata_primitives::limits::MAX_PROOF_LEN;
use strata_primitives::merkle::{self, domains::Commitments, MerkleTree};

use crate::error::{EngineError, Result};
use crate::hidden::HiddenHasher;
use crate::model::LayerObserver;
use crate::ops::dot;

/// Number of random projections in a sketch.
pub const SKETCH_DIM: usize = 4;
/// Upper bound on one encoded entry or opening (a 64k-position sketch plus proof).
pub const MAX_ENTRY_BYTES: usize = 4 << 20;

/// One leaf: the commitment of one layer's execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    /// Layer index (`n_layers` for the final hidden state).
    pub layer: u32,
    /// Positions covered.
    pub positions: u32,
    /// [`HiddenHasher`] digest of the layer's input states.
    pub input_hash: [u8; 32],
    /// `positions × SKETCH_DIM` f16 bit patterns of the output sketch (empty for
    /// the final entry).
    pub sketch: Vec<u16>,
}

impl LayerEntry {
    /// Leaf hash of the entry.
    pub fn leaf_hash(&self) -> [u8; 32] {
        Commitments::leaf(&self.encode())
    }

    /// Canonical bytes: layer u32, positions u32, input hash, sketch length u32,
    /// sketch u16s, all little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(44 + self.sketch.len() * 2);
        out.extend_from_slice(&self.layer.to_le_bytes());
        out.extend_from_slice(&self.positions.to_le_bytes());
        out.extend_from_slice(&self.input_hash);
        out.extend_from_slice(&(self.sketch.len() as u32).to_le_bytes());
        for s in &self.sketch {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// Decodes [`LayerEntry::encode`]'s output, refusing more than `max_bytes`.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Self> {
        let bad = |m: &str| EngineError::Commitment(format!("malformed entry: {m}"));
        if bytes.len() > max_bytes {
            return Err(bad("too long"));
        }
        if bytes.len() < 44 {
            return Err(bad("too short"));
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let layer = u32_at(0);
        let positions = u32_at(4);
        let mut input_hash = [0u8; 32];
        input_hash.copy_from_slice(&bytes[8..40]);
        let n = u32_at(40) as usize;
        if n.checked_mul(2).and_then(|b| b.checked_add(44)) != Some(bytes.len()) {
            return Err(bad("sketch length does not match the message"));
        }
        let sketch = bytes[44..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(Self {
            layer,
            positions,
            input_hash,
            sketch,
        })
    }
}

/// The ±1 projection directions of layer `layer` for width `cols`.
pub(crate) fn sketch_directions(layer: u32, cols: usize) -> Vec<f32> {
    let mut h = blake3::Hasher::new();
    h.update(b"strata/sketch/v1");
    h.update(&layer.to_le_bytes());
    let mut bits = vec![0u8; (SKETCH_DIM * cols).div_ceil(8)];
    h.finalize_xof().fill(&mut bits);
    let scale = 1.0 / (cols.max(1) as f32).sqrt();
    (0..SKETCH_DIM * cols)
        .map(|i| {
            if bits[i / 8] >> (i % 8) & 1 == 1 {
                scale
            } else {
                -scale
            }
        })
        .collect()
}

/// Sketch of `rows` (a multiple of `cols` values) appended to `out`.
pub(crate) fn sketch_rows(dirs: &[f32], cols: usize, rows: &[f32], out: &mut Vec<u16>) {
    for row in rows.chunks_exact(cols) {
        for d in dirs.chunks_exact(cols) {
            out.push(f16::from_f32(dot(row, d)).to_bits());
        }
    }
}

/// Sketch of a matrix of states for layer `layer`.
pub fn sketch(layer: u32, states: &crate::HiddenStates) -> Vec<u16> {
    let dirs = sketch_directions(layer, states.cols());
    let mut out = Vec::new();
    sketch_rows(&dirs, states.cols(), states.as_slice(), &mut out);
    out
}

/// Records the entries of one sequence for the layers `[a, b)` this node runs.
#[derive(Clone)]
pub struct CommitmentRecorder {
    range: Range<usize>,
    n_layers: usize,
    cols: usize,
    inputs: Vec<HiddenHasher>,
    sketches: Vec<Vec<u16>>,
    dirs: Vec<Vec<f32>>,
    /// Hash of the final states, when this range ends at the last layer.
    final_hash: Option<HiddenHasher>,
    /// Retained input states per entry (what a node keeps to answer openings).
    states: Option<Vec<Vec<f32>>>,
}

impl std::fmt::Debug for CommitmentRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitmentRecorder")
            .field("range", &self.range)
            .field("retaining_states", &self.states.is_some())
            .finish()
    }
}

impl CommitmentRecorder {
    /// A recorder for layers `range` of a model with `n_layers` blocks of width `cols`.
    pub fn new(range: Range<usize>, n_layers: usize, cols: usize) -> Self {
        let layers: Vec<usize> = range.clone().collect();
        Self {
            inputs: layers
                .iter()
                .map(|&l| HiddenHasher::new(l as u32, cols))
                .collect(),
            sketches: vec![Vec::new(); layers.len()],
            dirs: layers
                .iter()
                .map(|&l| sketch_directions(l as u32, cols))
                .collect(),
            final_hash: (range.end == n_layers).then(|| HiddenHasher::new(n_layers as u32, cols)),
            states: None,
            range,
            n_layers,
            cols,
        }
    }

    /// Also keeps every recorded input state (and the final state), so that the
    /// node can later answer openings with [`CommitmentRecorder::states`].
    pub fn retaining_states(mut self) -> Self {
        let n = self.inputs.len() + usize::from(self.final_hash.is_some());
        self.states = Some(vec![Vec::new(); n]);
        self
    }

    /// The retained input states of entry `layer` (None unless retaining).
    pub fn states(&self, layer: usize) -> Option<crate::HiddenStates> {
        let i = layer.checked_sub(self.range.start)?;
        let rows = self.states.as_ref()?.get(i)?;
        crate::HiddenStates::new(rows.len() / self.cols.max(1), self.cols, rows.clone()).ok()
    }

    fn index(&self, layer: usize) -> Result<usize> {
        if self.range.contains(&layer) {
            Ok(layer - self.range.start)
        } else {
            Err(EngineError::Commitment(format!(
                "layer {layer} is outside the recorder's range {:?}",
                self.range
            )))
        }
    }

    /// Called with a segment's rows just before layer `layer` runs.
    pub fn record_input(&mut self, layer: usize, rows: &[f32]) -> Result<()> {
        let i = self.index(layer)?;
        self.inputs[i].update(rows);
        if let Some(st) = self.states.as_mut() {
            st[i].extend_from_slice(rows);
        }
        Ok(())
    }

    /// Called with the same rows just after layer `layer` ran.
    pub fn record_output(&mut self, layer: usize, rows: &[f32]) -> Result<()> {
        let i = self.index(layer)?;
        sketch_rows(&self.dirs[i], self.cols, rows, &mut self.sketches[i]);
        if layer + 1 == self.n_layers {
            if let Some(h) = self.final_hash.as_mut() {
                h.update(rows);
            }
            if let Some(st) = self.states.as_mut().and_then(|s| s.last_mut()) {
                st.extend_from_slice(rows);
            }
        }
        Ok(())
    }

    /// The entries recorded so far, in layer order.
    pub fn entries(&self) -> Vec<LayerEntry> {
        let mut out: Vec<LayerEntry> = self
            .range
            .clone()
            .enumerate()
            .map(|(i, l)| LayerEntry {
                layer: l as u32,
                positions: self.inputs[i].rows() as u32,
                input_hash: self.inputs[i].finalize(),
                sketch: self.sketches[i].clone(),
            })
            .collect();
        if let Some(h) = &self.final_hash {
            out.push(LayerEntry {
                layer: self.n_layers as u32,
                positions: h.rows() as u32,
                input_hash: h.finalize(),
                sketch: Vec::new(),
            });
        }
        out
    }
}

impl LayerObserver for CommitmentRecorder {
    fn before_layer(&mut self, layer: usize, rows: &[f32]) -> Result<()> {
        self.record_input(layer, rows)
    }

    fn after_layer(&mut self, layer: usize, rows: &mut [f32]) -> Result<()> {
        self.record_output(layer, rows)
    }
}

/// The Merkle tree over a task's entries (leaf `i` is entry `i`, layers 0..=L).
#[derive(Debug, Clone)]
pub struct CommitmentTree {
    entries: Vec<LayerEntry>,
    tree: MerkleTree<Commitments>,
}

impl CommitmentTree {
    /// Builds the tree; entries must be layers `0, 1, …, n` in order (a pipeline
    /// concatenates its shards' entries).
    pub fn new(entries: Vec<LayerEntry>) -> Result<Self> {
        if entries.is_empty() {
            return Err(EngineError::Commitment("no entries".into()));
        }
        for (i, e) in entries.iter().enumerate() {
            if e.layer as usize != i {
                return Err(EngineError::Commitment(format!(
                    "entry {i} is for layer {}; entries must be in layer order from 0",
                    e.layer
                )));
            }
        }
        let tree = MerkleTree::new(entries.iter().map(LayerEntry::leaf_hash).collect());
        Ok(Self { entries, tree })
    }

    /// The root that goes into the receipt.
    pub fn root(&self) -> [u8; 32] {
        self.tree.root()
    }

    /// The entries (leaves).
    pub fn entries(&self) -> &[LayerEntry] {
        &self.entries
    }

    /// Opens the entry of `layer` with its proof.
    pub fn open(&self, layer: usize) -> Result<Opening> {
        let entry = self
            .entries
            .get(layer)
            .cloned()
            .ok_or_else(|| EngineError::Commitment(format!("no entry for layer {layer}")))?;
        let proof = self
            .tree
            .proof(layer)
            .ok_or_else(|| EngineError::Commitment(format!("no entry for layer {layer}")))?;
        Ok(Opening {
            entry,
            n_leaves: self.entries.len() as u32,
            proof,
        })
    }
}

/// An entry with its Merkle proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// The opened entry (its `layer` is its leaf index).
    pub entry: LayerEntry,
    /// Number of leaves in the tree.
    pub n_leaves: u32,
    /// Sibling hashes from the leaf up (levels where the node was promoted have none).
    pub proof: Vec<[u8; 32]>,
}

impl Opening {
    /// Checks the opening against a receipt's root.
    pub fn verify(&self, root: &[u8; 32]) -> Result<()> {
        merkle::verify::<Commitments>(
            root,
            self.entry.leaf_hash(),
            u64::from(self.entry.layer),
            u64::from(self.n_leaves),
            &self.proof,
        )
        .map_err(|e| EngineError::Commitment(e.to_string()))
    }

    /// Wire encoding: n_leaves u32, proof count u32, proof hashes, entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.n_leaves.to_le_bytes());
        out.extend_from_slice(&(self.proof.len() as u32).to_le_bytes());
        for p in &self.proof {
            out.extend_from_slice(p);
        }
        out.extend_from_slice(&self.entry.encode());
        out
    }

    /// Decodes [`Opening::encode`]'s output, refusing more than `max_bytes`.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Self> {
        let bad = |m: &str| EngineError::Commitment(format!("malformed opening: {m}"));
        if bytes.len() > max_bytes {
            return Err(bad("too long"));
        }
        if bytes.len() < 8 {
            return Err(bad("too short"));
        }
        let n_leaves = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let count = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        if count > MAX_PROOF_LEN {
            return Err(bad("proof longer than the deepest tree"));
        }
        let end = 8 + count * 32;
        if bytes.len() < end {
            return Err(bad("truncated proof"));
        }
        let proof = bytes[8..end]
            .chunks_exact(32)
            .map(|c| {
                let mut a = [0u8; 32];
                a.copy_from_slice(c);
                a
            })
            .collect();
        let entry = LayerEntry::decode(&bytes[end..], max_bytes)?;
        Ok(Self {
            entry,
            n_leaves,
            proof,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries(n: usize) -> Vec<LayerEntry> {
        (0..n)
            .map(|i| LayerEntry {
                layer: i as u32,
                positions: 3,
                input_hash: [i as u8; 32],
                sketch: vec![i as u16; 12],
            })
            .collect()
    }

    #[test]
    fn every_opening_verifies_for_all_tree_sizes() {
        for n in 1..=33 {
            let t = CommitmentTree::new(entries(n)).unwrap();
            for l in 0..n {
                let o = t.open(l).unwrap();
                o.verify(&t.root()).unwrap();
                let o2 = Opening::decode(&o.encode(), MAX_ENTRY_BYTES).unwrap();
                assert_eq!(o, o2);
            }
        }
    }

    #[test]
    fn tampered_openings_fail() {
        let t = CommitmentTree::new(entries(31)).unwrap();
        let mut o = t.open(7).unwrap();
        o.entry.sketch[0] ^= 1;
        assert!(o.verify(&t.root()).is_err());
        let mut o = t.open(7).unwrap();
        o.entry.layer = 8;
        assert!(o.verify(&t.root()).is_err());
        let mut o = t.open(7).unwrap();
        o.proof.pop();
        assert!(o.verify(&t.root()).is_err());
    }

    proptest! {
        #[test]
        fn opening_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Opening::decode(&bytes, MAX_ENTRY_BYTES);
            let _ = LayerEntry::decode(&bytes, MAX_ENTRY_BYTES);
        }
    }
}
