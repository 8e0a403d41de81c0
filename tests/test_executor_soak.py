"""Soak: 10,000 generations through one executor; the host's process and descriptor counts stay flat."""

from __future__ import annotations

import os
import time

import pytest

from microcoder_fast.executor import Executor, Problem, TestCase, Verdict


def _descendants() -> int:
    """Processes below this one (zygotes and whatever they run); other helpers' processes do not count."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    mine, grew = {os.getpid()}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in mine} - mine
        grew = bool(new)
        mine |= new
    return len(mine) - 1


def _host_counts() -> tuple[int, int]:
    """(open descriptors of this process, processes below it)."""
    return len(os.listdir("/proc/self/fd")), _descendants()


@pytest.mark.slow
def test_soak_ten_thousand_generations_leave_no_trace():
    p = Problem(tests=[TestCase("7\n", "7\n")])
    mix = [
        ("print(input())", Verdict.AC),
        ("print(int(input())+1)", Verdict.WA),
        ("import sys\nprint(input())\nsys.exit(1)", Verdict.RE),
        ("import os\nif os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(5)\nprint(input())", Verdict.AC),
        ("x = (", Verdict.CE),
    ]
    n_total = 10_000
    # mostly the trivial program (the throughput case), every 50th generation one of the harder ones
    items = [mix[0] if i % 50 else mix[1 + (i // 50) % 4] for i in range(n_total)]
    with Executor(workers=2, time_limit_s=5.0) as ex:
        warm = ex.judge([(c, p) for c, _ in items[:500]])
        # a Result may come a moment before its generation is reaped: the baseline is the settled count
        before = _host_counts()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            time.sleep(0.02)
            before = tuple(map(min, before, _host_counts()))
        rest = ex.judge([(c, p) for c, _ in items[500:]])
        # a Result may come a few milliseconds before its generation is reaped: let the last one go
        deadline = time.monotonic() + 5
        while (after := _host_counts()) != before and time.monotonic() < deadline:
            time.sleep(0.05)
        uid = ex.layers.get("uid")
    results = warm + rest
    wrong = [(i, r.verdict, items[i][1]) for i, r in enumerate(results) if r.verdict != items[i][1]]
    assert not wrong[:10]
    assert after[0] == before[0], f"descriptors grew {before[0]} -> {after[0]}"
    assert after[1] == before[1], f"processes below the caller grew {before[1]} -> {after[1]}"
    if uid is not None:
        stray = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/status") as f:
                        if any(line.startswith("Uid:") and int(line.split()[1]) == uid for line in f):
                            stray.append(d)
                except OSError:
                    pass
        assert stray == []
