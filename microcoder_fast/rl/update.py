"""The policy update of one rollout round: the old-policy (and reference) log-probs, then ``ppo_epochs``
passes of clipped GRPO updates in mini-batches with gradient accumulation over micro-batches, exactly
normalised (also under torchrun), and the optimiser's LR schedule.

The old-policy pass is skipped where it equals the current policy: the rows of the first mini-batch of the
first epoch meet the optimiser before any step, so their old log-probs are the detached log-probs of that
very forward (`grpo_update` with ``fill_first_old``); only the later mini-batches' rows need a separate
no-grad pass (`old_logprobs`), none at all with one update per round. ``recompute_old_logp`` forces the
full pass (the oracle). Micro-batches: ``ppo_micro_batch_size`` rows, or a token budget
(``ppo_max_tokens_per_micro_batch``), each trimmed to its own padding (rl/batching.py).

Tensors in, gradients and metrics out. Must not import the engines, the judge, the data loaders or
``rl.trainer``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from microcoder_fast.ops.fused_grpo_loss import fused_grpo_loss
from microcoder_fast.ops.grpo_loss import grpo_loss
from microcoder_fast.ops.token_logprobs import token_logprobs
from microcoder_fast.rl import distributed as rldist
from microcoder_fast.rl.batching import Batch, micro_batches
from microcoder_fast.rl.config import TrainConfig
from microcoder_fast.rl.policy import loss_path_of, response_logits, response_logprobs


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


def seqs_per_mini_batch(cfg: TrainConfig, ctx: rldist.DistContext | None = None) -> int:
    """This rank's rows in one mini-batch."""
    k = ctx.world_size if ctx is not None else 1
    return cfg.ppo_mini_batch_size // k * cfg.group_size


def _micro(b: Batch, start: int, stop: int, cfg: TrainConfig) -> list[torch.Tensor]:
    return micro_batches(b, start, stop, cfg.ppo_micro_batch_size, cfg.ppo_max_tokens_per_micro_batch)


@torch.no_grad()
def rollout_logprobs(model: Any, b: Batch, temperature: float, cfg: TrainConfig, start: int = 0,
                     stop: int | None = None) -> torch.Tensor:
    """[N, R] log-probs (fp32, CPU) of the response tokens of rows ``start:stop`` under ``model``, no
    gradient, in the update's micro-batches along the model's loss path; other rows are 0."""
    n, r = b.responses.shape
    out = torch.zeros(n, r)
    for rows in _micro(b, start, n if stop is None else stop, cfg):
        out[rows] = response_logprobs(model, b, rows, temperature)[0].float().cpu()
    return out


def old_logprobs(model: Any, b: Batch, temperature: float, cfg: TrainConfig,
                 ctx: rldist.DistContext | None = None) -> tuple[torch.Tensor, bool]:
    """``(old_logp, fill_first)``: the old policy's log-probs before any update of this round. With
    ``fill_first`` the first mini-batch's rows are left 0 here and `grpo_update` fills them from its first
    forward (they equal the current policy there); ``recompute_old_logp`` computes every row."""
    if cfg.recompute_old_logp:
        return rollout_logprobs(model, b, temperature, cfg), False
    return rollout_logprobs(model, b, temperature, cfg, start=seqs_per_mini_batch(cfg, ctx)), True


def grpo_update(model: Any, optimizer: Any, scheduler: Any, b: Batch, old_logp: torch.Tensor, adv: torch.Tensor,
                ref_logp: torch.Tensor | None, temperature: float, cfg: TrainConfig,
                ctx: rldist.DistContext | None = None,
                fill_first_old: bool = False) -> tuple[dict[str, list[float]], list[float]]:
    """``ppo_epochs`` passes over the rollout in mini-batches of ``ppo_mini_batch_size`` prompts; one optimiser
    step per mini-batch, gradients accumulated over micro-batches and weighted so the mini-batch loss equals
    the GRPO loss over the whole mini-batch (token-mean: by tokens; the seq-mean modes: by sequences). Under
    torchrun (``ctx``) the rollout holds this rank's share of every mini-batch and the weights use the global
    token / sequence counts (see rl/distributed.py).

    The loss runs along the model's loss path (rl/policy.py): ``ops.grpo_loss`` on the log-probs of the
    ``hidden`` or ``logits`` path, ``ops.fused_grpo_loss`` with the in-place backward on ``fused``.
    ``fill_first_old``: the rows of the first mini-batch of epoch 0 take their old log-probs from their own
    forward (detached; written into ``old_logp``), as `old_logprobs` arranged."""
    ctx = ctx or rldist.DistContext()
    n = b.input_ids.shape[0]
    rmask = b.response_mask
    seqs_per_mb = seqs_per_mini_batch(cfg, ctx)
    path = loss_path_of(model)
    loss_kw = dict(eps_low=cfg.eps_low, eps_high=cfg.eps_high, kl_coef=cfg.kl_coef, agg=cfg.loss_agg,
                   dual_clip=cfg.dual_clip or None, max_len=cfg.max_response_length)
    upd_metrics: dict[str, list[float]] = {}
    grad_norms: list[float] = []
    for epoch in range(cfg.ppo_epochs):
        for mb in range(0, n, seqs_per_mb):
            optimizer.zero_grad(set_to_none=True)
            mb_end = min(n, mb + seqs_per_mb)
            mb_tokens = float(rmask[mb:mb_end].sum().clamp(min=1))
            if ctx.enabled:  # every rank's share of this mini-batch counts
                mb_tokens = max(1.0, ctx.all_reduce_sum(float(rmask[mb:mb_end].sum())))
            fill = fill_first_old and epoch == 0 and mb == 0
            for rows in _micro(b, mb, mb_end, cfg):
                sb = b.select(rows)
                r = sb.responses.shape[1]
                dev = next(model.parameters()).device
                mk = sb.response_mask.to(dev)
                ref = ref_logp[rows, :r].to(dev) if ref_logp is not None else None
                if path == "fused":
                    logits = response_logits(model, sb)
                    tgt = sb.responses.to(dev)
                    if fill:
                        with torch.no_grad():
                            old_logp[rows, :r] = token_logprobs(logits.detach(), tgt, temperature=temperature).float().cpu()
                    loss, lm = fused_grpo_loss(logits, tgt, old_logp[rows, :r].to(dev), adv[rows].to(dev), mk,
                                               temperature=temperature, ref_logp=ref, compute_entropy=True,
                                               inplace_backward=logits.is_contiguous(), **loss_kw)
                    del logits
                else:
                    lp, ent = response_logprobs(model, sb, slice(None), temperature, with_entropy=True)
                    if fill:
                        old_logp[rows, :r] = lp.detach().float().cpu()
                    loss, lm = grpo_loss(lp, old_logp[rows, :r].to(dev), adv[rows].to(dev), mk, ref_logp=ref,
                                         entropy=ent.detach() if ent is not None else None, **loss_kw)
                if cfg.loss_agg == "token-mean":
                    w = float(mk.sum()) / mb_tokens
                else:
                    w = len(rows) / (mb_end - mb)
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
