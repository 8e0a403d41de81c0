"""`microcoder-eval`: judge samples against LiveCodeBench / MicroCoder / HumanEval problems, report pass@k.

::

    microcoder-eval --problems lcb.jsonl --samples samples.jsonl --out results.jsonl \\
                    [--compare default|lcb|microcoder|default,lcb] [--workers N] [--k 1,5] [--release v6]
    microcoder-eval --humaneval --samples samples.jsonl          # the packaged HumanEval

Samples (JSONL): a problem id (``question_id``, ``task_id``, ``id`` or ``problem_id``) and either
``completion`` (model text; the program is extracted from it) or ``code`` (the program as is). A row may
instead carry a list: ``completions``/``output_list`` (texts) or ``code_list`` (programs), one sample each,
as LiveCodeBench's own generation files do; a ``.json`` file holding a list of such rows (the layout its
runner writes) is read too. An empty program counts as no code.

Per sample, one row goes to ``--out``; re-running with the same ``--out`` skips the samples already judged
(matched by content, so rows added to or edited in the samples file are judged and the rest are not; two
identical rows stay two samples) and survives a truncated last line. A bad row (invalid JSON, unknown problem id, no completion) is reported with its line
number and counted as an error; it never passes and never stops the run. Exit status: 0 after a run
(whatever the verdicts), 2 for usage errors (bad flags, unreadable problem file), 1 when the judge cannot
start on this host, 130 when interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microcoder_fast.executor.compare.registry import MODES as COMPARE_MODES

_ID_KEYS = ("question_id", "task_id", "id", "problem_id")
_CHUNK = 256  # samples per judged batch; rows are appended to --out after each batch


class UsageError(Exception):
    """A mistake in how the command was called (flags, files); exits with status 2."""


class JudgeUnavailable(Exception):
    """The sandboxed executor could not start on this host; exits with status 1 (nothing was scored)."""


@dataclass
class Sample:
    key: str  # content hash + occurrence (+ ":<index>" in list rows): identifies the sample across runs
    line: int
    index: int | None
    problem_id: str | None
    text: str | None
    is_code: bool
    error: str | None = None


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="microcoder-eval",
        description="Judge model samples with the sandboxed executor and report pass@k.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Samples rows: {\"question_id\" | \"task_id\" | \"id\": ..., \"completion\": text | \"code\": program}",
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--problems", type=Path, help="problem file: LiveCodeBench or MicroCoder JSONL")
    src.add_argument("--humaneval", action="store_true", help="use the packaged HumanEval (164 tasks)")
    ap.add_argument("--humaneval-mode", choices=("call", "stdin"), default="call",
                    help="HumanEval as function calls (default) or as stdin/stdout programs")
    ap.add_argument("--samples", type=Path, required=True, help="samples JSONL")
    ap.add_argument("--out", type=Path, default=None,
                    help="per-sample results JSONL (default: <samples>.results.jsonl); reused to resume")
    ap.add_argument("--compare", default="default",
                    help="comparison mode(s): default | lcb | microcoder, or several comma-separated "
                         "(side by side; samples whose verdicts differ are listed)")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)), help="parallel sandboxes")
    ap.add_argument("--k", default="1", help="pass@k values, comma-separated (default 1)")
    ap.add_argument("--release", default=None, help="LiveCodeBench release window, e.g. v6, release_v5")
    ap.add_argument("--platform", default=None, help="platform filter, e.g. leetcode,atcoder")
    ap.add_argument("--start-date", default=None, help="keep problems with contest_date >= this (YYYY-MM-DD)")
    ap.add_argument("--end-date", default=None, help="keep problems with contest_date <= this (YYYY-MM-DD)")
    ap.add_argument("--time-limit", type=float, default=6.0, help="seconds per test (default 6)")
    ap.add_argument("--memory-limit", type=int, default=2048, help="MiB per program (default 2048)")
    ap.add_argument("--max-tests", type=int, default=None, help="cap tests per problem (deterministic)")
    ap.add_argument("--all-tests", action="store_true",
                    help="run every test even after a failure (default: stop at the first failing test)")
    ap.add_argument("--summary-json", type=Path, default=None, help="also write the summary as JSON here")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    modes = [m.strip() for m in args.compare.split(",") if m.strip()]
    bad = [m for m in modes if m not in COMPARE_MODES]
    if not modes or bad:
        ap.error(f"--compare {args.compare!r}: unknown mode(s) {bad}; choose from {', '.join(COMPARE_MODES)}")
    if len(set(modes)) != len(modes):
        ap.error(f"--compare {args.compare!r} names a mode twice")
    args.modes = modes
    try:
        ks = sorted({int(k) for k in args.k.split(",") if k.strip()})
    except ValueError:
        ap.error(f"--k {args.k!r}: give positive integers separated by commas, e.g. 1,5,10")
    if not ks or ks[0] < 1:
        ap.error(f"--k {args.k!r}: every k must be >= 1")
    args.ks = ks
    if args.workers < 1:
        ap.error("--workers must be >= 1")
    if args.time_limit <= 0:
        ap.error("--time-limit must be > 0 seconds")
    if args.memory_limit < 64:
        ap.error("--memory-limit is in MiB and must be >= 64")
    if args.max_tests is not None and args.max_tests < 1:
        ap.error("--max-tests must be >= 1")
    if args.humaneval and (args.release or args.platform or args.start_date or args.end_date):
        ap.error("--release/--platform/--start-date/--end-date select LiveCodeBench problems; not with --humaneval")
    if args.out is None:
        args.out = args.samples.with_name(args.samples.name.removesuffix(".jsonl") + ".results.jsonl")
    if args.out.resolve() == args.samples.resolve():
        ap.error("--out must not be the samples file")
    return args


def _load_problems(args: argparse.Namespace) -> dict[str, Any]:
    from microcoder_fast.data.humaneval import load_humaneval
    from microcoder_fast.data.microcoder import load_problems
    from microcoder_fast.data.problem import index_by_id

    try:
        if args.humaneval:
            problems = load_humaneval(args.humaneval_mode)
        else:
            kwargs = {k: v for k, v in (("release", args.release), ("platforms", args.platform),
                                        ("start_date", args.start_date), ("end_date", args.end_date))
                      if v is not None}
            problems = load_problems(args.problems, **kwargs)
        return index_by_id(problems)
    except (OSError, ValueError, ImportError) as e:
        raise UsageError(f"cannot load problems: {e}") from e


def _content_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _raw_rows(path: Path) -> Iterator[tuple[int, str, Any, str | None]]:
    """(line or entry number, row text, parsed row, JSON error) for a JSONL file or a ``.json`` list (the
    layout LiveCodeBench's runner writes)."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"{path} is not valid JSON ({e}); give a JSONL file or a JSON list of rows") from e
        if not isinstance(data, list):
            raise UsageError(f"{path}: a .json samples file must hold a list of rows")
        for i, row in enumerate(data, 1):
            yield i, json.dumps(row, sort_keys=True), row, None
        return
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, line.rstrip("\n"), json.loads(line), None
            except json.JSONDecodeError as e:
                yield n, line.rstrip("\n"), None, f"invalid JSON ({e.msg} at column {e.colno})"


def _read_samples(path: Path) -> Iterator[Sample]:
    if not path.exists():
        raise UsageError(f"no such samples file: {path}")
    occurrences: Counter[str] = Counter()
    for n, text, row, json_error in _raw_rows(path):
        content = _content_hash(text)
        h = f"{content}.{occurrences[content]}"  # identical rows (same completion twice) stay distinct
        occurrences[content] += 1
        if json_error is not None:
            yield Sample(h, n, None, None, None, False, json_error)
            continue
        if not isinstance(row, dict):
            yield Sample(h, n, None, None, None, False, "a sample row must be a JSON object")
            continue
        pid = next((row[k] for k in _ID_KEYS if row.get(k) not in (None, "")), None)
        pid = None if pid is None else str(pid)
        if pid is None:
            yield Sample(h, n, None, None, None, False,
                         f"no problem id (one of {', '.join(_ID_KEYS)})")
            continue
        many = [(k, row[k]) for k in ("code_list", "completions", "output_list") if isinstance(row.get(k), list)]
        if many:
            key_name, items = many[0]
            for i, item in enumerate(items):
                if not isinstance(item, str):
                    yield Sample(f"{h}:{i}", n, i, pid, None, False, f"{key_name}[{i}] is not a string")
                else:
                    yield Sample(f"{h}:{i}", n, i, pid, item, key_name == "code_list")
            continue
        if isinstance(row.get("code"), str):
            yield Sample(h, n, None, pid, row["code"], True)
        elif isinstance(row.get("completion"), str):
            yield Sample(h, n, None, pid, row["completion"], False)
        else:
            yield Sample(h, n, None, pid, None, False,
                         "no 'completion' or 'code' string (nor code_list/completions/output_list)")


def _read_done(out: Path) -> dict[str, dict[str, Any]]:
    """Rows already in --out, by key (the last row wins). A truncated last line is cut off the file."""
    done: dict[str, dict[str, Any]] = {}
    if not out.exists():
        return done
    with open(out, "rb") as fh:
        data = fh.read()
    good_end = data.rfind(b"\n") + 1
    if good_end < len(data):  # a partial last line from an interrupted run: drop it
        with open(out, "r+b") as fh:
            fh.truncate(good_end)
        print(f"microcoder-eval: {out}: dropped a truncated last line from an interrupted run", file=sys.stderr)
    for line in data[:good_end].decode("utf-8", errors="surrogateescape").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("key"), str):
            done[row["key"]] = row
    return done


def _program(sample: Sample, problem: Any) -> tuple[str | None, str]:
    """(program or None when no code was found, how it was obtained)."""
    from microcoder_fast.data.extract import extract_code
    from microcoder_fast.data.humaneval import humaneval_program

    assert sample.text is not None
    if sample.is_code and not sample.text.strip():
        return None, "empty program"
    if problem.source == "humaneval":
        code = humaneval_program(problem, sample.text, extracted=sample.is_code)
        return code, ("given code" if sample.is_code else "humaneval completion")
    if sample.is_code:
        return sample.text, "given code"
    ex = extract_code(sample.text)
    return ex.code, ex.reason


def _judge(
    executors: dict[str, Any], jobs: list[tuple[Sample, Any, str, str]], problems_exec: dict[str, Any],
    args: argparse.Namespace, bar: Any,
) -> dict[str, dict[str, Any]]:
    """Judge (sample, problem, program, how) jobs in every requested mode: ``{sample.key: {mode: result}}``."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for mode in args.modes:
        items = [(prog, problems_exec[s.problem_id]) for s, _, prog, _ in jobs]
        for r in executors[mode].judge_iter(items, stop_on_first_failure=not args.all_tests):
            out[jobs[r.index][0].key][mode] = r
            if bar is not None:
                bar.update(1)
    return out


def _result_row(sample: Sample, problem: Any, how: str, results: dict[str, Any], modes: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"key": sample.key, "line": sample.line, "index": sample.index,
                           "problem_id": sample.problem_id, "status": "judged", "extraction": how,
                           "platform": problem.platform, "difficulty": problem.difficulty,
                           "verdicts": {}, "tests_passed": {}, "tests_total": None}
    for m in modes:
        r = results[m]
        verdict = getattr(r.verdict, "value", str(r.verdict))
        row["verdicts"][m] = str(verdict)
        row["tests_passed"][m] = int(r.passed)
        row["tests_total"] = int(r.total)
        if m == modes[0] and getattr(r, "message", None):
            row["message"] = str(r.message)[:500]
    row["passed"] = row["verdicts"][modes[0]] == "AC"
    return row


def _no_code_row(sample: Sample, problem: Any, how: str, modes: list[str]) -> dict[str, Any]:
    return {"key": sample.key, "line": sample.line, "index": sample.index, "problem_id": sample.problem_id,
            "status": "no_code", "extraction": how, "platform": problem.platform,
            "difficulty": problem.difficulty, "verdicts": dict.fromkeys(modes, "NO_CODE"), "passed": False}


def _error_row(sample: Sample, modes: list[str], problem: Any = None) -> dict[str, Any]:
    return {"key": sample.key, "line": sample.line, "index": sample.index, "problem_id": sample.problem_id,
            "status": "error", "error": sample.error, "platform": getattr(problem, "platform", None),
            "difficulty": getattr(problem, "difficulty", None), "verdicts": dict.fromkeys(modes, "ERROR"),
            "passed": False}


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def summarize(rows: Iterable[dict[str, Any]], modes: list[str], ks: list[int]) -> dict[str, Any]:
    """pass@k per mode overall / by platform / by difficulty, verdict histograms, errors, disagreements."""
    from microcoder_fast.data.passk import mean_pass_at_k

    rows = list(rows)
    summary: dict[str, Any] = {"samples": len(rows), "modes": {}, "errors": [], "disagreements": []}
    for r in rows:
        if r["status"] == "error":
            summary["errors"].append({"line": r["line"], "index": r.get("index"), "error": r.get("error")})
    attributable = [r for r in rows if r.get("problem_id") is not None and not r.get("unknown_problem")]
    for m in modes:
        per_problem: dict[str, list[int]] = {}
        meta: dict[str, tuple[Any, Any]] = {}
        hist: Counter[str] = Counter()
        for r in rows:
            hist[r["verdicts"].get(m, "NOT_JUDGED")] += 1
        for r in attributable:
            pid = r["problem_id"]
            c = per_problem.setdefault(pid, [0, 0])
            c[0] += 1
            c[1] += r["verdicts"].get(m) == "AC"
            meta[pid] = (r.get("platform"), r.get("difficulty"))

        def table(select: Any, _pp: dict[str, list[int]] = per_problem, _meta: dict = meta) -> dict[str, Any]:
            groups: dict[str, list[tuple[int, int]]] = defaultdict(list)
            for pid, (n, c) in _pp.items():
                groups[str(select(_meta[pid]))].append((n, c))
            out: dict[str, Any] = {}
            for g, counts in sorted(groups.items()):
                out[g] = {"problems": len(counts)}
                for k in ks:
                    v, used = mean_pass_at_k(counts, k)
                    out[g][f"pass@{k}"] = v
                    out[g][f"pass@{k}_problems"] = used
            return out

        summary["modes"][m] = {
            "overall": table(lambda _: "all")["all"] if per_problem else {"problems": 0},
            "by_platform": table(lambda md: md[0]),
            "by_difficulty": table(lambda md: md[1]),
            "verdicts": dict(hist.most_common()),
        }
    if len(modes) > 1:
        for r in rows:
            vs = [r["verdicts"].get(m) for m in modes]
            if r["status"] == "judged" and len(set(vs)) > 1:
                summary["disagreements"].append({"line": r["line"], "index": r.get("index"),
                                                 "problem_id": r["problem_id"], "verdicts": r["verdicts"]})
    return summary


def print_summary(summary: dict[str, Any], modes: list[str], ks: list[int], file: Any = None) -> None:  # noqa: ANN401
    file = file or sys.stdout
    w = lambda s="": print(s, file=file)
    w(f"samples: {summary['samples']}   errors: {len(summary['errors'])}")
    for m in modes:
        s = summary["modes"][m]
        w()
        w(f"== compare: {m}")
        head = f"{'group':<24}{'problems':>9}" + "".join(f"{'pass@' + str(k):>10}" for k in ks)
        w(head)
        w("-" * len(head))

        def line(name: str, g: dict[str, Any]) -> None:
            w(f"{name:<24}{g.get('problems', 0):>9}" + "".join(f"{_fmt(g.get(f'pass@{k}')):>10}" for k in ks))

        line("all", s["overall"])
        for label, key in (("platform", "by_platform"), ("difficulty", "by_difficulty")):
            if list(s[key]) == ["None"]:
                continue  # no problem has this field: no breakdown to show
            for name, g in s[key].items():
                line(f"{label}={name}", g)
        for k in ks:
            used = s["overall"].get(f"pass@{k}_problems")
            if used is not None and used < s["overall"].get("problems", 0):
                w(f"note: pass@{k} uses the {used} problems with at least {k} samples")
        w("verdicts: " + ", ".join(f"{v}={c}" for v, c in s["verdicts"].items()))
        if s["verdicts"].get("IE"):
            w(f"note: {s['verdicts']['IE']} internal judge error(s) (IE) count as failures here; they are "
              "not the program's fault and a rerun of the same command judges them again")
    if summary["errors"]:
        w()
        w(f"errors ({len(summary['errors'])}; counted as failures, never passes):")
        for e in summary["errors"][:20]:
            where = f"line {e['line']}" + (f"[{e['index']}]" if e.get("index") is not None else "")
            w(f"  {where}: {e['error']}")
        if len(summary["errors"]) > 20:
            w(f"  ... and {len(summary['errors']) - 20} more (see the 'error' rows in --out)")
    if len(modes) > 1:
        w()
        d = summary["disagreements"]
        among = " and ".join(modes) if len(modes) == 2 else ", ".join(modes)
        w(f"samples whose verdicts differ {'between' if len(modes) == 2 else 'among'} {among}: {len(d)}")
        for r in d[:50]:
            where = f"line {r['line']}" + (f"[{r['index']}]" if r.get("index") is not None else "")
            w(f"  {where} {r['problem_id']}: " + "  ".join(f"{m}={r['verdicts'][m]}" for m in modes))
        if len(d) > 50:
            w(f"  ... and {len(d) - 50} more")


def run(args: argparse.Namespace) -> int:
    problems = _load_problems(args)
    samples = list(_read_samples(args.samples))
    done = _read_done(args.out)
    current_keys = {s.key for s in samples}

    def complete(row: dict[str, Any] | None) -> bool:
        """Judged before in every requested mode, against a problem set that still agrees on its id."""
        if row is None or not all(m in row.get("verdicts", {}) for m in args.modes):
            return False
        if any(row["verdicts"][m] == "IE" for m in args.modes):
            return False  # a judge failure is retried, never kept as the sample's verdict
        pid = row.get("problem_id")
        if pid is None:
            return True
        return (pid in problems) != bool(row.get("unknown_problem"))

    pending = [s for s in samples if not complete(done.get(s.key))]
    skipped = len(samples) - len(pending)
    if skipped:
        print(f"microcoder-eval: resuming: {skipped} of {len(samples)} samples already judged in {args.out}",
              file=sys.stderr)

    new_rows: list[dict[str, Any]] = []
    jobs: list[tuple[Sample, Any, str, str]] = []
    for s in pending:
        if s.error is None and s.problem_id not in problems:
            s.error = f"unknown problem id {s.problem_id!r}"
            row = _error_row(s, args.modes)
            row["unknown_problem"] = True
            new_rows.append(row)
            continue
        if s.error is not None:
            p = problems.get(s.problem_id) if s.problem_id else None
            new_rows.append(_error_row(s, args.modes, p))
            continue
        p = problems[s.problem_id]
        prog, how = _program(s, p)
        if prog is None:
            new_rows.append(_no_code_row(s, p, how, args.modes))
        else:
            jobs.append((s, p, prog, how))
    for row in new_rows:
        if row["status"] == "error":
            print(f"microcoder-eval: line {row['line']}: {row['error']}", file=sys.stderr)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    interrupted = False
    with open(args.out, "a", encoding="utf-8", errors="surrogateescape") as fh:
        for row in new_rows:
            fh.write(json.dumps(row) + "\n")
        fh.flush()
        if jobs:
            problems_exec: dict[str, Any] = {}
            for _, p, _, _ in jobs:
                if p.id not in problems_exec:
                    problems_exec[p.id] = p.to_problem(args.max_tests)
            bar = None
            if not args.no_progress:
                from tqdm import tqdm

                bar = tqdm(total=len(jobs) * len(args.modes), unit="judgement", desc="judging", file=sys.stderr,
                           mininterval=0.1 if sys.stderr.isatty() else 5.0)
            try:
                with contextlib.ExitStack() as stack:
                    try:
                        from microcoder_fast.executor import Executor

                        executors = {
                            m: stack.enter_context(Executor(workers=args.workers, time_limit_s=args.time_limit,
                                                            memory_limit_mb=args.memory_limit, compare=m))
                            for m in args.modes
                        }
                    except (OSError, RuntimeError, ImportError) as e:
                        raise JudgeUnavailable(str(e)) from e
                    for start in range(0, len(jobs), _CHUNK):
                        chunk = jobs[start:start + _CHUNK]
                        results = _judge(executors, chunk, problems_exec, args, bar)
                        for s, p, _, how in chunk:
                            fh.write(json.dumps(_result_row(s, p, how, results[s.key], args.modes)) + "\n")
                        fh.flush()
            except KeyboardInterrupt:
                interrupted = True
            finally:
                if bar is not None:
                    bar.close()
    if interrupted:
        print(f"microcoder-eval: interrupted; rerun the same command to resume from {args.out}", file=sys.stderr)
        return 130

    rows_by_key = _read_done(args.out)
    rows = [rows_by_key[k] for k in (s.key for s in samples) if k in rows_by_key and k in current_keys]
    summary = summarize(rows, args.modes, args.ks)
    summary["problems"] = len(problems)
    summary["problems_without_samples"] = len(set(problems) - {r["problem_id"] for r in rows})
    print_summary(summary, args.modes, args.ks)
    if summary["problems_without_samples"]:
        print(f"note: {summary['problems_without_samples']} of {len(problems)} problems have no samples "
              "and are not in pass@k")
    print(f"per-sample results: {args.out}")
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)  # argparse exits with status 2 on a usage error
    try:
        return run(args)
    except UsageError as e:
        print(f"microcoder-eval: error: {e}", file=sys.stderr)
        return 2
    except JudgeUnavailable as e:
        print(f"microcoder-eval: error: the judge could not start ({e}); run `microcoder-info` to see what "
              "this install can do. Rows judged so far are kept; rerun to resume.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
