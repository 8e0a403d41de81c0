"""``ops.linear_grpo_loss``: the GRPO loss straight from the last hidden states and the lm_head weight, with
exactly three GEMMs and no [N, V] logits for the whole batch.

The GRPO loss's ``d loss / d logp`` is row-local once the aggregation weights are known from the mask, so
d(logits) can be computed in the forward, as Liger's fused linear cross-entropy does for its loss. Per chunk of
``chunk_tokens`` tokens:

1. ``z = h_chunk @ W.T`` (GEMM 1, cuBLAS, the input dtype, fp32 accumulation) into one reused [chunk, V] buffer;
2. the fused GRPO-loss kernel (``kernels/fused_grpo_loss.py``, the same launch ``ops.fused_grpo_loss`` uses)
   reads ``z`` twice and writes ``d loss / d z`` over it (the chunked torch path on CPU);
3. ``d h_chunk = dz @ W`` (GEMM 2) and ``d W += dz.T @ h_chunk`` (GEMM 3, fp32 accumulator when there is more
   than one chunk).

Forward and backward together: three GEMMs (the forward computes the gradients; the backward only scales them
by the incoming gradient, skipped on the device when it is 1, and ``loss_scale`` folds that scale into the
forward). A frozen weight (or hidden states without grad) skips its GEMM. Extra memory: one [chunk, V] buffer
in the input dtype, the fp32 [V, D] accumulator when ``N > chunk_tokens`` and the weight needs a gradient, and
O(N) per-token rows. Triton for the row part on CUDA (and under ``_dispatch.triton_interpreter()``), the torch
reference on CPU; the aggregation and metrics are ``ops._loss``'s, as for the other loss ops.

The chunk size is a constant per device (never a function of N), so a token's results do not depend on the
batch it is in.

Imports torch, ``ops._dispatch`` / ``ops._loss``, the fused op module (for its ``scale_grad_`` op) and the
reference; never ``rl``, the executor or a trainer.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from microcoder_fast.ops import _dispatch, _loss
from microcoder_fast.ops import fused_grpo_loss as _fused  # noqa: F401 (registers microcoder_fast::scale_grad_)
from microcoder_fast.reference.fused_grpo_loss import fused_grpo_loss_chunked

__all__ = ["linear_grpo_loss"]

CUDA_CHUNK_TOKENS = 4096  # 1.2 GB of bf16 logits at V = 151,936
CPU_CHUNK_TOKENS = 256
_EXTRA_METRICS = ("entropy_mean",)
_ROW_ENT = 7

_ARGS = (
    "hidden", "weight", "target", "old_logp", "advantages", "mask", "ref_logp", "temperature", "eps_low",
    "eps_high", "kl_coef", "dual_clip", "agg", "max_len", "loss_scale", "check_target", "need_h", "need_w",
    "compute_entropy", "chunk_tokens",
)  # fmt: skip
_NO_GRADS = (None,) * (len(_ARGS) - 2)


@torch.library.custom_op("microcoder_fast::linear_grpo_loss", mutates_args=())
def _op(
    hidden: torch.Tensor,
    weight: torch.Tensor,
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
    need_h: bool,
    need_w: bool,
    compute_entropy: bool,
    chunk_tokens: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, metrics + entropy_mean, d hidden [B, L, D] or [0], d weight [V, D] or [0]) of loss_scale * loss."""
    B, L, D = hidden.shape
    V = weight.shape[0]
    N = B * L
    dev = hidden.device
    use_triton = _dispatch.use_triton(dev)
    if check_target or not use_triton:  # the CPU path gathers with the targets: always checked there
        _loss.check_loss_targets("linear_grpo_loss", target, mask, V)
    scale = _loss.sequence_scale(mask, agg, max_len)
    w_tok = _loss.token_weights(scale * loss_scale if loss_scale != 1.0 else scale, L).contiguous()
    h2 = hidden.reshape(N, D)
    tgt = target.reshape(-1).contiguous()
    old = old_logp.reshape(-1).to(torch.float32).contiguous()
    adv = (advantages[:, None].expand(B, L) if advantages.dim() == 1 else advantages).reshape(-1)
    adv = adv.to(torch.float32).contiguous()
    m = mask.reshape(-1).contiguous()
    ref = ref_logp.reshape(-1).to(torch.float32).contiguous() if ref_logp is not None else None
    grad_h = torch.empty(B, L, D, dtype=hidden.dtype, device=dev) if need_h else hidden.new_empty(0)
    gh2 = grad_h.view(N, D) if need_h else None
    one_chunk = N <= chunk_tokens
    grad_w = torch.empty_like(weight) if need_w else weight.new_empty(0)
    acc_w = torch.zeros(V, D, dtype=torch.float32, device=dev) if need_w and not one_chunk else None
    rows = torch.empty(8, N, dtype=torch.float32, device=dev)
    z_buf = torch.empty(min(N, chunk_tokens) * V, dtype=hidden.dtype, device=dev) if N else None
    k = _dispatch.kernels("fused_grpo_loss") if use_triton else None
    for n0 in range(0, N, chunk_tokens):
        n1 = min(N, n0 + chunk_tokens)
        n = n1 - n0
        z = z_buf[: n * V].view(n, V)
        torch.mm(h2[n0:n1], weight.T, out=z)  # GEMM 1
        z3 = z.view(n, 1, V)  # one token per "sequence": the kernel indexes weights and advantages per token
        grad_out = z3 if (need_h or need_w) else None  # d loss / d z written over z
        sl = slice(n0, n1)
        if k is not None:
            rows[:, sl] = k.fused_grpo_loss_fwd(
                z3, grad_out, tgt[sl], old[sl], adv[sl], m[sl], ref[sl] if ref is not None else None, w_tok[sl],
                1.0 / temperature, eps_low, eps_high, kl_coef, dual_clip, compute_entropy, True,
            )  # fmt: skip
        else:
            col = lambda t: t[sl].view(n, 1)  # noqa: E731
            rows[:, sl] = fused_grpo_loss_chunked(
                z3, col(tgt), col(old), col(adv), col(m), col(ref) if ref is not None else None, w_tok[sl],
                temperature, eps_low, eps_high, kl_coef, dual_clip, grad_out, compute_entropy,
            )  # fmt: skip
        if need_h:
            torch.mm(z, weight, out=gh2[n0:n1])  # GEMM 2
        if need_w:
            if one_chunk:
                torch.mm(z.T, h2[n0:n1], out=grad_w)  # GEMM 3
            else:
                _dispatch.addmm_f32(acc_w, z.T, h2[n0:n1])  # GEMM 3, accumulated over the chunks in fp32
    if acc_w is not None:
        grad_w.copy_(acc_w)
    valid = m != 0
    loss, metrics = _loss.reduce_token_rows(rows, valid, _loss.token_weights(scale, L), kl_coef)
    if loss_scale != 1.0:
        loss = loss * loss_scale
    vf = valid.to(torch.float32)
    ent_mean = (rows[_ROW_ENT] * vf).sum() / vf.sum().clamp(min=1.0)
    return loss, torch.cat([metrics, ent_mean.reshape(1)]), grad_h, grad_w


@_op.register_fake
def _(hidden: torch.Tensor, weight: torch.Tensor, *args: Any) -> tuple[torch.Tensor, ...]:
    need_h = args[_ARGS.index("need_h") - 2]
    need_w = args[_ARGS.index("need_w") - 2]
    return (
        hidden.new_empty((), dtype=torch.float32),
        hidden.new_empty((len(_loss.METRIC_NAMES) + len(_EXTRA_METRICS),), dtype=torch.float32),
        torch.empty_like(hidden) if need_h else hidden.new_empty(0),
        torch.empty_like(weight) if need_w else weight.new_empty(0),
    )


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
    ctx.save_for_backward(output[2], output[3])
    ctx.set_materialize_grads(False)
    ctx.need = (inputs[_ARGS.index("need_h")], inputs[_ARGS.index("need_w")])


def _backward(ctx: Any, grad_loss: torch.Tensor | None, *unused: Any) -> tuple:
    gh, gw = ctx.saved_tensors
    need_h, need_w = ctx.need
    if grad_loss is None:
        return (None, None, *_NO_GRADS)
    for g, needed in ((gh, need_h), (gw, need_w)):
        if needed:
            torch.ops.microcoder_fast.scale_grad_(g, grad_loss.reshape(1))  # skipped on the device when 1
    return (gh if need_h else None, gw if need_w else None, *_NO_GRADS)


_op.register_autograd(_backward, setup_context=_setup_context)


def linear_grpo_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
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
    *,
    loss_scale: float = 1.0,
    check_target: bool = True,
    ignore_index: int | None = -100,
    chunk_tokens: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``ops.fused_grpo_loss`` with the logits ``hidden @ weight.T`` fused in: three GEMMs, no [N, V] logits.

    Args:
        hidden: [B, L, D] fp32 / bf16 / fp16 last hidden states (before the lm_head).
        weight: [V, D] lm_head weight (same dtype; no bias). Frozen (``requires_grad=False``): no d weight GEMM.
        target, old_logp, advantages, mask, temperature, eps_low, eps_high, kl_coef, ref_logp, agg, dual_clip,
            max_len, compute_entropy, loss_scale, check_target, ignore_index: as ``ops.fused_grpo_loss``.
        chunk_tokens: tokens per logits chunk (default 4096 on CUDA: 1.2 GB of bf16 logits at V = 151,936;
            256 on CPU). A constant, so results never depend on the batch size.

    Returns:
        ``(loss, metrics)`` as ``ops.fused_grpo_loss``. Differentiable w.r.t. ``hidden`` and ``weight``; both
        gradients are computed in the forward when they are needed (grad mode on and ``requires_grad``).
    """
    name = "linear_grpo_loss"
    if hidden.dim() != 3:
        raise ValueError(f"{name}: hidden must be [B, L, D], got shape {tuple(hidden.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[2]:
        raise ValueError(f"{name}: weight must be [V, D] with D = hidden.shape[-1] = {hidden.shape[2]}, got "
                         f"{tuple(weight.shape)}")  # fmt: skip
    for label, t in (("hidden", hidden), ("weight", weight)):
        _dispatch.check_float_tensor(t, f"{name}: {label}")
    if hidden.dtype != weight.dtype:
        raise TypeError(f"{name}: hidden ({hidden.dtype}) and weight ({weight.dtype}) must share a dtype; cast one")
    B, L, _ = hidden.shape
    V = weight.shape[0]
    if V == 0:
        raise ValueError(f"{name}: weight has an empty vocabulary dimension (V = 0)")
    if tuple(target.shape) != (B, L):
        raise ValueError(f"{name}: target must be hidden's [B, L]={(B, L)}, got {tuple(target.shape)}")
    if target.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name}: target must be int32 or int64 token ids, got {target.dtype}")
    _loss.check_loss_args(
        name, (B, L), "hidden", old_logp, advantages, mask, ref_logp, eps_low, eps_high, kl_coef, agg,
        dual_clip, max_len,
    )  # fmt: skip
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"{name}: temperature must be a finite number > 0, got {temperature!r}")
    if isinstance(loss_scale, torch.Tensor) or not math.isfinite(loss_scale):
        raise ValueError(f"{name}: loss_scale must be a finite Python float, got {loss_scale!r}")
    chunk = chunk_tokens or (CUDA_CHUNK_TOKENS if hidden.is_cuda else CPU_CHUNK_TOKENS)
    if chunk < 1:
        raise ValueError(f"{name}: chunk_tokens must be >= 1, got {chunk_tokens!r}")
    if ignore_index is not None:
        mask = (mask.detach() != 0) & (target != ignore_index)
    grad_on = torch.is_grad_enabled()
    need_h = grad_on and hidden.requires_grad
    need_w = grad_on and weight.requires_grad
    h = hidden if hidden.stride(-1) == 1 else hidden.contiguous()
    w = weight if weight.stride(-1) == 1 else weight.contiguous()
    loss, metrics, _gh, _gw = _op(
        h, w, target, old_logp.detach(), advantages.detach(), mask.detach(),
        ref_logp.detach() if ref_logp is not None else None, float(temperature), float(eps_low), float(eps_high),
        float(kl_coef), None if dual_clip is None else float(dual_clip), agg,
        None if max_len is None else float(max_len), float(loss_scale), bool(check_target), need_h, need_w,
        bool(compute_entropy), int(chunk),
    )  # fmt: skip
    out = _loss.metrics_dict(metrics, _EXTRA_METRICS)
    if not compute_entropy:
        del out["entropy_mean"]
    return loss, out
