"""Output comparison for the judge: three modes, a typed value encoding for call mode, explanations.

Everything here is pure Python (stdlib only) and runs in the supervisor, except :func:`encode_value`,
which runs inside the sandboxed child to turn a call-mode return value into text.

Modes
-----
``"default"`` (sound; what a careful real judge does)
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

``"lcb"`` (LiveCodeBench grader parity, ``nvidia-livecodebench`` 26.3, ``evaluation/testing_util.py``)
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

``"microcoder"`` (the MicroCoder paper's multi-strategy fallback; reproduces its reward, not sound)
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

Call-mode encoding
------------------
:func:`encode_value` writes JSON in which every JSON object is a one-key tag, so plain lists, strings,
numbers, booleans and ``null`` stay themselves and everything JSON would blur is kept apart:
``{"t": [...]}`` tuple, ``{"s": [...]}`` set, ``{"fs": [...]}`` frozenset, ``{"d": [[k, v], ...]}`` dict
(keys of any hashable type), ``{"f": "nan" | "inf" | "-inf"}`` float specials, ``{"i": "<hex>"}`` integers
too long for JSON digit limits, ``{"y": "<hex>"}`` bytes, ``{"n": ["Decimal" | "Fraction", text]}``,
``{"a": [...]}`` NumPy array, ``{"r": [type name, repr]}`` anything else (also cycles and values nested
deeper than :data:`MAX_DEPTH`).  :func:`decode_value` inverts it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

__all__ = [
    "MODES",
    "MAX_DEPTH",
    "NDArray",
    "Opaque",
    "check_mode",
    "compare_call",
    "compare_stdout",
    "decode_value",
    "encode_value",
    "explain_call",
    "explain_stdout",
]

MODES: tuple[str, ...] = ("default", "lcb", "microcoder")

#: Containers nested deeper than this are encoded as an opaque marker (keeps JSON recursion bounded).
MAX_DEPTH = 200

# Integers wider than this many bits go through the hex tag: their decimal form could exceed Python's
# int/str digit limit (4300 digits) on the decoding side.
_MAX_PLAIN_INT_BITS = 12_000

_SIMPLE_TYPES = frozenset({int, str, float, bool, type(None)})
# element types whose Python == agrees with default-mode equality when every element has one of them
# and the type sets match (float only alone: 1.0 == 1 must not pass; bool never: True == 1)
_FAST_EQ_TYPES = frozenset({int, str, float, type(None)})


# --------------------------------------------------------------------------------------------------
# decoded value types that JSON cannot express


@dataclass(frozen=True)
class Opaque:
    """A value the encoder could not represent as data: its type name and ``repr``.  Equals no JSON value."""

    type_name: str
    text: str

    def __repr__(self) -> str:
        return f"<{self.type_name}: {self.text}>"


class NDArray:
    """A NumPy array returned by a program, kept as nested Python lists in :attr:`value`."""

    __slots__ = ("value",)

    def __init__(self, value: list) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"array({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NDArray) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`MODES`, else raise ``ValueError`` naming the valid ones."""
    if mode not in MODES:
        raise ValueError(f"unknown compare mode {mode!r}: use one of {', '.join(repr(m) for m in MODES)}")
    return mode


def _check_tols(abs_tol: float, rel_tol: float) -> None:
    for name, tol in (("abs_tol", abs_tol), ("rel_tol", rel_tol)):
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (0.0 <= tol < math.inf):
            raise ValueError(f"{name} must be a finite number >= 0, got {tol!r}")


# --------------------------------------------------------------------------------------------------
# encoding (runs in the sandboxed child: must never raise)


def _type_name(v: object) -> str:
    t = type(v)
    mod = getattr(t, "__module__", "") or ""
    name = getattr(t, "__qualname__", None) or getattr(t, "__name__", "object")
    return name if mod in ("builtins", "") else f"{mod}.{name}"


def _opaque_tag(v: object) -> dict:
    try:
        text = repr(v)
        if not isinstance(text, str):
            text = "<repr returned a non-string>"
    except Exception:
        text = "<unrepresentable>"
    if len(text) > 4096:
        text = text[:2048] + "..." + text[-2048:]
    try:
        name = _type_name(v)
    except Exception:
        name = "object"
    return {"r": [name, text]}


def _enc_float(x: float) -> object:
    if x != x:
        return {"f": "nan"}
    if x == math.inf:
        return {"f": "inf"}
    if x == -math.inf:
        return {"f": "-inf"}
    return x


def _enc_int(x: int) -> object:
    if x.bit_length() > _MAX_PLAIN_INT_BITS:
        return {"i": hex(x)}
    return x


def _conv(v: object, depth: int, path: set[int], fast: bool) -> object:
    t = type(v)
    if t is str or v is None or t is bool:
        return v
    if t is int:
        return _enc_int(v)  # type: ignore[arg-type]
    if t is float:
        return _enc_float(v)  # type: ignore[arg-type]
    if depth >= MAX_DEPTH:
        return {"r": [_type_name(v), f"<nested deeper than {MAX_DEPTH}>"]}
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return _enc_int(int(v))
    if isinstance(v, float):
        return _enc_float(float(v))
    if isinstance(v, str):
        return str(v)
    if isinstance(v, (list, tuple, dict, set, frozenset)):
        key = id(v)
        if key in path:
            return {"r": [_type_name(v), "<cycle>"]}
        path.add(key)
        try:
            if isinstance(v, dict):
                return {"d": [[_conv(k, depth + 1, path, fast), _conv(x, depth + 1, path, fast)]
                              for k, x in v.items()]}
            if fast and type(v) is list and set(map(type, v)) <= _SIMPLE_TYPES:
                return v
            items = [_conv(x, depth + 1, path, fast) for x in v]
            if isinstance(v, list):
                return items
            if isinstance(v, tuple):
                return {"t": items}
            if isinstance(v, frozenset):
                return {"fs": items}
            return {"s": items}
        finally:
            path.discard(key)
    if isinstance(v, (bytes, bytearray)):
        return {"y": bytes(v).hex()}
    if isinstance(v, Decimal):
        return {"n": ["Decimal", str(v)]}
    if isinstance(v, Fraction):
        return {"n": ["Fraction", f"{v.numerator}/{v.denominator}"]}
    if getattr(t, "__module__", None) == "numpy" and hasattr(v, "tolist"):
        inner = v.tolist()  # type: ignore[attr-defined]
        if getattr(v, "ndim", 0):
            return {"a": _conv(inner, depth + 1, path, False)}
        if type(inner) in _SIMPLE_TYPES or isinstance(inner, (int, float, bool)):
            return _conv(inner, depth + 1, path, False)
    return _opaque_tag(v)


def encode_value(value: object) -> str:
    """Encode a call-mode return value as typed JSON text (see the module docstring).

    The text is pure ASCII (non-ASCII and lone surrogates are ``\\u`` escapes).  Never raises: whatever
    cannot be encoded becomes a ``{"r": [type, repr]}`` tag that matches nothing.
    """
    try:
        try:
            return json.dumps(_conv(value, 0, set(), True), allow_nan=False, separators=(",", ":"))
        except ValueError:
            # a NaN/inf or an over-long integer inside a plain list took the fast path: redo it strictly
            return json.dumps(_conv(value, 0, set(), False), allow_nan=False, separators=(",", ":"))
    except Exception:
        try:
            return json.dumps(_opaque_tag(value), separators=(",", ":"))
        except Exception:
            return '{"r":["object","<unrepresentable>"]}'


# --------------------------------------------------------------------------------------------------
# decoding (supervisor side; the text came out of an untrusted process, so malformed input -> ValueError)


def _int_without_digit_limit(s: str) -> int:
    if len(s) <= 4000:
        return int(s)
    neg = s[0] == "-"
    digits = s.lstrip("+-")
    result = 0
    for i in range(0, len(digits), 4000):
        chunk = digits[i:i + 4000]
        result = result * 10 ** len(chunk) + int(chunk)
    return -result if neg else result


def _dec(v: object, depth: int) -> object:
    if depth > 3 * MAX_DEPTH + 10:
        raise ValueError("encoded value nested too deeply")
    t = type(v)
    if t is list:
        if set(map(type, v)) <= _SIMPLE_TYPES:  # type: ignore[arg-type]
            return v
        return [_dec(x, depth + 1) for x in v]  # type: ignore[union-attr]
    if t is not dict:
        return v
    if len(v) != 1:  # type: ignore[arg-type]
        raise ValueError(f"malformed encoded value: object with keys {sorted(v)!r}")  # type: ignore[call-overload]
    ((tag, body),) = v.items()  # type: ignore[union-attr]
    if tag == "t":
        return tuple(_dec(x, depth + 1) for x in _as_list(body, tag))
    if tag == "s":
        return {_dec(x, depth + 1) for x in _as_list(body, tag)}
    if tag == "fs":
        return frozenset(_dec(x, depth + 1) for x in _as_list(body, tag))
    if tag == "d":
        out = {}
        for pair in _as_list(body, tag):
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("malformed encoded dict item")
            out[_dec(pair[0], depth + 1)] = _dec(pair[1], depth + 1)
        return out
    if tag == "f":
        if body not in ("nan", "inf", "-inf"):
            raise ValueError(f"malformed float special {body!r}")
        return float(body)
    if tag == "i":
        return int(_as_str(body, tag), 16)
    if tag == "y":
        return bytes.fromhex(_as_str(body, tag))
    if tag == "n":
        kind, text = _pair_of_str(body, tag)
        if kind == "Decimal":
            return Decimal(text)
        if kind == "Fraction":
            return Fraction(text)
        raise ValueError(f"malformed number tag {kind!r}")
    if tag == "a":
        inner = _dec(body, depth + 1)
        return NDArray(inner if isinstance(inner, list) else [inner])
    if tag == "r":
        name, text = _pair_of_str(body, tag)
        return Opaque(name, text)
    raise ValueError(f"malformed encoded value: unknown tag {tag!r}")


def _as_list(body: object, tag: str) -> list:
    if type(body) is not list:
        raise ValueError(f"malformed encoded value: tag {tag!r} needs a list")
    return body


def _as_str(body: object, tag: str) -> str:
    if type(body) is not str:
        raise ValueError(f"malformed encoded value: tag {tag!r} needs a string")
    return body


def _pair_of_str(body: object, tag: str) -> tuple[str, str]:
    if type(body) is not list or len(body) != 2 or not all(type(x) is str for x in body):
        raise ValueError(f"malformed encoded value: tag {tag!r} needs two strings")
    return body[0], body[1]


def decode_value(text: str) -> object:
    """Invert :func:`encode_value`: tuples come back as tuples, sets as sets, other objects as :class:`Opaque`.

    Raises ``ValueError`` on text that is not a valid encoding.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise TypeError(f"decode_value expects the str produced by encode_value, got {type(text).__name__}")
    try:
        try:
            tree = json.loads(text)
        except ValueError as e:
            if "digit" not in str(e) and "limit" not in str(e):
                raise
            tree = json.loads(text, parse_int=_int_without_digit_limit)
        return _dec(tree, 0)
    except (ValueError, TypeError, RecursionError, InvalidOperation, ZeroDivisionError, OverflowError) as e:
        raise ValueError(f"not a valid encoded value ({type(e).__name__}: {e})") from e


# --------------------------------------------------------------------------------------------------
# small helpers


def _short(s: object, n: int = 60) -> str:
    text = s if isinstance(s, str) else repr(s)
    if len(text) > n:
        text = text[: n // 2] + "..." + text[-n // 2:]
    return repr(text) if isinstance(s, str) else text


def _close(a: float, b: float, abs_tol: float, rel_tol: float) -> bool:
    if a == b:
        return True
    if a != a or b != b:
        return a != a and b != b
    if a in (math.inf, -math.inf) or b in (math.inf, -math.inf):
        return False
    d = abs(a - b)
    return d <= abs_tol or d <= rel_tol * abs(b)


def _to_text(actual: bytes | bytearray | str) -> str:
    if isinstance(actual, str):
        return actual
    if isinstance(actual, (bytes, bytearray, memoryview)):
        return bytes(actual).decode("utf-8", errors="surrogateescape")
    raise TypeError(f"actual output must be bytes (or str), got {type(actual).__name__}")


def _expected_text(expected: str | bytes) -> str:
    if isinstance(expected, str):
        return expected
    if isinstance(expected, (bytes, bytearray)):
        return bytes(expected).decode("utf-8", errors="surrogateescape")
    raise TypeError(f"expected output must be str, got {type(expected).__name__}")


# --------------------------------------------------------------------------------------------------
# stdin mode: default

_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_REAL_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_TRAIL_WS = " \t\r\f\v"
_TOKEN_RE = re.compile(r"[^ \t\r\f\v]+")  # tokens split on ASCII whitespace only, as real judges do


def _int_canon(tok: str) -> str:
    neg = tok[0] == "-"
    digits = tok.lstrip("+-").lstrip("0") or "0"
    return "-" + digits if neg and digits != "0" else digits


def _default_lines(text: str) -> list[str]:
    lines = [ln.rstrip(_TRAIL_WS) for ln in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


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


def _explain_default_stdout(out: str, exp: str, abs_tol: float, rel_tol: float) -> str | None:
    if out == exp:
        return None
    a_lines = _default_lines(out)
    e_lines = _default_lines(exp)
    if a_lines == e_lines:
        return None
    if len(a_lines) != len(e_lines):
        return f"expected {len(e_lines)} line(s), got {len(a_lines)}"
    for no, (al, el) in enumerate(zip(a_lines, e_lines), 1):
        if al == el:
            continue
        a_toks, e_toks = _TOKEN_RE.findall(al), _TOKEN_RE.findall(el)
        if len(a_toks) != len(e_toks):
            return f"line {no}: expected {len(e_toks)} token(s), got {len(a_toks)}: {_short(el)} vs {_short(al)}"
        for ti, (at, et) in enumerate(zip(a_toks, e_toks), 1):
            if not _default_token(at, et, abs_tol, rel_tol):
                return f"line {no}, token {ti}: expected {_short(et)}, got {_short(at)}"
    return None


# --------------------------------------------------------------------------------------------------
# stdin mode: lcb


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


# --------------------------------------------------------------------------------------------------
# stdin mode: microcoder

def _mc_lines(text: str) -> list[str]:
    out = []
    for ln in text.strip().replace("\r\n", "\n").split("\n"):
        ln = " ".join(ln.split())
        if ln:
            out.append(ln)
    return out


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


def _mc_token_pairs(a_lines: list[str], e_lines: list[str]) -> list[tuple[str, str]] | None:
    if len(a_lines) != len(e_lines):
        return None
    pairs: list[tuple[str, str]] = []
    for al, el in zip(a_lines, e_lines):
        at, et = al.split(" "), el.split(" ")
        if len(at) != len(et):
            return None
        pairs.extend(zip(at, et))
    return pairs


def _explain_microcoder_stdout(out: str, exp: str, abs_tol: float, rel_tol: float) -> str | None:
    a_lines, e_lines = _mc_lines(out), _mc_lines(exp)
    if a_lines == e_lines:  # 1. whitespace / line normalisation
        return None
    pairs = _mc_token_pairs(a_lines, e_lines)
    if pairs is not None:
        # 2. float closeness
        ok = True
        for at, et in pairs:
            if at == et:
                continue
            af, ef = _mc_float(at), _mc_float(et)
            if af is None or ef is None or not _close(af, ef, abs_tol, rel_tol) or af != af:
                ok = False
                break
        if ok:
            return None
        # 3. rounding to the decimals the expected token shows
        ok = True
        for at, et in pairs:
            if at == et:
                continue
            af, ef = _mc_float(at), _mc_float(et)
            if af is None or ef is None or not _mc_round_eq(af, ef, _decimals_shown(et)):
                ok = False
                break
        if ok:
            return None
    # 4. set comparison of lines, then of tokens
    if set(a_lines) == set(e_lines):
        return None
    if {t for ln in a_lines for t in ln.split(" ")} == {t for ln in e_lines for t in ln.split(" ")}:
        return None
    return "no strategy matched (normalised text, float closeness, rounding, sets)" + (
        f"; normalised: {_explain_default_stdout(out, exp, abs_tol, rel_tol) or 'tokens differ'}")


# --------------------------------------------------------------------------------------------------
# public stdin API


def explain_stdout(
    actual: bytes, expected: str, mode: str = "default", abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> str | None:
    """``None`` if ``actual`` (a program's stdout bytes) matches ``expected`` under ``mode``, else a short
    reason naming the first mismatch (line and token)."""
    check_mode(mode)
    _check_tols(abs_tol, rel_tol)
    out, exp = _to_text(actual), _expected_text(expected)
    if mode == "default":
        return _explain_default_stdout(out, exp, abs_tol, rel_tol)
    if mode == "lcb":
        return _explain_lcb_stdout(out, exp)
    return _explain_microcoder_stdout(out, exp, abs_tol, rel_tol)


def compare_stdout(
    actual: bytes, expected: str, mode: str = "default", abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> bool:
    """True if a stdin-mode program's stdout ``actual`` matches the test's ``expected`` text under ``mode``."""
    return explain_stdout(actual, expected, mode, abs_tol, rel_tol) is None


# --------------------------------------------------------------------------------------------------
# call mode


def _expected_value(expected: str) -> object:
    if not isinstance(expected, str):
        raise TypeError(f"expected output must be JSON text (str), got {type(expected).__name__}")
    try:
        return json.loads(expected)
    except ValueError as e:
        raise ValueError(
            f"expected output is not valid JSON ({e}): {_short(expected)}; call-mode outputs must be one "
            "JSON value, LiveCodeBench style (e.g. '[0, 1]', '\"abc\"', 'true')"
        ) from e


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


def _lcb_equal(a: object, e: object) -> bool:
    if isinstance(a, tuple):
        a = list(a)
    try:
        return bool(a == e)
    except Exception:
        return False


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


def explain_call(
    actual: str, expected: str, mode: str = "default", abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> str | None:
    """``None`` if the encoded return value ``actual`` matches the JSON ``expected`` under ``mode``, else a
    reason naming the first mismatching element.

    Raises ``ValueError`` if ``expected`` is not JSON (a problem-data error, not a wrong answer).  An
    ``actual`` that is not a valid encoding is reported as a mismatch.
    """
    check_mode(mode)
    _check_tols(abs_tol, rel_tol)
    exp = _expected_value(expected)
    try:
        act = decode_value(actual)
    except (ValueError, TypeError) as e:
        return f"could not decode the program's return value: {e}"
    if mode == "default":
        return _explain_default_value(act, exp, "value", abs_tol, rel_tol)
    if mode == "lcb":
        return None if _lcb_equal(act, exp) else f"expected {_short(exp)}, got {_short(act)}"
    return _explain_microcoder_value(act, exp, abs_tol, rel_tol)


def compare_call(
    actual: str, expected: str, mode: str = "default", abs_tol: float = 1e-6, rel_tol: float = 1e-6
) -> bool:
    """True if the encoded return value ``actual`` (from :func:`encode_value`) matches the test's JSON
    ``expected`` text under ``mode``.  Raises ``ValueError`` if ``expected`` is not JSON."""
    return explain_call(actual, expected, mode, abs_tol, rel_tol) is None

