//! AdamW over candle `Var`s, with its moments exposed so a checkpoint can
//! save them and a resumed run continue the same trajectory.

use candle_core::{Tensor, Var};

use crate::error::{Result, TrainerError};

/// AdamW's constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate.
    pub lr: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Gradients are scaled down to this global L2 norm when above it.
    pub max_grad_norm: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 2e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
        }
    }
}

/// The optimizer: first and second moments per variable, and the step count.
#[derive(Debug)]
pub struct AdamW {
    cfg: AdamWConfig,
    /// `(m, v)` per variable, in the order of the variables given at creation.
    moments: Vec<(Tensor, Tensor)>,
    step: u64,
}

impl AdamW {
    /// Zero moments for `vars`.
    pub fn new(cfg: AdamWConfig, vars: &[&Var]) -> Result<Self> {
        let moments = vars
            .iter()
            .map(|v| Ok((v.zeros_like()?, v.zeros_like()?)))
            .collect::<Result<_>>()?;
        Ok(Self {
            cfg,
            moments,
            step: 0,
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The moments, for a checkpoint.
    pub fn moments(&self) -> &[(Tensor, Tensor)] {
        &self.moments
    }

    /// Restores saved moments and step count (their shapes must match).
    pub fn restore(&mut self, moments: Vec<(Tensor, Tensor)>, step: u64) -> Result<()> {
        if moments.len() != self.moments.len()
            || moments
                .iter()
                .zip(&self.moments)
                .any(|((m, _), (m0, _))| m.shape() != m0.shape())
        {
            return Err(TrainerError::Checkpoint(
                "optimizer moments do not match the model's LoRA shapes".into(),
            ));
        }
        self.moments = moments;
        self.step = step;
        Ok(())
    }

    /// One update of `vars` from `grads` (one per variable, `None` where the
    /// loss did not reach it: such a variable is only decayed); returns the
    /// gradients' global norm before clipping.
    pub fn step(&mut self, vars: &[&Var], grads: &[Option<Tensor>]) -> Result<f64> {
        if vars.len() != self.moments.len() || grads.len() != vars.len() {
            return Err(TrainerError::Invalid(
                "variables changed since creation".into(),
            ));
        }
        let mut sq = 0.0;
        for g in grads.iter().flatten() {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(TrainerError::Invalid(format!("gradient norm is {norm}")));
        }
        let clip = if norm > self.cfg.max_grad_norm {
            self.cfg.max_grad_norm / norm
        } else {
            1.0
        };
        self.step += 1;
        let c = &self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        for ((v, g), (m, s)) in vars.iter().zip(grads).zip(self.moments.iter_mut()) {
            let decayed = v.as_tensor().affine(1.0 - c.lr * c.weight_decay, 0.0)?;
            let Some(g) = g else {
                v.set(&decayed)?;
                continue;
            };
            let g = g.affine(clip, 0.0)?;
            *m = (m.affine(c.beta1, 0.0)? + g.affine(1.0 - c.beta1, 0.0)?)?;
            *s = (s.affine(c.beta2, 0.0)? + g.sqr()?.affine(1.0 - c.beta2, 0.0)?)?;
            let mhat = m.affine(1.0 / bc1, 0.0)?;
            let shat = s.affine(1.0 / bc2, 0.0)?;
            let update = mhat.div(&(shat.sqrt()? + c.eps)?)?;
            v.set(&(decayed - update.affine(c.lr, 0.0)?)?)?;
        }
        Ok(norm)
    }
}
