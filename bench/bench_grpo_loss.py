"""Benchmark the GRPO loss from per-token log-probs (``ops.grpo_loss``): the verl-style torch formula with
autograd (``reference.grpo_loss_reference``), torch.compile of it, and ours (Triton on CUDA, the analytic torch
path on CPU), forward + backward. Rows: sequences x length {64 x 4096, 512 x 8192}; median ms and the max
error of the loss and of d logp against the oracle's autograd.

    python bench/bench_grpo_loss.py [--shapes 64x4096 512x8192] [--out bench/results/<machine>-grpo_loss.md]

The loss from logits (log-softmax fused in) is ``bench/bench_fused_grpo_loss.py``.
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

from microcoder_fast.ops.grpo_loss import grpo_loss  # noqa: E402
from microcoder_fast.reference.grpo_loss import grpo_loss_reference  # noqa: E402

KW = dict(eps_low=0.2, eps_high=0.28, agg="token-mean")


def reference(lp, old, adv, mask):
    return grpo_loss_reference(lp, old, adv, mask, **KW)[0]


_compiled = torch.compile(reference, dynamic=False)


def ours(lp, old, adv, mask):
    return grpo_loss(lp, old, adv, mask, **KW)[0]


PROVIDERS = {"torch (verl formula) + autograd": reference, "torch.compile": _compiled, "ours": ours}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["64x4096", "512x8192"])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    card = torch.cuda.get_device_name() if dev == "cuda" else f"CPU ({os.cpu_count()} cores)"
    lines = [f"Device: {card}, torch {torch.__version__}; forward + backward, median of {args.reps} runs; error vs "
             "the oracle's autograd (fp32 math, fp64 inputs).", "", "| B x L | provider | ms | max err loss | max err d logp |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    for shape in args.shapes:
        B, L = (int(x) for x in shape.split("x"))
        g = torch.Generator().manual_seed(0)
        lp = (-torch.rand(B, L, generator=g) * 3).to(dev)
        old = lp + 0.3 * torch.randn(B, L, generator=g).to(dev)
        adv = torch.randn(B, generator=g).to(dev)
        mask = (torch.rand(B, L, generator=g) > 0.2).to(dev)
        x64 = lp.double().requires_grad_()
        exact = reference(x64, old.double(), adv.double(), mask)
        (g64,) = torch.autograd.grad(exact, x64)
        for name, fn in PROVIDERS.items():
            x = lp.clone().requires_grad_()

            def step(fn=fn, x=x):
                return torch.autograd.grad(fn(x, old, adv, mask), x)

            loss = fn(x, old, adv, mask)
            (gx,) = torch.autograd.grad(loss, x)
            err_l = abs(float(loss) - float(exact))
            err_g = float((gx.double() - g64).abs().max())
            ms = time_ms(step, args.reps)
            lines.append(f"| {B} x {L} | {name} | {ms:.3f} | {err_l:.1e} | {err_g:.1e} |")
            print(lines[-1], flush=True)
    heading = "# bench_grpo_loss\n\n`python bench/bench_grpo_loss.py " + " ".join(sys.argv[1:]) + "`\n\n"
    emit("\n".join(lines), args.out, heading=heading)


if __name__ == "__main__":
    main()
