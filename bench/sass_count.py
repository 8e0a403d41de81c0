"""Instructions per element of the log-prob kernels' vocabulary loops, counted from compiled sm_90a SASS.

No GPU needed: every kernel is compiled ahead of time for ``GPUTarget("cuda", 90, 32)`` (Triton's bundled
ptxas), specialised exactly as a launch at the given shape would specialise it (Triton's own binder decides
which integers are divisible by 16 and which pointers are aligned), then disassembled with the bundled
``nvdisasm``. A loop is a backward branch; for each innermost loop the script prints the static instruction
count of its body and that count divided by the elements one thread handles per iteration
(``BLOCK_V / (32 * num_warps)``): the issue cost per element of the vocabulary walk. Reductions across warps
(shuffles, shared memory, barriers) are inside the loop body and so are counted, amortised over the tile.

    python bench/sass_count.py                      # the table (V = 151,936, bf16 logits)
    python bench/sass_count.py --out bench/results/sass-sm90a.md
    python bench/sass_count.py --dump DIR           # also write each kernel's .sass / .ptx for reading

Imports the kernels only (never the ops); needs triton with its NVIDIA backend (any Linux wheel).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

V_DEFAULT = 151_936
N_DEFAULT = 8192


@dataclass
class Loop:
    start: int  # byte address of the loop head
    end: int  # byte address of the backward branch
    n_instr: int
    source_line: str  # "path:line" of the loop head


def _tools() -> Path:
    import triton

    return Path(triton.__file__).parent / "backends" / "nvidia" / "bin"


def compile_like_launch(kernel, args: tuple, kwargs: dict, arch: int = 90):
    """``triton.compile`` of ``kernel`` for sm_<arch>a, specialised as ``kernel[grid](*args, **kwargs)`` would be.

    ``args`` may hold ``torch.dtype`` values for pointer arguments (a 16-byte aligned mock tensor of that dtype).
    Returns the CompiledKernel (``.asm['cubin']``, ``.asm['ptx']``, ``.n_regs``, ``.n_spills``)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import MockTensor, create_function_from_signature

    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    kw = dict(kwargs)
    kw.setdefault("debug", False)
    kw.setdefault("instrumentation_mode", "")
    mock = [MockTensor.wrap_dtype(a) for a in args]
    bound_args, specialization, options = binder(*mock, **kw)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kw, bound_args, specialization, options)
    src = ASTSource(kernel, signature, constexprs, attrs)
    return triton.compile(src, target=target, options=options.__dict__)


_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?);")
_LABEL = re.compile(r"^\s*(\.L_x_\d+):")
_BRANCH = re.compile(r"\bBRA\b.*`\((\.L_x_\d+)\)")
_LINE = re.compile(r'//## File "(.*)", line (\d+)')


def disassemble(cubin: bytes, workdir: Path, name: str) -> str:
    path = workdir / f"{name}.cubin"
    path.write_bytes(cubin)
    out = subprocess.run([str(_tools() / "nvdisasm"), "-c", "-g", str(path)], capture_output=True, text=True,
                         check=True)  # fmt: skip
    return out.stdout


def resources(cubin_path: Path) -> dict[str, int]:
    """REG / STACK / LOCAL / SHARED of the (single) kernel in a cubin, from ``cuobjdump -res-usage``."""
    out = subprocess.run([str(_tools() / "cuobjdump"), "-res-usage", str(cubin_path)], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return {k: int(v) for k, v in re.findall(r"\b(REG|STACK|LOCAL|SHARED):(\d+)", out)}


def loops(sass: str) -> tuple[list[Loop], int]:
    """Innermost loops (backward branches) of one kernel's SASS, and the kernel's total instruction count."""
    labels: dict[str, int] = {}
    instrs: list[tuple[int, str]] = []
    branches: list[tuple[int, str]] = []
    line_at: dict[int, str] = {}
    pending_label: list[str] = []
    cur_line = "?"
    for raw in sass.splitlines():
        m = _LABEL.match(raw)
        if m:
            pending_label.append(m.group(1))
            continue
        m = _LINE.search(raw)
        if m:
            cur_line = f"{m.group(1)}:{m.group(2)}"
            continue
        m = _INSTR.search(raw)
        if not m:
            continue
        addr = int(m.group(1), 16)
        for lab in pending_label:
            labels[lab] = addr
        pending_label.clear()
        instrs.append((addr, m.group(2)))
        line_at[addr] = cur_line
        b = _BRANCH.search(m.group(2))
        if b:
            branches.append((addr, b.group(1)))
    found = []
    for addr, lab in branches:
        head = labels.get(lab)
        if head is None or head > addr:
            continue
        body = [i for a, i in instrs if head <= a <= addr]
        if len(body) <= 2:  # the trap loop after EXIT
            continue
        found.append(Loop(head, addr, len(body), line_at.get(head, "?")))
    inner = [lp for lp in found if not any(o is not lp and lp.start <= o.start and o.end <= lp.end for o in found)]
    return sorted(inner, key=lambda lp: lp.start), len(instrs)


def _cases(V: int, N: int) -> list[tuple[str, object, tuple, dict, int]]:
    """(label, kernel, args, kwargs, BLOCK_V) for each kernel variant the ops launch at [N, V] bf16 logits."""
    import torch

    from kernels import fused_grpo_loss as fk
    from kernels import token_logprobs as tk

    bf, f32, i64, u8 = torch.bfloat16, torch.float32, torch.int64, torch.uint8
    bv = tk.default_block_v(V, 2)
    nw = tk.num_warps(bv)
    n_lanes, vec = tk.lanes(bv, 2)
    L = N  # one sequence of N tokens: stride_b = N * V, stride_l = V
    out = []
    for ent in (False, True):
        out.append((
            f"token_logprobs fwd{' +entropy' if ent else ''}",
            tk.token_logprobs_fwd_kernel,
            (bf, i64, f32, f32, f32, 0, L, L * V, V, V, 1 / 1.2, -100),
            dict(COMPUTE_ENTROPY=ent, BLOCK_V=bv, LANES=n_lanes, VEC=vec, num_warps=nw),
            bv,
        ))
    for gent in (False, True):
        out.append((
            f"token_logprobs bwd{' +entropy grad' if gent else ''}",
            tk.token_logprobs_bwd_kernel,
            (bf, bf, i64, f32, f32, f32, f32, 0, L, L * V, V, L * V, V, V, 0, 1 / 1.2, -100),
            dict(HAS_GLOGP=True, HAS_GENT=gent, BLOCK_V=bv, num_warps=nw),
            bv,
        ))
    for ent in (False, True):
        args = (bf, bf, i64, f32, f32, u8, f32, f32, f32, 0, N, L, L * V, V, L * V, V, V, 1 / 1.2, 0.2, 0.28,
                0.0, 0.0)  # fmt: skip
        out.append((
            f"fused_grpo_loss{' +entropy' if ent else ''}",
            fk.fused_grpo_loss_kernel,
            args,
            dict(HAS_REF=False, HAS_DUAL=False, ADV_PER_TOKEN=False, COMPUTE_ENTROPY=ent, COMPUTE_GRAD=True,
                 BLOCK_V=bv, LANES=n_lanes, VEC=vec, num_warps=nw),  # fmt: skip
            bv,
        ))
    return out


def enclosing_function(where: str) -> tuple[str, int]:
    """(name of the innermost function around ``path:line``, line) -- names a loop by the helper it is in."""
    import ast

    path, _, line = where.rpartition(":")
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return "?", int(line) if line.isdigit() else 0
    best = "?"
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.lineno <= int(line) <= (node.end_lineno or node.lineno):
            best = node.name  # ast.walk visits outer functions first: the last match is the innermost
    return best, int(line)


def count(V: int = V_DEFAULT, N: int = N_DEFAULT, dump: Path | None = None) -> list[dict]:
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for label, kernel, args, kwargs, bv in _cases(V, N):
            ck = compile_like_launch(kernel, args, kwargs)
            name = re.sub(r"\W+", "_", label).strip("_")
            sass = disassemble(ck.asm["cubin"], work, name)
            res = resources(work / f"{name}.cubin")
            if dump is not None:
                dump.mkdir(parents=True, exist_ok=True)
                (dump / f"{name}.sass").write_text(sass)
                (dump / f"{name}.ptx").write_text(ck.asm["ptx"])
            per_thread = bv // (32 * kwargs["num_warps"])
            inner, total = loops(sass)
            for lp in inner:
                func, line = enclosing_function(lp.source_line)
                rows.append(dict(
                    kernel=label,
                    loop=func,
                    line=f"{Path(lp.source_line.rpartition(':')[0]).name}:{line}",
                    instr=lp.n_instr,
                    per_thread=per_thread,
                    per_elem=lp.n_instr / per_thread,
                    regs=res.get("REG", -1),
                    spills=res.get("LOCAL", 0) + res.get("STACK", 0),
                    total=total,
                ))  # fmt: skip
    return rows


def table(rows: list[dict], V: int) -> str:
    head = (f"## SASS instructions per element, sm_90a, bf16 logits, V = {V:,}\n\n"
            "| kernel | loop in | source line | instructions in loop | elements / thread / iteration "
            "| instructions / element | registers | local/stack bytes |\n|---|---|---|---|---|---|---|---|\n")  # fmt: skip
    body = "".join(
        f"| {r['kernel']} | {r['loop']} | {r['line']} | {r['instr']} | {r['per_thread']} | {r['per_elem']:.2f} "
        f"| {r['regs']} | {r['spills']} |\n"
        for r in rows
    )
    return head + body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=int, default=V_DEFAULT)
    ap.add_argument("--tokens", type=int, default=N_DEFAULT)
    ap.add_argument("--out", help="also write the table to this markdown file")
    ap.add_argument("--dump", help="directory for each kernel's SASS and PTX")
    a = ap.parse_args(argv)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    rows = count(a.vocab, a.tokens, Path(a.dump) if a.dump else None)
    text = table(rows, a.vocab)
    print(text, end="")
    if a.out:
        Path(a.out).write_text(
            "# Kernel instruction counts (compiled ahead of time; no GPU)\n\n"
            "Command: `python bench/sass_count.py --out " + a.out + "` (Triton's bundled ptxas, sm_90a).\n\n" + text
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
