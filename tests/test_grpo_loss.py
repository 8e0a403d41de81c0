"""ops.grpo_loss: against the autograd oracle, verl's formulas, TRL's GRPOTrainer loss (its own method, called with
a minimal stand-in trainer), edge cases, torch.compile, and the Triton kernel (interpreter subprocess on CPU,
native on CUDA)."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from _interp import kdev, run_under_interpreter  # noqa: F401 (kdev is a fixture)

from microcoder_fast.ops import _dispatch
from microcoder_fast.ops._loss import AGGS, METRIC_NAMES
from microcoder_fast.ops.grpo_loss import grpo_loss
from microcoder_fast.reference.grpo_loss import grpo_loss_reference


def _inputs(B=4, L=9, per_token=False, seed=0, device="cpu", spread=0.4, fully_masked_row=True):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(B, L, generator=g) * 3
    old = logp + torch.randn(B, L, generator=g) * spread
    ref = logp + torch.randn(B, L, generator=g) * spread
    adv = torch.randn(B, L, generator=g) if per_token else torch.randn(B, generator=g)
    mask = torch.rand(B, L, generator=g) > 0.3
    mask[0, :2] = True
    if fully_masked_row and B > 1:
        mask[1] = False
    t = [x.to(device) for x in (logp, old, ref, adv, mask)]
    return t


def _check(device, agg, per_token, kl_coef, dual_clip, dtype=torch.float32, seed=0):
    logp, old, ref, adv, mask = _inputs(per_token=per_token, seed=seed, device=device)
    kw = dict(
        kl_coef=kl_coef,
        ref_logp=ref if kl_coef or seed % 2 else None,
        agg=agg,
        dual_clip=dual_clip,
        max_len=12,
    )
    x = logp.to(dtype).requires_grad_()
    loss, metrics = grpo_loss(x, old, adv, mask, **kw)
    (grad,) = torch.autograd.grad(loss, x)
    xr = logp.to(dtype).cpu().requires_grad_()
    cpu = lambda t: t.cpu() if t is not None else None
    rloss, rmetrics = grpo_loss_reference(
        xr, old.cpu(), adv.cpu(), mask.cpu(), **{**kw, "ref_logp": cpu(kw["ref_logp"])}
    )
    (rgrad,) = torch.autograd.grad(rloss, xr)
    torch.testing.assert_close(loss.cpu(), rloss.detach(), rtol=1e-5, atol=1e-6)
    assert grad.dtype == dtype
    torch.testing.assert_close(grad.cpu().float(), rgrad.float(), rtol=1e-5, atol=1e-6)
    assert set(metrics) == set(rmetrics)
    for k in rmetrics:
        torch.testing.assert_close(metrics[k].cpu(), rmetrics[k].float(), rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("per_token", [False, True])
@pytest.mark.parametrize("kl_coef,dual_clip", [(0.0, None), (0.05, 3.0)])
def test_matches_autograd_oracle(agg, per_token, kl_coef, dual_clip):
    _check("cpu", agg, per_token, kl_coef, dual_clip)


def test_clipping_actually_happens_and_metrics_are_fractions():
    logp, old, ref, adv, mask = _inputs(spread=1.0, fully_masked_row=False)
    loss, m = grpo_loss(logp, old, adv, mask, dual_clip=2.0)
    n = mask.sum()
    ratio = torch.exp(logp - old)
    a = adv[:, None].expand_as(logp)
    low = ((ratio < 0.8) & (a < 0) & mask).sum() / n
    high = ((ratio > 1.28) & (a > 0) & mask).sum() / n
    assert float(low) > 0 and float(high) > 0  # the test data exercises both sides
    torch.testing.assert_close(m["clipfrac_low"], low.float())
    torch.testing.assert_close(m["clipfrac_high"], high.float())
    torch.testing.assert_close(m["pg_clipfrac"], (low + high).float())
    torch.testing.assert_close(m["ratio_max"], ratio[mask].max())
    torch.testing.assert_close(m["ppo_kl"], (old - logp)[mask].mean())
    assert float(m["pg_clipfrac_lower"]) == float(((ratio > 2.0) & (a < 0) & mask).sum() / n)
    assert all(v.dim() == 0 and not v.requires_grad for v in m.values())


def test_bf16_and_fp16_logp():
    for dt in (torch.bfloat16, torch.float16):
        _check("cpu", "token-mean", False, 0.05, 3.0, dtype=dt)


# ---------------------------------------------------------------------------------------------------------------
# verl conventions (verl is not installed: its compute_policy_loss / agg_loss / kl_penalty as documented)
# ---------------------------------------------------------------------------------------------------------------


def _verl_masked_mean(x, m):
    return (x * m).sum() / (m.sum() + 1e-8)


def _verl_agg(loss_mat, mask, mode, horizon):
    """verl's agg_loss (current main, one process, global_batch_size unset)."""
    if mode == "token-mean":
        return (loss_mat * mask).sum() / mask.sum()
    seq_sum = (loss_mat * mask).sum(-1)
    if mode == "seq-mean-token-sum":
        return seq_sum.sum() / loss_mat.shape[0]
    if mode == "seq-mean-token-sum-norm":
        return (seq_sum / horizon).sum() / loss_mat.shape[0]
    if mode == "seq-mean-token-mean":
        return (seq_sum / (mask.sum(-1) + 1e-8)).sum() / loss_mat.shape[0]
    raise ValueError(mode)


def _verl_policy_loss(old, logp, adv, mask, low, high, c, mode, horizon):
    nak = torch.clamp(logp - old, -20.0, 20.0)
    ratio = torch.exp(nak)
    ppo_kl = _verl_masked_mean(-nak, mask)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1 - low, 1 + high)
    cp1 = torch.maximum(pg1, pg2)
    clipfrac = _verl_masked_mean(torch.gt(pg2, pg1).float(), mask)
    pg3 = -adv * c
    cp2 = torch.min(pg3, cp1)
    clipfrac_lower = _verl_masked_mean(torch.gt(cp1, pg3) * (adv < 0).float(), mask)
    losses = torch.where(adv < 0, cp2, cp1)
    return _verl_agg(losses, mask, mode, horizon), clipfrac, ppo_kl, clipfrac_lower


def _verl_low_var_kl(logp, ref):
    kl = torch.clamp(ref - logp, -20, 20)
    return torch.clamp(torch.exp(kl) - kl - 1, -10, 10)


@pytest.mark.parametrize(
    "agg", ["token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm", "seq-mean-token-mean"]
)
def test_verl_conventions(agg):
    logp, old, ref, adv, mask = _inputs(per_token=True, spread=1.0, fully_masked_row=False)
    m = mask.float()
    L = logp.shape[1]
    x = logp.clone().requires_grad_()
    vloss, clipfrac, ppo_kl, clipfrac_lower = _verl_policy_loss(old, x, adv, m, 0.2, 0.28, 3.0, agg, L)
    vloss = vloss + 0.1 * _verl_agg(_verl_low_var_kl(x, ref), m, agg, L)
    (vgrad,) = torch.autograd.grad(vloss, x)
    y = logp.clone().requires_grad_()
    loss, metrics = grpo_loss(y, old, adv, mask, 0.2, 0.28, 0.1, ref, agg, dual_clip=3.0, max_len=L)
    (grad,) = torch.autograd.grad(loss, y)
    torch.testing.assert_close(loss, vloss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, vgrad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(metrics["pg_clipfrac"], clipfrac, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(metrics["pg_clipfrac_lower"], clipfrac_lower, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(metrics["ppo_kl"], ppo_kl, rtol=1e-5, atol=1e-7)
    assert float(clipfrac) > 0 and float(clipfrac_lower) > 0


def test_fully_masked_sequence_excluded_from_seq_mean_token_mean():
    logp, old, _, adv, mask = _inputs(fully_masked_row=True)
    keep = mask.any(-1)
    loss_all, _ = grpo_loss(logp, old, adv, mask, agg="seq-mean-token-mean")
    loss_kept, _ = grpo_loss(logp[keep], old[keep], adv[keep], mask[keep], agg="seq-mean-token-mean")
    torch.testing.assert_close(loss_all, loss_kept)


# ---------------------------------------------------------------------------------------------------------------
# TRL: GRPOTrainer._compute_loss itself, called on a minimal stand-in for the trainer
# ---------------------------------------------------------------------------------------------------------------


class _Acc:
    num_processes = 1

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x

    def reduce(self, x, reduction="sum"):
        return x


def _trl_loss(loss_type, logp, old, adv, mask, beta, ref, eps_low, eps_high, max_completion_length):
    trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")
    B, L = logp.shape
    fake = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        aux_loss_enabled=False,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=beta,
        loss_type=loss_type,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        use_vllm=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        max_completion_length=max_completion_length,
        accelerator=_Acc(),
        _entropy_bonus_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
    )
    inputs = {
        "prompt_ids": torch.zeros(B, 1, dtype=torch.long),
        "prompt_mask": torch.ones(B, 1, dtype=torch.long),
        "completion_ids": torch.zeros(B, L, dtype=torch.long),
        "completion_mask": mask.long(),
        "advantages": adv,
        "old_per_token_logps": old,
        "num_items_in_batch": mask.sum(),
    }
    if beta:
        inputs["ref_per_token_logps"] = ref
    loss = trl_grpo.GRPOTrainer._compute_loss(fake, None, inputs)
    return loss, fake._metrics["train"]


TRL_TO_AGG = {
    "grpo": "seq-mean-token-mean",
    "bnpo": "token-mean",
    "dapo": "token-mean",
    "dr_grpo": "seq-mean-token-sum-norm",
}


@pytest.mark.parametrize("loss_type", sorted(TRL_TO_AGG))
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_trl_loss_parity(loss_type, beta):
    logp, old, ref, adv, mask = _inputs(spread=0.8, fully_masked_row=False)
    x = logp.clone().requires_grad_()
    tloss, tmetrics = _trl_loss(loss_type, x, old, adv, mask, beta, ref, 0.2, 0.28, 16)
    (tgrad,) = torch.autograd.grad(tloss, x)
    y = logp.clone().requires_grad_()
    loss, m = grpo_loss(
        y, old, adv, mask, 0.2, 0.28, beta, ref if beta else None, TRL_TO_AGG[loss_type], max_len=16
    )
    (grad,) = torch.autograd.grad(loss, y)
    torch.testing.assert_close(loss, tloss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, tgrad, rtol=1e-5, atol=1e-7)
    assert tmetrics["clip_ratio/low_mean"][-1] == pytest.approx(float(m["clipfrac_low"]), abs=1e-6)
    assert tmetrics["clip_ratio/high_mean"][-1] == pytest.approx(float(m["clipfrac_high"]), abs=1e-6)
    assert tmetrics["clip_ratio/region_mean"][-1] == pytest.approx(float(m["pg_clipfrac"]), abs=1e-6)
    if beta:
        assert tmetrics["kl"][-1] == pytest.approx(float(m["kl_mean"]), rel=1e-5, abs=1e-7)


def test_trl_grpo_counts_fully_masked_sequences_we_do_not():
    """TRL's grpo averages over all B sequences (a fully masked one contributes 0); verl's and our
    seq-mean-token-mean leave it out: ours == TRL's × B / (sequences with tokens)."""
    logp, old, ref, adv, mask = _inputs(fully_masked_row=True)
    tloss, _ = _trl_loss("grpo", logp, old, adv, mask, 0.0, ref, 0.2, 0.28, 16)
    loss, _ = grpo_loss(logp, old, adv, mask, agg="seq-mean-token-mean")
    B = logp.shape[0]
    torch.testing.assert_close(loss, tloss * B / mask.any(-1).sum(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Edge cases and errors
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("agg", AGGS)
def test_fully_masked_batch_is_zero_without_nan(agg):
    logp, old, ref, adv, mask = _inputs()
    logp[0, 0] = float("-inf")
    old[1, 1] = float("nan")
    x = logp.clone().requires_grad_()
    loss, m = grpo_loss(x, old, adv, torch.zeros_like(mask), kl_coef=0.1, ref_logp=ref, agg=agg, max_len=9)
    loss.backward()
    assert float(loss) == 0.0 and torch.equal(x.grad, torch.zeros_like(x))
    assert all(torch.isfinite(v) for v in m.values())


def test_masked_garbage_does_not_leak():
    logp, old, ref, adv, mask = _inputs()
    x1 = logp.clone().requires_grad_()
    l1, m1 = grpo_loss(x1, old, adv, mask)
    l1.backward()
    logp2, old2 = logp.clone(), old.clone()
    logp2[~mask] = float("-inf")
    old2[~mask] = float("nan")
    x2 = logp2.requires_grad_()
    l2, m2 = grpo_loss(x2, old2, adv, mask)
    l2.backward()
    assert torch.equal(l1, l2) and torch.equal(x1.grad, x2.grad)
    for k in m1:
        assert torch.equal(m1[k], m2[k]), k


def test_empty_batch():
    x = torch.zeros(0, 7, requires_grad=True)
    loss, m = grpo_loss(x, torch.zeros(0, 7), torch.zeros(0), torch.zeros(0, 7, dtype=torch.bool))
    loss.backward()
    assert float(loss) == 0.0 and x.grad.shape == (0, 7)
    assert set(m) == set(METRIC_NAMES)


def test_entropy_metric():
    logp, old, _, adv, mask = _inputs()
    ent = torch.rand_like(logp)
    _, m = grpo_loss(logp, old, adv, mask, entropy=ent)
    torch.testing.assert_close(m["entropy_mean"], ent[mask].mean())


def test_errors_are_clear():
    logp, old, ref, adv, mask = _inputs()
    with pytest.raises(ValueError, match="max_len"):
        grpo_loss(logp, old, adv, mask, agg="seq-mean-token-sum-norm")
    with pytest.raises(ValueError, match="needs ref_logp"):
        grpo_loss(logp, old, adv, mask, kl_coef=0.1)
    with pytest.raises(ValueError, match="agg must be one of"):
        grpo_loss(logp, old, adv, mask, agg="mean")
    with pytest.raises(ValueError, match="advantages must be per sequence"):
        grpo_loss(logp, old, adv[:-1], mask)
    with pytest.raises(ValueError, match=r"old_logp must be \[B, L\]=\(4, 9\), the \[B, L\] of logp"):
        grpo_loss(logp, old[:, :-1], adv, mask)
    # a wrongly shaped mask is named as the culprit (not old_logp, which matches logp)
    with pytest.raises(ValueError, match=r"mask must be \[B, L\]=\(4, 9\), the \[B, L\] of logp.*got \(4, 8\)"):
        grpo_loss(logp, old, adv, mask[:, :-1])
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        grpo_loss(logp, old, adv, mask, dual_clip=0.5)
    with pytest.raises(ValueError, match="eps_low"):
        grpo_loss(logp, old, adv, mask, eps_low=1.5)
    with pytest.raises(ValueError, match=r"logp must be \[B, L\]"):
        grpo_loss(logp[0], old, adv, mask)


def test_compile_fullgraph():
    logp, old, ref, adv, mask = _inputs(per_token=True)

    def f(x):
        loss, m = grpo_loss(
            x, old, adv, mask, kl_coef=0.1, ref_logp=ref, agg="seq-mean-token-mean", dual_clip=3.0
        )
        return loss, m["pg_clipfrac"], m["ratio_max"]

    cf = torch.compile(f, fullgraph=True)
    x1 = logp.clone().requires_grad_()
    out = cf(x1)
    out[0].backward()
    x2 = logp.clone().requires_grad_()
    ref_out = f(x2)
    ref_out[0].backward()
    for a, b in zip(out, ref_out):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(x1.grad, x2.grad)


# ---------------------------------------------------------------------------------------------------------------
# Triton kernel == reference (CPU: interpreter subprocess; CUDA: native)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("per_token", [False, True])
@pytest.mark.parametrize("kl_coef,dual_clip,seed", [(0.0, None, 0), (0.0, None, 1), (0.05, 3.0, 2)])
def test_kernel_matches_reference(kdev, agg, per_token, kl_coef, dual_clip, seed):
    assert _dispatch.use_triton(kdev)
    _check(kdev, agg, per_token, kl_coef, dual_clip, seed=seed)


def test_kernel_edge_cases(kdev):
    device = kdev
    assert _dispatch.use_triton(device)
    logp, old, ref, adv, mask = _inputs(device=device, B=3, L=1500)  # > one BLOCK of tokens
    x = logp.clone().requires_grad_()
    loss, _ = grpo_loss(x, old, adv, torch.zeros_like(mask), kl_coef=0.1, ref_logp=ref)
    loss.backward()
    assert float(loss) == 0.0 and torch.count_nonzero(x.grad) == 0
    _check(device, "token-mean", False, 0.0, None, dtype=torch.bfloat16)
    e = torch.zeros(0, 5, device=device, requires_grad=True)
    loss, _ = grpo_loss(
        e, torch.zeros(0, 5, device=device), torch.zeros(0, device=device), torch.zeros(0, 5, device=device)
    )
    loss.backward()
    assert float(loss) == 0.0


def test_kernels_under_interpreter():
    """Run this file's kernel tests on CPU under TRITON_INTERPRET=1 in a fresh process (the variable must be set
    before triton is imported, and must not leak into other test files)."""
    run_under_interpreter(__file__, "kernel_ and interp")
