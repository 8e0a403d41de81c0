"""The ``Executor``: a pool of worker threads, one :class:`~microcoder_fast.executor.worker.Worker` each,
fed from one job queue; ``submit`` / ``judge`` / ``judge_iter`` are its public API. The public types are
re-exported from :mod:`microcoder_fast.executor.types`.

Holds no protocol and no verdict logic (worker.py and verdicts.py do). Never imported by the zygote (it
imports ``threading``, whose at-fork hook would cost every forked child page faults).
"""

from __future__ import annotations

import atexit
import math
import queue
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as _wait_all

from microcoder_fast.executor import compare as _compare
from microcoder_fast.executor.types import (
    Closing,
    ModeVerdict,
    Problem,
    Result,
    TestCase,
    TestResult,
    Verdict,
    check_item,
    next_item,
)
from microcoder_fast.executor.worker import Settings, Worker

#: Executor.judge queues the input this many items at a time (see there)
JUDGE_CHUNK = 64

__all__ = ["Executor", "ModeVerdict", "Problem", "Result", "TestCase", "TestResult", "Verdict"]


class Executor(Closing):
    """Judge programs in sandboxed processes forked from clean pre-imported zygotes.

    ``workers`` zygotes run generations in parallel; ``time_limit_s`` is per test (wall clock, CPU as a
    backstop), ``memory_limit_mb`` the memory limit of a generation (a cgroup limit over
    all its processes where the host allows it, and RLIMIT_AS per process: see ``layers``), ``compare`` the comparison mode (a name in
    :data:`microcoder_fast.executor.compare.MODES`: ``"default"``, ``"lcb"``, ``"microcoder"``),
    ``output_limit_mb`` the stdout cap per test (OLE). Use as a context manager or call :meth:`close`.

    Several compare modes in one judging pass: ``compare=("default", "lcb")`` (or ``"default,lcb"``). A
    program's outputs do not depend on the mode, so each program runs once and every test's output is
    compared in each mode; ``result.modes[mode]`` holds that mode's :class:`ModeVerdict` (verdict, passed,
    message, reward) and the first mode is the primary one (``result.verdict`` / ``result.reward``).
    Every mode's verdict is the one a run in that mode alone would give: with stop-on-first-failure the
    child keeps running tests until every mode has failed one (never a verdict read off a run cut short by
    another mode's failure), so extra tests run only where the modes disagree.
    ``backend="ray"`` returns a :class:`~microcoder_fast.executor.ray_backend.RayExecutor` instead
    (``address``, ``workers_per_node`` and these options, judged on every node of a Ray cluster).
    """

    def __new__(cls, *args: object, backend: str = "local", **kwargs: object) -> Executor:
        if backend == "ray":
            if args:
                raise TypeError("Executor(backend='ray') takes keyword arguments only (address=..., "
                                "workers_per_node=..., and the executor options)")
            from microcoder_fast.executor.ray_backend import RayExecutor

            return RayExecutor(**kwargs)  # type: ignore[return-value,arg-type]
        if backend != "local":
            raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
        return super().__new__(cls)

    def __init__(
        self,
        workers: int = 2,
        time_limit_s: float = 6.0,
        memory_limit_mb: int = 2048,
        compare: str | Sequence[str] = "default",
        output_limit_mb: float = 64,
        abs_tol: float = 1e-6,
        rel_tol: float = 1e-6,
        stderr_tail_bytes: int = 4096,
        isolation: str = "full",
        preimport_numpy: bool | str = "auto",
        pipeline: int = 4,
        backend: str = "local",  # "ray": see __new__
    ) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        if not (time_limit_s > 0 and math.isfinite(time_limit_s)):
            raise ValueError(f"time_limit_s must be a positive number of seconds, got {time_limit_s!r}")
        if not (isinstance(memory_limit_mb, (int, float)) and memory_limit_mb >= 64):
            raise ValueError(f"memory_limit_mb must be >= 64 (MiB), got {memory_limit_mb!r}")
        try:
            modes = _compare.parse_modes(compare)
        except (ValueError, TypeError) as e:
            raise ValueError(f"compare must be one of {_compare.MODES} or several of them (the primary first), "
                             f"got {compare!r}: {e}") from None
        if not output_limit_mb > 0:
            raise ValueError(f"output_limit_mb must be > 0, got {output_limit_mb!r}")
        if isolation not in ("full", "none"):
            raise ValueError("isolation must be 'full' (every layer this host allows) or 'none' (rlimits only)")
        self.workers = workers
        self.time_limit_s = float(time_limit_s)
        self.memory_limit_mb = memory_limit_mb
        self.compare = modes[0]  # the primary mode
        self.compare_modes = modes
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
        self._settings = Settings(
            time_limit_s=self.time_limit_s,
            memory_limit_mb=memory_limit_mb,
            compare=modes,
            abs_tol=abs_tol,
            rel_tol=rel_tol,
            output_limit=self.output_limit,
            stderr_tail_bytes=stderr_tail_bytes,
            pipeline=pipeline,
            preimport_numpy=preimport_numpy,
            zygote_cfg={"namespaces": full, "drop_privileges": full, "seccomp": full, "cgroup": full, "tmp_mb": 256,
                        "memory_bytes": int(memory_limit_mb * 1024 * 1024), "pids": 64},
        )
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._workers = [Worker(self._settings, i) for i in range(workers)]
        errors: list[BaseException] = []

        def start(s: Worker) -> None:
            try:
                s.ensure(preimport_numpy is True)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        starters = [threading.Thread(target=start, args=(s,)) for s in self._workers]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        if errors:
            for s in self._workers:
                s.close()
            raise errors[0]
        self._threads = [
            threading.Thread(target=self._loop, args=(s,), name=f"mcf-executor-{s.index}", daemon=True)
            for s in self._workers
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
        return dict(self._workers[0].layers)

    def submit(self, code: str | bytes, problem: Problem, stop_on_first_failure: bool = True) -> Future:
        """Judge one generation in the background; the Future's result is a :class:`Result`."""
        self._check_open()
        check_item(code, problem, None)
        fut: Future = Future()
        self._jobs.put((fut, code, problem, stop_on_first_failure, None))
        return fut

    def judge(
        self, items: Iterable[tuple[str | bytes, Problem]], stop_on_first_failure: bool = True
    ) -> list[Result]:
        """Judge every (code, problem) pair; results in input order.

        The input is consumed a chunk of :data:`JUDGE_CHUNK` items at a time, two chunks queued, and the
        calling thread wakes once per chunk (when its oldest chunk is judged), not once per result: every
        wake-up takes the GIL from the threads that drive the zygotes."""
        self._check_open()
        out: list[Result] = []
        it = iter(enumerate(items))
        chunks: list[list[Future]] = []
        exhausted = False
        while True:
            while not exhausted and len(chunks) < 2:
                chunk: list[Future] = []
                while len(chunk) < JUDGE_CHUNK:
                    fut = self._queue_next(it, stop_on_first_failure)
                    if fut is None:
                        exhausted = True
                        break
                    chunk.append(fut)
                if chunk:
                    chunks.append(chunk)
            if not chunks:
                return out
            oldest = chunks.pop(0)
            _wait_all(oldest)
            out.extend(f.result() for f in oldest)

    def judge_iter(
        self,
        items: Iterable[tuple[str | bytes, Problem]],
        stop_on_first_failure: bool = True,
        max_in_flight: int | None = None,
    ) -> Iterator[Result]:
        """Yield each Result as soon as it is judged (completion order; ``result.index`` is the input
        position). The input iterable is consumed lazily, at most ``max_in_flight`` items ahead."""
        self._check_open()
        limit = max_in_flight or 4 * self.workers
        done: queue.SimpleQueue = queue.SimpleQueue()
        in_flight = 0
        it = iter(enumerate(items))
        exhausted = False
        while True:
            while not exhausted and in_flight < limit:
                fut = self._queue_next(it, stop_on_first_failure)
                if fut is None:
                    exhausted = True
                    break
                fut.add_done_callback(done.put)  # called at once if the job is already done
                in_flight += 1
            if in_flight == 0:
                return
            f = done.get()
            in_flight -= 1
            yield f.result()

    imap_unordered = judge_iter

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("Executor is closed; create a new one (or use it as a context manager)")

    def _queue_next(self, it: Iterator, stop: bool) -> Future | None:
        """Take the next (index, code, problem) of ``it`` (checked, see types.next_item) and queue it for
        the workers; None once ``it`` is exhausted."""
        nxt = next_item(it)
        if nxt is None:
            return None
        i, code, problem = nxt
        fut: Future = Future()
        self._jobs.put((fut, code, problem, stop, i))
        return fut

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
        for s in self._workers:
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

    # --- worker thread ----------------------------------------------------------------------------------
    def _loop(self, worker: Worker) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fut, code, problem, stop, index = job
            if not fut.set_running_or_notify_cancel():
                continue
            if code is None and isinstance(problem, tuple):  # bench request
                try:
                    fut.set_result(worker.bench_fork(problem[1], problem[2]))
                except BaseException as e:  # noqa: BLE001
                    fut.set_exception(e)
                continue
            t0 = time.perf_counter()
            try:
                res = worker.judge(code, problem, stop)
            except BaseException as e:  # noqa: BLE001
                res = Result(Verdict.IE, 0, len(problem.tests), message=f"internal judge error: {e!r}")
            if not res.modes:  # decided before any comparison (CE, IE, no tests): the same in every mode
                res.modes = {m: ModeVerdict(res.verdict, res.passed, res.message) for m in self.compare_modes}
            res.index = index
            res.problem_id = problem.id
            res.wall_s = time.perf_counter() - t0
            fut.set_result(res)
