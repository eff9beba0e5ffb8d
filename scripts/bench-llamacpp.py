"""llama.cpp reference figures for engine-bench (run inside the venv that
scripts/bench-llamacpp-setup makes). Prints key=value lines.

usage: bench-llamacpp.py MODEL PROMPT_IDS(comma) LONG_PROMPT_IDS(comma) N_NEW THREADS
                         [STREAM_PROMPTS(';'-separated comma lists) STREAM_NEW]
"""
import sys
import time

import llama_cpp
import numpy as np

model, prompt, long_prompt, n_new, threads = sys.argv[1:6]
stream_prompts = [[int(t) for t in p.split(",")] for p in sys.argv[6].split(";")] if len(sys.argv) > 7 else []
stream_new = int(sys.argv[7]) if len(sys.argv) > 7 else 0
prompt = [int(t) for t in prompt.split(",")]
long_prompt = [int(t) for t in long_prompt.split(",")]
n_new = int(n_new)
llm = llama_cpp.Llama(model_path=model, n_ctx=2048, n_threads=int(threads),
                      n_threads_batch=int(threads), n_batch=512, verbose=False)


def greedy(tokens, n):
    llm.reset()
    out, t_first, t0 = [], None, time.perf_counter()
    for t in llm.generate(tokens, temp=0.0, top_k=1, reset=True):
        if t_first is None:
            t_first = time.perf_counter()
        out.append(t)
        if len(out) >= n:
            break
    return out, t_first - t0, time.perf_counter() - t_first


greedy(prompt, 8)  # warm-up
out, _, decode_s = greedy(prompt, n_new)
print(f"decode_tok_s={(len(out) - 1) / decode_s:.3f}")
print("greedy=" + ",".join(map(str, out)))
ttfts = []
for _ in range(3):
    _, ttft, _ = greedy(long_prompt, 1)
    ttfts.append(ttft)
print(f"ttft_s={min(ttfts):.4f}")


def streams(n, new):
    """Aggregate greedy decode tok/s of n sequences in one llama_decode batch per
    step (llama.cpp's own continuous batching), timed as engine-bench times its
    Batcher: the prefill step (all prompts, first token) excluded."""
    model_p = llm._model.model
    prompts = [stream_prompts[i % len(stream_prompts)] for i in range(n)]
    cp = llama_cpp.llama_context_default_params()
    cp.n_seq_max = n
    cp.n_ctx = n * 256
    cp.n_batch = cp.n_ubatch = max(512, sum(len(p) for p in prompts))
    cp.n_threads = cp.n_threads_batch = int(threads)
    ctx = llama_cpp.llama_init_from_model(model_p, cp)
    vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model_p))
    batch = llama_cpp.llama_batch_init(cp.n_batch, 0, n)

    def run(entries):
        batch.n_tokens = len(entries)
        for i, (tok, pos, seq, want) in enumerate(entries):
            batch.token[i] = tok
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = want
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    def argmax(i):
        return int(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i), shape=(vocab,)).argmax())

    entries, last = [], []
    for s, p in enumerate(prompts):
        entries += [(t, j, s, j == len(p) - 1) for j, t in enumerate(p)]
        last.append(len(entries) - 1)
    run(entries)
    nxt = [argmax(i) for i in last]
    pos = [len(p) for p in prompts]
    t0, produced = time.perf_counter(), 0
    for _ in range(new - 1):
        run([(nxt[s], pos[s], s, True) for s in range(n)])
        nxt = [argmax(s) for s in range(n)]
        pos = [p + 1 for p in pos]
        produced += n
    rate = produced / (time.perf_counter() - t0)
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    return rate

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent.
with open("/proc/self/status") as f:
    hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
print(f"peak_rss_mb={hwm / 1024:.1f}")

# After the one-sequence peak above, like engine-bench.
if stream_prompts:
    streams(4, 8)  # warm-up
    for n in (8, 32):
        print(f"agg{n}_tok_s={streams(n, stream_new):.3f}")
