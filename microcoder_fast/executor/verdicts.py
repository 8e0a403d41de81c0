"""Verdict classification: pure functions from what a generation child reported (or how it ended) to a
:class:`TestResult`, and from the tests' results to the generation's :class:`Result`.

No processes, no threads, no I/O: everything here takes bytes and numbers and returns values, so it is
tested directly. Must not import ``threading``, ``_C`` or the worker module.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass

from microcoder_fast.executor import compare as _compare
from microcoder_fast.executor.types import Problem, Result, TestResult, Verdict


@dataclass(frozen=True)
class Rules:
    """What a verdict depends on besides the program: limits and the comparison of one generation."""

    compare: str
    abs_tol: float
    rel_tol: float
    time_limit_s: float
    output_limit: int
    memory_limit_mb: float


def parse_result(payload: bytes) -> tuple[dict, bytes]:
    """RESULT frame: b"index status dirty cpu_s maxrss_kb exc wall_s\n" + JSON message + b"\n" + value."""
    nl = payload.index(b"\n")
    index, status, dirty, cpu, rss, exc, wall = payload[:nl].split()
    nl2 = payload.index(b"\n", nl + 1)
    message = json.loads(payload[nl + 1:nl2])
    head = {
        "index": int(index),
        "status": int(status),
        "dirty": dirty == b"1",
        "cpu_s": float(cpu),
        "maxrss_kb": int(rss),
        "exc": None if exc == b"-" else exc.decode("ascii", "replace"),
        "message": message,
        "wall_s": float(wall),
    }
    return head, payload[nl2 + 1:]


def compare_output(k: int, out: bytes, value: bytes, call: bool, problem: Problem, rules: Rules) -> tuple[Verdict, str]:
    """AC or WA (with the reason) for test k's stdout (stdin mode) or encoded return value (call mode)."""
    expected = problem.tests[k].output
    try:
        if call:
            why = _compare.explain_call(value.decode("utf-8", "surrogatepass"), expected, rules.compare,
                                        rules.abs_tol, rules.rel_tol)
        else:
            why = _compare.explain_stdout(out, expected, rules.compare, rules.abs_tol, rules.rel_tol)
    except (ValueError, TypeError) as e:
        return Verdict.IE, f"test {k}: expected output could not be used ({e})"
    return (Verdict.AC, "") if why is None else (Verdict.WA, why)


def from_report(k: int, head: dict, value: bytes, out: bytes | None, size: int, tail: bytes, call: bool,
                problem: Problem, rules: Rules) -> TestResult:
    """Test k as the harness reported it (the child is still alive and answered)."""
    status = head.get("status")
    exc = head.get("exc")
    wall = head["wall_s"]
    tr = TestResult(k, Verdict.AC, wall, float(head.get("cpu_s", 0.0)), int(head.get("maxrss_kb", 0)),
                    exit_code=status if isinstance(status, int) else None,
                    stderr_tail=tail.decode("utf-8", "replace"))
    if out is None:
        tr.verdict, tr.message = Verdict.OLE, f"stdout reached {size} bytes (limit {rules.output_limit})"
    elif exc == "MemoryError":
        tr.verdict, tr.message = Verdict.MLE, "MemoryError"
    elif exc == "InputError":
        tr.verdict, tr.message = Verdict.IE, f"test {k}: {head.get('message')}"
    elif status != 0 or exc is not None:
        tr.verdict = Verdict.RE
        tr.message = head.get("message") or (f"uncaught {exc}" if exc else f"exit status {status}")
    else:
        tr.verdict, tr.message = compare_output(k, out, value, call, problem, rules)
    if tr.verdict == Verdict.AC and wall > rules.time_limit_s:
        tr.verdict, tr.message = Verdict.TLE, f"took {wall:.3f} s (limit {rules.time_limit_s:g} s)"
    return tr


def from_exit(k: int, kind: str, report: bytes, out: bytes | None, tail_b: bytes, wall: float, call: bool,
              problem: Problem, rules: Rules) -> TestResult:
    """Test k when the child did not report it: ``kind`` is how the wait ended ("exit": it died by itself,
    "timeout": the wall clock ran out, "ole": it sent an oversized frame); ``report`` is the zygote's EXIT
    payload (JSON: status, utime, stime, maxrss_kb)."""
    verdict, msg = None, ""
    if kind == "timeout":
        verdict, msg = Verdict.TLE, f"wall-clock limit of {rules.time_limit_s:g} s exceeded"
    elif kind == "ole":
        verdict, msg = Verdict.OLE, f"the return value exceeded {rules.output_limit} bytes"
    rep = json.loads(report or b"{}")
    st = int(rep.get("status", 0))
    cpu = float(rep.get("utime", 0.0)) + float(rep.get("stime", 0.0))
    rss = int(rep.get("maxrss_kb", 0))
    tr = TestResult(k, Verdict.RE, wall, cpu, rss, stderr_tail=tail_b.decode("utf-8", "replace"))
    if os.WIFEXITED(st):
        tr.exit_code = os.WEXITSTATUS(st)
    elif os.WIFSIGNALED(st):
        tr.signal = os.WTERMSIG(st)
    if verdict is not None:
        tr.verdict, tr.message = verdict, msg
        return tr
    sig = tr.signal or 0
    if out is None or sig == signal.SIGXFSZ:
        tr.verdict, tr.message = Verdict.OLE, f"output passed the limit of {rules.output_limit} bytes"
        return tr
    if tr.exit_code is not None:
        if tr.exit_code == 0 and not call:
            tr.verdict, tr.message = compare_output(k, out, b"", call, problem, rules)
        elif tr.exit_code == 0:
            tr.verdict, tr.message = Verdict.RE, "the program exited instead of returning a value"
        elif "MemoryError" in tr.stderr_tail:
            tr.verdict, tr.message = Verdict.MLE, "MemoryError"
        else:
            tr.message = f"exit status {tr.exit_code}"
        return tr
    limit_kb = rules.memory_limit_mb * 1024
    if sig == signal.SIGXCPU:
        tr.verdict, tr.message = Verdict.TLE, "CPU time limit exceeded"
    elif "MemoryError" in tr.stderr_tail or (sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS,
                                                      signal.SIGKILL) and rss >= 0.8 * limit_kb):
        tr.verdict, tr.message = Verdict.MLE, f"killed by signal {sig} near the memory limit"
    else:
        name = signal.Signals(sig).name if sig in set(signal.Signals) else str(sig)
        tr.message = f"killed by signal {sig} ({name})"
    return tr


def generation_result(results: list[TestResult], n: int) -> Result:
    """The generation's verdict: the first test that is not AC decides; AC only when all n tests ran."""
    passed = sum(r.verdict == Verdict.AC for r in results)
    for r in results:
        if r.verdict != Verdict.AC:
            return Result(r.verdict, passed, n, results, message=f"test {r.index}: {r.verdict.value}"
                          + (f": {r.message}" if r.message else ""))
    if len(results) < n:  # cannot happen without a failure, kept as a guard
        return Result(Verdict.IE, passed, n, results, message="not every test ran")
    return Result(Verdict.AC, passed, n, results)
