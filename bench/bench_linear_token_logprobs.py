"""Benchmark token log-probs from hidden states (lm_head fused): naive torch, torch.compile, TRL, Liger, ours.

Every provider computes log softmax(hidden @ weight.T / T)[target]; all but ours materialise the [N, V] logits.
GPU: tokens {4096, 8192, 16384} x vocab {32000, 128256, 151936}, hidden size 4096 (``--hidden``), forward-only
and forward+backward (gradients for hidden and weight). Columns: ms, TFLOP/s (2·N·V·D per GEMM: 1 forward,
3 forward+backward), time relative to the naive materialised version, peak extra memory, max |error| of the
log-prob against an fp64 reference on 64 rows.

CPU: peak extra resident memory and time of naive against ours at 4096 x 151,936 (hidden size 256 by default:
CPU GEMMs are slow), each in a fresh subprocess (peak RSS from /proc/self/status, reset via clear_refs).

    python bench/bench_linear_token_logprobs.py [--tokens 4096] [--vocab 151936] [--hidden 4096] [--out bench/results/x.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(1, HERE)  # bench/_common.py, also when this file is loaded by path rather than run

from _common import child_row, emit, markdown_table, status_bytes, time_cuda  # noqa: E402

from microcoder_fast.ops.linear_token_logprobs import linear_token_logprobs  # noqa: E402
from microcoder_fast.reference.linear_token_logprobs import linear_token_logprobs_naive  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
T = 1.2


def naive(h, w, t):
    logits = h @ w.T
    return torch.log_softmax(logits.float() / T, dim=-1).gather(-1, t[:, None]).squeeze(-1)


_compiled = torch.compile(naive, dynamic=False)


def compiled(h, w, t):
    return _compiled(h, w, t)


def trl(h, w, t):
    from trl.trainer.utils import selective_log_softmax

    return selective_log_softmax((h @ w.T) / T, t)


def liger(h, w, t):
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    # logits / T == (h / T) @ w.T; the loss is -log p per token with reduction="none"
    return -LigerFusedLinearCrossEntropyLoss(reduction="none")(w, h / T, t)


def ours(h, w, t):
    return linear_token_logprobs(h, w, t, T)


PROVIDERS = {"naive torch": naive, "torch.compile": compiled, "TRL": trl, "Liger": liger, "ours": ours}


def available(name: str) -> bool:
    mod = {"TRL": "trl", "Liger": "liger_kernel"}.get(name)
    if mod is None:
        return True
    try:
        __import__(mod)
        return True
    except Exception:
        return False


def make_inputs(n: int, vocab: int, hidden: int, dtype: torch.dtype, device: str, seed: int = 0):
    g = torch.Generator(device=device).manual_seed(seed)
    h = torch.randn(n, hidden, generator=g, device=device).to(dtype)
    w = (torch.randn(vocab, hidden, generator=g, device=device) * (2.0 / hidden**0.5)).to(dtype)
    t = torch.randint(0, vocab, (n,), generator=g, device=device)
    return h, w, t


def make_runner(fn, h, w, t, mode: str):
    if mode == "fwd":

        def run():
            with torch.no_grad():
                return fn(h, w, t)

        return run
    hh = h.detach().clone().requires_grad_()
    ww = w.detach().clone().requires_grad_()

    def run():
        lp = fn(hh, ww, t)
        grads = torch.autograd.grad(lp.sum(), (hh, ww))
        del grads
        return lp

    return run


def bench_gpu(args) -> list[dict]:
    rows = []
    dtype = DTYPES[args.dtype]
    for vocab in args.vocab:
        for n in args.tokens:
            h, w, t = make_inputs(n, vocab, args.hidden, dtype, "cuda")
            ref = linear_token_logprobs_naive(h[:64].cpu(), w.cpu(), t[:64].cpu(), T)
            for mode in ("fwd", "fwd+bwd"):
                naive_ms = None
                for pname, fn in PROVIDERS.items():
                    if not available(pname):
                        continue
                    try:
                        run = make_runner(fn, h, w, t, mode)
                        torch.cuda.synchronize()
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats()
                        base = torch.cuda.memory_allocated()
                        out = run()
                        torch.cuda.synchronize()
                        extra = torch.cuda.max_memory_allocated() - base
                        err = (out[:64].detach().double().cpu() - ref).abs().max().item()
                        del out
                        ms = time_cuda(run, args.reps)
                    except Exception as exc:
                        rows.append(dict(vocab=vocab, tokens=n, mode=mode, provider=pname, error=repr(exc)[:80]))
                        torch.cuda.empty_cache()
                        continue
                    if pname == "naive torch":
                        naive_ms = ms
                    flops = 2.0 * n * vocab * args.hidden * (1 if mode == "fwd" else 3)
                    rows.append(dict(vocab=vocab, tokens=n, mode=mode, provider=pname, ms=ms,
                                     tflops=flops / (ms * 1e-3) / 1e12, rel=(ms / naive_ms) if naive_ms else None,
                                     extra_gib=extra / 2**30, err=err))
                    print(json.dumps(rows[-1]), flush=True)
            del h, w, t
            torch.cuda.empty_cache()
    return rows


def gpu_table(rows: list[dict], title: str) -> str:
    def values(r: dict) -> list[str]:
        rel = f"{r['rel']:.2f}" if r["rel"] is not None else "n/a"
        return [f"{r['ms']:.2f}", f"{r['tflops']:.0f}", rel, f"{r['extra_gib']:.2f}", f"{r['err']:.1e}"]

    def keys(r: dict) -> list[str]:
        return [str(r["vocab"]), str(r["tokens"]), r["mode"], r["provider"]]

    columns = ["vocab", "tokens", "mode", "provider", "ms", "TFLOP/s", "× naive", "peak extra GiB", "max err vs fp64"]
    return markdown_table(title, columns, rows, keys, values)


def cpu_child(provider: str, n: int, vocab: int, hidden: int, dtype: str, mode: str) -> dict:
    h, w, t = make_inputs(n, vocab, hidden, DTYPES[dtype], "cpu")
    ref = linear_token_logprobs_naive(h[:64], w, t[:64], T)
    run = make_runner(PROVIDERS[provider], h, w, t, mode)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status_bytes("VmRSS")
    t0 = time.perf_counter()
    out = run()
    ms = (time.perf_counter() - t0) * 1e3
    peak = status_bytes("VmHWM") - base
    err = (out[:64].detach().double() - ref).abs().max().item()
    return dict(provider=provider, tokens=n, vocab=vocab, hidden=hidden, mode=mode, ms=ms, extra_gib=peak / 2**30,
                err=err, weight_gib=w.numel() * w.element_size() / 2**30)


def bench_cpu(args) -> list[dict]:
    rows = []
    for vocab in args.vocab:
        for n in args.tokens:
            for mode in ("fwd", "fwd+bwd"):
                for provider in ("naive torch", "ours"):
                    cmd = [sys.executable, os.path.abspath(__file__), "--cpu-child", provider, str(n), str(vocab),
                           str(args.hidden), args.dtype, mode]
                    rows.append(child_row(cmd, provider=provider, tokens=n, vocab=vocab, mode=mode))
    return rows


def cpu_table(rows: list[dict], title: str) -> str:
    def values(r: dict) -> list[str]:
        return [f"{r['weight_gib']:.2f}", f"{r['extra_gib']:.2f}", f"{r['ms']:.0f}", f"{r['err']:.1e}"]

    def keys(r: dict) -> list[str]:
        return [str(r["vocab"]), str(r["tokens"]), str(r.get("hidden", "")), r["mode"], r["provider"]]

    columns = ["vocab", "tokens", "hidden", "mode", "provider", "weight GiB", "peak extra RSS GiB", "ms",
               "max err vs fp64"]  # fmt: skip
    return markdown_table(title, columns, rows, keys, values)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--cpu-child":
        a = sys.argv[2:]
        print(json.dumps(cpu_child(a[0], int(a[1]), int(a[2]), int(a[3]), a[4], a[5])))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, nargs="+", default=None)
    p.add_argument("--vocab", type=int, nargs="+", default=None)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        args.tokens = args.tokens or [4096, 8192, 16384]
        args.vocab = args.vocab or [32000, 128256, 151936]
        args.hidden = args.hidden or 4096
        rows = bench_gpu(args)
        text = gpu_table(rows, f"log-probs from hidden states, {args.dtype}, D = {args.hidden}, T = {T}, "
                               f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    else:
        args.tokens = args.tokens or [4096]
        args.vocab = args.vocab or [151936]
        args.hidden = args.hidden or 256
        rows = bench_cpu(args)
        card = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        text = cpu_table(rows, f"log-probs from hidden states on CPU, {args.dtype}, T = {T}, {card}, torch {torch.__version__}")
    emit(text, args.out)


if __name__ == "__main__":
    main()
