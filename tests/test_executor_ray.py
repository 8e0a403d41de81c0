"""The Ray backend of the judge (executor/ray_backend.py) on a real multi-node Ray cluster in this process.

One cluster for the module (``ray.cluster_utils.Cluster``: a head and a worker node, one CPU and a 100 MB
object store each; a third node joins and leaves during the tests). Checked: verdicts identical to the
local Executor on a mixed suite, spread and back-pressure, streaming order, Ctrl-C cancelling, an actor
killed and a node removed mid-batch with every verdict right and each delivered once, a node added
mid-batch that receives work. Skipped with the reason when ray is not installed (the ``ray`` extra).
"""

from __future__ import annotations

import _thread
import threading
import time

import pytest

ray = pytest.importorskip("ray", reason='the Ray backend needs ray: pip install -e ".[ray]"')

from ray.cluster_utils import Cluster  # noqa: E402

from microcoder_fast.executor import Executor, Problem, TestCase, Verdict  # noqa: E402
from microcoder_fast.executor.ray_backend import RayExecutor  # noqa: E402

pytestmark = pytest.mark.slow

NODE = dict(num_cpus=1, object_store_memory=100 * 2**20)
# two compare modes: per-mode verdicts must cross the cluster too
OPTIONS = dict(time_limit_s=1.0, memory_limit_mb=512, output_limit_mb=1, compare=("default", "lcb"))


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args=dict(
        NODE, include_dashboard=False,
        # node death noticed within about a second (defaults: minutes on a busy host)
        _system_config={"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                        "health_check_initial_delay_ms": 0}))
    try:
        c.add_node(**NODE)
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def rex(cluster):
    ex = RayExecutor(workers_per_node=1, refresh_s=0.5, **OPTIONS)
    try:
        deadline = time.monotonic() + 60
        while len(ex.actors()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(ex.actors()) == 2, ex.stats()
        yield ex
    finally:
        ex.close()


ADD = Problem([TestCase("1 2\n", "3\n"), TestCase("5 5\n", "10\n"), TestCase("-1 1\n", "0\n")], id="add")
CALL = Problem([TestCase("1\n2\n", "3"), TestCase("[1]\n[2]\n", "[1, 2]")], fn_name="f", id="call")


def _mixed() -> list[tuple[str, Problem]]:
    good = "a, b = map(int, input().split())\nprint(a + b)\n"
    return [
        (good, ADD),
        ("a, b = map(int, input().split())\nprint(a - b)\n", ADD),  # WA on test 0
        ("a, b = map(int, input().split())\nprint(a + b if a > 0 else 7)\n", ADD),  # WA on test 2
        ("import sys\nsys.stderr.write('boom\\n')\nraise ValueError('x')\n", ADD),  # RE with stderr
        ("while True:\n    pass\n", ADD),  # TLE
        ("def f(:\n", ADD),  # CE
        ("x = bytearray(1 << 30)\n", ADD),  # MLE
        ("print('y' * (2 << 20))\n", ADD),  # OLE
        ("import sys\nsys.exit(3)\n", ADD),  # RE: exit status
        ("class Solution:\n    def f(self, a, b):\n        return a + b\n", CALL),
        ("class Solution:\n    def f(self, a, b):\n        return [a, b]\n", CALL),  # WA
        ("print(' 3 ')\n", Problem([TestCase("", "3\n")], id="spaces")),  # the modes may differ here
        (good, Problem([TestCase("1\n", "1")], fn_name="g", id="noclass")),  # call mode without a Solution
        (good, Problem([TestCase("{bad\n", "1")], fn_name="g", id="ie")),  # IE: inputs are not JSON
    ]


def _key(r) -> tuple:
    return (r.index, r.problem_id, r.verdict, r.passed, r.total, r.message, r.modes,
            [(t.index, t.verdict, t.exit_code, t.signal, t.message, t.verdicts, t.messages) for t in r.tests])


def _sleepers(n: int, seconds: float) -> tuple[list, list]:
    """n programs that sleep, alternately right (AC) and wrong (WA), and their expected verdicts."""
    items, want = [], []
    for i in range(n):
        ok = i % 2 == 0
        code = f"import time\ntime.sleep({seconds})\na, b = map(int, input().split())\nprint(a + b + {0 if ok else 1})\n"
        items.append((code, ADD))
        want.append(Verdict.AC if ok else Verdict.WA)
    return items, want


def _deltas(before: dict, after: dict, key: str) -> dict:
    return {k: v[key] - before.get(k, {}).get(key, 0) for k, v in after.items()}


def test_verdicts_match_local_executor_and_spread(rex):
    items = _mixed() * 2
    before = rex.stats()
    with Executor(workers=1, **OPTIONS) as local:
        want = local.judge(items, stop_on_first_failure=False)
    got = rex.judge(items, stop_on_first_failure=False)
    assert [_key(r) for r in got] == [_key(r) for r in want]
    assert {r.verdict for r in got} >= {Verdict.AC, Verdict.WA, Verdict.RE, Verdict.TLE, Verdict.CE, Verdict.MLE,
                                        Verdict.OLE, Verdict.IE}
    assert sum(len(r.modes) == 2 for r in got) >= len(items) - 2, [r.modes for r in got]
    # program output stays on the node unless asked for
    assert want[3].tests[0].stderr_tail.startswith("boom") and got[3].tests[0].stderr_tail == ""
    [asked] = rex.judge([items[3]], return_output=True)
    assert asked.tests[0].stderr_tail == want[3].tests[0].stderr_tail
    after = rex.stats()
    done = _deltas(before, after, "done")
    assert sum(done.values()) == len(items) + 1
    assert all(v >= 2 for v in done.values()), after  # both nodes judged
    assert all(s["max_inflight"] <= s["capacity"] == 2 for s in after.values()), after  # back-pressure


def test_submit_future_and_bad_input(rex):
    r = rex.submit("print(3)\n", ADD).result(timeout=60)
    assert r.verdict == Verdict.WA and r.index is None and r.problem_id == "add"
    with pytest.raises(TypeError, match="Problem"):
        rex.submit("print(1)", "not a problem")
    with pytest.raises(TypeError, match="unknown Executor option"):
        RayExecutor(workers_per_node=1, time_limit=3)
    with pytest.raises(RuntimeError, match="did not start on any Ray node.*compare must be"):
        RayExecutor(workers_per_node=1, compare="nope")  # a bad value fails on the nodes, reported here
    with pytest.raises(TypeError, match="workers_per_node"):
        Executor(backend="ray", workers=2)
    with pytest.raises(ValueError, match="backend must be"):
        Executor(backend="dask")
    # Executor(backend="ray") is the Ray judge, with the same methods
    with Executor(backend="ray", workers_per_node=1, **OPTIONS) as ex:
        assert isinstance(ex, RayExecutor)
        assert [r.verdict for r in ex.judge([("print(3)\n", ADD), ("a, b = map(int, input().split())\nprint(a + b)\n", ADD)])] == [
            Verdict.WA, Verdict.AC]


def test_streaming_yields_in_completion_order(rex):
    slow = ("import time\ntime.sleep(0.8)\nprint(int(input().split()[0]) + 2)\n",
            Problem([TestCase("1 2\n", "3\n")], time_limit_s=5))
    fast = [("a, b = map(int, input().split())\nprint(a + b)\n", ADD)] * 6
    order = [r.index for r in rex.judge_iter([slow] + fast)]
    assert sorted(order) == list(range(7))
    # the slow one goes first but comes back last or (one fast generation may queue behind it) next to last
    assert order[0] != 0 and 0 in order[-2:], order


def test_ctrl_c_cancels_queued_generations(rex):
    items, _ = _sleepers(20, 1.5)
    before = rex.stats()
    counts0 = {k: ray.get(a.counts.remote()) for k, a in rex.actors().items()}

    def interrupt_when_full() -> None:  # Ctrl-C once every node holds a running and a queued generation
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = [v for v in rex.stats().values() if v["alive"]]
            if len(s) == 2 and all(v["inflight"] == v["capacity"] for v in s):
                break
            time.sleep(0.02)
        _thread.interrupt_main()

    t = threading.Thread(target=interrupt_when_full)
    t.start()
    got = []
    with pytest.raises(KeyboardInterrupt):
        for r in rex.judge_iter(items):
            got.append(r)
    t.join()
    assert got == []
    deadline = time.monotonic() + 30
    while any(v["inflight"] for v in rex.stats().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    after = rex.stats()
    assert all(v["inflight"] == 0 for v in after.values()), after
    assert sum(_deltas(before, after, "sent").values()) == 4  # the rest never left the driver
    cancelled = sum(ray.get(a.counts.remote())["cancelled"] - counts0[k]["cancelled"]
                    for k, a in rex.actors().items())
    assert cancelled == 2  # the queued one on each node never started
    # and the executor goes on judging
    assert rex.judge([("a, b = map(int, input().split())\nprint(a + b)\n", ADD)])[0].verdict == Verdict.AC


def test_actor_killed_mid_batch(rex):
    items, want = _sleepers(16, 0.3)
    before = rex.stats()
    got = []
    victim = None
    for r in rex.judge_iter(items):
        got.append(r)
        if victim is None:
            stats = rex.stats()
            victim = max((k for k in rex.actors()), key=lambda k: stats[k]["inflight"])
            assert stats[victim]["inflight"] > 0
            ray.kill(rex.actors()[victim], no_restart=True)
    assert sorted(r.index for r in got) == list(range(len(items)))  # each delivered exactly once
    assert [r.verdict for r in sorted(got, key=lambda r: r.index)] == want
    after = rex.stats()
    assert after[victim]["lost"] - before[victim]["lost"] >= 1  # its generations were re-run elsewhere
    assert sum(_deltas(before, after, "done").values()) == len(items)  # none counted twice
    # the node is alive, so it gets a fresh actor
    deadline = time.monotonic() + 60
    while victim not in rex.actors() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert victim in rex.actors() and rex.stats()[victim]["actors"] == 2


def test_generation_whose_actor_dies_too_often_gets_ie(rex):
    items, want = _sleepers(8, 0.5)
    rex.max_losses = 1  # one actor death is already too many for the generations in flight on it
    got, victim = [], None
    try:
        for r in rex.judge_iter(items):
            got.append(r)
            if victim is None:
                stats = rex.stats()
                victim = max(rex.actors(), key=lambda k: stats[k]["inflight"])
                ray.kill(rex.actors()[victim], no_restart=True)
    finally:
        rex.max_losses = 3
    assert sorted(r.index for r in got) == list(range(len(items)))
    for r in got:
        if r.verdict == Verdict.IE:
            assert "died 1 time(s) (max_losses=1)" in r.message and r.total == 3
        else:
            assert r.verdict == want[r.index]
    assert any(r.verdict == Verdict.IE for r in got)
    deadline = time.monotonic() + 60
    while victim not in rex.actors() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert victim in rex.actors()


def test_stalled_actor_is_written_off(rex):
    """An actor that stops answering while Ray still reports it alive (SIGSTOP): its generations are
    overdue, so it is killed and they run elsewhere."""
    import os
    import signal

    items, want = _sleepers(12, 0.3)
    before = rex.stats()
    rex.stall_timeout_s = 5.0
    pid = victim = None
    got = []
    try:
        for r in rex.judge_iter(items):
            got.append(r)
            if pid is None:
                stats = rex.stats()
                victim = max(rex.actors(), key=lambda k: stats[k]["inflight"])
                pid = ray.get(rex.actors()[victim].ready.remote())["pid"]
                os.kill(pid, signal.SIGSTOP)
    finally:
        rex.stall_timeout_s = None
        if pid is not None:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert sorted(r.index for r in got) == list(range(len(items)))
    assert [r.verdict for r in sorted(got, key=lambda r: r.index)] == want
    after = rex.stats()
    assert after[victim]["lost"] - before[victim]["lost"] >= 1
    assert sum(_deltas(before, after, "done").values()) == len(items)
    deadline = time.monotonic() + 60
    while victim not in rex.actors() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert victim in rex.actors()  # a fresh actor on the same node


def test_node_added_then_removed_mid_batch(rex, cluster):
    old = set(rex.actors())
    added: dict = {}

    def items():  # keeps the batch going until the new node has judged something (bounded)
        base, _ = _sleepers(2, 0.3)
        for i in range(400):
            if i == 4:
                added["node"] = cluster.add_node(**NODE)
            new = [k for k in rex.stats() if k not in old]
            if new and rex.stats()[new[0]]["done"] >= 2:
                return
            yield base[i % 2]

    got = list(rex.judge_iter(items()))
    assert sorted(r.index for r in got) == list(range(len(got))) and len(got) < 400
    assert all(r.verdict == (Verdict.AC if r.index % 2 == 0 else Verdict.WA) for r in got)
    [new] = [k for k in rex.stats() if k not in old]
    assert rex.stats()[new]["done"] >= 2  # the node that joined mid-batch received work

    batch, want = _sleepers(16, 0.3)
    before = rex.stats()
    got = []
    for r in rex.judge_iter(batch):
        got.append(r)
        if "node" in added and rex.stats()[new]["inflight"] > 0:
            cluster.remove_node(added.pop("node"))
    assert "node" not in added
    assert sorted(r.index for r in got) == list(range(len(batch)))
    assert [r.verdict for r in sorted(got, key=lambda r: r.index)] == want
    after = rex.stats()
    assert after[new]["lost"] - before[new]["lost"] >= 1 and not after[new]["alive"]
    assert sum(_deltas(before, after, "done").values()) == len(batch)


def test_trainer_wiring_judge_backend_ray(cluster):
    from microcoder_fast.data.problem import CodeProblem
    from microcoder_fast.rl.config import ConfigError, load_config
    from microcoder_fast.rl.rewards import RewardJudge

    cfg = load_config(overrides={"judge_backend": "ray", "judge_address": "auto", "judge_workers_per_node": 1})
    assert (cfg.judge_backend, cfg.judge_workers_per_node) == ("ray", 1)
    with pytest.raises(ConfigError, match="judge_backend"):
        load_config(overrides={"judge_backend": "dask"})
    cp = CodeProblem("add", "add two numbers", private_tests=[TestCase("1 2\n", "3\n"), TestCase("2 2\n", "4\n")])
    judge = RewardJudge(time_limit_s=2.0, memory_limit_mb=512, backend=cfg.judge_backend,
                        address=cfg.judge_address, workers_per_node=cfg.judge_workers_per_node, ranks=2)
    try:
        assert isinstance(judge.executor, RayExecutor) and judge.executor.drivers == 2
        good = judge.submit("```python\na, b = map(int, input().split())\nprint(a + b)\n```", cp)
        bad = judge.submit("```python\nprint(3)\n```", cp)
        assert (good.result(60).outcome, bad.result(60).outcome) == ("pass", "fail")
    finally:
        judge.close()


def test_eval_cli_ray_matches_local(cluster, tmp_path, capsys):
    import json

    from microcoder_fast.cli.eval import main

    row = {"question_id": "add", "question_title": "A+B", "question_content": "Print a+b.", "platform": "atcoder",
           "contest_id": "abc1", "contest_date": "2025-02-01T00:00:00", "starter_code": "", "difficulty": "easy",
           "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"},
                                            {"input": "2 2\n", "output": "4\n", "testtype": "stdin"}]),
           "private_test_cases": "[]", "metadata": "{}"}
    (tmp_path / "p.jsonl").write_text(json.dumps(row) + "\n")
    codes = ["a, b = map(int, input().split())\nprint(a + b)\n", "print(3)\n", "while True:\n    pass\n", "def ("]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps({"question_id": "add", "code": c}) + "\n" for c in codes))
    rows = {}
    for name, extra in (("local", ["--workers", "1"]), ("ray", ["--ray", cluster.address, "--workers", "1"])):
        out = tmp_path / f"{name}.jsonl"
        assert main(["--problems", str(tmp_path / "p.jsonl"), "--samples", str(tmp_path / "s.jsonl"), "--out",
                     str(out), "--time-limit", "1", "--compare", "default,lcb", "--no-progress", *extra]) == 0
        rows[name] = sorted((r["line"], r["verdicts"]) for r in map(json.loads, out.read_text().splitlines()))
    assert rows["ray"] == rows["local"]  # rows are written as they arrive: compared in sample order
    assert [v["default"] for _, v in rows["ray"]] == ["AC", "WA", "TLE", "CE"]
    assert "pass@1" in capsys.readouterr().out
