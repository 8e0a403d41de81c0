"""``ops.fused_grpo_loss``: the GRPO loss straight from logits, d(logits) written in the forward pass.

``dloss/dlogp`` is row-local once the aggregation weights are known from the mask, so one launch computes
``logp = log_softmax(logits / T)[target]`` (fp32), the loss terms and ``d loss / d logits`` (read the logits
twice, write the gradient once). The backward only scales that gradient by the incoming one (skipped on the
device when it is 1). ``inplace_backward=True`` writes the gradient into the logits buffer (no [B, L, V]
allocation; the logits' values are gone afterwards). ``loss_scale`` is folded into the gradient written in the
forward. Triton on CUDA (and on CPU tensors inside ``_dispatch.triton_interpreter()``), a chunked torch path
with bounded memory on CPU; the aggregation and metrics (``ops._loss``) are shared by both.

Imports torch, ``kernels``, ``reference`` and the other ``ops`` helpers; never ``rl``, ``data`` or the
executor.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from microcoder_fast.ops import _dispatch, _loss
from microcoder_fast.reference.fused_grpo_loss import fused_grpo_loss_chunked

__all__ = ["fused_grpo_loss"]

_EXTRA_METRICS = ("entropy_mean",)
_ROW_LOGP, _ROW_ENT = 6, 7  # rows of the per-token buffer after the loss terms

# The custom op's arguments, in order (autograd's setup_context and backward address them by name).
_ARGS = (
    "logits", "target", "old_logp", "advantages", "mask", "ref_logp", "temperature", "eps_low", "eps_high",
    "kl_coef", "dual_clip", "agg", "max_len", "loss_scale", "check_target", "compute_grad", "compute_entropy",
)  # fmt: skip
_NO_GRADS = (None,) * (len(_ARGS) - 1)


def _define_op(name: str, inplace: bool) -> Any:
    """The custom op ``microcoder_fast::<name>`` and its fake: (loss, metrics + entropy_mean, [2, B*L]
    logp/entropy rows, grad).

    Two ops share this one signature: ``fused_grpo_loss`` returns the gradient in a new buffer (``grad`` is
    empty when ``compute_grad`` is false); ``fused_grpo_loss_inplace`` writes it over ``logits`` (declared as
    mutated; ``grad`` is then empty, since an output may not alias an input). The gradient written is that of
    ``loss_scale * loss``, which is also the loss returned (the metrics are never scaled). ``mask`` already
    excludes the ignore-index rows.
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
        dual_clip: float | None,
        agg: str,
        max_len: float | None,
        loss_scale: float,
        check_target: bool,
        compute_grad: bool,
        compute_entropy: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        B, L, V = logits.shape
        use_triton = _dispatch.use_triton(logits.device)
        if check_target or not use_triton:  # the CPU path gathers with the targets: always checked there
            _loss.check_loss_targets("fused_grpo_loss", target, mask, V)
        if inplace:
            grad_buf = logits
        elif compute_grad:
            grad_buf = torch.empty_like(logits, memory_format=torch.contiguous_format)
        else:
            grad_buf = None
        scale = _loss.sequence_scale(mask, agg, max_len)
        # The gradient of loss_scale * loss is written: the scale rides on the per-sequence weights the kernel
        # multiplies d loss / d logp by (no extra pass over [B, L, V]).
        grad_scale = scale * loss_scale if loss_scale != 1.0 else scale
        if use_triton:
            k = _dispatch.kernels("fused_grpo_loss")
            rows = k.fused_grpo_loss_fwd(
                logits,
                grad_buf,
                target.reshape(-1).contiguous(),
                old_logp.reshape(-1).contiguous().to(torch.float32),
                advantages.reshape(-1).contiguous().to(torch.float32),
                mask.reshape(-1).contiguous(),
                ref_logp.reshape(-1).contiguous().to(torch.float32) if ref_logp is not None else None,
                grad_scale.contiguous(),
                1.0 / temperature,
                eps_low,
                eps_high,
                kl_coef,
                dual_clip,
                compute_entropy,
                advantages.dim() == 2,
            )
        else:
            rows = fused_grpo_loss_chunked(
                logits, target, old_logp, advantages, mask, ref_logp, grad_scale, temperature, eps_low, eps_high,
                kl_coef, dual_clip, grad_buf, compute_entropy,
            )  # fmt: skip
        valid = (mask != 0).reshape(-1)
        loss, metrics = _loss.reduce_token_rows(rows, valid, _loss.token_weights(scale, L), kl_coef)
        if loss_scale != 1.0:
            loss = loss * loss_scale
        vf = valid.to(torch.float32)
        ent_mean = (rows[_ROW_ENT] * vf).sum() / vf.sum().clamp(min=1.0)
        grad = grad_buf if grad_buf is not None and not inplace else logits.new_empty((0,))
        return loss, torch.cat([metrics, ent_mean.reshape(1)]), rows[_ROW_LOGP : _ROW_ENT + 1], grad

    mutates = ("logits",) if inplace else ()
    custom = torch.library.custom_op(f"microcoder_fast::{name}", op, mutates_args=mutates)

    @custom.register_fake
    def _(logits: torch.Tensor, *args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        compute_grad = args[_ARGS.index("compute_grad") - 1]
        n = logits.shape[0] * logits.shape[1]
        return (
            logits.new_empty((), dtype=torch.float32),
            logits.new_empty((len(_loss.METRIC_NAMES) + len(_EXTRA_METRICS),), dtype=torch.float32),
            logits.new_empty((2, n), dtype=torch.float32),
            logits.new_empty(logits.shape) if compute_grad and not inplace else logits.new_empty((0,)),
        )

    return custom


_fused_op = _define_op("fused_grpo_loss", inplace=False)
_define_op("fused_grpo_loss_inplace", inplace=True)


@torch.library.custom_op("microcoder_fast::scale_grad_", mutates_args=("buf",))
def _scale_grad_(buf: torch.Tensor, scale: torch.Tensor) -> None:
    """``buf *= scale`` (1-element ``scale``); on the Triton path skipped on the device when ``scale == 1``."""
    if buf.numel() == 0:
        return
    if _dispatch.use_triton(buf.device) and buf.is_contiguous():
        _dispatch.kernels("fused_grpo_loss").scale_inplace(buf, scale.to(torch.float32))
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
    ctx.had_grad = inputs[_ARGS.index("compute_grad")]


def _backward(ctx: Any, grad_loss: torch.Tensor | None, *unused: Any) -> tuple:
    (grad,) = ctx.saved_tensors
    if grad_loss is None:
        return (None, *_NO_GRADS)
    if not ctx.had_grad:
        raise RuntimeError("fused_grpo_loss: the forward ran without a gradient (logits did not require grad)")
    torch.ops.microcoder_fast.scale_grad_(grad, grad_loss.reshape(1))
    return (grad, *_NO_GRADS)


_fused_op.register_autograd(_backward, setup_context=_setup_context)


class _FusedInplace(torch.autograd.Function):
    """Autograd for the in-place variant: the gradient lives in the (mutated) logits buffer."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, *args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loss, metrics, stats, _ = torch.ops.microcoder_fast.fused_grpo_loss_inplace(logits, *args)
        ctx.grad_buf = logits
        ctx.mark_non_differentiable(metrics, stats)
        ctx.set_materialize_grads(False)
        return loss, metrics, stats

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor | None, *unused: Any) -> tuple:
        grad = ctx.grad_buf
        ctx.grad_buf = None
        if grad_loss is None:
            return (None, *_NO_GRADS)
        torch.ops.microcoder_fast.scale_grad_(grad, grad_loss.reshape(1))
        return (grad, *_NO_GRADS)


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
    *,
    loss_scale: float = 1.0,
    check_target: bool = True,
    ignore_index: int | None = -100,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO loss of ``ops.grpo_loss`` with ``logp = log_softmax(logits / temperature)[target]`` fused in.

    Args:
        logits: [B, L, V] fp32 / bf16 / fp16 (last dimension contiguous; leading strides free). ``-inf``
            entries are fine.
        target: [B, L] int32 / int64 sampled token ids; tokens in the mask must be in ``[0, V)`` (a clear error
            otherwise) or equal ``ignore_index``; masked tokens may hold anything.
        old_logp, advantages, mask, eps_low, eps_high, kl_coef, ref_logp, agg, dual_clip, max_len: as
            ``ops.grpo_loss`` (``old_logp`` / ``ref_logp`` must be taken at the same temperature).
        temperature: > 0, a runtime value (never recompiles).
        compute_entropy: also report ``entropy_mean`` (masked mean of the entropy of softmax(logits / T)).
        inplace_backward: write d(loss)/d(logits) into the logits buffer instead of a new [B, L, V] buffer.
            The logits' values are overwritten in the forward: use only when nothing else needs them (e.g.
            the output of the LM head); the logits must be contiguous. Saves one [B, L, V] allocation.
        loss_scale: the returned loss is ``loss_scale * loss`` and the gradient written in the forward is that
            of the scaled loss (e.g. ``1 / gradient_accumulation_steps``). ``loss.backward()`` then costs
            nothing, where ``(loss / k).backward()`` costs one more read and write of [B, L, V]. The metrics
            are never scaled. A runtime value (never recompiles).
        check_target: verify that every target in the mask is in ``[0, V)`` or ``ignore_index`` (one reduction
            and a host sync). Turn it off inside CUDA graphs; an out-of-range target then gives a NaN loss and
            gradient row, never an out-of-bounds read.
        ignore_index: a token whose target equals it is left out of the loss as if its mask were 0 (log-prob,
            loss and gradient 0; not counted in ``num_tokens``), as in Liger's and flash-attn's cross-entropy.
            ``None``: no ignore index.

    Returns:
        ``(loss, metrics)`` as ``ops.grpo_loss`` (plus ``entropy_mean`` when asked). Differentiable w.r.t.
        ``logits`` only; the gradient is computed in the forward when ``logits.requires_grad`` and grad mode
        is on (then a backward only scales it, and not at all when the incoming gradient is 1).
    """
    if logits.dim() != 3:
        raise ValueError(f"fused_grpo_loss: logits must be [B, L, V], got shape {tuple(logits.shape)}")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"fused_grpo_loss: logits must be fp32, bf16 or fp16, got {logits.dtype}")
    B, L, V = logits.shape
    if V == 0:
        raise ValueError("fused_grpo_loss: logits have an empty vocabulary dimension (V = 0)")
    if tuple(target.shape) != (B, L):
        raise ValueError(f"fused_grpo_loss: target must be logits' [B, L]={(B, L)}, got {tuple(target.shape)}")
    if target.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"fused_grpo_loss: target must be int32 or int64 token ids, got {target.dtype}")
    _loss.check_loss_args(
        "fused_grpo_loss", (B, L), "logits", old_logp, advantages, mask, ref_logp, eps_low, eps_high,
        kl_coef, agg, dual_clip, max_len,
    )  # fmt: skip
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"fused_grpo_loss: temperature must be a finite number > 0, got {temperature!r}")
    if isinstance(loss_scale, torch.Tensor) or not math.isfinite(loss_scale):
        raise ValueError(f"fused_grpo_loss: loss_scale must be a finite Python float, got {loss_scale!r}")
    if ignore_index is not None:
        mask = (mask.detach() != 0) & (target != ignore_index)
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
        None if dual_clip is None else float(dual_clip),
        agg,
        None if max_len is None else float(max_len),
        float(loss_scale),
        bool(check_target),
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
    out = _loss.metrics_dict(metrics, _EXTRA_METRICS)
    if not compute_entropy:
        del out["entropy_mean"]
    return loss, out

