"""The judge's public types: ``Verdict``, ``TestCase``, ``Problem``, ``TestResult``, ``ModeVerdict``, ``Result``.

Plain data and validation only: no threads, no processes, no compare modes. Must not import ``threading``
(the zygote imports nothing from here, but callers that only build problems should not pay for it) nor
anything of the executor's other modules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar


_C = TypeVar("_C", bound="Closing")

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
    ``time_limit_s``, ``abs_tol`` and ``rel_tol`` override the executor's defaults for this problem.
    ``checker``: Python source of a special judge, ``check(input, output, expected)`` returning True,
    False or a reason, run in the sandbox instead of the output comparison (see ``executor/checker.py``)."""

    tests: Sequence[TestCase]
    fn_name: str | None = None
    time_limit_s: float | None = None
    abs_tol: float | None = None
    rel_tol: float | None = None
    id: str | None = None
    checker: str | None = None
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
        if self.checker is not None:
            if not isinstance(self.checker, str):
                raise TypeError("Problem.checker must be Python source (str) defining check(input, output, "
                                f"expected), got {type(self.checker).__name__}")
            try:
                compile(self.checker, "<checker>", "exec")
            except (SyntaxError, ValueError) as e:
                raise ValueError(f"Problem.checker does not compile ({e}); it must define check(input, output, "
                                 "expected) returning True, False or a reason string") from None
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
                except RecursionError:
                    raise ValueError(
                        f"Problem test {i}: argument line {j + 1} is JSON nested too deeply for Python's parser "
                        f"({len(line)} characters, starting {line[:40]!r}); no program could receive it: "
                        "flatten the argument or drop the test"
                    ) from None
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
    #: the verdict and message of this test in every compare mode the executor judges in (``verdict`` and
    #: ``message`` above are the primary mode's); they differ only where the comparison decided the test
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)


@dataclass
class ModeVerdict:
    """A generation's outcome in one compare mode: as a run judged in that mode alone would report it."""

    verdict: Verdict
    passed: int
    message: str = ""

    @property
    def reward(self) -> float:
        return 1.0 if self.verdict == Verdict.AC else 0.0


@dataclass
class Result:
    """Outcome of one generation. ``total`` counts the problem's tests; ``tests`` holds those that ran.

    ``modes`` maps every compare mode the executor judges in (``Executor(compare=("default", "lcb"))``) to
    that mode's :class:`ModeVerdict`; ``verdict``, ``passed``, ``message`` and ``reward`` are the primary
    (first) mode's. With several modes and stop-on-first-failure, tests keep running until every mode has
    failed one, so ``tests`` can hold more tests than a single-mode run would."""

    verdict: Verdict
    passed: int
    total: int
    tests: list[TestResult] = field(default_factory=list)
    message: str = ""
    index: int | None = None
    problem_id: str | None = None
    wall_s: float = 0.0
    modes: dict[str, ModeVerdict] = field(default_factory=dict)

    @property
    def reward(self) -> float:
        return 1.0 if self.verdict == Verdict.AC else 0.0

    @property
    def accepted(self) -> bool:
        return self.verdict == Verdict.AC


def next_item(items: Iterator[tuple[int, object]]) -> tuple[int, str | bytes, Problem] | None:
    """The next ``(index, code, problem)`` of an enumerated ``judge_iter`` input, checked; ``None`` at its end."""
    try:
        i, item = next(items)
    except StopIteration:
        return None
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise TypeError(f"item {i} must be a (code, Problem) pair, got {type(item).__name__}")
    code, problem = item
    check_item(code, problem, i)
    return i, code, problem


def check_item(code: object, problem: object, i: int | None) -> None:
    where = "" if i is None else f"item {i}: "
    if not isinstance(code, (str, bytes, bytearray)):
        raise TypeError(f"{where}code must be str or bytes, got {type(code).__name__}")
    if not isinstance(problem, Problem):
        raise TypeError(f"{where}problem must be a microcoder_fast.executor.Problem, got {type(problem).__name__}")


class Closing:
    """Context-manager and finaliser glue shared by the judges (``Executor``, ``RayExecutor``): ``with`` closes
    the judge, and so does garbage collection (an error there is dropped, as Python drops them in ``__del__``).
    Subclasses define ``close()``, which must be safe to call twice."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
