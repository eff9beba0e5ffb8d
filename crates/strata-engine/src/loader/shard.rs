//! Which part of a model a process loads. A node of a layer-sharded pipeline
//! holds a contiguous range of blocks, plus the token embedding when it is the
//! first hop and the final norm and head when it is the last: the rest of the
//! file is never read into memory, which is what lets a pipeline serve a
//! model no single member could hold.

use std::ops::Range;

use crate::error::{EngineError, Result};

/// The part of a model to load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Shard {
    /// Every block, the embedding and the head.
    #[default]
    Whole,
    /// Blocks `[a, b)`; the embedding comes with them when `a == 0` and the
    /// head when `b` is the model's block count.
    Layers(Range<usize>),
}

/// A [`Shard`] resolved against a model's block count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parts {
    pub(crate) layers: Range<usize>,
    pub(crate) embedding: bool,
    pub(crate) head: bool,
}

impl Shard {
    /// The parts to load from a model of `n_layers` blocks; an empty range or
    /// one reaching past the last block is refused before anything is read.
    pub(crate) fn parts(&self, n_layers: usize) -> Result<Parts> {
        let layers = match self {
            Shard::Whole => 0..n_layers,
            Shard::Layers(r) => r.clone(),
        };
        if layers.start >= layers.end || layers.end > n_layers {
            return Err(EngineError::InvalidRequest(format!(
                "shard layers {layers:?} are not a non-empty range within 0..{n_layers}"
            )));
        }
        Ok(Parts {
            embedding: layers.start == 0,
            head: layers.end == n_layers,
            layers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_the_range() {
        let whole = Shard::Whole.parts(30).unwrap();
        assert_eq!(
            (whole.layers, whole.embedding, whole.head),
            (0..30, true, true)
        );
        let first = Shard::Layers(0..10).parts(30).unwrap();
        assert_eq!((first.embedding, first.head), (true, false));
        let middle = Shard::Layers(10..20).parts(30).unwrap();
        assert_eq!((middle.embedding, middle.head), (false, false));
        let last = Shard::Layers(20..30).parts(30).unwrap();
        assert_eq!((last.embedding, last.head), (false, true));
    }

    #[test]
    fn bad_ranges_are_refused() {
        #[allow(clippy::reversed_empty_ranges)]
        let ranges = [5..5, 7..3, 0..31, 30..31];
        for r in ranges {
            assert!(Shard::Layers(r.clone()).parts(30).is_err(), "{r:?}");
        }
    }
}
