"""``ops.linear_token_logprobs``: log softmax(hidden @ weight.T / T)[target] without the [N, V] logits.

Registered as torch.library custom ops (``microcoder_fast::linear_token_logprobs_fwd`` / ``_bwd``) with autograd
and fake kernels (``torch.compile(fullgraph=True)`` traces through them).

- CUDA forward: one fused Triton kernel (``tl.dot`` logits tiles + online log-sum-exp; no logits workspace).
- CUDA backward: a Triton kernel recomputes each [chunk_tokens, chunk_vocab] logits tile and writes d(logits)
  into a fixed workspace (input dtype); cuBLAS GEMMs then accumulate d hidden [N, D] and the current d weight
  slice [chunk_vocab, D] in fp32, in a fixed order (deterministic, no atomics). Extra memory: the workspace,
  the fp32 d-weight slice and O(N) (fp32 row statistics and the fp32 d hidden accumulator).
- CPU: the torch reference with the same tiling (``reference/linear_token_logprobs.py``).

Imports torch, ``kernels``, ``reference`` and the other ``ops`` helpers; never ``rl``, ``data`` or the
executor.
"""

from __future__ import annotations

from typing import Any

import torch

from microcoder_fast.ops import _dispatch
from microcoder_fast.reference import linear_token_logprobs as _ref

__all__ = ["linear_token_logprobs"]

CUDA_CHUNK_TOKENS = 8192
CUDA_CHUNK_VOCAB = 8192


def _cuda_backward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    lse: torch.Tensor,
    ent: torch.Tensor | None,
    g_logp: torch.Tensor | None,
    g_ent: torch.Tensor | None,
    temperature: float,
    need_h: bool = True,
    need_w: bool = True,
    chunk_tokens: int = CUDA_CHUNK_TOKENS,
    chunk_vocab: int = CUDA_CHUNK_VOCAB,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(d hidden, d weight); a gradient that is not needed costs no GEMM and comes back as an empty tensor."""
    k = _dispatch.kernels("linear_token_logprobs")
    N, D = hidden.shape
    V = weight.shape[0]
    dev = hidden.device
    grad_h = torch.zeros(N, D, dtype=torch.float32, device=dev) if need_h else hidden.new_empty(0)
    grad_w = torch.empty_like(weight) if need_w else weight.new_empty(0)
    if not (need_h or need_w):
        return grad_h, grad_w
    nt, nv = min(N, chunk_tokens), min(V, chunk_vocab)
    dz_buf = torch.empty(nt * nv, dtype=hidden.dtype, device=dev)
    acc_w = torch.empty(nv, D, dtype=torch.float32, device=dev) if need_w else None
    tgt = target.long()
    for v0 in range(0, V, chunk_vocab):
        v1 = min(V, v0 + chunk_vocab)
        w = weight[v0:v1]
        aw = acc_w[: v1 - v0].zero_() if acc_w is not None else None
        for n0 in range(0, N, chunk_tokens):
            n1 = min(N, n0 + chunk_tokens)
            h = hidden[n0:n1]
            dz = dz_buf[: (n1 - n0) * (v1 - v0)].view(n1 - n0, v1 - v0)
            k.linear_token_logprobs_dlogits(
                h,
                w,
                (tgt[n0:n1] - v0).contiguous(),
                lse[n0:n1],
                None if ent is None else ent[n0:n1],
                None if g_logp is None else g_logp[n0:n1],
                None if g_ent is None else g_ent[n0:n1],
                1.0 / temperature,
                dz,
            )
            if need_h:
                _dispatch.addmm_f32(grad_h[n0:n1], dz, w)
            if aw is not None:
                _dispatch.addmm_f32(aw, dz.T, h)
        if aw is not None:
            grad_w[v0:v1] = aw.to(weight.dtype)
    return (grad_h.to(hidden.dtype) if need_h else grad_h), grad_w


@torch.library.custom_op("microcoder_fast::linear_token_logprobs_fwd", mutates_args=())
def _fwd(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
    return_entropy: bool,
    check_target: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    V = weight.shape[0]
    k = _dispatch.forward_kernels("linear_token_logprobs", hidden.device, target, V, check_target)
    if k is not None:
        return k.linear_token_logprobs_fwd(hidden, weight, target, 1.0 / temperature, return_entropy)
    return _ref.linear_forward_chunked(hidden, weight, target, temperature, return_entropy)


@_fwd.register_fake
def _fwd_fake(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
    return_entropy: bool,
    check_target: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = hidden.shape[0]
    out = hidden.new_empty((n,), dtype=torch.float32)
    return out, torch.empty_like(out), hidden.new_empty((n if return_entropy else 0,), dtype=torch.float32)


@torch.library.custom_op("microcoder_fast::linear_token_logprobs_bwd", mutates_args=())
def _bwd(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    lse: torch.Tensor,
    ent: torch.Tensor | None,
    g_logp: torch.Tensor | None,
    g_ent: torch.Tensor | None,
    temperature: float,
    need_h: bool,
    need_w: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    gl = None if g_logp is None else g_logp.float().contiguous()
    ge = None if g_ent is None else g_ent.float().contiguous()
    if _dispatch.use_triton(hidden.device):
        return _cuda_backward(hidden, weight, target, lse, ent, gl, ge, temperature, need_h, need_w)
    return _ref.linear_backward_chunked(hidden, weight, target, lse, ent, gl, ge, temperature, need_h, need_w)


@_bwd.register_fake
def _bwd_fake(
    hidden: torch.Tensor, weight: torch.Tensor, *args: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    need_h, need_w = args[-2:]
    return (
        torch.empty_like(hidden) if need_h else hidden.new_empty(0),
        torch.empty_like(weight) if need_w else weight.new_empty(0),
    )


def _backward(ctx: Any, *saved_and_grads: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(hidden, weight, target, lse, ent, g_logp, g_ent) -> (d hidden, d weight), each only when autograd
    needs it (a frozen lm_head pays no [V, D] gradient GEMM)."""
    need_h, need_w = ctx.needs_input_grad[:2]
    if not (need_h or need_w):
        return None, None
    gh, gw = torch.ops.microcoder_fast.linear_token_logprobs_bwd(
        *saved_and_grads, ctx.temperature, bool(need_h), bool(need_w)
    )
    return (gh if need_h else None), (gw if need_w else None)


_dispatch.register_logprob_autograd(_fwd, 2, _backward)


def linear_token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    temperature: float = 1.0,
    return_entropy: bool = False,
    *,
    check_target: bool = True,
    ignore_index: int | None = -100,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``log softmax(hidden @ weight.T / temperature)[target]`` in fp32, never materialising [N, V].

    Args:
        hidden: [..., D] float32 / bfloat16 / float16 (the last hidden states, before the lm_head).
        weight: [V, D] the lm_head weight (same dtype as hidden). No bias.
        target: [...] int32 / int64 token ids in [0, V).
        temperature: runtime scalar > 0.
        return_entropy: also return the entropy of the softmax per token.
        check_target: verify targets are in [0, V) (ValueError otherwise; one reduction and a sync on CUDA).
        ignore_index: a row whose target equals it gets log-prob 0, entropy 0 and no gradient (as
            ``ops.token_logprobs``; its logits are still computed inside the GEMMs). ``None``: no ignore index.

    Returns:
        logp [...] fp32 (``<= 0``), or ``(logp, entropy)``. Differentiable w.r.t. hidden and weight.
    """
    for name, tensor in (("hidden", hidden), ("weight", weight)):
        _dispatch.check_float_tensor(tensor, name)
    target = _dispatch.normalise_target(target)
    if weight.dim() != 2:
        raise ValueError(f"weight must be [V, D] (the lm_head weight), got shape {tuple(weight.shape)}")
    if hidden.dim() < 1 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"hidden [..., D] and weight [V, D] disagree on D: hidden {tuple(hidden.shape)}, "
            f"weight {tuple(weight.shape)}"
        )
    if hidden.dtype != weight.dtype:
        raise TypeError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) must share a dtype; cast one")
    if tuple(target.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(
            f"target shape {tuple(target.shape)} must equal hidden.shape[:-1] = {tuple(hidden.shape[:-1])}"
        )
    if not (hidden.device == weight.device == target.device):
        raise ValueError(
            f"hidden ({hidden.device}), weight ({weight.device}) and target ({target.device}) must share a device"
        )
    if weight.shape[0] == 0:
        raise ValueError("weight has an empty vocabulary dimension (V = 0)")
    t = _dispatch.check_temperature(temperature)
    lead = tuple(hidden.shape[:-1])
    h2 = hidden.reshape(-1, hidden.shape[-1])
    if h2.shape[-1] > 1 and h2.stride(-1) != 1:
        h2 = h2.contiguous()
    w = weight if weight.stride(-1) == 1 or weight.shape[1] <= 1 else weight.contiguous()
    flat_target = target.reshape(-1)
    ignored = _dispatch.ignored_rows(flat_target, ignore_index)
    if ignored is not None:  # their rows get 0 (and so no gradient); the GEMMs still include them
        flat_target = flat_target.masked_fill(ignored, 0)
    logp, _lse, ent = torch.ops.microcoder_fast.linear_token_logprobs_fwd(
        h2, w, flat_target.contiguous(), t, bool(return_entropy), bool(check_target)
    )
    if ignored is not None:
        logp = torch.where(ignored, 0.0, logp)
        ent = torch.where(ignored, 0.0, ent) if return_entropy else ent
    if return_entropy:
        return logp.view(lead), ent.view(lead)
    return logp.view(lead)
