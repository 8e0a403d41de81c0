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
from microcoder_fast.executor.types import ModeVerdict, Problem, Result, TestResult, Verdict


@dataclass(frozen=True)
class Rules:
    """What a verdict depends on besides the program: limits and the comparison of one generation.
    ``compare`` holds one or more compare modes, the primary first."""

    compare: tuple[str, ...]
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


def compare_output(k: int, out: bytes, value: bytes, call: bool, problem: Problem,
                   rules: Rules) -> dict[str, tuple[Verdict, str]]:
    """AC or WA (with the reason) for test k's stdout (stdin mode) or encoded return value (call mode), in
    every compare mode of ``rules`` (the output is read once; each mode compares it). Expected output that
    cannot be used is IE in every mode."""
    expected = problem.tests[k].output
    explain = _compare.explain_call_modes if call else _compare.explain_stdout_modes
    try:
        whys = explain(value if call else out, expected, rules.compare, rules.abs_tol, rules.rel_tol)
    except (ValueError, TypeError) as e:
        return {m: (Verdict.IE, f"test {k}: expected output could not be used ({e})") for m in rules.compare}
    return {m: (Verdict.AC, "") if why is None else (Verdict.WA, why) for m, why in whys.items()}


def _set_modes(tr: TestResult, per_mode: dict[str, tuple[Verdict, str]]) -> None:
    tr.verdicts = {m: v for m, (v, _) in per_mode.items()}
    tr.messages = {m: why for m, (_, why) in per_mode.items()}
    tr.verdict, tr.message = next(iter(per_mode.values()))


def _finish(tr: TestResult, rules: Rules) -> TestResult:
    """Give every compare mode the test's verdict where the comparison did not decide it."""
    if not tr.verdicts:
        tr.verdicts = dict.fromkeys(rules.compare, tr.verdict)
        tr.messages = dict.fromkeys(rules.compare, tr.message)
    return tr


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
    elif call and len(value) > rules.output_limit:  # over the cap: OLE before any parsing
        tr.verdict, tr.message = Verdict.OLE, f"the return value has {len(value)} bytes (limit {rules.output_limit})"
    elif exc == "MemoryError":
        tr.verdict, tr.message = Verdict.MLE, "MemoryError"
    elif exc == "InputError":
        tr.verdict, tr.message = Verdict.IE, f"test {k}: {head.get('message')}"
    elif status != 0 or exc is not None:
        tr.verdict = Verdict.RE
        tr.message = head.get("message") or (f"uncaught {exc}" if exc else f"exit status {status}")
    else:
        per_mode = compare_output(k, out, value, call, problem, rules)
        if wall > rules.time_limit_s:  # too slow: TLE wherever the output was right
            tle = (Verdict.TLE, f"took {wall:.3f} s (limit {rules.time_limit_s:g} s)")
            per_mode = {m: (tle if v == Verdict.AC else (v, why)) for m, (v, why) in per_mode.items()}
        _set_modes(tr, per_mode)
    return _finish(tr, rules)


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
        return _finish(tr, rules)
    sig = tr.signal or 0
    if out is None or sig == signal.SIGXFSZ:
        tr.verdict, tr.message = Verdict.OLE, f"output passed the limit of {rules.output_limit} bytes"
        return _finish(tr, rules)
    if tr.exit_code is not None:
        if tr.exit_code == 0 and not call:
            _set_modes(tr, compare_output(k, out, b"", call, problem, rules))
        elif tr.exit_code == 0:
            tr.verdict, tr.message = Verdict.RE, "the program exited instead of returning a value"
        elif "MemoryError" in tr.stderr_tail:
            tr.verdict, tr.message = Verdict.MLE, "MemoryError"
        else:
            tr.message = f"exit status {tr.exit_code}"
        return _finish(tr, rules)
    limit_kb = rules.memory_limit_mb * 1024
    if sig == signal.SIGXCPU:
        tr.verdict, tr.message = Verdict.TLE, "CPU time limit exceeded"
    elif "MemoryError" in tr.stderr_tail or (sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS,
                                                      signal.SIGKILL) and rss >= 0.8 * limit_kb):
        tr.verdict, tr.message = Verdict.MLE, f"killed by signal {sig} near the memory limit"
    else:
        name = signal.Signals(sig).name if sig in set(signal.Signals) else str(sig)
        tr.message = f"killed by signal {sig} ({name})"
    return _finish(tr, rules)


def all_modes_failed(results: list[TestResult]) -> bool:
    """True once every compare mode has a test that is not AC among ``results`` (with stop-on-first-failure
    the generation ends then: no test still to run can change any mode's verdict)."""
    if not results:
        return False
    return all(any(r.verdicts.get(m, r.verdict) != Verdict.AC for r in results) for m in results[0].verdicts)


def _mode_verdict(results: list[TestResult], n: int, mode: str, stop: bool) -> ModeVerdict:
    first = next((r for r in results if r.verdicts.get(mode, r.verdict) != Verdict.AC), None)
    if first is None:
        passed = len(results)
        if passed < n:  # cannot happen without a failure, kept as a guard
            return ModeVerdict(Verdict.IE, passed, "not every test ran")
        return ModeVerdict(Verdict.AC, passed)
    # as a run in this mode alone would count: with stop-on-first-failure only the tests before its failure
    ran = [r for r in results if r.index < first.index] if stop else results
    passed = sum(r.verdicts.get(mode, r.verdict) == Verdict.AC for r in ran)
    why = first.messages.get(mode, first.message)
    v = first.verdicts.get(mode, first.verdict)
    return ModeVerdict(v, passed, f"test {first.index}: {v.value}" + (f": {why}" if why else ""))


def generation_result(results: list[TestResult], n: int, modes: tuple[str, ...] = (), stop: bool = True) -> Result:
    """The generation's verdict in each compare mode: the first test that is not AC in that mode decides;
    AC only when all n tests ran. The primary (first) mode's is the Result's own verdict."""
    modes = modes or (tuple(results[0].verdicts) if results and results[0].verdicts else ("default",))
    per_mode = {m: _mode_verdict(results, n, m, stop) for m in modes}
    primary = per_mode[modes[0]]
    return Result(primary.verdict, primary.passed, n, results, message=primary.message, modes=per_mode)
