"""Executor: every verdict class, the real-judge idioms (accepted) and the traps (rejected), call mode,
bad input, streaming and futures. Isolation is in test_executor_isolation.py, the soak in
test_executor_soak.py."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import pytest

from microcoder_fast.executor import Executor, Problem, Result, TestCase, Verdict, compare

SUM = Problem(tests=[TestCase("3\n1 2 3\n", "6\n"), TestCase("2\n10 20\n", "30\n")], id="sum")


@pytest.fixture(scope="module")
def ex():
    with Executor(workers=2, time_limit_s=3.0, memory_limit_mb=1024) as e:
        yield e


def judge1(ex: Executor, code: str | bytes, problem: Problem = SUM, **kw) -> Result:
    (r,) = ex.judge([(code, problem)], **kw)
    return r


# --------------------------------------------------------------------------------------------------
# idioms a real judge accepts

IDIOMS = {
    "module_global": "n=int(input())\ns=0\ndef f():\n    global s\n    s=sum(map(int,input().split()))\nf()\nprint(s)",
    "stdin_buffer": "import sys\nd=sys.stdin.buffer.read().split()\nprint(sum(map(int,d[1:])))",
    "for_line_in_stdin": "import sys\nls=[l for l in sys.stdin]\nprint(sum(map(int,ls[1].split())))",
    "readline_and_readlines": "import sys\nn=int(sys.stdin.readline())\nrest=sys.stdin.readlines()\nprint(sum(map(int,rest[0].split())))",
    "open_0": "d=open(0).read().split()\nprint(sum(map(int,d[1:])))",
    "stdout_buffer_write": "import sys\nd=sys.stdin.read().split()\nsys.stdout.buffer.write(str(sum(map(int,d[1:]))).encode()+b'\\n')",
    "os_write_1": "import os,sys\nd=sys.stdin.read().split()\nos.write(1,(str(sum(map(int,d[1:])))+'\\n').encode())",
    "exit_builtin": "d=open(0).read().split()\nprint(sum(map(int,d[1:])))\nexit()",
    "sys_exit_0": "import sys\nd=open(0).read().split()\nprint(sum(map(int,d[1:])))\nsys.exit(0)",
    "os_exit_0_after_flush": "import os,sys\nd=open(0).read().split()\nprint(sum(map(int,d[1:])))\nsys.stdout.flush()\nos._exit(0)",
    "deep_recursion": (
        "import sys\nsys.setrecursionlimit(10**6)\ndef f(n): return 0 if n==0 else 1+f(n-1)\n"
        "assert f(200000)==200000\nd=open(0).read().split()\nprint(sum(map(int,d[1:])))"
    ),
    "deep_recursion_through_lru_cache": (
        "import sys\nfrom functools import lru_cache\nsys.setrecursionlimit(10**6)\n@lru_cache(None)\n"
        "def f(n): return 0 if n==0 else f(n-1)+1\nassert f(100000)==100000\n"
        "d=open(0).read().split()\nprint(sum(map(int,d[1:])))"
    ),
    "threading_stack_size": (
        "import sys,threading\nthreading.stack_size(2**26)\nsys.setrecursionlimit(10**6)\n"
        "def main():\n    def f(n): return 0 if n==0 else 1+f(n-1)\n    f(100000)\n"
        "    d=sys.stdin.read().split()\n    print(sum(map(int,d[1:])))\n"
        "t=threading.Thread(target=main)\nt.start()\nt.join()"
    ),
    "thread_not_joined": (
        "import sys,threading\ndef main():\n    d=sys.stdin.read().split()\n    print(sum(map(int,d[1:])))\n"
        "threading.Thread(target=main).start()"
    ),
    "big_int_over_4300_digits": (
        "x=10**5000\nassert len(str(x))==5001\nassert int('9'*5000)>0\nd=open(0).read().split()\n"
        "print(sum(map(int,d[1:])))"
    ),
    "numpy": "import numpy as np\nd=open(0).read().split()\nprint(int(np.array(list(map(int,d[1:]))).sum()))",
    "atexit_flush": (
        "import atexit,sys,io\nbuf=io.StringIO()\natexit.register(lambda: sys.__stdout__.write(buf.getvalue()))\n"
        "d=open(0).read().split()\nbuf.write(str(sum(map(int,d[1:])))+'\\n')"
    ),
    "main_guard": "def main():\n    d=open(0).read().split()\n    print(sum(map(int,d[1:])))\nif __name__=='__main__':\n    main()",
    "dataclass_in_main": (
        "from dataclasses import dataclass\n@dataclass\nclass A:\n    x: int\nd=open(0).read().split()\n"
        "print(A(sum(map(int,d[1:]))).x)"
    ),
    "input_rebound": "import sys\ninput=sys.stdin.readline\nn=int(input())\nprint(sum(map(int,input().split())))",
    "builtins_input_patched": (
        "import sys,builtins\nbuiltins.input=sys.stdin.readline\nn=int(input())\nprint(sum(map(int,input().split())))"
    ),
    "crlf_output": "import sys\nd=sys.stdin.read().split()\nsys.stdout.write(str(sum(map(int,d[1:])))+'\\r\\n')",
    "multiprocessing_pool": (
        "import multiprocessing as mp\ndef g(x): return x\nif __name__=='__main__':\n"
        "    d=open(0).read().split()\n    with mp.Pool(2) as p: r=p.map(g, list(map(int,d[1:])))\n    print(sum(r))"
    ),
    "tempfile_and_cwd_file": (
        "import tempfile\nwith tempfile.NamedTemporaryFile('w',delete=False) as f: f.write('x')\n"
        "open('local.txt','w').write('y')\nd=open(0).read().split()\nprint(sum(map(int,d[1:])))"
    ),
    "lazy_stdlib_imports": (
        "import xml.dom.minidom, csv, zlib, fractions, decimal, statistics\nd=open(0).read().split()\n"
        "print(sum(map(int,d[1:])))"
    ),
    "encoding_declaration_latin1": b"# -*- coding: latin-1 -*-\ns='\xe9'\nd=open(0).read().split()\nprint(sum(map(int,d[1:])))",
}


def test_idioms_are_accepted(ex):
    names = list(IDIOMS)
    results = ex.judge([(IDIOMS[n], SUM) for n in names], stop_on_first_failure=False)
    bad = {n: (r.verdict, r.message, [t.stderr_tail[-300:] for t in r.tests]) for n, r in zip(names, results)
           if r.verdict != Verdict.AC}
    assert not bad
    for r in results:
        assert (r.passed, r.total, r.reward) == (2, 2, 1.0)
        assert [t.verdict for t in r.tests] == [Verdict.AC, Verdict.AC]


def test_state_does_not_leak_between_tests(ex):
    # module state, sys.stdin buffering and patched builtins are fresh for every test
    code = "import sys\nif 'seen' in globals(): print('leak')\nseen=1\nprint(sys.stdin.read().split()[0])"
    p = Problem(tests=[TestCase(f"{i}\n", f"{i}\n") for i in range(6)])
    r = judge1(ex, code, p)
    assert r.verdict == Verdict.AC, r.message
    code2 = "import builtins\nif hasattr(builtins, 'marker'): print('leak')\nbuiltins.marker=1\nprint(input())"
    assert judge1(ex, code2, p).verdict == Verdict.AC


def test_standard_streams_and_io_files_are_fresh_for_every_test(ex):
    """Tests of one generation share a child and rotate through a few reused stdin/stdout/stderr files:
    a test's read-ahead, a replaced or closed stream, a reconfigured one, and a long output written by an
    earlier test on the same files never reach a later test."""
    code = (
        "import sys, os\n"
        "line = sys.stdin.readline().strip()\n"
        "print('x\\n' * 3000 if line == 'long' else line, end='' if line == 'long' else '\\n')\n"
        "sys.stderr.write('e' * 5000)\n"
        "if line == 'a':\n    sys.stdout.flush()\n    sys.stdout = open(os.devnull, 'w')\n"
        "if line == 'b':\n    sys.stdin.close()\n"
        "if line == 'c':\n    sys.stdout.reconfigure(line_buffering=True)\n"
    )
    words = ["long", "a", "b", "c", "short", "d", "e", "f", "long", "g"]
    p = Problem(tests=[TestCase(f"{w}\nrest of the input\n", "x\n" * 3000 if w == "long" else f"{w}\n")
                       for w in words])
    r = judge1(ex, code, p, stop_on_first_failure=False)
    assert [t.verdict for t in r.tests] == [Verdict.AC] * len(words), r.message
    assert all(t.stderr_tail.endswith("e" * 100) for t in r.tests)


# --------------------------------------------------------------------------------------------------
# verdict classes and traps


def test_wrong_answer(ex):
    r = judge1(ex, "print(7)")
    assert r.verdict == Verdict.WA and r.passed == 0 and r.total == 2 and r.reward == 0.0
    assert "expected" in r.message


def test_nonzero_exit_after_correct_output_is_runtime_error(ex):
    r = judge1(ex, "d=open(0).read().split()\nprint(sum(map(int,d[1:])))\nimport sys\nsys.exit(3)")
    assert r.verdict == Verdict.RE
    assert r.tests[0].exit_code == 3


def test_os_exit_nonzero_after_correct_output_is_runtime_error(ex):
    r = judge1(ex, "import os\nd=open(0).read().split()\nprint(sum(map(int,d[1:])),flush=True)\nos._exit(2)")
    assert r.verdict == Verdict.RE and r.tests[0].exit_code == 2
    # no exit status can pass for a judge failure
    for status in (111, 112, 113, 114):
        r = judge1(ex, f"import os\nos._exit({status})")
        assert r.verdict == Verdict.RE and r.tests[0].exit_code == status


def test_uncaught_exception_is_runtime_error_with_stderr_tail(ex):
    r = judge1(ex, "d=open(0).read().split()\nprint(sum(map(int,d[1:])))\nraise ValueError('boom42')")
    assert r.verdict == Verdict.RE
    assert "ValueError: boom42" in r.tests[0].stderr_tail
    assert 'File "solution.py", line 3' in r.tests[0].stderr_tail


def test_stderr_is_never_judged(ex):
    r = judge1(ex, "import sys\nd=open(0).read().split()\nsys.stderr.write('noise\\n'*1000)\nprint(sum(map(int,d[1:])))")
    assert r.verdict == Verdict.AC
    assert r.tests[0].stderr_tail.endswith("noise\n")


def test_fatal_signal_is_runtime_error(ex):
    r = judge1(ex, "import os,signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert r.verdict == Verdict.RE and r.tests[0].signal == signal.SIGSEGV


def test_time_limit(ex):
    p = Problem(tests=[TestCase("1\n", "1\n")], time_limit_s=0.5)
    t = time.perf_counter()
    r = judge1(ex, "while True: pass", p)
    assert r.verdict == Verdict.TLE
    assert time.perf_counter() - t < 5
    assert r.tests[0].wall_s >= 0.5


def test_time_limit_sleeping_program(ex):
    p = Problem(tests=[TestCase("1\n", "1\n")], time_limit_s=0.5)
    assert judge1(ex, "import time\ntime.sleep(30)\nprint(1)", p).verdict == Verdict.TLE


def test_memory_limit(ex):
    r = judge1(ex, "x = bytearray(2*1024**3)\nprint(6)")
    assert r.verdict == Verdict.MLE
    r = judge1(ex, "x = [0]*(10**9)\nprint(6)")
    assert r.verdict == Verdict.MLE


def test_output_limit():
    with Executor(workers=1, time_limit_s=3.0, output_limit_mb=1) as small:
        r = judge1(small, "import sys\nwhile True: sys.stdout.write('x'*10000)")
        assert r.verdict == Verdict.OLE
        r = judge1(small, "import os\nwhile True: os.write(1, b'y'*65536)")
        assert r.verdict == Verdict.OLE
        # exactly at the cap is fine
        p = Problem(tests=[TestCase("", "z" * (1024 * 1024 - 1) + "\n")])
        assert judge1(small, "print('z'*(1024*1024-1))", p).verdict == Verdict.AC


def test_compile_error_runs_no_test(ex):
    r = judge1(ex, "x = (")
    assert r.verdict == Verdict.CE and r.tests == [] and r.passed == 0 and r.total == 2
    assert "SyntaxError" in r.message


def test_nul_bytes_in_source(ex):
    r = judge1(ex, "print(6)\x00\n")
    assert r.verdict == Verdict.CE and "null" in r.message


def test_non_utf8_output_is_a_clear_wrong_answer(ex):
    r = judge1(ex, "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe6\\n')")
    assert r.verdict == Verdict.WA and r.tests[0].exit_code == 0
    r = judge1(ex, "import sys\nsys.stdout.buffer.write(b'6\\n')\nsys.stderr.buffer.write(b'\\xff\\xfe')")
    assert r.verdict == Verdict.WA  # second test (30) fails; undecodable stderr is kept, not fatal
    assert "\ufffd" in r.tests[0].stderr_tail


def test_non_utf8_source_is_compile_error(ex):
    assert judge1(ex, b"print('\xff')").verdict == Verdict.CE


def test_ten_megabyte_source(ex):
    code = "x = '" + "a" * (10 * 1024 * 1024) + "'\nd=open(0).read().split()\nprint(sum(map(int,d[1:])))"
    r = judge1(ex, code)
    assert r.verdict == Verdict.AC, r.message


def test_zero_tests_is_internal_error_never_accepted(ex):
    r = judge1(ex, "print(1)", Problem(tests=[]))
    assert r.verdict == Verdict.IE and r.reward == 0.0 and "no tests" in r.message


def test_float_tolerance_and_problem_override(ex):
    p = Problem(tests=[TestCase("", "0.3\n")])
    assert judge1(ex, "print(0.1+0.2)", p).verdict == Verdict.AC
    assert judge1(ex, "print(0.3001)", p).verdict == Verdict.WA
    loose = Problem(tests=[TestCase("", "0.3\n")], abs_tol=1e-2)
    assert judge1(ex, "print(0.3001)", loose).verdict == Verdict.AC
    ints = Problem(tests=[TestCase("", "1000000000000000000\n")])
    assert judge1(ex, "print(1e18)", ints).verdict == Verdict.WA


def test_stop_on_first_failure(ex):
    p = Problem(tests=[TestCase(f"{i}\n", f"{i}\n") for i in range(5)])
    code = "x=int(input())\nprint(x if x != 1 else -1)"
    r = judge1(ex, code, p, stop_on_first_failure=True)
    assert r.verdict == Verdict.WA and r.passed == 1 and r.total == 5 and len(r.tests) == 2
    r = judge1(ex, code, p, stop_on_first_failure=False)
    assert r.verdict == Verdict.WA and r.passed == 4 and len(r.tests) == 5
    assert [t.verdict for t in r.tests] == [Verdict.AC, Verdict.WA, Verdict.AC, Verdict.AC, Verdict.AC]


def test_refork_after_child_death_runs_remaining_tests(ex):
    # os._exit in test 1 kills the generation's child: the rest run in a fresh fork
    p = Problem(tests=[TestCase(f"{i}\n", f"{i}\n") for i in range(4)])
    code = "import os,sys\nx=int(input())\nprint(x)\nsys.stdout.flush()\nos._exit(0 if x != 1 else 5)"
    r = judge1(ex, code, p, stop_on_first_failure=False)
    assert [t.verdict for t in r.tests] == [Verdict.AC, Verdict.RE, Verdict.AC, Verdict.AC]
    code = "x=int(input())\nwhile x == 2: pass\nprint(x)"
    p2 = Problem(tests=[TestCase(f"{i}\n", f"{i}\n") for i in range(4)], time_limit_s=0.5)
    r = judge1(ex, code, p2, stop_on_first_failure=False)
    assert [t.verdict for t in r.tests] == [Verdict.AC, Verdict.AC, Verdict.TLE, Verdict.AC]


# --------------------------------------------------------------------------------------------------
# call mode

TWO_SUM = Problem(
    tests=[TestCase("[2,7,11,15]\n9", "[0, 1]"), TestCase("[3,2,4]\n6", "[1, 2]"), TestCase("[3,3]\n6\n", "[0,1]")],
    fn_name="twoSum",
)


def test_call_mode_solution_class(ex):
    code = (
        "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        d = {}\n"
        "        for i, x in enumerate(nums):\n            if target - x in d: return [d[target - x], i]\n"
        "            d[x] = i\n"
    )
    r = judge1(ex, code, TWO_SUM)
    assert r.verdict == Verdict.AC, r.message
    assert r.passed == 3


def test_call_mode_module_function_and_prelude(ex):
    p = Problem(tests=[TestCase("[3,1,2]", "[1, 2, 3]"), TestCase("[]", "[]")], fn_name="sort_it")
    code = "def sort_it(a):\n    h=list(a)\n    heapify(h)\n    return [heappop(h) for _ in range(len(h))]"
    assert judge1(ex, code, p).verdict == Verdict.AC


def test_call_mode_prelude_names_and_their_isolation_between_tests(ex):
    """The prelude is read through the module's __builtins__ (no per-test copy): its names resolve from
    annotations, eval and nested functions; `from math import *` shadows pow as on LeetCode; a test that
    rebinds a prelude name (module-level or in __builtins__ itself) leaves the next test untouched."""
    p = Problem(tests=[TestCase("2", "[true, 4.0, 1]"), TestCase("3", "[true, 9.0, 1]")], fn_name="f")
    code = (
        "class Solution:\n"
        "    def f(self, x: int) -> List[Any]:\n"
        "        d = defaultdict(int)\n"
        "        d[x] += 1\n"
        "        ok = eval('Optional[int]') is not None and callable(lambda: heapq.heappush)\n"
        "        out = [ok, pow(x, 2), d[x]]\n"
        "        globals()['defaultdict'] = None\n"
        "        __builtins__['pow'] = lambda a, b: 'poisoned'\n"
        "        __builtins__['Counter'] = None\n"
        "        return out\n"
    )
    r = judge1(ex, code, p, stop_on_first_failure=False)
    assert r.verdict == Verdict.AC, r.message
    assert r.passed == 2


def test_call_mode_fresh_solution_and_globals_per_test(ex):
    p = Problem(tests=[TestCase("1", "1"), TestCase("1", "1"), TestCase("1", "1")], fn_name="f")
    code = (
        "calls = 0\nclass Solution:\n    n = 0\n    def __init__(self):\n        Solution.n += 1\n"
        "    def f(self, x):\n        global calls\n        calls += 1\n        return calls * Solution.n * x\n"
    )
    assert judge1(ex, code, p).verdict == Verdict.AC


def test_call_mode_tuples_bools_and_ints(ex):
    p = Problem(tests=[TestCase("1", "[[1, 2], [3, 4]]")], fn_name="f")
    assert judge1(ex, "def f(x): return ((1, 2), (3, 4))", p).verdict == Verdict.AC
    pb = Problem(tests=[TestCase("1", "true")], fn_name="f")
    assert judge1(ex, "def f(x): return 1", pb).verdict == Verdict.WA
    assert judge1(ex, "def f(x): return True", pb).verdict == Verdict.AC
    pi = Problem(tests=[TestCase("1", "1")], fn_name="f")
    assert judge1(ex, "def f(x): return True", pi).verdict == Verdict.WA


def test_call_mode_errors(ex):
    assert judge1(ex, "class Solution:\n    def twoSum(self, a, t):\n        return [0,", TWO_SUM).verdict == Verdict.CE
    r = judge1(ex, "class Solution:\n    def other(self, a, t): return [0, 1]", TWO_SUM)
    assert r.verdict == Verdict.RE and "twoSum" in r.tests[0].message
    r = judge1(ex, "class Solution:\n    def twoSum(self, a, t): raise KeyError(5)", TWO_SUM)
    assert r.verdict == Verdict.RE and "KeyError" in r.tests[0].stderr_tail
    r = judge1(ex, "import sys\nclass Solution:\n    def twoSum(self, a, t): sys.exit(0)", TWO_SUM)
    assert r.verdict == Verdict.RE


def test_call_mode_bad_json_argument_is_internal_error_naming_the_test(ex):
    p = Problem(tests=[TestCase("[1,2]\n3", "[0, 1]"), TestCase("[1,2\n3", "[0, 1]")], fn_name="twoSum")
    r = judge1(ex, "class Solution:\n    def twoSum(self, a, t): return [0, 1]", p)
    assert r.verdict == Verdict.IE and "test 1" in r.message and "JSON" in r.message


def test_call_mode_bad_expected_json_is_internal_error(ex):
    p = Problem(tests=[TestCase("1", "[1,")], fn_name="f")
    r = judge1(ex, "def f(x): return [1]", p)
    assert r.verdict == Verdict.IE and "test 0" in r.tests[0].message


def test_compare_modes_are_selectable():
    assert set(compare.MODES) == {"default", "lcb", "microcoder"}
    with pytest.raises(ValueError, match="compare must be one of"):
        Executor(compare="fuzzy")


@pytest.mark.parametrize("mode,verdict", [("default", Verdict.WA), ("lcb", Verdict.AC)])
def test_lcb_mode_keeps_its_leniency(mode, verdict):
    p = Problem(tests=[TestCase("", "1000000000000000000\n")])
    with Executor(workers=1, compare=mode) as e:
        assert judge1(e, "print(1e18)", p).verdict == verdict


# --------------------------------------------------------------------------------------------------
# API shapes


def test_judge_keeps_input_order_and_accepts_generators(ex):
    from microcoder_fast.executor.api import JUDGE_CHUNK

    n = 2 * JUDGE_CHUNK + 7  # more than the two chunks judge() queues at a time
    slow = "import time\ntime.sleep(0.3)\nprint(0)"  # finishes after later items: results still in input order
    items = (((slow if i % JUDGE_CHUNK == 1 else f"print({i % 2})"), Problem(tests=[TestCase("", "0\n")]))
             for i in range(n))
    rs = ex.judge(items)
    assert [r.index for r in rs] == list(range(n))
    assert [r.verdict for r in rs] == [Verdict.AC if i % 2 == 0 or i % JUDGE_CHUNK == 1 else Verdict.WA
                                       for i in range(n)]
    # a bad item after the first chunks is a clear error
    bad = ((("print(0)", Problem(tests=[TestCase("", "0\n")])) if i < JUDGE_CHUNK + 3 else ("x", "no problem"))
           for i in range(JUDGE_CHUNK + 5))
    with pytest.raises(TypeError, match="Problem"):
        ex.judge(bad)


def test_judge_iter_streams_with_indices(ex):
    slow = ("import time\ntime.sleep(1.0)\nprint(0)", Problem(tests=[TestCase("", "0\n")]))
    fast = [(f"print({i})", Problem(tests=[TestCase("", f"{i}\n")])) for i in range(1, 6)]
    order = [r.index for r in ex.judge_iter([slow, *fast])]
    assert sorted(order) == list(range(6))
    assert order[-1] == 0  # the slow one finishes last


def test_submit_returns_future(ex):
    futs = [ex.submit(f"print({i})", Problem(tests=[TestCase("", f"{i}\n")])) for i in range(4)]
    done = [f.result(timeout=30) for f in concurrent.futures.as_completed(futs)]
    assert all(isinstance(r, Result) and r.verdict == Verdict.AC for r in done)


def test_bad_arguments_raise_clear_errors(ex):
    with pytest.raises(TypeError, match="Problem"):
        ex.submit("print(1)", {"tests": []})
    with pytest.raises(TypeError, match="code must be str or bytes"):
        ex.submit(123, SUM)
    with pytest.raises(TypeError, match="TestCase.input must be str"):
        TestCase(b"1", "1")
    with pytest.raises(ValueError, match="fn_name"):
        Problem(tests=[TestCase("1", "1")], fn_name="not an identifier")
    with pytest.raises(ValueError, match="workers"):
        Executor(workers=0)
    with pytest.raises(ValueError, match="time_limit_s"):
        Problem(tests=[TestCase("1", "1")], time_limit_s=0)


def test_problem_accepts_dicts_and_pairs():
    p = Problem(tests=[{"input": "1", "output": "2"}, ("3", "4")])
    assert p.tests == (TestCase("1", "2"), TestCase("3", "4"))


def test_closed_executor_refuses_work():
    e = Executor(workers=1)
    e.close()
    e.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        e.submit("print(1)", SUM)


def test_zygote_death_is_detected_and_restarted():
    with Executor(workers=1, time_limit_s=3.0) as e:
        pid = e._workers[0].zygote.pid
        os.kill(pid, signal.SIGKILL)
        r = judge1(e, "d=open(0).read().split()\nprint(sum(map(int,d[1:])))")
        assert r.verdict == Verdict.AC, r.message
        assert e._workers[0].zygote.pid != pid


def test_fork_cost_probe():
    with Executor(workers=1) as e:
        s = e.fork_exit_wait_s(20)
        assert 0 < s < 1.0


# every mapping of the zygote is copied by each fork and torn down by each child's exit: what the zygote
# imports for itself or pre-imports must be worth that in every generation
_NOT_IN_ZYGOTE = ("socket", "_socket", "select", "shutil", "zlib", "bz2", "lzma", "hashlib", "_hashlib", "base64")


def test_zygote_loads_only_what_generations_need_and_the_rest_still_imports(ex):
    probe = (f"import sys\nloaded = sorted(m for m in {_NOT_IN_ZYGOTE!r} if m in sys.modules)\n"
             "import hashlib, base64, shutil, socket\n"
             "print(loaded, hashlib.sha256(b'a').hexdigest()[:8], base64.b64encode(b'hi').decode())")
    r = judge1(ex, probe, Problem(tests=[TestCase("", "[] ca978112 aGk=\n")]))
    assert r.verdict == Verdict.AC, (r.tests[0].message, r.tests[0].stderr_tail)
    code = "import statistics\nprint(statistics.mean([1, 2, 3]))"  # a module outside PREIMPORT
    assert judge1(ex, code, Problem(tests=[TestCase("", "2\n")])).verdict == Verdict.AC


def test_input_larger_than_the_output_cap_arrives_whole():
    """An input the child could not write under its RLIMIT_FSIZE (the output cap) travels as its own file."""
    big = "".join(f"{i}\n" for i in range(20000))  # ~109 KB, over a 0.05 MB cap
    total = sum(range(20000))
    p = Problem(tests=[TestCase(big, f"{total}\n"), TestCase("1\n2\n", "3\n"), TestCase(big, f"{total}\n")])
    with Executor(workers=1, output_limit_mb=0.05) as small:
        r = judge1(small, "import sys\nprint(sum(map(int, sys.stdin.read().split())))", p)
        assert r.verdict == Verdict.AC, r.message
        flood = judge1(small, "print('y' * 200000)", Problem(tests=[TestCase("", "y")]))
        assert flood.verdict == Verdict.OLE


@pytest.mark.parametrize("code, verdicts", [
    # closes every harness descriptor: its answers still count, the next test gets a fresh child
    ("import os\nos.closerange(3, 256)\nprint(input())", ["AC"] * 5),
    # points the harness' descriptors at its stderr
    ("import os\nfor f in range(3, 40):\n    try:\n        os.dup2(2, f)\n    except OSError:\n        pass\n"
     "print(input())", ["AC"] * 5),
    # closes stdin/stdout, so its next open() takes fd 0: a later test must not lose its stdin to that object
    ("import os, sys\nx = input()\nos.close(1)\nos.close(0)\nsys.stdout = open('/dev/null', 'w')\n"
     "os.write(2, x.encode())", ["WA"] * 5),
    ("import os\nx = input()\nos.dup2(os.open('/dev/null', os.O_WRONLY), 0)\nprint(x)", ["AC"] * 5),
])
def test_programs_that_rearrange_descriptors_are_judged_per_test(ex, code, verdicts):
    p = Problem(tests=[TestCase(f"{i}\n", f"{i}\n") for i in range(5)])
    r = judge1(ex, code, p, stop_on_first_failure=False)
    assert [t.verdict.value for t in r.tests] == verdicts, [t.message for t in r.tests]
