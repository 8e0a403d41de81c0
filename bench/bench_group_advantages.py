"""Benchmark group-normalised advantages: naive torch (view + mean/std), torch.compile of it, TRL's formula
(nanmean / nanstd, replicated from GRPOTrainer with TRL's own nanstd, if TRL is installed), ours
(ops.group_advantages: Triton on CUDA, torch reference on CPU). Rows: responses {4096, 65536, 1048576} x group size
{8, 16}; median ms and max error against an fp64 computation.

    python bench/bench_group_advantages.py [--out bench/results/<card>-group_advantages.md]
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

from microcoder_fast.ops.group_advantages import group_advantages  # noqa: E402


def naive(r, g):
    x = r.view(-1, g)
    return ((x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-6)).view(-1)


_compiled = torch.compile(naive, dynamic=False)


def trl(r, g):
    from trl.trainer.utils import nanstd

    mean = torch.nanmean(r.view(-1, g), dim=1).repeat_interleave(g, dim=0)
    std = nanstd(r.view(-1, g), dim=1).repeat_interleave(g, dim=0)
    return torch.nan_to_num((r - mean) / (std + 1e-4), nan=0.0)


def ours(r, g):
    return group_advantages(r, group_size=g)


PROVIDERS = {"naive torch": naive, "torch.compile": _compiled, "TRL formula": trl, "ours": ours}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 65536, 1048576])
    ap.add_argument("--groups", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    card = torch.cuda.get_device_name() if dev == "cuda" else f"CPU ({os.cpu_count()} cores)"
    lines = [f"Device: {card}, torch {torch.__version__}; median of {args.reps} runs; error vs fp64.", "",
             "| responses | group | provider | ms | max err |", "|---:|---:|---|---:|---:|"]  # fmt: skip
    for n in args.sizes:
        for g in args.groups:
            r = torch.randint(0, 2, (n,), device=dev).float() + 0.1 * torch.rand(n, device=dev)
            x = r.double().view(-1, g)
            exact = ((x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-6)).view(-1)
            for name, fn in PROVIDERS.items():
                try:
                    out = fn(r, g)
                    eps = 1e-4 if name == "TRL formula" else 1e-6
                    ex = (
                        exact
                        if eps == 1e-6
                        else ((x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + eps)).view(-1)
                    )
                    err = float((out.double() - ex).abs().max())
                    ms = time_ms(lambda fn=fn, r=r, g=g: fn(r, g), args.reps)
                    lines.append(f"| {n} | {g} | {name} | {ms:.3f} | {err:.1e} |")
                except ImportError:
                    continue
                print(lines[-1], flush=True)
    table = "\n".join(lines)
    heading = "# bench_group_advantages\n\n`python bench/bench_group_advantages.py " + " ".join(sys.argv[1:]) + "`\n\n"
    emit(table, args.out, heading=heading)


if __name__ == "__main__":
    main()
