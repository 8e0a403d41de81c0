"""The GRPO-loss bookkeeping shared by ``ops.grpo_loss`` and ``ops.fused_grpo_loss`` on every device.

- ``check_loss_args``, ``check_loss_targets``: one clear error for each argument a caller can get wrong;
- ``sequence_scale``: the per-sequence aggregation weights (token-mean, seq-mean-token-mean, ...);
- ``reduce_token_rows``: the loss and the metrics vector (``METRIC_NAMES`` order) from the per-token rows that
  the Triton kernels and the CPU reference both write (pg, kl, ratio, -log-ratio, packed clip flags);
- ``metrics_dict``: that vector as a dict of 0-d tensors (no host sync).

Runs on CUDA and CPU alike (a few torch reductions; deterministic, no atomics). Imports torch only: never the
kernels, the reference or another op module.
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

# Rows of the per-token buffer both paths write (kernels/grpo_loss.py, reference/grpo_loss.py).
ROW_PG, ROW_KL, ROW_RATIO, ROW_NLR, ROW_FLAGS, ROW_GRAD = range(6)
N_TERM_ROWS = 6


def check_loss_args(
    name: str,
    shape: tuple[int, int],
    shape_of: str,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None,
    eps_low: float,
    eps_high: float,
    kl_coef: float,
    agg: str,
    dual_clip: float | None,
    max_len: float | None,
) -> None:
    """Clear errors for every argument a caller can get wrong. ``shape`` is the [B, L] that ``shape_of`` (the
    op's main input: ``"logp"``, ``"logits"``, ``"hidden"``) fixes; every other [B, L] input is checked against it, the mask first."""
    bl = tuple(shape)
    if tuple(mask.shape) != bl:
        raise ValueError(
            f"{name}: mask must be [B, L]={bl}, the [B, L] of {shape_of} (1 = token in the loss), got "
            f"{tuple(mask.shape)}"
        )
    if tuple(old_logp.shape) != bl:
        raise ValueError(f"{name}: old_logp must be [B, L]={bl}, the [B, L] of {shape_of}, got {tuple(old_logp.shape)}")
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
        raise ValueError(f"{name}: ref_logp must be [B, L]={bl}, the [B, L] of {shape_of}, got {tuple(ref_logp.shape)}")
    if kl_coef != 0.0 and ref_logp is None:
        raise ValueError(f"{name}: kl_coef={kl_coef} needs ref_logp (the reference policy's log-probs [B, L])")
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


def check_loss_targets(name: str, target: torch.Tensor, mask: torch.Tensor, V: int) -> None:
    """A clear ValueError for a target in the mask outside [0, V) (one reduction; a host sync on CUDA)."""
    bad = (mask != 0) & ((target < 0) | (target >= V))
    if bool(bad.any()):
        idx = bad.nonzero()[0].tolist()
        raise ValueError(
            f"{name}: target {int(target[idx[0], idx[1]])} at position {tuple(idx)} is outside the "
            f"vocabulary [0, {V}); targets of tokens in the mask must index the vocabulary (or equal ignore_index)"
        )


def sequence_scale(mask: torch.Tensor, agg: str, max_len: float | None) -> torch.Tensor:
    """Per-sequence weight s [B] (fp32, contiguous) such that the loss is ``Σ_{b,t} mask·s_b·loss_{b,t}``.

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


def unpack_flags(flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split the packed per-token flag row (1 clip-low, 2 clip-high, 4 dual) into three bool tensors."""
    f = flags.to(torch.int32)
    return (f & 1) != 0, (f & 2) != 0, (f & 4) != 0


def reduce_token_rows(
    rows: torch.Tensor, valid: torch.Tensor, w: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss (0-d fp32) and the metrics vector (fp32, ``METRIC_NAMES`` order) from the per-token rows.

    ``rows`` [>= 5, N] fp32 (pg, kl, ratio, -clamped log-ratio, packed flags, ...), masked tokens holding zeros;
    ``valid`` [N] bool; ``w`` [N] the aggregation weight of each token. Fractions and means are over the tokens
    in the mask (0 when there are none).
    """
    pg, kl, ratio, nlr = rows[ROW_PG], rows[ROW_KL], rows[ROW_RATIO], rows[ROW_NLR]
    clip_low, clip_high, dual = unpack_flags(rows[ROW_FLAGS])
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


def token_weights(scale: torch.Tensor, L: int) -> torch.Tensor:
    """The per-token weight [B*L] from the per-sequence ``scale`` [B]."""
    return scale.repeat_interleave(L) if scale.numel() and L else scale.new_zeros(0)


def metrics_dict(metrics: torch.Tensor, extra: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Split the metrics vector (``METRIC_NAMES`` then ``extra``) into a dict of detached 0-d tensors."""
    m = metrics.detach()
    return {name: m[i] for i, name in enumerate(METRIC_NAMES + extra)}
