//! Calibrates the layer-check tolerance and shows that it separates honest
//! executions from cheats: `cargo run --release -p engine-bench --bin calibrate`.
//!
//! 1. Honest deviation: the same prompts executed alone vs batched with other
//!    sequences, by incremental decode vs one prefill pass, with 1 vs 2 threads
//!    (a child process), and re-checked by a verifier whose CPU takes another
//!    kernel path (a child process with `STRATA_KERNEL=scalar`).
//! 2. Threshold = largest honest deviation × margin.
//! 3. At least 1,000 sampled layer checks per row: honest, skipped layer, another
//!    layer's weights, 1 % of activations perturbed, all activations jittered by
//!    1 %, and a smaller (re-quantized Q4_0) model's states.

use std::io::Write;
use std::process::Command;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use strata_engine::{
    check_layer, relative_deviation, trace_layers, Batcher, ChatMessage, Engine, GenerateRequest,
    HiddenStates, Model, Tolerance, WireDType, DEFAULT_TOLERANCE,
};

const PROMPTS: &[&str] = &[
    "What is the capital of France?",
    "Write a haiku about autumn.",
    "Explain what a neural network is.",
    "List three primary colors.",
    "How do I boil an egg?",
    "What is 17 times 23?",
    "Translate 'thank you' into Spanish.",
    "Who painted the Mona Lisa?",
    "Give me a tip for learning to code.",
    "Why is the sky blue?",
    "Name a famous physicist.",
    "Describe the water cycle briefly.",
];
const NEW_TOKENS: usize = 12;
const MARGIN: f32 = 1.85;

/// Per prompt: the token sequence executed and each layer's input states (+ final).
struct Trace {
    tokens: Vec<u32>,
    states: Vec<HiddenStates>,
    root: [u8; 32],
}

fn run(engine: &Engine, batched: bool) -> Result<Vec<Trace>> {
    let m = &engine.model;
    let mut b = Batcher::new(m);
    let mut ids = Vec::new();
    for (i, p) in PROMPTS.iter().enumerate() {
        let prompt = engine.chat_prompt(&[ChatMessage::new("user", p)])?;
        let mut req = GenerateRequest::greedy(prompt, NEW_TOKENS);
        req.record_commitments = true;
        req.retain_states = true;
        ids.push((
            b.add(req)?,
            engine.chat_prompt(&[ChatMessage::new("user", p)])?,
        ));
        if batched {
            // Staggered joins: sequences enter while others are mid-decode.
            if i % 3 == 2 {
                b.step()?;
            }
        } else {
            while !b.is_idle() {
                b.step()?;
            }
        }
    }
    let done = b.run_to_completion()?;
    let mut out = Vec::new();
    for (id, prompt) in ids {
        let f = done
            .iter()
            .find(|f| f.id == id)
            .context("missing sequence")?;
        let rec = f.recorder.as_ref().context("no recorder")?;
        let states = (0..=m.n_layers())
            .map(|l| rec.states(l).context("no states"))
            .collect::<Result<Vec<_>>>()?;
        let mut tokens = prompt;
        tokens.extend_from_slice(&f.tokens[..f.tokens.len() - 1]);
        let root = f.commitments.as_ref().context("no tree")?.root();
        out.push(Trace {
            tokens,
            states,
            root,
        });
    }
    Ok(out)
}

fn max_dev(a: &[Trace], b: &[Trace]) -> Result<f32> {
    let mut worst = 0f32;
    for (x, y) in a.iter().zip(b) {
        for (s, t) in x.states.iter().zip(&y.states) {
            worst = worst.max(relative_deviation(s, t)?);
        }
    }
    Ok(worst)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A smaller stand-in: every Q4_1 tensor re-quantized to Q4_0 (4.5 instead of 5
/// bits per weight), the cheap model a cheater might run instead.
fn smaller_model(path: &std::path::Path) -> Result<Model> {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use candle_core::Device;
    let mut f = std::fs::File::open(path)?;
    let ct = gguf_file::Content::read(&mut f)?;
    let mut tensors = Vec::new();
    for name in ct.tensor_infos.keys() {
        let t = ct.tensor(&mut f, name, &Device::Cpu)?;
        let t = if t.dtype() == GgmlDType::Q4_1 {
            QTensor::quantize(&t.dequantize(&Device::Cpu)?, GgmlDType::Q4_0)?
        } else {
            t
        };
        tensors.push((name.clone(), t));
    }
    let meta: Vec<(&str, &gguf_file::Value)> =
        ct.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &meta, &ts)?;
    Ok(Model::from_gguf_bytes(buf.into_inner())?)
}

fn child(args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let exe = std::env::current_exe()?;
    let mut c = Command::new(exe);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output()?;
    if !out.status.success() {
        bail!("child failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let engine = Engine::load_default()?;
    let m = &engine.model;
    let n = m.n_layers();
    match args.get(1).map(String::as_str) {
        Some("--roots") => {
            for t in run(&engine, false)? {
                println!("{}", hex(&t.root));
            }
            return Ok(());
        }
        Some("--recheck") => {
            // Re-check every layer of the dumped traces; print the worst deviation.
            let bytes = std::fs::read(&args[2])?;
            let mut worst = 0f32;
            let mut off = 0;
            let mut states = Vec::new();
            while off < bytes.len() {
                let len = u64::from_le_bytes(bytes[off..off + 8].try_into()?) as usize;
                states.push(HiddenStates::decode(
                    &bytes[off + 8..off + 8 + len],
                    usize::MAX,
                )?);
                off += 8 + len;
            }
            for trace in states.chunks(n + 1) {
                for l in 0..n {
                    let c = check_layer(m, l, &trace[l], &trace[l + 1], None, DEFAULT_TOLERANCE)?;
                    worst = worst.max(c.rel_dev);
                }
            }
            println!("{worst:e}");
            return Ok(());
        }
        _ => {}
    }

    println!(
        "kernel: {}, model: {n} layers, {} prompts x {NEW_TOKENS} new tokens",
        strata_engine::kernel_name(),
        PROMPTS.len()
    );
    let solo = run(&engine, false)?;
    let batched = run(&engine, true)?;
    let prefill: Vec<Trace> = solo
        .iter()
        .map(|t| {
            Ok(Trace {
                tokens: t.tokens.clone(),
                states: trace_layers(m, &t.tokens)?,
                root: [0; 32],
            })
        })
        .collect::<Result<_>>()?;
    let dev_batch = max_dev(&solo, &batched)?;
    let dev_prefill = max_dev(&solo, &prefill)?;
    let roots_1t = child(
        &["--roots"],
        &[("CANDLE_NUM_THREADS", "1"), ("RAYON_NUM_THREADS", "1")],
    )?;
    let roots_2t: Vec<String> = solo.iter().map(|t| hex(&t.root)).collect();
    let same_roots = roots_1t.lines().map(str::to_string).collect::<Vec<_>>() == roots_2t;
    let batched_roots_equal = solo.iter().zip(&batched).all(|(a, b)| a.root == b.root);

    // Same-machine honest re-checks (executed by decode, re-run as prefill).
    let mut honest_same = 0f32;
    for t in &solo {
        for l in 0..n {
            let c = check_layer(
                m,
                l,
                &t.states[l],
                &t.states[l + 1],
                None,
                DEFAULT_TOLERANCE,
            )?;
            honest_same = honest_same.max(c.rel_dev);
        }
    }
    // A verifier on another kernel path re-checks the same traces.
    let dump = std::env::temp_dir().join(format!("strata-calib-{}.bin", std::process::id()));
    {
        let mut f = std::fs::File::create(&dump)?;
        for t in &solo {
            for s in &t.states {
                let b = s.encode(WireDType::F32)?;
                f.write_all(&(b.len() as u64).to_le_bytes())?;
                f.write_all(&b)?;
            }
        }
    }
    let other = if strata_engine::kernel_name() == "avx2" {
        "scalar"
    } else {
        "avx2"
    };
    let cross: f32 = child(
        &["--recheck", dump.to_str().unwrap_or_default()],
        &[("STRATA_KERNEL", other)],
    )?
    .trim()
    .parse()?;
    let _ = std::fs::remove_file(&dump);

    println!("\nHonest deviation (max over all layers and positions of max|Δ|/rms):");
    println!("  alone vs batched with 11 others (staggered joins) : {dev_batch:e}  (roots equal: {batched_roots_equal})");
    println!("  incremental decode vs one prefill pass            : {dev_prefill:e}");
    println!(
        "  1 thread vs 2 threads                              : {}",
        if same_roots {
            "0 (all 12 commitment roots identical)".to_string()
        } else {
            "roots differ".into()
        }
    );
    println!("  re-check on the same kernel (decode vs re-run)    : {honest_same:e}");
    println!("  re-check on another kernel path ({other} verifier) : {cross:e}");
    let honest_max = dev_batch.max(dev_prefill).max(honest_same).max(cross);
    let threshold = (honest_max * MARGIN).max(1e-4);
    println!("  threshold = max honest x {MARGIN} (floor 1e-4) = {threshold:e}; DEFAULT_TOLERANCE.max_rel_dev = {:e}", DEFAULT_TOLERANCE.max_rel_dev);
    let tol = Tolerance {
        max_rel_dev: DEFAULT_TOLERANCE.max_rel_dev.max(threshold),
        ..DEFAULT_TOLERANCE
    };

    let small = smaller_model(&strata_engine::default_model_path()?)?;
    let small_traces: Vec<Vec<HiddenStates>> = solo
        .iter()
        .map(|t| trace_layers(&small, &t.tokens))
        .collect::<strata_engine::Result<_>>()?;

    // Samples: every (prompt, layer) of three honest executions = 1,080.
    let sources = [&solo, &batched, &prefill];
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let names = [
        "honest",
        "skipped layer",
        "another layer's weights",
        "1% of activations perturbed",
        "all activations jittered 1%",
        "smaller model (Q4_0) states",
    ];
    let mut stats = vec![(0usize, 0usize, f32::INFINITY, 0f32); names.len()]; // (n, pass, min dev, max dev)
    for (si, src) in sources.iter().enumerate() {
        for (pi, t) in src.iter().enumerate() {
            for l in 0..n {
                let input = &t.states[l];
                let output = &t.states[l + 1];
                for (kind, st) in stats.iter_mut().enumerate() {
                    let (inp, claimed) = match kind {
                        0 => (input.clone(), output.clone()),
                        1 => (input.clone(), input.clone()),
                        2 => {
                            let other = (l + 1 + rng.random_range(0..n - 1)) % n;
                            (input.clone(), m.run_layer_fresh(other, input)?)
                        }
                        3 => {
                            let cols = output.cols();
                            let mut d = output.as_slice().to_vec();
                            let count = (d.len() / 100).max(1);
                            for _ in 0..count {
                                let i = rng.random_range(0..d.len());
                                let row =
                                    &output.as_slice()[(i / cols) * cols..(i / cols + 1) * cols];
                                let rms =
                                    (row.iter().map(|x| x * x).sum::<f32>() / cols as f32).sqrt();
                                let g: f32 = rng.random_range(-1.0f32..1.0);
                                d[i] += g * rms;
                            }
                            (input.clone(), HiddenStates::new(output.rows(), cols, d)?)
                        }
                        4 => {
                            let d = output
                                .as_slice()
                                .iter()
                                .map(|v| v * (1.0 + 0.01 * rng.random_range(-1.0f32..1.0)))
                                .collect();
                            (
                                input.clone(),
                                HiddenStates::new(output.rows(), output.cols(), d)?,
                            )
                        }
                        _ => {
                            let s = &small_traces[pi];
                            (s[l].clone(), s[l + 1].clone())
                        }
                    };
                    let c = check_layer(m, l, &inp, &claimed, None, tol)?;
                    st.0 += 1;
                    st.1 += usize::from(c.passed);
                    st.2 = st.2.min(c.rel_dev);
                    st.3 = st.3.max(c.rel_dev);
                }
            }
        }
        let _ = si;
    }
    println!(
        "\nLayer checks at threshold {:e} ({} prompts x {n} layers x 3 honest executions):",
        tol.max_rel_dev,
        PROMPTS.len()
    );
    println!(
        "| case                            | checks | pass    | fail    | min dev   | max dev   |"
    );
    println!(
        "|---------------------------------|--------|---------|---------|-----------|-----------|"
    );
    for (name, (cnt, pass, lo, hi)) in names.iter().zip(&stats) {
        let p = 100.0 * *pass as f64 / *cnt as f64;
        println!(
            "| {name:<31} | {cnt:>6} | {p:>6.2}% | {:>6.2}% | {lo:>9.2e} | {hi:>9.2e} |",
            100.0 - p
        );
    }
    Ok(())
}
