//! GRPO's loss and gradients on a tiny random model in f64, against central
//! finite differences: the autograd path (attention, RoPE, norms, SwiGLU,
//! LoRA, the clipped and weighted objective, the KL term) is differentiated
//! correctly, or this fails.

use candle_core::{DType, Device, Tensor};
use strata_engine::{LlamaConfig, LoraTarget};
use strata_trainer::{grpo_loss, GrpoConfig, LoraConfig, PolicyModel, TokenBatch, TokenTerms};

fn tiny() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 13,
        hidden_size: 8,
        intermediate_size: 12,
        n_layers: 2,
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 4,
        rope_theta: 10_000.0,
        rms_eps: 1e-5,
        context_length: 32,
    }
}

fn model() -> PolicyModel {
    let lora = LoraConfig {
        rank: 2,
        alpha: 4.0,
        targets: LoraTarget::ALL.to_vec(),
    };
    let m = PolicyModel::random(&tiny(), lora, DType::F64, 3).unwrap();
    // B starts at zero, where A has no gradient; give both factors values.
    for (i, p) in m.pairs().iter().enumerate() {
        let b = Tensor::rand(-0.5f64, 0.5, p.b.shape(), &Device::Cpu).unwrap();
        m.set_pair(i, &p.a.as_tensor().clone(), &b).unwrap();
    }
    m
}

/// Loss at the model's current parameters for fixed terms.
fn loss(m: &PolicyModel, cfg: &GrpoConfig, tb: &TokenBatch, terms: &TokenTerms) -> f64 {
    let logp = m.token_logprobs(tb, true, 0.8).unwrap();
    let (l, _) = grpo_loss(cfg, &logp, terms).unwrap();
    l.to_scalar::<f64>().unwrap()
}

fn check(cfg: GrpoConfig, prox_shift: f64) {
    let m = model();
    let dev = Device::Cpu;
    let seqs = vec![
        (vec![1, 2, 3], vec![4, 5, 6, 7]),
        (vec![2, 9], vec![10, 3, 12]),
        (vec![5], vec![0, 11]),
    ];
    let tb = TokenBatch::new(&seqs, &dev).unwrap();
    let n = tb.n_scored();
    let logp0 = m.token_logprobs(&tb, true, 0.8).unwrap().detach();
    // prox away from θ₀ by alternating ±shift puts some ratios outside the
    // clip range (zero gradient there) and keeps the others inside.
    let shift: Vec<f64> = (0..n)
        .map(|i| if i % 2 == 0 { prox_shift } else { -prox_shift })
        .collect();
    let prox = (&logp0 + Tensor::new(shift, &dev).unwrap()).unwrap();
    let behaviour = (&logp0 + Tensor::rand(-0.3f64, 0.3, n, &dev).unwrap()).unwrap();
    let adv: Vec<f64> = tb.seq_of.iter().map(|&s| [1.2, -0.7, 0.4][s]).collect();
    let terms = TokenTerms {
        prox,
        behaviour,
        advantage: Tensor::new(adv, &dev).unwrap(),
        reference: Some(m.token_logprobs(&tb, false, 0.8).unwrap().detach()),
        total_tokens: n,
    };
    let logp = m.token_logprobs(&tb, true, 0.8).unwrap();
    let (l, stats) = grpo_loss(&cfg, &logp, &terms).unwrap();
    if prox_shift > cfg.clip_eps {
        assert!(stats.clip_fraction > 0.0, "the case should clip: {stats:?}");
    }
    let grads = l.backward().unwrap();
    let h = 1e-6;
    let mut checked = 0;
    let mut nonzero = 0;
    for (pi, p) in m.pairs().iter().enumerate().step_by(3) {
        for (which, var) in [(0, &p.a), (1, &p.b)] {
            let g = grads
                .get(var.as_tensor())
                .expect("every pair is reached")
                .flatten_all()
                .unwrap();
            let g: Vec<f64> = g.to_vec1().unwrap();
            let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            for k in [0, base.len() / 2, base.len() - 1] {
                let at = |d: f64| {
                    let mut v = base.clone();
                    v[k] += d;
                    let t = Tensor::from_vec(v, var.shape(), &dev).unwrap();
                    let (a, b) = match which {
                        0 => (t, p.b.as_tensor().clone()),
                        _ => (p.a.as_tensor().clone(), t),
                    };
                    m.set_pair(pi, &a, &b).unwrap();
                    let l = loss(&m, &cfg, &tb, &terms);
                    let orig = Tensor::from_vec(base.clone(), var.shape(), &dev).unwrap();
                    let (a, b) = match which {
                        0 => (orig, p.b.as_tensor().clone()),
                        _ => (p.a.as_tensor().clone(), orig),
                    };
                    m.set_pair(pi, &a, &b).unwrap();
                    l
                };
                let fd = (at(h) - at(-h)) / (2.0 * h);
                let err = (fd - g[k]).abs();
                assert!(
                    err <= 1e-6 + 1e-4 * fd.abs().max(g[k].abs()),
                    "pair {pi} ({:?} {}) [{k}]: autograd {} vs finite difference {fd}",
                    p.target,
                    ["A", "B"][which],
                    g[k]
                );
                checked += 1;
                nonzero += usize::from(g[k].abs() > 1e-9);
            }
        }
    }
    assert!(
        checked >= 20 && nonzero >= checked / 2,
        "{nonzero} of {checked} non-zero"
    );
}

#[test]
fn gradients_match_finite_differences_on_policy() {
    check(
        GrpoConfig {
            clip_eps: 0.2,
            tis_cap: 2.0,
            kl_beta: 0.0,
        },
        0.0,
    );
}

#[test]
fn gradients_match_finite_differences_with_clipping_weights_and_kl() {
    check(
        GrpoConfig {
            clip_eps: 0.2,
            tis_cap: 1.1,
            kl_beta: 0.3,
        },
        0.5,
    );
}

#[test]
fn the_loss_is_the_formula() {
    // One token per case, computed by hand from the module's formula.
    let dev = Device::Cpu;
    let t = |v: Vec<f64>| Tensor::new(v, &dev).unwrap();
    let logp = t(vec![-1.0, -2.0, -0.5]);
    let terms = TokenTerms {
        prox: t(vec![-1.5, -1.0, -0.5]),
        behaviour: t(vec![-1.5, -2.0, -0.1]),
        advantage: t(vec![1.0, -1.0, 2.0]),
        reference: None,
        total_tokens: 3,
    };
    let cfg = GrpoConfig {
        clip_eps: 0.2,
        tis_cap: 2.0,
        kl_beta: 0.0,
    };
    let (l, stats) = grpo_loss(&cfg, &logp, &terms).unwrap();
    // token 0: r = e^0.5 ≈ 1.6487 > 1.2, A > 0: min(1.6487, 1.2) = 1.2; w = 1
    // token 1: r = e^-1 ≈ 0.3679 < 0.8, A < 0: min(-0.3679, -0.8) = -0.8; w = min(e^1, 2) = 2
    // token 2: r = 1, A = 2: 2; w = e^-0.4 ≈ 0.67032
    let want = -(1.2 * 1.0 + -0.8 * 2.0 + 2.0 * (-0.4f64).exp()) / 3.0;
    let got = l.to_scalar::<f64>().unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    assert!((stats.clip_fraction - 2.0 / 3.0).abs() < 1e-12, "{stats:?}");
    assert!(
        (stats.capped_fraction - 1.0 / 3.0).abs() < 1e-12,
        "{stats:?}"
    );
}
