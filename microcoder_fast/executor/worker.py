"""One worker of the executor: its zygotes (``_C.Zygote``, one process each) and the driver that runs a
generation on them: hand the program and its tests to a forked child, wait for each test's report or
end, and turn what happened into test results (through :mod:`verdicts`).

A Worker is driven by exactly one thread (the Executor's pool owns the threads). Must not import the
Executor (api.py); imports ``_C`` lazily so that importing the types never loads the extension.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass

from microcoder_fast.executor import verdicts
from microcoder_fast.executor._zygote import SCRUBBED_ENV
from microcoder_fast.executor.types import Problem, Result, TestResult, Verdict

FRAME_COMPILED, FRAME_CE, FRAME_RESULT, FRAME_SETUP_ERROR = 13, 14, 12, 15
Z_READY, Z_EXIT, Z_ERR, Z_BENCH, Z_BENCH_RESULT = 3, 4, 5, 6, 7

# sources longer than this report the end of compilation apart (must match _child.COMPILED_REPORT_BYTES);
# shorter ones compile in milliseconds, which the first test's start-up slack covers
COMPILED_REPORT_BYTES = 65536
START_SLACK_S = 0.5
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from microcoder_fast.executor._zygote import main; main()"
)


@dataclass(frozen=True)
class Settings:
    """The Executor's judging settings, as every worker sees them."""

    time_limit_s: float
    memory_limit_mb: float
    compare: tuple[str, ...]  # the compare modes, primary first
    abs_tol: float
    rel_tol: float
    output_limit: int
    stderr_tail_bytes: int
    pipeline: int
    preimport_numpy: bool | str
    zygote_cfg: dict


class GenerationLost(Exception):
    """The worker's zygote failed (died, errored, or the protocol broke): a judge fault, retried."""


@dataclass
class _Job:
    """One program and problem being judged, with the per-problem limits resolved."""

    source: bytes
    problem: Problem
    rules: verdicts.Rules
    call: bool
    stop: bool
    results: list[TestResult]


class Worker:
    """One worker: up to two zygotes (a plain one, and, started on first use, one with NumPy pre-imported
    for programs that mention numpy: NumPy roughly doubles the cost of every fork, since its libraries add
    ~80 MB of mappings, so programs that do not use it never pay that) and the generation driver."""

    def __init__(self, settings: Settings, index: int) -> None:
        self.s = settings
        self.index = index
        self.zygotes: dict[bool, object] = {}
        self.zygote = None  # the zygote of the generation being judged
        self.layers: dict = {}
        self.restarts = 0

    # --- zygote life cycle ------------------------------------------------------------------------------
    def ensure(self, numpy: bool = False) -> None:
        z = self.zygotes.get(numpy)
        if z is not None and z.zygote_alive():
            self.zygote = z
            return
        if z is not None:
            z.close(0.5)
            self.zygotes.pop(numpy, None)
            self.restarts += 1
        from microcoder_fast import _C

        cfg = dict(self.s.zygote_cfg, preimport_numpy=numpy)
        argv = [sys.executable, "-I", "-c", _BOOT, _PKG_PARENT, json.dumps(cfg)]
        z = _C.Zygote(argv, [f"{k}={v}" for k, v in SCRUBBED_ENV.items()])
        got = z.recv_zygote(60.0)
        if got is None or got[0] != Z_READY:
            z.close(0.5)
            raise RuntimeError(
                "the executor's zygote did not start (no READY within 60 s); run "
                "`python -c 'from microcoder_fast.executor._zygote import main'` to see the import error"
            )
        layers = json.loads(got[1])
        if not self.layers or not numpy:
            self.layers = layers
        self.zygotes[numpy] = z
        self.zygote = z

    def drop_current(self) -> None:
        """Forget the current zygote (it failed); the next ensure() starts a fresh one."""
        for k, z in list(self.zygotes.items()):
            if z is self.zygote:
                z.close(0.2)
                del self.zygotes[k]
        self.zygote = None

    def close(self) -> None:
        for z in self.zygotes.values():
            z.close(1.0)
        self.zygotes.clear()
        self.zygote = None

    def bench_fork(self, n: int, numpy: bool) -> float:
        """Bare fork + _exit + waitpid inside the zygote, in seconds."""
        self.ensure(numpy)
        if not self.zygote.send_zygote(Z_BENCH, str(int(n)).encode()):
            raise RuntimeError("the zygote is gone")
        got = self.zygote.recv_zygote(120.0)
        if got is None or got[0] != Z_BENCH_RESULT:
            raise RuntimeError("the zygote did not answer the fork benchmark")
        return int(got[1]) * 1e-9

    # --- judging ----------------------------------------------------------------------------------------
    def judge(self, code: str | bytes, problem: Problem, stop: bool) -> Result:
        s = self.s
        n = len(problem.tests)
        if n == 0:
            return Result(Verdict.IE, 0, 0, message="problem has no tests: add at least one TestCase "
                          "(a problem without tests is never accepted)")
        if problem._input_error:
            return Result(Verdict.IE, 0, n, message=problem._input_error)
        source = code.encode("utf-8", "surrogatepass") if isinstance(code, str) else bytes(code)
        rules = verdicts.Rules(
            compare=s.compare,
            abs_tol=s.abs_tol if problem.abs_tol is None else problem.abs_tol,
            rel_tol=s.rel_tol if problem.rel_tol is None else problem.rel_tol,
            time_limit_s=problem.time_limit_s or s.time_limit_s,
            output_limit=s.output_limit,
            memory_limit_mb=s.memory_limit_mb,
        )
        job = _Job(source, problem, rules, problem.fn_name is not None, stop, [])
        k = 0
        lost = 0
        use_numpy = s.preimport_numpy is True or (s.preimport_numpy == "auto" and b"numpy" in source)
        while k < n:
            try:
                self.ensure(use_numpy)
                k, finished, ce = self._run_generation(job, k)
            except GenerationLost as e:
                lost += 1
                if lost >= 3:
                    return Result(Verdict.IE, sum(r.verdict == Verdict.AC for r in job.results), n, job.results,
                                  message=f"the judge's worker process failed repeatedly: {e}")
                self.drop_current()
                continue
            if ce is not None:
                return Result(Verdict.CE, 0, n, [], message=ce)
            if finished:
                break
        return verdicts.generation_result(job.results, n, s.compare, stop)

    def _gen_payload(self, problem: Problem, remaining: int, tl: float) -> bytes:
        # "fn_name as_bytes cpu_s fsize nproc nofile stack" (fn_name "-" = stdin mode); fsize allows one
        # byte over the output cap so the supervisor can tell "at the cap" from "over it"
        return b"%s %d %d %d %d %d %d" % (
            (problem.fn_name or "-").encode(),
            int(self.s.memory_limit_mb * 1024 * 1024),
            int(math.ceil(tl * (remaining + 1))) + 1,
            self.s.output_limit + 1,
            64,
            256,
            0,
        )

    def _wait(self, timeout: float) -> tuple:
        return self.zygote.wait_event(max(timeout, 0.0), self.s.output_limit + (1 << 20))

    def _await_exit(self, kill: bool = False, timeout: float = 10.0) -> tuple:
        """Wait until the zygote reports the generation reaped (killing it first if asked, or if it does
        not exit within timeout). Returns the EXIT event."""
        if kill:
            self.zygote.kill_generation()
        deadline = time.monotonic() + timeout
        killed = kill
        while True:
            ev = self._wait(deadline - time.monotonic())
            kind = ev[0]
            if kind == "exit":
                return ev
            if kind == "zygote_dead":
                raise GenerationLost("the zygote died")
            if kind == "zygote" and ev[1] == Z_ERR:
                raise GenerationLost(ev[2].decode(errors="replace"))
            if kind in ("timeout", "ole") or time.monotonic() >= deadline:
                if killed and time.monotonic() >= deadline:
                    raise GenerationLost("the generation did not exit after SIGKILL")
                if not killed:
                    self.zygote.kill_generation()
                    killed = True
                    deadline = time.monotonic() + timeout

    def _run_generation(self, job: _Job, k: int) -> tuple[int, bool, str | None]:
        """Fork one child from the zygote and run tests k.. in it, up to ``pipeline`` tests handed over
        ahead of the one running. Returns (next k, finished, CE message)."""
        problem, source, tl, stop = job.problem, job.source, job.rules.time_limit_s, job.stop
        results = job.results
        n = len(problem.tests)
        z = self.zygote
        out_cap = self.s.output_limit
        if not z.start(self._gen_payload(problem, n - k, tl) + b"\n" + source, min(self.s.pipeline, n)):
            raise GenerationLost("could not hand the generation to the zygote")
        sent = k
        window = self.s.pipeline

        def fill() -> None:
            nonlocal sent
            while sent < n and sent - k < window:
                if not z.send_test(sent, sent == n - 1, problem._inputs[sent], out_cap):
                    return
                sent += 1

        fill()
        t0 = time.perf_counter()
        slack = START_SLACK_S  # fork, sandbox entry and compiling a short source, before the first test
        if len(source) > COMPILED_REPORT_BYTES:
            # a long source: compilation has its own budget (at least 10 s, so a 10 MB source compiles)
            ev = self._wait(max(tl, 10.0) + 1.0)
            if ev[0] == "ctl" and ev[1] == FRAME_SETUP_ERROR:
                self._await_exit()
                raise GenerationLost(ev[2].decode("utf-8", "replace"))
            if not (ev[0] == "ctl" and ev[1] in (FRAME_COMPILED, FRAME_CE)):
                tr = self._abnormal(ev, k, time.perf_counter() - t0, job)
                results.append(tr)
                k += 1
                failed = verdicts.all_modes_failed(results)
                return (n if failed and stop else k), (failed and stop) or k >= n, None
            if ev[1] == FRAME_CE:
                z.detach_generation()
                return n, True, ev[2].decode("utf-8", "replace")
            t0 = time.perf_counter()
            slack = 0.0
        while k < n:
            ev = self._wait(tl + slack - (time.perf_counter() - t0))
            wall = time.perf_counter() - t0
            kind, ftype, payload = ev
            if kind == "ctl" and ftype == FRAME_CE:
                z.detach_generation()  # the child exits by itself
                return n, True, payload.decode("utf-8", "replace")
            if kind == "ctl" and ftype == FRAME_SETUP_ERROR:
                self._await_exit()
                raise GenerationLost(payload.decode("utf-8", "replace"))
            if kind == "ctl" and ftype == FRAME_RESULT:
                head, value = verdicts.parse_result(payload)
                if head["index"] != k:
                    raise GenerationLost(f"result for test {head['index']} while test {k} was running")
                out, size, tail = z.take_output(k, out_cap, self.s.stderr_tail_bytes)
                tr = verdicts.from_report(k, head, value, out, size, tail, job.call, problem, job.rules)
                results.append(tr)
                t0 = time.perf_counter()
                slack = 0.0
                k += 1
                failed = verdicts.all_modes_failed(results)
                # From here on the child's exit status is not needed: the zygote reaps and cleans it
                # before it starts the next generation, and its EXIT report is skipped.
                if k >= n:  # the child exits by itself after the last test
                    z.detach_generation()
                    return k, True, None
                if failed and stop:
                    if sent > k:
                        z.kill_generation()
                    else:
                        z.send_end()
                    z.detach_generation()
                    return n, True, None
                if head.get("dirty"):
                    z.detach_generation()
                    return k, False, None
                fill()
                continue
            if kind == "ctl":
                continue  # COMPILED of a short source, or a frame the protocol does not expect: ignore
            tr = self._abnormal(ev, k, wall, job)
            results.append(tr)
            k += 1
            failed = verdicts.all_modes_failed(results)
            return (n if failed and stop else k), (failed and stop) or k >= n, None
        self._await_exit(kill=True)
        return k, True, None

    def _abnormal(self, ev: tuple, k: int, wall: float, job: _Job) -> TestResult:
        """The child did not report test k: it died, timed out or sent an oversized frame."""
        kind = ev[0]
        if kind == "zygote_dead":
            raise GenerationLost("the zygote died during a test")
        if kind == "zygote" and ev[1] == Z_ERR:
            raise GenerationLost(ev[2].decode(errors="replace"))
        ex = ev if kind == "exit" else self._await_exit(kill=True)
        out, _size, tail_b = self.zygote.take_output(k, self.s.output_limit, self.s.stderr_tail_bytes)
        self.zygote.end_generation()
        return verdicts.from_exit(k, kind, ex[2], out, tail_b, wall, job.call, job.problem, job.rules)
