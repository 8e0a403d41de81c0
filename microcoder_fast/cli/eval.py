"""`microcoder-eval`: judge samples against LiveCodeBench / MicroCoder / HumanEval problems, report pass@k.

::

    microcoder-eval --problems lcb.jsonl --samples samples.jsonl --out results.jsonl \\
                    [--compare default|lcb|microcoder|default,lcb] [--workers N] [--k 1,5] [--release v6]
    microcoder-eval --humaneval --samples samples.jsonl          # the packaged HumanEval
    microcoder-eval ... --ray auto                               # judged on every node of a Ray cluster

Samples (JSONL): a problem id (``question_id``, ``task_id``, ``id`` or ``problem_id``) and either
``completion`` (model text; the program is extracted from it) or ``code`` (the program as is). A row may
instead carry a list: ``completions``/``output_list`` (texts) or ``code_list`` (programs), one sample each,
as LiveCodeBench's own generation files do; a ``.json`` file holding a list of such rows (the layout its
runner writes) is read too. An empty program counts as no code.

Per sample, one row goes to ``--out`` as soon as it is judged, so an interrupted run loses only the
samples in flight. Re-running with the same ``--out`` resumes: a stored verdict is reused only when the
sample (matched by content: rows added or edited are judged, two identical rows stay two samples), its
problem (tests, entry point, statement), the judge settings (``--time-limit``, ``--memory-limit``,
``--max-tests``, ``--all-tests``, ``--humaneval-mode``, the package version) and the compare modes are all
the same; any other sample is judged again and the reason is printed (a sample judged again for a new
compare mode keeps its stored verdicts in the other modes). A bad row (invalid JSON, unknown
problem id, no completion) is reported with its line number and counted as an error; it never passes and
never stops the run. A completion that holds code which does not parse is judged (CE, with the error in the
row's ``message``); "no code" (NO_CODE) is kept for text with no program in it, with the reason in ``reason``.

pass@k is printed and written as a fraction in [0, 1], as the trainer reports it.

Exit status: 0 after a run (whatever the verdicts); 2 for usage errors (bad flags, an unreadable or empty
problem or samples file, samples none of whose problem ids is in the problem set); 1 when the judge cannot
start on this host; 130 when interrupted (rerun the same command to resume).

Parsing and printing only: imports ``data`` and ``executor``; never torch, ``ops`` or ``rl``. Nothing imports
it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from microcoder_fast.data.passk import summarize
from microcoder_fast.data.samples import (
    ResultStore,
    Sample,
    SamplesError,
    judge_settings,
    problem_fingerprint,
    read_samples,
    sample_program,
)
from microcoder_fast.executor.compare.registry import MODES as COMPARE_MODES


class UsageError(Exception):
    """A mistake in how the command was called (flags, files); exits with status 2."""


class JudgeUnavailable(Exception):
    """The sandboxed executor could not start on this host; exits with status 1 (nothing was scored)."""


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
                    help="comparison mode(s): default | lcb | microcoder, or several comma-separated: each "
                         "program runs once and is compared in every mode (one row per sample with each mode's "
                         "verdict; samples whose verdicts differ are listed)")
    ap.add_argument("--workers", type=int, default=None,
                    help="parallel sandboxes (default: this machine's CPUs; with --ray: per node, default each "
                         "node's CPUs)")
    ap.add_argument("--ray", metavar="ADDRESS", default=None,
                    help="judge on every node of the Ray cluster at ADDRESS (auto: the one this machine joined "
                         "with `ray start`); needs the ray extra")
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
    if args.workers is not None and args.workers < 1:
        ap.error("--workers must be >= 1")
    if args.ray is None and args.workers is None:
        args.workers = max(1, os.cpu_count() or 2)
    if args.ray is not None and importlib.util.find_spec("ray") is None:
        ap.error('--ray needs ray, which is not installed: pip install "microcoder_fast[ray]"')
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


def _judge(executor: Any, jobs: list[tuple[Sample, Any, str, str]], problems_exec: dict[str, Any],
           args: argparse.Namespace, bar: Any) -> Iterator[tuple[int, Any]]:
    """Judge (sample, problem, program, how) jobs once each, compared in every requested mode; yield
    ``(job index, result)`` as each arrives (``result.modes[mode]`` holds each mode's verdict)."""
    items = [(prog, problems_exec[s.problem_id]) for s, _, prog, _ in jobs]
    for r in executor.judge_iter(items, stop_on_first_failure=not args.all_tests):
        if bar is not None:
            bar.update(1)
        yield r.index, r


def _base_row(sample: Sample, problem: Any, status: str) -> dict[str, Any]:
    return {"key": sample.key, "line": sample.line, "index": sample.index, "problem_id": sample.problem_id,
            "status": status, "platform": getattr(problem, "platform", None),
            "difficulty": getattr(problem, "difficulty", None)}


def _result_row(sample: Sample, problem: Any, how: str, result: Any, modes: list[str]) -> dict[str, Any]:
    row = _base_row(sample, problem, "judged")
    row.update({"extraction": how, "verdicts": {}, "tests_passed": {}, "tests_total": int(result.total)})
    for m in modes:
        mv = result.modes[m]
        row["verdicts"][m] = str(getattr(mv.verdict, "value", mv.verdict))
        row["tests_passed"][m] = int(mv.passed)
    if result.message:
        row["message"] = str(result.message)[:500]  # the first mode's
    row["passed"] = row["verdicts"][modes[0]] == "AC"
    return row


def _no_code_row(sample: Sample, problem: Any, how: str, modes: list[str]) -> dict[str, Any]:
    row = _base_row(sample, problem, "no_code")
    row.update({"extraction": how, "reason": how, "verdicts": dict.fromkeys(modes, "NO_CODE"), "passed": False})
    return row


def _error_row(sample: Sample, modes: list[str], problem: Any = None) -> dict[str, Any]:
    row = _base_row(sample, problem, "error")
    row.update({"error": sample.error, "verdicts": dict.fromkeys(modes, "ERROR"), "passed": False})
    return row


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def print_summary(summary: dict[str, Any], modes: list[str], ks: list[int], file: Any = None) -> None:  # noqa: ANN401
    file = file or sys.stdout
    w = lambda s="": print(s, file=file)
    w(f"samples: {summary['samples']}   errors: {len(summary['errors'])}   pass@k: fraction of problems, 0 to 1")
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


def _wrong_problem_set(samples: list[Sample], problems: dict[str, Any]) -> str | None:
    """A message when no sample's problem id is in the problem set (the samples are for other problems)."""
    ids = [s.problem_id for s in samples if s.problem_id is not None]
    if not ids or any(i in problems for i in ids):
        return None
    theirs = ", ".join(repr(i) for i in list(dict.fromkeys(ids))[:3])
    ours = ", ".join(repr(i) for i in list(problems)[:3])
    return (f"none of the {len(ids)} samples' problem ids ({theirs}, ...) is in the problem set ({ours}, ...): "
            "wrong problem set? Pass the problems the samples were generated for (--problems FILE or --humaneval)")


def run(args: argparse.Namespace) -> int:
    problems = _load_problems(args)
    try:
        samples = read_samples(args.samples)
    except SamplesError as e:
        raise UsageError(str(e)) from None
    wrong = _wrong_problem_set(samples, problems)
    if wrong:
        raise UsageError(wrong)
    settings = judge_settings(time_limit_s=args.time_limit, memory_limit_mb=args.memory_limit,
                              max_tests=args.max_tests, all_tests=args.all_tests,
                              problem_set=f"humaneval:{args.humaneval_mode}" if args.humaneval else "problems-file")
    store = ResultStore(args.out, settings, args.modes)
    if store.dropped_partial_line:
        print(f"microcoder-eval: {args.out}: dropped a truncated last line from an interrupted run", file=sys.stderr)
    fingerprints: dict[str, str] = {}

    def fingerprint(pid: str | None) -> str | None:
        if pid is None or pid not in problems:
            return None
        if pid not in fingerprints:
            fingerprints[pid] = problem_fingerprint(problems[pid], args.max_tests)
        return fingerprints[pid]

    pending: list[Sample] = []
    stale: dict[str, int] = {}
    for s in samples:
        reason = store.stale_reason(store.rows.get(s.key), fingerprint(s.problem_id), s.problem_id in problems)
        if reason is not None:
            pending.append(s)
            if reason != "new":
                stale[reason] = stale.get(reason, 0) + 1
    skipped = len(samples) - len(pending)
    if skipped:
        print(f"microcoder-eval: resuming: {skipped} of {len(samples)} samples already judged with these settings "
              f"in {args.out}", file=sys.stderr)
    for reason, n in stale.items():
        print(f"microcoder-eval: judging {n} sample(s) in {args.out} again: {reason}", file=sys.stderr)

    new_rows: list[dict[str, Any]] = []
    jobs: list[tuple[Sample, Any, str, str]] = []
    for s in pending:
        if s.error is None and s.problem_id not in problems:
            s.error = f"unknown problem id {s.problem_id!r}"
            row = _error_row(s, args.modes)
            row["unknown_problem"] = True
            new_rows.append(row)
            continue
        p = problems.get(s.problem_id) if s.problem_id else None
        if s.error is not None:
            new_rows.append(_error_row(s, args.modes, p))
            continue
        prog, how = sample_program(s, p)
        if prog is None:
            new_rows.append(_no_code_row(s, p, how, args.modes))
        else:
            jobs.append((s, p, prog, how))
    unknown = 0
    for row in new_rows:
        if row["status"] == "error":
            unknown += bool(row.get("unknown_problem"))
            print(f"microcoder-eval: line {row['line']}: {row['error']}", file=sys.stderr)
    if unknown:
        print(f"microcoder-eval: {unknown} sample(s) name problems that are not in the problem set (filtered out "
              "by --release/--platform/dates, or a wrong problem set?); they count as failures", file=sys.stderr)

    interrupted = False
    with store:
        for row in new_rows:
            store.append(store.stamp(row, fingerprint(row.get("problem_id"))))
        if jobs:
            problems_exec: dict[str, Any] = {}
            for _, p, _, _ in jobs:
                if p.id not in problems_exec:
                    problems_exec[p.id] = p.to_problem(args.max_tests)
            bar = None
            if not args.no_progress:
                from tqdm import tqdm

                bar = tqdm(total=len(jobs), unit="sample", desc="judging", file=sys.stderr,
                           mininterval=0.1 if sys.stderr.isatty() else 5.0)
            try:
                with contextlib.ExitStack() as stack:
                    try:
                        from microcoder_fast.executor import Executor

                        # one pass: each program runs once and its outputs are compared in every mode
                        where = (dict(backend="ray", address=args.ray, workers_per_node=args.workers)
                                 if args.ray is not None else dict(workers=args.workers))
                        executor = stack.enter_context(Executor(**where, time_limit_s=args.time_limit,
                                                                memory_limit_mb=args.memory_limit,
                                                                compare=tuple(args.modes)))
                    except (OSError, RuntimeError, ImportError) as e:  # ConnectionError (--ray) is an OSError
                        raise JudgeUnavailable(str(e)) from e
                    for i, result in _judge(executor, jobs, problems_exec, args, bar):
                        s, p, _, how = jobs[i]
                        row = store.stamp(_result_row(s, p, how, result, args.modes), fingerprint(s.problem_id))
                        store.append(store.keep_other_modes(row))
            except KeyboardInterrupt:
                interrupted = True
            finally:
                if bar is not None:
                    bar.close()
    if interrupted:
        print(f"microcoder-eval: interrupted; the verdicts so far are in {args.out}; rerun the same command to "
              "judge the rest", file=sys.stderr)
        return 130

    store.compact()  # one row per sample: the rows judged again replace the ones they superseded
    rows = [store.rows[s.key] for s in samples if s.key in store.rows]
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
