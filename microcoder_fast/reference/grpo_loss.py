"""The GRPO / PPO-clip policy loss in plain PyTorch: the test oracle and the CPU path of ``ops.grpo_loss``.

Two implementations of the same maths live here:

- ``grpo_loss_reference`` writes the loss the way verl writes it (``torch.maximum`` of the unclipped and
  clipped terms, dual clip by ``torch.min``, k3 KL) and lets autograd differentiate it: the oracle.
- ``grpo_token_terms`` computes the same per-token terms together with the analytic gradient ``dloss/dlogp``
  (row-local once the aggregation weights are known), as the rows the Triton kernels write: the CPU path of
  the ops (which reduce the rows with ``ops._loss.reduce_token_rows``, shared with the CUDA path).

Per token (mask true): ``ratio = exp(clamp(logp - old_logp, -20, 20))``,
``pg = max(-A·ratio, -A·clamp(ratio, 1 - eps_low, 1 + eps_high))``, and for ``A < 0`` with a dual clip ``c``,
``pg = min(pg, -A·c)``. KL (k3, verl's ``low_var_kl``): ``x = clamp(ref - logp, -20, 20)``,
``kl = clamp(exp(x) - x - 1, -10, 10)``. Token loss ``pg + kl_coef·kl``. Loss ``= Σ_tokens w·(pg + kl_coef·kl)``
with aggregation weights ``w`` (``ops._loss.sequence_scale``; the oracle aggregates the verl way instead).

Imports torch only (never the ops or the kernels).
"""

from __future__ import annotations

import torch

LOG_RATIO_CLAMP = 20.0
KL_CLAMP = 10.0
FLAG_CLIP_LOW, FLAG_CLIP_HIGH, FLAG_DUAL = 1.0, 2.0, 4.0  # packed flag row, as the kernels write it


def grpo_token_terms(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    valid: torch.Tensor,
    ref_logp: torch.Tensor | None,
    w: torch.Tensor,
    eps_low: float,
    eps_high: float,
    kl_coef: float,
    dual_clip: float | None,
) -> torch.Tensor:
    """Per-token rows [6, *logp.shape] fp32: pg, kl, ratio, -clamped log-ratio, packed flags (1 clip-low,
    2 clip-high, 4 dual) and the analytic gradient ``g = w · d(pg + kl_coef·kl)/dlogp``.

    ``adv`` broadcasts against ``logp``; ``valid`` is the boolean mask; ``w`` the per-token aggregation weight.
    Masked tokens get exact zeros everywhere (never NaN, whatever their inputs hold).
    """
    lp = logp.detach().to(torch.float32)
    a = adv.detach().to(torch.float32).expand_as(lp)
    lr = lp - old_logp.detach().to(torch.float32)
    lrc = lr.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    inside = (lr >= -LOG_RATIO_CLAMP) & (lr <= LOG_RATIO_CLAMP)
    ratio = torch.exp(lrc)
    pg1 = -a * ratio
    pg2 = -a * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    clipped = pg2 > pg1
    pg = torch.maximum(pg1, pg2)
    dpg = torch.where(clipped | ~inside, torch.zeros_like(pg1), pg1)  # d(-A·ratio)/dlogp = -A·ratio
    if dual_clip is not None:
        pg3 = -a * dual_clip
        dual = (a < 0) & (pg > pg3)
        pg = torch.where(dual, pg3, pg)
        dpg = torch.where(dual, torch.zeros_like(dpg), dpg)
    else:
        dual = torch.zeros_like(valid)
    if ref_logp is not None:
        x = ref_logp.detach().to(torch.float32) - lp
        xc = x.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        ex = torch.exp(xc)
        k = ex - xc - 1.0
        kl = k.clamp(-KL_CLAMP, KL_CLAMP)
        kin = (x >= -LOG_RATIO_CLAMP) & (x <= LOG_RATIO_CLAMP) & (k <= KL_CLAMP) & (k >= -KL_CLAMP)
        dkl = torch.where(kin, 1.0 - ex, torch.zeros_like(ex))
    else:
        kl = torch.zeros_like(lp)
        dkl = torch.zeros_like(lp)
    zero = torch.zeros_like(lp)
    g = w * (dpg + kl_coef * dkl) if kl_coef != 0.0 else w * dpg
    flags = (
        (clipped & (a < 0)).to(torch.float32) * FLAG_CLIP_LOW
        + (clipped & (a > 0)).to(torch.float32) * FLAG_CLIP_HIGH
        + dual.to(torch.float32) * FLAG_DUAL
    )
    return torch.stack([torch.where(valid, x, zero) for x in (pg, kl, ratio, -lrc, flags, g)])


def grpo_loss_reference(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    kl_coef: float = 0.0,
    ref_logp: torch.Tensor | None = None,
    agg: str = "token-mean",
    dual_clip: float | None = None,
    max_len: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The oracle: verl-style formula and aggregation differentiated by autograd (fp32). Returns (loss, metrics
    dict). Arguments are assumed valid (the ops check them)."""
    valid = mask != 0
    lp = logp.to(torch.float32)
    a = advantages.to(torch.float32)
    if a.dim() == 1:
        a = a[:, None]
    a = a.expand_as(lp)
    neg_approx_kl = (lp - old_logp.to(torch.float32)).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(neg_approx_kl)
    pg_losses1 = -a * ratio
    pg_losses2 = -a * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    if dual_clip is not None:
        pg_losses3 = -a * dual_clip
        clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
        pg_losses = torch.where(a < 0, clip_pg_losses2, clip_pg_losses1)
        dual = (clip_pg_losses1 > pg_losses3) & (a < 0)
    else:
        pg_losses = clip_pg_losses1
        dual = torch.zeros_like(valid)
    if ref_logp is not None:
        kl = (ref_logp.to(torch.float32) - lp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        kld = (torch.exp(kl) - kl - 1.0).clamp(-KL_CLAMP, KL_CLAMP)
    else:
        kld = torch.zeros_like(lp)
    zero = torch.zeros_like(lp)
    pg_m = torch.where(valid, pg_losses, zero)
    kl_m = torch.where(valid, kld, zero)
    pg_loss = _aggregate(pg_m, valid, agg, max_len)
    kl_loss = _aggregate(kl_m, valid, agg, max_len)
    loss = pg_loss + kl_coef * kl_loss
    vf = valid.to(torch.float32)
    n = vf.sum().clamp(min=1.0)
    clipped = (pg_losses2 > pg_losses1) & valid
    ratio_v = torch.where(valid, ratio, zero).detach()
    metrics = {
        "pg_loss": pg_loss.detach(),
        "kl_loss": kl_loss.detach(),
        "ppo_kl": (torch.where(valid, -neg_approx_kl, zero).sum() / n).detach(),
        "kl_mean": (kl_m.sum() / n).detach(),
        "ratio_mean": ratio_v.sum() / n,
        "ratio_max": ratio_v.max() if ratio_v.numel() else torch.zeros(()),
        "clipfrac_low": ((clipped & (a < 0)).float().sum() / n),
        "clipfrac_high": ((clipped & (a > 0)).float().sum() / n),
        "pg_clipfrac": clipped.float().sum() / n,
        "pg_clipfrac_lower": (dual & valid).float().sum() / n,
        "num_tokens": vf.sum(),
    }
    return loss, metrics


def _aggregate(x: torch.Tensor, valid: torch.Tensor, agg: str, max_len: float | None) -> torch.Tensor:
    """verl's ``agg_loss`` over a [B, L] tensor whose masked entries hold 0 (fully masked sequences are left out
    of ``seq-mean-token-mean``; an empty batch gives 0)."""
    m = valid.to(torch.float32)
    B = x.shape[0]
    if agg == "token-mean":
        return x.sum() / m.sum().clamp(min=1.0)
    if agg == "token-sum":
        return x.sum()
    per_seq = x.sum(-1)
    if agg == "seq-mean-token-sum":
        return per_seq.sum() / max(B, 1)
    if agg == "seq-mean-token-sum-norm":
        return per_seq.sum() / (max(B, 1) * float(max_len))
    if agg == "seq-mean-token-mean":
        n_b = m.sum(-1)
        kept = n_b > 0
        return (per_seq / n_b.clamp(min=1.0))[kept].sum() / kept.sum().clamp(min=1).to(torch.float32)
    raise ValueError(f"unknown agg {agg!r}")
