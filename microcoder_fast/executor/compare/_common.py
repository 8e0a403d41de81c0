"""Helpers every compare mode shares: argument checks, text decoding, number closeness, short reprs.

Standard library only; imports no compare mode and nothing outside the stdlib.
"""

from __future__ import annotations

import json
import math


def check_tols(abs_tol: float, rel_tol: float) -> None:
    for name, tol in (("abs_tol", abs_tol), ("rel_tol", rel_tol)):
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (0.0 <= tol < math.inf):
            raise ValueError(f"{name} must be a finite number >= 0, got {tol!r}")




def short(s: object, n: int = 60) -> str:
    text = s if isinstance(s, str) else repr(s)
    if len(text) > n:
        text = text[: n // 2] + "..." + text[-n // 2:]
    return repr(text) if isinstance(s, str) else text


def close(a: float, b: float, abs_tol: float, rel_tol: float) -> bool:
    if a == b:
        return True
    if a != a or b != b:
        return a != a and b != b
    if a in (math.inf, -math.inf) or b in (math.inf, -math.inf):
        return False
    d = abs(a - b)
    return d <= abs_tol or d <= rel_tol * abs(b)


def to_text(actual: bytes | bytearray | str) -> str:
    if isinstance(actual, str):
        return actual
    if isinstance(actual, (bytes, bytearray, memoryview)):
        return bytes(actual).decode("utf-8", errors="surrogateescape")
    raise TypeError(f"actual output must be bytes (or str), got {type(actual).__name__}")


def expected_text(expected: str | bytes) -> str:
    if isinstance(expected, str):
        return expected
    if isinstance(expected, (bytes, bytearray)):
        return bytes(expected).decode("utf-8", errors="surrogateescape")
    raise TypeError(f"expected output must be str, got {type(expected).__name__}")




def expected_value(expected: str) -> object:
    if not isinstance(expected, str):
        raise TypeError(f"expected output must be JSON text (str), got {type(expected).__name__}")
    try:
        return json.loads(expected)
    except ValueError as e:
        raise ValueError(
            f"expected output is not valid JSON ({e}): {short(expected)}; call-mode outputs must be one "
            "JSON value, LiveCodeBench style (e.g. '[0, 1]', '\"abc\"', 'true')"
        ) from e


