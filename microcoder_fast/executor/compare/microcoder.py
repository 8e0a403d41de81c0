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

from decimal import Decimal, InvalidOperation
from fractions import Fraction

from microcoder_fast.executor.compare._common import close as _close
from microcoder_fast.executor.compare._common import short as _short
from microcoder_fast.executor.compare.codec import NDArray
from microcoder_fast.executor.compare.default import explain_stdout as _explain_default_stdout


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
