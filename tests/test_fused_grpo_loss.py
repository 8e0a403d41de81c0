"""ops.fused_grpo_loss: against the naive fp32 oracle (log_softmax + verl-style loss + autograd), TRL's
selective_log_softmax / entropy, the chunked CPU path, in-place gradients, edge cases, torch.compile, and the Triton
kernel (interpreter subprocess on CPU, native on CUDA)."""

from __future__ import annotations

import pytest
import torch
from _interp import kdev, run_under_interpreter  # noqa: F401 (kdev is a fixture)

from microcoder_fast.ops import _dispatch
from microcoder_fast.ops._loss import METRIC_NAMES, reduce_token_rows, sequence_scale, token_weights
from microcoder_fast.ops.fused_grpo_loss import fused_grpo_loss
from microcoder_fast.ops.grpo_loss import grpo_loss
from microcoder_fast.reference.fused_grpo_loss import fused_grpo_loss_chunked, fused_grpo_loss_reference


def _inputs(B=3, L=5, V=37, T=1.2, per_token=False, seed=0, dtype=torch.float32, device="cpu", spread=0.4):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, L, V, generator=g) * 2).to(dtype)
    target = torch.randint(0, V, (B, L), generator=g)
    with torch.no_grad():
        lp = torch.log_softmax(logits.float() / T, -1).gather(-1, target[..., None])[..., 0]
    old = lp + torch.randn(B, L, generator=g) * spread
    ref = lp + torch.randn(B, L, generator=g) * spread
    adv = torch.randn(B, L, generator=g) if per_token else torch.randn(B, generator=g)
    mask = torch.rand(B, L, generator=g) > 0.3
    mask[0, 0] = True
    if B > 1:
        mask[1] = False
        target[1, 0] = -100  # masked tokens may hold an ignore index
    return [t.to(device) for t in (logits, target, old, ref, adv, mask)]


def _compare(device, T=1.2, per_token=False, kl_coef=0.0, dual_clip=None, agg="token-mean", dtype=torch.float32,
             inplace=False, seed=0, V=37, B=3, L=5, scale=2.0, entropy=True):  # fmt: skip
    logits, target, old, ref, adv, mask = _inputs(B, L, V, T, per_token, seed, dtype, device)
    kw = dict(
        temperature=T,
        kl_coef=kl_coef,
        ref_logp=ref if kl_coef else None,
        agg=agg,
        dual_clip=dual_clip,
        max_len=8,
    )
    leaf = logits.clone().requires_grad_()
    x = leaf * 1.0 if inplace else leaf
    loss, m = fused_grpo_loss(
        x, target, old, adv, mask, compute_entropy=entropy, inplace_backward=inplace, **kw
    )
    (scale * loss).backward()
    # fp32 oracle on the fp32 upcast of the same logits
    cpu = lambda t: t.cpu() if t is not None else None
    rleaf = logits.cpu().float().requires_grad_()
    kw_cpu = {**kw, "ref_logp": cpu(kw["ref_logp"])}
    rloss, rm = fused_grpo_loss_reference(rleaf, target.cpu(), old.cpu(), adv.cpu(), mask.cpu(), **kw_cpu)
    (scale * rloss).backward()
    torch.testing.assert_close(loss.detach().cpu(), rloss.detach(), rtol=1e-5, atol=1e-6)
    assert leaf.grad.dtype == dtype
    # within one unit of the storage dtype's last place (Triton's interpreter truncates fp32 -> bf16 casts, the
    # GPU rounds to nearest, hence one ulp rather than half)
    ulp = {torch.float32: 1e-5, torch.bfloat16: 2**-7, torch.float16: 2**-10}[dtype]
    tol = dict(rtol=ulp, atol=1e-7 if dtype == torch.float32 else 1e-6)
    torch.testing.assert_close(leaf.grad.cpu().float(), rleaf.grad, **tol)
    expected_keys = set(METRIC_NAMES) | ({"entropy_mean"} if entropy else set())
    assert set(m) == expected_keys
    for k in m:
        torch.testing.assert_close(m[k].cpu(), rm[k].float(), rtol=1e-5, atol=1e-5, msg=k)
    if inplace:  # the gradient lives in the logits buffer now
        torch.testing.assert_close(x.detach(), leaf.grad, rtol=0, atol=0)
    else:  # the logits are left untouched
        assert torch.equal(leaf.detach(), logits)
    return loss


CASES = [
    dict(),
    dict(per_token=True, kl_coef=0.05, dual_clip=3.0, agg="seq-mean-token-mean"),
    dict(agg="seq-mean-token-sum-norm", T=0.7),
    dict(agg="seq-mean-token-sum", kl_coef=0.1),
    dict(agg="token-sum", dual_clip=2.0, per_token=True),
    dict(dtype=torch.bfloat16, kl_coef=0.05),
    dict(dtype=torch.float16, per_token=True),
    dict(inplace=True, kl_coef=0.05, dual_clip=3.0),
    dict(inplace=True, dtype=torch.bfloat16),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_cpu_matches_oracle(case):
    _compare("cpu", **CASES[case])


def test_chunked_path_small_chunks_and_strided_logits():
    """The CPU path over many chunks, on logits whose leading dimensions are not contiguous."""
    logits, target, old, ref, adv, mask = _inputs(B=3, L=6, V=29, per_token=True)
    big = torch.randn(12, 3, 29)
    big[::2] = logits.transpose(0, 1)
    strided = big[::2].transpose(0, 1)  # [3, 6, 29], stride(0)=29, stride(1)=2*3*29
    assert not strided.is_contiguous()
    rleaf = logits.clone().requires_grad_()
    rloss, rm = fused_grpo_loss_reference(
        rleaf, target, old, adv, mask, 1.3, kl_coef=0.1, ref_logp=ref, dual_clip=3.0
    )
    rloss.backward()
    scale = sequence_scale(mask, "token-mean", None)
    for chunk_rows in (1, 4, 100):
        grad = torch.empty_like(logits)
        rows = fused_grpo_loss_chunked(
            strided, target, old, adv, mask, ref, scale, 1.3, 0.2, 0.28, 0.1, 3.0, grad, True,
            chunk_bytes=chunk_rows * 4 * 29,
        )  # fmt: skip
        loss, metrics = reduce_token_rows(rows, mask.reshape(-1), token_weights(scale, 6), 0.1)
        torch.testing.assert_close(loss, rloss.detach())
        torch.testing.assert_close(grad, rleaf.grad)
        torch.testing.assert_close(metrics[METRIC_NAMES.index("pg_clipfrac")], rm["pg_clipfrac"])


def test_trl_selective_log_softmax_and_entropy_parity():
    utils = pytest.importorskip("trl.trainer.utils")
    T = 1.2
    logits, target, old, ref, adv, mask = _inputs(B=2, L=6, V=50, T=T, spread=0.8)
    lp = utils.selective_log_softmax(logits / T, target.clamp(min=0))
    ent = utils.entropy_from_logits(logits / T)
    loss_trl_path, m_trl = grpo_loss(lp, old, adv, mask, entropy=ent)
    loss, m = fused_grpo_loss(logits, target, old, adv, mask, temperature=T, compute_entropy=True)
    torch.testing.assert_close(loss, loss_trl_path, rtol=1e-5, atol=1e-6)
    for k in m_trl:
        torch.testing.assert_close(m[k], m_trl[k], rtol=1e-5, atol=1e-6, msg=k)


def test_grad_scaling_and_accumulation():
    logits, target, old, ref, adv, mask = _inputs()
    leaf = logits.clone().requires_grad_()
    loss, _ = fused_grpo_loss(leaf, target, old, adv, mask, temperature=1.2)
    (0.5 * loss + (leaf**2).sum() * 0.01).backward()
    rleaf = logits.clone().requires_grad_()
    rloss, _ = fused_grpo_loss_reference(rleaf, target, old, adv, mask, 1.2)
    (0.5 * rloss + (rleaf**2).sum() * 0.01).backward()
    torch.testing.assert_close(leaf.grad, rleaf.grad)


def test_neg_inf_logits():
    logits, target, old, ref, adv, mask = _inputs(per_token=True)
    logits[0, 0, :] = float("-inf")  # an all -inf row inside the mask
    mask[0, 0] = True
    logits[0, 1, :5] = float("-inf")
    target[0, 2] = 7
    logits[0, 2, 7] = float("-inf")  # the sampled token itself has -inf logit
    mask[0, 1:3] = True
    logits[2, 1, :] = float("-inf")  # all -inf and masked
    mask[2, 1] = False
    leaf = logits.clone().requires_grad_()
    loss, m = fused_grpo_loss(leaf, target, old, adv, mask, temperature=1.2, compute_entropy=True, kl_coef=0.1,
                              ref_logp=ref)  # fmt: skip
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(leaf.grad).all()
    assert all(torch.isfinite(v) for v in m.values())
    assert torch.count_nonzero(leaf.grad[0, 0]) == 0 and torch.count_nonzero(leaf.grad[2, 1]) == 0
    assert torch.count_nonzero(leaf.grad[0, 1, :5]) == 0


def test_int32_targets_and_no_grad():
    logits, target, old, ref, adv, mask = _inputs()
    l64, m64 = fused_grpo_loss(logits, target, old, adv, mask, temperature=1.2)
    l32, m32 = fused_grpo_loss(logits, target.int(), old, adv, mask, temperature=1.2)
    assert torch.equal(l64, l32)
    with torch.no_grad():
        l_ng, _ = fused_grpo_loss(logits.clone().requires_grad_(), target, old, adv, mask, temperature=1.2)
    assert torch.equal(l_ng, l64) and not l_ng.requires_grad


def test_fully_masked_and_empty():
    logits, target, old, ref, adv, mask = _inputs()
    for inplace in (False, True):
        leaf = logits.clone().requires_grad_()
        x = leaf * 1.0
        loss, m = fused_grpo_loss(x, target, old, adv, torch.zeros_like(mask), inplace_backward=inplace,
                                  agg="seq-mean-token-mean")  # fmt: skip
        loss.backward()
        assert float(loss) == 0.0 and torch.count_nonzero(leaf.grad) == 0
        assert all(torch.isfinite(v) for v in m.values())
    e = torch.zeros(0, 4, 11, requires_grad=True)
    loss, m = fused_grpo_loss(e, torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 4), torch.zeros(0),
                              torch.zeros(0, 4, dtype=torch.bool))  # fmt: skip
    loss.backward()
    assert float(loss) == 0.0 and e.grad.shape == e.shape


def test_errors_are_clear():
    logits, target, old, ref, adv, mask = _inputs()
    bad = target.clone()
    bad[0, 0] = 37
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fused_grpo_loss(logits, bad, old, adv, mask)
    bad[0, 0] = -1
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fused_grpo_loss(logits, bad, old, adv, mask)
    with pytest.raises(ValueError, match="temperature"):
        fused_grpo_loss(logits, target, old, adv, mask, temperature=0.0)
    with pytest.raises(ValueError, match=r"logits must be \[B, L, V\]"):
        fused_grpo_loss(logits[0], target, old, adv, mask)
    with pytest.raises(TypeError, match="int32 or int64"):
        fused_grpo_loss(logits, target.float(), old, adv, mask)
    with pytest.raises(TypeError, match="fp32, bf16 or fp16"):
        fused_grpo_loss(logits.double(), target, old, adv, mask)
    with pytest.raises(ValueError, match="max_len"):
        fused_grpo_loss(logits, target, old, adv, mask, agg="seq-mean-token-sum-norm")
    nc = logits.transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    with pytest.raises(ValueError, match="contiguous"):
        fused_grpo_loss(nc, target, old, adv, mask, inplace_backward=True)


def test_compile_fullgraph():
    logits, target, old, ref, adv, mask = _inputs(per_token=True)

    def f(x, T, inplace):
        loss, m = fused_grpo_loss(x * 1.0, target, old, adv, mask, temperature=T, kl_coef=0.1, ref_logp=ref,
                                  compute_entropy=True, inplace_backward=inplace)  # fmt: skip
        return loss, m["pg_clipfrac"], m["entropy_mean"]

    for inplace in (False, True):
        cf = torch.compile(f, fullgraph=True)
        x1 = logits.clone().requires_grad_()
        out = cf(x1, 1.2, inplace)
        out[0].backward()
        x2 = logits.clone().requires_grad_()
        eager = f(x2, 1.2, inplace)
        eager[0].backward()
        for a, b in zip(out, eager):
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(x1.grad, x2.grad)


# ---------------------------------------------------------------------------------------------------------------
# Triton kernel == reference (CPU: interpreter subprocess; CUDA: native)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", range(len(CASES)))
def test_kernel_matches_oracle(kdev, case):
    assert _dispatch.use_triton(kdev)
    _compare(kdev, **CASES[case])


def test_kernel_multi_tile_strided_inplace(kdev):
    """Vocabulary over several tiles (block_v=16, V not a multiple), strided leading dims, in-place gradient."""
    from microcoder_fast.kernels.fused_grpo_loss import fused_grpo_loss_fwd

    device = kdev
    logits, target, old, ref, adv, mask = _inputs(B=2, L=4, V=53, per_token=True, device=device)
    rleaf = logits.cpu().clone().requires_grad_()
    rloss, rm = fused_grpo_loss_reference(rleaf, target.cpu(), old.cpu(), adv.cpu(), mask.cpu(), 0.9, kl_coef=0.1,
                                          ref_logp=ref.cpu(), dual_clip=3.0)  # fmt: skip
    rloss.backward()
    big = torch.zeros(2, 8, 53, device=device)
    big[:, ::2] = logits
    strided = big[:, ::2]
    grad = torch.empty(2, 4, 53, device=device)
    scale = sequence_scale(mask, "token-mean", None)
    args = (target.reshape(-1), old.reshape(-1), adv.reshape(-1), mask.reshape(-1), ref.reshape(-1), scale)
    buf = fused_grpo_loss_fwd(strided, grad, *args, 1 / 0.9, 0.2, 0.28, 0.1, 3.0, True, True, block_v=16)
    torch.testing.assert_close(grad.cpu(), rleaf.grad, rtol=1e-5, atol=1e-7)
    w = scale.repeat_interleave(4)
    torch.testing.assert_close((buf[0] * w).sum().cpu() + 0.1 * (buf[1] * w).sum().cpu(), rloss.detach())
    # in place: the gradient replaces the logits
    inplace = logits.clone()
    fused_grpo_loss_fwd(inplace, inplace, *args, 1 / 0.9, 0.2, 0.28, 0.1, 3.0, False, True, block_v=16)
    torch.testing.assert_close(inplace.cpu(), rleaf.grad, rtol=1e-5, atol=1e-7)


def test_kernel_edge_cases(kdev):
    device = kdev
    assert _dispatch.use_triton(device)
    logits, target, old, ref, adv, mask = _inputs(device=device)
    logits[0, 0, :] = float("-inf")
    logits[0, 1, :5] = float("-inf")
    mask[0, :2] = True
    logits[2, 1, :] = float("-inf")
    mask[2, 1] = False
    leaf = logits.clone().requires_grad_()
    loss, m = fused_grpo_loss(leaf, target.int(), old, adv, mask, temperature=1.2, compute_entropy=True)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(leaf.grad).all()
    assert all(torch.isfinite(v) for v in m.values())
    # the chunked CPU path (the oracle's log_softmax has no answer for an all -inf row)
    scale = sequence_scale(mask.cpu(), "token-mean", None)
    grad_cpu = torch.empty(logits.shape)
    rows = fused_grpo_loss_chunked(logits.cpu(), target.cpu(), old.cpu(), adv.cpu(), mask.cpu(), None, scale, 1.2,
                                   0.2, 0.28, 0.0, None, grad_cpu, True)  # fmt: skip
    loss_cpu, _ = reduce_token_rows(rows, mask.cpu().reshape(-1), token_weights(scale, logits.shape[1]), 0.0)
    torch.testing.assert_close(loss.detach().cpu(), loss_cpu)
    torch.testing.assert_close(leaf.grad.cpu(), grad_cpu)
    leaf = logits.clone().requires_grad_()
    loss, _ = fused_grpo_loss(leaf, target, old, adv, torch.zeros_like(mask))
    loss.backward()
    assert float(loss) == 0.0 and torch.count_nonzero(leaf.grad) == 0
    bad = target.clone()
    bad[0, 0] = 10**6
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fused_grpo_loss(logits, bad, old, adv, mask)


@pytest.mark.gpu
def test_gpu_temperature_never_recompiles_and_many_tokens():
    from microcoder_fast.kernels.fused_grpo_loss import fused_grpo_loss_kernel

    logits, target, old, ref, adv, mask = _inputs(B=1, L=70_000, V=8, device="cuda")  # > 65,535 tokens

    def n_compiled() -> int:  # Triton 3.x: device_caches[device] = (kernel_cache, ...)
        return sum(len(entry[0]) for entry in fused_grpo_loss_kernel.device_caches.values())

    leaf = logits.clone().requires_grad_()
    fused_grpo_loss(leaf, target, old, adv, mask, temperature=0.5)[0].backward()  # compiles this variant
    before = n_compiled()  # earlier tests in the process may have compiled other variants
    for T in (0.6, 1.0, 1.2, 1.8):
        leaf = logits.clone().requires_grad_()
        loss, _ = fused_grpo_loss(leaf, target, old, adv, mask, temperature=T, eps_low=0.1 * T, eps_high=0.3)
        loss.backward()
        assert torch.isfinite(leaf.grad).all()
    assert n_compiled() == before  # no new variant for any temperature / eps
    _compare("cuda", B=1, L=70_000, V=8, entropy=False)


def _scale_and_ignore(device, inplace=False):
    """loss_scale is folded into the gradient (and the returned loss), never into the metrics; an ignore_index
    target in the mask leaves the loss like a masked token."""
    logits, target, old, ref, adv, mask = _inputs(device=device)
    target[0, 1] = -100
    mask[0, 1] = True
    kept = mask & (target != -100)
    leaf = logits.clone().requires_grad_()
    x = leaf * 1.0 if inplace else leaf
    loss, m = fused_grpo_loss(x, target, old, adv, mask, temperature=1.2, loss_scale=0.25, inplace_backward=inplace)
    loss.backward()
    rleaf = logits.cpu().clone().requires_grad_()
    rloss, rm = fused_grpo_loss_reference(rleaf, target.cpu(), old.cpu(), adv.cpu(), kept.cpu(), 1.2)
    (0.25 * rloss).backward()
    torch.testing.assert_close(loss.detach().cpu(), 0.25 * rloss.detach())
    torch.testing.assert_close(leaf.grad.cpu(), rleaf.grad)
    for k in ("pg_loss", "ratio_mean", "num_tokens"):
        torch.testing.assert_close(m[k].cpu(), rm[k])
    assert float(m["num_tokens"]) == float(kept.sum())
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fused_grpo_loss(logits, target, old, adv, mask, ignore_index=None)


def test_loss_scale_and_ignore_index():
    _scale_and_ignore("cpu")


def test_kernel_loss_scale_ignore_index_unchecked_target(kdev):
    _scale_and_ignore(kdev)
    _scale_and_ignore(kdev, inplace=True)
    # check_target=False (no host sync): a bad target in the mask gives NaN, never an out-of-bounds read
    logits, target, old, ref, adv, mask = _inputs(device=kdev)
    target[0, 0] = 10**6
    leaf = logits.clone().requires_grad_()
    loss, _ = fused_grpo_loss(leaf, target, old, adv, mask, check_target=False)
    loss.backward()
    assert loss.isnan() and leaf.grad[0, 0].isnan().all()


def test_public_namespace_returns_the_ops():
    from microcoder_fast import ops

    logits, target, old, ref, adv, mask = _inputs()
    for _ in range(2):  # the second access must still be the op, not the submodule of the same name
        assert callable(ops.fused_grpo_loss) and callable(ops.grpo_loss) and callable(ops.group_advantages)
    ops.fused_grpo_loss(logits, target, old, adv, mask)


def test_kernels_under_interpreter():
    """Run this file's kernel tests on CPU under TRITON_INTERPRET=1 in a fresh process (the variable must be set
    before triton is imported, and must not leak into other test files)."""
    run_under_interpreter(__file__, "kernel_ and interp")
