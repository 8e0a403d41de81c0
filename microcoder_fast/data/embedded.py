"""The embedded tiny problem set: small stdin and call-mode problems, generated deterministically.

Used by the default ``microcoder-train`` run (no downloads) and by the tests. A problem combines an *input
format* (how the program gets its number n: one integer from stdin, the sum or product of two integers on a
line, the sum of a line of integers, or a function argument / the sum of two arguments in call mode) with an
*operation* on n stated in words ("print n doubled", "return n squared", ...). Its reference solution is
the format's reading code followed by the operation's expression.

Splits: for every operation, two formats (chosen by a fixed hash) are held out, so each held-out problem is
an unseen *combination* of a format and an operation that both appear in training. Measured with the
default run (150 warm-up steps): the tiny model composes the *format* part of unseen combinations correctly
but not the *operation* (near-greedy samples write the right reading code followed by an operation it saw
with that format, or a blend such as ``n * 1``), so held-out pass@1 starts near 0.01-0.05 and 40 GRPO steps,
which mostly sharpen per-problem answers on the 80 training problems, move it only within about two sampling
standard errors. A variant with a constant K in the operation ("n plus 7", held-out = one unseen K per
format and operation family) made held-out behave like train but gave the RL no room in the 10-minute budget
(training reward flat); it is not used.
Tests are computed by plain Python functions here (the reference solutions' semantics), never by running code.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass

from microcoder_fast.data.problem import CodeProblem, TestPair

TESTS_PER_PROBLEM = 4
HELDOUT_PER_OPERATION = 2


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


def _split_of(fmt: str, op: str) -> str:
    """Per operation, the ``HELDOUT_PER_OPERATION`` formats with the smallest hash are held out."""
    def h(f: _Format) -> bytes:
        return hashlib.sha256(f"microcoder-embedded:{op}:{f.name}".encode()).digest()

    held = [f.name for f in sorted(FORMATS, key=h)[:HELDOUT_PER_OPERATION]]
    return "heldout" if fmt in held else "train"


def _problem(fmt: _Format, op: _Operation) -> CodeProblem:
    rng = random.Random(f"{fmt.name}:{op.name}")
    cases: list[tuple[object, int]] = []
    while len(cases) < TESTS_PER_PROBLEM:
        x, n = fmt.make_input(rng)
        if all(x != c[0] for c in cases):
            cases.append((x, n))
    tests = []
    for x, n in cases:
        if fmt.fn_name is None:
            tests.append(TestPair(str(x), f"{op.fn(n)}\n"))
        else:  # LiveCodeBench functional encoding: one JSON value per argument line
            tests.append(TestPair("\n".join(json.dumps(a) for a in x), json.dumps(op.fn(n))))  # type: ignore[union-attr]
    if fmt.fn_name is None:
        question = f"{fmt.sentence} Print {op.words}."
        solution = f"{fmt.reading}print({op.expr})"
    else:
        question = f"{fmt.sentence} It returns {op.words}."
        solution = f"{fmt.reading}    return {op.expr}"
    return CodeProblem(
        id=f"embedded/{fmt.name}/{op.name}",
        question=question,
        starter_code=fmt.starter,
        fn_name=fmt.fn_name,
        public_tests=tests[:1],
        private_tests=tests[1:],
        difficulty="easy",
        platform="embedded",
        source="embedded",
        solution=solution,
        metadata={"format": fmt.name, "operation": op.name},
    )


def load_embedded(split: str = "train") -> list[CodeProblem]:
    """The embedded problems of ``split`` ("train", "heldout" or "all"), in a fixed order."""
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"load_embedded: unknown split {split!r}; use 'train', 'heldout' or 'all'")
    return [_problem(f, o) for o in OPERATIONS for f in FORMATS
            if split == "all" or _split_of(f.name, o.name) == split]
