"""Benchmark the GRPO loss from logits: naive torch, torch.compile, TRL log-probs + torch loss, Liger (if
installed), ours (ops.fused_grpo_loss, fresh gradient buffer and in place).

GPU: tokens {4096, 8192, 16384} x vocab {32000, 128256, 151936}, forward-only and forward+backward; ms, effective
GB/s (bytes of the memory floor / time: one read of the logits forward-only, two reads + one gradient write
forward+backward), % of the card's peak bandwidth, peak extra memory, max error against an fp32 chunked reference.

CPU: what a CPU can show: peak extra resident memory (and time) of each path at 4096 x 151,936, every provider in
a fresh subprocess (peak RSS reset through /proc/self/clear_refs).

    python bench/bench_fused_grpo_loss.py [--tokens 4096 8192] [--vocab 151936] [--dtype bf16] [--out bench/results/x.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(1, HERE)  # bench/_common.py, also when this file is loaded by path rather than run

from _common import emit  # noqa: E402

from microcoder_fast.ops.fused_grpo_loss import fused_grpo_loss  # noqa: E402
from microcoder_fast.ops._loss import reduce_token_rows, sequence_scale, token_weights  # noqa: E402
from microcoder_fast.reference.fused_grpo_loss import fused_grpo_loss_chunked  # noqa: E402
from microcoder_fast.reference.grpo_loss import grpo_loss_reference  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
PEAK_BW = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12, "L40S": 0.864e12, "A10": 0.6e12, "4090": 1.0e12}
T = 1.2
SEQ = 1024


def make_inputs(n_tokens: int, vocab: int, dtype: torch.dtype, device: str, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    B = max(1, n_tokens // SEQ)
    L = n_tokens // B
    logits = torch.empty(B, L, vocab, dtype=dtype, device=device)
    for b in range(B):  # fill per sequence: no [N, V] fp32 temporary
        logits[b] = (torch.randn(L, vocab, generator=g) * 3).to(dtype)
    target = torch.randint(0, vocab, (B, L), generator=g).to(device)
    old = (-torch.rand(B, L, generator=g) * 8 - 9).to(device)  # about log(1/vocab) +- a few
    adv = torch.randn(B, generator=g).to(device)
    mask = (torch.rand(B, L, generator=g) > 0.1).to(device)
    return logits, target, old, adv, mask


# ----------------------------------------------------------------------------------------------------------------
# providers: f(logits, target, old, adv, mask) -> loss (logits may require grad)
# ----------------------------------------------------------------------------------------------------------------


def naive(logits, target, old, adv, mask):
    lp = torch.log_softmax(logits.float() / T, dim=-1).gather(-1, target[..., None]).squeeze(-1)
    return grpo_loss_reference(lp, old, adv, mask)[0]


_compiled = torch.compile(naive, dynamic=False)


def compiled(logits, target, old, adv, mask):
    return _compiled(logits, target, old, adv, mask)


def trl_path(logits, target, old, adv, mask):
    from trl.trainer.utils import selective_log_softmax

    lp = selective_log_softmax(logits / T, target)
    return grpo_loss_reference(lp, old, adv, mask)[0]


def liger(logits, target, old, adv, mask):
    from liger_kernel.transformers.grpo_loss import triton_grpo_loss

    # Liger takes [B, L + 1, V] logits (it drops the last position); a view with one extra row is not available,
    # so this provider is timed on logits padded by one position (allocated outside the timed region).
    out = triton_grpo_loss(logits, old, None, target, adv, mask, temperature=T, beta=0.0, eps_low=0.2,
                           eps_high=0.28, inplace=True, loss_type="dapo")  # fmt: skip
    return out[0] if isinstance(out, tuple) else out


def ours(logits, target, old, adv, mask):
    return fused_grpo_loss(logits, target, old, adv, mask, temperature=T)[0]


def ours_inplace(logits, target, old, adv, mask):
    return fused_grpo_loss(logits, target, old, adv, mask, temperature=T, inplace_backward=True)[0]


PROVIDERS = {
    "naive torch": naive,
    "torch.compile": compiled,
    "TRL selective_log_softmax + torch loss": trl_path,
    "Liger triton_grpo_loss": liger,
    "ours": ours,
    "ours (in-place grad)": ours_inplace,
}
INPLACE = {"ours (in-place grad)", "Liger triton_grpo_loss"}


def available(name: str) -> bool:
    try:
        if name.startswith("TRL"):
            import trl  # noqa: F401
        if name.startswith("Liger"):
            import liger_kernel  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------------------------------------------
# GPU
# ----------------------------------------------------------------------------------------------------------------


def card_peak() -> tuple[str, float | None]:
    name = torch.cuda.get_device_name()
    for key, bw in PEAK_BW.items():
        if key in name:
            return name, bw
    return name, None


def gpu_time(fn, prep, reps: int = 10, warmup: int = 3) -> float:
    times = []
    for i in range(warmup + reps):
        args = prep()
        torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn(*args)
        e.record()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(s.elapsed_time(e))
        del args
    times.sort()
    return times[len(times) // 2]


def run_gpu(args) -> list[dict]:
    name, bw = card_peak()
    dtype = DTYPES[args.dtype]
    rows = []
    for n in args.tokens:
        for v in args.vocab:
            logits, target, old, adv, mask = make_inputs(n, v, dtype, "cuda")
            # fp32 reference (chunked torch path, fp32 math): loss and d(logits)
            ref_grad = torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
            scale = sequence_scale(mask, "token-mean", None)
            rows = fused_grpo_loss_chunked(logits, target, old, adv, mask, None, scale, T, 0.2, 0.28, 0.0, None,
                                           ref_grad, False)  # fmt: skip
            ref_loss, _ = reduce_token_rows(rows, mask.reshape(-1), token_weights(scale, mask.shape[1]), 0.0)
            floor_fwd = logits.numel() * logits.element_size()
            for pname, fn in PROVIDERS.items():
                if pname not in args.providers or not available(pname):
                    continue
                for mode in ("fwd", "fwd+bwd"):
                    row = dict(card=name, tokens=n, vocab=v, dtype=args.dtype, provider=pname, mode=mode)
                    try:
                        src = logits
                        if pname.startswith("Liger"):
                            src = torch.cat([logits, logits[:, :1]], dim=1)

                        def prep(src=src, mode=mode, pname=pname):
                            x = src.clone() if (mode == "fwd+bwd" and pname in INPLACE) else src
                            if mode == "fwd+bwd":
                                x = x.detach().requires_grad_()
                            return (x,)

                        if mode == "fwd":

                            def call(x, fn=fn, inp=(target, old, adv, mask)):
                                with torch.no_grad():
                                    fn(x, *inp)
                        else:

                            def call(x, fn=fn, inp=(target, old, adv, mask)):
                                torch.autograd.grad(fn(x, *inp), x)

                        ms = gpu_time(call, prep, reps=args.reps)
                        (x,) = prep()
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                        base = torch.cuda.memory_allocated()
                        if mode == "fwd":
                            with torch.no_grad():
                                loss = fn(x, target, old, adv, mask)
                        else:
                            loss = fn(x, target, old, adv, mask)
                            (gx,) = torch.autograd.grad(loss, x)
                        torch.cuda.synchronize()
                        peak = torch.cuda.max_memory_allocated() - base
                        err = abs(float(loss) - float(ref_loss))
                        if mode == "fwd+bwd":
                            gx = gx if not pname.startswith("Liger") else gx[:, :-1]
                            err = max(err, float((gx.float() - ref_grad).abs().max()))
                        floor = floor_fwd if mode == "fwd" else 3 * floor_fwd
                        row.update(ms=ms, gbps=floor / (ms * 1e-3) / 1e9, peak_gb=peak / 1e9, max_err=err)
                        if bw:
                            row.update(
                                pct_peak=100 * floor / (ms * 1e-3) / bw, x_floor=ms * 1e-3 / (floor / bw)
                            )
                        del x, loss
                        gx = None
                    except Exception as exc:  # noqa: BLE001 - a provider failing is a row, not a crash
                        row.update(error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:80]}")
                    torch.cuda.empty_cache()
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            del logits, ref_grad
            torch.cuda.empty_cache()
    return rows


def gpu_table(rows: list[dict]) -> str:
    out = [f"Card: {rows[0]['card']}, dtype {rows[0]['dtype']}, temperature {T}, seq len {SEQ}, 90% of tokens in mask.",
           "Effective GB/s = memory-floor bytes / time (fwd: one logits read; fwd+bwd: two reads + one gradient write);",
           "x floor = time / (floor bytes / peak bandwidth). Error: max |loss - ref| and max |d logits - ref| vs an fp32 "
           "chunked reference.", "",
           "| tokens | vocab | provider | mode | ms | GB/s | % peak | x floor | peak extra GB | max err |",
           "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if "error" in r:
            out.append(
                f"| {r['tokens']} | {r['vocab']} | {r['provider']} | {r['mode']} | {r['error']} | | | | | |"
            )
            continue
        out.append(
            f"| {r['tokens']} | {r['vocab']} | {r['provider']} | {r['mode']} | {r['ms']:.3f} | {r['gbps']:.0f} | "
            f"{r.get('pct_peak', float('nan')):.0f} | {r.get('x_floor', float('nan')):.2f} | {r['peak_gb']:.2f} | "
            f"{r['max_err']:.1e} |"
        )
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------------------
# CPU: peak memory of each path in a fresh process
# ----------------------------------------------------------------------------------------------------------------

CPU_CASES = {
    "naive torch (log_softmax fp32 + autograd), fwd+bwd": ("naive", True),
    "naive torch, fwd only (no_grad)": ("naive", False),
    "ours (chunked CPU path), fwd+bwd": ("ours", True),
    "ours (chunked CPU path, in-place grad), fwd+bwd": ("ours_inplace", True),
    "ours (chunked CPU path), fwd only": ("ours", False),
}


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def cpu_child(provider: str, grad: bool, n: int, v: int, dtype: str) -> None:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    logits, target, old, adv, mask = make_inputs(n, v, DTYPES[dtype], "cpu")
    x = logits.requires_grad_(grad) if provider != "ours_inplace" else (logits * 1).requires_grad_(grad)
    fn = {"naive": naive, "ours": ours, "ours_inplace": ours_inplace}[provider]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS to the current RSS
    base = _rss_kb("VmRSS")
    t0 = time.perf_counter()
    if grad:  # autograd.grad: d(logits) as a training step hands it to the LM head's backward (no .grad copy)
        loss = fn(x, target, old, adv, mask)
        (g,) = torch.autograd.grad(loss, x)
    else:
        with torch.no_grad():
            loss = fn(x, target, old, adv, mask)
    dt = time.perf_counter() - t0
    peak = _rss_kb("VmHWM")
    print(json.dumps(dict(peak_extra_gb=(peak - base) * 1024 / 1e9, seconds=dt, loss=float(loss))))


def run_cpu(args) -> list[dict]:
    rows = []
    n, v = args.tokens[0], args.vocab[-1]
    for label, (prov, grad) in CPU_CASES.items():
        # A fixed mmap threshold makes glibc return every large freed block at once, so peak RSS tracks live tensors.
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
        proc = subprocess.run([sys.executable, __file__, "--cpu-child", prov, str(int(grad)), str(n), str(v), args.dtype],
                              capture_output=True, text=True, env=env)  # fmt: skip
        row = dict(case=label, tokens=n, vocab=v, dtype=args.dtype)
        if proc.returncode != 0:
            row["error"] = (proc.stderr.strip().splitlines() or ["killed"])[-1][:100]
        else:
            row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def cpu_table(rows: list[dict]) -> str:
    r0 = rows[0]
    logits_gb = r0["tokens"] * r0["vocab"] * DTYPES[r0["dtype"]].itemsize / 1e9
    out = [f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}. "
           f"{r0['tokens']} tokens x {r0['vocab']} vocab, {r0['dtype']} logits ({logits_gb:.2f} GB, not counted), "
           f"temperature {T}.", "Peak extra memory = peak RSS during the call - RSS before it (fresh process each); fwd+bwd = loss and "
           "d(logits) via torch.autograd.grad (the gradient buffer is counted; in place it is the logits buffer).", "",
           "| path | peak extra memory (GB) | x logits size | time (s) | loss |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if "error" in r:
            out.append(f"| {r['case']} | {r['error']} | | | |")
        else:
            out.append(f"| {r['case']} | {r['peak_extra_gb']:.2f} | {r['peak_extra_gb'] / logits_gb:.2f} | "
                       f"{r['seconds']:.2f} | {r['loss']:.6f} |")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--cpu-child":
        prov, grad, n, v, dtype = sys.argv[2:7]
        cpu_child(prov, bool(int(grad)), int(n), int(v), dtype)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=None)
    ap.add_argument("--vocab", type=int, nargs="+", default=None)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--providers", nargs="+", default=list(PROVIDERS))
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--cpu", action="store_true", help="run the CPU memory table even when CUDA is present")
    ap.add_argument("--out", default=None, help="write the markdown table here (e.g. bench/results/h100.md)")
    args = ap.parse_args()
    if torch.cuda.is_available() and not args.cpu:
        args.tokens = args.tokens or [4096, 8192, 16384]
        args.vocab = args.vocab or [32000, 128256, 151936]
        table = gpu_table(run_gpu(args))
    else:
        args.tokens = args.tokens or [4096]
        args.vocab = args.vocab or [151936]
        table = cpu_table(run_cpu(args))
    command = " ".join(["python", "bench/bench_fused_grpo_loss.py"] + sys.argv[1:])
    emit(table, args.out, heading=f"# bench_fused_grpo_loss\n\n`{command}`\n\n")


if __name__ == "__main__":
    main()
