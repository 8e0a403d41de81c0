# ruff: noqa: ANN201  (@triton.jit functions carry no return annotations)
"""Triton kernels for per-token log-probabilities (and entropy) over a large vocabulary.

One program per token row (tokens on grid axis 0, launched in slices of at most ``MAX_GRID_ROWS`` rows, so
any number of tokens works); each program walks the vocabulary in tiles of ``BLOCK_V`` with an online
max / log-sum-exp, so no [tokens, vocab] fp32 buffer ever exists. Everything is computed in fp32 whatever
the input dtype; the temperature enters as a runtime float (``inv_temperature``), never a constexpr, so
changing it never compiles a new kernel. No atomics: a row's result depends only on that row.

Reusable ``@triton.jit`` helpers (stable names, other kernels import them with a relative import,
``from .token_logprobs import lse_tile_update``):

- ``lse_tile_update(m, s, t, z, COMPUTE_ENTROPY)``: fold one tile ``z`` (fp32 scaled logits, masked lanes
  ``-inf``) into the running max ``m``, the running sum ``s = sum(exp(z - m))`` and, when asked, the running
  ``t = sum(exp(z - m) * (z - m))``. ``-inf`` entries and all ``-inf`` prefixes are handled without NaN.
- ``lse_finalize(m, s)``: log-sum-exp (``-inf`` for an empty / all ``-inf`` row).
- ``entropy_finalize(s, t)``: Shannon entropy ``log(s) - t / s`` (0 for an empty row), exact for
  all-negative logits because it never subtracts the max back in.
- ``row_logprob_stats(row_ptr, target, V, inv_temperature, BLOCK_V, COMPUTE_ENTROPY)``: one row's
  (log-sum-exp, scaled target logit, entropy).
- ``softmax_grad_tile(z, lse, ent, is_target, g_logp, g_ent)``: d loss / d z for one tile given upstream
  gradients of the log-prob and of the entropy (multiply by ``inv_temperature`` for d loss / d logits).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import triton
import triton.language as tl

# CUDA allows 2**31 - 1 programs on grid axis 0; we slice launches below that.
MAX_GRID_ROWS = 2**31 - 1
NEG_INF = float("-inf")


def row_slices(n_rows: int, max_rows: int = MAX_GRID_ROWS) -> Iterator[tuple[int, int]]:
    """Yield ``(row_start, rows)`` launches covering ``n_rows`` tokens, each at most ``max_rows`` programs."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    start = 0
    while start < n_rows:
        rows = min(max_rows, n_rows - start)
        yield start, rows
        start += rows


# ----------------------------------------------------------------------------------------------------------
# Reusable jit helpers
# ----------------------------------------------------------------------------------------------------------


@triton.jit
def lse_tile_update(m, s, t, z, COMPUTE_ENTROPY: tl.constexpr):
    tile_max = tl.max(z, axis=0)
    m_new = tl.maximum(m, tile_max)
    # A shift that is finite even when everything so far is -inf (then every exp below is exactly 0).
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp(m - m_safe)
    e = tl.exp(z - m_safe)
    if COMPUTE_ENTROPY:
        # Re-centre t on the new max: sum e_old * (z - m_new) = alpha * (t + s * (m_old - m_new)).
        shift = tl.where(s > 0.0, m - m_safe, 0.0)
        d = tl.where(e > 0.0, z - m_safe, 0.0)
        t = alpha * (t + s * shift) + tl.sum(e * d, axis=0)
    s = s * alpha + tl.sum(e, axis=0)
    return m_new, s, t


@triton.jit
def lse_finalize(m, s):
    return tl.where(s > 0.0, m + tl.log(tl.where(s > 0.0, s, 1.0)), float("-inf"))


@triton.jit
def entropy_finalize(s, t):
    s_safe = tl.where(s > 0.0, s, 1.0)
    ent = tl.log(s_safe) - t / s_safe
    return tl.where(s > 0.0, tl.maximum(ent, 0.0), 0.0)


@triton.jit
def row_logprob_stats(row_ptr, target, V, inv_temperature, BLOCK_V: tl.constexpr, COMPUTE_ENTROPY: tl.constexpr):
    """Return (lse, z_target, entropy) of one row; ``row_ptr`` points at element 0 (unit stride over V)."""
    offs = tl.arange(0, BLOCK_V)
    m = tl.full((), float("-inf"), tl.float32)
    s = tl.zeros((), tl.float32)
    t = tl.zeros((), tl.float32)
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + offs
        x = tl.load(row_ptr + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
        z = x * inv_temperature
        m, s, t = lse_tile_update(m, s, t, z, COMPUTE_ENTROPY)
    lse = lse_finalize(m, s)
    valid = (target >= 0) & (target < V)
    safe_target = tl.where(valid, target, 0)
    x_t = tl.load(row_ptr + safe_target).to(tl.float32)
    z_t = tl.where(valid, x_t * inv_temperature, float("nan"))
    if COMPUTE_ENTROPY:
        ent = entropy_finalize(s, t)
    else:
        ent = tl.zeros((), tl.float32)
    return lse, z_t, ent


@triton.jit
def softmax_grad_tile(z, lse, ent, is_target, g_logp, g_ent):
    """d/dz of g_logp * (z_t - lse) + g_ent * H(softmax(z)) for one tile (fp32)."""
    lse_safe = tl.where(lse == float("-inf"), 0.0, lse)
    live = lse != float("-inf")
    p = tl.where(live, tl.exp(z - lse_safe), 0.0)
    logp = tl.where(p > 0.0, z - lse_safe, 0.0)
    grad = tl.where(is_target, g_logp, 0.0) - p * g_logp
    grad = grad - g_ent * p * (logp + ent)
    return tl.where(live, grad, 0.0)


# ----------------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------------


@triton.jit
def row_pointer(base_ptr, row, L, stride_b, stride_l):
    b = row // L
    l_idx = row - b * L
    return base_ptr + b * stride_b + l_idx * stride_l


@triton.jit
def token_logprobs_fwd_kernel(
    logits_ptr,
    target_ptr,
    logp_ptr,
    lse_ptr,
    ent_ptr,
    row_start,
    L,
    stride_b,
    stride_l,
    V,
    inv_temperature,
    COMPUTE_ENTROPY: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64) + row_start
    row_ptr = row_pointer(logits_ptr, row, L, stride_b, stride_l)
    target = tl.load(target_ptr + row).to(tl.int64)
    lse, z_t, ent = row_logprob_stats(row_ptr, target, V, inv_temperature, BLOCK_V, COMPUTE_ENTROPY)
    # A -inf target logit gives -inf; an all -inf row gives -inf (never NaN); never positive.
    logp = tl.where(z_t == float("-inf"), float("-inf"), tl.minimum(z_t - lse, 0.0))
    logp = tl.where(lse == float("-inf"), float("-inf"), logp)
    logp = tl.where(z_t != z_t, float("nan"), logp)
    tl.store(logp_ptr + row, logp)
    tl.store(lse_ptr + row, lse)
    if COMPUTE_ENTROPY:
        tl.store(ent_ptr + row, ent)


@triton.jit
def token_logprobs_bwd_kernel(
    logits_ptr,
    grad_ptr,
    target_ptr,
    lse_ptr,
    ent_ptr,
    g_logp_ptr,
    g_ent_ptr,
    row_start,
    L,
    stride_b,
    stride_l,
    gstride_b,
    gstride_l,
    V,
    v_offset,
    inv_temperature,
    HAS_GLOGP: tl.constexpr,
    HAS_GENT: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    """Gradient of the row's log-prob / entropy w.r.t. its logits; may write in place (grad_ptr == logits_ptr).

    The kernel also serves vocabulary slices: the ``V`` columns it sees are global columns
    ``v_offset .. v_offset + V`` of the vocabulary, ``lse`` being the full row's (the hidden-state path).
    """
    row = tl.program_id(0).to(tl.int64) + row_start
    row_ptr = row_pointer(logits_ptr, row, L, stride_b, stride_l)
    grow_ptr = row_pointer(grad_ptr, row, L, gstride_b, gstride_l)
    target = tl.load(target_ptr + row).to(tl.int64)
    lse = tl.load(lse_ptr + row)
    if HAS_GLOGP:
        g_logp = tl.load(g_logp_ptr + row).to(tl.float32)
    else:
        g_logp = tl.zeros((), tl.float32)
    if HAS_GENT:
        g_ent = tl.load(g_ent_ptr + row).to(tl.float32)
        ent = tl.load(ent_ptr + row)
    else:
        g_ent = tl.zeros((), tl.float32)
        ent = tl.zeros((), tl.float32)
    local_target = target - v_offset
    offs = tl.arange(0, BLOCK_V)
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + offs
        cmask = cols < V
        x = tl.load(row_ptr + cols, mask=cmask, other=float("-inf")).to(tl.float32)
        z = x * inv_temperature
        grad = softmax_grad_tile(z, lse, ent, cols == local_target, g_logp, g_ent) * inv_temperature
        tl.store(grow_ptr + cols, grad.to(grad_ptr.dtype.element_ty), mask=cmask)


# ----------------------------------------------------------------------------------------------------------
# Launchers (tensors already validated by the op layer)
# ----------------------------------------------------------------------------------------------------------


def default_block_v(V: int, element_size: int) -> int:
    """A vocabulary tile: 16 KiB of input per tile on GPU, never wider than the (power-of-two) vocabulary."""
    return max(16, min(triton.next_power_of_2(max(V, 1)), 16384 // max(element_size, 1)))


def num_warps(block_v: int) -> int:
    return 8 if block_v >= 2048 else 4


def token_logprobs_fwd(
    logits3: torch.Tensor,
    target: torch.Tensor,
    inv_temperature: float,
    compute_entropy: bool,
    block_v: int | None = None,
    max_grid_rows: int = MAX_GRID_ROWS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``logits3`` [B, L, V] with unit last stride (any B/L strides); ``target`` [B*L] contiguous int.

    Returns fp32 (logp [B*L], lse [B*L], entropy [B*L] or [0]).
    """
    B, L, V = logits3.shape
    n = B * L
    dev = logits3.device
    logp = torch.empty(n, device=dev, dtype=torch.float32)
    lse = torch.empty(n, device=dev, dtype=torch.float32)
    ent = torch.empty(n if compute_entropy else 0, device=dev, dtype=torch.float32)
    if n == 0:
        return logp, lse, ent
    bv = block_v or default_block_v(V, logits3.element_size())
    ent_arg = ent if compute_entropy else lse
    for start, rows in row_slices(n, max_grid_rows):
        token_logprobs_fwd_kernel[(rows,)](
            logits3,
            target,
            logp,
            lse,
            ent_arg,
            start,
            L,
            logits3.stride(0),
            logits3.stride(1),
            V,
            float(inv_temperature),
            COMPUTE_ENTROPY=compute_entropy,
            BLOCK_V=bv,
            num_warps=num_warps(bv),
        )
    return logp, lse, ent


def token_logprobs_bwd(
    logits3: torch.Tensor,
    grad3: torch.Tensor,
    target: torch.Tensor,
    lse: torch.Tensor,
    ent: torch.Tensor | None,
    g_logp: torch.Tensor | None,
    g_ent: torch.Tensor | None,
    inv_temperature: float,
    v_offset: int = 0,
    block_v: int | None = None,
    max_grid_rows: int = MAX_GRID_ROWS,
) -> torch.Tensor:
    """Write d(loss)/d(logits) into ``grad3`` ([B, L, V], unit last stride; may be ``logits3`` itself)."""
    B, L, V = logits3.shape
    n = B * L
    if n == 0 or V == 0:
        return grad3
    bv = block_v or default_block_v(V, logits3.element_size())
    has_glogp = g_logp is not None
    has_gent = g_ent is not None
    dummy = lse
    for start, rows in row_slices(n, max_grid_rows):
        token_logprobs_bwd_kernel[(rows,)](
            logits3,
            grad3,
            target,
            lse,
            ent if has_gent else dummy,
            g_logp if has_glogp else dummy,
            g_ent if has_gent else dummy,
            start,
            L,
            logits3.stride(0),
            logits3.stride(1),
            grad3.stride(0),
            grad3.stride(1),
            V,
            v_offset,
            float(inv_temperature),
            HAS_GLOGP=has_glogp,
            HAS_GENT=has_gent,
            BLOCK_V=bv,
            num_warps=num_warps(bv),
        )
    return grad3


@triton.jit
def lse_tile_update_2d(m, s, t, z, COMPUTE_ENTROPY: tl.constexpr):
    """Row-wise ``lse_tile_update`` for a [rows, cols] tile ``z``; ``m``, ``s``, ``t`` are [rows] vectors."""
    tile_max = tl.max(z, axis=1)
    m_new = tl.maximum(m, tile_max)
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp(m - m_safe)
    e = tl.exp(z - m_safe[:, None])
    if COMPUTE_ENTROPY:
        shift = tl.where(s > 0.0, m - m_safe, 0.0)
        d = tl.where(e > 0.0, z - m_safe[:, None], 0.0)
        t = alpha * (t + s * shift) + tl.sum(e * d, axis=1)
    s = s * alpha + tl.sum(e, axis=1)
    return m_new, s, t
