# ruff: noqa: ANN201  (@triton.jit functions carry no return annotations)
"""Triton kernels for per-token log-probabilities (and entropy) over a large vocabulary.

One program per token row (tokens on grid axis 0, launched in slices of at most ``MAX_GRID_ROWS`` rows, so
any number of tokens works); each program walks the vocabulary in tiles of ``BLOCK_V``, so no [tokens, vocab]
fp32 buffer ever exists. Everything is computed in fp32 whatever the input dtype; the temperature enters as a
runtime float (``inv_temperature``), never a constexpr, so changing it never compiles a new kernel. No atomics:
a row's result depends only on that row.

The vocabulary loops are written for instruction issue, not just memory traffic (the loops must issue fewer
instructions per element than the memory system delivers elements; ``bench/sass_count.py`` counts them in the
compiled SASS):

- Per-thread running statistics. Each thread keeps its own running max / sum (``LANES`` = threads per program)
  over the elements it loads; the tile is reshaped to ``[R, LANES, VEC]`` so that every reduction inside the
  loop stays in registers. Threads are combined once per row, after the loop (no shuffles or barriers per
  tile).
- One prescale. Exponents are base 2: ``2 ** (x·k - m·k)`` with ``k = log2(e) / T`` is one FFMA and one
  ``ex2.approx.ftz`` (MUFU.EX2); the max is taken over the raw logits (``k > 0``).
- Full tiles carry no bounds mask; only the last, partial tile is masked.
- The backward writes ``p_j · a`` for every column and fixes the target's column once after the loop (a
  barrier, then one store), instead of comparing every column index with the target.
- Rare rows branch once per row: an all ``-inf`` row or an ``ignore_index`` target writes zeros (gradient) /
  0 (log-prob) without any per-element select.
- The entropy terms exist only in the variants that compute the entropy or receive its gradient (constexpr
  flags on what is computed, never on hyperparameter values).

Reusable ``@triton.jit`` helpers (stable names; the fused loss kernel imports them):

- ``exp2_ftz(x)``: ``2 ** x`` as one MUFU.EX2 on the GPU (flush-to-zero); ``tl.exp2`` under the interpreter.
- ``row_pointer(base, row, L, stride_b, stride_l)``: the start of token ``row`` of a [B, L, V] tensor.
- ``row_stats(row_ptr, V, k, BLOCK_V, LANES, VEC, COMPUTE_ENTROPY)``: one row's ``(M, S, T)``: the max of the
  raw logits, ``S = Σ 2 ** ((x - M)·k)`` and ``T = Σ 2 ** ((x - M)·k) · (x - M)·k``; then
  ``lse = M / T_temp + ln S`` and entropy ``ln S - ln 2 · T / S`` (``stats_lse``, ``stats_entropy``).
- ``row_grad_store(...)``: the gradient walk: writes ``2 ** (x·k - lse·log2 e) · (a + b·(x·k - lse·log2 e))``
  for every column, then fixes the target's column.

Imports only torch and triton.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import libdevice

# CUDA allows 2**31 - 1 programs on grid axis 0; we slice launches below that.
MAX_GRID_ROWS = 2**31 - 1
NEG_INF = float("-inf")

# The GPU path uses the fast hardware exp2 (MUFU.EX2, denormals flushed); Triton's interpreter has no libdevice.
FAST_MATH = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0").lower() not in ("1", "true", "on", "yes"))
LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)
# d = (x - max)·k is clamped here where it multiplies its own exponential (entropy terms): 2 ** -200 is 0 in
# fp32, and 0 · -200 is 0 where 0 · -inf would be NaN for a -inf logit.
D_FLOOR = tl.constexpr(-200.0)


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
def exp2_ftz(x):
    if FAST_MATH:
        return libdevice.exp2(x)  # ex2.approx.ftz.f32: a single MUFU.EX2
    else:
        return tl.exp2(x)


@triton.jit
def row_pointer(base_ptr, row, L, stride_b, stride_l):
    """Pointer to element 0 of token ``row`` (int64) of a [B, L, V] tensor with the given B / L strides."""
    b = row // L
    return base_ptr + b * stride_b + (row - b * L) * stride_l


@triton.jit
def _lanes_update(x, m, s, t, k, R: tl.constexpr, LANES: tl.constexpr, VEC: tl.constexpr,
                  COMPUTE_ENTROPY: tl.constexpr):  # fmt: skip
    """Fold one tile ``x`` [R * LANES * VEC] (raw fp32 logits, masked lanes -inf) into the per-thread running
    max ``m``, ``s = Σ 2 ** (x·k - m·k)`` and ``t = Σ 2 ** (...)·(...)`` ([LANES] each; reductions in registers)."""
    x3 = tl.reshape(x, (R, LANES, VEC))
    m_new = tl.maximum(m, tl.max(tl.max(x3, axis=2), axis=0))
    mk = tl.where(m_new == float("-inf"), 0.0, m_new * k)  # a finite shift even before any finite logit
    d = x3 * k - mk[:, None][None, :, :]
    if COMPUTE_ENTROPY:
        d = tl.maximum(d, D_FLOOR)
    e = exp2_ftz(d)
    alpha = exp2_ftz(m * k - mk)
    if COMPUTE_ENTROPY:
        shift = tl.where(s > 0.0, m * k - mk, 0.0)  # re-centre t on the new max
        t = alpha * (t + s * shift) + tl.sum(tl.sum(e * d, axis=2), axis=0)
    s = s * alpha + tl.sum(tl.sum(e, axis=2), axis=0)
    return m_new, s, t


@triton.jit
def row_stats(row_ptr, V, k, BLOCK_V: tl.constexpr, LANES: tl.constexpr, VEC: tl.constexpr,
              COMPUTE_ENTROPY: tl.constexpr):  # fmt: skip
    """(M, S, T) of one row (unit stride over V): the max raw logit, ``S = Σ 2 ** ((x - M)·k)`` and
    ``T = Σ 2 ** ((x - M)·k)·(x - M)·k`` (0 unless COMPUTE_ENTROPY). ``S = 0`` for an all -inf row."""
    R: tl.constexpr = BLOCK_V // (LANES * VEC)
    m = tl.full((LANES,), float("-inf"), tl.float32)
    s = tl.zeros((LANES,), tl.float32)
    t = tl.zeros((LANES,), tl.float32)
    offs = tl.arange(0, BLOCK_V)
    v_full = V - V % BLOCK_V
    for v0 in range(0, v_full, BLOCK_V):
        x = tl.load(row_ptr + v0 + offs).to(tl.float32)
        m, s, t = _lanes_update(x, m, s, t, k, R, LANES, VEC, COMPUTE_ENTROPY)
    if v_full < V:
        cols = v_full + offs
        x = tl.load(row_ptr + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
        m, s, t = _lanes_update(x, m, s, t, k, R, LANES, VEC, COMPUTE_ENTROPY)
    # Combine the threads once per row (exact exp2 here: once per thread, not per element).
    M = tl.max(m, axis=0)
    Mk = tl.where(M == float("-inf"), 0.0, M * k)
    live = s > 0.0
    scale = tl.where(live, tl.exp2(m * k - Mk), 0.0)
    S = tl.sum(s * scale, axis=0)
    if COMPUTE_ENTROPY:
        T = tl.sum(tl.where(live, scale * (t + s * (m * k - Mk)), 0.0), axis=0)
    else:
        T = tl.zeros((), tl.float32)
    return M, S, T


@triton.jit
def stats_lse(M, S, inv_temperature):
    """log Σ exp(x / T) from ``row_stats`` (-inf for an all -inf row)."""
    return tl.where(S > 0.0, M * inv_temperature + tl.log(tl.where(S > 0.0, S, 1.0)), float("-inf"))


@triton.jit
def stats_entropy(S, T):
    """Entropy of softmax(x / T) in nats from ``row_stats`` (0 for an all -inf row; never negative)."""
    S_safe = tl.where(S > 0.0, S, 1.0)
    return tl.where(S > 0.0, tl.maximum(tl.log(S_safe) - LN2 * T / S_safe, 0.0), 0.0)


@triton.jit
def stats_logp(x_t, M, S, inv_temperature):
    """log softmax(x / T) at a logit ``x_t``: ``(x_t - M) / T - ln S`` (no rounding at the logits' magnitude);
    ``-inf`` for a -inf target logit or an all -inf row, never positive, NaN stays NaN."""
    logp = tl.minimum((x_t - M) * inv_temperature - tl.log(tl.where(S > 0.0, S, 1.0)), 0.0)
    logp = tl.where((x_t == float("-inf")) | (S == 0.0), float("-inf"), logp)
    return tl.where(x_t != x_t, x_t, logp)


@triton.jit
def _grad_tile(x, c, k, a, b, HAS_ENT_GRAD: tl.constexpr):
    """``p · (a + b·d)`` with ``d = x·k - c`` (log2 of the probability), ``p = 2 ** d`` (fp32)."""
    d = x * k - c
    if HAS_ENT_GRAD:
        d = tl.maximum(d, D_FLOOR)
        return exp2_ftz(d) * (a + b * d)
    else:
        return exp2_ftz(d) * a


@triton.jit
def row_grad_store(row_ptr, grow_ptr, V, local_t, x_t, c, k, a, b, g_t, BLOCK_V: tl.constexpr,
                   HAS_ENT_GRAD: tl.constexpr):  # fmt: skip
    """Write ``p_j · (a + b·d_j)`` with ``d_j = x_j·k - c``, ``p_j = 2 ** d_j`` to every column (``b`` only when
    HAS_ENT_GRAD), then ``+ g_t`` at column ``local_t`` (when in [0, V); ``x_t`` is its logit, read before the
    walk since ``grow_ptr`` may be ``row_ptr``)."""
    offs = tl.arange(0, BLOCK_V)
    v_full = V - V % BLOCK_V
    for v0 in range(0, v_full, BLOCK_V):
        x = tl.load(row_ptr + v0 + offs).to(tl.float32)
        tl.store(grow_ptr + v0 + offs, _grad_tile(x, c, k, a, b, HAS_ENT_GRAD).to(grow_ptr.dtype.element_ty))
    if v_full < V:
        cols = v_full + offs
        cmask = cols < V
        x = tl.load(row_ptr + cols, mask=cmask, other=float("-inf")).to(tl.float32)
        grad = _grad_tile(x, c, k, a, b, HAS_ENT_GRAD)
        tl.store(grow_ptr + cols, grad.to(grow_ptr.dtype.element_ty), mask=cmask)
    if (local_t >= 0) & (local_t < V):
        grad_t = _grad_tile(x_t, c, k, a, b, HAS_ENT_GRAD) + g_t
        tl.debug_barrier()  # every thread's store of this column above is done before it is overwritten
        tl.store(grow_ptr + local_t, grad_t.to(grow_ptr.dtype.element_ty))


@triton.jit
def row_zero_store(grow_ptr, V, BLOCK_V: tl.constexpr):
    """Write zeros to one row (an all -inf row, an ignored target, a token out of the mask)."""
    offs = tl.arange(0, BLOCK_V)
    zeros = tl.zeros((BLOCK_V,), tl.float32).to(grow_ptr.dtype.element_ty)
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + offs
        tl.store(grow_ptr + cols, zeros, mask=cols < V)


@triton.jit
def softmax_grad_tile(z, lse, ent, is_target, g_logp, g_ent):
    """d/dz of g_logp * (z_t - lse) + g_ent * H(softmax(z)) for one tile (fp32; the hidden-state kernels)."""
    lse_safe = tl.where(lse == float("-inf"), 0.0, lse)
    live = lse != float("-inf")
    p = tl.where(live, tl.exp(z - lse_safe), 0.0)
    logp = tl.where(p > 0.0, z - lse_safe, 0.0)
    grad = tl.where(is_target, g_logp, 0.0) - p * g_logp
    grad = grad - g_ent * p * (logp + ent)
    return tl.where(live, grad, 0.0)


@triton.jit
def lse_tile_update_2d(m, s, t, z, COMPUTE_ENTROPY: tl.constexpr):
    """Row-wise online log-sum-exp update for a [rows, cols] tile ``z`` (scaled fp32 logits, masked lanes
    ``-inf``); ``m``, ``s``, ``t`` are [rows] vectors (the hidden-state kernels)."""
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


# ----------------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------------


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
    ignore_index,
    COMPUTE_ENTROPY: tl.constexpr,
    BLOCK_V: tl.constexpr,
    LANES: tl.constexpr,
    VEC: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64) + row_start
    target = tl.load(target_ptr + row)
    if target == ignore_index:  # log-prob 0, entropy 0, no read of the row (the backward writes zeros)
        logp = tl.zeros((), tl.float32)
        lse = tl.zeros((), tl.float32)
        ent = tl.zeros((), tl.float32)
    else:
        row_ptr = row_pointer(logits_ptr, row, L, stride_b, stride_l)
        M, S, T = row_stats(row_ptr, V, inv_temperature * LOG2E, BLOCK_V, LANES, VEC, COMPUTE_ENTROPY)
        valid = (target >= 0) & (target < V)
        x_t = tl.load(row_ptr + tl.where(valid, target, 0)).to(tl.float32)
        logp = tl.where(valid, stats_logp(x_t, M, S, inv_temperature), float("nan"))  # bad target: NaN
        lse = stats_lse(M, S, inv_temperature)
        ent = stats_entropy(S, T)
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
    ignore_index,
    HAS_GLOGP: tl.constexpr,
    HAS_GENT: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    """Gradient of the row's log-prob / entropy w.r.t. its logits; may write in place (grad_ptr == logits_ptr).

    d/dz_j [g·logp_t + h·H] = g·(1[j = t] - p_j) - h·p_j·(log p_j + H), times 1/T for d/dx_j. With
    ``d_j = x_j·k - lse·log2 e`` (log2 p_j): ``p_j·(a + b·d_j)`` with ``a = -(g + h·H)/T``, ``b = -h·ln 2/T``,
    plus ``g/T`` at the target. The ``V`` columns seen are global columns ``v_offset .. v_offset + V``.
    """
    row = tl.program_id(0).to(tl.int64) + row_start
    row_ptr = row_pointer(logits_ptr, row, L, stride_b, stride_l)
    grow_ptr = row_pointer(grad_ptr, row, L, gstride_b, gstride_l)
    target = tl.load(target_ptr + row)
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
    if (lse == float("-inf")) | (target == ignore_index):
        row_zero_store(grow_ptr, V, BLOCK_V)
    else:
        local_t = target - v_offset
        has_t = (local_t >= 0) & (local_t < V)
        x_t = tl.load(row_ptr + tl.where(has_t, local_t, 0)).to(tl.float32)  # before the walk (in place)
        a = -(g_logp + g_ent * ent) * inv_temperature
        b = -g_ent * LN2 * inv_temperature
        row_grad_store(row_ptr, grow_ptr, V, local_t, x_t, lse * LOG2E, inv_temperature * LOG2E, a, b,
                       g_logp * inv_temperature, BLOCK_V, HAS_GENT)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# Launchers (tensors already validated by the op layer)
# ----------------------------------------------------------------------------------------------------------


def default_block_v(V: int, element_size: int) -> int:
    """A vocabulary tile: 16 KiB of input per tile on GPU, never wider than the (power-of-two) vocabulary."""
    return max(16, min(triton.next_power_of_2(max(V, 1)), 16384 // max(element_size, 1)))


def num_warps(block_v: int) -> int:
    """Warps per program for a vocabulary tile of ``block_v`` columns."""
    return 8 if block_v >= 2048 else 4


def lanes(block_v: int, element_size: int) -> tuple[int, int]:
    """(LANES, VEC) for ``row_stats``: threads per program and elements per 16-byte load, shrunk for a tile
    smaller than one load per thread (``LANES * VEC`` always divides ``block_v``)."""
    n_threads = 32 * num_warps(block_v)
    vec = max(1, 16 // max(element_size, 1))
    while n_threads * vec > block_v and vec > 1:
        vec //= 2
    while n_threads * vec > block_v and n_threads > 1:
        n_threads //= 2
    return n_threads, vec


def token_logprobs_fwd(
    logits3: torch.Tensor,
    target: torch.Tensor,
    inv_temperature: float,
    compute_entropy: bool,
    block_v: int | None = None,
    max_grid_rows: int = MAX_GRID_ROWS,
    ignore_index: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``logits3`` [B, L, V] with unit last stride (any B/L strides); ``target`` [B*L] contiguous int.

    Returns fp32 (logp [B*L], lse [B*L], entropy [B*L] or [0]). A row whose target is ``ignore_index`` gets
    log-prob 0 and entropy 0 and is not read.
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
    n_lanes, vec = lanes(bv, logits3.element_size())
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
            _ignore(ignore_index),
            COMPUTE_ENTROPY=compute_entropy,
            BLOCK_V=bv,
            LANES=n_lanes,
            VEC=vec,
            num_warps=num_warps(bv),
        )
    return logp, lse, ent


def _ignore(ignore_index: int | None) -> int:
    """The ignore index as the kernels take it: no index is an int64 no token id can equal."""
    return -(2**63) if ignore_index is None else int(ignore_index)


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
    ignore_index: int | None = None,
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
            _ignore(ignore_index),
            HAS_GLOGP=has_glogp,
            HAS_GENT=has_gent,
            BLOCK_V=bv,
            num_warps=num_warps(bv),
        )
    return grad3
