"""``ops.grpo_loss``: the GRPO / DAPO / Dr. GRPO policy loss from per-token log-probs (torch.library custom op).

The op returns the loss, a metrics vector and ``dloss/dlogp`` (computed in the forward: the gradient is
row-local once the aggregation weights are known from the mask); the registered autograd formula scales that
saved gradient by the incoming one. Triton on CUDA (and on CPU tensors inside ``_dispatch.triton_interpreter()``),
the torch reference on CPU; the aggregation and the metrics (``ops._loss``) are shared by both paths.

Imports torch, ``kernels``, ``reference`` and the other ``ops`` helpers; never ``rl``, ``data`` or the
executor.
"""

from __future__ import annotations

from typing import Any

import torch

from microcoder_fast.ops import _dispatch, _loss
from microcoder_fast.reference.grpo_loss import grpo_token_terms

__all__ = ["grpo_loss"]


@torch.library.custom_op("microcoder_fast::grpo_loss", mutates_args=())
def _grpo_loss_op(
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
    scale = _loss.sequence_scale(mask, agg, max_len)
    if _dispatch.use_triton(logp.device):
        k = _dispatch.kernels("grpo_loss")
        rows = k.grpo_token_terms_triton(
            logp, old_logp, advantages, mask, ref_logp, scale, eps_low, eps_high, kl_coef, dual_clip
        )
    else:
        adv = advantages[:, None] if advantages.dim() == 1 else advantages
        w = scale[:, None].expand(mask.shape)
        rows = grpo_token_terms(
            logp, old_logp, adv, mask != 0, ref_logp, w, eps_low, eps_high, kl_coef, dual_clip
        ).reshape(_loss.N_TERM_ROWS, -1)
    valid = (mask != 0).reshape(-1)
    loss, metrics = _loss.reduce_token_rows(rows, valid, _loss.token_weights(scale, mask.shape[1]), kl_coef)
    return loss, metrics, rows[_loss.ROW_GRAD].view(mask.shape)


@_grpo_loss_op.register_fake
def _(logp: torch.Tensor, *args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        logp.new_empty((), dtype=torch.float32),
        logp.new_empty((len(_loss.METRIC_NAMES),), dtype=torch.float32),
        logp.new_empty(logp.shape, dtype=torch.float32),
    )


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
    ctx.save_for_backward(output[2])
    # The other outputs (metrics, the saved gradient itself) carry no gradient: without this autograd would
    # materialise zero tensors of their shapes for the backward.
    ctx.set_materialize_grads(False)
    ctx.logp_dtype = inputs[0].dtype
    ctx.n_inputs = len(inputs)


def _backward(ctx: Any, grad_loss: torch.Tensor | None, *unused: torch.Tensor | None) -> tuple:
    """d logp = saved dloss/dlogp x the incoming gradient; no gradient for any other input."""
    (g,) = ctx.saved_tensors
    no_grads = (None,) * (ctx.n_inputs - 1)
    if grad_loss is None:
        return (None, *no_grads)
    return ((g * grad_loss).to(ctx.logp_dtype), *no_grads)


_grpo_loss_op.register_autograd(_backward, setup_context=_setup_context)


def grpo_loss(
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
    entropy: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO policy loss (PPO clip with asymmetric range, optional dual clip and k3 KL), differentiable in logp.

    Args:
        logp: [B, L] log-probs of the sampled tokens under the current policy (at the training temperature).
        old_logp: [B, L] log-probs under the policy that sampled (no gradient).
        advantages: per sequence [B] (broadcast over tokens) or per token [B, L] (no gradient).
        mask: [B, L]; nonzero = the token is in the loss. Fully masked sequences / batches give zero loss and
            zero gradient, never NaN, whatever the masked entries hold.
        eps_low, eps_high: ratio clipped to [1 - eps_low, 1 + eps_high] (DAPO clip-higher: 0.2 / 0.28).
        kl_coef: weight of the k3 KL to ``ref_logp`` (verl's low_var_kl: log-ratio clamped to ±20, KL to ±10).
        agg: ``token-mean`` (DAPO; TRL bnpo/dapo), ``seq-mean-token-mean`` (GRPO; TRL grpo; fully masked
            sequences excluded), ``seq-mean-token-sum``, ``seq-mean-token-sum-norm`` (Dr. GRPO; ÷ (B·max_len),
            TRL dr_grpo and current verl; verl before its batch fix divided by max_len only, i.e. ours × B) or
            ``token-sum``.
        dual_clip: verl's ``clip_ratio_c`` (> 1, e.g. 3.0): for A < 0 the token loss is capped at -A·c. None = off.
        max_len: the length normaliser for ``seq-mean-token-sum-norm`` (required there).
        entropy: optional [B, L] per-token entropies; their masked mean is reported as ``entropy_mean``.

    Returns:
        ``(loss, metrics)``: loss a 0-d fp32 tensor; metrics a dict of detached 0-d fp32 tensors (no host sync):
        ``pg_loss``, ``kl_loss`` (aggregated like the loss), ``ppo_kl`` (masked mean of ``old_logp - logp``
        with the ±20 clamp: verl's ppo_kl), ``kl_mean`` (masked mean of the k3 KL), ``ratio_mean``,
        ``ratio_max``, ``clipfrac_low`` (fraction of tokens with A < 0 and ratio < 1 - eps_low: TRL's
        clip_ratio/low_mean), ``clipfrac_high`` (A > 0 and ratio > 1 + eps_high: TRL's clip_ratio/high_mean),
        ``pg_clipfrac`` (tokens where the clipped term is the active one: verl's pg_clipfrac = low + high),
        ``pg_clipfrac_lower`` (A < 0 tokens capped by the dual clip: verl's pg_clipfrac_lower), ``num_tokens``
        and, when ``entropy`` is given, ``entropy_mean``.
    """
    if logp.dim() != 2:
        raise ValueError(f"grpo_loss: logp must be [B, L], got shape {tuple(logp.shape)}")
    if not logp.is_floating_point():
        raise TypeError(f"grpo_loss: logp must be floating, got {logp.dtype}")
    _loss.check_loss_args(
        "grpo_loss", tuple(logp.shape), "logp", old_logp, advantages, mask, ref_logp, eps_low, eps_high, kl_coef,
        agg, dual_clip, max_len,
    )  # fmt: skip
    loss, metrics, _ = _grpo_loss_op(
        logp,
        old_logp.detach(),
        advantages.detach(),
        mask.detach(),
        ref_logp.detach() if ref_logp is not None else None,
        float(eps_low),
        float(eps_high),
        float(kl_coef),
        None if dual_clip is None else float(dual_clip),
        agg,
        None if max_len is None else float(max_len),
    )
    out = _loss.metrics_dict(metrics)
    if entropy is not None:
        if tuple(entropy.shape) != tuple(mask.shape):
            raise ValueError(f"grpo_loss: entropy must have the mask's shape {tuple(mask.shape)}")
        valid = mask != 0
        e = torch.where(valid, entropy.detach().to(torch.float32), 0.0)
        out["entropy_mean"] = e.sum() / valid.sum().clamp(min=1).to(torch.float32)
    return loss, out
