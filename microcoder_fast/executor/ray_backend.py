"""RayExecutor: the judge spread over the nodes of a Ray cluster, behind the local Executor's interface.

``RayExecutor(address="auto", workers_per_node=None, **executor_options)`` (or ``Executor(backend="ray",
...)``) has the local :class:`~microcoder_fast.executor.Executor`'s ``submit`` / ``judge`` / ``judge_iter``
and returns the same :class:`Result` objects, judged the same way:

* every node of the cluster (optionally only nodes that advertise a custom resource, ``resource="judge"``)
  runs one long-lived actor that owns a local ``Executor`` with ``workers_per_node`` workers (default: the
  node's CPU count as Ray reports it, divided by ``drivers``) and the given executor options. The actor
  takes ``num_cpus=0``: the sandboxed programs run in that Executor's zygotes, not in Ray tasks;
* the driver sends a generation to the node with the largest share of free slots, at most ``workers +
  prefetch`` generations per node at a time (back-pressure: the rest wait on the driver, so a node that
  joins later, or a fast one, gets them); each distinct Problem is put in the object store once per batch
  and deserialised once per node;
* expected outputs are compared on the node; the program's stderr tails (its only output a Result carries)
  are dropped there unless ``return_output=True`` (per call or per executor);
* results come back as the generations finish (``judge_iter`` yields in completion order, ``submit``
  returns a Future);
* an actor or node that dies (``ActorDiedError``, node removed) has its in-flight generations re-run on
  other actors: each generation's Result is delivered exactly once (a result from an actor already written
  off is ignored), and a generation whose actor died ``max_losses`` times gets IE; a node still alive gets a
  fresh actor (after 1, 2, 4, ... up to 60 s when its actors keep dying), and nodes that join are found
  every ``refresh_s`` seconds;
* an actor that stops answering while Ray still reports it alive (a stopped process, a network partition
  the health checks miss) is written off the same way once a generation sent to it is overdue: after
  ``stall_timeout_s``, by default 120 s + 4 x (tests + 1) x the time limit, which bounds a generation's
  wait in the node's queue plus its run;
* Ctrl-C (or leaving ``judge_iter`` early, or cancelling a Future) cancels the generations not yet
  finished: queued ones never start, running ones are cancelled on their actor (a program already forked
  runs to its time limit, as locally). ``close()`` kills the actors.

The nodes need the same version of this package installed (the actor and the Result types are imported
there by name). The driver process forks nothing and runs no untrusted code.

Imports ray lazily (``pip install "microcoder_fast[ray]"``); never imports torch.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import math
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from microcoder_fast.executor.types import Closing, next_item

_RAY_HINT = 'the Ray backend needs ray: pip install "microcoder_fast[ray]"'


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:  # pragma: no cover - exercised only without ray
        raise ImportError(_RAY_HINT) from e
    return ray


# ---------------------------------------------------------------------------------------------- node side


class _NodeJudge:
    """The actor on one node: a local Executor plus a cache of deserialised Problems (least recently used
    dropped beyond ``CACHE_BYTES`` of test text, or ``CACHE_ENTRIES`` problems). Async, so one actor process
    keeps every worker of its Executor busy."""

    CACHE_BYTES = 256 << 20
    CACHE_ENTRIES = 1024

    def __init__(self, workers: int, options: dict) -> None:
        from microcoder_fast.executor.api import Executor

        self.ex = Executor(workers=workers, **options)
        self.problems: collections.OrderedDict[str, tuple[Any, int]] = collections.OrderedDict()
        self.cached_bytes = 0
        self.started = 0
        self.finished = 0
        self.cancelled = 0  # cancelled while still queued here: never started

    def ready(self) -> dict:
        import ray

        return {"workers": self.ex.workers, "pid": os.getpid(), "layers": self.ex.layers,
                "node_id": ray.get_runtime_context().get_node_id()}

    def counts(self) -> dict:
        return {"started": self.started, "finished": self.finished, "cancelled": self.cancelled,
                "cached_problems": len(self.problems), "cached_bytes": self.cached_bytes}

    async def _problem(self, key: str, boxed_ref: list) -> Any:
        got = self.problems.get(key)
        if got is not None:
            self.problems.move_to_end(key)
            return got[0]
        problem = await boxed_ref[0]
        if key not in self.problems:
            # the text twice: the tests' strings and the encoded inputs the Problem keeps
            size = 2 * sum(len(t.input) + len(t.output) for t in problem.tests) + 1024
            self.problems[key] = (problem, size)
            self.cached_bytes += size
            while len(self.problems) > 1 and (self.cached_bytes > self.CACHE_BYTES
                                              or len(self.problems) > self.CACHE_ENTRIES):
                _, (_, old) = self.problems.popitem(last=False)
                self.cached_bytes -= old
        return problem

    async def null_judge(self, code: str | bytes, key: str, boxed_ref: list, stop: bool, return_output: bool) -> Any:
        """judge()'s path without running the program (for bench_executor: what the driver and Ray alone
        can carry): fetches the problem the same way, returns an AC Result with one TestResult per test."""
        from microcoder_fast.executor.types import Result, TestResult, Verdict

        problem = await self._problem(key, boxed_ref)
        tests = [TestResult(i, Verdict.AC, 0.001, 0.001, 10000) for i in range(len(problem.tests))]
        return Result(Verdict.AC, len(tests), len(tests), tests, problem_id=problem.id)

    async def judge(self, code: str | bytes, key: str, boxed_ref: list, stop: bool, return_output: bool) -> Any:
        problem = await self._problem(key, boxed_ref)
        fut = self.ex.submit(code, problem, stop)
        self.started += 1
        try:
            res = await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            if fut.cancel():  # still queued in the local Executor: it never starts
                self.cancelled += 1
            raise
        self.finished += 1
        if not return_output:
            for t in res.tests:
                t.stderr_tail = ""
        return res

    def close(self) -> None:
        self.ex.close()


# ---------------------------------------------------------------------------------------------- driver side


@dataclass(eq=False)
class _Job:
    fut: Future
    code: str | bytes
    problem: Any
    stop: bool
    index: int | None
    return_output: bool
    losses: int = 0
    node: _Node | None = None
    ref: Any = None
    key: str | None = None  # the problem's object-store key (set when the dispatcher admits the job)
    pref: Any = None
    sent_at: float = 0.0


@dataclass(eq=False)
class _Node:
    node_id: str
    actor: Any
    ready_ref: Any
    workers: int = 0
    capacity: int = 0
    ready: bool = False
    dead: bool = False
    inflight: dict = field(default_factory=dict)  # ObjectRef -> _Job
    sent: int = 0
    done: int = 0
    lost: int = 0
    max_inflight: int = 0
    pid: int | None = None
    layers: dict = field(default_factory=dict)


_STOP = object()
_CANCEL = object()


class RayExecutor(Closing):
    """The judge on a Ray cluster; same ``submit`` / ``judge`` / ``judge_iter`` as the local Executor.

    ``address``: a Ray address (``"auto"`` = the cluster this machine joined with ``ray start``, ``None``
    = start a local one-node Ray); ignored when Ray is already initialised in this process.
    ``workers_per_node``: sandbox workers per node (default: the node's CPUs divided by ``drivers``, the
    number of executors that share the cluster, e.g. one per torchrun rank). ``prefetch``: generations
    queued on a node beyond its workers (default: as many as its workers). ``resource``: use only nodes
    that advertise this custom resource (``ray start ... --resources='{"judge": 1}'``). Other keyword
    arguments are the local Executor's options (``time_limit_s``, ``compare``, ...), applied on every node.
    """

    def __init__(
        self,
        address: str | None = "auto",
        workers_per_node: int | None = None,
        *,
        prefetch: int | None = None,
        resource: str | None = None,
        drivers: int = 1,
        return_output: bool = False,
        refresh_s: float = 1.0,
        max_losses: int = 3,
        stall_timeout_s: float | None = None,
        start_timeout_s: float = 120.0,
        no_node_timeout_s: float = 120.0,
        **executor_options: Any,
    ) -> None:
        from microcoder_fast.executor.api import Executor

        known = set(inspect.signature(Executor.__init__).parameters) - {"self", "workers", "backend"}
        if "workers" in executor_options:
            raise TypeError("the Ray backend sizes each node with workers_per_node= (default: the node's CPUs), "
                            "not workers=")
        unknown = sorted(set(executor_options) - known)
        if unknown:
            raise TypeError(f"unknown Executor option(s) {unknown}; the Ray backend accepts {sorted(known)}")
        if workers_per_node is not None and (not isinstance(workers_per_node, int) or workers_per_node < 1):
            raise ValueError(f"workers_per_node must be an int >= 1 or None (the node's CPUs), got {workers_per_node!r}")
        if prefetch is not None and (not isinstance(prefetch, int) or prefetch < 0):
            raise ValueError(f"prefetch must be an int >= 0 or None (= the node's workers), got {prefetch!r}")
        if not isinstance(drivers, int) or drivers < 1:
            raise ValueError(f"drivers must be an int >= 1 (executors sharing the nodes), got {drivers!r}")
        if not (refresh_s > 0 and math.isfinite(refresh_s)):
            raise ValueError(f"refresh_s must be a positive number of seconds, got {refresh_s!r}")
        if stall_timeout_s is not None and not (stall_timeout_s > 0 and math.isfinite(stall_timeout_s)):
            raise ValueError(f"stall_timeout_s must be a positive number of seconds or None, got {stall_timeout_s!r}")
        if not isinstance(max_losses, int) or max_losses < 1:
            raise ValueError(f"max_losses must be an int >= 1, got {max_losses!r}")
        ray = _ray()
        self._owns_ray = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except ConnectionError as e:
                raise ConnectionError(
                    f"no Ray cluster at address={address!r} ({e}); start one with `ray start --head` (and "
                    "`ray start --address=HEAD:6379` on the other machines), or pass address=None for a "
                    "local one-node Ray") from e
            self._owns_ray = True
        self.workers_per_node = workers_per_node
        self.prefetch = prefetch
        self.resource = resource
        self.drivers = drivers
        self.return_output = bool(return_output)
        self.refresh_s = float(refresh_s)
        self.max_losses = max_losses
        self.stall_timeout_s = stall_timeout_s
        self.no_node_timeout_s = float(no_node_timeout_s)
        self._options = dict(executor_options)
        self._actor_cls = ray.remote(num_cpus=0, max_restarts=0, max_concurrency=1000)(_NodeJudge)
        self._nodes: dict[str, _Node] = {}
        self._retired: list[_Node] = []
        self._actor_deaths: collections.Counter[str] = collections.Counter()
        self._retry_at: dict[str, float] = {}  # node id -> no new actor there before this time (back-off)
        self._pending: collections.deque[_Job] = collections.deque()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._problem_refs: dict[int, list] = {}  # id(problem) -> [problem, ref, jobs using it]
        self._lock = threading.Lock()
        self._closed = False
        self._fatal: BaseException | None = None
        self._next_refresh = 0.0
        self._no_node_since: float | None = None
        self._capacity = 0
        self._method = "judge"  # "null_judge": bench_executor's measure of the driver and Ray alone
        try:
            self._start(start_timeout_s)
        except BaseException:
            self._kill_all()
            if self._owns_ray:
                ray.shutdown()
            raise
        self._thread = threading.Thread(target=self._loop, name="mcf-ray-dispatch", daemon=True)
        self._thread.start()

    def _start(self, start_timeout_s: float) -> None:
        """Start the first actors and wait until one is ready, so that a bad option or a cluster without
        usable nodes fails in the constructor."""
        ray = _ray()
        self._refresh()
        deadline = time.monotonic() + start_timeout_s
        first_error: BaseException | None = None
        while not any(n.ready for n in self._nodes.values()):
            waiting = [n.ready_ref for n in self._nodes.values() if not n.dead]
            if not waiting:
                if first_error is not None:  # the cause is the last line of the actor's traceback
                    cause = (str(first_error).strip().splitlines() or [repr(first_error)])[-1]
                    raise RuntimeError(f"the judge actor did not start on any Ray node: {cause}")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "no Ray node to judge on: the cluster has no alive node with CPUs"
                        + (f" and the resource {self.resource!r}" if self.resource else "")
                        + "; add one with `ray start --address=HEAD:6379`")
                time.sleep(min(self.refresh_s, 0.5))
                self._refresh()
                continue
            got, _ = ray.wait(waiting, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not got:
                raise RuntimeError(f"the judge actors did not start within {start_timeout_s:g} s (start_timeout_s)")
            for n in list(self._nodes.values()):
                if n.ready_ref in got:
                    err = self._on_ready(n)
                    first_error = first_error or err

    # --- public API -----------------------------------------------------------------------------------
    @property
    def workers(self) -> int:
        """Sandbox workers over all ready nodes now."""
        return sum(n.workers for n in list(self._nodes.values()) if n.ready)

    @property
    def layers(self) -> dict:
        """The isolation layers the first ready node reports."""
        for n in list(self._nodes.values()):
            if n.ready:
                return dict(n.layers)
        return {}

    def stats(self) -> dict[str, dict]:
        """Per node id (live and retired actors): generations sent, delivered and lost to a dead actor, in
        flight now and at most, the slot capacity, how many actors it has had, whether one is alive."""
        out: dict[str, dict] = {}
        for n in list(self._retired) + list(self._nodes.values()):
            s = out.setdefault(n.node_id, {"sent": 0, "done": 0, "lost": 0, "inflight": 0, "max_inflight": 0,
                                           "capacity": 0, "actors": 0, "alive": False})
            s["sent"] += n.sent
            s["inflight"] += len(n.inflight)
            s["done"] += n.done
            s["lost"] += n.lost
            s["max_inflight"] = max(s["max_inflight"], n.max_inflight)
            s["capacity"] = max(s["capacity"], n.capacity)
            s["actors"] += 1
            s["alive"] = s["alive"] or (n.ready and not n.dead)
        return out

    def actors(self) -> dict[str, Any]:
        """node id -> the live actor handle (for tests and operations)."""
        return {k: n.actor for k, n in list(self._nodes.items()) if n.ready and not n.dead}

    def submit(self, code: str | bytes, problem: Any, stop_on_first_failure: bool = True,
               return_output: bool | None = None) -> Future:
        """Judge one generation on the cluster; the Future's result is a :class:`Result`."""
        from microcoder_fast.executor.types import check_item

        check_item(code, problem, None)
        return self._submit(code, problem, stop_on_first_failure, None, return_output)

    def judge(self, items: Iterable[tuple[str | bytes, Any]], stop_on_first_failure: bool = True,
              return_output: bool | None = None) -> list:
        """Judge every (code, problem) pair; results in input order."""
        got = list(self.judge_iter(items, stop_on_first_failure, return_output=return_output))
        return sorted(got, key=lambda r: r.index)

    def judge_iter(
        self,
        items: Iterable[tuple[str | bytes, Any]],
        stop_on_first_failure: bool = True,
        max_in_flight: int | None = None,
        return_output: bool | None = None,
    ) -> Iterator:
        """Yield each Result as soon as its node returns it (completion order; ``result.index`` is the input
        position). The input is consumed lazily, at most ``max_in_flight`` items ahead (default: twice the
        cluster's slots, re-read as nodes join). Leaving the loop early, or Ctrl-C, cancels the rest."""
        done: queue.SimpleQueue = queue.SimpleQueue()
        futs: set[Future] = set()
        it = iter(enumerate(items))
        exhausted = False
        try:
            while True:
                limit = max_in_flight or max(16, 2 * self._capacity)
                while not exhausted and len(futs) < limit:
                    nxt = next_item(it)
                    if nxt is None:
                        exhausted = True
                        break
                    i, code, problem = nxt
                    fut = self._submit(code, problem, stop_on_first_failure, i, return_output)
                    futs.add(fut)
                    fut.add_done_callback(done.put)
                if not futs:
                    return
                f = self._next_done(done)
                futs.discard(f)
                yield f.result()
        finally:
            for f in futs:
                f.cancel()

    imap_unordered = judge_iter

    @staticmethod
    def _next_done(done: queue.SimpleQueue) -> Future:
        # timed waits, so that Ctrl-C is seen within 0.2 s. (Written inline in judge_iter as a nested
        # `while True: try/except queue.Empty: continue`, a Ctrl-C there left its `finally` unrun in our
        # tests; not reproduced in a small generator, so kept apart.)
        while True:
            try:
                return done.get(timeout=0.2)
            except queue.Empty:
                pass

    def close(self) -> None:
        """Cancel what is left (pending jobs get an IE result), kill the actors, and leave Ray if this
        executor started it. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._inbox.put(_STOP)
        t = getattr(self, "_thread", None)
        if t is not None and t is not threading.current_thread():
            t.join(timeout=30)
        if self._owns_ray:
            _ray().shutdown()

    # --- driver internals (the dispatcher thread owns everything below) -----------------------------------
    def _submit(self, code: str | bytes, problem: Any, stop: bool, index: int | None,
                return_output: bool | None) -> Future:
        if self._closed:
            raise RuntimeError("RayExecutor is closed; create a new one (or use it as a context manager)")
        if self._fatal is not None:
            raise RuntimeError(f"the Ray judge stopped: {self._fatal}")
        fut: Future = Future()
        ro = self.return_output if return_output is None else bool(return_output)
        job = _Job(fut, code, problem, bool(stop), index, ro)
        self._inbox.put(job)
        # a cancelled Future (Ctrl-C, judge_iter left early, fut.cancel()) tells the dispatcher at once
        fut.add_done_callback(lambda f: f.cancelled() and self._inbox.put((_CANCEL, job)))
        return fut

    def _refresh(self) -> None:
        """Start an actor on every alive node that has none (new nodes, or a node whose actor died)."""
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._next_refresh = time.monotonic() + self.refresh_s
        try:
            nodes = ray.nodes()
        except Exception:  # noqa: BLE001 - the GCS may be briefly unreachable; try again next time
            return
        alive = set()
        for info in nodes:
            if not info.get("Alive"):
                continue
            res = info.get("Resources") or {}
            cpus = res.get("CPU", 0)
            if cpus < 1 or (self.resource and res.get(self.resource, 0) <= 0):
                continue
            nid = info["NodeID"]
            alive.add(nid)
            if nid in self._nodes or time.monotonic() < self._retry_at.get(nid, 0.0):
                continue
            workers = self.workers_per_node or max(1, int(cpus) // self.drivers)
            actor = self._actor_cls.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(nid, soft=False)
            ).remote(workers, self._options)
            self._nodes[nid] = _Node(nid, actor, actor.ready.remote())
        for nid, n in list(self._nodes.items()):
            if nid not in alive and not n.ready and not n.dead:
                # the node left before its actor was up: forget it (it is re-created if the node returns)
                self._retire(n)

    def _on_ready(self, n: _Node) -> BaseException | None:
        ray = _ray()
        try:
            info = ray.get(n.ready_ref)
        except Exception as e:  # noqa: BLE001 - the actor could not start (bad option, node gone)
            self._retire(n)
            return e
        n.ready = True
        n.workers = int(info["workers"])
        n.capacity = n.workers + (n.workers if self.prefetch is None else self.prefetch)
        n.pid = info.get("pid")
        n.layers = info.get("layers") or {}
        self._capacity = sum(m.capacity for m in self._nodes.values() if m.ready and not m.dead)
        return None

    def _retire(self, n: _Node) -> None:
        """Write an actor off: its in-flight generations go back to the front of the queue."""
        ray = _ray()
        if n.dead:
            return
        n.dead = True
        self._actor_deaths[n.node_id] += 1
        # a node whose actors keep dying (say, this package is missing there) is retried ever more slowly
        self._retry_at[n.node_id] = time.monotonic() + min(60.0, 2.0 ** (self._actor_deaths[n.node_id] - 1))
        for ref, job in list(n.inflight.items()):
            n.lost += 1
            job.losses += 1
            job.node = job.ref = None
            if job.losses >= self.max_losses:
                self._finish(job, self._ie(job, f"the Ray actor judging it died {job.losses} time(s) "
                                              f"(max_losses={self.max_losses}); the program was not judged"))
            else:
                self._pending.appendleft(job)
        n.inflight.clear()
        try:
            ray.kill(n.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        if self._nodes.get(n.node_id) is n:
            del self._nodes[n.node_id]
        self._retired.append(n)
        self._capacity = sum(m.capacity for m in self._nodes.values() if m.ready and not m.dead)

    def _ie(self, job: _Job, why: str) -> Any:
        from microcoder_fast.executor.types import Result, Verdict

        return Result(Verdict.IE, 0, len(job.problem.tests), message=why, index=job.index,
                      problem_id=job.problem.id)

    def _admit(self, job: _Job) -> None:
        """Queue a new job; its Problem goes to the object store once while any job uses it."""
        entry = self._problem_refs.get(id(job.problem))
        if entry is None:
            entry = [job.problem, _ray().put(job.problem), 0]
            self._problem_refs[id(job.problem)] = entry
        entry[2] += 1
        job.key, job.pref = entry[1].hex(), entry[1]
        self._pending.append(job)

    def _finish(self, job: _Job, res: Any = None, exc: BaseException | None = None) -> None:
        if job.key is not None:
            entry = self._problem_refs.get(id(job.problem))
            if entry is not None:
                entry[2] -= 1
                if entry[2] <= 0:
                    del self._problem_refs[id(job.problem)]
            job.key = job.pref = None
        if job.fut.cancelled():
            return
        try:
            if exc is not None:
                job.fut.set_exception(exc)
            else:
                job.fut.set_result(res)
        except InvalidStateError:  # cancelled meanwhile
            pass

    def _dispatch(self) -> None:
        nodes = [n for n in self._nodes.values() if n.ready and not n.dead]
        while self._pending and nodes:
            job = self._pending[0]
            if job.fut.cancelled():
                self._finish(self._pending.popleft())
                continue
            best = max(nodes, key=lambda m: ((m.capacity - len(m.inflight)) / m.capacity, -m.sent))
            if len(best.inflight) >= best.capacity:
                return
            self._pending.popleft()
            ref = getattr(best.actor, self._method).remote(job.code, job.key, [job.pref], job.stop, job.return_output)
            job.node, job.ref, job.sent_at = best, ref, time.monotonic()
            best.inflight[ref] = job
            best.sent += 1
            best.max_inflight = max(best.max_inflight, len(best.inflight))

    def _collect(self, ref: Any) -> None:
        ray = _ray()
        from ray.exceptions import ObjectLostError, RayActorError, TaskCancelledError

        for n in list(self._nodes.values()):
            if ref == n.ready_ref and not n.ready:
                self._on_ready(n)
                return
            job = n.inflight.get(ref)
            if job is None:
                continue
            try:
                res = ray.get(ref)
            except (RayActorError, ObjectLostError):
                self._retire(n)  # every generation in flight there is re-run elsewhere
                return
            except TaskCancelledError:
                del n.inflight[ref]
                self._finish(job)
                return
            except Exception as e:  # noqa: BLE001 - a fault in the actor's code, not the program's
                del n.inflight[ref]
                self._finish(job, self._ie(job, f"the Ray judge failed: {e}"))
                return
            del n.inflight[ref]
            n.done += 1
            res.index = job.index
            self._finish(job, res)
            return

    def _loop(self) -> None:
        ray = _ray()
        try:
            while True:
                stop = False
                while not stop:
                    try:
                        stop = self._take(self._inbox.get_nowait())
                    except queue.Empty:
                        break
                if stop:
                    break
                now = time.monotonic()
                if now >= self._next_refresh:
                    self._retire_stalled(now)
                    self._refresh()
                self._dispatch()
                self._check_starved(now)
                refs = [r for n in self._nodes.values() for r in itertools.chain(n.inflight, [] if n.ready else
                                                                                  [n.ready_ref])]
                if not refs:
                    try:
                        if self._take(self._inbox.get(timeout=0.05)):
                            break
                    except queue.Empty:
                        pass
                    continue
                got, rest = ray.wait(refs, num_returns=1, timeout=0.05)
                if got and rest:
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    got += more
                for ref in got:
                    self._collect(ref)
        except BaseException as e:  # noqa: BLE001 - never leave callers waiting on futures nobody resolves
            self._fatal = e
            for n in list(self._nodes.values()):
                for job in n.inflight.values():
                    self._finish(job, exc=RuntimeError(f"the Ray judge's dispatcher failed: {e!r}"))
                n.inflight.clear()
            while self._pending:
                self._finish(self._pending.popleft(), exc=RuntimeError(f"the Ray judge's dispatcher failed: {e!r}"))
        finally:
            self._shutdown_driver()

    def _take(self, msg: Any) -> bool:
        """Handle one message from the callers; True for stop."""
        if msg is _STOP:
            return True
        if isinstance(msg, tuple) and msg[0] is _CANCEL:  # cancelled in flight: tell the actor, forget it
            job = msg[1]
            n = job.node
            if n is not None and n.inflight.get(job.ref) is job:
                _ray().cancel(job.ref)
                del n.inflight[job.ref]
                self._finish(job)
            return False  # still queued here: _dispatch drops it
        self._admit(msg)
        return False

    def _overdue(self, job: _Job) -> float:
        if self.stall_timeout_s is not None:
            return self.stall_timeout_s
        tl = job.problem.time_limit_s or self._options.get("time_limit_s", 6.0)
        return 120.0 + 4.0 * tl * (len(job.problem.tests) + 1)

    def _retire_stalled(self, now: float) -> None:
        """Write off actors holding a generation far past any bound its limits allow."""
        for n in list(self._nodes.values()):
            if any(now - j.sent_at > self._overdue(j) for j in n.inflight.values()):
                self._retire(n)

    def _check_starved(self, now: float) -> None:
        if not self._pending or any(n.ready and not n.dead for n in self._nodes.values()):
            self._no_node_since = None
            return
        if self._no_node_since is None:
            self._no_node_since = now
        elif now - self._no_node_since > self.no_node_timeout_s:
            err = RuntimeError(
                f"no Ray node has been able to judge for {self.no_node_timeout_s:g} s (no_node_timeout_s): "
                "check `ray status` and that every node has microcoder_fast installed")
            while self._pending:
                self._finish(self._pending.popleft(), exc=err)
            self._no_node_since = None

    def _shutdown_driver(self) -> None:
        ray = _ray()
        for n in list(self._nodes.values()):
            for ref, job in list(n.inflight.items()):
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001
                    pass
                self._finish(job, self._ie(job, "executor closed before this job finished"))
            n.inflight.clear()
        while self._pending:
            job = self._pending.popleft()
            self._finish(job, self._ie(job, "executor closed before this job ran"))
        while True:
            try:
                msg = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(msg, _Job):
                self._finish(msg, self._ie(msg, "executor closed before this job ran"))
        self._kill_all()

    def _kill_all(self) -> None:
        ray = _ray()
        for n in list(self._nodes.values()):
            try:
                ray.kill(n.actor, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        self._nodes.clear()
