"""ops.linear_token_logprobs: CPU reference path, Triton kernels under the interpreter (subprocess), CUDA (gpu).

``test_kernel_*`` tests run the Triton path: natively on CUDA, and on CPU inside a child pytest process started
with ``TRITON_INTERPRET=1`` by ``test_kernels_under_triton_interpreter`` (see tests/test_token_logprobs.py).
"""

from __future__ import annotations

import _interp
import pytest
import torch
from _interp import IN_CHILD, run_under_interpreter

from microcoder_fast import ops
from microcoder_fast.ops import _dispatch
from microcoder_fast.ops.linear_token_logprobs import _cuda_backward, linear_token_logprobs
from microcoder_fast.reference.linear_token_logprobs import (
    linear_backward_chunked,
    linear_forward_chunked,
    linear_token_logprobs_naive,
)

cpu_only = pytest.mark.skipif(IN_CHILD, reason="CPU-path tests run in the parent process")


def make(N: int, D: int, V: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, D, generator=g).to(dtype)
    w = (torch.randn(V, D, generator=g) * (2.0 / D**0.5)).to(dtype)
    t = torch.randint(0, V, (N,), generator=g)
    return h, w, t


def reference(h, w, t, T, g_logp, g_ent):
    """fp64 forward values and gradients of sum(g_logp * logp + g_ent * ent)."""
    hr = h.detach().double().requires_grad_()
    wr = w.detach().double().requires_grad_()
    logp, ent = linear_token_logprobs_naive(hr, wr, t, T, True)
    loss = (logp * g_logp.double()).sum()
    if g_ent is not None:
        loss = loss + (ent * g_ent.double()).sum()
    loss.backward()
    return logp.detach(), ent.detach(), hr.grad, wr.grad


def grad_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> bool:
    """fp32: 1e-5 relative to the largest entry. bf16/fp16: two ulps of the largest entry -- d(logits) is held
    in the input dtype before the two GEMMs, as in the materialised bf16 computation."""
    scale = want.abs().max().item()
    tol = 1e-5 if dtype == torch.float32 else (2.0**-6 if dtype == torch.bfloat16 else 2.0**-9)
    return (got.double() - want).abs().max().item() <= tol * scale + 1e-7


kdev = _interp.kdev  # fixture: the device whose tensors take the Triton path


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("entropy", [False, True])
def test_kernel_forward_backward_matches_reference(kdev, dtype, entropy):
    N, D, V, T = 37, 48, 300, 1.2  # none a multiple of the interpreter tiles (16, 32, 32)
    h, w, t = make(N, D, V, dtype)
    g_logp = torch.randn(N, generator=torch.Generator().manual_seed(1))
    g_ent = torch.randn(N, generator=torch.Generator().manual_seed(2)) if entropy else None
    hh = h.to(kdev).requires_grad_()
    ww = w.to(kdev).requires_grad_()
    out = linear_token_logprobs(hh, ww, t.to(kdev), T, return_entropy=entropy)
    logp, ent = out if entropy else (out, None)
    ref_logp, ref_ent, ref_gh, ref_gw = reference(h, w, t, T, g_logp, g_ent)
    assert logp.dtype == torch.float32 and (logp <= 0).all()
    assert (logp.cpu().double() - ref_logp).abs().max() < 1e-5
    loss = (logp * g_logp.to(kdev)).sum()
    if entropy:
        assert (ent.cpu().double() - ref_ent).abs().max() < 1e-4
        loss = loss + (ent * g_ent.to(kdev)).sum()
    loss.backward()
    assert hh.grad.dtype == dtype and ww.grad.dtype == dtype
    assert grad_close(hh.grad.cpu(), ref_gh, dtype) and grad_close(ww.grad.cpu(), ref_gw, dtype)


def test_kernel_backward_chunking_and_batch_invariance(kdev):
    N, D, V, T = 40, 32, 200, 0.8
    h, w, t = make(N, D, V, torch.float32, seed=3)
    h, w, t = h.to(kdev), w.to(kdev), t.to(kdev)
    logp, ent = linear_token_logprobs(h, w, t, T, return_entropy=True)
    # the Triton backward driver with tiny chunks equals the default chunking
    import importlib

    mod = importlib.import_module("microcoder_fast.ops.linear_token_logprobs")

    _, lse, ent2 = torch.ops.microcoder_fast.linear_token_logprobs_fwd(h, w, t, T, True, True)
    g = torch.randn(N, generator=torch.Generator().manual_seed(4)).to(kdev)
    big = mod._cuda_backward(h, w, t, lse, ent2, g, g, T)
    small = _cuda_backward(h, w, t, lse, ent2, g, g, T, chunk_tokens=16, chunk_vocab=64)
    assert torch.allclose(big[0], small[0], atol=1e-6) and torch.allclose(big[1], small[1], atol=1e-6)
    _, _, ref_gh, ref_gw = reference(h.cpu(), w.cpu(), t.cpu(), T, g.cpu(), g.cpu())
    assert grad_close(small[0].cpu(), ref_gh, torch.float32) and grad_close(small[1].cpu(), ref_gw, torch.float32)
    # vocabulary splits merge exactly (one split vs several)
    from microcoder_fast.kernels.linear_token_logprobs import linear_token_logprobs_fwd

    one = linear_token_logprobs_fwd(h, w, t, 1 / T, True, split_width=V)
    many = linear_token_logprobs_fwd(h, w, t, 1 / T, True, split_width=32)
    for a, b in zip(one, many):
        assert torch.allclose(a, b, atol=2e-6, rtol=1e-6)
    assert torch.allclose(many[0], logp) and torch.allclose(many[2], ent)
    # a token's result does not depend on the rest of the batch (or its position in a tile)
    for r in (0, 17, 39):
        alone = linear_token_logprobs(h[r : r + 1], w, t[r : r + 1], T)
        assert torch.equal(alone, logp[r : r + 1])


def test_kernel_grouped_order_covers_every_tile_and_split(kdev):
    """More token tiles than one group (GROUP_N) and a last, partial group: every (tile, split) pair runs once."""
    from microcoder_fast.kernels.linear_token_logprobs import GROUP_N, linear_token_logprobs_fwd

    N, D, V, T = 16 * (GROUP_N + 2) + 5, 32, 64, 0.9  # 16-token tiles under the interpreter
    h, w, t = make(N, D, V, torch.float32, seed=11)
    logp, _, ent = linear_token_logprobs_fwd(h.to(kdev), w.to(kdev), t.to(kdev), 1 / T, True, split_width=16)
    want_lp, want_ent = linear_token_logprobs_naive(h, w, t, T, True)
    assert (logp.cpu().double() - want_lp).abs().max() < 1e-5 and (ent.cpu().double() - want_ent).abs().max() < 1e-4


def test_kernel_frozen_weight_pays_no_weight_gemm(kdev, monkeypatch):
    """needs_input_grad: a frozen lm_head gets no d weight and no [V, D] GEMM runs (spied); d hidden is right."""
    calls = []
    real = _dispatch.addmm_f32
    monkeypatch.setattr(_dispatch, "addmm_f32", lambda acc, a, b: (calls.append(tuple(acc.shape)), real(acc, a, b)))
    N, D, V, T = 24, 32, 90, 1.1
    h, w, t = make(N, D, V, torch.float32, seed=8)
    g = torch.randn(N, generator=torch.Generator().manual_seed(9))
    _, _, ref_gh, ref_gw = reference(h, w, t, T, g, None)
    for frozen in (True, False):
        calls.clear()
        hh = h.clone().to(kdev).requires_grad_()
        ww = w.clone().to(kdev).requires_grad_(not frozen)
        (linear_token_logprobs(hh, ww, t.to(kdev), T) * g.to(kdev)).sum().backward()
        assert grad_close(hh.grad.cpu(), ref_gh, torch.float32)
        weight_gemms = [c for c in calls if c[1] == D and c[0] != N]
        if frozen:
            assert ww.grad is None and calls and not weight_gemms, calls
        else:
            assert weight_gemms and grad_close(ww.grad.cpu(), ref_gw, torch.float32)


def test_kernel_ignore_index(kdev):
    """A -100 target: log-prob 0, entropy 0, no gradient from its row; the other rows are as without it."""
    N, D, V, T = 10, 32, 70, 1.1
    h, w, t = make(N, D, V, torch.float32, seed=12)
    t[[2, 7]] = -100
    keep = t != -100
    hh, ww = h.clone().to(kdev).requires_grad_(), w.clone().to(kdev).requires_grad_()
    logp, ent = linear_token_logprobs(hh, ww, t.to(kdev), T, return_entropy=True)
    g = torch.randn(N, generator=torch.Generator().manual_seed(13))
    ((logp * g.to(kdev)).sum() + ent.sum()).backward()
    assert torch.equal(logp[~keep].cpu(), torch.zeros(2)) and torch.equal(ent[~keep].cpu(), torch.zeros(2))
    assert torch.count_nonzero(hh.grad[~keep]) == 0
    ref_lp, ref_ent, ref_gh, ref_gw = reference(h[keep], w, t[keep], T, g[keep], torch.ones(int(keep.sum())))
    assert (logp[keep].cpu().double() - ref_lp).abs().max() < 1e-5
    assert grad_close(hh.grad[keep].cpu(), ref_gh, torch.float32) and grad_close(ww.grad.cpu(), ref_gw, torch.float32)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        linear_token_logprobs(hh, ww, t.to(kdev), T, ignore_index=None)


def test_kernel_leading_dims_empty_and_errors(kdev):
    h, w, t = make(12, 32, 70, torch.bfloat16, seed=5)
    h3, t3 = h.view(3, 4, 32).to(kdev), t.view(3, 4).to(kdev).int()
    got = linear_token_logprobs(h3, w.to(kdev), t3, 1.1)
    assert got.shape == (3, 4)
    want = linear_token_logprobs_naive(h, w, t, 1.1)
    assert (got.cpu().double().reshape(-1) - want).abs().max() < 1e-5
    empty_h = torch.zeros(0, 32, device=kdev, dtype=torch.bfloat16, requires_grad=True)
    ww = w.to(kdev).requires_grad_()
    out = linear_token_logprobs(empty_h, ww, torch.zeros(0, dtype=torch.long, device=kdev))
    out.sum().backward()
    assert out.shape == (0,) and empty_h.grad.shape == (0, 32) and (ww.grad == 0).all()
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 70\)"):
        linear_token_logprobs(h.to(kdev), w.to(kdev), torch.full((12,), 70, device=kdev))


@pytest.mark.slow
def test_kernels_under_triton_interpreter():
    run_under_interpreter(__file__, "test_kernel_", timeout=600)


@cpu_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("T", [1.0, 1.2])
def test_cpu_chunked_matches_naive(dtype, T):
    N, D, V = 50, 24, 333
    h, w, t = make(N, D, V, dtype, seed=6)
    g = torch.randn(N, generator=torch.Generator().manual_seed(7))
    logp, lse, ent = linear_forward_chunked(h, w, t, T, True, chunk_tokens=16, chunk_vocab=64)
    ref_logp, ref_ent, ref_gh, ref_gw = reference(h, w, t, T, g, g)
    assert (logp.double() - ref_logp).abs().max() < 1e-5 and (ent.double() - ref_ent).abs().max() < 1e-4
    gh, gw = linear_backward_chunked(h, w, t, lse, ent, g, g, T, chunk_tokens=16, chunk_vocab=64)
    assert gh.dtype == dtype and gw.dtype == dtype
    tol = {torch.float32: 0.0, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}[dtype]
    # the CPU path keeps d(logits) in fp32: within output rounding of the reference entry by entry, plus
    # fp32 accumulation noise
    for got, want in ((gh, ref_gh), (gw, ref_gw)):
        assert ((got.double() - want).abs() <= want.abs() * tol + 1e-5 * want.abs().max()).all()


@cpu_only
def test_cpu_op_autograd_compile_and_big_vocab():
    h, w, t = make(6, 16, 131072 + 77, torch.float32, seed=8)
    hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
    logp, ent = ops.linear_token_logprobs(hh, ww, t, 1.2, return_entropy=True)
    ref_logp, ref_ent, ref_gh, ref_gw = reference(h, w, t, 1.2, torch.ones(6), None)
    assert (logp.double() - ref_logp).abs().max() < 1e-5 and (ent.double() - ref_ent).abs().max() < 1e-4
    logp.sum().backward()
    assert grad_close(hh.grad, ref_gh, torch.float32) and grad_close(ww.grad, ref_gw, torch.float32)

    h, w, t = make(10, 16, 90, torch.float32, seed=9)

    def f(a, b, c):
        lp, en = linear_token_logprobs(a, b, c, 0.9, return_entropy=True)
        return lp.sum() + 0.5 * en.sum()

    a1, b1 = h.clone().requires_grad_(), w.clone().requires_grad_()
    a2, b2 = h.clone().requires_grad_(), w.clone().requires_grad_()
    out_c = torch.compile(f, fullgraph=True, backend="aot_eager")(a1, b1, t)
    out_e = f(a2, b2, t)
    out_c.backward()
    out_e.backward()
    assert torch.allclose(out_c, out_e) and torch.allclose(a1.grad, a2.grad) and torch.allclose(b1.grad, b2.grad)


@cpu_only
def test_errors_name_the_cause():
    h, w, t = make(4, 8, 20, torch.float32)
    with pytest.raises(ValueError, match="disagree on D"):
        linear_token_logprobs(h, w[:, :7], t)
    with pytest.raises(ValueError, match=r"weight must be \[V, D\]"):
        linear_token_logprobs(h, w[None], t)
    with pytest.raises(TypeError, match="share a dtype"):
        linear_token_logprobs(h, w.bfloat16(), t)
    with pytest.raises(ValueError, match="target shape"):
        linear_token_logprobs(h, w, t[:3])
    with pytest.raises(ValueError, match=r"\[-1, "):
        linear_token_logprobs(h, w, torch.tensor([0, 1, -1, 2]))
    with pytest.raises(ValueError, match="temperature"):
        linear_token_logprobs(h, w, t, temperature=-1.0)
