"""``ops.fused_grpo_loss``: the GRPO loss straight from logits, d(logits) written in the forward pass.

``dloss/dlogp`` is row-local once the aggregation weights are known from the mask, so one launch computes
``logp = log_softmax(logits / T)[target]`` (fp32), the loss terms and ``d loss / d logits`` (read the logits
twice, write the gradient once). The backward only scales that gradient by the incoming one (skipped on the
device when it is 1). ``inplace_backward=True`` writes the gradient into the logits buffer (no [B, L, V]
allocation; the logits' values are gone afterwards). Triton on CUDA (and on CPU tensors under
``TRITON_INTERPRET=1``), a chunked torch path with bounded memory on CPU.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from microcoder_fast.ops.grpo_loss import unpack_flags
from microcoder_fast.reference.fused_grpo_loss import fused_grpo_loss_chunked
from microcoder_fast.reference.grpo_loss import (
    METRIC_NAMES,
    check_loss_args,
    reduce_terms,
    sequence_scale,
)

__all__ = ["fused_grpo_loss"]

_N_METRICS = len(METRIC_NAMES) + 1  # + entropy_mean


def _use_triton(t: torch.Tensor) -> bool:
    return t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def _opt(x: float) -> float | None:
    return None if x < 0 else x


def _define_op(name: str, inplace: bool) -> Any:
    """The custom op ``microcoder_fast::<name>`` and its fake: (loss, metrics + entropy_mean, [2, B*L]
    logp/entropy rows, grad).

    Two ops share this one signature: ``fused_grpo_loss`` returns the gradient in a new buffer (``grad`` is
    empty when ``compute_grad`` is false); ``fused_grpo_loss_inplace`` writes it over ``logits`` (declared as
    mutated; ``grad`` is then empty, since an output may not alias an input).
    """

    def op(
        logits: torch.Tensor,
        target: torch.Tensor,
        old_logp: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
        ref_logp: torch.Tensor | None,
        temperature: float,
        eps_low: float,
        eps_high: float,
        kl_coef: float,
        dual_clip: float,
        agg: str,
        max_len: float,
        compute_grad: bool,
        compute_entropy: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if inplace:
            grad_buf = logits
        elif compute_grad:
            grad_buf = torch.empty_like(logits, memory_format=torch.contiguous_format)
        else:
            grad_buf = None
        B, L, V = logits.shape
        valid = mask != 0
        bad = valid & ((target < 0) | (target >= V))
        if bool(bad.any()):
            idx = bad.nonzero()[0].tolist()
            raise ValueError(
                f"fused_grpo_loss: target {int(target[idx[0], idx[1]])} at position {tuple(idx)} is outside the "
                f"vocabulary [0, {V}); targets of tokens in the mask must index the logits' last dimension"
            )
        dual = _opt(dual_clip)
        mlen = _opt(max_len)
        if not _use_triton(logits):
            loss, metrics, stats = fused_grpo_loss_chunked(
                logits, target, old_logp, advantages, mask, ref_logp, temperature, eps_low, eps_high, kl_coef,
                dual, agg, mlen, grad_buf, compute_entropy,
            )  # fmt: skip
        else:
            from microcoder_fast.kernels.fused_grpo_loss import fused_grpo_loss_fwd

            scale = sequence_scale(mask, agg, mlen).contiguous()
            n = B * L
            per_token = advantages.dim() == 2
            buf = fused_grpo_loss_fwd(
                logits if logits.stride(-1) == 1 else logits.contiguous(),
                grad_buf,
                target.reshape(-1).contiguous(),
                old_logp.reshape(-1).contiguous().to(torch.float32),
                advantages.reshape(-1).contiguous().to(torch.float32),
                mask.reshape(-1).contiguous(),
                ref_logp.reshape(-1).contiguous().to(torch.float32) if ref_logp is not None else None,
                scale,
                1.0 / temperature,
                eps_low,
                eps_high,
                kl_coef,
                dual,
                compute_entropy,
                per_token,
            )
            flat_valid = valid.reshape(-1)
            w = scale.repeat_interleave(L) if n else scale.new_zeros(0)
            low, high, dl = unpack_flags(buf[4])
            loss, metrics = reduce_terms(*buf[0:4], low, high, dl, flat_valid, w, kl_coef)
            stats = buf[6:8]
        vf = valid.reshape(-1).to(torch.float32)
        ent_mean = (stats[1] * vf).sum() / vf.sum().clamp(min=1.0)
        grad = grad_buf if grad_buf is not None and not inplace else logits.new_empty((0,))
        return loss, torch.cat([metrics, ent_mean.reshape(1)]), stats, grad

    mutates = ("logits",) if inplace else ()
    custom = torch.library.custom_op(f"microcoder_fast::{name}", op, mutates_args=mutates)

    @custom.register_fake
    def _(logits: torch.Tensor, *args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        compute_grad = args[-2]  # (..., compute_grad, compute_entropy)
        n = logits.shape[0] * logits.shape[1]
        return (
            logits.new_empty((), dtype=torch.float32),
            logits.new_empty((_N_METRICS,), dtype=torch.float32),
            logits.new_empty((2, n), dtype=torch.float32),
            logits.new_empty(logits.shape) if compute_grad and not inplace else logits.new_empty((0,)),
        )

    return custom


_fused_op = _define_op("fused_grpo_loss", inplace=False)
_define_op("fused_grpo_loss_inplace", inplace=True)


@torch.library.custom_op("microcoder_fast::scale_grad_", mutates_args=("buf",))
def _scale_grad_(buf: torch.Tensor, scale: torch.Tensor) -> None:
    """``buf *= scale`` (1-element ``scale``); on CUDA skipped on the device when ``scale == 1``."""
    if buf.numel() == 0:
        return
    if _use_triton(buf) and buf.is_contiguous():
        from microcoder_fast.kernels.fused_grpo_loss import scale_inplace

        scale_inplace(buf, scale.to(torch.float32))
    elif buf.is_cuda:
        buf.mul_(scale.to(buf.dtype))
    elif float(scale) != 1.0:  # CPU: reading the scalar costs nothing
        buf.mul_(scale.to(torch.float32)) if buf.dtype == torch.float32 else buf.copy_(buf.float() * scale)


@_scale_grad_.register_fake
def _(buf: torch.Tensor, scale: torch.Tensor) -> None:
    return None


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
    ctx.save_for_backward(output[3])
    # The other outputs (metrics, the saved gradient itself) carry no gradient: without this autograd would
    # materialise zero tensors of their shapes for the backward ([B, L, V] for the gradient output).
    ctx.set_materialize_grads(False)
    ctx.had_grad = inputs[13]


def _backward(ctx: Any, grad_loss: torch.Tensor, *unused: Any) -> tuple:
    (grad,) = ctx.saved_tensors
    if grad_loss is None:
        return (None,) * 15
    if not ctx.had_grad:
        raise RuntimeError(
            "fused_grpo_loss: the forward ran without a gradient (logits did not require grad)"
        )
    torch.ops.microcoder_fast.scale_grad_(grad, grad_loss.reshape(1))
    return (grad,) + (None,) * 14


_fused_op.register_autograd(_backward, setup_context=_setup_context)


class _FusedInplace(torch.autograd.Function):
    """Autograd for the in-place variant: the gradient lives in the (mutated) logits buffer."""

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, *args: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loss, metrics, stats, _ = torch.ops.microcoder_fast.fused_grpo_loss_inplace(logits, *args)
        ctx.grad_buf = logits
        ctx.n_args = len(args)
        ctx.mark_non_differentiable(metrics, stats)
        ctx.set_materialize_grads(False)
        return loss, metrics, stats

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, *unused: Any) -> tuple:
        grad = ctx.grad_buf
        ctx.grad_buf = None
        if grad_loss is None:
            return (None,) * (1 + ctx.n_args)
        torch.ops.microcoder_fast.scale_grad_(grad, grad_loss.reshape(1))
        return (grad,) + (None,) * ctx.n_args


def fused_grpo_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    kl_coef: float = 0.0,
    ref_logp: torch.Tensor | None = None,
    agg: str = "token-mean",
    dual_clip: float | None = None,
    max_len: int | None = None,
    compute_entropy: bool = False,
    inplace_backward: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO loss of ``ops.grpo_loss`` with ``logp = log_softmax(logits / temperature)[target]`` fused in.

    Args:
        logits: [B, L, V] fp32 / bf16 / fp16 (last dimension contiguous; leading strides free). ``-inf``
            entries are fine.
        target: [B, L] int32 / int64 sampled token ids; tokens in the mask must be in ``[0, V)`` (a clear error
            otherwise); masked tokens may hold anything (e.g. -100).
        old_logp, advantages, mask, eps_low, eps_high, kl_coef, ref_logp, agg, dual_clip, max_len: as
            ``ops.grpo_loss`` (``old_logp`` / ``ref_logp`` must be taken at the same temperature).
        temperature: > 0, a runtime value (never recompiles).
        compute_entropy: also report ``entropy_mean`` (masked mean of the entropy of softmax(logits / T)).
        inplace_backward: write d(loss)/d(logits) into the logits buffer instead of a new [B, L, V] buffer.
            The logits' values are overwritten in the forward: use only when nothing else needs them (e.g.
            the output of the LM head); the logits must be contiguous. Saves one [B, L, V] allocation.

    Returns:
        ``(loss, metrics)`` as ``ops.grpo_loss`` (plus ``entropy_mean`` when asked). Differentiable w.r.t.
        ``logits`` only; the gradient is computed in the forward when ``logits.requires_grad`` and grad mode
        is on (then a backward only scales it).
    """
    if logits.dim() != 3:
        raise ValueError(f"fused_grpo_loss: logits must be [B, L, V], got shape {tuple(logits.shape)}")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"fused_grpo_loss: logits must be fp32, bf16 or fp16, got {logits.dtype}")
    B, L, V = logits.shape
    if V == 0:
        raise ValueError("fused_grpo_loss: logits have an empty vocabulary dimension (V = 0)")
    if tuple(target.shape) != (B, L):
        raise ValueError(f"fused_grpo_loss: target must be [B, L]={(B, L)}, got {tuple(target.shape)}")
    if target.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"fused_grpo_loss: target must be int32 or int64 token ids, got {target.dtype}")
    if tuple(mask.shape) != (B, L):
        raise ValueError(f"fused_grpo_loss: mask must be [B, L]={(B, L)}, got {tuple(mask.shape)}")
    check_loss_args(
        "fused_grpo_loss",
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
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"fused_grpo_loss: temperature must be a finite number > 0, got {temperature!r}")
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    compute_grad = torch.is_grad_enabled() and logits.requires_grad
    args = (
        target,
        old_logp.detach(),
        advantages.detach(),
        mask.detach(),
        ref_logp.detach() if ref_logp is not None else None,
        float(temperature),
        float(eps_low),
        float(eps_high),
        float(kl_coef),
        float(dual_clip) if dual_clip is not None else -1.0,
        agg,
        float(max_len) if max_len is not None else -1.0,
    )
    if inplace_backward and compute_grad:
        if not logits.is_contiguous():
            raise ValueError(
                "fused_grpo_loss: inplace_backward needs contiguous logits (the gradient is written over them); "
                "pass logits.contiguous() or inplace_backward=False"
            )
        loss, metrics, _ = _FusedInplace.apply(logits, *args, True, compute_entropy)
    else:
        loss, metrics, _, _ = _fused_op(logits, *args, compute_grad, compute_entropy)
    m = metrics.detach()
    out = {name: m[i] for i, name in enumerate(METRIC_NAMES)}
    if compute_entropy:
        out["entropy_mean"] = m[len(METRIC_NAMES)]
    return loss, out
