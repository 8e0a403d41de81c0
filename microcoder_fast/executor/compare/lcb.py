"""Compare mode ``"lcb"``: LiveCodeBench grader parity (``nvidia-livecodebench`` 26.3,
``evaluation/testing_util.py``).

Stdin mode: the whole text and then every line are stripped of whitespace, lines are split on
``\\n``; the counts must be equal; a line passes if identical, or if every whitespace-separated token
of both lines converts to ``decimal.Decimal`` and the two lists are equal.  So ``1e+18`` passes for
``1000000000000000000``, ``1.0`` for ``1``, while ``0.30000000000000004`` fails for ``0.3`` (no
tolerance).  Call mode: the expected text is ``json.loads``-ed; a top-level tuple becomes a list (nested
tuples do not, so ``[(1, 2)]`` fails for ``[[1, 2]]``); then Python ``==`` decides, so ``True`` passes
for ``1``, ``1.0`` for ``1``, ``{1: 2}`` fails for ``{"1": 2}``.  Tolerances are ignored.
Known divergences (the grader evaluates the program's own objects in its process; we never run
untrusted ``__eq__`` in the supervisor): an object whose ``__eq__`` always answers ``True`` passes
there and fails here; NumPy arrays fail here (there a one-element array can pass, a longer one raises,
which is also a failure); ``complex`` values fail here (there ``1+0j == 1``).

Imports the standard library and this package's helpers only.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from itertools import zip_longest

from microcoder_fast.executor.compare._common import line_spans, lstrip_start, rstrip_end, short_span, tokens
from microcoder_fast.executor.compare._common import short as _short

_TOKEN_RE = re.compile(r"\S+")  # str.split()'s tokens: re's \s is str.isspace(), the set split() uses
_SPACE_RE = re.compile(r"\s")


def _stripped(text: str, start: int, end: int) -> tuple[int, int]:
    start = lstrip_start(text, start, end)
    return start, rstrip_end(text, start, end)


def _decimals_equal(out: str, a0: int, a1: int, exp: str, e0: int, e1: int) -> bool:
    """Every token of both lines converts to ``Decimal`` and the two lists are equal (streamed)."""
    for at, et in zip_longest(tokens(out, a0, a1, _TOKEN_RE, _SPACE_RE), tokens(exp, e0, e1, _TOKEN_RE, _SPACE_RE)):
        if at is None or et is None:
            return False
        try:
            if Decimal(at) != Decimal(et):
                return False
        except (InvalidOperation, ValueError, TypeError):  # signalling NaN: the grader errors out, a failure
            return False
    return True


def _explain_lcb_stdout(out: str, exp: str) -> str | None:
    """The grader's ``[ln.strip() for ln in text.strip().split("\n")]``, streamed line by line."""
    as_, ae = _stripped(out, 0, len(out))
    es, ee = _stripped(exp, 0, len(exp))
    na, ne = out.count("\n", as_, ae) + 1, exp.count("\n", es, ee) + 1
    if na != ne:
        return f"expected {ne} line(s), got {na} (after stripping)"
    for no, ((a0, a1), (e0, e1)) in enumerate(zip(line_spans(out, as_, ae), line_spans(exp, es, ee)), 1):
        a0, a1 = _stripped(out, a0, a1)
        e0, e1 = _stripped(exp, e0, e1)
        if a1 - a0 == e1 - e0 and out.startswith(exp[e0:e1], a0):
            continue
        if not _decimals_equal(out, a0, a1, exp, e0, e1):
            return f"line {no}: expected {short_span(exp, e0, e1)}, got {short_span(out, a0, a1)}"
    return None


def _lcb_equal(a: object, e: object) -> bool:
    if isinstance(a, tuple):
        a = list(a)
    try:
        return bool(a == e)
    except Exception:
        return False


def explain_stdout(out: str, exp: str, abs_tol: float, rel_tol: float) -> str | None:
    """Tolerances are ignored, as in the grader."""
    return _explain_lcb_stdout(out, exp)


def explain_value(a: object, e: object, abs_tol: float, rel_tol: float) -> str | None:
    return None if _lcb_equal(a, e) else f"expected {_short(e)}, got {_short(a)}"
