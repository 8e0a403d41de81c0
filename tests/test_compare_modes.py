"""Several compare modes in one judging pass: ``Executor(compare=("default", "lcb"))``.

Each mode's verdict must equal what a run in that mode alone gives (verdict, passed count, message), also
with stop-on-first-failure where the modes disagree on which test fails first.
"""

from __future__ import annotations

import pytest

from microcoder_fast.executor import Executor, Problem, TestCase, Verdict
from microcoder_fast.executor.compare import parse_modes

# test n=0: "1e+18" (lcb accepts, default rejects); n=1: right; n=2: wrong in every mode;
# n=3: sleeps past the limit (TLE in every mode)
PROGRAM = """
n = int(input())
if n == 0:
    print("1e+18")
elif n == 1:
    print(7)
elif n == 2:
    print(8)
else:
    import time
    time.sleep(5)
    print(7)
"""
BIG = "1000000000000000000"


def _problem(order: list[int]) -> Problem:
    exp = {0: BIG, 1: "7", 2: "7", 3: "7"}
    return Problem([TestCase(f"{n}\n", exp[n] + "\n") for n in order], time_limit_s=0.5)


@pytest.fixture(scope="module")
def executors():
    with Executor(workers=1, compare=("default", "lcb"), time_limit_s=0.5) as both, \
            Executor(workers=1, compare="default", time_limit_s=0.5) as d, \
            Executor(workers=1, compare="lcb", time_limit_s=0.5) as lcb:
        yield both, {"default": d, "lcb": lcb}


@pytest.mark.parametrize("stop", [True, False])
@pytest.mark.parametrize("order", [[1, 0, 1, 3, 1], [0, 1, 2, 1], [1, 1, 1], [2, 0], [1, 0, 1]])
def test_each_mode_matches_a_run_in_that_mode_alone(executors, order, stop):
    both, single = executors
    problem = _problem(order)
    (res,) = both.judge([(PROGRAM, problem)], stop_on_first_failure=stop)
    assert list(res.modes) == ["default", "lcb"]
    for mode, ex in single.items():
        (alone,) = ex.judge([(PROGRAM, problem)], stop_on_first_failure=stop)
        got = res.modes[mode]
        assert (got.verdict, got.passed, got.message) == (alone.verdict, alone.passed, alone.message), mode
        assert got.reward == alone.reward
    # the primary mode is the Result's own verdict
    assert (res.verdict, res.passed, res.message) == (res.modes["default"].verdict, res.modes["default"].passed,
                                                      res.modes["default"].message)


def test_disagreeing_modes_run_on_until_every_mode_failed(executors):
    both, _ = executors
    # default fails test 1 ("1e+18"); lcb accepts it and fails only at test 3 (TLE): never read off a run
    # cut short at default's failure
    (res,) = both.judge([(PROGRAM, _problem([1, 0, 1, 3, 1]))])
    assert res.modes["default"].verdict == Verdict.WA and res.modes["default"].passed == 1
    assert res.modes["lcb"].verdict == Verdict.TLE and res.modes["lcb"].passed == 3
    assert [t.index for t in res.tests] == [0, 1, 2, 3]  # test 4 never ran: both modes had failed
    assert res.tests[1].verdicts == {"default": Verdict.WA, "lcb": Verdict.AC}
    assert res.tests[3].verdicts == {"default": Verdict.TLE, "lcb": Verdict.TLE}
    # when the modes agree, the run stops at the first failure as a single-mode run does
    (res,) = both.judge([(PROGRAM, _problem([2, 1, 1]))])
    assert [t.index for t in res.tests] == [0] and res.modes["lcb"].verdict == Verdict.WA


def test_call_mode_and_compile_error_in_every_mode(executors):
    both, _ = executors
    p = Problem([TestCase("1", "1"), TestCase("2", "2")], fn_name="f")
    (res,) = both.judge([("def f(x):\n    return True if x == 1 else x\n", p)])
    assert res.modes["default"].verdict == Verdict.WA and res.modes["lcb"].verdict == Verdict.AC
    (res,) = both.judge([("def f(x:\n", p)])
    assert res.verdict == Verdict.CE and {m: v.verdict for m, v in res.modes.items()} == {
        "default": Verdict.CE, "lcb": Verdict.CE}


def test_single_mode_results_carry_their_mode(executors):
    _, single = executors
    (res,) = single["lcb"].judge([(PROGRAM, _problem([0]))])
    assert list(res.modes) == ["lcb"] and res.modes["lcb"].verdict == res.verdict == Verdict.AC


def test_mode_lists_are_checked():
    assert parse_modes("default, lcb") == ("default", "lcb")
    assert parse_modes(["microcoder"]) == ("microcoder",)
    for bad, match in (("default,default", "twice"), ((), "no compare mode"), ("default,fuzzy", "'fuzzy'"),
                       ([1], "strings")):
        with pytest.raises((ValueError, TypeError), match=match):
            parse_modes(bad)
        with pytest.raises(ValueError, match="compare must be one of"):
            Executor(compare=bad)
