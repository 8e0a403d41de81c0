"""Verdict classification: pure functions from what a generation child reported (or how it ended) to a
:class:`TestResult`, and from the tests' results to the generation's :class:`Result`.

No processes, no threads, no I/O: everything here takes bytes and numbers and returns values, so it is
tested directly. Uses ``_C.frame`` only to decode payloads. Must not import ``threading`` or the worker
module.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

from microcoder_fast import _C
from microcoder_fast.executor import compare as _compare
from microcoder_fast.executor.types import ModeVerdict, Problem, Result, TestResult, Verdict

_F = _C.frame


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
    #: runs the problem's checker on test k's output text: (k, text) -> (verdict, message); None: compare
    checker: Callable[[int, str], tuple[Verdict, str]] | None = None


@dataclass(frozen=True)
class Report:
    """A RESULT frame: what the harness in the child reported about one test (fields: csrc/frame.h)."""

    index: int
    status: int
    dirty: bool
    cpu_s: float
    wall_s: float
    maxrss_kb: int
    end_ns: int
    exc: str | None  # the type name of the uncaught exception, as the program named it
    message: str
    value: bytes  # call mode: the encoded return value

    @classmethod
    def decode(cls, payload: bytes) -> Report:
        """Raises ValueError if the payload is not a well-formed RESULT."""
        index, status, flags, cpu, wall, rss, end_ns, exc, msg, value = _F.decode_result(payload)
        if not (math.isfinite(cpu) and math.isfinite(wall)):
            raise ValueError("malformed RESULT frame (times are not finite)")
        return cls(index, status, bool(flags & _F.RESULT_DIRTY), cpu, wall, rss, end_ns,
                   exc.decode("utf-8", "replace") or None, msg.decode("utf-8", "replace"), value)


@dataclass(frozen=True)
class ExitReport:
    """An EXIT frame: how the zygote found the generation's child when it reaped it."""

    status: int  # wait status
    cpu_s: float
    maxrss_kb: int
    oom_kills: int  # processes of the generation the cgroup's OOM killer killed (-1: no cgroup)
    memory_peak_bytes: int  # the generation cgroup's peak usage (-1: unknown)
    reaped_ns: int

    @classmethod
    def decode(cls, payload: bytes) -> ExitReport:
        status, ut, st, rss, oom, peak, reaped_ns = _F.decode_exit(payload)
        return cls(status, ut + st, rss, oom, peak, reaped_ns)


def compare_output(k: int, out: bytes, value: bytes, call: bool, problem: Problem,
                   rules: Rules) -> dict[str, tuple[Verdict, str]]:
    """AC or WA (with the reason) for test k's stdout (stdin mode) or encoded return value (call mode), in
    every compare mode of ``rules`` (the output is read once; each mode compares it). An output or value
    the comparison cannot take is the program's fault (WA); an expected output it cannot take is the
    problem's (IE in every mode)."""
    if rules.checker is not None:  # a special judge decides, the same in every mode
        text = value.decode("utf-8", "replace") if call else out.decode("utf-8", "surrogateescape")
        return dict.fromkeys(rules.compare, rules.checker(k, text))
    expected = problem.tests[k].output
    explain = _compare.explain_call_modes if call else _compare.explain_stdout_modes
    try:
        whys = explain(value if call else out, expected, rules.compare, rules.abs_tol, rules.rel_tol)
    except (ValueError, TypeError, RecursionError) as e:
        if _expected_usable(expected, call, rules):
            why = f"the {'return value' if call else 'output'} could not be compared ({type(e).__name__})"
            return {m: (Verdict.WA, why) for m in rules.compare}
        why = f"test {k}: expected output could not be used ({type(e).__name__}: {e})"
        return {m: (Verdict.IE, why) for m in rules.compare}
    return {m: (Verdict.AC, "") if why is None else (Verdict.WA, why) for m, why in whys.items()}


def _expected_usable(expected: str, call: bool, rules: Rules) -> bool:
    """Whether the comparison can take the expected output at all (compared with itself)."""
    try:
        if call:
            _compare.explain_call_modes(expected, expected, rules.compare, rules.abs_tol, rules.rel_tol)
        else:
            _compare.explain_stdout_modes(expected.encode("utf-8", "surrogateescape"), expected, rules.compare,
                                          rules.abs_tol, rules.rel_tol)
    except (ValueError, TypeError, RecursionError):
        return False
    return True


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


def from_report(k: int, rep: Report, out: bytes | None, size: int, tail: bytes, call: bool, problem: Problem,
                rules: Rules) -> TestResult:
    """Test k as the harness reported it (the child is still alive and answered)."""
    tr = TestResult(k, Verdict.AC, rep.wall_s, rep.cpu_s, rep.maxrss_kb, exit_code=rep.status,
                    stderr_tail=tail.decode("utf-8", "replace"))
    if out is None:
        tr.verdict, tr.message = Verdict.OLE, f"stdout reached {size} bytes (limit {rules.output_limit})"
    elif call and len(rep.value) > rules.output_limit:  # over the cap: OLE before any parsing
        tr.verdict, tr.message = Verdict.OLE, f"the return value has {len(rep.value)} bytes (limit {rules.output_limit})"
    elif rep.exc == "MemoryError":
        tr.verdict, tr.message = Verdict.MLE, "MemoryError"
    elif rep.status != 0 or rep.exc is not None:
        tr.verdict = Verdict.RE
        tr.message = rep.message or (f"uncaught {rep.exc}" if rep.exc else f"exit status {rep.status}")
    else:
        per_mode = compare_output(k, out, rep.value, call, problem, rules)
        if rep.wall_s > rules.time_limit_s:  # too slow: TLE wherever the output was right
            tle = (Verdict.TLE, f"took {rep.wall_s:.3f} s (limit {rules.time_limit_s:g} s)")
            per_mode = {m: (tle if v == Verdict.AC else (v, why)) for m, (v, why) in per_mode.items()}
        _set_modes(tr, per_mode)
    return _finish(tr, rules)


def from_exit(k: int, kind: str, ex: ExitReport, out: bytes | None, tail_b: bytes, wall: float | None, call: bool,
              problem: Problem, rules: Rules) -> TestResult:
    """Test k when the child did not report it: ``kind`` is how the wait ended ("exit": it died by itself,
    "timeout": the wall clock ran out, "ole": it sent an oversized frame); ``ex`` is the zygote's EXIT
    report; ``wall`` the program's time from the start of test k to its end (None if it never began)."""
    st = ex.status
    tr = TestResult(k, Verdict.RE, wall if wall is not None else 0.0, ex.cpu_s, ex.maxrss_kb,
                    stderr_tail=tail_b.decode("utf-8", "replace"))
    if os.WIFEXITED(st):
        tr.exit_code = os.WEXITSTATUS(st)
    elif os.WIFSIGNALED(st):
        tr.signal = os.WTERMSIG(st)
    if kind == "timeout":
        tr.verdict, tr.message = Verdict.TLE, f"wall-clock limit of {rules.time_limit_s:g} s exceeded"
        return _finish(tr, rules)
    if kind == "ole":
        tr.verdict, tr.message = Verdict.OLE, f"the return value exceeded {rules.output_limit} bytes"
        return _finish(tr, rules)
    sig = tr.signal or 0
    if ex.oom_kills > 0:
        tr.verdict, tr.message = Verdict.MLE, "the generation passed its memory limit (killed by the cgroup)"
        return _finish(tr, rules)
    if out is None or sig == signal.SIGXFSZ:
        tr.verdict, tr.message = Verdict.OLE, f"output passed the limit of {rules.output_limit} bytes"
        return _finish(tr, rules)
    if sig == signal.SIGXCPU:
        tr.verdict, tr.message = Verdict.TLE, "CPU time limit exceeded"
        return _finish(tr, rules)
    if wall is not None and wall > rules.time_limit_s:
        # the time limit holds on every way out, os._exit(0) after printing the answer included
        tr.verdict, tr.message = Verdict.TLE, f"took {wall:.3f} s (limit {rules.time_limit_s:g} s)"
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
    if "MemoryError" in tr.stderr_tail or (sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS,
                                                    signal.SIGKILL) and ex.maxrss_kb >= 0.8 * limit_kb):
        tr.verdict, tr.message = Verdict.MLE, f"killed by signal {sig} near the memory limit"
    else:
        name = signal.Signals(sig).name if sig in set(signal.Signals) else str(sig)
        tr.message = f"killed by signal {sig} ({name})"
    return _finish(tr, rules)


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
