"""``ops.token_logprobs``: log softmax(logits / T)[target] (and optionally the entropy), differentiable.

Registered as torch.library custom ops (``microcoder_fast::token_logprobs_fwd`` / ``_bwd`` /
``_bwd_inplace``) with autograd and fake kernels, so ``torch.compile(fullgraph=True)`` traces through them.
CUDA tensors run the Triton kernels in ``microcoder_fast.kernels.token_logprobs``; CPU tensors run the torch
reference a bounded chunk of rows at a time (never a [tokens, vocab] fp32 buffer).

Imports torch, ``kernels``, ``reference`` and the other ``ops`` helpers; never ``rl``, ``data`` or the
executor.
"""

from __future__ import annotations

from typing import Any

import torch

from microcoder_fast.ops import _dispatch
from microcoder_fast.reference import token_logprobs as _ref

__all__ = ["token_logprobs"]


def _lead_shape(logits: torch.Tensor) -> tuple[int, ...]:
    return tuple(logits.shape[:-1])


@torch.library.custom_op("microcoder_fast::token_logprobs_fwd", mutates_args=())
def _fwd(
    logits: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
    return_entropy: bool,
    check_target: bool,
    inplace_backward: bool,
    ignore_index: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lead = _lead_shape(logits)
    flat_target = target.reshape(-1).contiguous()
    k = _dispatch.forward_kernels(
        "token_logprobs", logits.device, target, logits.shape[-1], check_target, ignore_index
    )
    logits3 = _dispatch.rows3d(logits)
    if k is not None:
        logp, lse, ent = k.token_logprobs_fwd(
            logits3, flat_target, 1.0 / temperature, return_entropy, ignore_index=ignore_index
        )
    else:
        ignored = _dispatch.ignored_rows(flat_target, ignore_index)
        if ignored is not None:
            flat_target = flat_target.masked_fill(ignored, 0)
        logp, lse, ent = _ref.token_logprobs_forward_chunked(logits3, flat_target, temperature, return_entropy)
        if ignored is not None:
            logp.masked_fill_(ignored, 0.0)
            if return_entropy:
                ent.masked_fill_(ignored, 0.0)
    return logp.view(lead), lse.view(lead), (ent.view(lead) if return_entropy else ent)


@_fwd.register_fake
def _fwd_fake(
    logits: torch.Tensor, target: torch.Tensor, temperature: float, return_entropy: bool, *flags: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lead = _lead_shape(logits)
    logp = logits.new_empty(lead, dtype=torch.float32)
    lse = logits.new_empty(lead, dtype=torch.float32)
    ent = logits.new_empty(lead if return_entropy else (0,), dtype=torch.float32)
    return logp, lse, ent


def _backward_into(
    logits: torch.Tensor,
    grad: torch.Tensor,
    target: torch.Tensor,
    lse: torch.Tensor,
    ent: torch.Tensor | None,
    g_logp: torch.Tensor | None,
    g_ent: torch.Tensor | None,
    temperature: float,
    ignore_index: int | None,
) -> None:
    logits3 = _dispatch.rows3d(logits)
    # The kernels index logits and gradient rows with the same (B, L) split.
    copied = False
    if grad is logits:
        grad3 = logits3
        copied = logits3.numel() > 0 and not _shares_storage(logits3, logits)  # layout with no [B, L, V] view
    elif grad.is_contiguous():
        grad3 = grad.view(logits3.shape)
    else:
        grad3 = torch.empty(logits3.shape, dtype=grad.dtype, device=grad.device)
        copied = True
    flat_target = target.reshape(-1).contiguous()
    flat = lambda t: None if t is None else t.reshape(-1).float().contiguous()
    lse_f, ent_f, gl, ge = flat(lse), flat(ent), flat(g_logp), flat(g_ent)
    if _dispatch.use_triton(logits.device):
        k = _dispatch.kernels("token_logprobs")
        k.token_logprobs_bwd(
            logits3, grad3, flat_target, lse_f, ent_f, gl, ge, 1.0 / temperature, ignore_index=ignore_index
        )
    else:
        ignored = _dispatch.ignored_rows(flat_target, ignore_index)
        if ignored is not None:  # no gradient flows into an ignored row
            flat_target = flat_target.masked_fill(ignored, 0)
            gl = None if gl is None else gl.masked_fill(ignored, 0.0)
            ge = None if ge is None else ge.masked_fill(ignored, 0.0)
        _ref.token_logprobs_backward_chunked(logits3, grad3, flat_target, lse_f, ent_f, gl, ge, temperature)
    if copied:
        grad.copy_(grad3.reshape(grad.shape))


def _shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


@torch.library.custom_op("microcoder_fast::token_logprobs_bwd", mutates_args=())
def _bwd(
    logits: torch.Tensor,
    target: torch.Tensor,
    lse: torch.Tensor,
    ent: torch.Tensor | None,
    g_logp: torch.Tensor | None,
    g_ent: torch.Tensor | None,
    temperature: float,
    ignore_index: int | None,
) -> torch.Tensor:
    grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    _backward_into(logits, grad, target, lse, ent, g_logp, g_ent, temperature, ignore_index)
    return grad


@_bwd.register_fake
def _bwd_fake(logits: torch.Tensor, *args: Any) -> torch.Tensor:
    return torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)


@torch.library.custom_op("microcoder_fast::token_logprobs_bwd_inplace", mutates_args=("logits",))
def _bwd_inplace(
    logits: torch.Tensor,
    target: torch.Tensor,
    lse: torch.Tensor,
    ent: torch.Tensor | None,
    g_logp: torch.Tensor | None,
    g_ent: torch.Tensor | None,
    temperature: float,
    ignore_index: int | None,
) -> None:
    _backward_into(logits, logits, target, lse, ent, g_logp, g_ent, temperature, ignore_index)


@_bwd_inplace.register_fake
def _bwd_inplace_fake(logits: torch.Tensor, *args: Any) -> None:
    return None


def _backward(ctx: Any, *saved_and_grads: torch.Tensor | None) -> tuple[torch.Tensor]:
    """(logits, target, lse, ent, g_logp, g_ent) -> (d logits,): a new buffer, or the logits buffer in place."""
    _check_target, inplace_backward, ignore_index = ctx.flags
    if inplace_backward:
        torch.ops.microcoder_fast.token_logprobs_bwd_inplace(*saved_and_grads, ctx.temperature, ignore_index)
        return (saved_and_grads[0],)
    return (torch.ops.microcoder_fast.token_logprobs_bwd(*saved_and_grads, ctx.temperature, ignore_index),)


_dispatch.register_logprob_autograd(_fwd, 1, _backward)


def token_logprobs(
    logits: torch.Tensor,
    target: torch.Tensor,
    temperature: float = 1.0,
    return_entropy: bool = False,
    *,
    inplace_backward: bool = False,
    check_target: bool = True,
    ignore_index: int | None = -100,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Per-token ``log softmax(logits / temperature)[target]`` in fp32, optionally with the entropy.

    Args:
        logits: [..., V] float32 / bfloat16 / float16, any strides (leading dimensions such as
            ``logits[:, :-1]`` are read in place, not copied).
        target: [...] int32 / int64 token ids in [0, V) (same leading shape as ``logits``).
        temperature: runtime scalar > 0 (changing it never recompiles a kernel).
        return_entropy: also return the entropy of softmax(logits / temperature) per token (fp32, nats).
        inplace_backward: write d(logits) into the logits buffer in the backward instead of allocating a new
            one (saves a [..., V] buffer; the logits' values are destroyed, so only use it when nothing else
            needs them afterwards -- e.g. logits that exist only to feed this op). Eager mode only.
        check_target: verify that every target is in [0, V) (a ValueError otherwise). Always on for CPU;
            on CUDA it costs one small reduction and a host sync; turn it off inside CUDA graphs
            (an out-of-range target then yields NaN, never an out-of-bounds read).
        ignore_index: a row whose target equals it gets log-prob 0, entropy 0 and gradient 0 and its logits
            are not read (Liger's and flash-attn's convention; -100 is what HF labels use). ``None``: no
            ignore index (then -100 is an out-of-range target like any other).

    Returns:
        logp [...] fp32 (``<= 0``), or ``(logp, entropy)`` when ``return_entropy``.
    """
    _dispatch.check_float_tensor(logits, "logits")
    target = _dispatch.normalise_target(target)
    if logits.dim() == 0:
        raise ValueError("logits must have a last vocabulary dimension [..., V]; got a 0-d tensor")
    if tuple(target.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"target shape {tuple(target.shape)} must equal logits.shape[:-1] = {tuple(logits.shape[:-1])} "
            "(one token id per logits row)"
        )
    if target.device != logits.device:
        raise ValueError(f"target is on {target.device} but logits are on {logits.device}; move one of them")
    if logits.shape[-1] == 0:
        raise ValueError("logits have an empty vocabulary dimension (V = 0)")
    t = _dispatch.check_temperature(temperature)
    logp, _lse, ent = torch.ops.microcoder_fast.token_logprobs_fwd(
        logits, target, t, bool(return_entropy), bool(check_target), bool(inplace_backward),
        None if ignore_index is None else int(ignore_index),
    )  # fmt: skip
    if return_entropy:
        return logp, ent
    return logp
