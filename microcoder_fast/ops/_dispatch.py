"""Private helpers shared by the op modules: device dispatch, row views, target checks, interpreter switch.

- ``use_triton(device)``: CUDA tensors go to the Triton kernels; CPU tensors go to the torch reference, unless
  the ``triton_interpreter()`` context is active, which sends CPU tensors through the Triton kernels run by
  Triton's interpreter (``TRITON_INTERPRET=1``) -- that is how the kernels are tested on machines without GPU.
- ``kernels(name)``: the kernel module ``microcoder_fast.kernels.<name>``.
- ``rows3d(t)``: a [B, L, V] view of a [..., V] tensor without copying when its leading dimensions can be
  described by two strides (e.g. ``logits[:, :-1]``); only other layouts are copied.
- ``check_target_range(target, V)``: a clear ``ValueError`` for a target outside [0, V).
- ``forward_kernels(name, device, target, V, check_target)``: the forward's path (kernel module or reference)
  with the target check that path needs.
- ``register_logprob_autograd(op, n_diff, backward)``: the autograd glue shared by the log-prob ops.
- ``addmm_f32(acc, a, b)``: ``acc += a @ b`` into an fp32 accumulator, in place (the hidden-state ops' GEMMs).
- ``ignored_rows(target, ignore_index)``: the rows an ignore index drops.

Imports torch and triton; never ``rl``, ``data`` or the executor.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import torch

_KERNEL_PACKAGE = "microcoder_fast.kernels"

_state = threading.local()


def _interpreting() -> bool:
    return getattr(_state, "interp", False)


def use_triton(device: torch.device) -> bool:
    """True when tensors on ``device`` run the Triton kernels (CUDA, or any device inside triton_interpreter())."""
    return device.type == "cuda" or _interpreting()


def kernels(name: str) -> ModuleType:
    """The kernel module ``microcoder_fast.kernels.<name>``."""
    return importlib.import_module(f"{_KERNEL_PACKAGE}.{name}")


def interpreter_active() -> bool:
    """True when Triton was imported in interpreter mode (``TRITON_INTERPRET=1`` set before ``import triton``)."""
    if os.environ.get("TRITON_INTERPRET", "0").lower() not in ("1", "true", "on", "yes"):
        return False
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.standard.sum, InterpretedFunction)


@contextlib.contextmanager
def triton_interpreter() -> Iterator[None]:
    """Inside this context, CPU tensors run the Triton kernels under Triton's interpreter (slow; tests only).

    Triton's own library functions are decorated when ``triton`` is first imported, so the process must start
    with ``TRITON_INTERPRET=1`` in its environment (tests run the interpreter checks in a subprocess so that
    compiled kernels elsewhere in the test process are not affected).
    """
    if not interpreter_active():
        raise RuntimeError(
            "triton_interpreter() needs TRITON_INTERPRET=1 in the environment before triton is imported; "
            "start the process with it (e.g. TRITON_INTERPRET=1 python -m pytest ...)"
        )
    prev = _interpreting()
    _state.interp = True
    try:
        yield
    finally:
        _state.interp = prev


def rows3d(t: torch.Tensor) -> torch.Tensor:
    """View ``t`` [..., V] as [B, L, V] with unit stride over V, copying only when no such view exists."""
    if t.dim() == 0:
        raise ValueError("expected a tensor with a last (vocabulary) dimension, got a 0-d tensor")
    V = t.shape[-1]
    if V > 1 and t.stride(-1) != 1:
        t = t.contiguous()
    lead = [(size, stride) for size, stride in zip(t.shape[:-1], t.stride()[:-1]) if size != 1]
    if any(size == 0 for size, _ in lead):
        return t.new_empty((0, 1, V))
    merged: list[list[int]] = []
    for size, stride in lead:
        if merged and merged[-1][1] == stride * size:
            merged[-1][0] *= size
            merged[-1][1] = stride
        else:
            merged.append([size, stride])
    if len(merged) > 2:
        t = t.contiguous()
        n = t.numel() // V if V else 0
        return t.view(1, n, V) if V else t.reshape(1, -1, V)
    if len(merged) == 0:
        merged = [[1, V]]
    if len(merged) == 1:
        merged = [[1, merged[0][0] * merged[0][1]], merged[0]]
    (B, sb), (L, sl) = merged
    return t.as_strided((B, L, V), (sb, sl, 1))


def ignored_rows(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor | None:
    """The bool mask of rows whose target is ``ignore_index`` (None when there is no ignore index)."""
    return None if ignore_index is None else target == ignore_index


def check_target_range(
    target: torch.Tensor, V: int, name: str = "target", ignore_index: int | None = None
) -> None:
    """Raise ValueError when any entry of ``target`` is outside [0, V) (and not ``ignore_index``). One
    reduction (a sync on CUDA)."""
    if target.numel() == 0:
        return
    t = target if ignore_index is None else target.masked_fill(target == ignore_index, 0)
    lo_i, hi_i = (int(v) for v in torch.stack(torch.aminmax(t)).tolist())  # one host sync
    if lo_i < 0 or hi_i >= V:
        bad = ((t < 0) | (t >= V)).nonzero()
        first = tuple(int(i) for i in bad[0].tolist()) if bad.numel() else ()
        raise ValueError(
            f"{name} holds token ids outside the vocabulary [0, {V}): found values in [{lo_i}, {hi_i}] "
            f"(first bad entry at index {first}). Check that the tokenizer and the logits' vocabulary "
            f"size agree, and drop or remap padding ids (or pass them as ignore_index) before calling."
        )


def addmm_f32(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc (fp32) += a @ b with fp32 accumulation whatever the dtype of a and b.

    bf16 / fp16 on CUDA: cuBLAS with an fp32 output written in place (``addmm(out_dtype=float32, out=acc)``)
    where this torch accepts an fp32 ``acc`` beside bf16 / fp16 factors (probed once per device on a 1 x 1
    problem); otherwise ``acc += mm(a, b, out_dtype=float32)`` (one temporary of acc's size). Errors of the real
    GEMMs, out-of-memory included, always propagate. CPU tensors (the interpreter tests) are upcast first."""
    if a.dtype == torch.float32:
        acc.addmm_(a, b)
    elif a.is_cuda:
        if _fp32_acc_addmm_ok(a.device, a.dtype):
            torch.addmm(acc, a, b, out_dtype=torch.float32, out=acc)
        else:
            acc.add_(torch.mm(a, b, out_dtype=torch.float32))
    else:
        acc.addmm_(a.float(), b.float())


_ADDMM_PROBE: dict[tuple[str, torch.dtype], bool] = {}


def _fp32_acc_addmm_ok(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether ``addmm(fp32 self, low-precision mat1, mat2, out_dtype=float32, out=self)`` is accepted (newer
    torch); older ones demand ``self`` in the factors' dtype ("self and mat2 must have the same dtype")."""
    key = (str(device), dtype)
    if key not in _ADDMM_PROBE:
        acc = torch.zeros(1, 1, dtype=torch.float32, device=device)
        one = torch.ones(1, 1, dtype=dtype, device=device)
        try:
            torch.addmm(acc, one, one, out_dtype=torch.float32, out=acc)
            _ADDMM_PROBE[key] = True
        except RuntimeError as exc:
            if "dtype" not in str(exc):
                raise
            _ADDMM_PROBE[key] = False
    return _ADDMM_PROBE[key]


def check_float_tensor(t: torch.Tensor, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"{name} must be float32, bfloat16 or float16, got {t.dtype}; cast it with .float()")


def normalise_target(target: torch.Tensor, name: str = "target") -> torch.Tensor:
    """int32/int64 pass through; other integer dtypes become int64; floats and bools are an error."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{name} must be an integer torch.Tensor of token ids, got {type(target).__name__}")
    if target.dtype in (torch.int32, torch.int64):
        return target
    if target.dtype in (torch.uint8, torch.int8, torch.int16):
        return target.to(torch.int64)
    raise TypeError(f"{name} must hold integer token ids (int32 or int64), got {target.dtype}; use .long()")


def check_temperature(temperature: float) -> float:
    if isinstance(temperature, torch.Tensor):
        raise TypeError("temperature must be a Python float (a runtime scalar), not a tensor; use float(t)")
    t = float(temperature)
    if not (t > 0.0) or t == float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


def forward_kernels(
    name: str, device: torch.device, target: torch.Tensor, V: int, check_target: bool,
    ignore_index: int | None = None,
) -> ModuleType | None:
    """The kernel module ``name`` when tensors on ``device`` run Triton, else None (run the torch reference).

    Checks ``target`` against [0, V) on the way: always on the reference path (it indexes with the targets), on
    the Triton path only when ``check_target`` (the kernels turn a bad target into NaN, never a bad read).
    """
    triton = use_triton(device)
    if check_target or not triton:
        check_target_range(target, V, ignore_index=ignore_index)
    return kernels(name) if triton else None


def register_logprob_autograd(
    op: Any, n_diff: int, backward: Callable[..., tuple[torch.Tensor, ...]]
) -> None:
    """Autograd for a log-prob forward op ``(*x, target, temperature, return_entropy, *flags) -> (logp, lse, ent)``
    whose first ``n_diff`` inputs ``x`` are differentiable.

    Saves ``x``, ``target``, ``lse`` and ``ent`` (None when the forward computed no entropy) and keeps
    ``ctx.temperature``, ``ctx.flags``. The backward ignores the entropy's gradient when there was no entropy,
    returns no gradients when none flows in, and otherwise returns ``backward(ctx, *saved, g_logp, g_ent)``
    (the gradients of ``x``).
    """

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        target, temperature, return_entropy = inputs[n_diff : n_diff + 3]
        _logp, lse, ent = output
        ctx.save_for_backward(*inputs[:n_diff], target, lse, ent if return_entropy else None)
        ctx.temperature = temperature
        ctx.return_entropy = return_entropy
        ctx.flags = tuple(inputs[n_diff + 3 :])
        ctx.n_inputs = len(inputs)
        ctx.set_materialize_grads(False)

    def _backward(
        ctx: Any, g_logp: torch.Tensor | None, _g_lse: torch.Tensor | None, g_ent: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        if not ctx.return_entropy:
            g_ent = None
        if g_logp is None and g_ent is None:
            return (None,) * ctx.n_inputs
        grads = backward(ctx, *ctx.saved_tensors, g_logp, g_ent)
        return (*grads, *((None,) * (ctx.n_inputs - n_diff)))

    op.register_autograd(_backward, setup_context=setup_context)
