# ruff: noqa: ANN201  (@triton.jit functions carry no return annotations)
"""Triton kernel: the GRPO loss straight from logits, with d(logits) written in the same launch.

One program per token row (tokens on grid axis 0, launched in slices). For a row in the mask the program

1. walks the vocabulary once (online log-sum-exp, optional entropy) to get ``logp = z_t - lse`` with
   ``z = logits / T`` in fp32;
2. evaluates the per-token GRPO terms and ``g = dloss/dlogp`` (``grpo_token``, row-local because the
   aggregation weight ``w`` of the row is known up front from the mask);
3. walks the vocabulary a second time writing ``d loss / d logits = g · (onehot(t) - softmax(z)) / T`` in the
   logits' dtype, into a fresh buffer or into the logits buffer itself (in place).

A masked row reads no logits and writes zeros. Memory traffic: logits read twice, gradient written once (the
three-pass floor). Temperature and every hyperparameter are runtime values. No atomics: the per-token results
are stored and reduced by the caller. Imports only torch and triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .grpo_loss import grpo_token
from .token_logprobs import (
    MAX_GRID_ROWS,
    default_block_v,
    num_warps,
    row_logprob_stats,
    row_pointer,
    row_slices,
    softmax_grad_tile,
)

N_TOKEN_ROWS = 8  # rows of the per-token output: pg, kl, ratio, nlr, flags, grad-of-logp, logp, entropy


@triton.jit
def fused_grpo_loss_kernel(
    logits_ptr,
    grad_ptr,
    target_ptr,
    old_ptr,
    adv_ptr,
    mask_ptr,
    ref_ptr,
    scale_ptr,
    out_ptr,
    row_start,
    n_tokens,
    L,
    stride_b,
    stride_l,
    gstride_b,
    gstride_l,
    V,
    inv_temperature,
    eps_low,
    eps_high,
    kl_coef,
    dual_c,
    HAS_REF: tl.constexpr,
    HAS_DUAL: tl.constexpr,
    ADV_PER_TOKEN: tl.constexpr,
    COMPUTE_ENTROPY: tl.constexpr,
    COMPUTE_GRAD: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64) + row_start
    b = row // L
    valid = tl.load(mask_ptr + row) != 0
    row_ptr = row_pointer(logits_ptr, row, L, stride_b, stride_l)
    target = tl.load(target_ptr + row).to(tl.int64)
    old = tl.load(old_ptr + row).to(tl.float32)
    if ADV_PER_TOKEN:
        a = tl.load(adv_ptr + row).to(tl.float32)
    else:
        a = tl.load(adv_ptr + b).to(tl.float32)
    w = tl.load(scale_ptr + b).to(tl.float32)
    lse = tl.zeros((), tl.float32)
    logp = tl.zeros((), tl.float32)
    ent = tl.zeros((), tl.float32)
    if valid:
        lse, z_t, ent = row_logprob_stats(row_ptr, target, V, inv_temperature, BLOCK_V, COMPUTE_ENTROPY)
        logp = tl.where(z_t == float("-inf"), float("-inf"), tl.minimum(z_t - lse, 0.0))
        logp = tl.where(lse == float("-inf"), float("-inf"), logp)
    if HAS_REF:
        ref = tl.load(ref_ptr + row).to(tl.float32)
    else:
        ref = logp
    pg, kl, ratio, nlr, flags, g = grpo_token(
        logp, old, a, ref, valid, w, eps_low, eps_high, kl_coef, dual_c, HAS_REF=HAS_REF, HAS_DUAL=HAS_DUAL
    )
    n64 = tl.cast(n_tokens, tl.int64)  # row k of the output starts at k * n_tokens (64-bit: no wrap)
    out = out_ptr + row
    tl.store(out, pg)
    tl.store(out + n64, kl)
    tl.store(out + 2 * n64, ratio)
    tl.store(out + 3 * n64, nlr)
    tl.store(out + 4 * n64, flags)
    tl.store(out + 5 * n64, g)
    tl.store(out + 6 * n64, tl.where(valid, logp, 0.0))
    tl.store(out + 7 * n64, tl.where(valid, ent, 0.0))
    if COMPUTE_GRAD:
        grow_ptr = row_pointer(grad_ptr, row, L, gstride_b, gstride_l)
        offs = tl.arange(0, BLOCK_V)
        if valid:
            zero = tl.zeros((), tl.float32)
            for v0 in range(0, V, BLOCK_V):
                cols = v0 + offs
                cmask = cols < V
                x = tl.load(row_ptr + cols, mask=cmask, other=float("-inf")).to(tl.float32)
                z = x * inv_temperature
                d = softmax_grad_tile(z, lse, zero, cols == target, g, zero) * inv_temperature
                tl.store(grow_ptr + cols, d.to(grad_ptr.dtype.element_ty), mask=cmask)
        else:
            zeros = tl.zeros((BLOCK_V,), tl.float32)
            for v0 in range(0, V, BLOCK_V):
                cols = v0 + offs
                tl.store(grow_ptr + cols, zeros.to(grad_ptr.dtype.element_ty), mask=cols < V)


@triton.jit
def _scale_kernel(buf_ptr, scale_ptr, numel, BLOCK: tl.constexpr):
    """buf *= scale, skipped entirely (no traffic) when scale == 1 (the usual loss.backward())."""
    s = tl.load(scale_ptr).to(tl.float32)
    if s != 1.0:
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        m = offs < numel
        x = tl.load(buf_ptr + offs, mask=m).to(tl.float32)
        tl.store(buf_ptr + offs, (x * s).to(buf_ptr.dtype.element_ty), mask=m)


def fused_grpo_loss_fwd(
    logits3: torch.Tensor,
    grad3: torch.Tensor | None,
    target: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None,
    seq_scale: torch.Tensor,
    inv_temperature: float,
    eps_low: float,
    eps_high: float,
    kl_coef: float,
    dual_clip: float | None,
    compute_entropy: bool,
    adv_per_token: bool,
    block_v: int | None = None,
    max_grid_rows: int = MAX_GRID_ROWS,
) -> torch.Tensor:
    """Launch on ``logits3`` [B, L, V] (unit last stride, any B/L strides); ``grad3`` [B, L, V] or None (no
    gradient), may be ``logits3`` (in place). ``target``, ``old_logp``, ``mask`` (and ``ref_logp``,
    ``advantages`` when ``adv_per_token``) are contiguous [B*L]; otherwise ``advantages`` and ``seq_scale`` are
    contiguous [B].

    Returns the fp32 [8, B*L] per-token buffer (pg, kl, ratio, -clamped log-ratio, flags, dloss/dlogp, logp,
    entropy).
    """
    B, L, V = logits3.shape
    n = B * L
    out = torch.empty((N_TOKEN_ROWS, n), dtype=torch.float32, device=logits3.device)
    if n == 0:
        return out
    bv = block_v or default_block_v(V, logits3.element_size())
    m = mask.view(torch.uint8) if mask.dtype == torch.bool else mask
    ref = ref_logp if ref_logp is not None else old_logp
    g = grad3 if grad3 is not None else logits3
    for start, rows in row_slices(n, max_grid_rows):
        fused_grpo_loss_kernel[(rows,)](
            logits3,
            g,
            target,
            old_logp,
            advantages,
            m,
            ref,
            seq_scale,
            out,
            start,
            n,
            L,
            logits3.stride(0),
            logits3.stride(1),
            g.stride(0),
            g.stride(1),
            V,
            float(inv_temperature),
            float(eps_low),
            float(eps_high),
            float(kl_coef),
            float(dual_clip) if dual_clip is not None else 0.0,
            HAS_REF=ref_logp is not None,
            HAS_DUAL=dual_clip is not None,
            ADV_PER_TOKEN=adv_per_token,
            COMPUTE_ENTROPY=compute_entropy,
            COMPUTE_GRAD=grad3 is not None,
            BLOCK_V=bv,
            num_warps=num_warps(bv),
        )
    return out


def scale_inplace(buf: torch.Tensor, scale: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """``buf *= scale`` for a contiguous ``buf`` and a 1-element ``scale`` on the device, without a host sync;
    costs nothing but a launch when ``scale == 1``."""
    n = buf.numel()
    if n:
        _scale_kernel[(triton.cdiv(n, block),)](buf, scale.reshape(1), n, BLOCK=block)
    return buf
