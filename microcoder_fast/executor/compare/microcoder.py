"""Compare mode ``"microcoder"``: the MicroCoder paper's multi-strategy fallback; reproduces its reward, not sound.

The paper describes its evaluator in words only (no code is published); this is our reading of it.
Several comparisons are tried in turn and the output passes if any matches:

1. whitespace/line normalisation: whole text stripped, every line stripped and its inner whitespace
   collapsed to one space, empty lines dropped, then equal;
2. float closeness: same lines and tokens, every token pair identical or both parsed by ``float()``
   and within the tolerance;
3. rounding: same lines and tokens, every token pair identical or both numbers with the output token
   rounded to as many decimals as the expected token shows equal to the expected value;
4. set comparison: the sets of normalised lines are equal, or the sets of all tokens are equal.

Call mode uses the same four ideas on values: Python ``==`` after deep tuple-to-list; numbers within
the tolerance; numbers rounded to the decimals the expected value shows; sequences compared as sets.

Wrong programs it accepts (each pinned by a test in ``tests/test_compare.py``):

* ``1e+18`` for ``1000000000000000000`` and ``1.0`` for ``1`` (float closeness);
* ``2.4`` or ``2.5`` for ``2`` and ``3.14`` for ``3.1`` (rounding to the expected decimals);
* ``2 1`` for ``1 2``, lines in any order, and ``1 1 2`` for ``1 2 2`` or ``1 2`` (sets drop order
  and multiplicity);
* ``True`` for ``1`` in call mode, and ``[2, 1]`` for ``[1, 2]``, ``[1, 1, 2]`` for ``[1, 2]``;
* harmless leniencies: different spacing inside lines, extra blank lines.

Imports the standard library and this package's codec, helpers and the default mode (for its messages) only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from itertools import chain, zip_longest

from microcoder_fast.executor.compare import _common
from microcoder_fast.executor.compare._common import close as _close
from microcoder_fast.executor.compare._common import line_spans, token_chunks, tokens
from microcoder_fast.executor.compare._common import short as _short
from microcoder_fast.executor.compare.codec import NDArray
from microcoder_fast.executor.compare.default import explain_stdout as _explain_default_stdout

_TOKEN_RE = re.compile(r"\S+")  # str.split()'s tokens: re's \s is str.isspace(), the set split() uses
_SPACE_RE = re.compile(r"\s")


_BULK = 1 << 18  # characters of short lines normalised at C speed at a time (strategy 4)


def _mc_lines(text: str) -> Iterator[Iterator[str] | list[str]]:
    """The tokens of every line that is not blank: the paper's normalised lines (whole text stripped,
    lines stripped, inner whitespace collapsed, empty lines dropped), streamed: a list for a short line,
    a stream for a long one."""
    for s, e in line_spans(text):
        if e - s <= _common._CHUNK:
            toks = text[s:e].split()
            if toks:
                yield toks
            continue
        it = tokens(text, s, e, _TOKEN_RE, _SPACE_RE)
        first = next(it, None)
        if first is not None:
            yield chain((first,), it)


def _mc_float(tok: str) -> float | None:
    try:
        return float(tok)
    except (ValueError, OverflowError):
        return None


def _decimals_shown(tok: str) -> int:
    mant = tok.split("e")[0].split("E")[0]
    return len(mant.split(".", 1)[1]) if "." in mant else 0


def _mc_round_eq(a: float, e: float, ndigits: int) -> bool:
    try:
        return round(a, ndigits) == round(e, ndigits)
    except (OverflowError, ValueError):
        return False


def _pairwise_ok(out: str, exp: str, abs_tol: float, rel_tol: float) -> bool:
    """Strategies 1-3 in one streamed pass: the same lines and tokens, every token pair identical, or
    every pair identical or close (2), or every pair identical or equal once rounded to the decimals
    the expected token shows (3)."""
    close_ok = round_ok = True
    for a_line, e_line in zip_longest(_mc_lines(out), _mc_lines(exp)):
        if a_line is None or e_line is None:
            return False
        if type(a_line) is list and a_line == e_line:
            continue
        for at, et in zip_longest(a_line, e_line):
            if at is None or et is None:
                return False
            if at == et:
                continue
            af, ef = _mc_float(at), _mc_float(et)
            if af is None or ef is None:
                return False
            if close_ok and (not _close(af, ef, abs_tol, rel_tol) or af != af):
                close_ok = False
            if round_ok and not _mc_round_eq(af, ef, _decimals_shown(et)):
                round_ok = False
            if not (close_ok or round_ok):
                return False
    return True


def _joined(toks: Iterator[str], limit: int) -> str | None:
    """``" ".join(toks)``, or None as soon as it would be longer than ``limit``."""
    parts: list[str] = []
    size = -1
    for t in toks:
        size += len(t) + 1
        if size > limit:
            return None
        parts.append(t)
    return " ".join(parts)


def _line_sets(text: str, longest: int) -> Iterator[set]:
    """The normalised non-blank lines of ``text`` as sets, a chunk of short lines at a time (normalised at
    C speed); a line longer than a chunk is joined token by token, and is None once longer than
    ``longest`` (no expected line can equal it)."""
    pos, n = 0, len(text)
    while pos < n:
        stop = min(pos + _BULK, n)
        cut = n if stop == n else text.rfind("\n", pos, stop)
        if cut < 0:  # a line longer than the chunk
            end = text.find("\n", pos)
            end = n if end < 0 else end
            yield {_joined(tokens(text, pos, end, _TOKEN_RE, _SPACE_RE), longest)} - {""}
            pos = end + 1
            continue
        # the distinct raw lines first (C speed), so a repetitive output is normalised once per line
        lines = set(map(" ".join, map(str.split, set(text[pos:cut].split("\n")))))
        lines.discard("")
        yield lines
        pos = cut + 1


def _same_set(parts: Iterator[set], target: set) -> bool:
    """``union(parts) == target``, stopping at the first part with an item outside ``target`` (memory: one
    part and ``target``)."""
    seen: set = set()
    for part in parts:
        if not part <= target:
            return False
        seen |= part
    return len(seen) == len(target)


def _sets_equal(out: str, exp: str) -> bool:
    """Strategy 4: the sets of normalised lines are equal, or the sets of all tokens are."""
    e_lines = set().union(*_line_sets(exp, len(exp)))
    if _same_set(_line_sets(out, max(map(len, e_lines), default=0)), e_lines):
        return True
    e_tokens = set().union(*map(set, token_chunks(exp, 0, len(exp), _TOKEN_RE, _SPACE_RE)))
    return _same_set(map(set, token_chunks(out, 0, len(out), _TOKEN_RE, _SPACE_RE)), e_tokens)


def _explain_microcoder_stdout(out: str, exp: str, abs_tol: float, rel_tol: float) -> str | None:
    """Streams over the output (memory: one chunk of tokens, plus the expected output's own sets)."""
    if out == exp or _pairwise_ok(out, exp, abs_tol, rel_tol) or _sets_equal(out, exp):
        return None
    return "no strategy matched (normalised text, float closeness, rounding, sets)" + (
        f"; normalised: {_explain_default_stdout(out, exp, abs_tol, rel_tol) or 'tokens differ'}")


def _deep_list(v: object) -> object:
    if isinstance(v, NDArray):
        v = v.value
    if isinstance(v, (list, tuple)):
        return [_deep_list(x) for x in v]
    if isinstance(v, dict):
        return {k: _deep_list(x) for k, x in v.items()}
    return v


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float, Decimal, Fraction))


def _mc_value_eq(a: object, e: object, num_eq) -> bool:  # noqa: ANN001
    if _is_num(a) and _is_num(e):
        try:
            return bool(num_eq(a, e))
        except (OverflowError, ValueError, TypeError, InvalidOperation):
            return False
    if isinstance(a, list) and isinstance(e, list):
        return len(a) == len(e) and all(_mc_value_eq(x, y, num_eq) for x, y in zip(a, e))
    if isinstance(a, dict) and isinstance(e, dict):
        return a.keys() == e.keys() and all(_mc_value_eq(a[k], e[k], num_eq) for k in e)
    try:
        return bool(a == e)
    except Exception:
        return False


def _freeze(v: object) -> object:
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted(((repr(k), _freeze(x)) for k, x in v.items()), key=repr))
    if isinstance(v, set):
        return frozenset(v)
    return v


def _explain_microcoder_value(a: object, e: object, abs_tol: float, rel_tol: float) -> str | None:
    a = _deep_list(a)
    try:
        if a == e:  # 1. plain equality after deep tuple -> list
            return None
    except Exception:
        pass
    # 2. closeness
    if _mc_value_eq(a, e, lambda x, y: _close(float(x), float(y), abs_tol, rel_tol)):
        return None
    # 3. rounding to the decimals the expected value shows
    def _round_eq(x: object, y: object) -> bool:
        nd = _decimals_shown(repr(y)) if isinstance(y, float) else 0
        return _mc_round_eq(float(x), float(y), nd)  # type: ignore[arg-type]

    if _mc_value_eq(a, e, _round_eq):
        return None
    # 4. set comparison of sequences
    if isinstance(a, (list, set, frozenset)) and isinstance(e, list):
        try:
            if {_freeze(x) for x in a} == {_freeze(x) for x in e}:
                return None
        except TypeError:
            pass
    return f"no strategy matched (equality, closeness, rounding, sets): expected {_short(e)}, got {_short(a)}"


explain_stdout = _explain_microcoder_stdout
explain_value = _explain_microcoder_value
