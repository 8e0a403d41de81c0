"""The one problem type every loader returns: `CodeProblem`, whose tests are the executor's `TestCase`.

A problem is either in *stdin mode* (``fn_name is None``: the program reads stdin and writes stdout; a test's
``input`` is fed to stdin and ``output`` is the expected stdout) or in *call mode* (``fn_name`` names the
function or ``Solution`` method to call; a test's ``input`` holds one JSON value per line, one line per
argument, and ``output`` is the JSON of the expected return value). This is the LiveCodeBench convention and
the one `microcoder_fast.executor.Problem` judges.

Imports only the executor's plain types (``executor.types``); never torch, ``ops`` or ``rl``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

# the executor's plain types only (stdlib, no threads); the Executor itself is never imported here
from microcoder_fast.executor.types import TestCase

if TYPE_CHECKING:
    from microcoder_fast.executor.types import Problem


def as_test_case(test: Any) -> TestCase:
    """Accept a `TestCase` (or anything with ``.input``/``.output``), a 2-sequence or a mapping with
    ``input``/``output`` keys."""
    if isinstance(test, TestCase):
        return test
    if hasattr(test, "input") and hasattr(test, "output"):
        return TestCase(test.input, test.output)
    if isinstance(test, dict):
        try:
            return TestCase(test["input"], test["output"])
        except KeyError as e:
            raise ValueError(f"a test dict needs 'input' and 'output' keys, got {sorted(test)}") from e
    if isinstance(test, (tuple, list)) and len(test) == 2:
        return TestCase(test[0], test[1])
    raise TypeError(f"cannot make a test from {type(test).__name__}: give TestCase(input, output)")


def spread_indices(n: int, k: int) -> list[int]:
    """``k`` indices out of ``range(n)``, evenly spread and always including the first and the last.

    Deterministic: the same (n, k) always gives the same indices. Used to cap test suites so a cap keeps
    the suite's range (the last tests are often the large ones) rather than only its head.
    """
    if k <= 0 or n <= 0:
        return []
    if k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


@dataclasses.dataclass
class CodeProblem:
    """A code-generation problem with its tests, from any source (LiveCodeBench, HumanEval, MicroCoder, ...)."""

    id: str
    question: str
    starter_code: str = ""
    fn_name: str | None = None
    public_tests: list[TestCase] = dataclasses.field(default_factory=list)
    private_tests: list[TestCase] = dataclasses.field(default_factory=list)
    difficulty: str | None = None
    platform: str | None = None
    source: str | None = None
    contest_date: _dt.date | None = None
    solution: str | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: a special judge (Python source defining ``check(input, output, expected)``; see
    #: ``microcoder_fast/executor/checker.py``) for problems with more than one right answer, else None
    checker: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"CodeProblem.id must be a non-empty string, got {self.id!r}")
        if self.fn_name == "":
            self.fn_name = None
        self.public_tests = [as_test_case(t) for t in self.public_tests]
        self.private_tests = [as_test_case(t) for t in self.private_tests]
        if isinstance(self.contest_date, _dt.datetime):
            self.contest_date = self.contest_date.date()

    @property
    def mode(self) -> str:
        """``"call"`` when a function is called with JSON arguments, ``"stdin"`` otherwise."""
        return "stdin" if self.fn_name is None else "call"

    @property
    def num_tests(self) -> int:
        return len(self.public_tests) + len(self.private_tests)

    def tests(self, max_tests: int | None = None) -> list[TestCase]:
        """Public then private tests, capped at ``max_tests`` deterministically.

        Public tests come first (they are the examples in the statement); the private tests that fit are
        chosen evenly spread over the private list (first and last included), so the cap keeps the large
        tests at the end of a suite. ``None`` means no cap.
        """
        everything = self.public_tests + self.private_tests
        if max_tests is None or max_tests >= len(everything):
            return list(everything)
        if max_tests < 1:
            raise ValueError(f"max_tests must be >= 1 or None, got {max_tests}")
        if max_tests <= len(self.public_tests):
            return [self.public_tests[i] for i in spread_indices(len(self.public_tests), max_tests)]
        room = max_tests - len(self.public_tests)
        return self.public_tests + [self.private_tests[i] for i in spread_indices(len(self.private_tests), room)]

    def to_problem(self, max_tests: int | None = None, time_limit_s: float | None = None) -> Problem:
        """The executor's `Problem` for this problem."""
        from microcoder_fast.executor.types import Problem

        tests = self.tests(max_tests)
        if not tests:
            raise ValueError(f"problem {self.id!r} has no tests; it cannot be judged (drop it or add tests)")
        kwargs: dict[str, Any] = {"tests": tests, "fn_name": self.fn_name, "id": self.id, "checker": self.checker}
        if time_limit_s is not None:
            kwargs["time_limit_s"] = time_limit_s
        return Problem(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (dates as ISO strings, tests as ``{"input", "output"}`` dicts)."""
        d = dataclasses.asdict(self)
        d["public_tests"] = [{"input": t.input, "output": t.output} for t in self.public_tests]
        d["private_tests"] = [{"input": t.input, "output": t.output} for t in self.private_tests]
        d["contest_date"] = self.contest_date.isoformat() if self.contest_date else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CodeProblem:
        """Inverse of `to_dict`."""
        d = dict(d)
        if isinstance(d.get("contest_date"), str):
            d["contest_date"] = _dt.date.fromisoformat(d["contest_date"][:10])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CodeProblem fields {unknown}; known fields: {sorted(known)}")
        return cls(**d)


def index_by_id(problems: Iterable[CodeProblem]) -> dict[str, CodeProblem]:
    """``{problem.id: problem}``; a duplicate id is an error (samples could not be matched unambiguously)."""
    out: dict[str, CodeProblem] = {}
    for p in problems:
        if p.id in out:
            raise ValueError(f"duplicate problem id {p.id!r}: ids must be unique to match samples to problems")
        out[p.id] = p
    return out


def ensure_tests(problems: Sequence[CodeProblem]) -> None:
    """Raise if any problem has no tests (a problem with no tests would be scored as a vacuous pass)."""
    empty = [p.id for p in problems if p.num_tests == 0]
    if empty:
        raise ValueError(f"{len(empty)} problem(s) have no tests and cannot be judged: {empty[:5]}")
