"""The MicroCoder training format (one JSONL row per problem), validation, test caps, pass-rate filtering.

A row::

    {"id": "cf-1234A", "statement": "...", "starter_code": "", "difficulty": "hard", "source": "codeforces",
     "tests": {"inputs": ["1 2\\n", ...], "outputs": ["3\\n", ...], "fn_name": null}}

``fn_name`` non-null makes it a call-mode problem; its inputs are then either strings (one JSON value per
argument line) or lists of argument values, and its outputs strings (JSON) or values. Optional keys:
``solution``, ``platform``, ``contest_date``, ``metadata``; ``question`` is accepted for ``statement``.

Validation never lets a bad row into training: an unreadable line, a row without an id or statement, a
duplicate id, or a row whose tests are unusable (lengths differ, wrong types, none at all) is reported with
its line number (``ProblemList.skipped`` and a warning) and skipped.

Imports ``data.lcb``, ``data.problem`` and the executor's plain types; never torch, ``ops`` or ``rl``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from microcoder_fast.data.lcb import _parse_date, iter_jsonl, load_lcb
from microcoder_fast.data.problem import CodeProblem, spread_indices
from microcoder_fast.executor.types import TestCase


@dataclasses.dataclass(frozen=True)
class SkippedRow:
    """A row left out of a load: where it was, its id when known, and why."""

    line: int
    id: str | None
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}" + (f" (id {self.id!r})" if self.id else "") + f": {self.reason}"


class ProblemList(list):
    """A ``list[CodeProblem]`` that also carries the rows skipped while loading (``.skipped``)."""

    skipped: list[SkippedRow]

    def __init__(self, items: Iterable[CodeProblem] = (), skipped: Iterable[SkippedRow] = ()) -> None:
        super().__init__(items)
        self.skipped = list(skipped)


def _call_input(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "\n".join(json.dumps(v) for v in value)
    raise TypeError(f"a call-mode input must be a string or a list of arguments, got {type(value).__name__}")


def _row_tests(tests: Any, fn_name: str | None) -> list[TestCase]:
    if not isinstance(tests, Mapping):
        raise ValueError("'tests' must be an object with 'inputs' and 'outputs' lists")
    inputs, outputs = tests.get("inputs"), tests.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise ValueError("'tests.inputs' and 'tests.outputs' must both be lists")
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} test inputs but {len(outputs)} outputs")
    out: list[TestCase] = []
    for i, (inp, outp) in enumerate(zip(inputs, outputs)):
        if fn_name is None:
            if not isinstance(inp, str) or not isinstance(outp, str):
                raise ValueError(f"stdin test {i}: input and output must be strings")
            out.append(TestCase(inp, outp))
        else:
            try:
                out.append(TestCase(_call_input(inp), outp if isinstance(outp, str) else json.dumps(outp)))
            except TypeError as e:
                raise ValueError(f"call test {i}: {e}") from None
    return out


def parse_microcoder_row(row: Any, max_tests: int | None = None) -> CodeProblem:
    """One MicroCoder row → `CodeProblem` (``ValueError`` names what is wrong)."""
    if not isinstance(row, dict):
        raise ValueError(f"a row must be a JSON object, got {type(row).__name__}")
    pid = row.get("id")
    if pid is None or str(pid) == "":
        raise ValueError("missing 'id'")
    statement = row.get("statement", row.get("question"))
    if not isinstance(statement, str) or not statement.strip():
        raise ValueError("missing or empty 'statement'")
    tests_field = row.get("tests")
    fn_name = (tests_field or {}).get("fn_name") if isinstance(tests_field, Mapping) else None
    fn_name = fn_name or row.get("fn_name") or None
    tests = _row_tests(tests_field, fn_name)
    if not tests:
        raise ValueError("zero usable tests: a problem without tests would be a free reward")
    total = len(tests)
    if max_tests is not None and total > max_tests:
        tests = [tests[i] for i in spread_indices(total, max_tests)]
    metadata = dict(row.get("metadata") or {})
    metadata["num_tests_total"] = total
    return CodeProblem(
        id=str(pid), question=statement, starter_code=str(row.get("starter_code") or ""), fn_name=fn_name,
        public_tests=[], private_tests=tests, difficulty=row.get("difficulty"), platform=row.get("platform"),
        source=row.get("source"), contest_date=_parse_date(row.get("contest_date")),
        solution=row.get("solution"), metadata=metadata,
    )


def load_microcoder(
    path: str | Path,
    max_tests: int | None = None,
    on_skip: Callable[[SkippedRow], None] | None = None,
) -> ProblemList:
    """Load a MicroCoder JSONL file; bad rows are skipped and reported (see the module docstring).

    ``max_tests`` caps each problem's tests deterministically (evenly spread, first and last kept).
    ``on_skip`` is called for each skipped row; by default one warning summarises them.
    """
    if max_tests is not None and max_tests < 1:
        raise ValueError(f"max_tests must be >= 1 or None, got {max_tests}")
    problems: list[CodeProblem] = []
    skipped: list[SkippedRow] = []
    seen: dict[str, int] = {}
    for n, line in iter_jsonl(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            skipped.append(SkippedRow(n, None, f"invalid JSON ({e.msg})"))
            continue
        rid = str(row.get("id")) if isinstance(row, dict) and row.get("id") is not None else None
        try:
            p = parse_microcoder_row(row, max_tests)
        except ValueError as e:
            skipped.append(SkippedRow(n, rid, str(e)))
            continue
        if p.id in seen:
            skipped.append(SkippedRow(n, p.id, f"duplicate id (first on line {seen[p.id]})"))
            continue
        seen[p.id] = n
        problems.append(p)
    if on_skip is not None:
        for s in skipped:
            on_skip(s)
    elif skipped:
        shown = "; ".join(str(s) for s in skipped[:5])
        more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
        warnings.warn(f"{path}: skipped {len(skipped)} row(s): {shown}{more}", stacklevel=2)
    return ProblemList(problems, skipped)


def to_microcoder_row(p: CodeProblem) -> dict[str, Any]:
    tests = p.tests()
    row: dict[str, Any] = {
        "id": p.id, "statement": p.question, "starter_code": p.starter_code,
        "tests": {"inputs": [t.input for t in tests], "outputs": [t.output for t in tests], "fn_name": p.fn_name},
        "difficulty": p.difficulty, "source": p.source,
    }
    if p.platform:
        row["platform"] = p.platform
    if p.contest_date:
        row["contest_date"] = p.contest_date.isoformat()
    if p.solution:
        row["solution"] = p.solution
    meta = {k: v for k, v in p.metadata.items() if k != "num_tests_total"}
    if meta:
        row["metadata"] = meta
    return row


def save_microcoder(problems: Iterable[CodeProblem], path: str | Path) -> int:
    """Write problems as MicroCoder JSONL (all tests, public first); returns the number of rows."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for p in problems:
            fh.write(json.dumps(to_microcoder_row(p), ensure_ascii=False) + "\n")
            n += 1
    return n


def _rate(value: Any, pid: str) -> float:
    if isinstance(value, Mapping):
        if "pass_rate" in value:
            value = value["pass_rate"]
        elif "passed" in value and ("total" in value or "n" in value):
            value = (value["passed"], value.get("total", value.get("n")))
        else:
            raise ValueError(f"pass-rate entry for {pid!r} needs 'pass_rate' or 'passed' and 'total'")
    if isinstance(value, (tuple, list)):
        passed, total = value
        if total <= 0:
            raise ValueError(f"pass-rate entry for {pid!r} has total {total}; need at least one sample")
        value = passed / total
    rate = float(value)
    if math.isnan(rate) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"pass rate for {pid!r} is {rate}; it must be in [0, 1]")
    return rate


def load_pass_rates(path: str | Path) -> dict[str, float]:
    """Pass rates from a JSONL file: rows ``{"id", "pass_rate"}`` / ``{"id", "passed", "total"}``, or the
    per-sample rows ``microcoder-eval --out`` writes (``problem_id`` + ``passed``), aggregated per problem."""
    rates: dict[str, float] = {}
    counts: dict[str, list[int]] = {}
    for n, line in iter_jsonl(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{n}: invalid JSON, ignored", stacklevel=2)
            continue
        if not isinstance(row, dict):
            continue
        if "problem_id" in row and "passed" in row and "id" not in row:
            if row.get("status") == "error":
                continue
            c = counts.setdefault(str(row["problem_id"]), [0, 0])
            c[0] += bool(row["passed"])
            c[1] += 1
        elif "id" in row:
            rates[str(row["id"])] = _rate(row, str(row["id"]))
    for pid, (passed, total) in counts.items():
        rates[pid] = passed / total
    return rates


def filter_by_pass_rate(
    problems: Iterable[CodeProblem],
    table: Mapping[str, Any] | str | Path,
    max_pass_rate: float = 0.9,
    min_pass_rate: float | None = None,
    keep_missing: bool = True,
) -> list[CodeProblem]:
    """Keep the problems that are still hard for the model: pass rate ``<= max_pass_rate`` and, when given,
    ``>= min_pass_rate`` (e.g. a tiny positive value drops problems never solved).

    ``table`` maps problem id → pass rate (a float, ``(passed, total)`` or ``{"pass_rate"}`` /
    ``{"passed", "total"}``), or is a path for `load_pass_rates`. Problems missing from the table are kept
    when ``keep_missing`` (their difficulty is unknown) and dropped otherwise.
    """
    if not 0.0 <= max_pass_rate <= 1.0:
        raise ValueError(f"max_pass_rate must be in [0, 1], got {max_pass_rate}")
    if min_pass_rate is not None and not 0.0 <= min_pass_rate <= max_pass_rate:
        raise ValueError(f"min_pass_rate must be in [0, max_pass_rate={max_pass_rate}], got {min_pass_rate}")
    rates = load_pass_rates(table) if isinstance(table, (str, Path)) else {k: _rate(v, k) for k, v in table.items()}
    kept: list[CodeProblem] = []
    for p in problems:
        if p.id not in rates:
            if keep_missing:
                kept.append(p)
            continue
        r = rates[p.id]
        if r > max_pass_rate or (min_pass_rate is not None and r < min_pass_rate):
            continue
        kept.append(p)
    return kept


def _first_rows(path: Path) -> Iterable[Any]:
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        yield from (data[:1] if isinstance(data, list) else [data])
        return
    for _, line in iter_jsonl(path):
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue


def _detect_format(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"no such problem file: {path}")
    for row in _first_rows(path):
        if isinstance(row, dict):
            if "question_content" in row or "public_test_cases" in row:
                return "lcb"
            if "statement" in row or "tests" in row:
                return "microcoder"
            if "question" in row and ("public_tests" in row or "private_tests" in row):
                return "codeproblem"
        break
    raise ValueError(f"{path}: cannot tell the format from its first row; expected LiveCodeBench rows "
                     "(question_content, public_test_cases, ...) or MicroCoder rows (statement, tests)")


def load_problems(path: str | Path, fmt: str = "auto", **lcb_kwargs: Any) -> list[CodeProblem]:
    """Load a problem file of either format (``fmt``: auto | lcb | microcoder | codeproblem)."""
    path = Path(path)
    if fmt == "auto":
        fmt = _detect_format(path)
    if fmt == "lcb":
        return load_lcb(path, **lcb_kwargs)
    if lcb_kwargs and any(v is not None for v in lcb_kwargs.values()):
        raise ValueError(f"release/platform/date selection applies to LiveCodeBench files; {path} is {fmt}")
    if fmt == "microcoder":
        return list(load_microcoder(path))
    if fmt == "codeproblem":
        return [CodeProblem.from_dict(json.loads(line)) for _, line in iter_jsonl(path)]
    raise ValueError(f"unknown problem format {fmt!r}; choose auto, lcb, microcoder or codeproblem")
