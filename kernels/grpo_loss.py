"""Triton kernel: the per-token part of the GRPO / PPO-clip loss and its analytic gradient.

Tokens (flattened [B, L]) on grid axis 0, BLOCK tokens per program. Every hyperparameter (eps_low, eps_high,
kl_coef, dual clip constant) is a runtime value; constexprs only say which inputs exist. The kernel writes, per
token, ``pg, kl, ratio, -clamped log-ratio, clip flags, grad`` (fp32 rows of a [6, N] buffer); the reductions to
the loss and metrics are a few torch sums over those rows (deterministic, no atomics). Imports only torch/triton.

``grpo_token`` is the per-token formula as a ``@triton.jit`` helper; the fused logits kernel reuses it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

FLAG_CLIP_LOW = 1
FLAG_CLIP_HIGH = 2
FLAG_DUAL = 4


@triton.jit
def grpo_token(  # noqa: ANN201 (a @triton.jit helper returns a tuple of tl tensors)
    lp,
    old,
    a,
    ref,
    valid,
    w,
    eps_low,
    eps_high,
    kl_coef,
    dual_c,
    HAS_REF: tl.constexpr,
    HAS_DUAL: tl.constexpr,
):
    """Per-token GRPO terms (fp32 in, fp32 out): (pg, kl, ratio, nlr, flags, grad); zeros where not valid."""
    lr = lp - old
    lrc = tl.minimum(tl.maximum(lr, -20.0), 20.0)
    inside = (lr >= -20.0) & (lr <= 20.0)
    ratio = tl.exp(lrc)
    rc = tl.minimum(tl.maximum(ratio, 1.0 - eps_low), 1.0 + eps_high)
    pg1 = -a * ratio
    pg2 = -a * rc
    clipped = pg2 > pg1
    pg = tl.maximum(pg1, pg2)
    dpg = tl.where(clipped | (inside == 0), 0.0, pg1)
    flags = tl.where(clipped & (a < 0), 1.0, 0.0) + tl.where(clipped & (a > 0), 2.0, 0.0)
    if HAS_DUAL:
        pg3 = -a * dual_c
        dual = (a < 0) & (pg > pg3)
        pg = tl.where(dual, pg3, pg)
        dpg = tl.where(dual, 0.0, dpg)
        flags += tl.where(dual, 4.0, 0.0)
    if HAS_REF:
        x = ref - lp
        xc = tl.minimum(tl.maximum(x, -20.0), 20.0)
        ex = tl.exp(xc)
        k = ex - xc - 1.0
        kl = tl.minimum(tl.maximum(k, -10.0), 10.0)
        kin = (x >= -20.0) & (x <= 20.0) & (k <= 10.0) & (k >= -10.0)
        dkl = tl.where(kin, 1.0 - ex, 0.0)
        g = w * (dpg + kl_coef * dkl)
    else:
        kl = tl.zeros_like(lp)
        g = w * dpg
    pg = tl.where(valid, pg, 0.0)
    kl = tl.where(valid, kl, 0.0)
    ratio = tl.where(valid, ratio, 0.0)
    nlr = tl.where(valid, -lrc, 0.0)
    flags = tl.where(valid, flags, 0.0)
    g = tl.where(valid, g, 0.0)
    return pg, kl, ratio, nlr, flags, g


@triton.jit
def _grpo_loss_kernel(
    lp_ptr,
    old_ptr,
    adv_ptr,
    mask_ptr,
    ref_ptr,
    scale_ptr,
    out_ptr,
    n_tokens,
    seq_len,
    eps_low,
    eps_high,
    kl_coef,
    dual_c,
    HAS_REF: tl.constexpr,
    HAS_DUAL: tl.constexpr,
    ADV_PER_TOKEN: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inb = offs < n_tokens
    row = offs // seq_len
    m = tl.load(mask_ptr + offs, mask=inb, other=0)
    valid = (m != 0) & inb
    lp = tl.load(lp_ptr + offs, mask=inb, other=0.0).to(tl.float32)
    old = tl.load(old_ptr + offs, mask=inb, other=0.0).to(tl.float32)
    if ADV_PER_TOKEN:
        a = tl.load(adv_ptr + offs, mask=inb, other=0.0).to(tl.float32)
    else:
        a = tl.load(adv_ptr + row, mask=inb, other=0.0).to(tl.float32)
    if HAS_REF:
        ref = tl.load(ref_ptr + offs, mask=inb, other=0.0).to(tl.float32)
    else:
        ref = lp
    w = tl.load(scale_ptr + row, mask=inb, other=0.0)
    pg, kl, ratio, nlr, flags, g = grpo_token(
        lp, old, a, ref, valid, w, eps_low, eps_high, kl_coef, dual_c, HAS_REF=HAS_REF, HAS_DUAL=HAS_DUAL
    )
    n64 = tl.cast(n_tokens, tl.int64)  # row k starts at k * n_tokens: 64-bit past 2**31 / 6 tokens
    out = out_ptr + offs
    tl.store(out, pg, mask=inb)
    tl.store(out + n64, kl, mask=inb)
    tl.store(out + 2 * n64, ratio, mask=inb)
    tl.store(out + 3 * n64, nlr, mask=inb)
    tl.store(out + 4 * n64, flags, mask=inb)
    tl.store(out + 5 * n64, g, mask=inb)


def grpo_token_terms_triton(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None,
    seq_scale: torch.Tensor,
    eps_low: float,
    eps_high: float,
    kl_coef: float,
    dual_clip: float | None,
    block: int = 1024,
) -> torch.Tensor:
    """Launch the per-token kernel on [B, L] inputs; returns the fp32 [6, B*L] buffer
    (rows: pg, kl, ratio, -clamped log-ratio, flags (1 clip-low, 2 clip-high, 4 dual), dloss/dlogp)."""
    b, seq = mask.shape
    n = b * seq
    out = torch.empty((6, n), dtype=torch.float32, device=logp.device)
    if n == 0:
        return out
    lp = logp.contiguous()
    old = old_logp.contiguous()
    adv = advantages.contiguous()
    m = mask.contiguous()
    if m.dtype == torch.bool:
        m = m.view(torch.uint8)
    ref = ref_logp.contiguous() if ref_logp is not None else lp
    scale = seq_scale.to(torch.float32).contiguous()
    grid = (triton.cdiv(n, block),)
    _grpo_loss_kernel[grid](
        lp,
        old,
        adv,
        m,
        ref,
        scale,
        out,
        n,
        seq,
        float(eps_low),
        float(eps_high),
        float(kl_coef),
        float(dual_clip) if dual_clip is not None else 0.0,
        HAS_REF=ref_logp is not None,
        HAS_DUAL=dual_clip is not None,
        ADV_PER_TOKEN=advantages.dim() == 2,
        BLOCK=block,
    )
    return out
