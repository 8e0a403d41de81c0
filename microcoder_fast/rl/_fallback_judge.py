"""TEMPORARY FALLBACK — REMOVE when microcoder_fast.executor.Executor lands (issue 3).

A minimal stand-in with the executor's submit()/result interface so the trainer can run before the real
judge exists: each program runs in a fresh `python3 -I` subprocess per test with a timeout; stdout compared
after stripping trailing whitespace. It is NOT a sandbox and NOT the project's judge.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

_CALL = """
import json, sys
{code}
_args = [json.loads(l) for l in sys.stdin.read().splitlines() if l.strip()]
_fn = getattr(Solution(), {fn!r}) if 'Solution' in globals() else globals()[{fn!r}]
_r = _fn(*_args)
print(json.dumps(_r))
"""


@dataclass
class _Result:
    verdict: str
    passed: int
    total: int

    @property
    def reward(self) -> float:
        return 1.0 if self.verdict == "AC" else 0.0


class FallbackExecutor:
    def __init__(self, workers: int = 2, time_limit_s: float = 6.0, **_: Any) -> None:
        self.pool = ThreadPoolExecutor(workers)
        self.tl = time_limit_s

    def _run(self, code: str, problem: Any) -> _Result:
        tests = problem.tests
        fn = problem.fn_name
        src = _CALL.format(code=code, fn=fn) if fn else code
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=True) as f:
            f.write(src)
            f.flush()
            for i, t in enumerate(tests):
                try:
                    p = subprocess.run([sys.executable, "-I", f.name], input=t.input, capture_output=True,
                                       text=True, timeout=self.tl)
                except subprocess.TimeoutExpired:
                    return _Result("TLE", i, len(tests))
                if p.returncode != 0:
                    return _Result("RE", i, len(tests))
                out = p.stdout
                if fn:
                    try:
                        ok = json.loads(out) == json.loads(t.output)
                    except Exception:
                        ok = False
                else:
                    ok = [ln.rstrip() for ln in out.rstrip().splitlines()] == [
                        ln.rstrip() for ln in t.output.rstrip().splitlines()]
                if not ok:
                    return _Result("WA", i, len(tests))
        return _Result("AC", len(tests), len(tests))

    def submit(self, code: str, problem: Any) -> Future:
        return self.pool.submit(self._run, code, problem)

    def close(self) -> None:
        self.pool.shutdown()
