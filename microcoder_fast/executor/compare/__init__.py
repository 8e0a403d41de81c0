"""Output comparison for the judge: compare modes, the call-mode value codec, and explanations.

Layout (one concern per module):

* :mod:`.codec` -- :func:`encode_value` (runs inside the sandboxed child to turn a call-mode return value
  into typed JSON text) and :func:`decode_value` (runs in the caller);
* :mod:`.default`, :mod:`.lcb`, :mod:`.microcoder` -- one file per compare mode, each documenting its rules;
* :mod:`.registry` -- THE list of modes (:data:`MODES`) and the lookup by name;
* :mod:`._common` -- helpers the modes share.

Everything here is pure Python (standard library only) and runs in the caller, except :func:`encode_value`.
This package never imports the executor, torch or anything outside the standard library.

Bounds (the caller compares untrusted output, so it must stay small and quick whatever a program sends):
outputs over the executor's cap are OLE before any comparison; stdout is compared a line, and within a
line a chunk of tokens, at a time (:mod:`._common`), so the caller holds the output, its decoded text and
one line at most, in every mode (a 64 MB output costs about 128 MB, whatever its shape); a call-mode
value whose encoding is more than :data:`VALUE_RATIO` times the expected JSON (plus :data:`VALUE_SLACK`) is
a mismatch without being decoded; JSON nested too deeply for Python's parser is a clear ``ValueError``
for expected data (a problem error) and a mismatch for a program's value.

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
    "VALUE_RATIO",
    "VALUE_SLACK",
    "check_mode",
    "compare_call",
    "compare_stdout",
    "decode_value",
    "encode_value",
    "explain_call",
    "explain_call_modes",
    "explain_stdout",
    "explain_stdout_modes",
    "get_mode",
    "parse_modes",
]


def _modes(mode: str | tuple[str, ...]) -> list:
    return [get_mode(m) for m in ((mode,) if isinstance(mode, str) else mode)]


def explain_stdout_modes(
    actual: bytes, expected: str, modes: tuple[str, ...], abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> dict[str, str | None]:
    """:func:`explain_stdout` in several modes at once: ``{mode: None or reason}`` (the output is decoded
    once)."""
    ms = _modes(modes)
    _check_tols(abs_tol, rel_tol)
    out, exp = _to_text(actual), _expected_text(expected)
    return {m.name: m.explain_stdout(out, exp, abs_tol, rel_tol) for m in ms}


def explain_stdout(
    actual: bytes, expected: str, mode: str = "default", abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> str | None:
    """``None`` if ``actual`` (a program's stdout bytes) matches ``expected`` under ``mode``, else a short
    reason naming the first mismatch (line and token)."""
    return explain_stdout_modes(actual, expected, (mode,), abs_tol, rel_tol)[mode]


def compare_stdout(
    actual: bytes, expected: str, mode: str = "default", abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> bool:
    """True if a stdin-mode program's stdout ``actual`` matches the test's ``expected`` text under ``mode``."""
    return explain_stdout(actual, expected, mode, abs_tol, rel_tol) is None


#: A return value whose encoding is longer than this many times the expected JSON text (plus
#: :data:`VALUE_SLACK` characters) is a mismatch without being decoded, so decoding a program's value costs
#: the caller memory in proportion to the expected value, never to what the program sends. No value that
#: long can match in the default mode except a ``Decimal``/``Fraction`` spelled with that many more digits
#: (the encoding's widest honest form is an escaped astral character, 12 characters for 1); in the
#: ``microcoder`` mode a list repeating the expected elements that many times over would have matched as
#: a set (the paper's set leniency), in the ``lcb`` mode an over-long ``Decimal`` as well.
VALUE_RATIO = 16
VALUE_SLACK = 1 << 16


def explain_call_modes(
    actual: str | bytes, expected: str, modes: tuple[str, ...], abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> dict[str, str | None]:
    """:func:`explain_call` in several modes at once: ``{mode: None or reason}`` (both values are decoded
    once)."""
    ms = _modes(modes)
    _check_tols(abs_tol, rel_tol)
    exp = _expected_value(expected)
    if isinstance(actual, (str, bytes, bytearray)) and len(actual) > VALUE_RATIO * len(expected) + VALUE_SLACK:
        why = (f"the return value's encoding has {len(actual)} characters, over {VALUE_RATIO} x the expected "
               f"value's {len(expected)} + {VALUE_SLACK}: too long to match it (not decoded)")
        return {m.name: why for m in ms}
    try:
        act = decode_value(actual)
    except (ValueError, TypeError) as e:
        return {m.name: f"could not decode the program's return value: {e}" for m in ms}
    whys: dict[str, str | None] = {}
    for m in ms:
        try:
            whys[m.name] = m.explain_value(act, exp, abs_tol, rel_tol)
        except RecursionError:  # the decoded value is bounded in depth; this guards the stack that is left
            whys[m.name] = "the return value is nested too deeply to compare"
    return whys


def explain_call(
    actual: str | bytes, expected: str, mode: str = "default", abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> str | None:
    """``None`` if the encoded return value ``actual`` matches the JSON ``expected`` under ``mode``, else a
    reason naming the first mismatching element.

    Raises ``ValueError`` if ``expected`` is not JSON (a problem-data error, not a wrong answer).  An
    ``actual`` that is not a valid encoding (bytes that are not UTF-8 included) is reported as a mismatch.
    """
    return explain_call_modes(actual, expected, (mode,), abs_tol, rel_tol)[mode]


def compare_call(
    actual: str, expected: str, mode: str = "default", abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> bool:
    """True if the encoded return value ``actual`` (from :func:`encode_value`) matches the test's JSON
    ``expected`` text under ``mode``.  Raises ``ValueError`` if ``expected`` is not JSON."""
    return explain_call(actual, expected, mode, abs_tol, rel_tol) is None
