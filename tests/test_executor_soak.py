"""Soak: 10,000 generations through one executor; the host's process and descriptor counts stay flat."""

from __future__ import annotations

import os

import pytest

from microcoder_fast.executor import Executor, Problem, TestCase, Verdict


def _host_counts() -> tuple[int, int]:
    """(open descriptors of this process, processes on the host)."""
    return len(os.listdir("/proc/self/fd")), sum(1 for d in os.listdir("/proc") if d.isdigit())


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
        before = _host_counts()
        rest = ex.judge([(c, p) for c, _ in items[500:]])
        after = _host_counts()
        uid = ex.layers.get("uid")
    results = warm + rest
    wrong = [(i, r.verdict, items[i][1]) for i, r in enumerate(results) if r.verdict != items[i][1]]
    assert not wrong[:10]
    assert after[0] == before[0], f"descriptors grew {before[0]} -> {after[0]}"
    # other helpers share this host: allow for their processes coming and going, not for ours piling up
    assert after[1] - before[1] < 20, f"host processes grew {before[1]} -> {after[1]}"
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
