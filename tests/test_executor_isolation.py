"""Isolation properties of the executor, each checked from outside the sandbox: files, sockets to a
loopback listener, surviving processes, environment, privileges, and the expected answer staying out of
reach. Where this host does not allow a layer (no root, no namespaces) the affected test is skipped with
the reason the executor reports."""

from __future__ import annotations

import os
import secrets
import socket
import time
import uuid

import pytest

from microcoder_fast.executor import Executor, Problem, Result, TestCase, Verdict

OK = Problem(tests=[TestCase("", "ok\n")])


@pytest.fixture(scope="module")
def ex():
    os.environ["MCF_CALLER_SECRET"] = "caller-secret-" + secrets.token_hex(8)
    try:
        with Executor(workers=2, time_limit_s=5.0, memory_limit_mb=1024) as e:
            yield e
    finally:
        os.environ.pop("MCF_CALLER_SECRET", None)


def judge1(ex: Executor, code: str, problem: Problem = OK) -> Result:
    (r,) = ex.judge([(code, problem)])
    return r


def _procs_of_uid(uid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            out.append(int(d))
                        break
        except OSError:
            pass
    return out


def _gone(uid: int, within_s: float = 2.0) -> bool:
    """The worker kills a generation's leftovers as soon as its child exits (the result may be delivered
    a few milliseconds earlier) and always before its next generation starts."""
    deadline = time.monotonic() + within_s
    while _procs_of_uid(uid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_layers_are_reported(ex):
    layers = ex.layers
    for key in ("root", "uid", "namespaces", "filesystem", "kill_descendants", "seccomp"):
        assert key in layers


def _need(ex: Executor, what: str) -> None:
    layers = ex.layers
    if what == "mnt" and "mnt" not in layers.get("namespaces", []):
        pytest.skip(f"no mount namespace on this host: {layers.get('namespaces_error', 'not root')}")
    if what == "uid" and layers.get("uid") is None:
        pytest.skip("privileges are not dropped on this host (not root)")


def test_write_outside_work_dir_does_not_reach_host(ex, tmp_path):
    _need(ex, "mnt")
    marker = f"mcf-marker-{uuid.uuid4().hex}"
    targets = [f"/tmp/{marker}", str(tmp_path / marker), f"/dev/shm/{marker}", f"/var/tmp/{marker}",
               os.path.join(os.getcwd(), marker)]
    code = (
        "import os\n"
        f"for p in {targets!r}:\n"
        "    try:\n        open(p, 'w').write('x')\n    except OSError:\n        pass\n"
        "print('ok')"
    )
    assert judge1(ex, code).verdict == Verdict.AC
    for p in targets:
        assert not os.path.exists(p), p
    # and the next generation does not see what this one left in its own writable places
    leave = "open('left.txt','w').write('x')\nimport os\nopen('/dev/shm/left','w').write('x')\nprint('ok')"
    assert judge1(ex, leave).verdict == Verdict.AC
    look = "import os\nprint('ok' if not os.path.exists('left.txt') and not os.path.exists('/dev/shm/left') else 'seen')"
    for _ in range(4):  # both workers
        assert judge1(ex, look).verdict == Verdict.AC


def test_nothing_writable_outside_work_dir(ex):
    if ex.layers.get("uid") is None:
        pytest.skip("privileges are not dropped on this host (not root)")
    code = (
        "import os\nbad=[]\n"
        "for d in ['/', '/usr', '/etc', '/tmp', '/root', '/home', '/proc/1', '/work']:\n"
        "    try:\n        open(os.path.join(d, 'probe'), 'w').close()\n        bad.append(d)\n"
        "    except OSError:\n        pass\n"
        "print('ok' if not bad else bad)"
    )
    assert judge1(ex, code).verdict == Verdict.AC


def test_no_network_to_a_loopback_listener(ex):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    code = (
        "import socket\n"
        "try:\n"
        f"    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "    s.sendall(b'hello')\n    print('connected')\n"
        "except OSError as e:\n    print('ok')"
    )
    try:
        r = judge1(ex, code)
        assert r.verdict == Verdict.AC, r.message
        with pytest.raises(socket.timeout):
            srv.accept()
    finally:
        srv.close()


def test_setsid_double_fork_daemon_does_not_survive(ex):
    uid = ex.layers.get("uid")
    if uid is None:
        pytest.skip("no private uid on this host (not root): descendants are only killed by process group")
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.closerange(0, 1024)\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(0.1)\n"
        "print('ok')"
    )
    r = judge1(ex, code)
    assert r.verdict == Verdict.AC, r.message
    assert _gone(uid)
    # a background thread or child left running is killed with its generation, too
    r = judge1(ex, "import subprocess\nsubprocess.Popen(['sleep', '60'])\nprint('ok')")
    assert r.verdict == Verdict.AC, r.message
    assert _gone(uid)
    # and a daemon never meets the next generation of its worker
    if "pid" in ex.layers.get("namespaces", []):
        look = (
            "import os\nothers=[p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid())]\n"
            "print('ok' if not others else others)"
        )
        for _ in range(3):
            rs = ex.judge([(code, OK), (code, OK), (look, OK), (look, OK)])
            assert [r.verdict for r in rs] == [Verdict.AC] * 4, [r.message for r in rs]


def test_caller_environment_is_not_visible(ex):
    _need(ex, "uid")  # with the caller's uid, /proc/<caller>/environ would be readable
    code = (
        "import os\nfound=[k for k in os.environ if 'MCF_CALLER' in k]\n"
        "for d in os.listdir('/proc'):\n"
        "    if d.isdigit():\n"
        "        try:\n            found += ['env'] if b'MCF_CALLER' in open(f'/proc/{d}/environ','rb').read() else []\n"
        "        except OSError:\n            pass\n"
        "print('ok' if not found else found)"
    )
    assert "MCF_CALLER_SECRET" in os.environ
    assert judge1(ex, code).verdict == Verdict.AC


def test_privileges_dropped_and_judge_processes_out_of_reach(ex):
    if ex.layers.get("uid") is None:
        pytest.skip("privileges are not dropped on this host (not root)")
    code = (
        "import os, signal\nbad=[]\n"
        "if os.getuid() == 0 or os.geteuid() == 0: bad.append('root')\n"
        "for pid in {1, os.getppid()}:\n"
        "    try:\n        os.kill(pid, signal.SIGKILL)\n        bad.append(('kill', pid))\n"
        "    except OSError:\n        pass\n"
        "    try:\n        open(f'/proc/{pid}/mem','rb').read(1)\n        bad.append(('mem', pid))\n"
        "    except OSError:\n        pass\n"
        "try:\n    os.setuid(0)\n    bad.append('setuid')\nexcept OSError:\n    pass\n"
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "if libc.ptrace(16, os.getppid(), 0, 0) == 0: bad.append('ptrace')\n"  # PTRACE_ATTACH
        "print('ok' if not bad else bad)"
    )
    r = judge1(ex, code)
    assert r.verdict == Verdict.AC, (r.message, r.tests and r.tests[0].stderr_tail)
    r = judge1(ex, "print('ok')")
    assert r.verdict == Verdict.AC  # the zygote survived the attempts


def test_expected_answer_cannot_be_read_from_judge_memory(ex):
    """The program hunts for the expected output (a random token with a known prefix) everywhere it can
    reach: /proc of every visible process (environ, cmdline, mem via maps), its own memory, open
    descriptors, files under /tmp. It prints what it finds; finding nothing gives a wrong answer."""
    _need(ex, "uid")  # with the caller's uid its memory would be readable through /proc
    token = "MCFSECRET" + secrets.token_hex(12)
    p = Problem(tests=[TestCase("", token + "\n")])
    code = r'''
import os, re
pat = re.compile(rb"MCFSECRET[0-9a-f]{24}")
found = set()
def scan(b):
    for m in pat.findall(b or b""):
        found.add(m.decode())
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    for name in ("environ", "cmdline"):
        try:
            scan(open(f"/proc/{d}/{name}", "rb").read())
        except OSError:
            pass
    try:
        maps = open(f"/proc/{d}/maps").read().splitlines()
        with open(f"/proc/{d}/mem", "rb", 0) as mem:
            for line in maps:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                if "r" not in line.split()[1] or hi - lo > 1 << 28:
                    continue
                try:
                    mem.seek(lo)
                    scan(mem.read(hi - lo))
                except (OSError, ValueError, OverflowError):
                    pass
    except OSError:
        pass
for fd in range(0, 64):
    try:
        scan(os.pread(fd, 1 << 20, 0))
    except OSError:
        pass
for root, dirs, files in os.walk("/tmp"):
    for f in files:
        try:
            scan(open(os.path.join(root, f), "rb").read(1 << 20))
        except OSError:
            pass
print(next(iter(found)) if found else "nothing")
'''
    r = judge1(ex, code, p)
    assert r.verdict == Verdict.WA, (r.verdict, r.message)
    assert "got 'nothing'" in r.message  # it found nothing anywhere


def test_seccomp_blocks_dangerous_syscalls(ex):
    if not ex.layers.get("seccomp"):
        pytest.skip("seccomp is not available on this host")
    code = (
        "import socket, ctypes, os\nbad=[]\n"
        "try:\n    socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    bad.append('inet')\nexcept OSError:\n    pass\n"
        "a, b = socket.socketpair()\n"  # AF_UNIX stays available
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "if libc.unshare(0x10000000) == 0: bad.append('unshare-user')\n"  # CLONE_NEWUSER
        # SysV IPC and POSIX message queues (what an IPC namespace holds) are refused outright
        "for name, call in (('shmget', lambda: libc.shmget(0, 4096, 0o1600)), ('msgget', lambda: libc.msgget(0, 0o1600)),\n"
        "                   ('semget', lambda: libc.semget(0, 1, 0o1600)),\n"
        "                   ('mq_open', lambda: libc.mq_open(b'/q', os.O_CREAT | os.O_RDWR, 0o600, None))):\n"
        "    ctypes.set_errno(0)\n"
        "    if call() != -1 or ctypes.get_errno() != 1: bad.append(name)\n"  # EPERM
        # the filter installed once in the zygote (inherited), plus the child's own (mount, umount2) only if
        # it kept the caller's uid; mount is refused either way
        f"want = {1 if ex.layers.get('uid') is not None else 2}\n"
        "st = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
        "if st['Seccomp'].strip() != '2' or int(st.get('Seccomp_filters', want)) != want: bad.append('filters')\n"
        "if libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0 or libc.umount2(b'/proc', 2) == 0: bad.append('mount')\n"
        "print('ok' if not bad else bad)"
    )
    r = judge1(ex, code)
    assert r.verdict == Verdict.AC, (r.message, r.tests and r.tests[0].stderr_tail)
    if ex.layers.get("namespaces"):
        assert ex.layers["ipc"].startswith("SysV IPC and POSIX message queues refused")


def test_posix_shared_memory_and_semaphores_work_in_dev_shm(ex):
    # /dev/shm is a link into the generation's fresh tmpfs (with the minimal root): shm_open and sem_open
    # resolve it, so multiprocessing's shared memory and locks work
    code = (
        "from multiprocessing import shared_memory, Lock\n"
        "a = shared_memory.SharedMemory(create=True, size=64)\na.buf[0] = 42\n"
        "b = shared_memory.SharedMemory(a.name)\nv = b.buf[0]\nb.close(); a.close(); a.unlink()\n"
        "lk = Lock()\nwith lk:\n    print(v)"
    )
    r = judge1(ex, code, Problem(tests=[TestCase("", "42\n")]))
    assert r.verdict == Verdict.AC, (r.message, r.tests and r.tests[0].stderr_tail)


def test_a_python_installed_under_tmp_is_visible_in_the_sandbox(ex, tmp_path):
    """The minimal root is built on a tmpfs over /tmp and has a /tmp of its own: a venv under /tmp (CI makes
    one in a temporary directory) must still be bound, or a program that starts sys.executable (a
    subprocess, multiprocessing's resource tracker) fails where it works on the host."""
    if not ex.layers.get("root") or not ex.layers.get("namespaces"):
        pytest.skip("the minimal root needs root and namespaces")
    import subprocess
    import sys

    import microcoder_fast

    venv = tmp_path / "venv"
    assert str(venv).startswith("/tmp/")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    program = ("import subprocess, sys\nr = subprocess.run([sys.executable, '-c', 'import sys; print(sys.prefix)'], "
               "capture_output=True, text=True)\nprint(r.stdout.strip() == sys.prefix, r.stderr[-200:])")
    driver = (
        "import sys\nfrom microcoder_fast.executor import Executor, Problem, TestCase\n"
        "with Executor(workers=1, time_limit_s=5.0) as e:\n"
        f"    r = e.judge([({program!r}, Problem(tests=[TestCase('', 'True \\n')]))])[0]\n"
        "print(sys.prefix, r.verdict, r.tests[0].message if r.tests else r.message)"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(microcoder_fast.__file__)))
    out = subprocess.run([str(venv / "bin" / "python"), "-c", driver], capture_output=True, text=True, env=env,
                         timeout=120)
    got = out.stdout.split(maxsplit=2)
    assert len(got) >= 2, (out.returncode, out.stderr[-2000:])
    prefix, verdict, *why = got
    assert prefix == str(venv), (out.stdout, out.stderr[-2000:])
    assert verdict == "AC", (why, out.stderr[-2000:])


def test_host_is_left_clean_after_close():
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def children() -> set[int]:
        me = str(os.getpid())
        out = set()
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[1] == me:
                            out.add(int(d))
                except OSError:
                    pass
        return out

    before_fds, before_children = fds(), children()
    e = Executor(workers=2)
    pids = [s.zygote.pid for s in e._workers]
    uid = e.layers.get("uid")
    rs = e.judge([("import os\nif os.fork()==0:\n    import time; time.sleep(30)\nprint('ok')", OK)] * 6)
    assert all(r.verdict == Verdict.AC for r in rs)
    e.close()
    assert fds() == before_fds
    assert children() == before_children
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}")
    if uid is not None:
        assert _procs_of_uid(uid) == []
