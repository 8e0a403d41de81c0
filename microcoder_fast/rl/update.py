"""The policy update of one rollout round: the old-policy (and reference) log-probs, then ``ppo_epochs``
passes of clipped GRPO updates in mini-batches with gradient accumulation over micro-batches, exactly
normalised (also under torchrun), and the optimiser's LR schedule.

Tensors in, gradients and metrics out. Must not import the engines, the judge, the data loaders or
``rl.trainer``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from microcoder_fast.ops.grpo_loss import grpo_loss
from microcoder_fast.rl import distributed as rldist
from microcoder_fast.rl.batching import Batch
from microcoder_fast.rl.config import TrainConfig
from microcoder_fast.rl.policy import response_logprobs


def updates_per_step(cfg: TrainConfig) -> int:
    """Optimiser updates per rollout round."""
    return cfg.train_batch_size // cfg.ppo_mini_batch_size * cfg.ppo_epochs


def lr_lambda(cfg: TrainConfig, step: int) -> float:
    """The LR multiplier after ``step`` optimiser updates: linear warm-up, then constant or cosine."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        total = max(1, cfg.total_steps * updates_per_step(cfg) - cfg.warmup_steps)
        prog = min(1.0, (step - cfg.warmup_steps) / total)
        return 0.5 * (1 + math.cos(math.pi * prog))
    return 1.0


@torch.no_grad()
def rollout_logprobs(model: Any, b: Batch, temperature: float, micro: int) -> torch.Tensor:
    """Log-probs of every response token under ``model`` (no gradient), in micro-batches, fp32 on the CPU."""
    n = b.input_ids.shape[0]
    return torch.cat([response_logprobs(model, b, slice(s, s + micro), temperature)[0].float().cpu()
                      for s in range(0, n, micro)])


def grpo_update(model: Any, optimizer: Any, scheduler: Any, b: Batch, old_logp: torch.Tensor, adv: torch.Tensor,
                ref_logp: torch.Tensor | None, temperature: float, cfg: TrainConfig,
                ctx: rldist.DistContext | None = None) -> tuple[dict[str, list[float]], list[float]]:
    """``ppo_epochs`` passes over the rollout in mini-batches of ``ppo_mini_batch_size`` prompts; one optimiser
    step per mini-batch, gradients accumulated over micro-batches of ``ppo_micro_batch_size`` sequences and
    weighted so the mini-batch loss equals ``ops.grpo_loss`` over the whole mini-batch (token-mean: by
    tokens; the seq-mean modes: by sequences). Under torchrun (``ctx``) the rollout holds this rank's share
    of every mini-batch and the weights use the global token / sequence counts (see rl/distributed.py)."""
    ctx = ctx or rldist.DistContext()
    n = b.input_ids.shape[0]
    rmask = b.response_mask
    micro = cfg.ppo_micro_batch_size
    seqs_per_mb = cfg.ppo_mini_batch_size // ctx.world_size * cfg.group_size  # this rank's share of a mini-batch
    upd_metrics: dict[str, list[float]] = {}
    grad_norms: list[float] = []
    for _epoch in range(cfg.ppo_epochs):
        for mb in range(0, n, seqs_per_mb):
            optimizer.zero_grad(set_to_none=True)
            mb_end = min(n, mb + seqs_per_mb)
            mb_tokens = float(rmask[mb:mb_end].sum().clamp(min=1))
            if ctx.enabled:  # every rank's share of this mini-batch counts
                mb_tokens = max(1.0, ctx.all_reduce_sum(float(rmask[mb:mb_end].sum())))
            for s in range(mb, mb_end, micro):
                sl = slice(s, min(s + micro, mb_end))
                lp, ent = response_logprobs(model, b, sl, temperature, with_entropy=True)
                mk = rmask[sl].to(lp.device)
                loss, lm = grpo_loss(
                    lp, old_logp[sl].to(lp.device), adv[sl].to(lp.device), mk,
                    eps_low=cfg.eps_low, eps_high=cfg.eps_high, kl_coef=cfg.kl_coef,
                    ref_logp=ref_logp[sl].to(lp.device) if ref_logp is not None else None,
                    agg=cfg.loss_agg, dual_clip=cfg.dual_clip or None,
                    max_len=cfg.max_response_length, entropy=ent.detach() if ent is not None else None,
                )
                if cfg.loss_agg == "token-mean":
                    w = float(mk.sum()) / mb_tokens
                else:
                    w = (sl.stop - sl.start) / (mb_end - mb)
                if ctx.enabled:  # FSDP averages over ranks; seq-mean: the global mini-batch has K shares
                    w = w * rldist.loss_scale(ctx) / (1 if cfg.loss_agg == "token-mean" else ctx.world_size)
                (loss * w).backward()
                for k, v in lm.items():
                    upd_metrics.setdefault(k, []).append(float(v))
            gn = rldist.clip_grad_norm(model.parameters(), cfg.grad_clip)
            grad_norms.append(gn)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
    return upd_metrics, grad_norms
