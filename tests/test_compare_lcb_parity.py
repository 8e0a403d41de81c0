"""Parity of compare mode "lcb" with the real LiveCodeBench grader (nvidia-livecodebench 26.3).

For each (output, expected) pair the real grader runs a tiny trusted program that produces exactly that
output (stdin mode: prints the text; call mode: returns the unpickled value) through its own
``grade_stdio`` / ``grade_call_based``, and its verdict must equal ours.  The grader's helpers are called
directly (not ``run_test``, whose ``reliability_guard`` would disable ``os`` functions in the test process);
the SIGALRM handler, faulthandler state and recursion limit they touch are restored afterwards.
"""

from __future__ import annotations

import faulthandler
import json
import math
import pickle
import signal
import sys
from collections import Counter, OrderedDict, deque, namedtuple
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microcoder_fast.executor.compare import compare_call, compare_stdout, encode_value

tu = pytest.importorskip(
    "livecodebench.evaluation.testing_util",
    reason="nvidia-livecodebench is not installed: pip install --no-deps nvidia-livecodebench==26.3",
)


@pytest.fixture(autouse=True, scope="module")
def _restore_process_state():
    handler = signal.getsignal(signal.SIGALRM)
    fh = faulthandler.is_enabled()
    limit = sys.getrecursionlimit()  # the grader's prelude raises it to 50000
    signal.signal(signal.SIGALRM, tu.timeout_handler)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, handler)
    sys.setrecursionlimit(limit)
    if fh:
        faulthandler.enable()


def _passed(res: object) -> bool:
    if not isinstance(res, tuple) or not res:
        return False
    results = res[0]
    return bool(results) and all(r is True or (not isinstance(r, int) and bool(r)) for r in results)


def lcb_stdout(output: str, expected: str) -> bool:
    code = f"print({output!r}, end='')\n"
    try:
        return _passed(tu.grade_stdio(code, [""], [expected], timeout=6))
    except Exception:  # the grader raises on some comparisons (e.g. Decimal('sNaN')): run_test calls that -4
        return False


def lcb_call(value: object, expected: str) -> bool:
    code = f"import pickle\ndef judged(x):\n    return pickle.loads({pickle.dumps(value)!r})\n"
    try:
        return _passed(tu.grade_call_based(code, ["0"], [expected], "judged", 6))
    except Exception:
        return False


def ours_stdout(output: str, expected: str) -> bool:
    return compare_stdout(output.encode("utf-8", errors="surrogatepass"), expected, "lcb")


def ours_call(value: object, expected: str) -> bool:
    return compare_call(encode_value(value), expected, "lcb")


# ----------------------------------------------------------------------------------------- stdin


STDIN_CASES = [
    ("3\n", "3\n"),
    ("3", "3\n"),
    ("1e+18\n", "1000000000000000000\n"),
    ("1.0\n", "1\n"),
    ("0.30000000000000004\n", "0.3\n"),
    ("a  b\n", "a b\n"),
    ("1  2\n", "1 2\n"),
    ("\n\n 3 \n\n", "3"),
    ("3\n\n4\n", "3\n4\n"),
    ("3\r\n4\r\n", "3\n4"),
    ("nan\n", "nan\n"),
    ("nan\n", "NaN\n"),
    ("sNaN 1\n", "sNaN  1\n"),
    ("inf\n", "Infinity\n"),
    ("1_000\n", "1000\n"),
    ("\u0661\n", "1\n"),  # Arabic-Indic digit: a Decimal digit
    ("1\u00a02\n", "1 2\n"),  # no-break space splits tokens
    ("Yes\n", "YES\n"),
    ("", ""),
    ("\n", ""),
    ("0\n", ""),
    ("1 2 3\n", "1 2\n"),
    ("-0\n", "0\n"),
    ("1.\n", "1\n"),
    (".5\n", "0.5\n"),
    ("1E2\n", "100\n"),
    ("x\r\ny\n", "x\ny\n"),
    ("x\ry\n", "x y\n"),
]


@pytest.mark.parametrize("output, expected", STDIN_CASES)
def test_stdin_hand_cases_agree(output, expected):
    assert ours_stdout(output, expected) is lcb_stdout(output, expected)


TOKENS = ["0", "1", "-0", "+1", "01", "1.0", "1.", ".1", "0.1", "0.10", "1e0", "1E+0", "1e18", "1e+18",
          "1000000000000000000", "nan", "NaN", "inf", "-Infinity", "sNaN", "1_0", "10", "abc", "ABC", "Yes",
          "yes", "true", "True", "0.3", "0.30000000000000004", "\u0661", "2", "3.5", "-3.50"]
SEPS = [" ", "  ", "\t", "\u00a0", "\x0b", "\u3000", "\r"]
ENDS = ["\n", "\r\n", " \n", "\n\n", "\t\n"]

line_st = st.lists(st.sampled_from(TOKENS), min_size=0, max_size=4)


@st.composite
def text_from_lines(draw, lines):
    parts = []
    for toks in lines:
        seps = [draw(st.sampled_from(SEPS)) for _ in range(max(len(toks) - 1, 0))]
        lead = draw(st.sampled_from(["", "", " ", "\n"]))
        body = toks[0] if toks else ""
        for sep, tok in zip(seps, toks[1:]):
            body += sep + tok
        parts.append(lead + body + draw(st.sampled_from(ENDS)))
    return "".join(parts)


EQUIV = {"1": ["1.0", "01", "+1", "1e0", "\u0661", "1."], "0": ["-0", "0.0", "0e5"], "0.1": [".1", "0.10", "1e-1"],
         "1e18": ["1000000000000000000", "1e+18", "1E18"], "10": ["1_0", "1e1", "10.0"], "Yes": ["yes", "YES"]}


@st.composite
def stdin_pair(draw):
    lines = draw(st.lists(line_st, min_size=0, max_size=4))
    expected = draw(text_from_lines(lines))
    how = draw(st.sampled_from(["same-tokens", "equivalent-tokens", "independent", "drop-line"]))
    if how == "independent":
        other = draw(st.lists(line_st, min_size=0, max_size=4))
    elif how == "drop-line" and lines:
        other = lines[:-1]
    else:
        other = [list(t) for t in lines]
        if how == "equivalent-tokens":
            for toks in other:
                for i, tok in enumerate(toks):
                    if tok in EQUIV and draw(st.booleans()):
                        toks[i] = draw(st.sampled_from(EQUIV[tok]))
    output = draw(text_from_lines(other))
    return output, expected


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stdin_pair())
def test_stdin_generated_pairs_agree(pair):
    output, expected = pair
    assert ours_stdout(output, expected) is lcb_stdout(output, expected), pair


# ------------------------------------------------------------------------------------------ call

P = namedtuple("P", "x y")

CALL_CASES = [
    (True, "1"), (1, "true"), (False, "0"), (1.0, "1"), (1, "1.0"), ((1, 2), "[1, 2]"), ([(1, 2)], "[[1, 2]]"),
    (P(1, 2), "[1, 2]"), ({1: 2}, '{"1": 2}'), ({"1": 2}, '{"1": 2}'), ({1, 2}, "[1, 2]"), (frozenset(), "[]"),
    (float("nan"), "NaN"), (float("inf"), "Infinity"), (0.1 + 0.2, "0.3"), (Fraction(1, 2), "0.5"),
    (Decimal("0.5"), "0.5"), (Counter("ab"), '{"a": 1, "b": 1}'), (OrderedDict(a=1), '{"a": 1}'),
    (deque([1]), "[1]"), (None, "null"), (None, "[]"), ("a", '"a"'), (b"a", '"a"'), (10**30, "1e30"),
    (10**30, str(10**30)), ([], "[]"), ((), "[]"), (((),), "[[]]"), ([[1, 2], [3]], "[[1, 2], [3]]"),
    ({"a": (1,)}, '{"a": [1]}'), ({"a": [1]}, '{"a": [1]}'), (-0.0, "0"), ([True, 2], "[1, 2]"),
]


@pytest.mark.parametrize("value, expected", CALL_CASES)
def test_call_hand_cases_agree(value, expected):
    assert ours_call(value, expected) is lcb_call(value, expected)


json_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.integers() | st.sampled_from(
    [0.5, 1.0, 0.1, 0.30000000000000004, -0.0, 1e18, math.inf]) | st.sampled_from(["", "a", "1", "true"])
py_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=3) | st.lists(c, max_size=3).map(tuple)
    | st.dictionaries(st.sampled_from(["a", "1", "b"]) | st.integers(0, 2), c, max_size=2)
    | st.frozensets(st.integers(0, 3), max_size=2),
    max_leaves=8,
)


def _jsonish(v: object, draw) -> object:
    """A JSON-able twin of ``v``, sometimes perturbed the way programs differ from the answer."""
    if isinstance(v, (list, tuple, frozenset)):
        return [_jsonish(x, draw) for x in (sorted(v) if isinstance(v, frozenset) else v)]
    if isinstance(v, dict):
        return {str(k): _jsonish(x, draw) for k, x in v.items()}
    if isinstance(v, bool) and draw(st.integers(0, 4)) == 0:
        return int(v)
    if type(v) is int and draw(st.integers(0, 4)) == 0:
        return float(v) if abs(v) < 2**53 else v + 1
    if isinstance(v, float) and v == v and draw(st.integers(0, 4)) == 0:
        return v + 1e-9
    return v


@st.composite
def call_pair(draw):
    value = draw(py_values)
    if draw(st.integers(0, 3)) == 0:
        expected = json.dumps(_jsonish(draw(py_values), draw))
    else:
        expected = json.dumps(_jsonish(value, draw))
    return value, expected


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call_pair())
def test_call_generated_pairs_agree(pair):
    value, expected = pair
    assert ours_call(value, expected) is lcb_call(value, expected), pair
