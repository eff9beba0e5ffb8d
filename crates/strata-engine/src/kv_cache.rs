//! Per-sequence key/value cache over a range of layers.

use std::ops::Range;

use crate::error::{EngineError, Result};

/// Keys and values of one layer for one sequence, one row per position
/// (`kv_dim = n_kv_heads · head_dim` values each).
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerKv {
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
    pub(crate) len: usize,
}

/// The KV cache of one sequence for the layers `[a, b)` that this node runs. A
/// pipeline shard keeps caches only for its own layers.
#[derive(Debug, Clone)]
pub struct KvCache {
    range: Range<usize>,
    layers: Vec<LayerKv>,
}

impl KvCache {
    /// An empty cache for layers `range`.
    pub fn new(range: Range<usize>) -> Self {
        let n = range.end.saturating_sub(range.start);
        Self {
            range,
            layers: vec![LayerKv::default(); n],
        }
    }
    /// The layers this cache covers.
    pub fn layer_range(&self) -> Range<usize> {
        self.range.clone()
    }
    /// Positions stored (those of the first layer; every layer of a range advances
    /// together once a forward pass over the range completes).
    pub fn len(&self) -> usize {
        self.layers.first().map(|l| l.len).unwrap_or(0)
    }
    /// True when no position is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes held by keys and values.
    pub fn memory_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.capacity() + l.v.capacity()) * 4)
            .sum()
    }
    pub(crate) fn layer_mut(&mut self, layer: usize) -> Result<&mut LayerKv> {
        if !self.range.contains(&layer) {
            return Err(EngineError::InvalidRequest(format!(
                "layer {layer} is outside the cache's range {:?}",
                self.range
            )));
        }
        Ok(&mut self.layers[layer - self.range.start])
    }
    pub(crate) fn layer(&self, layer: usize) -> Option<&LayerKv> {
        layer
            .checked_sub(self.range.start)
            .and_then(|i| self.layers.get(i))
    }
}
