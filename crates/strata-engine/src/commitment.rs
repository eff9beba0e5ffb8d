//! Per-layer activation commitments and their Merkle tree.
//!
//! While a node executes a task it records, for every layer `l` it runs, an entry
//! holding the blake3 hash of the layer's input hidden states (all positions, in
//! the canonical encoding of [`HiddenHasher`]) and a sketch of the layer's output.
//! A last entry (index `n_layers`, or `b` for a pipeline hop running `[a, b)`)
//! holds the hash of the states leaving the range, so
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
    cols: usize,
    inputs: Vec<HiddenHasher>,
    sketches: Vec<Vec<u16>>,
    dirs: Vec<Vec<f32>>,
    /// Hash of the states leaving the range (entry `range.end`): always kept by
    /// a pipeline hop (the next hop's first entry must equal it), and by a
    /// whole-model run for the final states.
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
    /// A recorder for layers `range` of a model with `n_layers` blocks of width
    /// `cols`; the exit entry is recorded when the range ends at the last layer.
    pub fn new(range: Range<usize>, n_layers: usize, cols: usize) -> Self {
        let exit = range.end == n_layers;
        Self::with_exit(range, cols, exit)
    }

    /// A recorder for a pipeline hop running layers `range`: its entries are
    /// `range.start ..= range.end`, the last one hashing the states it hands
    /// on, so that hop k's exit entry and hop k+1's first entry carry the same
    /// hash (the link a verifier checks between their receipts).
    pub fn new_hop(range: Range<usize>, cols: usize) -> Self {
        Self::with_exit(range, cols, true)
    }

    fn with_exit(range: Range<usize>, cols: usize, exit: bool) -> Self {
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
            final_hash: exit.then(|| HiddenHasher::new(range.end as u32, cols)),
            states: None,
            range,
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
        if layer + 1 == self.range.end {
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
                layer: self.range.end as u32,
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

/// The Merkle tree over a task's entries: leaf `i` is the entry of layer
/// `first + i` (layers `0..=L` for a whole-model run, `a..=b` for a pipeline
/// hop's own tree).
#[derive(Debug, Clone)]
pub struct CommitmentTree {
    first: usize,
    entries: Vec<LayerEntry>,
    tree: MerkleTree<Commitments>,
}

impl CommitmentTree {
    /// Builds the tree; entries must be layers `0, 1, …, n` in order.
    pub fn new(entries: Vec<LayerEntry>) -> Result<Self> {
        Self::for_range(0, entries)
    }

    /// Builds a hop's tree; entries must be layers `first, first + 1, …` in order.
    pub fn for_range(first: usize, entries: Vec<LayerEntry>) -> Result<Self> {
        if entries.is_empty() {
            return Err(EngineError::Commitment("no entries".into()));
        }
        for (i, e) in entries.iter().enumerate() {
            if e.layer as usize != first + i {
                return Err(EngineError::Commitment(format!(
                    "entry {i} is for layer {}; entries must be in layer order from {first}",
                    e.layer
                )));
            }
        }
        let tree = MerkleTree::new(entries.iter().map(LayerEntry::leaf_hash).collect());
        Ok(Self {
            first,
            entries,
            tree,
        })
    }

    /// The layer of leaf 0.
    pub fn first_layer(&self) -> usize {
        self.first
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
        let missing = || EngineError::Commitment(format!("no entry for layer {layer}"));
        let leaf = layer.checked_sub(self.first).ok_or_else(missing)?;
        let entry = self.entries.get(leaf).cloned().ok_or_else(missing)?;
        let proof = self.tree.proof(leaf).ok_or_else(missing)?;
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
    /// The opened entry (its leaf index is its `layer` less the tree's first layer).
    pub entry: LayerEntry,
    /// Number of leaves in the tree.
    pub n_leaves: u32,
    /// Sibling hashes from the leaf up (levels where the node was promoted have none).
    pub proof: Vec<[u8; 32]>,
}

impl Opening {
    /// Checks the opening against a whole-model receipt's root.
    pub fn verify(&self, root: &[u8; 32]) -> Result<()> {
        self.verify_at(root, 0)
    }

    /// Checks the opening against the root of a tree whose leaf 0 is layer
    /// `first_layer` (a pipeline hop's receipt).
    pub fn verify_at(&self, root: &[u8; 32], first_layer: u32) -> Result<()> {
        let leaf = self.entry.layer.checked_sub(first_layer).ok_or_else(|| {
            EngineError::Commitment(format!(
                "entry for layer {} is below the tree's first layer {first_layer}",
                self.entry.layer
            ))
        })?;
        merkle::verify::<Commitments>(
            root,
            self.entry.leaf_hash(),
            u64::from(leaf),
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

    #[test]
    fn hop_trees_open_and_verify_at_their_first_layer() {
        let all = entries(31);
        let hop = CommitmentTree::for_range(10, all[10..=20].to_vec()).unwrap();
        assert_eq!(hop.first_layer(), 10);
        for l in 10..=20 {
            let o = hop.open(l).unwrap();
            assert_eq!(o.entry.layer as usize, l);
            o.verify_at(&hop.root(), 10).unwrap();
            // The same opening read as leaf `l` of a tree from 0 does not verify.
            assert!(o.verify(&hop.root()).is_err());
            assert!(o.verify_at(&hop.root(), 11).is_err());
        }
        assert!(hop.open(9).is_err() && hop.open(21).is_err());
        let o = hop.open(10).unwrap();
        assert!(o.verify_at(&hop.root(), 12).is_err());
        // Out-of-order or wrongly numbered entries are refused.
        assert!(CommitmentTree::for_range(11, all[10..=20].to_vec()).is_err());
    }

    proptest! {
        #[test]
        fn opening_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Opening::decode(&bytes, MAX_ENTRY_BYTES);
            let _ = LayerEntry::decode(&bytes, MAX_ENTRY_BYTES);
        }
    }
}
