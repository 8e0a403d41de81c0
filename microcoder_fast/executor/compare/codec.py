"""The call-mode value codec: :func:`encode_value` (runs inside the sandboxed child) and :func:`decode_value`
(runs in the caller), plus the decoded types JSON cannot express (:class:`Opaque`, :class:`NDArray`).

:func:`encode_value` writes JSON in which every JSON object is a one-key tag, so plain lists, strings,
numbers, booleans and ``null`` stay themselves and everything JSON would blur is kept apart:
``{"t": [...]}`` tuple, ``{"s": [...]}`` set, ``{"fs": [...]}`` frozenset, ``{"d": [[k, v], ...]}`` dict
(keys of any hashable type), ``{"f": "nan" | "inf" | "-inf"}`` float specials, ``{"i": "<hex>"}`` integers
too long for JSON digit limits, ``{"y": "<hex>"}`` bytes, ``{"n": ["Decimal" | "Fraction", text]}``,
``{"a": [...]}`` NumPy array, ``{"r": [type name, repr]}`` anything else (also cycles and values nested
deeper than :data:`MAX_DEPTH`).  :func:`decode_value` inverts it.

Imports only the standard library (it is loaded into the zygote, so every child has it); never imports the
compare modes, the executor or anything outside the stdlib.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

__all__ = ["MAX_DEPTH", "NDArray", "Opaque", "decode_value", "encode_value"]

#: Containers nested deeper than this are encoded as an opaque marker (keeps JSON recursion bounded).
MAX_DEPTH = 200

# Integers wider than this many bits go through the hex tag: their decimal form could exceed Python's
# int/str digit limit (4300 digits) on the decoding side.
_MAX_PLAIN_INT_BITS = 12_000

_SIMPLE_TYPES = frozenset({int, str, float, bool, type(None)})

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

