"""``microcoder-train plot RUN_DIR``: PNG curves from ``metrics.jsonl`` (needs matplotlib, an optional dep)."""

from __future__ import annotations

import json
import os
from pathlib import Path

PANELS = [
    ("reward", ["reward_mean", "pass_rate", "no_code_rate"]),
    ("pass_at_1", ["pass@1"]),
    ("length", ["length_mean", "length_max"]),
    ("diversity", ["diversity", "entropy"]),
    ("masking", ["truncation_rate", "mask_rate", "repetition_rate"]),
    ("optimisation", ["grad_norm", "ppo_kl", "pg_clipfrac"]),
    ("time", ["time_generate_s", "time_judge_wait_s", "time_old_logp_s", "time_update_s", "time_sync_s"]),
]


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give the run directory that microcoder-train printed")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Write one PNG per panel into ``RUN_DIR/plots`` and return their paths."""
    rows = read_metrics(run_dir)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from None
    out = Path(run_dir) / "plots"
    out.mkdir(exist_ok=True)
    paths = []
    per_kind = sorted({k for r in rows for k in r if k.startswith("pass@1/")})  # pass@1 per held-out kind
    for name, keys in PANELS:
        if name == "pass_at_1":
            keys = keys + per_kind
        fig, ax = plt.subplots(figsize=(6, 3.5))
        drew = False
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if "step" in r and isinstance(r.get(k), (int, float))]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if len(pts) < 20 else None, label=k)
                drew = True
        if not drew:
            plt.close(fig)
            continue
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = out / f"{name}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)
    return paths
