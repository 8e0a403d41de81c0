# ruff: noqa: ANN201  (@triton.jit functions carry no return annotations)
"""Triton kernel: the GRPO loss straight from logits, with d(logits) written in the same launch.

One program per token row (tokens on grid axis 0, launched in slices). For a row in the mask the program

1. walks the vocabulary once (online log-sum-exp, optional entropy) to get ``logp = z_t - lse`` with
   ``z = logits / T`` in fp32;
2. evaluates the per-token GRPO terms and ``g = dloss/dlogp`` (``grpo_token``, row-local because the
   aggregation weight ``w`` of the row is known up front from the mask);
3. walks the vocabulary a second time writing ``d loss / d logits = g · (onehot(t) - softmax(z)) / T`` in the
   logits' dtype, into a fresh buffer or into the logits buffer itself (in place).

Both walks are the shared helpers of ``kernels/token_logprobs.py`` (``row_stats``: per-thread running
statistics, base-2 exponent with one prescale; ``row_grad_store``: the target's column fixed after the walk),
so their instruction counts per element are the log-prob kernels' (``bench/sass_count.py``). A row out of the
mask (or whose target is the ignore index, which the op folds into the mask) reads no logits and writes
zeros; so does an all ``-inf`` row. Memory traffic: logits read twice, gradient written once (the
three-pass floor). Temperature and every hyperparameter are runtime values. No atomics: the per-token results
are stored and reduced by the caller. Imports only torch and triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .grpo_loss import grpo_token
from .token_logprobs import (
    LOG2E,
    MAX_GRID_ROWS,
    default_block_v,
    lanes,
    num_warps,
    row_grad_store,
    row_pointer,
    row_slices,
    row_stats,
    row_zero_store,
    stats_entropy,
    stats_logp,
    stats_lse,
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
    LANES: tl.constexpr,
    VEC: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64) + row_start
    b = row // L
    valid = tl.load(mask_ptr + row) != 0
    row_ptr = row_pointer(logits_ptr, row, L, stride_b, stride_l)
    target = tl.load(target_ptr + row)
    old = tl.load(old_ptr + row).to(tl.float32)
    if ADV_PER_TOKEN:
        a = tl.load(adv_ptr + row).to(tl.float32)
    else:
        a = tl.load(adv_ptr + b).to(tl.float32)
    w = tl.load(scale_ptr + b).to(tl.float32)
    k = inv_temperature * LOG2E
    lse = tl.zeros((), tl.float32)
    logp = tl.zeros((), tl.float32)
    ent = tl.zeros((), tl.float32)
    x_t = tl.zeros((), tl.float32)
    t_ok = (target >= 0) & (target < V)
    if valid:  # a row out of the mask reads no logits
        M, S, T = row_stats(row_ptr, V, k, BLOCK_V, LANES, VEC, COMPUTE_ENTROPY)
        x_t = tl.load(row_ptr + tl.where(t_ok, target, 0)).to(tl.float32)
        logp = tl.where(t_ok, stats_logp(x_t, M, S, inv_temperature), float("nan"))  # bad target: NaN
        lse = stats_lse(M, S, inv_temperature)
        ent = stats_entropy(S, T)
    if HAS_REF:
        ref = tl.load(ref_ptr + row).to(tl.float32)
    else:
        ref = logp
    pg, kl, ratio, nlr, flags, g = grpo_token(
        logp, old, a, ref, valid, w, eps_low, eps_high, kl_coef, dual_c, HAS_REF=HAS_REF, HAS_DUAL=HAS_DUAL
    )
    bad = valid & (t_ok == 0)  # an unchecked out-of-range target in the mask: NaN loss term and gradient row
    pg = tl.where(bad, float("nan"), pg)
    g = tl.where(bad, float("nan"), g)
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
        if valid & (lse != float("-inf")):
            # d loss / d x_j = g·(1[j = t] - p_j) / T (the second read of the row; g already holds the weight)
            gt = g * inv_temperature
            row_grad_store(row_ptr, grow_ptr, V, tl.where(t_ok, target, -1), x_t, lse * LOG2E, k, -gt, 0.0, gt,
                           BLOCK_V, False)  # fmt: skip
        else:  # out of the mask, or an all -inf row: no gradient
            row_zero_store(grow_ptr, V, BLOCK_V)


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
    n_lanes, vec = lanes(bv, logits3.element_size())
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
            LANES=n_lanes,
            VEC=vec,
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
