"""Helpers shared by the bench scripts: markdown tables, writing results, CUDA timing, measurement children.

The scripts run as ``python bench/<script>.py``, so this directory is on ``sys.path`` and they import this
module as ``_common``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence

import torch


def _cells(cells: Sequence[str]) -> str:
    return "".join(f"| {c} " if c else "| " for c in cells)


def markdown_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[dict],
    key_cells: Callable[[dict], list[str]],
    value_cells: Callable[[dict], list[str]],
) -> str:
    """``## title`` and a table: a row's key cells, then its value cells, or ``failed: <error>`` for a row with
    an ``error`` (the value columns left empty)."""
    out = [f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        keys = key_cells(r)
        if "error" in r:
            out.append(_cells(keys) + f"| failed: {r['error']} " + "|" * (len(columns) - len(keys)))
        else:
            out.append(_cells(keys + value_cells(r)) + "|")
    return "\n".join(out) + "\n"


def emit(text: str, out: str | None, *, heading: str | None = None) -> None:
    """Print ``text`` after a blank line; with ``out``, append it to that file, or with ``heading`` replace the
    file by ``heading`` and ``text``."""
    print()
    print(text)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "a" if heading is None else "w") as f:
            if heading is not None:
                f.write(heading)
            f.write(text + "\n")


def time_cuda(fn: Callable[[], object], reps: int = 10) -> float:
    """Median milliseconds of ``fn`` over ``reps`` CUDA-event timings, after one warm-up call."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    times.sort()
    return times[len(times) // 2]


def time_ms(fn: Callable[[], object], reps: int = 20) -> float:
    """Median wall milliseconds of ``fn`` (synchronising CUDA around each call when present), after 2 warm-ups."""
    import time

    cuda = torch.cuda.is_available()
    times = []
    for _ in range(reps + 2):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times = sorted(times[2:])
    return 1e3 * times[len(times) // 2]


def status_bytes(key: str) -> int:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def child_row(cmd: list[str], **keys: object) -> dict:
    """Run one measurement in a fresh process: its last stdout line is the JSON row; when it fails, a row of
    ``keys`` with the last line of its stderr as ``error``. The row is printed as it comes."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        row = dict(keys, error=(proc.stderr.strip().splitlines() or ["?"])[-1][:100])
    else:
        row = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row
