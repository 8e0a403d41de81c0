"""Helpers every compare mode shares: argument checks, text decoding, number closeness, short reprs.

Standard library only; imports no compare mode and nothing outside the stdlib.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from itertools import chain


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
    except RecursionError:
        raise ValueError(
            f"expected output is JSON nested too deeply for Python's parser ({len(expected)} characters): "
            f"{short(expected)}; flatten the expected value"
        ) from None
    except ValueError as e:
        raise ValueError(
            f"expected output is not valid JSON ({e}): {short(expected)}; call-mode outputs must be one "
            "JSON value, LiveCodeBench style (e.g. '[0, 1]', '\"abc\"', 'true')"
        ) from e


# --------------------------------------------------------------------------------------------------
# streaming over a long text: every mode walks the program's output through these, so comparing costs
# memory in proportion to one line (or one chunk of tokens), never to the number of lines or tokens

_CHUNK = 1 << 16  # characters per chunk of tokens
_STRIP_CHUNK = 4096


def line_spans(text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of every line of ``text[start:end]`` split on ``"\\n"`` (as ``str.split("\\n")``
    would give them, without copying them)."""
    end = len(text) if end is None else end
    pos = start
    while True:
        j = text.find("\n", pos, end)
        if j < 0:
            yield pos, end
            return
        yield pos, j
        pos = j + 1


def rstrip_end(text: str, start: int, end: int, chars: str | None = None) -> int:
    """The end of ``text[start:end].rstrip(chars)``, found chunk by chunk (no copy of the span)."""
    while end > start:
        lo = max(start, end - _STRIP_CHUNK)
        kept = text[lo:end].rstrip(chars)
        if kept:
            return lo + len(kept)
        end = lo
    return start


def lstrip_start(text: str, start: int, end: int, chars: str | None = None) -> int:
    """The start of ``text[start:end].lstrip(chars)``, found chunk by chunk (no copy of the span)."""
    while start < end:
        hi = min(end, start + _STRIP_CHUNK)
        chunk = text[start:hi]
        kept = chunk.lstrip(chars)
        if kept:
            return start + len(chunk) - len(kept)
        start = hi
    return end


def token_chunks(text: str, start: int, end: int, token_re: re.Pattern, space_re: re.Pattern) -> Iterator[list[str]]:
    """The tokens (``token_re`` matches, separated by ``space_re`` characters) of ``text[start:end]``, a
    list per chunk of about ``_CHUNK`` characters, so memory holds one chunk's tokens whatever the span's
    length, and callers can work on each list at C speed."""
    pos = start
    while pos < end:
        stop = min(pos + _CHUNK, end)
        if stop < end:  # move the cut to a separator so that no token is split
            m = space_re.search(text, stop, end)
            stop = m.start() if m else end
        yield token_re.findall(text, pos, stop)
        pos = stop


def tokens(text: str, start: int, end: int, token_re: re.Pattern, space_re: re.Pattern) -> Iterator[str]:
    """The tokens of ``text[start:end]`` one by one (see :func:`token_chunks`)."""
    return chain.from_iterable(token_chunks(text, start, end, token_re, space_re))


class TokenStream:
    """The tokens of a span one by one (see :func:`token_chunks`), and how many are left, counted a chunk
    at a time without holding them (:meth:`count_rest`)."""

    def __init__(self, chunks: Iterator[list[str]]) -> None:
        self._chunks = chunks
        self._cur: list[str] = []
        self._i = 0

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> str:
        while self._i >= len(self._cur):
            self._cur = next(self._chunks)  # StopIteration ends the stream
            self._i = 0
        self._i += 1
        return self._cur[self._i - 1]

    def count_rest(self) -> int:
        return len(self._cur) - self._i + sum(map(len, self._chunks))


def short_span(text: str, start: int, end: int, n: int = 60) -> str:
    """``short(text[start:end])`` without copying the span."""
    if end - start > n:
        return repr(text[start:start + n // 2] + "..." + text[end - n // 2:end])
    return repr(text[start:end])
