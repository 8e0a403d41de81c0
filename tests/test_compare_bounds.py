"""The caller's comparison is bounded in memory and time in every compare mode (issue 11, item 7), and
deeply nested JSON is a clear problem error or a program fault, never a RecursionError in the judge.

* The streamed comparisons agree with the whole-text reading of each mode's rules (the reference below is
  the list-of-lines code the modes used before they streamed), also when chunk boundaries fall anywhere.
* Call-mode values far longer than the expected value are a mismatch without being decoded.
* A 64 MB output (just under the output cap) in every mode, stdin and call mode, grows the caller's peak
  RSS by less than 300 MB (measured in a child process that does the judging).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal, InvalidOperation

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microcoder_fast.executor import Executor, Problem, TestCase, Verdict
from microcoder_fast.executor.compare import (
    MODES,
    VALUE_RATIO,
    VALUE_SLACK,
    _common,
    encode_value,
    explain_call,
    explain_stdout,
)
from microcoder_fast.executor.compare import default as default_mode
from microcoder_fast.executor.compare import microcoder as microcoder_mode

HERE = os.path.dirname(os.path.abspath(__file__))

# ------------------------------------------------------------------------ whole-text reference readings


def _ref_default(out: str, exp: str) -> bool:
    def lines(t: str) -> list[str]:
        ls = [ln.rstrip(" \t\r\f\v") for ln in t.replace("\r\n", "\n").split("\n")]
        while ls and not ls[-1]:
            ls.pop()
        return ls

    a, e = lines(out), lines(exp)
    if len(a) != len(e):
        return False
    for al, el in zip(a, e):
        at, et = default_mode._TOKEN_RE.findall(al), default_mode._TOKEN_RE.findall(el)
        if len(at) != len(et) or not all(default_mode._default_token(x, y, 1e-6, 1e-6) for x, y in zip(at, et)):
            return False
    return True


def _ref_lcb(out: str, exp: str) -> bool:
    a = [ln.strip() for ln in out.strip().split("\n")]
    e = [ln.strip() for ln in exp.strip().split("\n")]
    if len(a) != len(e):
        return False
    for al, el in zip(a, e):
        if al == el:
            continue
        try:
            if [Decimal(t) for t in al.split()] != [Decimal(t) for t in el.split()]:
                return False
        except (InvalidOperation, ValueError):
            return False
    return True


def _ref_microcoder(out: str, exp: str) -> bool:
    def lines(t: str) -> list[str]:
        return [n for n in (" ".join(ln.split()) for ln in t.strip().replace("\r\n", "\n").split("\n")) if n]

    a, e = lines(out), lines(exp)
    if a == e or set(a) == set(e):
        return True
    if {t for ln in a for t in ln.split(" ")} == {t for ln in e for t in ln.split(" ")}:
        return True
    if len(a) != len(e) or any(len(x.split(" ")) != len(y.split(" ")) for x, y in zip(a, e)):
        return False
    pairs = [(x, y) for al, el in zip(a, e) for x, y in zip(al.split(" "), el.split(" "))]

    def num(t: str) -> float | None:
        try:
            return float(t)
        except ValueError:
            return None

    def all_ok(ok) -> bool:  # noqa: ANN001
        return all(x == y or (num(x) is not None and num(y) is not None and ok(num(x), num(y), y))
                   for x, y in pairs)

    from microcoder_fast.executor.compare import microcoder as mc

    return (all_ok(lambda a_, e_, _t: _common.close(a_, e_, 1e-6, 1e-6) and a_ == a_)
            or all_ok(lambda a_, e_, t: mc._mc_round_eq(a_, e_, mc._decimals_shown(t))))


_REF = {"default": _ref_default, "lcb": _ref_lcb, "microcoder": _ref_microcoder}
_ALPHABET = st.sampled_from(["1", "2", "1.0", "2.5", "-0", "x", " ", "  ", "\t", "\n", "\r\n", "\n\n", "\u00a0",
                             "\x0b", "1e0", "nan"])
_TEXT = st.lists(_ALPHABET, max_size=14).map("".join)


@pytest.fixture
def tiny_chunks(monkeypatch):
    # chunk boundaries everywhere: tokens and strips must not depend on where a chunk ends
    monkeypatch.setattr(_common, "_CHUNK", 2)
    monkeypatch.setattr(_common, "_STRIP_CHUNK", 1)
    monkeypatch.setattr(microcoder_mode, "_BULK", 3)


@settings(max_examples=250, deadline=None)
@given(out=_TEXT, exp=_TEXT)
def test_streamed_modes_agree_with_the_whole_text_reading(out, exp):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_common, "_CHUNK", 2)
        mp.setattr(_common, "_STRIP_CHUNK", 1)
        mp.setattr(microcoder_mode, "_BULK", 3)
        for mode in MODES:
            small = explain_stdout(out.encode(), exp, mode) is None
            assert small == _REF[mode](out, exp), (mode, out, exp)
    for mode in MODES:
        assert (explain_stdout(out.encode(), exp, mode) is None) == _REF[mode](out, exp), (mode, out, exp)


def test_messages_name_the_first_difference_in_long_outputs(tiny_chunks):
    out = ("1 2 3\n" * 1000 + "1 2 4 5\n").encode()
    exp = "1 2 3\n" * 1000 + "1 2 3 5\n"
    assert explain_stdout(out, exp) == "line 1001, token 3: expected '3', got '4'"
    assert explain_stdout(b"1 2 3 4", "1 9 3") == "line 1: expected 3 token(s), got 4: '1 9 3' vs '1 2 3 4'"
    assert explain_stdout(b"5\n" * 100_000, "5") == "expected 1 line(s), got 100000"
    assert explain_stdout(b"1 2\n 3\n\n", "1 2\n3", "lcb") is None
    assert explain_stdout(b"3 " * 50_000, "3", "microcoder") is None  # the paper's set leniency, streamed


# ------------------------------------------------------------------------------------ call-mode caps


def test_overlong_return_values_are_a_mismatch_without_decoding():
    limit = VALUE_RATIO * len('"ab"') + VALUE_SLACK
    at_limit = json.dumps("ab" + " " * (limit - 4))
    assert len(at_limit) == limit
    for mode in MODES:
        assert explain_call(at_limit, '"ab"', mode) is not None  # decoded and compared: a different string
        why = explain_call(at_limit + " ", '"ab"', mode)
        assert why is not None and "too long to match" in why and "not decoded" in why
    # honest values with the widest encodings still match: an astral character is 12 characters for 1
    astral = "\U0001F600" * 20_000
    assert explain_call(encode_value(astral), json.dumps(astral, ensure_ascii=False)) is None
    assert explain_call(encode_value([()] * 20_000), json.dumps([[]] * 20_000), "default") is None


# ------------------------------------------------------------------------------------ deep JSON


def test_deep_json_is_a_problem_error_or_a_mismatch_never_a_recursion_error():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ValueError, match="test 0: argument line 1 is JSON nested too deeply"):
        Problem([TestCase(deep, "1")], fn_name="f")
    with pytest.raises(ValueError, match="expected output is JSON nested too deeply"):
        explain_call("1", deep)
    for mode in MODES:  # a program's deep value (forged in the frame) is its own fault: a mismatch
        assert "could not decode" in explain_call("[" * 20_000 + "]" * 20_000, "[[1]]", mode)
        why = explain_call("[" * 500 + "]" * 500, "[" * 500 + "]" * 500, mode)  # deep on both sides: no raise
        assert why is None or isinstance(why, str)


def test_deep_expected_output_is_ie_and_the_worker_judges_on():
    deep = "[" * 100_000 + "]" * 100_000
    with Executor(workers=1, compare=MODES) as ex:
        bad = Problem([TestCase("1", deep)], fn_name="f")
        ok = Problem([TestCase("1", "2")], fn_name="f")
        res = ex.judge([("def f(x):\n    return x + 1\n", bad), ("def f(x):\n    return x + 1\n", ok),
                        ("def f(x):\n    return x\n", ok)])
    assert res[0].verdict == Verdict.IE and "nested too deeply" in res[0].message
    assert all(v.verdict == Verdict.IE for v in res[0].modes.values())
    assert [r.verdict for r in res[1:]] == [Verdict.AC, Verdict.WA]


# ------------------------------------------------------------------------------------ caller RSS


@pytest.mark.slow
def test_64mb_outputs_keep_the_callers_peak_rss_bounded():
    """Every mode in one judging pass (the peak covers all three comparisons), stdin and call mode."""
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "_caller_memory.py"), ",".join(MODES), "lines", "tokens",
         "value_str"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["scenario"] for r in rows] == ["lines", "tokens", "value_str"]
    expect = {"lines": {"default": "WA", "lcb": "WA", "microcoder": "AC"},
              "tokens": {"default": "WA", "lcb": "WA", "microcoder": "AC"},
              "value_str": {"default": "WA", "lcb": "WA", "microcoder": "WA"}}
    for r in rows:
        assert r["verdicts"] == expect[r["scenario"]], r
        assert r["growth_mb"] < 300, r
