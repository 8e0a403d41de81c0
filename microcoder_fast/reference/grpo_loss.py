"""The GRPO / PPO-clip policy loss in plain PyTorch: the test oracle and the CPU path of ``ops.grpo_loss``.

Two implementations of the same maths live here:

- ``grpo_loss_reference`` writes the loss the way verl writes it (``torch.maximum`` of the unclipped and
  clipped terms, dual clip by ``torch.min``, k3 KL) and lets autograd differentiate it: the oracle.
- ``grpo_token_terms`` + ``reduce_terms`` compute the same per-token terms together with the analytic
  gradient ``dloss/dlogp`` (row-local once the aggregation weights are known): the CPU path of the ops and the
  formula the Triton kernels implement.

Per token (mask true): ``ratio = exp(clamp(logp - old_logp, -20, 20))``,
``pg = max(-A·ratio, -A·clamp(ratio, 1 - eps_low, 1 + eps_high))``, and for ``A < 0`` with a dual clip ``c``,
``pg = min(pg, -A·c)``. KL (k3, verl's ``low_var_kl``): ``x = clamp(ref - logp, -20, 20)``,
``kl = clamp(exp(x) - x - 1, -10, 10)``. Token loss ``pg + kl_coef·kl``. Loss ``= Σ_tokens w·(pg + kl_coef·kl)``
with aggregation weights ``w`` (see ``sequence_scale``).
"""

from __future__ import annotations

import math

import torch

AGGS = ("token-mean", "token-sum", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")

# Order of the metrics vector the ops return (then turned into a dict).
METRIC_NAMES = (
    "pg_loss",
    "kl_loss",
    "ppo_kl",
    "kl_mean",
    "ratio_mean",
    "ratio_max",
    "clipfrac_low",
    "clipfrac_high",
    "pg_clipfrac",
    "pg_clipfrac_lower",
    "num_tokens",
)

LOG_RATIO_CLAMP = 20.0
KL_CLAMP = 10.0


def check_loss_args(
    name: str,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None,
    eps_low: float,
    eps_high: float,
    kl_coef: float,
    agg: str,
    dual_clip: float | None,
    max_len: int | None,
) -> None:
    """Clear errors for every argument a caller can get wrong (shared by grpo_loss and fused_grpo_loss)."""
    if mask.dim() != 2:
        raise ValueError(
            f"{name}: mask must be [B, L] (1 = token in the loss), got shape {tuple(mask.shape)}"
        )
    bl = tuple(mask.shape)
    if tuple(old_logp.shape) != bl:
        raise ValueError(f"{name}: old_logp must have the mask's shape {bl}, got {tuple(old_logp.shape)}")
    if not old_logp.is_floating_point():
        raise TypeError(f"{name}: old_logp must be floating, got {old_logp.dtype}")
    if tuple(advantages.shape) not in (bl[:1], bl):
        raise ValueError(
            f"{name}: advantages must be per sequence [B]={bl[:1]} or per token [B, L]={bl}, got "
            f"{tuple(advantages.shape)}"
        )
    if not advantages.is_floating_point():
        raise TypeError(f"{name}: advantages must be floating, got {advantages.dtype}")
    if ref_logp is not None and tuple(ref_logp.shape) != bl:
        raise ValueError(f"{name}: ref_logp must have the mask's shape {bl}, got {tuple(ref_logp.shape)}")
    if kl_coef != 0.0 and ref_logp is None:
        raise ValueError(
            f"{name}: kl_coef={kl_coef} needs ref_logp (the reference policy's log-probs [B, L])"
        )
    if not (math.isfinite(kl_coef) and kl_coef >= 0.0):
        raise ValueError(f"{name}: kl_coef must be a finite number >= 0, got {kl_coef!r}")
    if not (0.0 <= eps_low < 1.0):
        raise ValueError(f"{name}: eps_low must be in [0, 1) (ratio clipped at 1 - eps_low), got {eps_low!r}")
    if not (eps_high >= 0.0 and math.isfinite(eps_high)):
        raise ValueError(f"{name}: eps_high must be a finite number >= 0, got {eps_high!r}")
    if dual_clip is not None and not (dual_clip > 1.0):
        raise ValueError(
            f"{name}: dual_clip must be > 1 (verl's clip_ratio_c, e.g. 3.0) or None, got {dual_clip!r}"
        )
    if agg not in AGGS:
        raise ValueError(f"{name}: agg must be one of {AGGS}, got {agg!r}")
    if agg == "seq-mean-token-sum-norm":
        if max_len is None:
            raise ValueError(
                f"{name}: agg='seq-mean-token-sum-norm' (Dr. GRPO) divides by the maximum response length: pass "
                "max_len (the generation cap, constant over training; verl's default is mask.shape[-1])"
            )
        if not max_len > 0:
            raise ValueError(f"{name}: max_len must be > 0, got {max_len!r}")


def sequence_scale(mask: torch.Tensor, agg: str, max_len: float | None) -> torch.Tensor:
    """Per-sequence weight s [B] (fp32) such that the loss is ``Σ_{b,t} mask·s_b·loss_{b,t}``.

    - ``token-mean`` (DAPO; TRL ``bnpo``/``dapo`` on one process): ``1 / max(Σ mask, 1)``;
    - ``token-sum``: 1;
    - ``seq-mean-token-mean`` (original GRPO; TRL ``grpo``): ``1 / (n_b · #sequences with n_b > 0)``,
      fully masked sequences are left out of the mean;
    - ``seq-mean-token-sum``: ``1 / B`` (verl);
    - ``seq-mean-token-sum-norm`` (Dr. GRPO; TRL ``dr_grpo``, current verl): ``1 / (B · max_len)``.
    """
    m = mask.to(torch.float32)
    b = m.shape[0]
    n_b = m.sum(dim=-1)
    if agg == "token-mean":
        return (1.0 / n_b.sum().clamp(min=1.0)).expand(b).contiguous()
    if agg == "token-sum":
        return torch.ones(b, dtype=torch.float32, device=m.device)
    if agg == "seq-mean-token-mean":
        n_seq = (n_b > 0).sum().to(torch.float32).clamp(min=1.0)
        return 1.0 / (n_b.clamp(min=1.0) * n_seq)
    if agg == "seq-mean-token-sum":
        return torch.full((b,), 1.0 / max(b, 1), dtype=torch.float32, device=m.device)
    if agg == "seq-mean-token-sum-norm":
        assert max_len is not None
        return torch.full((b,), 1.0 / (max(b, 1) * float(max_len)), dtype=torch.float32, device=m.device)
    raise ValueError(f"agg must be one of {AGGS}, got {agg!r}")


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
) -> dict[str, torch.Tensor]:
    """Per-token terms and the analytic gradient ``g = w · d(pg + kl_coef·kl)/dlogp`` (all fp32, same shape).

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
    return {
        "pg": torch.where(valid, pg, zero),
        "kl": torch.where(valid, kl, zero),
        "ratio": torch.where(valid, ratio, zero),
        "nlr": torch.where(valid, -lrc, zero),
        "clip_low": valid & clipped & (a < 0),
        "clip_high": valid & clipped & (a > 0),
        "dual": valid & dual,
        "grad": torch.where(valid, g, zero),
    }


def reduce_terms(
    pg: torch.Tensor,
    kl: torch.Tensor,
    ratio: torch.Tensor,
    nlr: torch.Tensor,
    clip_low: torch.Tensor,
    clip_high: torch.Tensor,
    dual: torch.Tensor,
    valid: torch.Tensor,
    w: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss (0-d fp32) and the metrics vector (fp32, ``METRIC_NAMES`` order) from per-token terms.

    Masked tokens must already hold zeros. Fractions and means are over the tokens in the mask (0 when none).
    """
    vf = valid.to(torch.float32)
    n = vf.sum()
    inv_n = 1.0 / n.clamp(min=1.0)
    pg_loss = (w * pg).sum()
    kl_loss = (w * kl).sum()
    loss = pg_loss + kl_coef * kl_loss if kl_coef != 0.0 else pg_loss
    low = clip_low.to(torch.float32).sum() * inv_n
    high = clip_high.to(torch.float32).sum() * inv_n
    ratio_max = ratio.max() if ratio.numel() else torch.zeros((), device=ratio.device)
    metrics = torch.stack(
        [
            pg_loss,
            kl_loss,
            nlr.sum() * inv_n,
            kl.sum() * inv_n,
            ratio.sum() * inv_n,
            ratio_max.to(torch.float32),
            low,
            high,
            low + high,
            dual.to(torch.float32).sum() * inv_n,
            n,
        ]
    )
    return loss, metrics


def metrics_dict(metrics: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split the metrics vector into a dict of detached 0-d tensors (no host sync)."""
    m = metrics.detach()
    return {name: m[i] for i, name in enumerate(METRIC_NAMES)}


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
    """The oracle: verl-style formula differentiated by autograd (fp32). Returns (loss, metrics dict)."""
    check_loss_args(
        "grpo_loss_reference",
        old_logp,
        advantages,
        mask,
        ref_logp,
        eps_low,
        eps_high,
        kl_coef,
        agg,
        dual_clip,
        max_len,
    )
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
    s = sequence_scale(mask, agg, max_len)[:, None]
    zero = torch.zeros_like(lp)
    w = torch.where(valid, s.expand_as(lp), zero)
    pg_m = torch.where(valid, pg_losses, zero)
    kl_m = torch.where(valid, kld, zero)
    pg_loss = (pg_m * w).sum()
    kl_loss = (kl_m * w).sum()
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


def grpo_loss_cpu(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None,
    eps_low: float,
    eps_high: float,
    kl_coef: float,
    dual_clip: float | None,
    agg: str,
    max_len: float | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, metrics vector, dloss/dlogp fp32 [B, L]) with the analytic gradient: the ops' CPU path."""
    valid = mask != 0
    s = sequence_scale(mask, agg, max_len)
    w = s[:, None].expand(valid.shape)
    adv = advantages[:, None] if advantages.dim() == 1 else advantages
    t = grpo_token_terms(logp, old_logp, adv, valid, ref_logp, w, eps_low, eps_high, kl_coef, dual_clip)
    loss, metrics = reduce_terms(
        t["pg"], t["kl"], t["ratio"], t["nlr"], t["clip_low"], t["clip_high"], t["dual"], valid, w, kl_coef
    )
    return loss, metrics, t["grad"]
