"""What the TRL and verl adapters share: tests from a dataset column, and judging a batch of completions.

``problem_from_column(value, fmt, row)`` turns one dataset cell into a ``CodeProblem``: ``fmt="microcoder"``
reads our encoding (the ``tests`` field of a MicroCoder row: ``{"inputs": [...], "outputs": [...],
"fn_name": null}``, as a dict or its JSON text); ``fmt="lcb"`` reads LiveCodeBench's (the
``private_test_cases`` encoding: a JSON list of ``{input, output, testtype}`` or its base64/zlib/pickle
blob; ``public_test_cases``, ``metadata`` (``func_name``) and ``question_id`` are taken from the same row
when present). Parsed problems are cached by their cell, so a prompt's G completions parse it once.

``BatchJudge.outcomes(texts, problems)`` extracts the program from each completion and judges them all at
once through ``rl.rewards.RewardJudge`` (every program is submitted before the first result is awaited),
so one persistent executor (the local ``Executor`` or any object with its ``submit``) serves the run.

Imports the data and rl.rewards modules; never torch, TRL or verl.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from microcoder_fast.data.lcb import parse_lcb_row
from microcoder_fast.data.microcoder import parse_microcoder_row
from microcoder_fast.data.problem import CodeProblem
from microcoder_fast.rl.rewards import Outcome, RewardJudge

FORMATS = ("microcoder", "lcb")
VERDICTS = ("AC", "WA", "TLE", "MLE", "RE", "OLE", "CE", "IE", "NO_CODE")


def _key(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def problem_from_column(value: Any, fmt: str = "microcoder", row: Mapping[str, Any] | None = None,
                        column: str = "tests") -> CodeProblem:
    """One dataset cell (and, for ``lcb``, its row's other LiveCodeBench columns) → ``CodeProblem``."""
    if fmt not in FORMATS:
        raise ValueError(f"tests_format {fmt!r} is not one of {FORMATS}")
    if value is None:
        raise ValueError(f"the dataset column {column!r} is empty for this row: every prompt needs its tests")
    if isinstance(value, CodeProblem):
        return value
    digest = hashlib.sha1(_key(value).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    if fmt == "microcoder":
        tests = json.loads(value) if isinstance(value, str) else value
        try:
            return parse_microcoder_row({"id": f"{column}-{digest}", "statement": "-", "tests": tests})
        except ValueError as e:
            raise ValueError(
                f"column {column!r} is not in MicroCoder's tests encoding ({e}); expected "
                '{"inputs": [...], "outputs": [...], "fn_name": null | "name"}, or pass tests_format="lcb"'
            ) from None
    row = dict(row or {})
    lcb = {
        "question_id": row.get("question_id") or f"{column}-{digest}",
        "public_test_cases": row.get("public_test_cases") if column != "public_test_cases" else "[]",
        "private_test_cases": value,
        "metadata": row.get("metadata") or {},
    }
    if lcb["public_test_cases"] is None:
        lcb["public_test_cases"] = "[]"
    return parse_lcb_row(lcb, where=f"column {column!r}")


class BatchJudge:
    """A persistent judge for reward functions: parse tests (cached), extract code, judge a batch at once."""

    def __init__(self, executor: Any = None, *, tests_format: str = "microcoder", tests_column: str = "tests",
                 workers: int = 2, time_limit_s: float = 6.0, memory_limit_mb: int = 2048,
                 compare: str = "default", max_tests: int | None = 16, cache_size: int = 4096) -> None:
        if tests_format not in FORMATS:
            raise ValueError(f"tests_format {tests_format!r} is not one of {FORMATS}")
        self.tests_format = tests_format
        self.tests_column = tests_column
        self._settings = {"workers": workers, "time_limit_s": time_limit_s, "memory_limit_mb": memory_limit_mb,
                          "compare": compare, "max_tests": max_tests}
        self._executor = executor
        self._judge: RewardJudge | None = None
        self._cache: OrderedDict[tuple, CodeProblem] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # verl's per-sample reward managers call from several threads

    @property
    def judge(self) -> RewardJudge:
        """The RewardJudge, started on first use (so the object can be built, pickled or shipped first)."""
        with self._lock:
            if self._judge is None:
                self._judge = RewardJudge(executor=self._executor, **self._settings)
            return self._judge

    def problem(self, value: Any, row: Mapping[str, Any] | None = None, fmt: str | None = None) -> CodeProblem:
        fmt = fmt or self.tests_format
        key: tuple = (fmt, _key(value) if not isinstance(value, CodeProblem) else value.id)
        if fmt == "lcb" and row:  # LiveCodeBench's public tests and function name live in other columns
            key += (_key(row.get("public_test_cases")), _key(row.get("metadata")))
        with self._lock:
            got = self._cache.get(key)
            if got is not None:
                self._cache.move_to_end(key)
                return got
        got = problem_from_column(value, fmt, row, self.tests_column)
        with self._lock:
            self._cache[key] = got
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return got

    def outcomes(self, texts: Sequence[str], problems: Sequence[CodeProblem]) -> list[Outcome]:
        """Judge every completion against its problem: all are submitted first, then awaited in order."""
        if len(texts) != len(problems):
            raise ValueError(f"{len(texts)} completions but {len(problems)} problems; they must align one to one")
        pending = [self.judge.submit(t, p) for t, p in zip(texts, problems)]
        return [f.result() for f in pending]

    def close(self) -> None:
        if self._judge is not None:
            self._judge.close()
            self._judge = None

    def __getstate__(self) -> dict[str, Any]:  # ship the settings, never a live executor
        state = dict(self.__dict__)
        state["_judge"] = None
        state["_cache"] = OrderedDict()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def verdict_mix(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """Fraction of each verdict (AC, WA, ..., NO_CODE) over a batch; every verdict present as a key."""
    n = max(1, len(outcomes))
    counts = Counter(o.verdict for o in outcomes)
    return {v: counts.get(v, 0) / n for v in VERDICTS}
