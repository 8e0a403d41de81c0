"""One GPU run that tells everything about the kernels: correctness at full size, speed against the memory floor
and against cuBLAS, memory, recompiles, and the peers side by side.

    python bench/gpu_check.py                 # one H100 / H200: at most ~8 minutes
    python bench/gpu_check.py --dry           # the same logic on CPU under Triton's interpreter, tiny sizes
    python bench/gpu_check.py --out bench/results/<card>-gpu_check.txt

Every line reads ``CHECK <name>: PASS|FAIL|INFO <detail>``; the exit status is 1 when any check FAILed. A check
that raises is a FAIL with the exception, and the run goes on. Timings are INFO (never a pass/fail criterion);
in ``--dry`` mode they are the interpreter's and mean nothing, the point being that the script cannot rot
while no GPU is lent (tests/test_gpu_check.py runs it).

Imports the public ops, the references, the kernels' launch helpers and (optionally) Liger-Kernel and quack.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

if "--dry" in sys.argv and os.environ.get("TRITON_INTERPRET") != "1":
    # The interpreter must be chosen before triton is imported: re-run this script with it set.
    os.environ["TRITON_INTERPRET"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(1, HERE)  # bench/_common.py

import torch  # noqa: E402
from _common import time_cuda  # noqa: E402

from microcoder_fast import ops  # noqa: E402
from microcoder_fast.ops import _dispatch  # noqa: E402
from microcoder_fast.reference.group_advantages import group_advantages_reference  # noqa: E402
from microcoder_fast.reference.grpo_loss import grpo_loss_reference  # noqa: E402
from microcoder_fast.reference.token_logprobs import token_logprobs_naive  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    n: int  # tokens of the log-prob checks
    v: int  # vocabulary
    n_big: int  # tokens of the large-offset check (N * V > 2**31 on the GPU)
    b: int  # sequences of the fused loss
    l: int  # tokens per sequence of the fused loss
    d: int  # hidden size of the hidden-state path
    n_small: tuple[int, ...]  # extra token counts of the hidden-state path
    n_recompile: tuple[int, ...]  # token counts of the recompile check
    reps: int


FULL = Sizes(8192, 151_936, 16_384, 8, 1024, 4096, (512, 2048), (512, 1000, 2048, 4097), 5)
DRY = Sizes(12, 300, 20, 2, 6, 32, (4,), (3, 5, 8, 9), 1)
BF16_ULP = 2.0**-8  # half an ulp relative: bf16 keeps 8 significant bits


class Report:
    def __init__(self) -> None:
        self.failed = 0
        self.lines: list[str] = []

    def emit(self, name: str, status: str, detail: str) -> None:
        line = f"CHECK {name}: {status} {detail}".rstrip()
        self.lines.append(line)
        if status == "FAIL":
            self.failed += 1
        print(line, flush=True)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.emit(name, "PASS" if ok else "FAIL", detail)

    def info(self, name: str, detail: str) -> None:
        self.emit(name, "INFO", detail)

    @contextlib.contextmanager
    def guard(self, name: str):
        """A check that raises is a FAIL (with the exception); the run goes on."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - reported, not swallowed
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            self.emit(name, "FAIL", f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]} "
                                    f"(at {os.path.basename(tb.filename)}:{tb.lineno})")  # fmt: skip


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], dev: torch.device, reps: int) -> float:
    """Median milliseconds of ``fn`` (CUDA events on the GPU). On the CPU (the dry run, where times mean nothing)
    one call, so that the timing code runs without tripling the dry run's time."""
    if dev.type == "cuda":
        return time_cuda(fn, reps)
    t0 = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - t0)


def ulps(got: torch.Tensor, want: torch.Tensor) -> float:
    """Max error in bf16 ulps of the reference value (an absolute floor of 1e-6 for entries near 0)."""
    err = (got.double() - want.double()).abs()
    return float((err / (want.double().abs() * 2 * BF16_ULP + 1e-6)).max())


def randn(shape: tuple[int, ...], dev: torch.device, seed: int, scale: float = 1.0) -> torch.Tensor:
    """bf16 normal values drawn on the device (no host RNG, no [N, V] fp32 temporary)."""
    g = torch.Generator(device=dev).manual_seed(seed)
    out = torch.empty(shape, dtype=torch.bfloat16, device=dev)
    rows = out.view(-1, shape[-1])
    for r0 in range(0, rows.shape[0], 1024):
        chunk = rows[r0 : r0 + 1024]
        chunk.copy_(torch.randn(chunk.shape, generator=g, device=dev) * scale)
    return out


def make_logits(n: int, v: int, dev: torch.device, seed: int = 0) -> torch.Tensor:
    return randn((n, v), dev, seed, 3.0)


def rows_fp64(logits: torch.Tensor, target: torch.Tensor, rows: list[int], T: float, g_logp: torch.Tensor,
              g_ent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """fp64 (logp, entropy, d logits) of a few rows, for sum(g_logp * logp + g_ent * entropy)."""
    x = logits[rows].double().cpu().requires_grad_()
    lp, ent = token_logprobs_naive(x, target[rows].cpu(), T, True)
    ((lp * g_logp[rows].double().cpu()).sum() + (ent * g_ent[rows].double().cpu()).sum()).backward()
    return lp.detach(), ent.detach(), x.grad


# ---------------------------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------------------------


def check_environment(rep: Report, dev: torch.device, sz: Sizes) -> float:
    """Device, versions, and the device-to-device copy bandwidth (bytes read + written per second)."""
    import triton

    name = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU {platform.machine()} (dry run)"
    rep.info("env.device", f"{name}; torch {torch.__version__}; triton {triton.__version__}; "
                           f"python {platform.python_version()}")  # fmt: skip
    n_bytes = (1 << 30) if dev.type == "cuda" else (1 << 22)
    src = torch.empty(n_bytes, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), dev, max(sz.reps, 3))
    bw = 2 * n_bytes / (ms * 1e-3)
    rep.info("env.copy_bandwidth", f"{bw / 1e9:.0f} GB/s (read + write of {n_bytes >> 20} MiB in {ms:.3f} ms)")
    return bw


def check_token_logprobs(rep: Report, dev: torch.device, sz: Sizes, bw: float) -> None:
    N, V, T = sz.n, sz.v, 1.2
    logits = make_logits(N, V, dev)
    target = torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(1)).to(dev)
    g_logp = torch.randn(N, generator=torch.Generator().manual_seed(2)).to(dev)
    g_ent = torch.randn(N, generator=torch.Generator().manual_seed(3)).to(dev)
    rows = [0, N - 1]
    with rep.guard("token_logprobs.vs_fp64"):
        x = logits.clone().requires_grad_()
        lp, ent = ops.token_logprobs(x, target, T, return_entropy=True)
        ((lp * g_logp).sum() + (ent * g_ent).sum()).backward()
        want_lp, want_ent, want_grad = rows_fp64(logits, target, rows, T, g_logp, g_ent)
        e_lp = float((lp[rows].detach().cpu().double() - want_lp).abs().max())
        e_ent = float((ent[rows].detach().cpu().double() - want_ent).abs().max())
        e_g = ulps(x.grad[rows].cpu(), want_grad)
        rep.check("token_logprobs.vs_fp64", e_lp < 1e-4 and e_ent < 1e-3 and e_g <= 1.0,
                  f"first/last rows: |logp err| {e_lp:.1e}, |entropy err| {e_ent:.1e}, gradient {e_g:.2f} bf16 ulps "
                  "(limits 1e-4, 1e-3, 1 ulp)")  # fmt: skip
        fresh = x.grad
    with rep.guard("token_logprobs.inplace_equals_fresh"):
        leaf = logits.clone().requires_grad_()
        buf = leaf * 1.0
        lp2, ent2 = ops.token_logprobs(buf, target, T, return_entropy=True, inplace_backward=True)
        ((lp2 * g_logp).sum() + (ent2 * g_ent).sum()).backward()
        rep.check("token_logprobs.inplace_equals_fresh", torch.equal(leaf.grad, fresh),
                  "in-place gradient bitwise equal to the fresh-buffer gradient")  # fmt: skip
        del leaf, buf
    with rep.guard("token_logprobs.deterministic"):
        a = ops.token_logprobs(logits, target, T, return_entropy=True)
        b = ops.token_logprobs(logits, target, T, return_entropy=True)
        rep.check("token_logprobs.deterministic", torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]),
                  "two forward runs bitwise equal")  # fmt: skip
    del x, fresh
    read = logits.numel() * logits.element_size()
    with rep.guard("token_logprobs.forward_bandwidth"):
        with torch.no_grad():
            ms = time_ms(lambda: ops.token_logprobs(logits, target, T, check_target=False), dev, sz.reps)
            ms_e = time_ms(lambda: ops.token_logprobs(logits, target, T, True, check_target=False), dev, sz.reps)
        rep.info("token_logprobs.forward_bandwidth",
                 f"{read / ms / 1e6:.0f} GB/s = {100 * read / (ms * 1e-3) / bw:.0f}% of copy bandwidth ({ms:.3f} ms); "
                 f"with entropy {read / ms_e / 1e6:.0f} GB/s = {100 * read / (ms_e * 1e-3) / bw:.0f}% ({ms_e:.3f} ms)")  # fmt: skip
    with rep.guard("token_logprobs.fwd_bwd_vs_floor"):
        x = logits.clone().requires_grad_()

        def step() -> None:
            lp = ops.token_logprobs(x, target, T, check_target=False)
            torch.autograd.grad((lp * g_logp).sum(), x)

        ms = time_ms(step, dev, sz.reps)
        floor_ms = 3 * read / bw * 1e3  # read forward, read + write backward, at the copy bandwidth
        rep.info("token_logprobs.fwd_bwd_vs_floor", f"{ms:.3f} ms = {ms / floor_ms:.2f}x the 3-pass floor "
                                                    f"({floor_ms:.3f} ms at copy bandwidth)")  # fmt: skip
        del x
    with rep.guard("token_logprobs.check_target_cost"):
        with torch.no_grad():
            on = time_ms(lambda: ops.token_logprobs(logits, target, T), dev, sz.reps)
            off = time_ms(lambda: ops.token_logprobs(logits, target, T, check_target=False), dev, sz.reps)
        rep.info("token_logprobs.check_target_cost", f"check_target=True {on:.3f} ms, False {off:.3f} ms "
                                                     f"(+{on - off:.3f} ms: one reduction and a host sync)")  # fmt: skip


def check_large_offsets(rep: Report, dev: torch.device, sz: Sizes) -> None:
    """N * V past 2**31 elements (on the GPU): the last row's log-prob and in-place gradient against fp64."""
    N, V, T = sz.n_big, sz.v, 0.8
    with rep.guard("large_offsets"):
        logits = make_logits(N, V, dev, seed=5)
        target = torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(6)).to(dev)
        g = torch.ones(N, device=dev)
        rows = [N - 1]
        want_lp, _, want_grad = rows_fp64(logits, target, rows, T, g, torch.zeros(N, device=dev))
        buf = logits.clone().requires_grad_(False)
        leaf = buf.requires_grad_()
        x = leaf * 1.0  # the in-place backward writes into x's buffer
        lp = ops.token_logprobs(x, target, T, inplace_backward=True)
        lp.sum().backward()
        e_lp = float((lp[rows].detach().cpu().double() - want_lp).abs().max())
        e_g = ulps(x.detach()[rows].cpu(), want_grad)
        rep.check("large_offsets", e_lp < 1e-4 and e_g <= 1.0,
                  f"N={N} (N*V={N * V:,} {'>' if N * V > 2**31 else '<='} 2**31): last row |logp err| {e_lp:.1e}, "
                  f"in-place gradient {e_g:.2f} bf16 ulps")  # fmt: skip


def check_fused_loss(rep: Report, dev: torch.device, sz: Sizes, bw: float) -> None:
    B, L, V, T = sz.b, sz.l, sz.v, 1.2
    logits = make_logits(B * L, V, dev, seed=7).view(B, L, V)
    g = torch.Generator().manual_seed(8)
    target = torch.randint(0, V, (B, L), generator=g).to(dev)
    old = (-torch.rand(B, L, generator=g) * 8 - 9).to(dev)
    adv = torch.randn(B, generator=g).to(dev)
    mask = (torch.rand(B, L, generator=g) < 0.25).to(dev)  # 75% of the tokens out of the mask
    mask[0, 0] = True
    with rep.guard("fused_grpo_loss.vs_unfused_autograd"):
        x = logits.clone().requires_grad_()
        loss, m = ops.fused_grpo_loss(x, target, old, adv, mask, temperature=T)
        loss.backward()
        r = logits.clone().requires_grad_()
        lp = torch.log_softmax(r.float() / T, -1).gather(-1, target[..., None]).squeeze(-1)
        rloss, rm = grpo_loss_reference(lp, old, adv, mask)
        rloss.backward()
        e_loss = abs(float(loss.detach()) - float(rloss.detach()))
        e_g = ulps(x.grad.float(), r.grad.float())
        del r, lp
        rep.check("fused_grpo_loss.vs_unfused_autograd", e_loss < 1e-5 * max(1.0, abs(float(rloss))) and e_g <= 2.0,
                  f"|loss err| {e_loss:.1e}, gradient {e_g:.2f} bf16 ulps vs log_softmax + verl loss + autograd "
                  f"(both bf16 gradients; limit 2 ulps), {int(mask.sum())} of {B * L} tokens in the mask")  # fmt: skip
    with rep.guard("fused_grpo_loss.loss_scale"):
        y = logits.clone().requires_grad_()
        loss_s, m_s = ops.fused_grpo_loss(y, target, old, adv, mask, temperature=T, loss_scale=0.25)
        loss_s.backward()
        ok = abs(float(loss_s.detach()) - 0.25 * float(loss.detach())) <= 1e-6 * abs(float(loss.detach())) + 1e-9
        e_g = ulps(y.grad.float(), 0.25 * x.grad.float())
        rep.check("fused_grpo_loss.loss_scale", ok and e_g <= 1.0 and torch.equal(m_s["pg_loss"], m["pg_loss"]),
                  f"loss_scale=0.25: loss x0.25, gradient within {e_g:.2f} ulps of 0.25x, metrics unscaled")  # fmt: skip
        del y
    del x
    read = logits.numel() * logits.element_size()
    with rep.guard("fused_grpo_loss.time_vs_floor"):
        floor_ms = 3 * read / bw * 1e3
        res = []
        for scale in (1.0, 0.25):
            z = logits.clone().requires_grad_()

            def step(z=z, scale=scale) -> None:
                lo, _ = ops.fused_grpo_loss(z, target, old, adv, mask, temperature=T, loss_scale=scale,
                                            check_target=False)  # fmt: skip
                torch.autograd.grad(lo, z)

            ms = time_ms(step, dev, sz.reps)
            res.append(f"loss_scale={scale}: {ms:.3f} ms = {ms / floor_ms:.2f}x")
            del z
        rep.info("fused_grpo_loss.time_vs_floor", "; ".join(res) + f" (3-pass floor {floor_ms:.3f} ms; "
                                                                  "a masked row reads nothing, so < 1x is possible)")  # fmt: skip
    with rep.guard("fused_grpo_loss.cuda_graph"):
        if dev.type != "cuda":
            rep.info("fused_grpo_loss.cuda_graph", "skipped: CUDA graphs need a GPU")
            return
        static = logits.clone()
        buf = static.clone()

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            buf.copy_(static)
            w = buf.requires_grad_()
            lo, mm = ops.fused_grpo_loss(w, target, old, adv, mask, temperature=T, check_target=False)
            (gr,) = torch.autograd.grad(lo, w)
            return lo.detach(), gr

        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                run()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            g_loss, g_grad = run()
        graph.replay()
        torch.cuda.synchronize()
        e_loss, e_grad = run()
        rep.check("fused_grpo_loss.cuda_graph", torch.equal(g_loss, e_loss) and torch.equal(g_grad, e_grad),
                  "captured with check_target=False; replay bitwise equal to eager")  # fmt: skip


def check_grpo_and_advantages(rep: Report, dev: torch.device, sz: Sizes) -> None:
    B, L = max(sz.b, 64), max(sz.l, 512) if dev.type == "cuda" else sz.l
    g = torch.Generator().manual_seed(9)
    lp = (-torch.rand(B, L, generator=g) * 3).to(dev)
    old = lp + 0.3 * torch.randn(B, L, generator=g).to(dev)
    ref = lp + 0.3 * torch.randn(B, L, generator=g).to(dev)
    adv = torch.randn(B, L, generator=g).to(dev)
    mask = (torch.rand(B, L, generator=g) > 0.2).to(dev)
    with rep.guard("grpo_loss.vs_reference"):
        worst = 0.0
        for agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
            x = lp.clone().requires_grad_()
            loss, m = ops.grpo_loss(x, old, adv, mask, kl_coef=0.05, ref_logp=ref, agg=agg, dual_clip=3.0,
                                    max_len=L)  # fmt: skip
            loss.backward()
            y = lp.clone().requires_grad_()
            rl, rm = grpo_loss_reference(y, old, adv, mask, kl_coef=0.05, ref_logp=ref, agg=agg, dual_clip=3.0,
                                         max_len=L)  # fmt: skip
            rl.backward()
            worst = max(worst, abs(float(loss.detach()) - float(rl.detach())), float((x.grad - y.grad).abs().max()),
                        max(abs(float(m[k]) - float(rm[k])) for k in rm))  # fmt: skip
        rep.check("grpo_loss.vs_reference", worst < 1e-5, f"max |err| {worst:.1e} over loss, d logp, metrics, 3 aggs")
    with rep.guard("group_advantages.vs_reference"):
        r = (torch.randint(0, 2, (B * 8,), generator=g).float() + 0.1 * torch.rand(B * 8, generator=g)).to(dev)
        worst = 0.0
        for kw in (dict(), dict(scale="batch"), dict(std="none"), dict(singleton="raw")):
            got = ops.group_advantages(r, group_size=8, **kw)
            want = group_advantages_reference(r.cpu(), 8, **kw)
            worst = max(worst, float((got.cpu() - want).abs().max()))
        rep.check("group_advantages.vs_reference", worst < 1e-5, f"max |err| {worst:.1e} over 4 conventions")


def _three_gemms(h: torch.Tensor, w: torch.Tensor, dz: torch.Tensor) -> None:
    """The floor of the hidden-state path: logits, d hidden and d weight as three cuBLAS GEMMs."""
    h @ w.T
    dz @ w
    dz.T @ h


def check_hidden_path(rep: Report, dev: torch.device, sz: Sizes) -> None:
    D, V, T = sz.d, sz.v, 1.1
    gen = torch.Generator().manual_seed(10)
    w = randn((V, D), dev, 13, 2.0 / D**0.5)
    if dev.type == "cuda":
        ok = _dispatch._fp32_acc_addmm_ok(dev, torch.bfloat16)
        rep.info("linear_token_logprobs.addmm_fp32_in_place", "yes: addmm(out_dtype=float32, out=acc)" if ok else
                 "no: this torch wants self in bf16; acc += mm(out_dtype=float32) (one temporary)")  # fmt: skip
    for n in (sz.n, *sz.n_small):
        name = f"linear_token_logprobs.N{n}"
        with rep.guard(name):
            h = torch.randn(n, D, generator=gen).to(torch.bfloat16).to(dev)
            t = torch.randint(0, V, (n,), generator=gen).to(dev)
            gl = torch.randn(n, generator=gen).to(dev)
            hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
            base = torch.cuda.memory_allocated() if dev.type == "cuda" else 0
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            lp = ops.linear_token_logprobs(hh, ww, t, T)
            (lp * gl).sum().backward()
            peak = (torch.cuda.max_memory_allocated() - base) if dev.type == "cuda" else 0
            # fp64 on a few rows
            rows = [0, n - 1]
            z64 = h[rows].double() @ w.double().T
            want = torch.log_softmax(z64 / T, -1).gather(-1, t[rows, None].long()).squeeze(-1)
            e_lp = float((lp[rows].detach().double() - want).abs().max())
            # materialised autograd in bf16 (the computation a plain model runs)
            hm, wm = h.clone().requires_grad_(), w.clone().requires_grad_()
            logits = hm @ wm.T
            lpm = torch.log_softmax(logits.float() / T, -1).gather(-1, t[:, None]).squeeze(-1)
            (lpm * gl).sum().backward()
            del logits, lpm
            rel = lambda a, b: float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1e-12))
            e_h, e_w = rel(hh.grad, hm.grad), rel(ww.grad, wm.grad)
            rep.check(name, e_lp < 1e-3 and e_h < 2e-2 and e_w < 2e-2,
                      f"|logp err| vs fp64 {e_lp:.1e}; d hidden / d weight vs materialised bf16 autograd, max err "
                      f"relative to the largest entry: {e_h:.1e} / {e_w:.1e} (limits 1e-3, 2e-2, 2e-2)")  # fmt: skip
            del hm, wm
            dz = randn((n, V), dev, 14)
            floor = time_ms(lambda h=h, dz=dz: _three_gemms(h, w, dz), dev, sz.reps)
            del dz

            def step(hh=hh, ww=ww, t=t, gl=gl) -> None:
                out = ops.linear_token_logprobs(hh, ww, t, T, check_target=False)
                torch.autograd.grad((out * gl).sum(), (hh, ww))

            ms = time_ms(step, dev, sz.reps)
            rep.info(f"{name}.time", f"fwd+bwd {ms:.3f} ms = {ms / floor:.2f}x three cuBLAS GEMMs ({floor:.3f} ms); "
                                     f"extra memory {peak / 2**30:.2f} GiB (logits would be "
                                     f"{n * V * 2 / 2**30:.2f} GiB in bf16)")  # fmt: skip
            if n == sz.n:
                hf = h.clone().requires_grad_()
                wf = w.clone()  # frozen lm_head
                (ops.linear_token_logprobs(hf, wf, t, T) * gl).sum().backward()
                same = rel(hf.grad, hh.grad) < 1e-6
                rep.check("linear_token_logprobs.frozen_weight", wf.grad is None and same,
                          "frozen weight: no d weight, d hidden equal to the trainable-weight run")  # fmt: skip
                msf = time_ms(lambda hf=hf, wf=wf: torch.autograd.grad(
                    (ops.linear_token_logprobs(hf, wf, t, T, check_target=False) * gl).sum(), hf), dev, sz.reps)
                rep.info("linear_token_logprobs.frozen_weight.time", f"fwd+bwd {msf:.3f} ms vs {ms:.3f} ms trainable")
            del hh, ww


def check_linear_grpo_loss(rep: Report, dev: torch.device, sz: Sizes) -> None:
    """The 3-GEMM hidden-state GRPO loss at N x D x V against the same loss on materialised bf16 logits
    (ops.fused_grpo_loss + autograd through hidden @ weight.T), and its time against three cuBLAS GEMMs."""
    N, D, V, T = sz.n, sz.d, sz.v, 1.1
    B = max(1, N // 1024)
    L = N // B
    h = randn((B, L, D), dev, 15)
    w = randn((V, D), dev, 16, 2.0 / D**0.5)
    g = torch.Generator().manual_seed(17)
    target = torch.randint(0, V, (B, L), generator=g).to(dev)
    old = (-torch.rand(B, L, generator=g) * 4 - 8).to(dev)
    adv = torch.randn(B, generator=g).to(dev)
    mask = (torch.rand(B, L, generator=g) > 0.1).to(dev)
    with rep.guard("linear_grpo_loss.vs_materialised"):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        base = torch.cuda.memory_allocated() if dev.type == "cuda" else 0
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        loss, _ = ops.linear_grpo_loss(hh, ww, target, old, adv, mask, temperature=T)
        loss.backward()
        peak = (torch.cuda.max_memory_allocated() - base) if dev.type == "cuda" else 0
        hm, wm = h.clone().requires_grad_(), w.clone().requires_grad_()
        lm, _ = ops.fused_grpo_loss(hm @ wm.T, target, old, adv, mask, temperature=T)
        lm.backward()
        rel = lambda a, b: float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1e-30))
        e_l = abs(float(loss.detach()) - float(lm.detach())) / max(abs(float(lm.detach())), 1e-30)
        e_h, e_w = rel(hh.grad, hm.grad), rel(ww.grad, wm.grad)
        rep.check("linear_grpo_loss.vs_materialised", e_l < 1e-4 and e_h < 2e-2 and e_w < 2e-2,
                  f"vs fused_grpo_loss on materialised bf16 logits + autograd: loss rel err {e_l:.1e}, d hidden / "
                  f"d weight max err relative to the largest entry {e_h:.1e} / {e_w:.1e}; extra memory "
                  f"{peak / 2**30:.2f} GiB")  # fmt: skip
        del hm, wm
    with rep.guard("linear_grpo_loss.time_vs_3_gemms"):
        h2 = h.view(N, D)
        dz = randn((N, V), dev, 18)
        floor = time_ms(lambda: _three_gemms(h2, w, dz), dev, sz.reps)
        del dz

        def step() -> None:
            lo, _ = ops.linear_grpo_loss(hh, ww, target, old, adv, mask, temperature=T, check_target=False)
            torch.autograd.grad(lo, (hh, ww))

        ms = time_ms(step, dev, sz.reps)
        rep.info("linear_grpo_loss.time_vs_3_gemms", f"fwd+bwd {ms:.3f} ms = {ms / floor:.2f}x three cuBLAS GEMMs "
                                                     f"({floor:.3f} ms); target 1.3x")  # fmt: skip


def check_recompiles(rep: Report, dev: torch.device, sz: Sizes) -> None:
    """Compiled variants over 4 token counts x 3 temperatures: a temperature never recompiles."""
    from microcoder_fast.kernels import fused_grpo_loss as fk
    from microcoder_fast.kernels import linear_token_logprobs as lk
    from microcoder_fast.kernels import token_logprobs as tk

    kernels = {"token_logprobs_fwd": tk.token_logprobs_fwd_kernel, "token_logprobs_bwd": tk.token_logprobs_bwd_kernel,
               "fused_grpo_loss": fk.fused_grpo_loss_kernel, "linear_fwd": lk.linear_logprobs_fwd_kernel,
               "linear_dlogits": lk.linear_logprobs_dlogits_kernel}  # fmt: skip

    def variants() -> dict[str, int]:
        return {k: sum(len(c[0]) for c in getattr(fn, "device_caches", {}).values()) for k, fn in kernels.items()}

    with rep.guard("recompiles"):
        V = min(sz.v, 32000)
        w = randn((V, sz.d), dev, 19, sz.d**-0.5).requires_grad_()
        counts = []
        temp_recompiles = 0
        for n in sz.n_recompile:
            logits = make_logits(n, V, dev, seed=n)
            target = torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(n)).to(dev)
            mask = torch.ones(1, n, dtype=torch.bool, device=dev)
            z = torch.zeros(1, n, device=dev)
            for i, T in enumerate((0.6, 1.0, 1.2)):
                x = logits.clone().requires_grad_()
                ops.token_logprobs(x, target, T).sum().backward()
                y = logits.view(1, n, V).clone().requires_grad_()
                ops.fused_grpo_loss(y, target.view(1, n), z, torch.ones(1, device=dev), mask, temperature=T)[0].backward()
                hh = randn((n, sz.d), dev, n).requires_grad_()
                ops.linear_token_logprobs(hh, w, target, T).sum().backward()
                now = sum(variants().values())
                if i > 0 and now != counts[-1]:
                    temp_recompiles += 1
                counts.append(now)
        if dev.type != "cuda":
            rep.info("recompiles", "skipped: the interpreter keeps no compile cache")
            return
        rep.check("recompiles", temp_recompiles == 0,
                  f"compiled variants after each (N, T) over N={list(sz.n_recompile)} x T=(0.6, 1.0, 1.2): {counts}; "
                  f"{temp_recompiles} recompiles caused by a temperature; per kernel now {variants()}")  # fmt: skip


def check_peers(rep: Report, dev: torch.device, sz: Sizes) -> None:
    """Liger-Kernel and quack side by side where they import (INFO only)."""
    if dev.type != "cuda":
        rep.info("peers", "skipped: the peers' kernels need a GPU")
        return
    N, V, T = sz.n, sz.v, 1.0
    logits = make_logits(N, V, dev, seed=11)
    target = torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(12)).to(dev)
    ours = time_ms(lambda: torch.autograd.grad(
        ops.token_logprobs(x := logits.clone().requires_grad_(), target, T, check_target=False).sum(), x), dev, sz.reps)
    rep.info("peers.ours", f"token log-probs fwd+bwd at {N}x{V} bf16: {ours:.3f} ms (includes a clone)")
    try:
        from liger_kernel.transformers.functional import liger_cross_entropy

        ms = time_ms(lambda: torch.autograd.grad(
            liger_cross_entropy(x := logits.clone().requires_grad_(), target, reduction="sum"), x), dev, sz.reps)
        rep.info("peers.liger_cross_entropy", f"fwd+bwd {ms:.3f} ms ({ms / ours:.2f}x ours)")
    except Exception as exc:  # noqa: BLE001 - an optional peer
        rep.info("peers.liger_cross_entropy", f"unavailable: {type(exc).__name__}: {str(exc)[:100]}")
    try:  # the hidden-state path: Liger's fused linear cross-entropy (3 GEMMs, d(logits) in the forward)
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        D = sz.d
        h = randn((N, D), dev, 20)
        w = randn((V, D), dev, 21, D**-0.5)
        old = torch.zeros(1, N, device=dev)
        mask = torch.ones(1, N, dtype=torch.bool, device=dev)
        adv = torch.ones(1, device=dev)
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        ms_l = time_ms(lambda: torch.autograd.grad(liger_fused_linear_cross_entropy(hh, ww, target), (hh, ww)),
                       dev, sz.reps)  # fmt: skip
        ms_o = time_ms(lambda: torch.autograd.grad(ops.linear_grpo_loss(
            hh.view(1, N, D), ww, target.view(1, N), old, adv, mask, check_target=False)[0], (hh, ww)), dev, sz.reps)
        rep.info("peers.liger_fused_linear_cross_entropy",
                 f"fwd+bwd at {N}x{D}x{V}: Liger {ms_l:.3f} ms, ours (linear_grpo_loss) {ms_o:.3f} ms")  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - an optional peer
        rep.info("peers.liger_fused_linear_cross_entropy", f"unavailable: {type(exc).__name__}: {str(exc)[:100]}")
    try:
        from quack.cross_entropy import cross_entropy

        ms = time_ms(lambda: torch.autograd.grad(
            cross_entropy(x := logits.clone().requires_grad_(), target).sum(), x), dev, sz.reps)
        rep.info("peers.quack_cross_entropy", f"fwd+bwd {ms:.3f} ms ({ms / ours:.2f}x ours)")
    except Exception as exc:  # noqa: BLE001 - an optional peer
        rep.info("peers.quack_cross_entropy", f"unavailable: {type(exc).__name__}: {str(exc)[:100]}")


def run(dry: bool) -> Report:
    rep = Report()
    if not dry and not torch.cuda.is_available():
        rep.emit("env.device", "FAIL", "no CUDA device; run with --dry for the CPU dry run")
        return rep
    dev = torch.device("cpu" if dry else "cuda")
    sz = DRY if dry else FULL
    ctx = _dispatch.triton_interpreter() if dry else contextlib.nullcontext()
    t0 = time.perf_counter()
    with ctx:
        bw = check_environment(rep, dev, sz)
        for fn in (check_token_logprobs, check_fused_loss):
            fn(rep, dev, sz, bw)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        for fn in (check_large_offsets, check_grpo_and_advantages, check_hidden_path, check_linear_grpo_loss,
                   check_recompiles, check_peers):  # fmt: skip
            fn(rep, dev, sz)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    rep.info("total", f"{time.perf_counter() - t0:.0f} s, {rep.failed} FAIL")
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry", action="store_true", help="CPU under Triton's interpreter, tiny sizes")
    ap.add_argument("--out", help="also write every CHECK line to this file")
    a = ap.parse_args(argv)
    rep = run(a.dry)
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(rep.lines) + "\n")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
