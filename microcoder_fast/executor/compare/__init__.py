"""Output comparison for the judge: compare modes, the call-mode value codec, and explanations.

Layout (one concern per module):

* :mod:`.codec` -- :func:`encode_value` (runs inside the sandboxed child to turn a call-mode return value
  into typed JSON text) and :func:`decode_value` (runs in the caller);
* :mod:`.default`, :mod:`.lcb`, :mod:`.microcoder` -- one file per compare mode, each documenting its rules;
* :mod:`.registry` -- THE list of modes (:data:`MODES`) and the lookup by name;
* :mod:`._common` -- helpers the modes share.

Everything here is pure Python (standard library only) and runs in the caller, except :func:`encode_value`.
This package never imports the executor, torch or anything outside the standard library.

Modes, in short (each module's docstring has the exact rules): ``"default"`` is sound (tokens, exact
integers, reals within ``abs_tol``/``rel_tol``, typed call-mode values); ``"lcb"`` reproduces the
LiveCodeBench grader; ``"microcoder"`` reproduces the MicroCoder paper's lenient multi-strategy reward
(accepts some wrong answers, listed in its docstring).
"""

from __future__ import annotations

from microcoder_fast.executor.compare._common import check_tols as _check_tols
from microcoder_fast.executor.compare._common import expected_text as _expected_text
from microcoder_fast.executor.compare._common import expected_value as _expected_value
from microcoder_fast.executor.compare._common import to_text as _to_text
from microcoder_fast.executor.compare.codec import MAX_DEPTH, NDArray, Opaque, decode_value, encode_value
from microcoder_fast.executor.compare.registry import MODES, Mode, check_mode, get_mode, parse_modes

__all__ = [
    "MODES",
    "MAX_DEPTH",
    "Mode",
    "NDArray",
    "Opaque",
    "check_mode",
    "compare_call",
    "compare_stdout",
    "decode_value",
    "encode_value",
    "explain_call",
    "explain_stdout",
    "get_mode",
    "parse_modes",
]


def explain_stdout(
    actual: bytes, expected: str, mode: str = "default", abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> str | None:
    """``None`` if ``actual`` (a program's stdout bytes) matches ``expected`` under ``mode``, else a short
    reason naming the first mismatch (line and token)."""
    m = get_mode(mode)
    _check_tols(abs_tol, rel_tol)
    return m.explain_stdout(_to_text(actual), _expected_text(expected), abs_tol, rel_tol)


def compare_stdout(
    actual: bytes, expected: str, mode: str = "default", abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> bool:
    """True if a stdin-mode program's stdout ``actual`` matches the test's ``expected`` text under ``mode``."""
    return explain_stdout(actual, expected, mode, abs_tol, rel_tol) is None


def explain_call(
    actual: str, expected: str, mode: str = "default", abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> str | None:
    """``None`` if the encoded return value ``actual`` matches the JSON ``expected`` under ``mode``, else a
    reason naming the first mismatching element.

    Raises ``ValueError`` if ``expected`` is not JSON (a problem-data error, not a wrong answer).  An
    ``actual`` that is not a valid encoding is reported as a mismatch.
    """
    m = get_mode(mode)
    _check_tols(abs_tol, rel_tol)
    exp = _expected_value(expected)
    try:
        act = decode_value(actual)
    except (ValueError, TypeError) as e:
        return f"could not decode the program's return value: {e}"
    return m.explain_value(act, exp, abs_tol, rel_tol)


def compare_call(
    actual: str, expected: str, mode: str = "default", abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> bool:
    """True if the encoded return value ``actual`` (from :func:`encode_value`) matches the test's JSON
    ``expected`` text under ``mode``.  Raises ``ValueError`` if ``expected`` is not JSON."""
    return explain_call(actual, expected, mode, abs_tol, rel_tol) is None
