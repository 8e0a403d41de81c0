"""MicroCoder JSONL: load, validate (bad rows reported by line and skipped), deterministic caps,
save/load round trip, pass-rate filtering; and CodeProblem's own test capping."""

from __future__ import annotations

import json
import warnings

import pytest

from microcoder_fast.data import CodeProblem, TestCase, filter_by_pass_rate, load_microcoder, save_microcoder
from microcoder_fast.data.microcoder import load_pass_rates, load_problems


def _row(pid, n=4, fn_name=None, **extra):
    if fn_name:
        tests = {"inputs": [[i, i + 1] for i in range(n)], "outputs": [2 * i + 1 for i in range(n)],
                 "fn_name": fn_name}
    else:
        tests = {"inputs": [f"{i}\n" for i in range(n)], "outputs": [f"{i * i}\n" for i in range(n)],
                 "fn_name": None}
    row = {"id": pid, "statement": f"problem {pid}", "starter_code": "", "tests": tests,
           "difficulty": "hard", "source": "codeforces"}
    row.update(extra)
    return row


def _write(tmp_path, lines):
    p = tmp_path / "train.jsonl"
    p.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return p


def test_load_stdin_and_call_rows(tmp_path):
    path = _write(tmp_path, [_row("a"), _row("b", 3, fn_name="add")])
    ps = load_microcoder(path)
    assert [p.id for p in ps] == ["a", "b"] and ps.skipped == []
    a, b = ps
    assert a.mode == "stdin" and [t.input for t in a.tests()] == ["0\n", "1\n", "2\n", "3\n"]
    assert a.difficulty == "hard" and a.source == "codeforces" and a.metadata["num_tests_total"] == 4
    assert b.fn_name == "add" and b.tests()[1] == TestCase("1\n2", "3")


def test_bad_rows_are_reported_with_line_numbers_and_skipped(tmp_path):
    zero = _row("zero", 0)
    mism = _row("mism")
    mism["tests"]["outputs"].pop()
    wrong_type = _row("wt")
    wrong_type["tests"]["inputs"][0] = 5
    lines = [_row("good"), "{not json", zero, mism, {"statement": "no id", "tests": _row("x")["tests"]},
             wrong_type, _row("good"), _row("nostmt", statement=""), [1, 2]]
    path = _write(tmp_path, lines)
    with pytest.warns(UserWarning, match="skipped 8 row"):
        ps = load_microcoder(path)
    assert [p.id for p in ps] == ["good"]
    got = {(s.line, s.id): s.reason for s in ps.skipped}
    assert "invalid JSON" in got[(2, None)]
    assert "zero usable tests" in got[(3, "zero")]
    assert "4 test inputs but 3 outputs" in got[(4, "mism")]
    assert "missing 'id'" in got[(5, None)]
    assert "must be strings" in got[(6, "wt")]
    assert "duplicate id (first on line 1)" in got[(7, "good")]
    assert "statement" in got[(8, "nostmt")]
    assert "JSON object" in got[(9, None)]
    assert str(ps.skipped[0]).startswith("line 2")


def test_on_skip_callback_replaces_the_warning(tmp_path):
    path = _write(tmp_path, [_row("z", 0)])
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ps = load_microcoder(path, on_skip=seen.append)
    assert len(ps) == 0 and [s.id for s in seen] == ["z"]


def test_cap_is_deterministic_and_spread(tmp_path):
    path = _write(tmp_path, [_row("a", 10)])
    (p,) = load_microcoder(path, max_tests=4)
    assert [t.input for t in p.tests()] == ["0\n", "3\n", "6\n", "9\n"]  # first and last kept, evenly spread
    (again,) = load_microcoder(path, max_tests=4)
    assert again.tests() == p.tests()
    assert p.metadata["num_tests_total"] == 10
    with pytest.raises(ValueError, match="max_tests"):
        load_microcoder(path, max_tests=0)


def test_code_problem_tests_cap_keeps_public_first():
    p = CodeProblem(id="x", question="q", public_tests=[("p0", "a"), ("p1", "b")],
                    private_tests=[(f"q{i}", "c") for i in range(7)])
    assert [t.input for t in p.tests()] == ["p0", "p1"] + [f"q{i}" for i in range(7)]
    assert [t.input for t in p.tests(5)] == ["p0", "p1", "q0", "q3", "q6"]
    assert [t.input for t in p.tests(1)] == ["p0"]
    assert p.tests(100) == p.tests()
    with pytest.raises(ValueError, match="max_tests"):
        p.tests(0)


def test_code_problem_validation():
    with pytest.raises(ValueError, match="id"):
        CodeProblem(id="", question="q")
    with pytest.raises(TypeError, match="json.dumps"):
        TestCase([1, 2], "3")  # type: ignore[arg-type]
    p = CodeProblem(id="d", question="q", fn_name="", contest_date="2024-05-01")  # type: ignore[arg-type]
    assert p.fn_name is None
    q = CodeProblem.from_dict(CodeProblem(id="r", question="q", public_tests=[("1", "2")], fn_name="f").to_dict())
    assert q.public_tests == [TestCase("1", "2")] and q.fn_name == "f"


def test_save_load_round_trip(tmp_path):
    ps = [CodeProblem(id="s1", question="stdin one", public_tests=[("1\n", "1\n")], private_tests=[("2\n", "4\n")],
                      difficulty="easy", source="mine", solution="print(int(input())**2)", metadata={"tag": 1}),
          CodeProblem(id="c1", question="call one", starter_code="def f(a):\n    ", fn_name="f",
                      private_tests=[("[1, 2]", "3")], difficulty="hard", source="mine")]
    out = tmp_path / "out.jsonl"
    assert save_microcoder(ps, out) == 2
    back = load_microcoder(out)
    for a, b in zip(ps, back):
        assert (a.id, a.question, a.starter_code, a.fn_name, a.difficulty, a.source, a.solution) == (
            b.id, b.question, b.starter_code, b.fn_name, b.difficulty, b.source, b.solution)
        assert a.tests() == b.tests()
    assert back[0].metadata["tag"] == 1
    assert load_problems(out)[1].fn_name == "f"  # format auto-detected


def test_filter_by_pass_rate():
    ps = [CodeProblem(id=i, question="q", private_tests=[("1", "1")]) for i in "abcde"]
    table = {"a": 1.0, "b": 0.95, "c": (7, 8), "d": 0.0, "e": {"passed": 2, "total": 8}}
    ids = lambda xs: [p.id for p in xs]
    assert ids(filter_by_pass_rate(ps, table, max_pass_rate=0.9)) == ["c", "d", "e"]
    assert ids(filter_by_pass_rate(ps, table, max_pass_rate=0.9, min_pass_rate=0.01)) == ["c", "e"]
    assert ids(filter_by_pass_rate(ps, {"a": 0.5}, max_pass_rate=0.9)) == list("abcde")  # missing kept
    assert ids(filter_by_pass_rate(ps, {"a": 0.5}, keep_missing=False)) == ["a"]
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        filter_by_pass_rate(ps, {"a": 1.5})
    with pytest.raises(ValueError, match="max_pass_rate"):
        filter_by_pass_rate(ps, table, max_pass_rate=2)


def test_pass_rates_from_eval_results(tmp_path):
    rows = [{"problem_id": "a", "passed": True, "status": "judged"},
            {"problem_id": "a", "passed": False, "status": "judged"},
            {"problem_id": "b", "passed": True, "status": "judged"},
            {"problem_id": None, "passed": False, "status": "error"},
            {"id": "c", "pass_rate": 0.25}]
    p = tmp_path / "results.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_pass_rates(p) == {"a": 0.5, "b": 1.0, "c": 0.25}
    ps = [CodeProblem(id=i, question="q", private_tests=[("1", "1")]) for i in "abc"]
    assert [x.id for x in filter_by_pass_rate(ps, p, max_pass_rate=0.9)] == ["a", "c"]
