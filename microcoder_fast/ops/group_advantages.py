"""``ops.group_advantages``: group-normalised GRPO advantages (torch.library custom op).

Triton on CUDA (and on CPU tensors inside ``_dispatch.triton_interpreter()``), the torch reference elsewhere.

Imports torch, ``kernels``, ``reference`` and the other ``ops`` helpers; never ``rl``, ``data`` or the
executor.
"""

from __future__ import annotations

import torch

from microcoder_fast.ops import _dispatch
from microcoder_fast.reference.group_advantages import (
    check_group_advantages_args,
    group_advantages_reference,
)

__all__ = ["group_advantages"]


@torch.library.custom_op("microcoder_fast::group_advantages", mutates_args=())
def _group_advantages_op(
    rewards: torch.Tensor,
    mask: torch.Tensor | None,
    group_size: int,
    scale: str,
    eps: float,
    std: str,
    singleton: str,
    nan_policy: str,
) -> torch.Tensor:
    if not _dispatch.use_triton(rewards.device):
        return group_advantages_reference(rewards, group_size, scale, eps, std, mask, singleton, nan_policy)

    nan = torch.isnan(rewards)
    if nan_policy == "raise" and bool(nan.any()):
        raise ValueError(
            f"group_advantages: {int(nan.sum())} reward(s) are NaN; score every response, or pass "
            "nan_policy='ignore' to leave NaN rewards out of the group statistics and give them advantage 0 (TRL)"
        )
    use_std = std != "none" and scale != "none"
    batch_std = None
    if use_std and scale == "batch":
        x = rewards.to(torch.float64)
        valid = ~nan
        cnt = valid.sum().to(torch.float64)
        mean = torch.where(valid, x, 0.0).sum() / cnt.clamp(min=1.0)
        ss = torch.where(valid, (x - mean) ** 2, 0.0).sum()
        denom = cnt - 1.0 if std == "unbiased" else cnt
        batch_std = (ss / denom.clamp(min=1.0)).sqrt()
        if std == "unbiased":
            batch_std = torch.where(cnt <= 1.0, torch.zeros_like(batch_std), batch_std)
    return _dispatch.kernels("group_advantages").group_advantages_triton(
        rewards,
        group_size,
        eps,
        use_std=use_std,
        unbiased=std == "unbiased",
        batch_std=batch_std,
        raw_singleton=singleton == "raw",
        mask=mask,
    )


@_group_advantages_op.register_fake
def _(
    rewards: torch.Tensor,
    mask: torch.Tensor | None,
    group_size: int,
    scale: str,
    eps: float,
    std: str,
    singleton: str,
    nan_policy: str,
) -> torch.Tensor:
    return rewards.new_empty(rewards.shape, dtype=torch.float32)


def group_advantages(
    rewards: torch.Tensor,
    group_size: int = 8,
    scale: str = "group",
    eps: float = 1e-6,
    std: str = "unbiased",
    mask: torch.Tensor | None = None,
    singleton: str = "zero",
    nan_policy: str = "raise",
) -> torch.Tensor:
    """Group-normalised advantages: ``A_i = (r_i - mean(group)) / (std(group) + eps)``, fp32 [N].

    Args:
        rewards: [N] floating rewards, ``group_size`` consecutive responses per prompt (N % group_size == 0,
            otherwise a ValueError says so).
        group_size: responses per prompt (GRPO's G; TRL's ``num_generations``; verl's ``rollout.n``).
        scale: where the std comes from: ``"group"`` (per group), ``"batch"`` (one std over the whole batch,
            the mean stays per group; TRL's ``scale_rewards="batch"``) or ``"none"`` (no division, TRL's
            ``scale_rewards="none"``, Dr. GRPO).
        eps: added to the std: ``(r - mean) / (std + eps)``.
        std: ``"unbiased"`` (Bessel, N - 1; verl and TRL), ``"population"`` (N) or ``"none"`` (no division;
            Dr. GRPO, verl's ``norm_adv_by_std_in_grpo=False``).
        mask: optional [N] keep-mask applied AFTER normalisation (advantage * mask): 0 zeroes a response's
            advantage while its reward still counts in its group's mean and std. MicroCoder's conditional
            truncation mask is passed here.
        singleton: a group with one (non-NaN) reward: ``"zero"`` gives advantage 0 (default; TRL's result);
            ``"raw"`` gives verl's ``r / (1 + eps)`` (verl sets mean 0, std 1 for a group of one; ``r`` when
            there is no std division).
        nan_policy: ``"raise"`` (default) rejects NaN rewards with a clear error; ``"ignore"`` leaves them out of
            the statistics and gives them advantage 0 (TRL's treatment of unscorable completions). ``"raise"``
            reads one flag back to the host (a sync on CUDA, so not capturable in a CUDA graph); ``"ignore"``
            never syncs.

    Conventions:
        - verl GRPO (``compute_grpo_outcome_advantage``): ``scale="group", std="unbiased", eps=1e-6,
          singleton="raw"``; verl Dr. GRPO: the same with ``std="none"``.
        - TRL ``GRPOTrainer``: ``scale="group"`` (or ``"batch"``/``"none"`` as its ``scale_rewards``),
          ``std="unbiased", eps=1e-4, nan_policy="ignore"`` (nanmean / Bessel nanstd + 1e-4; a group of one
          gets 0, the default ``singleton``).
        - MicroCoder-GRPO: the defaults, with the conditional truncation mask as ``mask``.

    Not differentiable (rewards carry no gradient). Statistics are exact in fp32 on the kernel path and computed
    in fp64 on the reference path.
    """
    check_group_advantages_args(rewards, group_size, scale, std, eps, singleton, nan_policy, mask)
    return _group_advantages_op(rewards, mask, group_size, scale, float(eps), std, singleton, nan_policy)
