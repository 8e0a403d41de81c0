"""Special judges: a problem's checker program decides a test instead of the output comparison.

``Problem(checker=SOURCE)``: SOURCE is Python that defines ``check(input, output, expected)``; it gets the
test's input text, the program's output (stdin mode: its stdout; call mode: its return value as the
executor's value encoding, which is plain JSON for lists, numbers, strings, booleans and null) and the
test's expected output, and returns ``True`` to accept, or ``False`` / a reason string to reject.

The checker runs in the sandbox like any program: as a call-mode program with one test, in a worker of
its own (its own zygote and child, never the program's process, so the expected output still never
reaches the process the program runs in). Its verdicts map to the program's test:

* the checker returns ``True``: AC; ``False`` or a reason: WA (the reason is the test's message);
* the checker fails (an exception, no ``check`` function, over its time or memory limit): IE, with a
  message naming the checker: a problem error, since a checker is problem data; a judge fault while
  running it (a lost zygote) is retried like any generation.

With several compare modes, every mode gets the checker's verdict. An output longer than
``compare.VALUE_RATIO`` times the expected output (plus ``compare.VALUE_SLACK``) is WA without running the
checker, so the caller's memory stays bounded by the problem's own data.

Pure construction and mapping; the worker runs the checker. Must not import ``threading``, ``_C``, the
worker module or the Executor.
"""

from __future__ import annotations

import json

from microcoder_fast.executor.compare import VALUE_RATIO, VALUE_SLACK
from microcoder_fast.executor.types import Problem, Result, TestCase, Verdict

CHECK_FN = "check"


def too_long(output: str | bytes, problem: Problem, k: int) -> str | None:
    """The reason an output is WA without running the checker, or None."""
    limit = VALUE_RATIO * len(problem.tests[k].output) + VALUE_SLACK
    if len(output) > limit:
        return (f"the output has {len(output)} characters, over {VALUE_RATIO} x the expected output's "
                f"{len(problem.tests[k].output)} + {VALUE_SLACK}: too long for the checker (not checked)")
    return None


def checker_problem(problem: Problem, k: int, output: str, time_limit_s: float) -> Problem:
    """The call-mode problem that runs ``problem``'s checker on test k's ``output``."""
    t = problem.tests[k]
    args = "\n".join(json.dumps(x) for x in (t.input, output, t.output))
    return Problem([TestCase(args, "true")], fn_name=CHECK_FN, time_limit_s=time_limit_s,
                   id=f"{problem.id or 'problem'}:checker")


def verdict(res: Result, k: int) -> tuple[Verdict, str]:
    """The program's test-k verdict from the checker's run."""
    if res.verdict == Verdict.AC:
        return Verdict.AC, ""
    if res.verdict == Verdict.WA:
        why = res.tests[0].message if res.tests else res.message
        return Verdict.WA, "the checker rejected the output: " + why.removeprefix("value: expected True, got ")
    return Verdict.IE, (f"test {k}: the problem's checker failed ({res.verdict.value}: {res.message}); fix the "
                        f"checker: it must define {CHECK_FN}(input, output, expected) and return True, False "
                        "or a reason string")
