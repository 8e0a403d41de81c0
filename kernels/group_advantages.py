"""Triton kernel: group-normalised advantages, one program per group (groups on grid axis 0).

Statistics in fp32 with a two-pass (mean, then squared deviations) formula; NaN rewards are left out of the
statistics and get advantage 0. ``eps`` is a runtime value. Imports only torch and triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _group_advantages_kernel(
    r_ptr,
    m_ptr,
    bstd_ptr,
    out_ptr,
    group_size,
    eps,
    USE_STD: tl.constexpr,
    UNBIASED: tl.constexpr,
    BATCH_STD: tl.constexpr,
    RAW_SINGLETON: tl.constexpr,
    HAS_MASK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    gid = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    inb = offs < group_size
    base = gid * group_size
    r = tl.load(r_ptr + base + offs, mask=inb, other=float("nan")).to(tl.float32)
    valid = r == r  # not NaN
    rz = tl.where(valid, r, 0.0)
    count = tl.sum(valid.to(tl.float32), axis=0)
    mean = tl.sum(rz, axis=0) / tl.maximum(count, 1.0)
    centred = r - mean
    if USE_STD:
        if BATCH_STD:
            sd = tl.load(bstd_ptr).to(tl.float32)
        else:
            dev = tl.where(valid, centred, 0.0)
            ss = tl.sum(dev * dev, axis=0)
            if UNBIASED:
                denom = count - 1.0
            else:
                denom = count
            sd = tl.sqrt(ss / tl.maximum(denom, 1.0))
        adv = centred / (sd + eps)
        raw = r / (1.0 + eps)
    else:
        adv = centred
        raw = r
    single = count <= 1.0
    if RAW_SINGLETON:
        adv = tl.where(single, raw, adv)
    else:
        adv = tl.where(single, 0.0, adv)
    adv = tl.where(valid, adv, 0.0)
    if HAS_MASK:
        keep = tl.load(m_ptr + base + offs, mask=inb, other=0.0).to(tl.float32)
        adv = adv * keep
    tl.store(out_ptr + base + offs, adv, mask=inb)


def group_advantages_triton(
    rewards: torch.Tensor,
    group_size: int,
    eps: float,
    use_std: bool,
    unbiased: bool,
    batch_std: torch.Tensor | None,
    raw_singleton: bool,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """Launch the kernel. ``rewards`` [N] (N % group_size == 0, checked by the caller); returns fp32 [N].

    ``batch_std`` (a 1-element tensor) replaces the per-group std when given (TRL's ``scale_rewards="batch"``).
    """
    r = rewards.contiguous()
    out = torch.empty(r.shape, dtype=torch.float32, device=r.device)
    n_groups = r.numel() // group_size
    if n_groups == 0:
        return out
    m = mask.contiguous().to(torch.float32) if mask is not None else r
    bstd = batch_std.reshape(1).to(torch.float32) if batch_std is not None else r
    block = max(triton.next_power_of_2(group_size), 16)
    _group_advantages_kernel[(n_groups,)](
        r,
        m,
        bstd,
        out,
        group_size,
        float(eps),
        USE_STD=use_std,
        UNBIASED=unbiased,
        BATCH_STD=batch_std is not None,
        RAW_SINGLETON=raw_singleton,
        HAS_MASK=mask is not None,
        BLOCK=block,
    )
    return out
