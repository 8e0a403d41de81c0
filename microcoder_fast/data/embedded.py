"""The embedded tiny problem set: small stdin and call-mode problems, generated deterministically.

Used by the default ``microcoder-train`` run (no downloads) and by the tests. A *task* combines an *input
format* (how the program gets its number n: one integer from stdin, the sum or product of two integers on a
line, the sum of a line of integers, or a function argument / the sum of two arguments in call mode) with an
*operation* on n stated in words ("print n doubled", "return n squared", ...). Its reference solution is
the format's reading code followed by the operation's expression. A *problem* states a task after one of
``len(STORIES)`` context sentences ("A robot receives a signal."), which change nothing in the solution.

Splits (``load_embedded(split)``), per operation, with formats ordered by a fixed hash:

- ``heldout`` kind ``new_statement`` (``NEW_STATEMENT_PER_OPERATION`` formats): a task that is trained on,
  held out in one statement (one story, chosen by hash) that training never shows.
- ``heldout`` kind ``new_combination`` (``NEW_COMBINATION_PER_OPERATION`` formats): a format and an
  operation that both occur in training but never together; no statement of the task is trained on.
- ``train``: every other (task, story) pair. The supervised warm-up and the RL both use it.

The two held-out kinds measure different things and ``microcoder-train`` reports pass@1 for each. Measured
with the default run (README): the warm-up composes unseen combinations far better with six statements per task
than with one (pass@1 0.10-0.15 before RL instead of 0.00-0.05; likely because no one prompt per task can be memorised),
and in two of three seeds GRPO raises both kinds (new statements 0.45 -> 0.64 and 0.38 -> 0.54, unseen
combinations 0.10 -> 0.27 and 0.15 -> 0.26); the third seed stays flat. With one statement per task, GRPO's
gains stayed on the training prompts (held-out +0.015 mean over three seeds).
Tests are computed by plain Python functions here (the reference solutions' semantics), never by running code.

Imports ``data.problem`` and the executor's plain types; never torch, ``ops`` or ``rl``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass

from microcoder_fast.data.problem import CodeProblem
from microcoder_fast.executor.types import TestCase

TESTS_PER_PROBLEM = 4
NEW_STATEMENT_PER_OPERATION = 3
NEW_COMBINATION_PER_OPERATION = 2
STORIES: tuple[str, ...] = (
    "Alice is counting coins.",
    "A robot receives a signal.",
    "Bob keeps score in a game.",
    "A sensor logs a reading.",
    "Carol plays with numbers.",
    "A shop tallies its sales.",
)


@dataclass(frozen=True)
class _Format:
    name: str
    sentence: str  # statement text that introduces n
    reading: str  # code that defines n (stdin) / function header and body prefix (call)
    fn_name: str | None
    starter: str
    make_input: Callable[[random.Random], tuple[object, int]]  # (stdin text or call args, n)


@dataclass(frozen=True)
class _Operation:
    name: str
    words: str  # "n doubled"
    expr: str  # "n * 2"
    fn: Callable[[int], int]


def _int(r: random.Random) -> int:
    return r.randint(-30, 60)


def _pair_sum(r: random.Random) -> tuple[object, int]:
    a, b = _int(r), _int(r)
    return f"{a} {b}\n", a + b


def _pair_prod(r: random.Random) -> tuple[object, int]:
    a, b = r.randint(-9, 9), r.randint(-9, 9)
    return f"{a} {b}\n", a * b


def _line_sum(r: random.Random) -> tuple[object, int]:
    xs = [r.randint(-9, 20) for _ in range(r.randint(1, 5))]
    return " ".join(map(str, xs)) + "\n", sum(xs)


def _pair_diff(r: random.Random) -> tuple[object, int]:
    a, b = _int(r), _int(r)
    return f"{a} {b}\n", a - b


def _pair_max(r: random.Random) -> tuple[object, int]:
    a, b = _int(r), _int(r)
    return f"{a} {b}\n", max(a, b)


def _two_lines(r: random.Random) -> tuple[object, int]:
    a, b = _int(r), _int(r)
    return f"{a}\n{b}\n", a + b


def _line_max(r: random.Random) -> tuple[object, int]:
    xs = [r.randint(-9, 40) for _ in range(r.randint(1, 5))]
    return " ".join(map(str, xs)) + "\n", max(xs)


def _args_diff(r: random.Random) -> tuple[object, int]:
    a, b = _int(r), _int(r)
    return [a, b], a - b


def _list_arg(r: random.Random) -> tuple[object, int]:
    xs = [r.randint(-9, 20) for _ in range(r.randint(1, 5))]
    return [xs], sum(xs)


def _one(r: random.Random) -> tuple[object, int]:
    n = _int(r)
    return f"{n}\n", n


def _arg(r: random.Random) -> tuple[object, int]:
    n = _int(r)
    return [n], n


def _args_sum(r: random.Random) -> tuple[object, int]:
    a, b = _int(r), _int(r)
    return [a, b], a + b


FORMATS: tuple[_Format, ...] = (
    _Format("one", "Read an integer n from standard input.", "n = int(input())\n", None, "", _one),
    _Format("pair_sum", "Read two integers on one line and let n be their sum.",
            "a, b = map(int, input().split())\nn = a + b\n", None, "", _pair_sum),
    _Format("pair_prod", "Read two integers on one line and let n be their product.",
            "a, b = map(int, input().split())\nn = a * b\n", None, "", _pair_prod),
    _Format("line_sum", "Read a line of integers and let n be their sum.",
            "n = sum(map(int, input().split()))\n", None, "", _line_sum),
    _Format("pair_diff", "Read two integers on one line and let n be the first minus the second.",
            "a, b = map(int, input().split())\nn = a - b\n", None, "", _pair_diff),
    _Format("pair_max", "Read two integers on one line and let n be the larger of them.",
            "a, b = map(int, input().split())\nn = max(a, b)\n", None, "", _pair_max),
    _Format("two_lines", "Read two integers on two lines and let n be their sum.",
            "a = int(input())\nb = int(input())\nn = a + b\n", None, "", _two_lines),
    _Format("line_max", "Read a line of integers and let n be the largest of them.",
            "n = max(map(int, input().split()))\n", None, "", _line_max),
    _Format("call_one", "Complete the function f(n).", "def f(n):\n", "f", "def f(n):", _arg),
    _Format("call_sum", "Complete the function f(a, b) and let n be the sum of a and b.",
            "def f(a, b):\n    n = a + b\n", "f", "def f(a, b):", _args_sum),
    _Format("call_diff", "Complete the function f(a, b) and let n be a minus b.",
            "def f(a, b):\n    n = a - b\n", "f", "def f(a, b):", _args_diff),
    _Format("call_list", "Complete the function f(xs) and let n be the sum of the list xs.",
            "def f(xs):\n    n = sum(xs)\n", "f", "def f(xs):", _list_arg),
)

OPERATIONS: tuple[_Operation, ...] = (
    _Operation("double", "n doubled", "n * 2", lambda n: n * 2),
    _Operation("triple", "n tripled", "n * 3", lambda n: n * 3),
    _Operation("square", "n squared", "n * n", lambda n: n * n),
    _Operation("negate", "n negated", "-n", lambda n: -n),
    _Operation("inc", "n plus one", "n + 1", lambda n: n + 1),
    _Operation("dec", "n minus one", "n - 1", lambda n: n - 1),
    _Operation("half", "n halved, rounded down", "n // 2", lambda n: n // 2),
    _Operation("last", "the last digit of n", "abs(n) % 10", lambda n: abs(n) % 10),
)


def _hash_order(items: list[str], key: str) -> list[str]:
    return sorted(items, key=lambda x: hashlib.sha256(f"microcoder-embedded:{key}:{x}".encode()).digest())


def _split_of(fmt: str, op: str, story: int) -> tuple[str, str | None]:
    """``(split, held-out kind)`` of the problem stating task (``fmt``, ``op``) with story ``story``."""
    rank = _hash_order([f.name for f in FORMATS], op).index(fmt)
    if rank >= NEW_COMBINATION_PER_OPERATION + NEW_STATEMENT_PER_OPERATION:
        return "train", None
    held_story = int(_hash_order([str(i) for i in range(len(STORIES))], f"{op}:{fmt}")[0])
    if rank < NEW_COMBINATION_PER_OPERATION:  # the whole task is held out; one statement of it is evaluated
        return ("heldout", "new_combination") if story == held_story else ("unused", None)
    return ("heldout", "new_statement") if story == held_story else ("train", None)


def _problem(fmt: _Format, op: _Operation, story: int = 0, kind: str | None = None) -> CodeProblem:
    rng = random.Random(f"{fmt.name}:{op.name}")
    cases: list[tuple[object, int]] = []
    while len(cases) < TESTS_PER_PROBLEM:
        x, n = fmt.make_input(rng)
        if all(x != c[0] for c in cases):
            cases.append((x, n))
    tests = []
    for x, n in cases:
        if fmt.fn_name is None:
            tests.append(TestCase(str(x), f"{op.fn(n)}\n"))
        else:  # LiveCodeBench functional encoding: one JSON value per argument line
            tests.append(TestCase("\n".join(json.dumps(a) for a in x), json.dumps(op.fn(n))))  # type: ignore[union-attr]
    if fmt.fn_name is None:
        question = f"{STORIES[story]} {fmt.sentence} Print {op.words}."
        solution = f"{fmt.reading}print({op.expr})"
    else:
        question = f"{STORIES[story]} {fmt.sentence} It returns {op.words}."
        solution = f"{fmt.reading}    return {op.expr}"
    return CodeProblem(
        id=f"embedded/{fmt.name}/{op.name}/s{story}",
        question=question,
        starter_code=fmt.starter,
        fn_name=fmt.fn_name,
        public_tests=tests[:1],
        private_tests=tests[1:],
        difficulty="easy",
        platform="embedded",
        source="embedded",
        solution=solution,
        metadata={"format": fmt.name, "operation": op.name, "story": story,
                  **({"heldout_kind": kind} if kind else {})},
    )


def load_embedded(split: str = "train") -> list[CodeProblem]:
    """The embedded problems of ``split`` ("train", "heldout" or "all" = both), in a fixed order.

    Held-out problems carry ``metadata["heldout_kind"]`` ("new_statement" or "new_combination")."""
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"load_embedded: unknown split {split!r}; use 'train', 'heldout' or 'all'")
    out = []
    for o in OPERATIONS:
        for f in FORMATS:
            for story in range(len(STORIES)):
                where, kind = _split_of(f.name, o.name, story)
                if where != "unused" and split in (where, "all"):
                    out.append(_problem(f, o, story, kind))
    return out
