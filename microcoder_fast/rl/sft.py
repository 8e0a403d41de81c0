"""The supervised warm-up (a separate stage before RL, ``sft_steps`` > 0): teacher-forced cross-entropy on
the reference solutions of the train split, with its own AdamW, a 10-step warm-up and a cosine LR.

Must not import the engines, the judge, the GRPO update or ``rl.trainer``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from microcoder_fast.data.problem import CodeProblem
from microcoder_fast.rl import distributed as rldist
from microcoder_fast.rl.batching import make_batch
from microcoder_fast.rl.config import TrainConfig
from microcoder_fast.rl.dataset import sft_target
from microcoder_fast.rl.policy import response_logprobs
from microcoder_fast.rl.report import log


def run_sft(model: Any, tokenizer: Any, problems: list[CodeProblem], prompts: list[list[int]], cfg: TrainConfig,
            pad_id: int, eos_id: int, ctx: rldist.DistContext) -> dict[str, Any]:
    """``cfg.sft_steps`` steps on the problems that have a reference solution; returns the phase's metrics."""
    items = [(p, ids) for p, ids in zip(problems, prompts) if p.solution]
    if not items:
        raise ValueError("sft_steps > 0 but no train problem has a reference solution; set sft_steps=0")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.sft_lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(cfg.seed + 17)
    targets = [tokenizer(sft_target(p), add_special_tokens=False)["input_ids"] + [eos_id] for p, _ in items]
    model.train()
    t0 = time.time()
    order: list[int] = []
    losses = []
    from tqdm import tqdm

    bar = tqdm(range(cfg.sft_steps), desc="sft", disable=not cfg.progress or not ctx.is_main, mininterval=2.0)
    for s in bar:
        if len(order) < cfg.sft_batch_size:
            order += torch.randperm(len(items), generator=g).tolist()
        pick, order = order[: cfg.sft_batch_size], order[cfg.sft_batch_size :]
        pick = ctx.rank_slice(pick)  # torchrun: this rank's share of the batch
        b = make_batch([items[i][1] for i in pick], [targets[i] for i in pick], pad_id)
        lr = cfg.sft_lr * min(1.0, (s + 1) / 10) * (0.5 * (1 + math.cos(math.pi * s / cfg.sft_steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        lp, _ = response_logprobs(model, b, slice(None), 1.0)
        if ctx.enabled:  # normalise by the global token count; FSDP averages, so scale by K
            nll = -(lp * b.response_mask.to(lp.device)).sum()
            loss = nll / max(1.0, ctx.all_reduce_sum(float(b.response_mask.sum())))
            opt.zero_grad(set_to_none=True)
            (loss * rldist.loss_scale(ctx)).backward()
            rldist.clip_grad_norm(model.parameters(), 1.0)
            opt.step()
            losses.append(ctx.all_reduce_sum(float(loss.detach())))
        else:
            loss = -(lp * b.response_mask.to(lp.device)).sum() / b.response_mask.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if not cfg.progress and (s + 1) % 25 == 0:
            log(f"sft step {s + 1}/{cfg.sft_steps}: loss {np.mean(losses[-25:]):.3f} ({time.time() - t0:.0f}s)")
    log(f"sft: {cfg.sft_steps} steps in {time.time() - t0:.1f}s, loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f}")
    return {"phase": "sft", "sft_steps": cfg.sft_steps, "sft_loss_first": losses[0],
            "sft_loss_last": float(np.mean(losses[-10:])), "time_s": time.time() - t0}
