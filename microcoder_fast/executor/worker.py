"""One worker of the executor: its zygotes (``_C.Zygote``, one process each) and the driver that runs a
generation on them: hand the program and its tests to a forked child, wait for each test's report or
end, and turn what happened into test results (through :mod:`verdicts`).

A Worker is driven by exactly one thread (the Executor's pool owns the threads). Must not import the
Executor (api.py) nor ``threading`` (the Executor's threads drive it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

from microcoder_fast import _C
from microcoder_fast.executor import checker, verdicts
from microcoder_fast.executor._zygote import SCRUBBED_ENV
from microcoder_fast.executor.types import Problem, Result, TestResult, Verdict

_F = _C.frame

# sources longer than this get a compilation budget of their own (max(time limit, 10 s)) before the first
# test; shorter ones compile in milliseconds, which the start-up slack covers
COMPILED_REPORT_BYTES = 65536
START_SLACK_S = 0.5  # fork, sandbox entry and compiling a short source: once per generation
TEST_GRACE_S = 0.1  # the harness' own work around a test (resetting state, reporting), past the limit
CLEANUP_BOUND_S = 60.0  # the zygote must have cleaned up the previous generation and forked by then
STARTED_POLL_S = 0.05  # how often the driver looks for the zygote's STARTED report while it has none
EXIT_BOUND_S = 10.0  # a killed generation must be reaped by then
MAX_ATTEMPTS = 4  # a generation is retried on a fresh zygote after a judge fault, at most this often
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
    """The worker's zygote failed (died, errored, could not start): a judge fault, retried."""


@dataclass
class _Job:
    """One program and problem being judged, with the per-problem limits resolved."""

    source: bytes
    problem: Problem
    rules: verdicts.Rules
    call: bool
    stop: bool
    results: list[TestResult]
    slack_left: float = START_SLACK_S
    failed_modes: set = field(default_factory=set)  # compare modes with a test that is not AC so far

    def record(self, tr: TestResult) -> bool:
        """Add test tr's result; True once every compare mode has failed a test (then, with
        stop-on-first-failure, no test still to run can change any mode's verdict)."""
        self.results.append(tr)
        self.failed_modes.update(m for m, v in (tr.verdicts or {self.rules.compare[0]: tr.verdict}).items()
                                 if v != Verdict.AC)
        return len(self.failed_modes) >= len(self.rules.compare)


@dataclass
class _Gen:
    """What the driver knows about the running generation (one forked child)."""

    t_req: float  # when the RUN was queued (monotonic s)
    startup_budget: float  # from the fork to the first test's start
    begun: bool = False  # the child sent BEGIN
    test_start: float = 0.0  # when the current test started (monotonic s), once begun


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
        self._cgroup_dirs: dict[int, list[str]] = {}  # zygote pid -> its cgroup dirs (removed on drop)
        self._checker_worker: Worker | None = None  # started on the first problem with a checker

    # --- zygote life cycle ------------------------------------------------------------------------------
    def ensure(self, numpy: bool = False) -> None:
        z = self.zygotes.get(numpy)
        if z is not None and z.zygote_alive():
            self.zygote = z
            return
        if z is not None:
            self._close_zygote(z, 0.5)
            self.zygotes.pop(numpy, None)
            self.restarts += 1
        cfg = dict(self.s.zygote_cfg, preimport_numpy=numpy)
        argv = [sys.executable, "-I", "-c", _BOOT, _PKG_PARENT, json.dumps(cfg)]
        z = _C.Zygote(argv, [f"{k}={v}" for k, v in SCRUBBED_ENV.items()])
        try:
            got = z.recv_zygote(60.0)
        except (RuntimeError, OSError):
            got = None
        if got is None or got[0] != _F.READY:
            z.close(0.5)
            raise GenerationLost(
                "the executor's zygote did not start (no READY within 60 s); run "
                "`python -c 'from microcoder_fast.executor._zygote import main'` to see an import error"
            )
        layers = json.loads(got[1])
        self._cgroup_dirs[z.pid] = list(layers.get("cgroup_dirs", ()))
        _sweep_cgroups(self._cgroup_dirs[z.pid])
        if not self.layers or not numpy:
            self.layers = layers
        self.zygotes[numpy] = z
        self.zygote = z

    def _close_zygote(self, z: object, grace: float) -> None:
        pid = z.pid
        z.close(grace)
        # a zygote killed from outside cannot remove its cgroup; its generations are gone, so it is empty
        for d in reversed(self._cgroup_dirs.pop(pid, [])):
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)

    def drop_current(self) -> None:
        """Forget the current zygote (it failed); the next ensure() starts a fresh one."""
        for k, z in list(self.zygotes.items()):
            if z is self.zygote:
                self._close_zygote(z, 0.2)
                del self.zygotes[k]
        self.zygote = None
        self.restarts += 1

    def close(self) -> None:
        if self._checker_worker is not None:
            self._checker_worker.close()
        for z in self.zygotes.values():
            self._close_zygote(z, 1.0)
        self.zygotes.clear()
        self.zygote = None

    def bench_fork(self, n: int, numpy: bool) -> float:
        """Bare fork + _exit + waitpid inside the zygote, in seconds."""
        self.ensure(numpy)
        if not self.zygote.send_bench(int(n)):
            raise RuntimeError("the zygote is gone")
        got = self.zygote.recv_zygote(120.0)
        if got is None or got[0] != _F.BENCH_RESULT:
            raise RuntimeError("the zygote did not answer the fork benchmark")
        return int.from_bytes(got[1], "little", signed=True) * 1e-9

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
            checker=None if problem.checker is None else (lambda k, text: self._check(problem, k, text)),
        )
        job = _Job(source, problem, rules, problem.fn_name is not None, stop, [])
        k = 0
        faults = 0
        use_numpy = s.preimport_numpy is True or (s.preimport_numpy == "auto" and b"numpy" in source)
        while k < n:
            try:
                self.ensure(use_numpy)
                k, finished, ce = self._run_generation(job, k)
            except Exception as e:  # noqa: BLE001 - every failure here is the judge's, never the program's
                # A judge fault (a zygote killed or failed, a system call that failed, a bug): nothing of
                # this zygote is trusted any more. Retry the remaining tests on a fresh one, a bounded
                # number of times; only then is it IE.
                faults += 1
                self.drop_current()
                if faults >= MAX_ATTEMPTS:
                    why = str(e) if isinstance(e, GenerationLost) else repr(e)
                    return Result(Verdict.IE, sum(r.verdict == Verdict.AC for r in job.results), n, job.results,
                                  message=f"the judge failed {faults} times in a row: {why}")
                continue
            if ce is not None:
                return Result(Verdict.CE, 0, n, [], message=ce)
            if finished:
                break
        return verdicts.generation_result(job.results, n, s.compare, stop)

    def _check(self, problem: Problem, k: int, output: str) -> tuple[Verdict, str]:
        """Run the problem's checker on test k's output, in a worker of its own (see checker.py)."""
        why = checker.too_long(output, problem, k)
        if why is not None:
            return Verdict.WA, why
        if self._checker_worker is None:
            self._checker_worker = Worker(dataclasses.replace(self.s, compare=("default",)), self.index)
        tl = problem.time_limit_s or self.s.time_limit_s
        res = self._checker_worker.judge(problem.checker, checker.checker_problem(problem, k, output, tl), True)
        return checker.verdict(res, k)

    def _wait(self, timeout: float) -> tuple:
        return self.zygote.wait_event(max(timeout, 0.0), self.s.output_limit + (1 << 20))

    def _await_exit(self, kill: bool) -> tuple:
        """Wait until the zygote reports the generation reaped (killing it first if asked, or if it does
        not exit within EXIT_BOUND_S). Frames the child still sends are dropped. Returns the EXIT event."""
        z = self.zygote
        if kill:
            z.kill_generation()
        deadline = time.monotonic() + EXIT_BOUND_S
        killed = kill
        while True:
            ev = self._wait(deadline - time.monotonic())
            kind = ev[0]
            if kind == "exit":
                return ev
            if kind == "zygote_dead":
                raise GenerationLost("the zygote died")
            if kind == "zygote":
                raise GenerationLost(_frame_text(ev[2]))
            if kind == "timeout":
                if killed:
                    raise GenerationLost(f"the generation was not reaped within {EXIT_BOUND_S:g} s of SIGKILL")
                z.kill_generation()
                killed = True
                deadline = time.monotonic() + EXIT_BOUND_S

    def _deadline(self, g: _Gen, tl: float) -> float | None:
        """When the current test's time is up (monotonic s); None: the zygote has not forked the child
        yet (it is still cleaning up the previous generation; that is not the program's time)."""
        if g.begun:
            return g.test_start + tl + TEST_GRACE_S
        fork_ns = self.zygote.started_ns()
        if fork_ns < 0:
            return None
        return fork_ns * 1e-9 + g.startup_budget + tl + TEST_GRACE_S

    def _run_generation(self, job: _Job, k: int) -> tuple[int, bool, str | None]:
        """Fork one child from the zygote and run tests k.. in it, up to ``pipeline`` tests handed over
        ahead of the one running. Returns (next k, finished, CE message). Raises on a judge fault."""
        problem, source, tl, stop = job.problem, job.source, job.rules.time_limit_s, job.stop
        n = len(problem.tests)
        z = self.zygote
        s = self.s
        z.start((problem.fn_name or "").encode(), int(s.memory_limit_mb * 1024 * 1024),
                int(math.ceil(tl * (n - k + 1))) + 1, s.output_limit + 1, 64, 256, 0, source,
                min(s.pipeline, n - k))
        sent = k

        def next_to_send(base: int) -> int:
            """The next test to hand over while fewer than ``pipeline`` are ahead of test ``base`` (the
            first whose output is not read yet: its set is still in use); -1 if none may go now."""
            return sent if sent < n and sent - base < s.pipeline else -1

        while (nxt := next_to_send(k)) >= 0 and z.send_test(nxt, nxt == n - 1, problem._inputs[nxt]):
            sent += 1
        long_source = len(source) > COMPILED_REPORT_BYTES
        g = _Gen(time.monotonic(), max(tl, 10.0) + 1.0 if long_source else job.slack_left)
        while k < n:
            deadline = self._deadline(g, tl)
            # until the zygote says it forked, look again every STARTED_POLL_S (it reports the fork
            # without waking us: most children report BEGIN first anyway)
            until = min(g.t_req + CLEANUP_BOUND_S, time.monotonic() + STARTED_POLL_S) if deadline is None else deadline
            ev = self._wait(until - time.monotonic())
            kind, ftype, payload = ev
            now = time.monotonic()
            if kind == "timeout":
                deadline = self._deadline(g, tl)
                if deadline is None:
                    if now < g.t_req + CLEANUP_BOUND_S:
                        continue
                    raise GenerationLost(f"the zygote did not start the generation within {CLEANUP_BOUND_S:g} s")
                if now < deadline:
                    continue  # the deadline moved: the fork came later than asked (cleanup)
                if not g.begun:
                    job.slack_left = 0.0
                return self._ended(job, k, self._abnormal(ev, k, g, job))
            if kind == "ctl" and ftype == _F.BEGIN:
                try:
                    index, begin_ns = _F.decode_begin(payload)
                except ValueError:
                    index, begin_ns = -1, 0
                if g.begun or index != k:
                    return self._ended(job, k, self._malformed(k, g, job, "an unexpected BEGIN frame"))
                fork_ns = z.started_ns()
                lo = fork_ns * 1e-9 if fork_ns >= 0 else g.t_req
                g.test_start = min(max(begin_ns * 1e-9, lo), now)
                g.begun = True
                if not long_source:
                    job.slack_left = max(0.0, job.slack_left - (g.test_start - lo))
                continue
            if kind == "ctl" and ftype == _F.COMPILE_ERROR and not g.begun:
                z.end_generation()  # the child exits by itself
                try:
                    return n, True, _text(_F.decode_text(payload))
                except ValueError:
                    return self._ended(job, k, self._malformed(k, g, job, "a malformed COMPILE_ERROR frame"))
            if kind == "ctl" and ftype == _F.SETUP_ERROR:
                self._await_exit(kill=True)
                raise GenerationLost(_frame_text(payload))
            if kind == "ctl" and ftype == _F.RESULT:
                try:
                    rep = verdicts.Report.decode(payload)
                except ValueError as e:
                    return self._ended(job, k, self._malformed(k, g, job, str(e)))
                if not g.begun or rep.index != k:
                    why = f"a result for test {rep.index} while test {k} was running"
                    return self._ended(job, k, self._malformed(k, g, job, why))
                # test k's set is free: the next test goes in the same call, before the comparison, so the
                # child stays fed (if test k fails and stops the generation, what was handed ahead is
                # killed with it); a dirty child ends here
                nxt = -1 if rep.dirty else next_to_send(k + 1)
                out, size, tail, ok = z.take_output(k, s.output_limit, s.stderr_tail_bytes, nxt, nxt == n - 1,
                                                    problem._inputs[nxt] if nxt >= 0 else b"")
                sent += ok
                tr = verdicts.from_report(k, rep, out, size, tail, job.call, problem, job.rules)
                failed = job.record(tr)
                g.test_start = min(max(rep.end_ns * 1e-9, g.test_start), now)
                k += 1
                # From here on the child's exit status is not needed: the zygote reaps and cleans it
                # before it starts the next generation, and its EXIT report is dropped by its number.
                if k >= n:  # the child exits by itself after the last test
                    z.end_generation()
                    return k, True, None
                if failed and stop:
                    if sent > k:
                        z.kill_generation()
                    else:
                        z.send_end()
                    z.end_generation()
                    return n, True, None
                if rep.dirty:
                    z.end_generation()
                    return k, False, None
                continue
            if kind == "ctl":
                why = f"a frame of type {ftype} the protocol does not expect here"
                return self._ended(job, k, self._malformed(k, g, job, why))
            if kind == "bad":
                return self._ended(job, k, self._malformed(k, g, job, _text(payload)))
            if not g.begun:
                job.slack_left = 0.0
            return self._ended(job, k, self._abnormal(ev, k, g, job))
        self._await_exit(kill=True)
        return k, True, None

    def _ended(self, job: _Job, k: int, tr: TestResult) -> tuple[int, bool, None]:
        """The child is gone after test k (reported in tr): record it; the next child starts at k + 1."""
        failed = job.record(tr)
        k += 1
        n = len(job.problem.tests)
        return (n if failed and job.stop else k), (failed and job.stop) or k >= n, None

    def _malformed(self, k: int, g: _Gen, job: _Job, why: str) -> TestResult:
        """The child sent something the harness never sends: the program wrote to the judge's control
        channel. The generation is killed and reaped (its frames are dropped from here on); test k is RE."""
        ex = self._await_exit(kill=True)
        tr = self._from_exit(ex, k, g, job, "exit")
        tr.verdict, tr.message = Verdict.RE, f"the program wrote to the judge's control channel ({why})"
        tr.verdicts = dict.fromkeys(job.rules.compare, tr.verdict)
        tr.messages = dict.fromkeys(job.rules.compare, tr.message)
        return tr

    def _abnormal(self, ev: tuple, k: int, g: _Gen, job: _Job) -> TestResult:
        """The child did not report test k: it died, timed out or sent an oversized frame."""
        kind = ev[0]
        if kind == "zygote_dead":
            raise GenerationLost("the zygote died during a test")
        if kind == "zygote":
            raise GenerationLost(_frame_text(ev[2]))
        ex = ev if kind == "exit" else self._await_exit(kill=True)
        return self._from_exit(ex, k, g, job, kind)

    def _from_exit(self, ex: tuple, k: int, g: _Gen, job: _Job, kind: str) -> TestResult:
        try:
            exit_report = verdicts.ExitReport.decode(ex[2])
        except ValueError as e:
            raise GenerationLost(f"the zygote sent a malformed EXIT report: {e}") from None
        out, _size, tail, _ = self.zygote.take_output(k, self.s.output_limit, self.s.stderr_tail_bytes)
        self.zygote.end_generation()
        # the program's own time: from the start of its test (BEGIN, or the end of the test before) to
        # the moment the zygote reaped it; unknown if it never began
        wall = exit_report.reaped_ns * 1e-9 - g.test_start if g.begun else None
        return verdicts.from_exit(k, kind, exit_report, out, tail, wall, job.call, job.problem, job.rules)


def _sweep_cgroups(dirs: list[str]) -> None:
    """Remove the cgroups of zygotes that no longer exist (killed before they could remove their own), next
    to the ones of a zygote that just started. A cgroup still in use cannot be removed, and a live
    zygote's is never touched."""
    for d in dirs:
        parent = os.path.dirname(d)
        try:
            names = [n for n in os.listdir(parent) if n.startswith("mcf-zygote-")]
        except OSError:
            continue
        for name in names:
            try:
                os.kill(int(name.rsplit("-", 1)[1]), 0)
                continue  # its zygote (or a process that took over its pid) is alive
            except ProcessLookupError:
                pass
            except (ValueError, OSError):
                continue
            try:
                os.rmdir(os.path.join(parent, name))
            except OSError:
                pass


def _frame_text(payload: bytes) -> str:
    """The message of a SETUP_ERROR or ZYGOTE_ERROR frame (one length-prefixed text field)."""
    try:
        return _text(_F.decode_text(payload))
    except ValueError:
        return _text(payload)


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")
