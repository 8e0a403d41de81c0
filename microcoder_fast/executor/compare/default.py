"""Compare mode ``"default"``: sound; what a careful real judge does.

Stdin mode: ``\\r\\n`` becomes ``\\n``; trailing whitespace (space, tab, ``\\r``, ``\\f``, ``\\v``) of
every line and trailing empty lines are ignored; the line counts must be equal.  A line passes if it is
identical, else token by token (tokens split on that ASCII whitespace, so the spacing inside a line does
not matter once the tokens are compared; a no-break space is part of a token):

* expected token an integer (``[+-]?[0-9]+``): the output token must be an integer of the same value,
  compared exactly as a big integer, never through floats (``1e+18`` is not ``1000000000000000000``,
  ``true`` is not ``1``, ``7.0`` is not ``7``; ``007`` and ``+7`` are ``7``);
* expected token a real number (a decimal literal with ``.``, ``e`` or ``E``): the output token must be
  a decimal literal (``nan``/``inf`` words and ``1_000`` are not) with ``|a-b| <= abs_tol`` or
  ``|a-b| <= rel_tol*|b|`` (``b`` expected);
* anything else: exact and case-sensitive.

Output that is not UTF-8 is decoded with ``surrogateescape``: the invalid bytes never equal any
expected character, and nothing raises.

Call mode: tuples count as lists at every depth, ``bool`` never equals ``int`` (in either direction),
an expected integer needs an ``int`` of the same value (``3.0`` is not ``3``), an expected real accepts
an ``int``/``float``/``Decimal``/``Fraction`` within the tolerance (``nan`` matches ``nan``), strings
exact, ``None`` only for ``null``, containers element by element, dicts by keys (an ``int`` key matches
the expected string key it serialises to, as JSON would write it).  A NumPy array counts as the list of
its elements.  Sets, deques, bytes and other objects never match JSON data.

Imports the standard library and this package's codec and helpers only.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from itertools import zip_longest

from microcoder_fast.executor.compare._common import (
    TokenStream,
    line_spans,
    rstrip_end,
    short_span,
    token_chunks,
)
from microcoder_fast.executor.compare._common import close as _close
from microcoder_fast.executor.compare._common import short as _short
from microcoder_fast.executor.compare.codec import NDArray

# element types whose Python == agrees with default-mode equality when every element has one of them
# and the type sets match (float only alone: 1.0 == 1 must not pass; bool never: True == 1)
_FAST_EQ_TYPES = frozenset({int, str, float, type(None)})

_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_REAL_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_TRAIL_WS = " \t\r\f\v"
_TOKEN_RE = re.compile(r"[^ \t\r\f\v]+")  # tokens split on ASCII whitespace only, as real judges do
_SPACE_RE = re.compile(r"[ \t\r\f\v]")


def _int_canon(tok: str) -> str:
    neg = tok[0] == "-"
    digits = tok.lstrip("+-").lstrip("0") or "0"
    return "-" + digits if neg and digits != "0" else digits


def _default_token(a: str, e: str, abs_tol: float, rel_tol: float) -> bool:
    if a == e:
        return True
    if _INT_RE.match(e):
        return bool(_INT_RE.match(a)) and _int_canon(a) == _int_canon(e)
    if ("." in e or "e" in e or "E" in e) and _REAL_RE.match(e) and _REAL_RE.match(a):
        try:
            return _close(float(a), float(e), abs_tol, rel_tol)
        except (ValueError, OverflowError):
            return False
    return False


def _line_count(text: str, content_end: int) -> int:
    return 0 if content_end == 0 else text.count("\n", 0, content_end) + 1


def _explain_line(no: int, out: str, a0: int, a1: int, exp: str, e0: int, e1: int, abs_tol: float,
                  rel_tol: float) -> str | None:
    a_toks = TokenStream(token_chunks(out, a0, a1, _TOKEN_RE, _SPACE_RE))
    e_toks = TokenStream(token_chunks(exp, e0, e1, _TOKEN_RE, _SPACE_RE))
    ti = 0
    for at, et in zip_longest(a_toks, e_toks):
        if at is not None and et is not None:
            ti += 1
            if _default_token(at, et, abs_tol, rel_tol):
                continue
        # a mismatch: the token counts decide the message (counted on, never held)
        na = ti - (at is not None and et is not None) + (at is not None) + a_toks.count_rest()
        ne = ti - (at is not None and et is not None) + (et is not None) + e_toks.count_rest()
        if na != ne:
            return (f"line {no}: expected {ne} token(s), got {na}: {short_span(exp, e0, e1)} vs "
                    f"{short_span(out, a0, a1)}")
        return f"line {no}, token {ti}: expected {_short(et)}, got {_short(at)}"
    return None


def _explain_default_stdout(out: str, exp: str, abs_tol: float, rel_tol: float) -> str | None:
    """Streams over the output line by line and token by token (memory: one line at most)."""
    if out == exp:
        return None
    a_end = rstrip_end(out, 0, len(out), _TRAIL_WS + "\n")  # trailing empty lines do not count
    e_end = rstrip_end(exp, 0, len(exp), _TRAIL_WS + "\n")
    na, ne = _line_count(out, a_end), _line_count(exp, e_end)
    if na != ne:
        return f"expected {ne} line(s), got {na}"
    for no, ((a0, a1), (e0, e1)) in enumerate(zip(line_spans(out, 0, a_end), line_spans(exp, 0, e_end)), 1):
        a1 = rstrip_end(out, a0, a1, _TRAIL_WS)
        e1 = rstrip_end(exp, e0, e1, _TRAIL_WS)
        if a1 - a0 == e1 - e0 and out.startswith(exp[e0:e1], a0):
            continue
        why = _explain_line(no, out, a0, a1, exp, e0, e1, abs_tol, rel_tol)
        if why is not None:
            return why
    return None


def _explain_default_value(a: object, e: object, where: str, abs_tol: float, rel_tol: float) -> str | None:
    te = type(e)
    ta = type(a)
    if e is None:
        return None if a is None else f"{where}: expected None, got {_short(a)}"
    if te is bool:
        return None if ta is bool and a == e else f"{where}: expected {e!r}, got {_short(a)}"
    if te is int:
        return None if ta is int and a == e else f"{where}: expected int {_short(e)}, got {_short(a)}"
    if te is float:
        if ta in (int, float, Decimal, Fraction):
            try:
                if _close(float(a), e, abs_tol, rel_tol):  # type: ignore[arg-type]
                    return None
            except OverflowError:
                pass
        return f"{where}: expected {e!r}, got {_short(a)}"
    if te is str:
        return None if ta is str and a == e else f"{where}: expected {_short(e)}, got {_short(a)}"
    if te is list:
        if isinstance(a, NDArray):
            a = a.value
        if type(a) not in (list, tuple):
            return f"{where}: expected a list, got {_short(a)}"
        if len(a) != len(e):  # type: ignore[arg-type]
            return f"{where}: expected {len(e)} element(s), got {len(a)}"  # type: ignore[arg-type]
        # fast path: element types that == cannot confuse (no bool/int/float mixing) and equal lists
        types = set(map(type, a))  # type: ignore[arg-type]
        if types <= _FAST_EQ_TYPES and (len(types) <= 1 or float not in types) and types == set(map(type, e)):
            if list(a) == e:  # type: ignore[arg-type]
                return None
        for i, (x, y) in enumerate(zip(a, e)):  # type: ignore[call-overload]
            r = _explain_default_value(x, y, f"{where}[{i}]", abs_tol, rel_tol)
            if r is not None:
                return r
        return None
    if te is dict:
        if type(a) is not dict:
            return f"{where}: expected a dict, got {_short(a)}"
        keyed: dict[str, object] = {}
        for k, v in a.items():  # type: ignore[union-attr]
            if type(k) is int:
                k = str(k)
            elif type(k) is not str:
                return f"{where}: key {_short(k)} cannot be a JSON key"
            if k in keyed:
                return f"{where}: keys collide as JSON strings: {_short(k)}"
            keyed[k] = v
        if keyed.keys() != e.keys():  # type: ignore[attr-defined]
            return f"{where}: expected keys {_short(sorted(e))}, got {_short(sorted(keyed))}"  # type: ignore[call-overload]
        for k in e:  # type: ignore[attr-defined]
            r = _explain_default_value(keyed[k], e[k], f"{where}[{k!r}]", abs_tol, rel_tol)  # type: ignore[index]
            if r is not None:
                return r
        return None
    return f"{where}: unsupported expected value {_short(e)}"


explain_stdout = _explain_default_stdout


def explain_value(a: object, e: object, abs_tol: float, rel_tol: float) -> str | None:
    return _explain_default_value(a, e, "value", abs_tol, rel_tol)
