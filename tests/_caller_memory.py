"""Helper for tests/test_compare_memory.py: judge one large-output program in THIS process and print the
caller's resident-set growth as JSON (run as ``python tests/_caller_memory.py MODES SCENARIO...``).

Measures the caller (the process that compares), not the sandboxed child: VmRSS right before judging
(with the executor started and the problem built) and the peak (VmHWM, reset just before judging).
"""

from __future__ import annotations

import json
import sys
import time

MB = 1 << 20
CAP_MB = 64
# each program writes just under the 64 MiB output cap (the executor's default), so nothing is OLE
SIZE = CAP_MB * MB - 4096

SCENARIOS = {
    # stdin mode, small expected output
    "lines": (None, f"import sys\nsys.stdout.write('1\\n' * {SIZE // 2})\n", "1\n"),
    "tokens": (None, f"import sys\nsys.stdout.write('1 ' * {SIZE // 2})\n", "1\n"),
    "one_token": (None, f"import sys\nsys.stdout.write('7' * {SIZE})\n", "7\n"),
    # stdin mode, an expected output as large as the program's (a correct 64 MB answer): compared in full
    "equal_lines": (None, f"import sys\nsys.stdout.write(('12345 ' * 170 + '\\n') * {SIZE // 1021})\n",
                    ("12345 " * 170 + "\n") * (SIZE // 1021)),
    # call mode: large return values against a small expected value
    "value_list": ("f", f"def f(x):\n    return [1] * {SIZE // 2 - 16}\n", "[1]"),
    "value_strs": ("f", f"def f(x):\n    return ['ab'] * {SIZE // 5 - 16}\n", '["ab"]'),
    "value_str": ("f", f"def f(x):\n    return 'a' * {SIZE - 64}\n", '"a"'),
}


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(key)


def main() -> None:
    """argv: a compare spec ("default" or "default,lcb,microcoder": one judging pass in all of them) and
    one or more scenario names; prints one JSON line per scenario."""
    modes, scenarios = sys.argv[1], sys.argv[2:]
    from microcoder_fast.executor import Executor, Problem, TestCase

    with Executor(workers=1, compare=modes, output_limit_mb=CAP_MB, memory_limit_mb=1024) as ex:
        ex.judge([("print(1)", Problem([TestCase("", "1")]))])  # warm: threads and zygote started
        for scenario in scenarios:
            fn_name, program, expected = SCENARIOS[scenario]
            problem = Problem([TestCase("0\n" if fn_name is None else "0", expected)], fn_name=fn_name,
                              time_limit_s=20.0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            before = _status("VmRSS")
            t0 = time.perf_counter()
            (res,) = ex.judge([(program, problem)])
            seconds = time.perf_counter() - t0
            peak = _status("VmHWM")
            del problem, expected
            print(json.dumps({"mode": modes, "scenario": scenario,
                              "verdicts": {m: v.verdict.value for m, v in res.modes.items()},
                              "message": res.message[:120], "before_mb": before / MB, "peak_mb": peak / MB,
                              "growth_mb": (peak - before) / MB, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
