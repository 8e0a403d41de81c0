"""LiveCodeBench ``code_generation_lite`` rows → `CodeProblem`.

A row (one JSON object per line) holds ``question_id``, ``question_title``, ``question_content``,
``platform`` (leetcode / atcoder / codeforces), ``contest_id``, ``contest_date`` (ISO), ``starter_code``,
``difficulty`` (easy / medium / hard), ``public_test_cases`` (a JSON string: a list of
``{"input", "output", "testtype"}``), ``private_test_cases`` (the same list either as plain JSON or as
base64 → zlib → pickle → JSON) and ``metadata`` (a JSON string; ``func_name`` names the function of
functional problems). An optional ``checker`` field (not in LiveCodeBench's own rows; our extension for
problems with more than one right answer) holds a special judge: Python source defining
``check(input, output, expected)`` that returns True, False or a reason string, run in the sandbox
instead of the output comparison (``microcoder_fast/executor/checker.py``).

Private tests are unpickled by `_StrOnlyUnpickler`, which resolves no global at all: a pickle can only
build a string, and one that reaches for a callable (``os.system`` via ``__reduce__``, ...) raises
`UnsafePickleError` naming the row, before anything runs.

Release windows (``release=``), by contest date, inclusive. LiveCodeBench publishes its releases as
cumulative sets (see livecodebench.github.io and the task list of the ``code_generation_lite`` dataset):
release_v1 = May 2023 – Mar 2024 (400 problems), release_v2 = – May 2024 (511), release_v3 = – Jul 2024
(612), release_v4 = – Sep 2024 (713), release_v5 = – Jan 2025 (880), release_v6 = – Apr 2025 (1055).
The names used here:

==============  =====================  ==========================================================
name            contest dates          meaning
==============  =====================  ==========================================================
``v1``          2023-05-01..2024-03-31  the first release
``v2``          2024-04-01..2024-05-31  problems added by release_v2
``v3``          2024-06-01..2024-07-31  problems added by release_v3
``v4``          2024-08-01..2024-09-30  problems added by release_v4
``v5``          2024-10-01..2024-12-31  problems added by release_v5 up to the end of 2024
``v6``          2025-01-01..2025-04-30  "LiveCodeBench v6" as MicroCoder reports it: 2025 problems
``release_vN``  2023-05-01..end of vN   the cumulative release
``latest``      no bound                everything in the file
==============  =====================  ==========================================================

The v5/v6 boundary is the one point where sources differ (release_v5 is described as running "to Jan
2025"); this package follows the MicroCoder paper's usage, v6 = problems from 2025-01 on. Pass
``start_date`` / ``end_date`` to choose any other window; they narrow the release window further.

Imports ``data.problem`` and the executor's plain types; never torch, ``ops`` or ``rl``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import io
import json
import pickle
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from microcoder_fast.data.problem import CodeProblem
from microcoder_fast.executor.types import TestCase

RELEASE_WINDOWS: dict[str, tuple[_dt.date | None, _dt.date | None]] = {
    "v1": (_dt.date(2023, 5, 1), _dt.date(2024, 3, 31)),
    "v2": (_dt.date(2024, 4, 1), _dt.date(2024, 5, 31)),
    "v3": (_dt.date(2024, 6, 1), _dt.date(2024, 7, 31)),
    "v4": (_dt.date(2024, 8, 1), _dt.date(2024, 9, 30)),
    "v5": (_dt.date(2024, 10, 1), _dt.date(2024, 12, 31)),
    "v6": (_dt.date(2025, 1, 1), _dt.date(2025, 4, 30)),
    "latest": (None, None),
}
for _n in range(1, 7):
    RELEASE_WINDOWS[f"release_v{_n}"] = (_dt.date(2023, 5, 1), RELEASE_WINDOWS[f"v{_n}"][1])
RELEASE_WINDOWS["release_latest"] = (None, None)

PLATFORMS = ("leetcode", "atcoder", "codeforces")
_MAX_DECOMPRESSED = 1 << 30  # 1 GiB: larger private-test blobs are refused rather than exhausting memory


class UnsafePickleError(ValueError):
    """A pickled private-test blob asked for something other than a string (possible code execution)."""


class _StrOnlyUnpickler(pickle.Unpickler):
    """Resolves no global: any pickle that needs a class or function (hence any that can run code) fails."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: ANN401
        raise UnsafePickleError(
            f"the pickle asks for {module}.{name}; LiveCodeBench private tests are a pickled JSON string "
            "and nothing else is accepted (this row may be malicious: do not load it with plain pickle)"
        )

    def persistent_load(self, pid: Any) -> Any:  # noqa: ANN401
        raise UnsafePickleError("the pickle uses persistent ids; only a pickled string is accepted")


def release_window(release: str) -> tuple[_dt.date | None, _dt.date | None]:
    """``(start, end)`` contest dates (inclusive, ``None`` = open) of a release name (see module doc)."""
    key = release.strip().lower()
    if key not in RELEASE_WINDOWS:
        raise ValueError(f"unknown LiveCodeBench release {release!r}; choose one of {sorted(RELEASE_WINDOWS)} "
                         "or pass start_date/end_date")
    return RELEASE_WINDOWS[key]


def encode_private_tests(tests: Iterable[dict[str, Any]]) -> str:
    """LiveCodeBench's compressed encoding: JSON → pickle → zlib → base64 (used to build test rows)."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(list(tests))))).decode("ascii")


def decode_private_tests(blob: Any) -> list[dict[str, Any]]:
    """Decode a ``private_test_cases`` field: a list, plain JSON text, or base64 → zlib → pickle → JSON.

    Raises `UnsafePickleError` for a pickle that is not a plain string and ``ValueError`` for anything
    else that does not decode.
    """
    if isinstance(blob, list):
        return blob
    if not isinstance(blob, str):
        raise ValueError(f"private_test_cases must be a string or a list, got {type(blob).__name__}")
    if not blob.strip():
        return []
    stripped = blob.lstrip()
    if stripped[:1] in "[{":
        try:
            return _as_test_list(json.loads(blob), "private_test_cases")
        except json.JSONDecodeError as e:
            raise ValueError(f"private_test_cases looks like JSON but does not parse: {e}") from e
    try:
        raw = base64.b64decode(blob.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError(f"private_test_cases is neither JSON nor base64: {e}") from e
    try:
        d = zlib.decompressobj()
        data = d.decompress(raw, _MAX_DECOMPRESSED)
        if d.unconsumed_tail:
            raise ValueError(f"private_test_cases decompresses to more than {_MAX_DECOMPRESSED} bytes; refused")
    except zlib.error as e:
        raise ValueError(f"private_test_cases is base64 but not zlib data: {e}") from e
    try:
        obj = _StrOnlyUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # any malformed pickle: truncated, bad opcode, ...
        raise ValueError(f"private_test_cases holds a malformed pickle: {type(e).__name__}: {e}") from e
    if isinstance(obj, bytes):
        obj = obj.decode("utf-8")
    if not isinstance(obj, str):
        raise UnsafePickleError(f"the pickle holds a {type(obj).__name__}; only a JSON string is accepted")
    try:
        return _as_test_list(json.loads(obj), "private_test_cases")
    except json.JSONDecodeError as e:
        raise ValueError(f"the unpickled private tests are not JSON: {e}") from e


def _as_test_list(obj: Any, what: str = "tests") -> list[dict[str, Any]]:
    if not isinstance(obj, list):
        raise ValueError(f"{what} must be a JSON list of {{input, output, testtype}}, got {type(obj).__name__}")
    return obj


def _parse_date(value: Any) -> _dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, (int, float)):  # epoch seconds or milliseconds (some exports)
        seconds = value / 1000 if value > 1e11 else value
        return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc).date()
    try:
        return _dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError as e:
        raise ValueError(f"contest_date {value!r} is not an ISO date (YYYY-MM-DD...)") from e


def _tests(raw: list[dict[str, Any]], what: str) -> tuple[list[TestCase], set[str]]:
    out: list[TestCase] = []
    types: set[str] = set()
    for i, t in enumerate(raw):
        if not isinstance(t, dict) or "input" not in t or "output" not in t:
            raise ValueError(f"{what}[{i}] must be an object with 'input' and 'output'")
        inp, outp = t["input"], t["output"]
        if not isinstance(inp, str):
            inp = json.dumps(inp)
        if not isinstance(outp, str):
            outp = json.dumps(outp)
        out.append(TestCase(inp, outp))
        if t.get("testtype"):
            types.add(str(t["testtype"]).lower())
    return out, types


def parse_lcb_row(row: dict[str, Any], where: str = "row") -> CodeProblem:
    """One LiveCodeBench row → `CodeProblem`; errors name ``where`` (e.g. ``"lcb.jsonl:12"``) and the id."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: a LiveCodeBench row must be a JSON object, got {type(row).__name__}")
    qid = row.get("question_id") or row.get("id")
    label = f"{where} (question_id {qid!r})"
    if not qid:
        raise ValueError(f"{where}: missing question_id")
    try:
        public_raw = row.get("public_test_cases", "[]")
        try:
            public_raw = public_raw if isinstance(public_raw, list) else json.loads(public_raw or "[]")
        except json.JSONDecodeError as e:
            raise ValueError(f"public_test_cases is not JSON ({e}); it must be a JSON list of "
                             "{input, output, testtype}") from None
        public, ptypes = _tests(_as_test_list(public_raw, "public_test_cases"), "public_test_cases")
        private, qtypes = _tests(decode_private_tests(row.get("private_test_cases", "")), "private_test_cases")
        meta_raw = row.get("metadata") or {}
        metadata = dict(meta_raw if isinstance(meta_raw, dict) else json.loads(meta_raw))
        contest_date = _parse_date(row.get("contest_date"))
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{label}: private_test_cases refused: {e}") from None
    except (ValueError, TypeError) as e:
        raise ValueError(f"{label}: {e}") from None
    types = ptypes | qtypes
    if len(types) > 1:
        raise ValueError(f"{label}: mixes test types {sorted(types)}; a problem is either stdin or functional")
    fn_name = metadata.get("func_name") or None
    if types == {"functional"} and not fn_name:
        raise ValueError(f"{label}: functional tests but metadata has no func_name to call")
    if types == {"stdin"}:
        fn_name = None
    if not public and not private:
        raise ValueError(f"{label}: no tests at all; a problem without tests cannot be judged")
    checker = row.get("checker") or None
    if checker is not None and not isinstance(checker, str):
        raise ValueError(f"{label}: checker must be Python source (a string) defining check(input, output, "
                         f"expected), got {type(checker).__name__}")
    metadata.setdefault("question_title", row.get("question_title", ""))
    if row.get("contest_id") is not None:
        metadata.setdefault("contest_id", row.get("contest_id"))
    return CodeProblem(
        id=str(qid),
        question=str(row.get("question_content") or row.get("question") or ""),
        starter_code=str(row.get("starter_code") or ""),
        fn_name=fn_name,
        public_tests=public,
        private_tests=private,
        difficulty=(str(row["difficulty"]).lower() if row.get("difficulty") else None),
        platform=(str(row["platform"]).lower() if row.get("platform") else None),
        source="livecodebench",
        contest_date=contest_date,
        solution=None,
        metadata=metadata,
        checker=checker,
    )


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` for the non-blank lines of a JSONL file (``.gz`` read transparently)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix == ".gz":
        import gzip

        fh: Any = gzip.open(path, "rt", encoding="utf-8")
    else:
        fh = open(path, encoding="utf-8")  # noqa: SIM115
    with fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                yield n, line


def load_lcb(
    path: str | Path,
    release: str | None = None,
    platforms: Iterable[str] | str | None = None,
    start_date: _dt.date | str | None = None,
    end_date: _dt.date | str | None = None,
) -> list[CodeProblem]:
    """Load a LiveCodeBench ``code_generation_lite`` JSONL file (or a JSON list), selecting by release
    window, contest dates (inclusive) and platforms. A row that does not parse is an error naming its line:
    a benchmark must not silently lose problems. Problems without a contest date are dropped only when a
    date window is asked for."""
    lo, hi = release_window(release) if release else (None, None)
    s, e = _parse_date(start_date), _parse_date(end_date)
    if s is not None:
        lo = s if lo is None else max(lo, s)
    if e is not None:
        hi = e if hi is None else min(hi, e)
    wanted: set[str] | None = None
    if platforms is not None:
        items = [platforms] if isinstance(platforms, str) else list(platforms)
        wanted = {p.strip().lower() for item in items for p in item.split(",") if p.strip()}
        unknown = wanted - set(PLATFORMS)
        if unknown:
            raise ValueError(f"unknown platform(s) {sorted(unknown)}; choose from {list(PLATFORMS)}")
    path = Path(path)
    rows: Iterable[tuple[str, Any]]
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{path}: a .json problem file must hold a list of rows")
        rows = ((f"{path}[{i}]", r) for i, r in enumerate(data))
    else:
        rows = ((f"{path}:{n}", _loads(line, f"{path}:{n}")) for n, line in iter_jsonl(path))
    out: list[CodeProblem] = []
    seen: dict[str, str] = {}
    for where, row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"{where}: a LiveCodeBench row must be a JSON object, got {type(row).__name__}")
        if wanted is not None and str(row.get("platform", "")).lower() not in wanted:
            continue
        if lo is not None or hi is not None:
            d = _parse_date(row.get("contest_date"))
            if d is None or (lo is not None and d < lo) or (hi is not None and d > hi):
                continue
        p = parse_lcb_row(row, where)
        if p.id in seen:
            raise ValueError(f"{where}: duplicate question_id {p.id!r} (first at {seen[p.id]})")
        seen[p.id] = where
        out.append(p)
    return out


def _loads(line: str, where: str) -> Any:  # noqa: ANN401
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
