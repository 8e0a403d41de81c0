"""ops.group_advantages: formula, verl / TRL conventions, the truncation mask, errors, and the Triton kernel
(under TRITON_INTERPRET=1 in a subprocess on CPU, natively on CUDA)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import torch
from _interp import kdev, run_under_interpreter  # noqa: F401 (kdev is a fixture)

from microcoder_fast.ops import _dispatch
from microcoder_fast.ops.group_advantages import group_advantages
from microcoder_fast.reference.group_advantages import group_advantages_reference


def _numpy_advantages(r: np.ndarray, g: int, ddof: int, eps: float) -> np.ndarray:
    out = np.zeros_like(r, dtype=np.float64)
    for i in range(0, len(r), g):
        grp = r[i : i + g].astype(np.float64)
        out[i : i + g] = 0.0 if g == 1 else (grp - grp.mean()) / (grp.std(ddof=ddof) + eps)
    return out


@pytest.mark.parametrize("std,ddof", [("unbiased", 1), ("population", 0)])
def test_matches_numpy_formula(std, ddof):
    rng = np.random.default_rng(0)
    r = rng.normal(size=32).astype(np.float32)
    got = group_advantages(torch.from_numpy(r), group_size=8, std=std, eps=1e-6)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), _numpy_advantages(r, 8, ddof, 1e-6), rtol=1e-5, atol=1e-6)


def test_binary_rewards_hand_values():
    r = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    got = group_advantages(r, group_size=4, eps=0.0)
    # group 1: mean .75, unbiased std .5
    assert torch.allclose(got[:4], torch.tensor([0.5, -1.5, 0.5, 0.5]))
    got = group_advantages(r, group_size=4, eps=1e-6)
    assert torch.equal(got[4:], torch.zeros(4))  # a group with equal rewards carries no signal


def test_dr_grpo_no_std_and_scale_none():
    r = torch.tensor([3.0, 1.0, 2.0, 6.0])
    expect = torch.tensor([1.0, -1.0, -2.0, 2.0])
    assert torch.allclose(group_advantages(r, group_size=2, std="none"), expect)
    assert torch.allclose(group_advantages(r, group_size=2, scale="none"), expect)


def test_mask_zeroes_after_normalisation():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    keep = torch.tensor([1, 1, 0, 1, 1, 1])
    full = group_advantages(r, group_size=3)
    masked = group_advantages(r, group_size=3, mask=keep)
    # the masked response still counts in its group's statistics: the others are unchanged
    assert masked[2] == 0.0
    assert torch.equal(masked[[0, 1, 3, 4, 5]], full[[0, 1, 3, 4, 5]])
    assert full[2] != 0.0
    assert torch.equal(group_advantages(r, group_size=3, mask=keep.bool()), masked)


def test_group_of_one():
    r = torch.tensor([0.7, -2.0])
    assert torch.equal(group_advantages(r, group_size=1), torch.zeros(2))
    raw = group_advantages(r, group_size=1, singleton="raw", eps=1e-6)
    assert torch.allclose(raw, r / (1 + 1e-6))
    assert torch.allclose(group_advantages(r, group_size=1, singleton="raw", std="none"), r)


def _verl_grpo_advantages(scores: torch.Tensor, index: list, eps: float, norm_by_std: bool) -> torch.Tensor:
    """verl's compute_grpo_outcome_advantage, written from its documented behaviour (ANCHORS.md): scores grouped by
    prompt uid; torch.std (unbiased) per group; a group of one gets mean 0 and std 1."""
    scores = scores.clone()
    id2score = defaultdict(list)
    for i in range(len(scores)):
        id2score[index[i]].append(scores[i])
    id2mean, id2std = {}, {}
    for idx, vals in id2score.items():
        if len(vals) == 1:
            id2mean[idx], id2std[idx] = torch.tensor(0.0), torch.tensor(1.0)
        else:
            t = torch.stack(vals)
            id2mean[idx], id2std[idx] = torch.mean(t), torch.std(t)
    for i in range(len(scores)):
        if norm_by_std:
            scores[i] = (scores[i] - id2mean[index[i]]) / (id2std[index[i]] + eps)
        else:
            scores[i] = scores[i] - id2mean[index[i]]
    return scores


@pytest.mark.parametrize("group_size", [1, 4])
@pytest.mark.parametrize("norm_by_std", [True, False])
def test_verl_convention(group_size, norm_by_std):
    torch.manual_seed(1)
    r = torch.randint(0, 2, (16,)).float() + 0.1 * torch.randn(16)
    index = [i // group_size for i in range(16)]
    expect = _verl_grpo_advantages(r, index, 1e-6, norm_by_std)
    got = group_advantages(
        r,
        group_size=group_size,
        scale="group",
        std="unbiased" if norm_by_std else "none",
        eps=1e-6,
        singleton="raw",
    )
    assert torch.allclose(got, expect, rtol=1e-6, atol=1e-6)


def _trl_advantages(rewards: torch.Tensor, g: int, scale_rewards: str) -> torch.Tensor:
    """The advantage lines of TRL's GRPOTrainer._generate_and_score_completions (sum_then_normalize; they live
    inside the trainer method, so they are replicated here) using TRL's own ``nanstd``."""
    from trl.trainer.utils import nanstd

    mean_grouped = torch.nanmean(rewards.view(-1, g), dim=1).repeat_interleave(g, dim=0)
    if scale_rewards in ("group", "none"):
        std = (
            nanstd(rewards.view(-1, g), dim=1).repeat_interleave(g, dim=0)
            if g > 1
            else torch.zeros_like(rewards)
        )
    else:
        std = nanstd(rewards).expand_as(rewards)
    adv = rewards - mean_grouped
    if scale_rewards != "none":
        adv = adv / (std + 1e-4)
    return torch.nan_to_num(adv, nan=0.0)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("with_nan", [False, True])
def test_trl_convention(scale, with_nan):
    pytest.importorskip("trl")
    torch.manual_seed(2)
    r = torch.randint(0, 3, (24,)).float()
    if with_nan:
        r[[3, 10, 11]] = float("nan")
    expect = _trl_advantages(r, 8, scale)
    got = group_advantages(r, group_size=8, scale=scale, std="unbiased", eps=1e-4, nan_policy="ignore")
    assert torch.allclose(got, expect, rtol=1e-5, atol=1e-5)


def test_trl_group_of_one_gives_zero():
    pytest.importorskip("trl")
    r = torch.tensor([1.0, 0.0, 1.0])
    assert torch.equal(
        group_advantages(r, group_size=1, eps=1e-4, nan_policy="ignore"), _trl_advantages(r, 1, "group")
    )


def test_errors_are_clear():
    r = torch.zeros(10)
    with pytest.raises(ValueError, match="cannot be split into groups of 8"):
        group_advantages(r, group_size=8)
    with pytest.raises(ValueError, match="group_size must be a positive int"):
        group_advantages(r, group_size=0)
    with pytest.raises(ValueError, match="std must be one of"):
        group_advantages(r, group_size=5, std="sample")
    with pytest.raises(ValueError, match="scale must be one of"):
        group_advantages(r, group_size=5, scale="global")
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(r.view(2, 5), group_size=5)
    with pytest.raises(TypeError, match="floating"):
        group_advantages(torch.zeros(10, dtype=torch.long), group_size=5)
    with pytest.raises(ValueError, match="mask must have the rewards' shape"):
        group_advantages(r, group_size=5, mask=torch.ones(9))
    r[4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        group_advantages(r, group_size=5)


def test_empty_batch():
    out = group_advantages(torch.zeros(0), group_size=8)
    assert out.shape == (0,) and out.dtype == torch.float32


def test_compile_fullgraph():
    f = torch.compile(lambda r, m: group_advantages(r, group_size=4, mask=m), fullgraph=True)
    r = torch.rand(16)
    m = torch.rand(16) > 0.2
    assert torch.allclose(f(r, m), group_advantages(r, group_size=4, mask=m))


# ----------------------------------------------------------------------------------------------------------------
# Triton kernel == reference (CPU: interpreter subprocess; CUDA: native)
# ----------------------------------------------------------------------------------------------------------------

OPTIONS = [
    dict(scale="group", std="unbiased", eps=1e-6),
    dict(scale="group", std="population", eps=1e-6),
    dict(scale="group", std="none"),
    dict(scale="batch", std="unbiased", eps=1e-4),
    dict(scale="none"),
    dict(scale="group", std="unbiased", eps=1e-6, singleton="raw"),
    dict(scale="group", std="unbiased", eps=1e-4, nan_policy="ignore"),
]


@pytest.mark.parametrize("group_size", [1, 3, 8, 20])
@pytest.mark.parametrize("opt", range(len(OPTIONS)))
def test_kernel_matches_reference(kdev, group_size, opt):
    device = kdev
    kw = OPTIONS[opt]
    torch.manual_seed(group_size * 10 + opt)
    n = group_size * 5
    r = (torch.randint(0, 2, (n,)).float() + 0.3 * torch.randn(n)).to(device)
    if kw.get("nan_policy") == "ignore":
        r[1] = float("nan")
    mask = torch.rand(n, device=device) > 0.25
    assert _dispatch.use_triton(r.device)
    for m in (None, mask):
        got = group_advantages(r, group_size=group_size, mask=m, **kw)
        expect = group_advantages_reference(
            r.cpu(), group_size, mask=m.cpu() if m is not None else None, **kw
        )
        torch.testing.assert_close(got.cpu(), expect, rtol=2e-5, atol=2e-5)


def test_kernels_under_interpreter():
    """Run this file's kernel tests on CPU under TRITON_INTERPRET=1 in a fresh process (the variable must be set
    before triton is imported, and must not leak into other test files)."""
    run_under_interpreter(__file__, "kernel_ and interp")
