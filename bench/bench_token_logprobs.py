"""Benchmark per-token log-probs (+ entropy) from logits: naive torch, torch.compile, TRL, Liger, ours.

GPU: tokens {4096, 8192, 16384} x vocab {32000, 128256, 151936}, forward-only and forward+backward (log-prob and
entropy). Columns: ms (median of CUDA-event timings), effective GB/s against the memory floor (forward: one read
of the logits; forward+backward: two reads and one gradient write), % of the card's peak bandwidth, peak extra
memory (beyond inputs), max |error| of the log-prob against an fp64 reference on 64 rows.

CPU: what a CPU can show -- peak extra resident memory and time of the naive path against ours (the chunked
reference) at 4096 x 151,936, each measurement in a fresh subprocess (peak RSS read from /proc/self/status,
reset through /proc/self/clear_refs after the inputs are built).

    python bench/bench_token_logprobs.py [--tokens 4096 8192] [--vocab 151936] [--dtype bf16] [--out bench/results/x.md]
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

from microcoder_fast.ops.token_logprobs import token_logprobs  # noqa: E402
from microcoder_fast.reference.token_logprobs import token_logprobs_naive  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
PEAK_BW = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12, "L40S": 0.864e12, "A10": 0.6e12, "4090": 1.0e12}
T = 1.2


# ----------------------------------------------------------------------------------------------------------------
# providers: f(logits, target) -> (logp, entropy or None)
# ----------------------------------------------------------------------------------------------------------------


def naive(logits, target, entropy):
    logp_all = torch.log_softmax(logits.float() / T, dim=-1)
    logp = logp_all.gather(-1, target[..., None]).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1) if entropy else None
    return logp, ent


_compiled = torch.compile(naive, dynamic=False)


def compiled(logits, target, entropy):
    return _compiled(logits, target, entropy)


def trl(logits, target, entropy):
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    scaled = logits / T
    logp = selective_log_softmax(scaled, target)
    return logp, (entropy_from_logits(scaled) if entropy else None)


def liger(logits, target, entropy):
    # Liger's GRPO module selects log-probs with a Triton kernel (temperature as an argument).
    from liger_kernel.ops.grpo_loss import fused_selective_log_softmax

    logp = fused_selective_log_softmax(logits, target, T)
    return logp, None


def ours(logits, target, entropy):
    out = token_logprobs(logits, target, T, return_entropy=entropy)
    return out if entropy else (out, None)


def ours_inplace(logits, target, entropy):
    out = token_logprobs(logits, target, T, return_entropy=entropy, inplace_backward=True)
    return out if entropy else (out, None)


PROVIDERS = {
    "naive torch": naive,
    "torch.compile": compiled,
    "TRL": trl,
    "Liger": liger,
    "ours": ours,
    "ours (in-place grad)": ours_inplace,
}


def available(name: str) -> bool:
    mod = {"TRL": "trl", "Liger": "liger_kernel"}.get(name)
    if mod is None:
        return True
    try:
        __import__(mod)
        if name == "Liger":
            from liger_kernel.ops.grpo_loss import fused_selective_log_softmax  # noqa: F401
        return True
    except Exception:
        return False


# ----------------------------------------------------------------------------------------------------------------
# GPU
# ----------------------------------------------------------------------------------------------------------------


def card_peak(name: str) -> float | None:
    for key, bw in PEAK_BW.items():
        if key in name:
            return bw
    return None


def make_inputs(n: int, vocab: int, dtype: torch.dtype, device: str, seed: int = 0):
    g = torch.Generator(device=device).manual_seed(seed)
    logits = torch.empty(n, vocab, dtype=dtype, device=device)
    step = max(1, (1 << 26) // vocab)
    for r in range(0, n, step):  # fill in slices: no [N, V] fp32 temporary
        logits[r : r + step] = (torch.randn(min(step, n - r), vocab, generator=g, device=device) * 3).to(dtype)
    target = torch.randint(0, vocab, (n,), generator=g, device=device)
    return logits, target


def make_runner(fn, logits, target, entropy: bool, mode: str):
    if mode == "fwd":

        def run():
            with torch.no_grad():
                return fn(logits, target, entropy)

        return run
    # in-place providers overwrite this buffer with the gradient: timing is unaffected. torch.autograd.grad
    # (not .backward()) so that no provider pays for AccumulateGrad copying its gradient into a leaf's .grad.
    leaf = logits.detach().clone().requires_grad_()

    def run():
        lp, en = fn(leaf, target, entropy)
        loss = lp.sum() + (en.sum() if en is not None else 0.0)
        (grad,) = torch.autograd.grad(loss, leaf)
        del grad
        return lp, en

    return run


def bench_gpu(args) -> list[dict]:
    dev = "cuda"
    dtype = DTYPES[args.dtype]
    name = torch.cuda.get_device_name()
    peak = args.peak_gbs * 1e9 if args.peak_gbs else card_peak(name)
    rows = []
    for vocab in args.vocab:
        for n in args.tokens:
            logits, target = make_inputs(n, vocab, dtype, dev)
            ref = token_logprobs_naive(logits[:64].cpu(), target[:64].cpu(), T)
            esize = logits.element_size()
            for mode in ("fwd", "fwd+bwd"):
                for pname, fn in PROVIDERS.items():
                    if not available(pname) or (mode == "fwd" and "in-place" in pname):
                        continue
                    entropy = args.entropy and pname != "Liger"
                    try:
                        run = make_runner(fn, logits, target, entropy, mode)
                        torch.cuda.synchronize()
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats()
                        base = torch.cuda.memory_allocated()
                        out = run()
                        torch.cuda.synchronize()
                        extra = torch.cuda.max_memory_allocated() - base
                        err = (out[0][:64].detach().double().cpu() - ref).abs().max().item()
                        del out
                        ms = time_cuda(run, args.reps)
                    except Exception as exc:  # an OOM or a missing feature is a row, not a crash
                        rows.append(dict(vocab=vocab, tokens=n, mode=mode, provider=pname, error=repr(exc)[:80]))
                        torch.cuda.empty_cache()
                        continue
                    floor = n * vocab * esize * (1 if mode == "fwd" else 3)
                    gbs = floor / (ms * 1e-3) / 1e9
                    rows.append(
                        dict(
                            vocab=vocab,
                            tokens=n,
                            mode=mode,
                            provider=pname,
                            ms=ms,
                            gbs=gbs,
                            pct=(100 * gbs * 1e9 / peak) if peak else None,
                            extra_gib=extra / 2**30,
                            err=err,
                            entropy=entropy,
                        )
                    )
                    print(json.dumps(rows[-1]), flush=True)
            del logits, target
            torch.cuda.empty_cache()
    return rows


def gpu_table(rows: list[dict], title: str) -> str:
    def values(r: dict) -> list[str]:
        pct = f"{r['pct']:.0f}%" if r["pct"] is not None else "n/a"
        return [f"{r['ms']:.3f}", f"{r['gbs']:.0f}", pct, f"{r['extra_gib']:.2f}", f"{r['err']:.1e}"]

    def keys(r: dict) -> list[str]:
        entropy = " (+entropy)" if r.get("entropy") else ""
        return [str(r["vocab"]), str(r["tokens"]), r["mode"], r["provider"] + entropy]

    columns = ["vocab", "tokens", "mode", "provider", "ms", "GB/s", "% peak", "peak extra GiB", "max err vs fp64"]
    return markdown_table(title, columns, rows, keys, values)


# ----------------------------------------------------------------------------------------------------------------
# CPU: one subprocess per measurement
# ----------------------------------------------------------------------------------------------------------------


def cpu_child(provider: str, n: int, vocab: int, dtype: str, mode: str) -> dict:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    logits, target = make_inputs(n, vocab, DTYPES[dtype], "cpu")
    ref = token_logprobs_naive(logits[:64], target[:64], T)
    fn = PROVIDERS[provider]
    x = logits.requires_grad_() if mode == "fwd+bwd" else logits  # in-place: the gradient lands in `logits`
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak-RSS watermark to the current RSS
        f.write("5")
    base = status_bytes("VmRSS")
    t0 = time.perf_counter()
    with torch.enable_grad() if mode == "fwd+bwd" else torch.no_grad():
        lp, en = fn(x, target, True)
        if mode == "fwd+bwd":  # autograd.grad: the gradient is returned, not copied into x.grad
            (grad,) = torch.autograd.grad(lp.sum() + en.sum(), x)
            del grad
    ms = (time.perf_counter() - t0) * 1e3
    peak = status_bytes("VmHWM") - base
    err = (lp[:64].detach().double() - ref).abs().max().item()
    return dict(provider=provider, tokens=n, vocab=vocab, mode=mode, ms=ms, extra_gib=peak / 2**30, err=err,
                input_gib=logits.numel() * logits.element_size() / 2**30)


def bench_cpu(args) -> list[dict]:
    rows = []
    for vocab in args.vocab:
        for n in args.tokens:
            for mode in ("fwd", "fwd+bwd"):
                for provider in args.providers or ("naive torch", "ours", "ours (in-place grad)"):
                    if mode == "fwd" and "in-place" in provider:
                        continue
                    cmd = [sys.executable, os.path.abspath(__file__), "--cpu-child", provider, str(n), str(vocab),
                           args.dtype, mode]
                    rows.append(child_row(cmd, provider=provider, tokens=n, vocab=vocab, mode=mode))
    return rows


def cpu_table(rows: list[dict], title: str) -> str:
    def values(r: dict) -> list[str]:
        return [f"{r['input_gib']:.2f}", f"{r['extra_gib']:.2f}", f"{r['ms']:.0f}", f"{r['err']:.1e}"]

    def keys(r: dict) -> list[str]:
        return [str(r["vocab"]), str(r["tokens"]), r["mode"], r["provider"] + ("" if "error" in r else " (+entropy)")]

    columns = ["vocab", "tokens", "mode", "provider", "input GiB", "peak extra RSS GiB", "ms", "max err vs fp64"]
    return markdown_table(title, columns, rows, keys, values)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--cpu-child":
        provider, n, vocab, dtype, mode = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
        print(json.dumps(cpu_child(provider, n, vocab, dtype, mode)))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, nargs="+", default=None)
    p.add_argument("--vocab", type=int, nargs="+", default=None)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--providers", nargs="+", default=None, choices=sorted(PROVIDERS), help="CPU: which to run")
    p.add_argument("--no-entropy", dest="entropy", action="store_false", help="log-prob only (default: + entropy)")
    p.add_argument("--peak-gbs", type=float, default=None, help="card peak bandwidth in GB/s (else from the name)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--out", default=None, help="write the markdown table here (e.g. bench/results/H100.md)")
    args = p.parse_args()
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if use_cuda:
        args.tokens = args.tokens or [4096, 8192, 16384]
        args.vocab = args.vocab or [32000, 128256, 151936]
        card = torch.cuda.get_device_name()
        rows = bench_gpu(args)
        text = gpu_table(rows, f"token log-probs, {args.dtype}, T = {T}, {card}, torch {torch.__version__}")
    else:
        args.tokens = args.tokens or [4096]
        args.vocab = args.vocab or [151936]
        rows = bench_cpu(args)
        card = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        text = cpu_table(rows, f"token log-probs (+entropy) on CPU, {args.dtype}, T = {T}, {card}, torch {torch.__version__}")
    emit(text, args.out)


if __name__ == "__main__":
    main()
