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

from decimal import Decimal, InvalidOperation

from microcoder_fast.executor.compare._common import short as _short


def _lcb_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.strip().split("\n")]


def _lcb_decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(tok) for tok in line.split()]
    except (InvalidOperation, ValueError, TypeError):
        return None


def _explain_lcb_stdout(out: str, exp: str) -> str | None:
    a_lines = _lcb_lines(out)
    e_lines = _lcb_lines(exp)
    if len(a_lines) != len(e_lines):
        return f"expected {len(e_lines)} line(s), got {len(a_lines)} (after stripping)"
    for no, (al, el) in enumerate(zip(a_lines, e_lines), 1):
        if al == el:
            continue
        ad = _lcb_decimals(al)
        ed = _lcb_decimals(el) if ad is not None else None
        try:
            same = ad is not None and ed is not None and ad == ed
        except InvalidOperation:  # signalling NaN: the grader errors out on this line, a failure too
            same = False
        if not same:
            return f"line {no}: expected {_short(el)}, got {_short(al)}"
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
