"""What the trainer tells the user and writes down: the rank-0 log line, one RL step's metric dict, the
metrics file (JSON lines, optional TensorBoard), and the held-out pass@1 formatting for summary.json and
the log.

Pure formatting and file appends: no model, no optimiser, no engine. Must not import torch.distributed,
``rl.trainer`` or anything that runs the model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def log(msg: str) -> None:
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 talks
        return
    print(f"[microcoder-train] {msg}", flush=True)


class MetricsWriter:
    """Appends one JSON object per line to ``path`` (and scalars to TensorBoard when enabled); a no-op off
    rank 0."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        self.tb: Any = None

    def open_tensorboard(self, log_dir: Path) -> None:
        if not self.enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(log_dir))
        except ImportError:
            log("tensorboard=true but tensorboard is not installed; continuing without it")

    def write(self, m: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(m) + "\n")
        if self.tb is not None and "step" in m:
            for k, v in m.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, m["step"])

    def drop_after(self, step: int) -> None:
        """Resuming from the checkpoint of ``step``: remove the rows of later steps (written before an
        interrupt, and about to be written again), so each step appears once. Rows without a step stay."""
        if not self.enabled:
            return
        drop_rows_after(self.path, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def drop_rows_after(path: Path, step: int) -> int:
    """Rewrite the JSON-lines file ``path`` without the rows whose ``step`` is greater than ``step`` (and
    without a torn last line); returns how many rows went."""
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] > step:
            dropped += 1
        else:
            keep.append(line)
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, path)
    return dropped


def quiet_libraries(progress: bool) -> None:
    """Keep the terminal to the trainer's own lines: vLLM logs at WARNING unless the user set
    ``VLLM_LOGGING_LEVEL``; with ``progress=false`` no transformers / huggingface_hub progress bars (model
    shards written, weights loaded) and no SyntaxWarning / DeprecationWarning about judged programs' code."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if progress:
        return
    import warnings

    warnings.filterwarnings("ignore", category=SyntaxWarning)
    warnings.filterwarnings("ignore", message="invalid escape sequence", category=DeprecationWarning)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass


class EqualRewardWatch:
    """Warn once per streak when ``after`` RL steps in a row had every group at one reward (all pass or all
    fail): those steps have zero advantages and so no policy gradient."""

    def __init__(self, after: int = 3) -> None:
        self.after = after
        self.streak = 0

    def update(self, groups_all_same: float | None, step: int) -> str | None:
        self.streak = self.streak + 1 if groups_all_same == 1.0 else 0
        if self.streak != self.after:
            return None
        return (f"warning: steps {step - self.after + 1}-{step}: in every group all responses got the same reward, "
                "so the advantages are 0 and the policy does not change; the problems are too hard (or too easy) "
                "for the model at this temperature: see reward_mean, and try more sft_steps, another temperature "
                "or other train_data")


def step_metrics(*, rewards: Any, outcomes: Sequence[str], lengths: Sequence[int], mask_rates: dict[str, float],
                 groups_all_same: float, diversity: float, adv_abs_mean: float, grad_norms: Sequence[float],
                 lr: float, gaps: Sequence[float], times: dict[str, float],
                 upd_metrics: dict[str, list[float]]) -> dict[str, Any]:
    """One RL step's metrics (before the torchrun reduction): rates over the step's sequences, lengths,
    the mask rates, diversity, the update's loss metrics averaged over micro-batches (``entropy_mean`` is
    logged as ``entropy``), and the phase times (``time_<phase>_s``)."""
    n = len(outcomes)
    gen_tokens = int(sum(lengths))
    m: dict[str, Any] = {
        "reward_mean": float(rewards.mean()),
        "pass_rate": outcomes.count("pass") / n,
        "fail_rate": outcomes.count("fail") / n,
        "no_code_rate": outcomes.count("no_code") / n,
        "length_mean": float(np.mean(lengths)),
        "length_max": int(max(lengths)),
        **mask_rates,
        "groups_all_same": groups_all_same,
        "diversity": diversity,
        "adv_abs_mean": adv_abs_mean,
        "grad_norm": float(np.mean(grad_norms)),
        "lr": lr,
        "logprob_gap_engine": float(np.mean(gaps)) if gaps else None,
        **{f"time_{k}_s": v for k, v in times.items()},
        "tokens_per_s": gen_tokens / max(times["generate"], 1e-9),
        "generated_tokens": gen_tokens,
    }
    for k, v in upd_metrics.items():
        m[k if k != "entropy_mean" else "entropy"] = float(np.mean(v))
    return m


def eval_kinds(ev: dict[str, Any], *prefixes: str) -> list[str]:
    """The held-out kinds a dict reports pass@1 for, sorted: ``pass@1/<kind>`` keys of an evaluation, or the
    keys under other ``prefixes`` (e.g. summary.json's ``pass@1_before/``)."""
    prefixes = prefixes or ("pass@1/",)
    return sorted({k.split("/", 1)[1] for k in ev if k.startswith(prefixes)})


def eval_summary(ev: dict[str, Any], when: str) -> dict[str, Any]:
    """``pass@1_<when>``, ``pass@1_<when>_se`` and the same per held-out kind, for summary.json."""
    out = {f"pass@1_{when}": ev["pass@1"], f"pass@1_{when}_se": ev["pass@1_se"]}
    for kind in eval_kinds(ev):
        out[f"pass@1_{when}/{kind}"] = ev[f"pass@1/{kind}"]
        out[f"pass@1_{when}_se/{kind}"] = ev[f"pass@1_se/{kind}"]
    return out


def fmt_pass(ev: dict[str, Any]) -> str:
    """``0.123 ± 0.015 (sampling s.e.) over 60 problems × 8 samples`` for a log line, then the same per
    held-out kind when the problems carry kinds."""
    se, p, n = ev.get("pass@1_se"), ev.get("eval_problems"), ev.get("eval_samples_total")
    spread = f" ± {se:.3f} (sampling s.e.)" if se is not None else ""
    size = f" over {p} problems × {n // p} samples" if p and n else ""
    parts = [f"{ev['pass@1']:.3f}{spread}{size}"]
    for kind in eval_kinds(ev):
        kse = ev[f"pass@1_se/{kind}"]
        parts.append(f"{kind} {ev[f'pass@1/{kind}']:.3f}" + (f" ± {kse:.3f}" if kse is not None else "")
                     + f" ({ev[f'eval_problems/{kind}']} problems)")
    return "; ".join(parts)
