"""ops.token_logprobs: reference path on CPU, Triton kernels under the interpreter (subprocess) and on CUDA.

Tests named ``test_kernel_*`` exercise the Triton kernels. On CUDA they run natively (marked ``gpu``). On CPU
they run in a child pytest process started by ``test_kernels_under_triton_interpreter`` with
``TRITON_INTERPRET=1`` (Triton decorates its own library at import, so interpreter mode cannot be switched on
inside a process that already imported triton without poisoning compiled kernels).
"""

from __future__ import annotations

import inspect
import sys

import _interp

import pytest
import torch
from _interp import IN_CHILD, run_under_interpreter
from hypothesis import given, settings
from hypothesis import strategies as st

from microcoder_fast import ops
from microcoder_fast.ops import _dispatch
from microcoder_fast.ops.token_logprobs import token_logprobs
from microcoder_fast.reference.token_logprobs import (
    token_logprobs_backward_chunked,
    token_logprobs_forward_chunked,
    token_logprobs_naive,
)

NEG_INF = float("-inf")


ULP = {torch.float32: 2.0**-20, torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}


def bf16_tol(ref: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """One ulp of the output dtype at the reference value: 'within bf16 rounding'.

    (One ulp, not half: Triton's interpreter truncates fp32 -> bf16 where the GPU rounds to nearest.)"""
    return ref.abs() * ULP[dtype] + 1e-6


def make_logits(shape: tuple[int, ...], dtype: torch.dtype, scale: float = 3.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * scale).to(dtype)


def ref_grad(logits: torch.Tensor, target: torch.Tensor, temperature: float, g_logp, g_ent) -> torch.Tensor:
    """fp64 autograd gradient of sum(g_logp * logp + g_ent * entropy) (rows without -inf only)."""
    x = logits.detach().double().requires_grad_()
    logp, ent = token_logprobs_naive(x, target, temperature, True)
    loss = torch.zeros((), dtype=torch.float64)
    if g_logp is not None:
        loss = loss + (logp * g_logp.double()).sum()
    if g_ent is not None:
        loss = loss + (ent * g_ent.double()).sum()
    loss.backward()
    return x.grad


# ----------------------------------------------------------------------------------------------------------
# Kernel tests: the Triton path (interpreter child on CPU, native on CUDA)
# ----------------------------------------------------------------------------------------------------------

kdev = _interp.kdev  # fixture: the device whose tensors take the Triton path


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("entropy", [False, True])
def test_kernel_forward_backward_matches_reference(kdev, dtype, entropy):
    N, V, T = 24, 300, 1.2
    logits = make_logits((N, V), dtype).to(kdev)
    target = torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(1)).to(kdev)
    x = logits.clone().requires_grad_()
    out = token_logprobs(x, target, T, return_entropy=entropy)
    logp, ent = out if entropy else (out, None)
    ref_logp, ref_ent = token_logprobs_naive(logits.cpu(), target.cpu(), T, True)
    assert logp.dtype == torch.float32 and logp.shape == (N,)
    assert (logp.cpu().double() - ref_logp).abs().max() < 1e-5
    assert (logp <= 0).all()
    g_logp = torch.randn(N, generator=torch.Generator().manual_seed(2))
    g_ent = torch.randn(N, generator=torch.Generator().manual_seed(3)) if entropy else None
    loss = (logp * g_logp.to(kdev)).sum()
    if entropy:
        assert (ent.cpu().double() - ref_ent).abs().max() < 1e-4
        loss = loss + (ent * g_ent.to(kdev)).sum()
    loss.backward()
    want = ref_grad(logits.cpu(), target.cpu(), T, g_logp, g_ent)
    got = x.grad.cpu().double()
    tol = bf16_tol(want, dtype)
    assert x.grad.dtype == dtype
    assert ((got - want).abs() <= tol).all(), (got - want).abs().max()


def test_kernel_entropy_only_and_inplace_backward(kdev):
    N, V, T = 8, 200, 0.7
    logits = make_logits((2, N // 2, V), torch.bfloat16, seed=4).to(kdev)
    target = torch.randint(0, V, (2, N // 2), generator=torch.Generator().manual_seed(5)).to(kdev)
    # entropy only: the log-prob output gets no gradient
    x = logits.clone().requires_grad_()
    _, ent = token_logprobs(x, target, T, return_entropy=True)
    ent.sum().backward()
    want = ref_grad(logits.cpu(), target.cpu(), T, None, torch.ones(2, N // 2))
    assert ((x.grad.cpu().double() - want).abs() <= bf16_tol(want)).all()
    # in-place: same gradient, written into the logits buffer itself
    leaf = logits.clone().requires_grad_()
    buf = leaf * 1.0  # a non-leaf logits buffer, as an lm_head output would be
    logp, ent = token_logprobs(buf, target, T, return_entropy=True, inplace_backward=True)
    (logp.sum() + ent.sum()).backward()
    want = ref_grad(logits.cpu(), target.cpu(), T, torch.ones(2, N // 2), torch.ones(2, N // 2))
    assert ((leaf.grad.cpu().double() - want).abs() <= bf16_tol(want)).all()
    assert torch.equal(buf.detach().cpu(), leaf.grad.cpu())  # the buffer now holds the gradient


def test_kernel_neg_inf_and_all_negative_logits(kdev):
    V, T = 150, 1.0
    logits = make_logits((6, V), torch.float32, seed=6)
    logits[0] = NEG_INF  # a fully masked row
    logits[1, 10:] = NEG_INF  # a row with -inf entries
    logits[2] = -1000.0 + make_logits((V,), torch.float32, seed=7)  # all-negative logits (verl #2656)
    logits[3, 3] = NEG_INF  # the target's own logit is -inf
    logits[4] = 60.0 + make_logits((V,), torch.float32, scale=0.01, seed=8)  # near-uniform, large
    target = torch.tensor([1, 2, 3, 3, 5, 6])
    x = logits.to(kdev).requires_grad_()
    logp, ent = token_logprobs(x, target.to(kdev), T, return_entropy=True)
    ref_logp, ref_ent = token_logprobs_naive(logits, target, T, True)
    logp, ent = logp.cpu(), ent.cpu()
    assert logp[0] == NEG_INF and ent[0] == 0.0
    assert logp[3] == NEG_INF
    assert torch.isfinite(ent).all() and (logp <= 0).all()
    for r in (1, 2, 4, 5):
        assert abs(logp[r].item() - ref_logp[r].item()) < 1e-4 * max(1.0, abs(ref_logp[r].item()))
        assert abs(ent[r].item() - ref_ent[r].item()) < 1e-4
    (logp.to(kdev)[1:].clamp(min=-1e4).sum() + ent.to(kdev).sum()).backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[0] == 0).all()  # a fully masked row gets zero gradient
    assert (x.grad[1, 10:] == 0).all()


@pytest.mark.parametrize("V", [8193, 131072 + 77])
def test_kernel_vocab_over_tile_and_over_2_17(kdev, V):
    N = 2
    logits = make_logits((N, V), torch.bfloat16, seed=9).to(kdev)
    target = torch.tensor([V - 1, 4097], dtype=torch.int32).to(kdev)
    x = logits.clone().requires_grad_()
    logp, ent = token_logprobs(x, target, 1.3, return_entropy=True)
    ref_logp, ref_ent = token_logprobs_naive(logits.cpu(), target.cpu(), 1.3, True)
    assert (logp.cpu().double() - ref_logp).abs().max() < 1e-5
    assert (ent.cpu().double() - ref_ent).abs().max() < 1e-4
    logp.sum().backward()
    want = ref_grad(logits.cpu(), target.cpu(), 1.3, torch.ones(N), None)
    assert ((x.grad.cpu().double() - want).abs() <= bf16_tol(want)).all()


def test_kernel_noncontiguous_leading_dims_and_int32(kdev):
    B, L, V = 3, 7, 130
    full = make_logits((B, L + 1, V), torch.float16, seed=10).to(kdev)
    logits = full[:, :-1]  # the usual shift: not contiguous, still a [B, L, V] view
    target = torch.randint(0, V, (B, L), dtype=torch.int32).to(kdev)
    x = logits.detach().clone().requires_grad_()
    ref = token_logprobs(x, target.long(), 0.9)  # contiguous copy as a baseline
    y = full.detach().clone().requires_grad_()
    got = token_logprobs(y[:, :-1], target, 0.9)
    assert torch.equal(got, ref)
    got.sum().backward()
    ref.sum().backward()
    assert torch.equal(y.grad[:, :-1], x.grad) and (y.grad[:, -1] == 0).all()
    # transposed leading dims [L, B, V] -> [B, L, V]
    tl_ = full[:, :-1].transpose(0, 1)
    assert torch.equal(token_logprobs(tl_, target.t(), 0.9), ref.t())
    # leading dims that no two strides describe (copied)
    odd = make_logits((2, 3, 4, V), torch.float32, seed=11).to(kdev)[:, ::2, 1:]
    tgt = torch.randint(0, V, odd.shape[:-1]).to(kdev)
    ref_odd = token_logprobs_naive(odd.cpu(), tgt.cpu(), 1.0)
    assert (token_logprobs(odd, tgt).cpu().double() - ref_odd).abs().max() < 1e-5


def test_kernel_empty_and_bad_target(kdev):
    x = torch.zeros(0, 50, device=kdev, requires_grad=True)
    logp, ent = token_logprobs(x, torch.zeros(0, dtype=torch.long, device=kdev), 1.0, return_entropy=True)
    assert logp.shape == (0,) and ent.shape == (0,)
    (logp.sum() + ent.sum()).backward()
    assert x.grad.shape == (0, 50)
    y = torch.zeros(2, 0, 50, device=kdev)
    assert token_logprobs(y, torch.zeros(2, 0, dtype=torch.long, device=kdev)).shape == (2, 0)
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 50\).*\[-7, 3\]"):
        token_logprobs(torch.zeros(3, 50, device=kdev), torch.tensor([0, -7, 3], device=kdev))
    with pytest.raises(ValueError, match=r"\[0, 50\]"):
        token_logprobs(torch.zeros(3, 50, device=kdev), torch.tensor([0, 50, 3], device=kdev))
    # unchecked (e.g. inside CUDA graphs): a bad target yields NaN for that row, never an out-of-bounds read
    got = token_logprobs(torch.zeros(3, 50, device=kdev), torch.tensor([0, 50, -7], device=kdev), check_target=False)
    assert got[0].item() == pytest.approx(-torch.log(torch.tensor(50.0)).item()) and got[1:].isnan().all()


@pytest.mark.parametrize("check_target", [True, False])
def test_kernel_ignore_index(kdev, check_target):
    """A -100 target: log-prob 0, entropy 0, gradient 0 (also in place); the other rows are untouched."""
    N, V, T = 6, 70, 0.9
    logits = make_logits((N, V), torch.bfloat16, seed=21).to(kdev)
    target = torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(22)).to(kdev)
    target[[1, 4]] = -100
    keep = target != -100
    for inplace in (False, True):
        leaf = logits.clone().requires_grad_()
        x = leaf * 1.0
        logp, ent = token_logprobs(x, target, T, return_entropy=True, check_target=check_target,
                                   inplace_backward=inplace)  # fmt: skip
        (logp.sum() + ent.sum()).backward()
        assert torch.equal(logp[~keep].cpu(), torch.zeros(2)) and torch.equal(ent[~keep].cpu(), torch.zeros(2))
        assert torch.count_nonzero(leaf.grad[~keep]) == 0
        ref_logp, ref_ent = token_logprobs_naive(logits[keep].cpu(), target[keep].cpu(), T, True)
        assert (logp[keep].cpu().double() - ref_logp).abs().max() < 1e-5
        ones = torch.ones(int(keep.sum()))
        want = ref_grad(logits[keep].cpu(), target[keep].cpu(), T, ones, ones)
        assert ((leaf.grad[keep].cpu().double() - want).abs() <= bf16_tol(want)).all()
    # the kernel launcher with several full tiles and a tail (block_v=16)
    from microcoder_fast.kernels.token_logprobs import token_logprobs_bwd, token_logprobs_fwd

    lp, lse, en = token_logprobs_fwd(logits.view(1, N, V), target, 1 / T, True, block_v=16, ignore_index=-100)
    assert torch.equal(lp[~keep].cpu(), torch.zeros(2))
    assert (lp[keep].cpu().double() - ref_logp).abs().max() < 1e-5
    assert (en[keep].cpu().double() - ref_ent).abs().max() < 1e-4
    grad = torch.full_like(logits, 7.0).view(1, N, V)
    ones_n = torch.ones(N, device=kdev)
    token_logprobs_bwd(logits.view(1, N, V), grad, target, lse, en, ones_n, ones_n, 1 / T, block_v=16,
                       ignore_index=-100)  # fmt: skip
    assert torch.count_nonzero(grad[0][~keep]) == 0
    assert ((grad[0][keep].cpu().double() - want).abs() <= bf16_tol(want)).all()


def test_kernel_batch_invariance_and_grid_slices(kdev):
    from microcoder_fast.kernels.token_logprobs import row_slices, token_logprobs_fwd

    assert list(row_slices(7, 3)) == [(0, 3), (3, 3), (6, 1)]
    assert list(row_slices(0, 3)) == []
    assert list(row_slices(70_000, 65_535)) == [(0, 65_535), (65_535, 4_465)]
    V = 100
    logits = make_logits((7, V), torch.bfloat16, seed=12).to(kdev)
    target = torch.randint(0, V, (7,)).to(kdev)
    whole = token_logprobs_fwd(logits.view(1, 7, V), target, 1 / 1.1, True)
    sliced = token_logprobs_fwd(logits.view(1, 7, V), target, 1 / 1.1, True, max_grid_rows=3)
    for a, b in zip(whole, sliced):
        assert torch.equal(a, b)
    # a row's result does not depend on the rest of the batch
    for r in (0, 4, 6):
        alone = token_logprobs_fwd(logits[r : r + 1].view(1, 1, V), target[r : r + 1], 1 / 1.1, True)
        assert torch.equal(alone[0], whole[0][r : r + 1]) and torch.equal(alone[2], whole[2][r : r + 1])


def test_kernel_temperature_is_runtime_argument(kdev):
    from microcoder_fast.kernels import token_logprobs as K

    for kernel in (K.token_logprobs_fwd_kernel, K.token_logprobs_bwd_kernel):
        params = inspect.signature(kernel.fn).parameters
        assert params["inv_temperature"].annotation is inspect.Parameter.empty  # not tl.constexpr
        assert "constexpr" in str(params["BLOCK_V"].annotation)
    logits = make_logits((4, 64), torch.float32, seed=13).to(kdev)
    target = torch.randint(0, 64, (4,)).to(kdev)
    cache = getattr(K.token_logprobs_fwd_kernel, "device_caches", None)
    sizes = []
    for T in (0.6, 1.0, 1.2, 1.8):
        got = token_logprobs(logits, target, T)
        assert (got.cpu().double() - token_logprobs_naive(logits.cpu(), target.cpu(), T)).abs().max() < 1e-5
        if cache is not None and kdev.type == "cuda":
            sizes.append(sum(len(c[0]) for c in cache.values()))
    if sizes:
        assert len(set(sizes)) == 1, f"kernel recompiled when the temperature changed: {sizes}"


@pytest.mark.slow
def test_kernels_under_triton_interpreter():
    """Runs every test_kernel_* above in a child process where Triton interprets the kernels on CPU."""
    run_under_interpreter(__file__, "test_kernel_", timeout=600)


# ----------------------------------------------------------------------------------------------------------
# CPU path (torch reference, chunked) and the op's contract
# ----------------------------------------------------------------------------------------------------------

cpu_only = pytest.mark.skipif(IN_CHILD, reason="CPU-path tests run in the parent process")


@cpu_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("T", [1.0, 1.2, 0.6])
def test_cpu_matches_fp64_reference(dtype, T):
    logits = make_logits((5, 11, 1000), dtype)
    target = torch.randint(0, 1000, (5, 11))
    logp, ent = ops.token_logprobs(logits, target, T, return_entropy=True)
    ref_logp, ref_ent = token_logprobs_naive(logits, target, T, True)
    assert logp.dtype == ent.dtype == torch.float32 and logp.shape == (5, 11)
    assert (logp.double() - ref_logp).abs().max() < 1e-5
    assert (ent.double() - ref_ent).abs().max() < 1e-4
    assert torch.equal(ops.token_logprobs(logits, target, T), logp)


@cpu_only
@pytest.mark.parametrize("which", ["logp", "entropy", "both"])
def test_cpu_backward_matches_fp64_autograd(which):
    logits = make_logits((4, 9, 257), torch.bfloat16, seed=3)
    target = torch.randint(0, 257, (4, 9))
    x = logits.clone().requires_grad_()
    logp, ent = token_logprobs(x, target, 1.2, return_entropy=True)
    g1 = torch.randn(4, 9) if which != "entropy" else None
    g2 = torch.randn(4, 9) if which != "logp" else None
    loss = sum((o * g).sum() for o, g in ((logp, g1), (ent, g2)) if g is not None)
    loss.backward()
    want = ref_grad(logits, target, 1.2, g1, g2)
    assert x.grad.dtype == torch.bfloat16
    assert ((x.grad.double() - want).abs() <= bf16_tol(want)).all()


@cpu_only
def test_cpu_inplace_backward_and_edge_rows():
    logits = make_logits((6, 300), torch.float32, seed=5)
    logits[0] = NEG_INF
    logits[1, 7:] = NEG_INF
    logits[2] = -5000.0 + make_logits((300,), torch.float32, seed=6)
    target = torch.tensor([0, 2, 5, 7, 8, 9])
    a = logits.clone().requires_grad_()
    la, ea = token_logprobs(a, target, 1.5, return_entropy=True)
    (la[1:].sum() + ea.sum()).backward()
    leaf = logits.clone().requires_grad_()
    buf = leaf + 0.0
    lb, eb = token_logprobs(buf, target, 1.5, return_entropy=True, inplace_backward=True)
    (lb[1:].sum() + eb.sum()).backward()
    assert torch.equal(la, lb) and torch.equal(ea, eb)
    assert torch.equal(a.grad, leaf.grad) and torch.equal(buf.detach(), leaf.grad)
    assert la[0] == NEG_INF and ea[0] == 0 and (a.grad[0] == 0).all()
    assert torch.isfinite(a.grad).all() and torch.isfinite(ea).all()
    ref_logp, ref_ent = token_logprobs_naive(logits, target, 1.5, True)
    assert abs(ea[2].item() - ref_ent[2].item()) < 1e-4  # all-negative logits: entropy is not 0
    assert ea[2] > 1.0
    assert (la[1:].double() - ref_logp[1:]).abs().max() < 1e-3  # |z| ~ 3300: fp32 ulp-limited


@cpu_only
def test_cpu_chunking_is_exact_and_batch_invariant():
    logits3 = make_logits((2, 13, 97), torch.bfloat16, seed=7)
    target = torch.randint(0, 97, (26,))
    whole = token_logprobs_forward_chunked(logits3, target, 1.1, True, chunk_elems=1 << 30)
    tiny = token_logprobs_forward_chunked(logits3, target, 1.1, True, chunk_elems=97 * 3)
    for a, b in zip(whole, tiny):
        assert torch.equal(a, b)
    g = torch.randn(26)
    g1 = token_logprobs_backward_chunked(logits3, torch.empty_like(logits3), target, whole[1], whole[2], g, g, 1.1)
    g2 = token_logprobs_backward_chunked(
        logits3, torch.empty_like(logits3), target, whole[1], whole[2], g, g, 1.1, chunk_elems=97
    )
    assert torch.equal(g1, g2)


@cpu_only
def test_cpu_vocab_over_2_17_and_empty():
    V = 131072 + 77
    logits = make_logits((3, V), torch.bfloat16, seed=8)
    target = torch.tensor([0, V - 1, 12345], dtype=torch.int32)
    logp, ent = token_logprobs(logits, target, 1.2, return_entropy=True)
    ref_logp, ref_ent = token_logprobs_naive(logits, target, 1.2, True)
    assert (logp.double() - ref_logp).abs().max() < 1e-5 and (ent.double() - ref_ent).abs().max() < 1e-4
    x = torch.zeros(0, 4, 10, requires_grad=True)
    lp = token_logprobs(x, torch.zeros(0, 4, dtype=torch.long))
    lp.sum().backward()
    assert lp.shape == (0, 4) and x.grad.shape == (0, 4, 10)


@cpu_only
def test_errors_name_the_cause():
    logits = torch.zeros(2, 3, 10)
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 10\)"):
        token_logprobs(logits, torch.tensor([[0, 1, 10], [0, 0, 0]]))
    with pytest.raises(ValueError, match="-100"):  # without an ignore index, -100 is out of range
        token_logprobs(logits, torch.full((2, 3), -100), ignore_index=None)
    with pytest.raises(ValueError, match="target shape"):
        token_logprobs(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="integer token ids"):
        token_logprobs(logits, torch.zeros(2, 3))
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        token_logprobs(logits.double(), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(logits, torch.zeros(2, 3, dtype=torch.long), temperature=0.0)
    with pytest.raises(TypeError, match="Python float"):
        token_logprobs(logits, torch.zeros(2, 3, dtype=torch.long), temperature=torch.tensor(1.0))
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        with _dispatch.triton_interpreter():
            pass


@cpu_only
def test_rows3d_views_without_copy():
    full = torch.randn(3, 8, 20)
    v = _dispatch.rows3d(full[:, :-1])
    assert v.shape == (3, 7, 20) and v.data_ptr() == full.data_ptr()
    v = _dispatch.rows3d(full.transpose(0, 1))
    assert v.shape == (8, 3, 20) and v.data_ptr() == full.data_ptr()
    assert torch.equal(v, full.transpose(0, 1))
    assert _dispatch.rows3d(torch.randn(20)).shape == (1, 1, 20)
    assert _dispatch.rows3d(torch.randn(2, 3, 4, 20)[:, ::2]).shape[-1] == 20


@cpu_only
def test_public_namespace_and_torch_compile_fullgraph():
    logits = make_logits((2, 5, 64), torch.float32, seed=9)
    target = torch.randint(0, 64, (2, 5))
    first = ops.token_logprobs(logits, target, 1.2)
    assert torch.equal(ops.token_logprobs(logits, target, 1.2), first)  # second lookup still works

    def f(x, t):
        logp, ent = token_logprobs(x, t, 1.2, return_entropy=True)
        return (logp * 2.0).sum() - 0.1 * ent.sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    out_c = compiled(x1, target)
    out_e = f(x2, target)
    out_c.backward()
    out_e.backward()
    assert torch.allclose(out_c, out_e) and torch.allclose(x1.grad, x2.grad)

    def g(x, t):  # in-place gradient into an intermediate logits buffer, traced too
        return token_logprobs(x * 1.0, t, 1.1, inplace_backward=True).sum()

    x3, x4 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    torch.compile(g, fullgraph=True, backend="aot_eager")(x3, target).backward()
    g(x4, target).backward()
    assert torch.allclose(x3.grad, x4.grad)
    inductor = torch.compile(lambda x, t: token_logprobs(x, t, 0.8), fullgraph=True)
    assert torch.allclose(inductor(logits, target), token_logprobs(logits, target, 0.8))


try:
    import trl.trainer.utils as trl_utils
except ImportError:  # trl is in the test extra; skip the parity tests without it
    trl_utils = None


@cpu_only
@pytest.mark.skipif(trl_utils is None, reason="trl not installed (pip install -e .[test])")
@pytest.mark.parametrize("T", [1.0, 0.7])
def test_parity_with_trl(T):
    logits = make_logits((3, 6, 500), torch.float32, seed=10)
    target = torch.randint(0, 500, (3, 6))
    logp, ent = token_logprobs(logits, target, T, return_entropy=True)
    trl_logp = trl_utils.selective_log_softmax(logits / T, target)
    trl_ent = trl_utils.entropy_from_logits(logits / T)
    assert (logp - trl_logp).abs().max() < 1e-5
    assert (ent - trl_ent).abs().max() < 1e-4


@cpu_only
@settings(max_examples=25, deadline=None)
@given(
    V=st.integers(1, 64),
    T=st.floats(0.2, 3.0),
    scale=st.floats(0.0, 40.0),
    shift=st.floats(-1e3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_property_logprobs_normalised(V, T, scale, shift, seed):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(1, V, generator=g) * scale + shift).expand(V, V).contiguous()
    every = torch.arange(V)
    logp, ent = token_logprobs(logits, every, T, return_entropy=True)
    assert (logp <= 0).all()
    zmax = (abs(shift) + 6 * scale) / T  # fp32 rounding of lse is relative to the logits' magnitude
    assert abs(torch.logsumexp(logp.double(), 0).item()) < 1e-5 * V + 4e-7 * zmax
    assert 0.0 <= ent[0].item() <= torch.log(torch.tensor(float(V))).item() + 1e-5
    scaled = token_logprobs(logits / T, every, 1.0)
    assert (scaled - logp).abs().max() < 1e-4 * max(1.0, abs(shift) / T)



@cpu_only
@pytest.mark.slow
def test_instruction_budget_in_compiled_sass():
    """bench/sass_count.py compiles the log-prob kernels for sm_90a (no GPU needed) and counts the SASS
    instructions per element of their vocabulary loops: the issue-rate budget (issue 14) holds."""
    pytest.importorskip("triton.backends.nvidia")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "sass_count.py"
    spec = importlib.util.spec_from_file_location("sass_count", path)
    sc = importlib.util.module_from_spec(spec)
    sys.modules["sass_count"] = sc  # its dataclass looks the module up there
    spec.loader.exec_module(sc)
    try:
        rows = sc.count()
    except (FileNotFoundError, RuntimeError) as exc:  # a triton build without the bundled ptxas / nvdisasm
        pytest.skip(f"cannot compile for sm_90a here: {exc}")
    per = {(r["kernel"], r["loop"]): r["per_elem"] for r in rows}
    assert per[("token_logprobs fwd", "row_stats")] <= 9 and per[("token_logprobs fwd +entropy", "row_stats")] <= 9
    for kernel in ("token_logprobs bwd", "token_logprobs bwd +entropy grad", "fused_grpo_loss"):
        assert per[(kernel, "row_grad_store")] <= 12, (kernel, per)
    assert per[("fused_grpo_loss", "row_stats")] <= 9
    assert all(r["spills"] == 0 for r in rows)
