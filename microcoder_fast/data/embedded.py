"""The embedded tiny problem set: small stdin and call-mode problems, generated deterministically.

Used by the default ``microcoder-train`` run (no downloads) and by the tests. Each problem belongs to a
*family* (a program template) and carries one integer parameter ``K`` that appears in its statement and in
its reference solution, e.g. "print n + 7". A tiny byte-level model can learn the templates from a short
supervised warm-up; what it gets wrong is mostly copying ``K`` into the right place and choosing between
similar templates, which is exactly what reinforcement learning with a pass/fail reward can sharpen.

Splits: every (family, K) pair is assigned to ``train`` or ``heldout`` by a fixed hash (2 of the 8 values of K per
family go to ``heldout``), so held-out problems are unseen combinations of seen templates and seen digits.
Tests are computed by plain Python functions here (the reference solutions' semantics), never by running code.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from microcoder_fast.data.problem import CodeProblem, TestPair

K_VALUES = tuple(range(2, 10))
TESTS_PER_PROBLEM = 4


@dataclass(frozen=True)
class _Family:
    name: str
    statement: str  # format with K
    solution: str  # format with K
    fn_name: str | None  # None: stdin mode
    starter: str  # call mode starter code ("" for stdin)
    make_input: Callable[[random.Random], object]  # stdin: str; call: list of args
    answer: Callable[[object, int], object]  # stdin: str output; call: return value


def _ints(rng: random.Random, lo: int = -50, hi: int = 99) -> int:
    return rng.randint(lo, hi)


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 4)))


FAMILIES: tuple[_Family, ...] = (
    _Family(
        "add",
        "Read an integer n from standard input and print n + {K}.",
        "n = int(input())\nprint(n + {K})",
        None,
        "",
        lambda r: f"{_ints(r)}\n",
        lambda x, k: f"{int(str(x)) + k}\n",
    ),
    _Family(
        "sub",
        "Read an integer n from standard input and print n - {K}.",
        "n = int(input())\nprint(n - {K})",
        None,
        "",
        lambda r: f"{_ints(r)}\n",
        lambda x, k: f"{int(str(x)) - k}\n",
    ),
    _Family(
        "mul",
        "Read an integer n from standard input and print n * {K}.",
        "n = int(input())\nprint(n * {K})",
        None,
        "",
        lambda r: f"{_ints(r)}\n",
        lambda x, k: f"{int(str(x)) * k}\n",
    ),
    _Family(
        "mod",
        "Read a non-negative integer n from standard input and print n % {K}.",
        "n = int(input())\nprint(n % {K})",
        None,
        "",
        lambda r: f"{_ints(r, 0, 999)}\n",
        lambda x, k: f"{int(str(x)) % k}\n",
    ),
    _Family(
        "sum2",
        "Read two integers a and b on one line and print a + b + {K}.",
        "a, b = map(int, input().split())\nprint(a + b + {K})",
        None,
        "",
        lambda r: f"{_ints(r)} {_ints(r)}\n",
        lambda x, k: f"{sum(int(t) for t in str(x).split()) + k}\n",
    ),
    _Family(
        "rep",
        "Read a word s and print s repeated {K} times.",
        "s = input()\nprint(s * {K})",
        None,
        "",
        lambda r: f"{_word(r)}\n",
        lambda x, k: f"{str(x).strip() * k}\n",
    ),
    _Family(
        "max2",
        "Read two integers a and b on one line and print the larger of them plus {K}.",
        "a, b = map(int, input().split())\nprint(max(a, b) + {K})",
        None,
        "",
        lambda r: f"{_ints(r)} {_ints(r)}\n",
        lambda x, k: f"{max(int(t) for t in str(x).split()) + k}\n",
    ),
    _Family(
        "len",
        "Read a word s and print its length times {K}.",
        "s = input()\nprint(len(s) * {K})",
        None,
        "",
        lambda r: f"{_word(r)}\n",
        lambda x, k: f"{len(str(x).strip()) * k}\n",
    ),
    _Family(
        "lines",
        "Print the numbers 1 to {K}, one per line.",
        "for i in range(1, {K} + 1):\n    print(i)",
        None,
        "",
        lambda r: f"{r.randint(0, 9)}\n",
        lambda x, k: "".join(f"{i}\n" for i in range(1, k + 1)),
    ),
    _Family(
        "fsub",
        "Complete the function f(x) so that it returns x - {K}.",
        "def f(x):\n    return x - {K}",
        "f",
        "def f(x):",
        lambda r: [_ints(r)],
        lambda a, k: a[0] - k,  # type: ignore[index]
    ),
    _Family(
        "fpow",
        "Complete the function f(x) so that it returns x to the power {K}.",
        "def f(x):\n    return x ** {K}",
        "f",
        "def f(x):",
        lambda r: [_ints(r, -9, 9)],
        lambda a, k: a[0] ** k,  # type: ignore[index]
    ),
    _Family(
        "fadd",
        "Complete the function f(x) so that it returns x + {K}.",
        "def f(x):\n    return x + {K}",
        "f",
        "def f(x):",
        lambda r: [_ints(r)],
        lambda a, k: a[0] + k,  # type: ignore[index]
    ),
    _Family(
        "fmul",
        "Complete the function f(x) so that it returns x * {K}.",
        "def f(x):\n    return x * {K}",
        "f",
        "def f(x):",
        lambda r: [_ints(r)],
        lambda a, k: a[0] * k,  # type: ignore[index]
    ),
    _Family(
        "flist",
        "Complete the function f(xs) so that it returns the list xs with {K} added to every element.",
        "def f(xs):\n    return [x + {K} for x in xs]",
        "f",
        "def f(xs):",
        lambda r: [[_ints(r, 0, 9) for _ in range(r.randint(1, 3))]],
        lambda a, k: [x + k for x in a[0]],  # type: ignore[index]
    ),
)


HELDOUT_PER_FAMILY = 2


def _split_of(family: str, k: int) -> str:
    """Per family, the ``HELDOUT_PER_FAMILY`` values of K with the smallest hash are held out."""
    def h(v: int) -> bytes:
        return hashlib.sha256(f"microcoder-embedded:{family}:{v}".encode()).digest()

    held = sorted(K_VALUES, key=h)[:HELDOUT_PER_FAMILY]
    return "heldout" if k in held else "train"


def _problem(fam: _Family, k: int) -> CodeProblem:
    import json

    rng = random.Random(f"{fam.name}:{k}")
    inputs: list[object] = []
    while len(inputs) < TESTS_PER_PROBLEM:
        x = fam.make_input(rng)
        if x not in inputs:
            inputs.append(x)
    tests_in: list[str] = []
    tests_out: list[str] = []
    for x in inputs:
        y = fam.answer(x, k)
        if fam.fn_name is None:
            tests_in.append(str(x))
            tests_out.append(str(y))
        else:  # LiveCodeBench functional encoding: one JSON value per argument line
            tests_in.append("\n".join(json.dumps(a) for a in x))  # type: ignore[union-attr]
            tests_out.append(json.dumps(y))
    return CodeProblem(
        id=f"embedded/{fam.name}/{k}",
        question=fam.statement.format(K=k),
        starter_code=fam.starter,
        fn_name=fam.fn_name,
        public_tests=[TestPair(tests_in[0], tests_out[0])],
        private_tests=[TestPair(i, o) for i, o in zip(tests_in[1:], tests_out[1:])],
        difficulty="easy",
        platform="embedded",
        source="embedded",
        solution=fam.solution.format(K=k),
        metadata={"family": fam.name, "K": k},
    )


def load_embedded(split: str = "train") -> list[CodeProblem]:
    """The embedded problems of ``split`` ("train", "heldout" or "all"), in a fixed order."""
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"load_embedded: unknown split {split!r}; use 'train', 'heldout' or 'all'")
    out = []
    for fam in FAMILIES:
        for k in K_VALUES:
            if split == "all" or _split_of(fam.name, k) == split:
                out.append(_problem(fam, k))
    return out
