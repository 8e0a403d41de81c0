"""Held-out evaluation: sample ``eval_samples`` responses per held-out problem, judge them as each group
finishes, and report mean pass@1 with its sampling standard error, overall and per held-out kind.

Needs an engine and a judge (passed in). Must not import the model, the optimiser or ``rl.trainer``.
"""

from __future__ import annotations

import time
from typing import Any

from microcoder_fast.data.passk import mean_pass_at_k, pass_at_1_se
from microcoder_fast.data.problem import CodeProblem
from microcoder_fast.rl import distributed as rldist
from microcoder_fast.rl.config import TrainConfig
from microcoder_fast.rl.engines import Completion


def evaluate(engine: Any, judge: Any, problems: list[CodeProblem], prompts: list[list[int]], cfg: TrainConfig,
             ctx: rldist.DistContext) -> dict[str, Any]:
    """pass@1 (and its s.e.) over ``problems``; under torchrun each rank judges its share and the counts
    are gathered, so every rank returns the run's numbers."""
    t0 = time.time()
    futures: dict[int, list[Any]] = {}

    ev_idx = ctx.rank_slice(list(range(len(prompts))))  # torchrun: this rank's problems

    def on_group(i: int, group: list[Completion]) -> None:
        futures[i] = [judge.submit(c.text, problems[ev_idx[i]]) for c in group]

    groups = engine.generate([prompts[j] for j in ev_idx], cfg.eval_samples, cfg.eval_temperature,
                             cfg.eval_max_response_length, seed=cfg.seed * 7919 + 99991 + ctx.seed_offset,
                             on_group=on_group)
    counts, outcomes, kinds = [], [], []
    for i in range(len(groups)):
        res = [f.result() for f in futures[i]]
        outcomes += [r.outcome for r in res]
        counts.append((len(res), sum(1 for r in res if r.outcome == "pass")))
        kinds.append(problems[ev_idx[i]].metadata.get("heldout_kind"))
    truncated = sum(c.truncated for g in groups for c in g)
    if ctx.enabled:  # every rank's problems
        parts = ctx.all_gather_object((counts, outcomes, truncated, kinds))
        counts = [c for part in parts for c in part[0]]
        outcomes = [o for part in parts for o in part[1]]
        truncated = sum(part[2] for part in parts)
        kinds = [k for part in parts for k in part[3]]
    p1, _ = mean_pass_at_k(counts, 1)
    n = max(1, len(outcomes))
    out: dict[str, Any] = {"pass@1": float(p1 or 0.0), "pass@1_se": pass_at_1_se(counts),
                           "eval_problems": len(counts), "eval_samples_total": len(outcomes),
                           "eval_no_code_rate": outcomes.count("no_code") / n,
                           "eval_truncation_rate": truncated / n,
                           "eval_time_s": time.time() - t0}
    # problems tagged with a held-out kind (the embedded set: new statements of trained tasks vs unseen
    # combinations) also get pass@1 per kind, since the kinds measure different things
    for kind in sorted({k for k in kinds if k}):
        sub = [c for c, k in zip(counts, kinds) if k == kind]
        out[f"pass@1/{kind}"] = float(mean_pass_at_k(sub, 1)[0] or 0.0)
        out[f"pass@1_se/{kind}"] = pass_at_1_se(sub)
        out[f"eval_problems/{kind}"] = len(sub)
    return out
