"""Group-normalised advantages in plain PyTorch: the test oracle and the CPU path of ``ops.group_advantages``.

``A_i = (r_i - mean(group)) / (std(group) + eps)``, with the statistics taken over the rewards of one group
(the ``group_size`` consecutive responses to one prompt). NaN rewards (unscorable responses) are left out of the
statistics and get advantage 0 when ``nan_policy="ignore"``. See ``microcoder_fast.ops.group_advantages`` for the
flags that reproduce verl's and TRL's conventions.

Imports only torch; never ``kernels``, ``ops``, ``rl`` or the executor.
"""

from __future__ import annotations

import torch

SCALES = ("group", "batch", "none")
STDS = ("unbiased", "population", "none")
SINGLETONS = ("zero", "raw")
NAN_POLICIES = ("raise", "ignore")


def check_group_advantages_args(
    rewards: torch.Tensor,
    group_size: int,
    scale: str,
    std: str,
    eps: float,
    singleton: str,
    nan_policy: str,
    mask: torch.Tensor | None,
) -> None:
    """Raise a clear error for every argument a caller can get wrong (shared by the reference and the op)."""
    if rewards.dim() != 1:
        raise ValueError(
            f"group_advantages: rewards must be 1-D [num_responses] (one scalar reward per response), got shape "
            f"{tuple(rewards.shape)}; sum token-level rewards per response first"
        )
    if not rewards.is_floating_point():
        raise TypeError(
            f"group_advantages: rewards must be a floating tensor, got {rewards.dtype}; use .float()"
        )
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_advantages: group_size must be a positive int, got {group_size!r}")
    if rewards.numel() % group_size != 0:
        raise ValueError(
            f"group_advantages: {rewards.numel()} rewards cannot be split into groups of {group_size} "
            f"({rewards.numel()} % {group_size} = {rewards.numel() % group_size}); pass all group_size responses of "
            "every prompt, consecutively"
        )
    if scale not in SCALES:
        raise ValueError(f"group_advantages: scale must be one of {SCALES}, got {scale!r}")
    if std not in STDS:
        raise ValueError(f"group_advantages: std must be one of {STDS}, got {std!r}")
    if singleton not in SINGLETONS:
        raise ValueError(f"group_advantages: singleton must be one of {SINGLETONS}, got {singleton!r}")
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"group_advantages: nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    if not eps >= 0.0:
        raise ValueError(f"group_advantages: eps must be >= 0, got {eps!r}")
    if mask is not None and tuple(mask.shape) != tuple(rewards.shape):
        raise ValueError(
            f"group_advantages: mask must have the rewards' shape {tuple(rewards.shape)} (1 keeps an advantage, 0 "
            f"zeroes it), got {tuple(mask.shape)}"
        )


def _nan_std(
    x: torch.Tensor, valid: torch.Tensor, mean: torch.Tensor, unbiased: bool, dim: int | None
) -> torch.Tensor:
    count = valid.sum(dim=dim, keepdim=dim is not None).to(torch.float64)
    dev = torch.where(valid, x - mean, torch.zeros_like(x))
    ss = (dev * dev).sum(dim=dim, keepdim=dim is not None)
    denom = count - 1.0 if unbiased else count
    var = ss / denom.clamp(min=1.0)
    return var.sqrt()


def group_advantages_reference(
    rewards: torch.Tensor,
    group_size: int = 8,
    scale: str = "group",
    eps: float = 1e-6,
    std: str = "unbiased",
    mask: torch.Tensor | None = None,
    singleton: str = "zero",
    nan_policy: str = "raise",
) -> torch.Tensor:
    """Advantages [N] (fp32) for rewards [N] laid out as N / group_size consecutive groups.

    Statistics are computed in fp64 and rounded to fp32 once. ``singleton`` decides a group with one (non-NaN)
    member: ``"zero"`` gives 0, ``"raw"`` gives verl's ``r / (1 + eps)`` (mean 0, std 1; ``r`` without std),
    ``"nan"`` gives NaN (what an unguarded Bessel std yields). ``mask`` multiplies the advantages after
    normalisation; masked responses still count in the statistics.
    """
    check_group_advantages_args(rewards, group_size, scale, std, eps, singleton, nan_policy, mask)
    x = rewards.detach().to(torch.float64)
    nan = torch.isnan(x)
    if nan_policy == "raise" and bool(nan.any()):
        raise ValueError(
            f"group_advantages: {int(nan.sum())} reward(s) are NaN; score every response, or pass "
            "nan_policy='ignore' to leave NaN rewards out of the group statistics and give them advantage 0 (TRL)"
        )
    n = x.numel()
    g = x.view(-1, group_size) if n else x.view(0, group_size)
    valid = ~torch.isnan(g)
    count = valid.sum(dim=1, keepdim=True).to(torch.float64)
    gz = torch.where(valid, g, torch.zeros_like(g))
    mean = gz.sum(dim=1, keepdim=True) / count.clamp(min=1.0)
    use_std = std != "none" and scale != "none"
    unbiased = std == "unbiased"
    single = count <= 1.0
    if use_std:
        if scale == "group":
            sd = _nan_std(g, valid, mean, unbiased, dim=1)
        else:  # batch: one std over every non-NaN reward in the batch (TRL's scale_rewards="batch")
            flat_valid = valid.reshape(-1)
            flat = g.reshape(-1)
            cnt = flat_valid.sum().to(torch.float64)
            bmean = torch.where(flat_valid, flat, torch.zeros_like(flat)).sum() / cnt.clamp(min=1.0)
            sd = _nan_std(flat, flat_valid, bmean, unbiased, dim=None).expand_as(mean)
            if unbiased:
                sd = torch.where(cnt <= 1.0, torch.zeros_like(sd), sd)
        adv = (g - mean) / (sd + eps)
    else:
        adv = g - mean
    if singleton == "zero":
        adv = torch.where(single, torch.zeros_like(adv), adv)
    else:
        raw = g / (1.0 + eps) if use_std else g
        adv = torch.where(single, raw, adv)
    adv = torch.where(valid, adv, torch.zeros_like(adv)).reshape(-1)
    if mask is not None:
        adv = adv * mask.detach().to(torch.float64)
    return adv.to(torch.float32)
