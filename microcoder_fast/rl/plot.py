"""``microcoder-train plot RUN_DIR``: PNG curves from ``metrics.jsonl`` (needs matplotlib, an optional dep).

One PNG per figure; a figure holds one panel per unit, so quantities on different scales never share an
axis (a rate beside a loss, ``ppo_kl`` beside ``grad_norm``). Every panel names its quantity and unit on the
y axis, steps are integer ticks, legends sit outside the plotted area, and held-out pass@1 carries its
sampling standard error as error bars. Reads only ``metrics.jsonl``; imports nothing of the trainer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Panel:
    keys: tuple[str, ...]
    ylabel: str  # quantity and unit
    yrange: str = ""  # "unit": a fraction that spans [0, 1]; "zero": non-negative, small (axis from 0); "": auto


# figure name -> (title, panels top to bottom)
FIGURES: dict[str, tuple[str, tuple[Panel, ...]]] = {
    "reward": ("training reward", (
        Panel(("reward_mean",), "mean reward per response", "unit"),
        Panel(("pass_rate", "fail_rate", "no_code_rate"), "fraction of responses", "unit"),
    )),
    "pass_at_1": ("held-out pass@1 (error bars: sampling s.e.)", (
        Panel(("pass@1",), "pass@1 (fraction of problems)", "unit"),
    )),
    "length": ("response length", (Panel(("length_mean", "length_max"), "tokens per response", "zero"),)),
    "diversity": ("output diversity", (
        Panel(("diversity",), "diversity (0-1)", "unit"),
        Panel(("entropy",), "entropy at T (nats per token)", "zero"),
    )),
    "masking": ("truncation and masking", (
        Panel(("truncation_rate", "mask_rate", "repetition_rate"), "fraction of responses", "zero"),
        Panel(("groups_all_same",), "fraction of groups with one reward", "unit"),
    )),
    "optimisation": ("optimisation", (
        Panel(("pg_loss",), "policy loss"),
        Panel(("grad_norm",), "gradient norm (L2)", "zero"),
        Panel(("ppo_kl",), "approx. KL to the rollout policy"),
        Panel(("pg_clipfrac", "pg_clipfrac_lower"), "fraction of tokens clipped", "zero"),
    )),
    "time": ("time per RL step", (
        Panel(("time_step_s", "time_generate_s", "time_judge_wait_s", "time_old_logp_s", "time_update_s",
               "time_sync_s"), "seconds", "zero"),
    )),
}


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give the run directory that microcoder-train printed")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float], list[float] | None]:
    """(steps, values, standard errors or None) of ``key`` over the rows that carry it; a step that appears
    twice (a replayed step after a resume) keeps its last value."""
    by_step: dict[int, tuple[float, float | None]] = {}
    se_key = key.replace("pass@1", "pass@1_se", 1) if key.startswith("pass@1") else None
    for r in rows:
        v = r.get(key)
        if "step" in r and isinstance(v, (int, float)) and not isinstance(v, bool):
            se = r.get(se_key) if se_key else None
            by_step[int(r["step"])] = (float(v), se if isinstance(se, (int, float)) else None)
    steps = sorted(by_step)
    ses = [by_step[s][1] for s in steps]
    return steps, [by_step[s][0] for s in steps], (None if se_key is None or all(e is None for e in ses)
                                                   else [e or 0.0 for e in ses])


def plot_run(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Write one PNG per figure into ``RUN_DIR/plots`` and return their paths (figures with no data are skipped)."""
    rows = read_metrics(run_dir)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from None
    out = Path(run_dir) / "plots"
    out.mkdir(exist_ok=True)
    per_kind = tuple(sorted({k for r in rows for k in r if k.startswith("pass@1/")}))  # per held-out kind
    paths = []
    for name, (title, panels) in FIGURES.items():
        if name == "pass_at_1":
            panels = (Panel(panels[0].keys + per_kind, panels[0].ylabel, panels[0].yrange),)
        drawn = [(p, [(k, _series(rows, k)) for k in p.keys]) for p in panels]
        drawn = [(p, [(k, s) for k, s in series if s[0]]) for p, series in drawn]
        drawn = [(p, series) for p, series in drawn if series]
        if not drawn:
            continue
        fig, axes = plt.subplots(len(drawn), 1, figsize=(7.5, 1.2 + 2.3 * len(drawn)), sharex=True, squeeze=False)
        for ax, (panel, series) in zip(axes[:, 0], drawn):
            for k, (xs, ys, err) in series:
                marker = "o" if len(xs) < 30 else None
                if err is not None:
                    ax.errorbar(xs, ys, yerr=err, marker=marker, capsize=3, label=k)
                else:
                    ax.plot(xs, ys, marker=marker, label=k)
            ax.set_ylabel(panel.ylabel, fontsize=9)
            if panel.yrange == "unit":
                ax.set_ylim(-0.03, 1.03)
            elif panel.yrange == "zero":
                ax.set_ylim(bottom=0.0)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        steps = [x for _, series in drawn for _, (xs, _, _) in series for x in xs]
        if max(steps) - min(steps) < 2:  # one or two steps: widen so the integer locator has ticks to place
            axes[-1, 0].set_xlim(min(steps) - 1, max(steps) + 1)
        axes[-1, 0].set_xlabel("RL step")
        axes[0, 0].set_title(title)
        p = out / f"{name}.png"
        fig.savefig(p, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)
    return paths
