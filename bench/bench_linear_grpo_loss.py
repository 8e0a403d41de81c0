"""Benchmark the GRPO loss from hidden states, forward + backward: ours (``ops.linear_grpo_loss``, three GEMMs,
d(logits) computed in the forward chunk by chunk), the materialised path (``hidden @ weight.T`` then
``ops.fused_grpo_loss`` and autograd through the matmul), and the floor: three cuBLAS GEMMs of the same shapes
(logits, d hidden, d weight). Median ms, peak extra memory (CUDA), and the max error of d hidden / d weight
relative to the largest entry, against the materialised path.

    python bench/bench_linear_grpo_loss.py [--tokens 8192] [--hidden 4096] [--vocab 151936] [--out FILE]

CPU defaults are small (``--tokens 512 --hidden 256 --vocab 8192``, fp32): there the table shows the GEMM count
and memory, not GPU speed.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(1, HERE)  # bench/_common.py, also when this file is loaded by path rather than run

from _common import emit, time_ms  # noqa: E402

from microcoder_fast import ops  # noqa: E402

T = 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    ap.add_argument("--tokens", type=int, nargs="+", default=[8192] if cuda else [512])
    ap.add_argument("--hidden", type=int, default=4096 if cuda else 256)
    ap.add_argument("--vocab", type=int, default=151_936 if cuda else 8192)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    dev = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    card = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    D, V = args.hidden, args.vocab
    lines = [f"Device: {card}, torch {torch.__version__}, {dtype}, D = {D}, V = {V}; fwd+bwd, median of {args.reps}.",
             "", "| tokens | provider | ms | x 3 GEMMs | peak extra GB | err d hidden | err d weight |",
             "|---:|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(V, D, generator=g) * D**-0.5).to(dtype).to(dev)
    for n in args.tokens:
        B = max(1, n // 1024)
        L = n // B
        h = torch.randn(B, L, D, generator=g).to(dtype).to(dev)
        target = torch.randint(0, V, (B, L), generator=g).to(dev)
        old = (-torch.rand(B, L, generator=g) * 4 - 6).to(dev)
        adv = torch.randn(B, generator=g).to(dev)
        mask = (torch.rand(B, L, generator=g) > 0.1).to(dev)
        dz = torch.randn(n, V, generator=g).to(dtype).to(dev)
        h2 = h.view(n, D)
        floor = time_ms(lambda: (h2 @ w.T, dz @ w, dz.T @ h2), args.reps)
        del dz

        def ours(hh, ww):
            return ops.linear_grpo_loss(hh, ww, target, old, adv, mask, temperature=T, check_target=False)[0]

        def materialised(hh, ww):
            return ops.fused_grpo_loss(hh @ ww.T, target, old, adv, mask, temperature=T, check_target=False)[0]

        grads = {}
        for name, fn in (("materialised logits + fused_grpo_loss", materialised), ("ours (linear_grpo_loss)", ours)):
            hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() if cuda else 0
            grads[name] = torch.autograd.grad(fn(hh, ww), (hh, ww))
            peak = (torch.cuda.max_memory_allocated() - base) / 1e9 if cuda else float("nan")
            ms = time_ms(lambda fn=fn, hh=hh, ww=ww: torch.autograd.grad(fn(hh, ww), (hh, ww)), args.reps)
            ref = grads["materialised logits + fused_grpo_loss"]
            rel = [float((a.float() - b.float()).abs().max() / b.float().abs().max()) for a, b in zip(grads[name], ref)]
            lines.append(f"| {n} | {name} | {ms:.2f} | {ms / floor:.2f} | {peak:.2f} | {rel[0]:.1e} | {rel[1]:.1e} |")
            print(lines[-1], flush=True)
        lines.append(f"| {n} | three GEMMs (floor) | {floor:.2f} | 1.00 | | | |")
    heading = "# bench_linear_grpo_loss\n\n`python bench/bench_linear_grpo_loss.py " + " ".join(sys.argv[1:]) + "`\n\n"
    emit("\n".join(lines), args.out, heading=heading)


if __name__ == "__main__":
    main()
