"""llama.cpp reference figures for engine-bench (run inside the venv that
scripts/bench-llamacpp-setup makes). Prints key=value lines.

usage: bench-llamacpp.py MODEL PROMPT_IDS(comma) LONG_PROMPT_IDS(comma) N_NEW THREADS
"""
import sys
import time

import llama_cpp

model, prompt, long_prompt, n_new, threads = sys.argv[1:6]
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
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent.
with open("/proc/self/status") as f:
    hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
print(f"peak_rss_mb={hwm / 1024:.1f}")
