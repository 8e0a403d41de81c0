"""Executor, Problem, TestCase, Verdict, Result: the public face of the sandboxed judge."""

from __future__ import annotations

import atexit
import json
import math
import os
import queue
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum

from microcoder_fast.executor import compare as _compare

FRAME_COMPILED, FRAME_CE, FRAME_RESULT, FRAME_SETUP_ERROR = 13, 14, 12, 15
Z_READY, Z_EXIT, Z_ERR, Z_BENCH, Z_BENCH_RESULT = 3, 4, 5, 6, 7

# sources longer than this report the end of compilation apart (must match _child.COMPILED_REPORT_BYTES);
# shorter ones compile in milliseconds, which the first test's start-up slack covers
COMPILED_REPORT_BYTES = 65536
START_SLACK_S = 0.5
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Verdict(str, Enum):
    """Outcome of a test or a generation (str-valued: ``Verdict.AC == "AC"``)."""

    AC = "AC"  # accepted
    WA = "WA"  # wrong answer
    TLE = "TLE"  # time limit exceeded (wall clock or CPU)
    MLE = "MLE"  # memory limit exceeded
    RE = "RE"  # runtime error: uncaught exception, nonzero exit status, fatal signal
    OLE = "OLE"  # output limit exceeded
    CE = "CE"  # compile error (SyntaxError): no test ran
    IE = "IE"  # internal error: bad problem data or a judge failure, never the program's fault

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TestCase:
    """One test: the program's stdin text (stdin mode) or one JSON value per argument line (call mode),
    and the expected stdout text or JSON return value."""

    __test__ = False  # not a pytest class

    input: str
    output: str

    def __post_init__(self) -> None:
        for name in ("input", "output"):
            v = getattr(self, name)
            if not isinstance(v, str):
                raise TypeError(
                    f"TestCase.{name} must be str, got {type(v).__name__}; decode bytes or json.dumps values first"
                )


def _as_test(t: object, i: int) -> TestCase:
    if isinstance(t, TestCase):
        return t
    if isinstance(t, dict) and "input" in t and "output" in t:
        return TestCase(t["input"], t["output"])
    if isinstance(t, (tuple, list)) and len(t) == 2:
        return TestCase(t[0], t[1])
    raise TypeError(f"test {i} must be a TestCase, an (input, output) pair or a dict with input/output keys")


@dataclass
class Problem:
    """Tests plus how to run them. ``fn_name`` None = stdin mode, else call mode (LeetCode style).
    ``time_limit_s``, ``abs_tol`` and ``rel_tol`` override the executor's defaults for this problem."""

    tests: Sequence[TestCase]
    fn_name: str | None = None
    time_limit_s: float | None = None
    abs_tol: float | None = None
    rel_tol: float | None = None
    id: str | None = None
    _inputs: list[bytes] = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]
    _input_error: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.tests, (str, bytes)) or not isinstance(self.tests, Iterable):
            raise TypeError("Problem.tests must be a sequence of TestCase")
        self.tests = tuple(_as_test(t, i) for i, t in enumerate(self.tests))
        if self.fn_name is not None and (not isinstance(self.fn_name, str) or not self.fn_name.isidentifier()):
            raise ValueError(f"Problem.fn_name must be a Python identifier or None, got {self.fn_name!r}")
        if self.time_limit_s is not None and not (self.time_limit_s > 0 and math.isfinite(self.time_limit_s)):
            raise ValueError(f"Problem.time_limit_s must be a positive number of seconds, got {self.time_limit_s!r}")
        for name in ("abs_tol", "rel_tol"):
            v = getattr(self, name)
            if v is not None and not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"Problem.{name} must be a finite number >= 0, got {v!r}")
        self._prepare()

    def _prepare(self) -> None:
        self._inputs = [t.input.encode("utf-8", "surrogateescape") for t in self.tests]
        self._input_error = None
        if self.fn_name is None:
            return
        for i, t in enumerate(self.tests):
            lines = t.input.split("\n")
            while lines and not lines[-1].strip():
                lines.pop()
            for j, line in enumerate(lines):
                try:
                    json.loads(line)
                except ValueError as e:
                    self._input_error = (
                        f"test {i}: argument line {j + 1} is not valid JSON ({e}): {line[:80]!r}; call-mode "
                        "inputs hold one JSON value per line"
                    )
                    return


@dataclass
class TestResult:
    """Outcome of one test. ``peak_memory_kb`` is the generation's resident high-water mark so far."""

    __test__ = False

    index: int
    verdict: Verdict
    wall_s: float
    cpu_s: float
    peak_memory_kb: int
    exit_code: int | None = None
    signal: int | None = None
    stderr_tail: str = ""
    message: str = ""


@dataclass
class Result:
    """Outcome of one generation. ``total`` counts the problem's tests; ``tests`` holds those that ran."""

    verdict: Verdict
    passed: int
    total: int
    tests: list[TestResult] = field(default_factory=list)
    message: str = ""
    index: int | None = None
    problem_id: str | None = None
    wall_s: float = 0.0

    @property
    def reward(self) -> float:
        return 1.0 if self.verdict == Verdict.AC else 0.0

    @property
    def accepted(self) -> bool:
        return self.verdict == Verdict.AC


# ------------------------------------------------------------------------------------------------------


def _scrubbed_env() -> list[str]:
    return [
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "LANG=C.UTF-8",
        "LC_ALL=C.UTF-8",
        "OPENBLAS_NUM_THREADS=1",
        "OMP_NUM_THREADS=1",
        "MKL_NUM_THREADS=1",
        "NUMEXPR_NUM_THREADS=1",
        "MALLOC_ARENA_MAX=2",
    ]


class _Slot:
    """One worker: the thread that drives it and up to two zygotes: a plain one, and (started on first
    use) one with NumPy pre-imported for programs that mention numpy. NumPy roughly doubles the cost of
    every fork (its libraries add ~80 MB of mappings), so programs that do not use it never pay that."""

    def __init__(self, ex: Executor, index: int) -> None:
        self.ex = ex
        self.index = index
        self.zygotes: dict[bool, object] = {}
        self.w = None  # the zygote of the generation being judged
        self.layers: dict = {}
        self.restarts = 0

    def ensure(self, numpy: bool = False) -> None:
        w = self.zygotes.get(numpy)
        if w is not None and w.zygote_alive():
            self.w = w
            return
        if w is not None:
            w.close(0.5)
            self.zygotes.pop(numpy, None)
            self.restarts += 1
        from microcoder_fast import _C

        boot = (
            "import sys; sys.path.insert(0, sys.argv.pop(1)); "
            "from microcoder_fast.executor._zygote import main; main()"
        )
        cfg = dict(self.ex._zygote_cfg, preimport_numpy=numpy)
        argv = [sys.executable, "-I", "-c", boot, _PKG_PARENT, json.dumps(cfg)]
        w = _C.Worker(argv, _scrubbed_env())
        got = w.recv_zygote(60.0)
        if got is None or got[0] != Z_READY:
            w.close(0.5)
            raise RuntimeError(
                "the executor's zygote did not start (no READY within 60 s); run "
                "`python -c 'from microcoder_fast.executor._zygote import main'` to see the import error"
            )
        layers = json.loads(got[1])
        if not self.layers or not numpy:
            self.layers = layers
        self.zygotes[numpy] = w
        self.w = w

    def drop_current(self) -> None:
        """Forget the current zygote (it failed); the next ensure() starts a fresh one."""
        for k, w in list(self.zygotes.items()):
            if w is self.w:
                w.close(0.2)
                del self.zygotes[k]
        self.w = None

    def close(self) -> None:
        for w in self.zygotes.values():
            w.close(1.0)
        self.zygotes.clear()
        self.w = None


class _GenerationLost(Exception):
    pass


class Executor:
    """Judge programs in sandboxed processes forked from clean pre-imported zygotes.

    ``workers`` zygotes run generations in parallel; ``time_limit_s`` is per test (wall clock, CPU as a
    backstop), ``memory_limit_mb`` the address-space limit, ``compare`` the comparison mode
    (``"default"``, ``"lcb"``, ``"microcoder"``), ``output_limit_mb`` the stdout cap per test (OLE).
    Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        workers: int = 2,
        time_limit_s: float = 6.0,
        memory_limit_mb: int = 2048,
        compare: str = "default",
        output_limit_mb: float = 64,
        abs_tol: float = 1e-6,
        rel_tol: float = 1e-6,
        stderr_tail_bytes: int = 4096,
        isolation: str = "full",
        preimport_numpy: bool | str = "auto",
        pipeline: int = 4,
    ) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        if not (time_limit_s > 0 and math.isfinite(time_limit_s)):
            raise ValueError(f"time_limit_s must be a positive number of seconds, got {time_limit_s!r}")
        if not (isinstance(memory_limit_mb, (int, float)) and memory_limit_mb >= 64):
            raise ValueError(f"memory_limit_mb must be >= 64 (MiB), got {memory_limit_mb!r}")
        if compare not in _compare.MODES:
            raise ValueError(f"compare must be one of {_compare.MODES}, got {compare!r}")
        if not output_limit_mb > 0:
            raise ValueError(f"output_limit_mb must be > 0, got {output_limit_mb!r}")
        if isolation not in ("full", "none"):
            raise ValueError("isolation must be 'full' (every layer this host allows) or 'none' (rlimits only)")
        self.workers = workers
        self.time_limit_s = float(time_limit_s)
        self.memory_limit_mb = memory_limit_mb
        self.compare = compare
        self.abs_tol = abs_tol
        self.rel_tol = rel_tol
        self.output_limit = int(output_limit_mb * 1024 * 1024)
        self.stderr_tail_bytes = stderr_tail_bytes
        if not isinstance(pipeline, int) or pipeline < 1:
            raise ValueError(f"pipeline must be an int >= 1 (tests handed to a child ahead), got {pipeline!r}")
        self.pipeline = pipeline
        if preimport_numpy not in (True, False, "auto"):
            raise ValueError("preimport_numpy must be True, False or 'auto' (a NumPy zygote for programs that "
                             "mention numpy)")
        self.preimport_numpy = preimport_numpy
        full = isolation == "full"
        self._zygote_cfg = {
            "namespaces": full,
            "drop_privileges": full,
            "seccomp": full,
            "tmp_mb": 256,
        }
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._slots = [_Slot(self, i) for i in range(workers)]
        errors: list[BaseException] = []

        def start(s: _Slot) -> None:
            try:
                s.ensure(preimport_numpy is True)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        starters = [threading.Thread(target=start, args=(s,)) for s in self._slots]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        if errors:
            for s in self._slots:
                s.close()
            raise errors[0]
        self._threads = [
            threading.Thread(target=self._loop, args=(s,), name=f"mcf-executor-{s.index}", daemon=True)
            for s in self._slots
        ]
        for t in self._threads:
            t.start()
        ref = weakref.ref(self)
        self._atexit = lambda: (ref() and ref().close())  # type: ignore[union-attr]
        atexit.register(self._atexit)

    # --- public API -----------------------------------------------------------------------------------
    @property
    def layers(self) -> dict:
        """The isolation layers the zygotes report as active on this host."""
        return dict(self._slots[0].layers)

    def submit(self, code: str | bytes, problem: Problem, stop_on_first_failure: bool = True) -> Future:
        """Judge one generation in the background; the Future's result is a :class:`Result`."""
        if self._closed:
            raise RuntimeError("Executor is closed; create a new one (or use it as a context manager)")
        _check_item(code, problem, None)
        fut: Future = Future()
        self._jobs.put((fut, code, problem, stop_on_first_failure, None))
        return fut

    def judge(
        self, items: Iterable[tuple[str | bytes, Problem]], stop_on_first_failure: bool = True
    ) -> list[Result]:
        """Judge every (code, problem) pair; results in input order."""
        out: list[Result | None] = []
        for r in self.judge_iter(items, stop_on_first_failure):
            while len(out) <= r.index:  # type: ignore[operator]
                out.append(None)
            out[r.index] = r  # type: ignore[index]
        return out  # type: ignore[return-value]

    def judge_iter(
        self,
        items: Iterable[tuple[str | bytes, Problem]],
        stop_on_first_failure: bool = True,
        max_in_flight: int | None = None,
    ) -> Iterator[Result]:
        """Yield each Result as soon as it is judged (completion order; ``result.index`` is the input
        position). The input iterable is consumed lazily, at most ``max_in_flight`` items ahead."""
        if self._closed:
            raise RuntimeError("Executor is closed; create a new one (or use it as a context manager)")
        limit = max_in_flight or 4 * self.workers
        done: queue.SimpleQueue = queue.SimpleQueue()
        in_flight = 0
        it = iter(enumerate(items))
        exhausted = False
        while True:
            while not exhausted and in_flight < limit:
                try:
                    i, item = next(it)
                except StopIteration:
                    exhausted = True
                    break
                if not (isinstance(item, (tuple, list)) and len(item) == 2):
                    raise TypeError(f"item {i} must be a (code, Problem) pair, got {type(item).__name__}")
                code, problem = item
                _check_item(code, problem, i)
                fut: Future = Future()
                fut.add_done_callback(done.put)
                self._jobs.put((fut, code, problem, stop_on_first_failure, i))
                in_flight += 1
            if in_flight == 0:
                return
            f = done.get()
            in_flight -= 1
            yield f.result()

    imap_unordered = judge_iter

    def fork_exit_wait_s(self, n: int = 500, numpy: bool | None = None) -> float:
        """This host's bare fork + _exit + waitpid cost in seconds, measured inside a zygote (a plain
        C fork of the pre-imported zygote interpreter; ``numpy`` picks the zygote with NumPy loaded,
        default: the one most programs use). For benchmarks."""
        fut: Future = Future()
        flavor = (self.preimport_numpy is True) if numpy is None else bool(numpy)
        self._jobs.put((fut, None, ("bench", n, flavor), False, None))
        return fut.result()

    def close(self) -> None:
        """Stop the workers and the zygotes (idempotent). Pending jobs get an IE result."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=30)
        for s in self._slots:
            s.close()
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None and job[0].set_running_or_notify_cancel():
                job[0].set_result(Result(Verdict.IE, 0, 0, message="executor closed before this job ran"))
        try:
            atexit.unregister(self._atexit)
        except Exception:
            pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # --- worker thread ----------------------------------------------------------------------------------
    def _loop(self, slot: _Slot) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fut, code, problem, stop, index = job
            if not fut.set_running_or_notify_cancel():
                continue
            if code is None and isinstance(problem, tuple):  # bench request
                try:
                    slot.ensure(problem[2])
                    fut.set_result(self._bench(slot, problem[1]))
                except BaseException as e:  # noqa: BLE001
                    fut.set_exception(e)
                continue
            t0 = time.perf_counter()
            try:
                res = self._judge(slot, code, problem, stop)
            except BaseException as e:  # noqa: BLE001
                res = Result(Verdict.IE, 0, len(problem.tests), message=f"internal judge error: {e!r}")
            res.index = index
            res.problem_id = problem.id
            res.wall_s = time.perf_counter() - t0
            fut.set_result(res)

    def _bench(self, slot: _Slot, n: int) -> float:
        if not slot.w.send_zygote(Z_BENCH, str(int(n)).encode()):
            raise RuntimeError("the zygote is gone")
        got = slot.w.recv_zygote(120.0)
        if got is None or got[0] != Z_BENCH_RESULT:
            raise RuntimeError("the zygote did not answer the fork benchmark")
        return int(got[1]) * 1e-9

    # --- judging -------------------------------------------------------------------------------------
    def _judge(self, slot: _Slot, code: str | bytes, problem: Problem, stop: bool) -> Result:
        n = len(problem.tests)
        if n == 0:
            return Result(Verdict.IE, 0, 0, message="problem has no tests: add at least one TestCase "
                          "(a problem without tests is never accepted)")
        if problem._input_error:
            return Result(Verdict.IE, 0, n, message=problem._input_error)
        source = code.encode("utf-8", "surrogatepass") if isinstance(code, str) else bytes(code)
        tl = problem.time_limit_s or self.time_limit_s
        abs_tol = self.abs_tol if problem.abs_tol is None else problem.abs_tol
        rel_tol = self.rel_tol if problem.rel_tol is None else problem.rel_tol
        call = problem.fn_name is not None
        results: list[TestResult] = []
        k = 0
        lost = 0
        use_numpy = self.preimport_numpy is True or (self.preimport_numpy == "auto" and b"numpy" in source)
        while k < n:
            try:
                slot.ensure(use_numpy)
                k, finished, ce = self._run_generation(slot, source, problem, k, tl, abs_tol, rel_tol, call, stop,
                                                       results)
            except _GenerationLost as e:
                lost += 1
                if lost >= 3:
                    return Result(Verdict.IE, sum(r.verdict == Verdict.AC for r in results), n, results,
                                  message=f"the judge's worker process failed repeatedly: {e}")
                slot.drop_current()
                continue
            if ce is not None:
                return Result(Verdict.CE, 0, n, [], message=ce)
            if finished:
                break
        passed = sum(r.verdict == Verdict.AC for r in results)
        for r in results:
            if r.verdict != Verdict.AC:
                return Result(r.verdict, passed, n, results, message=f"test {r.index}: {r.verdict.value}"
                              + (f": {r.message}" if r.message else ""))
        if len(results) < n:  # cannot happen without a failure, kept as a guard
            return Result(Verdict.IE, passed, n, results, message="not every test ran")
        return Result(Verdict.AC, passed, n, results)

    def _gen_payload(self, problem: Problem, remaining: int, tl: float) -> bytes:
        # "fn_name as_bytes cpu_s fsize nproc nofile stack" (fn_name "-" = stdin mode); fsize allows one
        # byte over the output cap so the supervisor can tell "at the cap" from "over it"
        return b"%s %d %d %d %d %d %d" % (
            (problem.fn_name or "-").encode(),
            int(self.memory_limit_mb * 1024 * 1024),
            int(math.ceil(tl * (remaining + 1))) + 1,
            self.output_limit + 1,
            64,
            256,
            0,
        )

    def _wait(self, slot: _Slot, timeout: float) -> tuple:
        return slot.w.wait_event(max(timeout, 0.0), self.output_limit + (1 << 20))

    def _await_exit(self, slot: _Slot, kill: bool = False, timeout: float = 10.0) -> tuple:
        """Wait until the zygote reports the generation reaped (killing it first if asked, or if it does
        not exit within timeout). Returns the EXIT event."""
        if kill:
            slot.w.kill_generation()
        deadline = time.monotonic() + timeout
        killed = kill
        while True:
            ev = self._wait(slot, deadline - time.monotonic())
            kind = ev[0]
            if kind == "exit":
                return ev
            if kind == "zygote_dead":
                raise _GenerationLost("the zygote died")
            if kind == "zygote" and ev[1] == Z_ERR:
                raise _GenerationLost(ev[2].decode(errors="replace"))
            if kind in ("timeout", "ole") or time.monotonic() >= deadline:
                if killed and time.monotonic() >= deadline:
                    raise _GenerationLost("the generation did not exit after SIGKILL")
                if not killed:
                    slot.w.kill_generation()
                    killed = True
                    deadline = time.monotonic() + timeout

    def _run_generation(
        self,
        slot: _Slot,
        source: bytes,
        problem: Problem,
        k: int,
        tl: float,
        abs_tol: float,
        rel_tol: float,
        call: bool,
        stop: bool,
        results: list[TestResult],
    ) -> tuple[int, bool, str | None]:
        """Fork one child from the zygote and run tests k.. in it, up to ``pipeline`` tests handed over
        ahead of the one running. Returns (next k, finished, CE message)."""
        n = len(problem.tests)
        w = slot.w
        if not w.start(self._gen_payload(problem, n - k, tl) + b"\n" + source, min(self.pipeline, n)):
            raise _GenerationLost("could not hand the generation to the zygote")
        sent = k
        window = self.pipeline

        def fill() -> None:
            nonlocal sent
            while sent < n and sent - k < window:
                if not w.send_test(sent, sent == n - 1, problem._inputs[sent], self.output_limit):
                    return
                sent += 1

        fill()
        t0 = time.perf_counter()
        slack = START_SLACK_S  # fork, sandbox entry and compiling a short source, before the first test
        if len(source) > COMPILED_REPORT_BYTES:
            # a long source: compilation has its own budget (at least 10 s, so a 10 MB source compiles)
            ev = self._wait(slot, max(tl, 10.0) + 1.0)
            if ev[0] == "ctl" and ev[1] == FRAME_SETUP_ERROR:
                self._await_exit(slot)
                raise _GenerationLost(ev[2].decode("utf-8", "replace"))
            if not (ev[0] == "ctl" and ev[1] in (FRAME_COMPILED, FRAME_CE)):
                tr = self._abnormal(slot, ev, k, time.perf_counter() - t0, call, problem, abs_tol, rel_tol)
                results.append(tr)
                k += 1
                failed = tr.verdict != Verdict.AC
                return (n if failed and stop else k), (failed and stop) or k >= n, None
            if ev[1] == FRAME_CE:
                slot.w.detach_generation()
                return n, True, ev[2].decode("utf-8", "replace")
            t0 = time.perf_counter()
            slack = 0.0
        while k < n:
            ev = self._wait(slot, tl + slack - (time.perf_counter() - t0))
            wall = time.perf_counter() - t0
            kind, ftype, payload = ev
            if kind == "ctl" and ftype == FRAME_CE:
                slot.w.detach_generation()  # the child exits by itself
                return n, True, payload.decode("utf-8", "replace")
            if kind == "ctl" and ftype == FRAME_SETUP_ERROR:
                self._await_exit(slot)
                raise _GenerationLost(payload.decode("utf-8", "replace"))
            if kind == "ctl" and ftype == FRAME_RESULT:
                head, value = _parse_result(payload)
                if head["index"] != k:
                    raise _GenerationLost(f"result for test {head['index']} while test {k} was running")
                out, size, tail = w.take_output(k, self.output_limit, self.stderr_tail_bytes)
                tr = self._from_harness(k, head, value, out, size, tail, head["wall_s"], call, problem,
                                        abs_tol, rel_tol)
                if tr.verdict == Verdict.AC and head["wall_s"] > tl:
                    tr.verdict, tr.message = Verdict.TLE, f"took {head['wall_s']:.3f} s (limit {tl:g} s)"
                results.append(tr)
                t0 = time.perf_counter()
                slack = 0.0
                k += 1
                failed = tr.verdict != Verdict.AC
                # From here on the child's exit status is not needed: the zygote reaps and cleans it
                # before it starts the next generation, and its EXIT report is skipped.
                if k >= n:  # the child exits by itself after the last test
                    w.detach_generation()
                    return k, True, None
                if failed and stop:
                    if sent > k:
                        w.kill_generation()
                    else:
                        w.send_end()
                    w.detach_generation()
                    return n, True, None
                if head.get("dirty"):
                    w.detach_generation()
                    return k, False, None
                fill()
                continue
            if kind == "ctl":
                continue  # COMPILED of a short source, or a frame the protocol does not expect: ignore
            tr = self._abnormal(slot, ev, k, wall, call, problem, abs_tol, rel_tol)
            results.append(tr)
            k += 1
            failed = tr.verdict != Verdict.AC
            return (n if failed and stop else k), (failed and stop) or k >= n, None
        self._await_exit(slot, kill=True)
        return k, True, None

    # --- verdicts -------------------------------------------------------------------------------------
    def _compare(self, k: int, out: bytes, value: bytes, call: bool, problem: Problem, abs_tol: float,
                 rel_tol: float) -> tuple[Verdict, str]:
        expected = problem.tests[k].output
        try:
            if call:
                why = _compare.explain_call(value.decode("utf-8", "surrogatepass"), expected, self.compare,
                                            abs_tol, rel_tol)
            else:
                why = _compare.explain_stdout(out, expected, self.compare, abs_tol, rel_tol)
        except (ValueError, TypeError) as e:
            return Verdict.IE, f"test {k}: expected output could not be used ({e})"
        return (Verdict.AC, "") if why is None else (Verdict.WA, why)

    def _from_harness(self, k: int, head: dict, value: bytes, out: bytes | None, size: int, tail: bytes,
                      wall: float, call: bool, problem: Problem, abs_tol: float, rel_tol: float) -> TestResult:
        status = head.get("status")
        exc = head.get("exc")
        tr = TestResult(k, Verdict.AC, wall, float(head.get("cpu_s", 0.0)), int(head.get("maxrss_kb", 0)),
                        exit_code=status if isinstance(status, int) else None,
                        stderr_tail=tail.decode("utf-8", "replace"))
        if out is None:
            tr.verdict, tr.message = Verdict.OLE, f"stdout reached {size} bytes (limit {self.output_limit})"
        elif exc == "MemoryError":
            tr.verdict, tr.message = Verdict.MLE, "MemoryError"
        elif exc == "InputError":
            tr.verdict, tr.message = Verdict.IE, f"test {k}: {head.get('message')}"
        elif status != 0 or exc is not None:
            tr.verdict = Verdict.RE
            tr.message = head.get("message") or (f"uncaught {exc}" if exc else f"exit status {status}")
        else:
            tr.verdict, tr.message = self._compare(k, out, value, call, problem, abs_tol, rel_tol)
        return tr

    def _abnormal(self, slot: _Slot, ev: tuple, k: int, wall: float, call: bool, problem: Problem,
                  abs_tol: float, rel_tol: float) -> TestResult:
        """The child did not report test k: it died, timed out or sent an oversized frame."""
        kind = ev[0]
        if kind == "zygote_dead":
            raise _GenerationLost("the zygote died during a test")
        if kind == "zygote" and ev[1] == Z_ERR:
            raise _GenerationLost(ev[2].decode(errors="replace"))
        verdict, msg = None, ""
        if kind == "timeout":
            verdict, msg = Verdict.TLE, f"wall-clock limit of {problem.time_limit_s or self.time_limit_s:g} s exceeded"
        elif kind == "ole":
            verdict, msg = Verdict.OLE, f"the return value exceeded {self.output_limit} bytes"
        ex = ev if kind == "exit" else self._await_exit(slot, kill=True)
        out, size, tail_b = slot.w.take_output(k, self.output_limit, self.stderr_tail_bytes)
        slot.w.end_generation()
        report = json.loads(ex[2] or b"{}")
        st = int(report.get("status", 0))
        cpu = float(report.get("utime", 0.0)) + float(report.get("stime", 0.0))
        rss = int(report.get("maxrss_kb", 0))
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
            tr.verdict, tr.message = Verdict.OLE, f"output passed the limit of {self.output_limit} bytes"
            return tr
        if tr.exit_code is not None:
            if tr.exit_code == 0 and not call:
                tr.verdict, tr.message = self._compare(k, out, b"", call, problem, abs_tol, rel_tol)
            elif tr.exit_code == 0:
                tr.verdict, tr.message = Verdict.RE, "the program exited instead of returning a value"
            elif "MemoryError" in tr.stderr_tail:
                tr.verdict, tr.message = Verdict.MLE, "MemoryError"
            else:
                tr.message = f"exit status {tr.exit_code}"
            return tr
        limit_kb = self.memory_limit_mb * 1024
        if sig == signal.SIGXCPU:
            tr.verdict, tr.message = Verdict.TLE, "CPU time limit exceeded"
        elif "MemoryError" in tr.stderr_tail or (sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS,
                                                          signal.SIGKILL) and rss >= 0.8 * limit_kb):
            tr.verdict, tr.message = Verdict.MLE, f"killed by signal {sig} near the memory limit"
        else:
            name = signal.Signals(sig).name if sig in set(signal.Signals) else str(sig)
            tr.message = f"killed by signal {sig} ({name})"
        return tr


def _parse_result(payload: bytes) -> tuple[dict, bytes]:
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


def _check_item(code: object, problem: object, i: int | None) -> None:
    where = "" if i is None else f"item {i}: "
    if not isinstance(code, (str, bytes, bytearray)):
        raise TypeError(f"{where}code must be str or bytes, got {type(code).__name__}")
    if not isinstance(problem, Problem):
        raise TypeError(f"{where}problem must be a microcoder_fast.executor.Problem, got {type(problem).__name__}")
