"""Binary reward from the sandboxed executor, with pass / fail / no-code kept apart.

``RewardJudge.submit(text, problem)`` extracts the program from a completion (``data.extract_code``); a
completion with no code gets outcome ``no_code`` and reward 0 without touching the judge; otherwise the
program goes to ``Executor.submit`` at once and a future is returned, so judging runs in the executor's
worker processes while the rollout engine keeps generating (``backend="ray"``: in the Executor of every node
of a Ray cluster, ``executor/ray_backend.py``). Reward is 1 iff every (capped) test passes.

Imports the executor and ``data`` (never torch: rewards are judged in the sandbox, out of this process); never
``cli`` or ``integrations``.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from microcoder_fast.data import extract_code
from microcoder_fast.data.problem import CodeProblem


@dataclass
class Outcome:
    outcome: str  # "pass" | "fail" | "no_code"
    reward: float
    verdict: str  # the executor's verdict ("AC", "WA", ...), or "NO_CODE"


class _Done:
    """A resolved future for outcomes decided without the judge."""

    def __init__(self, value: Outcome) -> None:
        self._value = value

    def result(self, timeout: float | None = None) -> Outcome:
        return self._value


class _Pending:
    def __init__(self, fut: Future) -> None:
        self._fut = fut

    def result(self, timeout: float | None = None) -> Outcome:
        r = self._fut.result(timeout)
        verdict = str(getattr(r.verdict, "value", r.verdict))
        reward = float(r.reward)
        return Outcome("pass" if reward > 0 else "fail", reward, verdict)


class RewardJudge:
    """Extract → judge → `Outcome`, asynchronously (see the module docstring)."""

    def __init__(self, workers: int = 2, time_limit_s: float = 6.0, memory_limit_mb: int = 2048,
                 compare: str = "default", max_tests: int | None = 16, backend: str = "local",
                 address: str = "auto", workers_per_node: int = 0, ranks: int = 1, executor: Any = None) -> None:
        # ``executor``: any object with ``submit(code, problem) -> Future`` (the local Executor, the Ray one);
        # the caller keeps ownership of one passed in (``close()`` leaves it open). Otherwise one is started here.
        self._owns_executor = executor is None
        if executor is None:
            from microcoder_fast.executor import Executor

            if backend == "ray":  # every node of the Ray cluster; each rank's share of a node's CPUs
                executor = Executor(backend="ray", address=address, workers_per_node=workers_per_node or None,
                                    drivers=ranks, time_limit_s=time_limit_s, memory_limit_mb=memory_limit_mb,
                                    compare=compare)
            else:
                executor = Executor(workers=workers, time_limit_s=time_limit_s, memory_limit_mb=memory_limit_mb,
                                    compare=compare)
        self.executor = executor
        self.max_tests = max_tests
        self._problems: dict[str, Any] = {}

    def _problem(self, p: CodeProblem) -> Any:
        got = self._problems.get(p.id)
        if got is None:
            got = p.to_problem(max_tests=self.max_tests)
            self._problems[p.id] = got
        return got

    def submit(self, text: str, problem: CodeProblem) -> _Done | _Pending:
        ex = extract_code(text)
        if ex.code is None:
            return _Done(Outcome("no_code", 0.0, "NO_CODE"))
        return _Pending(self.executor.submit(ex.code, self._problem(problem)))

    def close(self) -> None:
        if self._owns_executor:
            self.executor.close()
