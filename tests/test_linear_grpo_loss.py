"""ops.linear_grpo_loss: the GRPO loss from hidden states with three GEMMs, against the materialised fp32 oracle
(autograd through hidden @ weight.T), chunking, frozen weight, loss_scale, ignore_index, the GEMM count, and the
Triton row kernel (interpreter subprocess on CPU, native on CUDA)."""

from __future__ import annotations

import pytest
import torch
from _interp import kdev, run_under_interpreter  # noqa: F401 (kdev is a fixture)

from microcoder_fast.ops import _dispatch
from microcoder_fast.ops.linear_grpo_loss import linear_grpo_loss
from microcoder_fast.reference.linear_grpo_loss import linear_grpo_loss_reference


def _inputs(B=3, L=5, D=16, V=41, T=1.2, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, L, D, generator=g)
    w = torch.randn(V, D, generator=g) * (2.0 / D**0.5)
    target = torch.randint(0, V, (B, L), generator=g)
    with torch.no_grad():
        lp = torch.log_softmax(h @ w.T / T, -1).gather(-1, target[..., None])[..., 0]
    old = lp + 0.4 * torch.randn(B, L, generator=g)
    ref = lp + 0.4 * torch.randn(B, L, generator=g)
    adv = torch.randn(B, generator=g)
    mask = torch.rand(B, L, generator=g) > 0.3
    mask[0, 0] = True
    target[1, 2] = -100  # an ignored token (leaves the loss like a masked one)
    mask[1, 2] = True
    return [t.to(device) for t in (h, w, target, old, ref, adv, mask)]


def _compare(device, chunk_tokens=None, frozen=False, loss_scale=1.0, **kw):
    h, w, target, old, ref, adv, mask = _inputs(device=device)
    kw = dict(temperature=1.2, kl_coef=0.05, ref_logp=ref, dual_clip=3.0, **kw)
    hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_(not frozen)
    loss, m = linear_grpo_loss(hh, ww, target, old, adv, mask, compute_entropy=True, loss_scale=loss_scale,
                               chunk_tokens=chunk_tokens, **kw)  # fmt: skip
    (3.0 * loss).backward()
    rh, rw = h.cpu().clone().requires_grad_(), w.cpu().clone().requires_grad_(not frozen)
    kept = (mask & (target != -100)).cpu()
    cpu_kw = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    rloss, rm = linear_grpo_loss_reference(rh, rw, target.cpu().clamp(min=0), old.cpu(), adv.cpu(), kept, **cpu_kw)
    (3.0 * loss_scale * rloss).backward()
    torch.testing.assert_close(loss.detach().cpu(), loss_scale * rloss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(hh.grad.cpu(), rh.grad, rtol=1e-4, atol=1e-6)
    if frozen:
        assert ww.grad is None
    else:
        torch.testing.assert_close(ww.grad.cpu(), rw.grad, rtol=1e-4, atol=1e-6)
    for k in ("pg_loss", "kl_loss", "pg_clipfrac", "num_tokens", "entropy_mean"):
        torch.testing.assert_close(m[k].cpu(), rm[k].float(), rtol=1e-5, atol=1e-5, msg=k)


@pytest.mark.parametrize(
    "case",
    [dict(), dict(chunk_tokens=4), dict(chunk_tokens=4, frozen=True), dict(loss_scale=0.5, agg="seq-mean-token-mean")],
)
def test_cpu_matches_oracle(case):
    _compare("cpu", **case)


@pytest.mark.parametrize("frozen", [False, True])
def test_three_gemms_forward_and_backward(frozen, monkeypatch):
    """One chunk: logits, d hidden, d weight -- three GEMMs in all (two with a frozen weight), none in backward."""
    calls = []
    for name in ("mm", "addmm", "matmul"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _r=real, _n=name, **k: (calls.append(_n), _r(*a, **k))[1])
    h, w, target, old, ref, adv, mask = _inputs()
    hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_(not frozen)
    loss, _ = linear_grpo_loss(hh, ww, target, old, adv, mask)
    n_fwd = len(calls)
    loss.backward()
    assert (n_fwd, len(calls) - n_fwd) == ((2, 0) if frozen else (3, 0)), calls
    assert hh.grad is not None and (ww.grad is None) == frozen


def test_errors_are_clear():
    h, w, target, old, ref, adv, mask = _inputs()
    with pytest.raises(ValueError, match=r"hidden must be \[B, L, D\]"):
        linear_grpo_loss(h[0], w, target, old, adv, mask)
    with pytest.raises(ValueError, match=r"weight must be \[V, D\]"):
        linear_grpo_loss(h, w[:, :-1], target, old, adv, mask)
    with pytest.raises(TypeError, match="share a dtype"):
        linear_grpo_loss(h, w.to(torch.bfloat16), target, old, adv, mask)
    with pytest.raises(ValueError, match=r"mask must be \[B, L\]=\(3, 5\), the \[B, L\] of hidden"):
        linear_grpo_loss(h, w, target, old, adv, mask[:, :-1])
    bad = target.clone()
    bad[0, 0] = 41
    with pytest.raises(ValueError, match="outside the vocabulary"):
        linear_grpo_loss(h, w, bad, old, adv, mask)


@pytest.mark.parametrize("case", [dict(), dict(chunk_tokens=4, frozen=True), dict(loss_scale=0.5, chunk_tokens=6)])
def test_kernel_matches_oracle(kdev, case):
    assert _dispatch.use_triton(kdev)
    _compare(kdev, **case)


def test_kernels_under_interpreter():
    run_under_interpreter(__file__, "kernel_ and interp")
