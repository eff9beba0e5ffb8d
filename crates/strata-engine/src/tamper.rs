//! Tampering with a sequence's layers, for the local testnet's cheating nodes.
//!
//! A node that cheats (skips layers, runs a truncated model, adds noise) is
//! what the verification network exists to catch, and the testnet runs such
//! nodes on purpose so that audits, challenges and slashes can be watched and
//! tested. A [`LayerTamper`] rewrites a block's output after it ran; the
//! commitments then record the tampered states, exactly as a cheater's
//! would. Honest serving never sets one.

use std::sync::Arc;

use crate::commitment::CommitmentRecorder;
use crate::error::Result;
use crate::model::LayerObserver;

/// Rewrites the output of block `layer` given its input (both for the
/// sequence's new rows).
pub trait LayerTamper: Send + Sync + std::fmt::Debug {
    /// Changes `output` (the block's result for these rows) in place.
    fn tamper(&self, layer: usize, input: &[f32], output: &mut [f32]);
}

/// What watches one sequence's layers: its commitment recorder and, on a
/// cheating node, the tamperer that runs first.
#[derive(Debug, Default)]
pub(crate) struct SeqObserver {
    pub(crate) recorder: Option<CommitmentRecorder>,
    tamper: Option<Arc<dyn LayerTamper>>,
    /// The rows as they entered the current layer (kept only when tampering).
    input: Vec<f32>,
}

impl SeqObserver {
    pub(crate) fn new(
        recorder: Option<CommitmentRecorder>,
        tamper: Option<Arc<dyn LayerTamper>>,
    ) -> Self {
        Self {
            recorder,
            tamper,
            input: Vec::new(),
        }
    }

    /// Whether anything watches at all (else the model is not told).
    pub(crate) fn is_active(&self) -> bool {
        self.recorder.is_some() || self.tamper.is_some()
    }
}

impl LayerObserver for SeqObserver {
    fn before_layer(&mut self, layer: usize, rows: &[f32]) -> Result<()> {
        if self.tamper.is_some() {
            self.input.clear();
            self.input.extend_from_slice(rows);
        }
        match self.recorder.as_mut() {
            Some(r) => r.before_layer(layer, rows),
            None => Ok(()),
        }
    }

    fn after_layer(&mut self, layer: usize, rows: &mut [f32]) -> Result<()> {
        if let Some(t) = &self.tamper {
            t.tamper(layer, &self.input, rows);
        }
        match self.recorder.as_mut() {
            Some(r) => r.after_layer(layer, rows),
            None => Ok(()),
        }
    }
}
