# ruff: noqa: ANN201  (@triton.jit functions carry no return annotations)
"""Triton kernels for token log-probs straight from hidden states: log softmax(hidden @ weight.T / T)[target].

Forward (``linear_logprobs_fwd_kernel``): one program per tile of ``BLOCK_N`` tokens and vocabulary split of
4096 columns (38 at V = 151,936, so that 512 tokens already make 304 programs), on a 1-D grid in grouped order
(``_grouped_tile``: the programs running together share hidden and weight tiles in L2); ``N`` is not
specialised (one compiled variant for every token count; no autotuner); it walks its part of
the vocabulary in tiles of ``BLOCK_V``, computes each [BLOCK_N, BLOCK_V] logits tile with ``tl.dot`` over the
hidden dimension (fp32 accumulation), and folds it into a running row max / sum (and entropy sum) -- the
[tokens, vocab] logits never exist, not even in a workspace. The per-split row statistics ([splits, N]) are
merged in a fixed order. Output: fp32 log-prob, log-sum-exp, entropy.

Backward: ``linear_logprobs_dlogits_kernel`` recomputes one logits tile per program from hidden and weight and
writes d(loss)/d(logits) for a [chunk_tokens, chunk_vocab] slice into a fixed workspace; the two gradient
GEMMs (d hidden += dz @ W_v, d W_v += dz.T @ h) run on the workspace with the vendor BLAS in the op layer,
accumulated in fp32 in a fixed order (deterministic, no atomics).

Four GEMMs in all (forward, the backward's recompute, two gradient GEMMs): the upstream gradient of a log-prob
is unknown in the forward. When the loss is the GRPO loss it is known, and ``ops.linear_grpo_loss`` needs three.

The temperature is a runtime float; the row (token) results do not depend on other tokens.

Imports only torch and triton; never anything of microcoder_fast outside kernels/.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .token_logprobs import lse_tile_update_2d, softmax_grad_tile


@triton.jit
def _logits_tile(h_ptr, w_ptr, rows, cols, N, V, D, stride_hn, stride_wv, BLOCK_N: tl.constexpr,
                 BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """fp32 [BLOCK_N, BLOCK_V] tile of hidden[rows] @ weight[cols].T (zero outside the matrix).

    ``DOT_PRECISION == "upcast"`` converts the tiles to fp32 first (same products: bf16/fp16 products are exact
    in fp32); used under Triton's interpreter, whose bf16 ``tl.dot`` is wrong."""
    acc = tl.zeros((BLOCK_N, BLOCK_V), tl.float32)
    offs_d = tl.arange(0, BLOCK_D)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + offs_d
        h = tl.load(h_ptr + rows[:, None] * stride_hn + dd[None, :],
                    mask=(rows[:, None] < N) & (dd[None, :] < D), other=0.0)
        w = tl.load(w_ptr + cols[:, None] * stride_wv + dd[None, :],
                    mask=(cols[:, None] < V) & (dd[None, :] < D), other=0.0)
        if DOT_PRECISION == "upcast":
            acc = tl.dot(h.to(tl.float32), tl.trans(w.to(tl.float32)), acc, input_precision="ieee")
        else:
            acc = tl.dot(h, tl.trans(w), acc, input_precision=DOT_PRECISION)
    return acc


@triton.jit
def _grouped_tile(pid, n_tiles, n_splits, GROUP_N: tl.constexpr):
    """(token tile, vocabulary split) of program ``pid`` in grouped order: GROUP_N consecutive token tiles take
    every split before the next group starts, so the programs running together share GROUP_N hidden tiles and
    one weight tile per split in L2 (token-tile-major order would stream all N hidden rows through L2 per
    split)."""
    per_group = GROUP_N * n_splits
    first = (pid // per_group) * GROUP_N
    size = tl.minimum(n_tiles - first, GROUP_N)
    local = pid % per_group
    return first + local % size, local // size


@triton.jit(do_not_specialize=["N"])
def linear_logprobs_fwd_kernel(
    h_ptr,
    w_ptr,
    target_ptr,
    m_ptr,
    s_ptr,
    t_ptr,
    zt_ptr,
    N,
    V,
    D,
    v_per_split,
    stride_hn,
    stride_wv,
    inv_temperature,
    n_tiles,
    n_splits,
    COMPUTE_ENTROPY: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    GROUP_N: tl.constexpr,
):
    """Partial row statistics of one token tile over one vocabulary split (a 1-D grid in grouped order).

    Writes, per row and split, the running max ``m``, ``s = sum exp(z - m)``, ``t = sum exp(z - m) (z - m)``
    and the target's scaled logit (0 when the target is outside the split) to [splits, N] buffers; the op
    layer merges the splits (``merge_splits``) in a fixed order -- no atomics.
    """
    tile, split = _grouped_tile(tl.program_id(0), n_tiles, n_splits, GROUP_N)
    rows = tile.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    v_start = split.to(tl.int64) * v_per_split
    v_end = tl.minimum(v_start + v_per_split, V)
    rmask = rows < N
    target = tl.load(target_ptr + rows, mask=rmask, other=0).to(tl.int64)
    m = tl.full((BLOCK_N,), float("-inf"), tl.float32)
    s = tl.zeros((BLOCK_N,), tl.float32)
    t = tl.zeros((BLOCK_N,), tl.float32)
    z_t = tl.zeros((BLOCK_N,), tl.float32)
    offs_v = tl.arange(0, BLOCK_V).to(tl.int64)
    for v0 in range(v_start, v_end, BLOCK_V):
        cols = v0 + offs_v
        acc = _logits_tile(h_ptr, w_ptr, rows, cols, N, v_end, D, stride_hn, stride_wv, BLOCK_N, BLOCK_V, BLOCK_D,
                           DOT_PRECISION)
        z = tl.where(cols[None, :] < v_end, acc * inv_temperature, float("-inf"))
        m, s, t = lse_tile_update_2d(m, s, t, z, COMPUTE_ENTROPY)
        z_t += tl.sum(tl.where(cols[None, :] == target[:, None], z, 0.0), axis=1)
    out = split.to(tl.int64) * N + rows
    tl.store(m_ptr + out, m, mask=rmask)
    tl.store(s_ptr + out, s, mask=rmask)
    tl.store(zt_ptr + out, z_t, mask=rmask)
    if COMPUTE_ENTROPY:
        tl.store(t_ptr + out, t, mask=rmask)


def merge_splits(
    m: torch.Tensor, s: torch.Tensor, t: torch.Tensor | None, z_t: torch.Tensor, target: torch.Tensor, V: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Combine [splits, N] partial statistics into fp32 (logp [N], lse [N], entropy [N] or None)."""
    M = m.amax(dim=0)
    M_safe = torch.where(M == float("-inf"), torch.zeros_like(M), M)
    scale = torch.exp(m - M_safe)  # 0 for empty splits (m = -inf)
    s_tot = (s * scale).sum(0)
    lse = torch.where(s_tot > 0, M_safe + torch.log(s_tot.clamp_min(torch.finfo(torch.float32).tiny)),
                      torch.full_like(M, float("-inf")))
    zt = z_t.sum(0)
    logp = torch.minimum(zt - torch.where(lse == float("-inf"), torch.zeros_like(lse), lse), torch.zeros_like(zt))
    valid = (target >= 0) & (target < V)
    logp = torch.where(valid, logp, torch.full_like(logp, float("nan")))
    ent = None
    if t is not None:
        shift = torch.where(s > 0, m - M_safe, torch.zeros_like(m))
        t_tot = (scale * (t + s * shift)).sum(0)
        s_safe = torch.where(s_tot > 0, s_tot, torch.ones_like(s_tot))
        ent = torch.where(s_tot > 0, torch.log(s_safe) - t_tot / s_safe, torch.zeros_like(s_tot)).clamp(min=0.0)
    return logp, lse, ent


@triton.jit(do_not_specialize=["n_rows"])
def linear_logprobs_dlogits_kernel(
    h_ptr,
    w_ptr,
    target_ptr,
    lse_ptr,
    ent_ptr,
    g_logp_ptr,
    g_ent_ptr,
    dz_ptr,
    n_rows,
    v_cols,
    D,
    stride_hn,
    stride_wv,
    stride_dz,
    inv_temperature,
    HAS_GLOGP: tl.constexpr,
    HAS_GENT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """d loss / d logits for a [n_rows, v_cols] slice; all pointers are already offset to the slice start."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_V + tl.arange(0, BLOCK_V)
    rmask = rows < n_rows
    cmask = cols < v_cols
    acc = _logits_tile(h_ptr, w_ptr, rows, cols, n_rows, v_cols, D, stride_hn, stride_wv, BLOCK_N, BLOCK_V,
                       BLOCK_D, DOT_PRECISION)
    z = acc * inv_temperature
    target = tl.load(target_ptr + rows, mask=rmask, other=-1).to(tl.int64)  # already local to the slice
    lse = tl.load(lse_ptr + rows, mask=rmask, other=0.0)
    if HAS_GLOGP:
        g_logp = tl.load(g_logp_ptr + rows, mask=rmask, other=0.0)
    else:
        g_logp = tl.zeros((BLOCK_N,), tl.float32)
    if HAS_GENT:
        g_ent = tl.load(g_ent_ptr + rows, mask=rmask, other=0.0)
        ent = tl.load(ent_ptr + rows, mask=rmask, other=0.0)
    else:
        g_ent = tl.zeros((BLOCK_N,), tl.float32)
        ent = tl.zeros((BLOCK_N,), tl.float32)
    grad = softmax_grad_tile(z, lse[:, None], ent[:, None], cols[None, :] == target[:, None], g_logp[:, None],
                             g_ent[:, None]) * inv_temperature
    tl.store(dz_ptr + rows[:, None] * stride_dz + cols[None, :], grad.to(dz_ptr.dtype.element_ty),
             mask=rmask[:, None] & cmask[None, :])


def _dot_precision(t: torch.Tensor) -> str:
    # fp32 inputs: exact fp32 products (no TF32); bf16/fp16 products are exact in the fp32 accumulator anyway.
    if t.device.type != "cuda":
        return "upcast"  # Triton's interpreter mishandles bf16 tl.dot
    return "ieee" if t.dtype == torch.float32 else "tf32"


def _blocks(D: int, interpret: bool) -> tuple[int, int, int]:
    if interpret:
        return 16, 32, 32
    return 64, 128, min(64, max(16, triton.next_power_of_2(D)))


GROUP_N = 8  # token tiles per group of the grouped program order


def default_split_width(device: torch.device) -> int:
    """Vocabulary columns per split. A constant (never a function of the token count), so a token's result does
    not depend on the batch it is in. 4096 gives 38 splits at V = 151,936: N = 512 tokens (8 tiles of 64) make
    304 programs, over twice the 132 SMs of an H100 / H200 (16384 gave 80)."""
    return 4096 if device.type == "cuda" else 96


def linear_token_logprobs_fwd(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    inv_temperature: float,
    compute_entropy: bool,
    blocks: tuple[int, int, int] | None = None,
    split_width: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """hidden [N, D] (unit last stride), weight [V, D] (unit last stride), target [N] → fp32 (logp, lse, ent).

    Extra memory: four [splits, N] fp32 buffers, splits = V / split_width."""
    N, D = hidden.shape
    V = weight.shape[0]
    dev = hidden.device
    if N == 0:
        empty = torch.empty(0, device=dev, dtype=torch.float32)
        return empty, empty.clone(), empty.clone()
    bn, bv, bd = blocks or _blocks(D, dev.type != "cuda")
    n_tiles = triton.cdiv(N, bn)
    v_per_split = triton.cdiv(split_width or default_split_width(dev), bv) * bv
    n_splits = triton.cdiv(V, v_per_split)
    part = torch.empty(4, n_splits, N, device=dev, dtype=torch.float32)
    m, s, t, z_t = part.unbind(0)
    linear_logprobs_fwd_kernel[(n_tiles * n_splits,)](
        hidden, weight, target, m, s, t, z_t,
        N, V, D, v_per_split, hidden.stride(0), weight.stride(0), float(inv_temperature), n_tiles, n_splits,
        COMPUTE_ENTROPY=compute_entropy, BLOCK_N=bn, BLOCK_V=bv, BLOCK_D=bd,
        DOT_PRECISION=_dot_precision(hidden), GROUP_N=GROUP_N,
        num_warps=8 if bn * bv >= 8192 else 4,
    )
    logp, lse, ent = merge_splits(m, s, t if compute_entropy else None, z_t, target, V)
    if ent is None:
        ent = torch.empty(0, device=dev, dtype=torch.float32)
    return logp, lse, ent


def linear_token_logprobs_dlogits(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    local_target: torch.Tensor,
    lse: torch.Tensor,
    ent: torch.Tensor | None,
    g_logp: torch.Tensor | None,
    g_ent: torch.Tensor | None,
    inv_temperature: float,
    dz: torch.Tensor,
    blocks: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """Fill ``dz`` [n, v] with d loss / d logits for hidden [n, D] (a token slice) and weight [v, D] (a vocab
    slice). ``local_target`` holds target - v_start (int64; out-of-slice values match no column); ``lse``,
    ``ent`` and the upstream gradients are the slice's rows (fp32)."""
    n, D = hidden.shape
    v = weight.shape[0]
    if n == 0 or v == 0:
        return dz
    bn, bv, bd = blocks or _blocks(D, hidden.device.type != "cuda")
    grid = (triton.cdiv(n, bn), triton.cdiv(v, bv))
    dummy = lse
    linear_logprobs_dlogits_kernel[grid](
        hidden, weight, local_target, lse,
        ent if g_ent is not None else dummy,
        g_logp if g_logp is not None else dummy,
        g_ent if g_ent is not None else dummy,
        dz, n, v, D, hidden.stride(0), weight.stride(0), dz.stride(0), float(inv_temperature),
        HAS_GLOGP=g_logp is not None, HAS_GENT=g_ent is not None,
        BLOCK_N=bn, BLOCK_V=bv, BLOCK_D=bd, DOT_PRECISION=_dot_precision(hidden),
        num_warps=8 if bn * bv >= 8192 else 4,
    )
    return dz
