"""The zygote: a clean worker interpreter started by the supervisor with ``posix_spawn``.

It pre-imports the standard modules (and NumPy when asked), sets up the isolation layers it can (see
``microcoder_fast.executor`` for the list), reports them in its READY frame, then hands over to the C++
serve loop (``_C.sandbox.zygote_loop``), which forks one child per generation. Runs as
``python -I -c <bootstrap> <json config>`` with fd 3 = control socket.

Must not import ``threading``, ``random`` or anything that registers at-fork hooks (every forked child
would run them), nor the executor's api/worker modules.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys

# The whole environment of a zygote and of every program it runs (nothing of the caller's leaks in).
SCRUBBED_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
}

# Modules the judged programs commonly import: pre-imported so a generation pays nothing for them.
# Not threading, queue, random or statistics: their at-fork hooks would run in every forked child.
# Not hashlib or base64 either: every fork copies the zygote's page tables and every child's exit tears
# its copy down, so each mapping costs every generation; hashlib alone (OpenSSL's libcrypto, _hashlib,
# _blake2: 15 mappings, ~0.6 MB of written pages) cost ~37 us per bare fork + exit, base64 brings zlib
# (via binascii), and programs that import either are rare (they pay the import themselves).
PREIMPORT = (
    "abc array bisect builtins cmath collections collections.abc contextlib copy dataclasses datetime "
    "decimal enum fractions functools heapq io itertools json math numbers operator re "
    "string sys time typing unicodedata warnings weakref textwrap traceback "
    "linecache types struct pprint inspect dis"
).split()

PRELUDE_SOURCE = """
from typing import *
from collections import *
from heapq import *
from bisect import *
from math import *
from itertools import *
from functools import *
from string import *
import collections, heapq, bisect, math, itertools, functools, string, re, operator, sys, json
import copy, array, datetime, decimal, fractions, typing
random = _LazyModule("random")
statistics = _LazyModule("statistics")
try:
    from sortedcontainers import SortedList, SortedDict, SortedSet
except ImportError:
    pass
"""


class _LazyModule:
    """Stands in for a module in the call-mode prelude and imports it on first attribute access, so the
    zygote never imports it (see PREIMPORT)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> object:
        import importlib

        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<module {self._name!r} (imported on first use)>"


# ------------------------------------------------------------------------------------------------------
# isolation setup (runs once, as root, before any untrusted code exists)


def _bind_ro(sandbox, src: str, dst: str) -> None:  # noqa: ANN001
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not os.path.exists(dst):
            open(dst, "w").close()
    sandbox.mount(src, dst, "", sandbox.MS_BIND | sandbox.MS_REC, "")
    sandbox.mount(
        "", dst, "", sandbox.MS_REMOUNT | sandbox.MS_BIND | sandbox.MS_RDONLY | sandbox.MS_NOSUID | sandbox.MS_NODEV, ""
    )


def _covered(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


# With the minimal root, everything a generation may write lies on one tmpfs, fresh for every generation:
# the work dir (also $HOME and $TMPDIR) and the directory /dev/shm links to.
GEN_DIR = "/tmp/gen"


def build_minimal_root(sandbox, tmp_mb: int) -> None:  # noqa: ANN001
    """In a private mount namespace: a fresh root holding read-only binds of the system and Python
    directories only, a private /tmp, a minimal /dev (its shm a link into the generation's tmpfs) and the
    new PID namespace's /proc; then pivot_root. The caller's files (project, data, home directories) are
    simply not there."""
    sandbox.mount("", "/", "", sandbox.MS_REC | sandbox.MS_PRIVATE, "")
    links: dict[str, str] = {}
    roots: list[str] = []
    for d in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc"):
        if os.path.islink(d):
            links[d] = os.readlink(d)
        elif os.path.isdir(d):
            roots.append(d)
    py_dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    py_dirs.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    for p in sys.path:
        if p and os.path.isdir(p) and ("site-packages" in p or "dist-packages" in p):
            py_dirs.add(os.path.realpath(p))
    for d in sorted(py_dirs, key=len):
        d = os.path.realpath(d)
        # a directory holding /tmp/gen (the generation's tmpfs) cannot be bound read-only
        if os.path.isdir(d) and not _covered(d, roots) and not _covered(GEN_DIR, [d]):
            roots.append(d)
    # The new root is built on a tmpfs over /tmp, which hides what the host has there, and the sandbox's
    # own /tmp would hide binds below it: a Python (a venv, as CI makes) under /tmp is bound from a handle
    # taken now, after the sandbox's /tmp is mounted
    held: dict[str, int] = {}
    try:
        for d in roots:
            if _covered(d, ["/tmp"]):
                held[d] = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        sandbox.mount("tmpfs", "/tmp", "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NODEV, "size=64m,mode=0755")
        new = "/tmp/root"
        os.mkdir(new, 0o755)
        sandbox.mount("tmpfs", new, "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NODEV, "size=16m,mode=0755")
        for d, target in links.items():
            os.symlink(target, new + d)
        # /tmp itself is not writable by the generation: its private work directory (also $TMPDIR) is
        os.makedirs(new + "/tmp", mode=0o755)
        sandbox.mount("tmpfs", new + "/tmp", "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NODEV,
                      f"size={tmp_mb}m,mode=0755")
        for d in roots:
            _bind_ro(sandbox, f"/proc/self/fd/{held[d]}" if d in held else d, new + d)
    finally:
        for fd in held.values():
            os.close(fd)
    # a venv's bin/python is a symlink into the base install: both paths are bound above
    os.makedirs(new + "/dev", mode=0o755)
    sandbox.mount("tmpfs", new + "/dev", "tmpfs", sandbox.MS_NOSUID, "size=1m,mode=0755")
    for name in ("null", "zero", "full", "random", "urandom"):
        open(new + "/dev/" + name, "w").close()
        sandbox.mount("/dev/" + name, new + "/dev/" + name, "", sandbox.MS_BIND, "")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, new + "/dev/" + name)
    os.symlink(GEN_DIR + "/shm", new + "/dev/shm")  # shm_open and sem_open resolve it
    os.makedirs(new + "/proc", mode=0o555)
    sandbox.mount("proc", new + "/proc", "proc", sandbox.MS_NOSUID | sandbox.MS_NODEV | sandbox.MS_NOEXEC, "")
    # read-only root once everything is in place
    os.chdir(new)
    sandbox.pivot_root(".", ".")
    sandbox.umount2(".", sandbox.MNT_DETACH)
    os.chdir("/")
    sandbox.mount("", "/", "", sandbox.MS_REMOUNT | sandbox.MS_BIND | sandbox.MS_RDONLY | sandbox.MS_NOSUID, "")


def private_tmp_only(sandbox, tmp_mb: int) -> None:  # noqa: ANN001
    """Fallback when pivot_root fails: keep the host tree but give the namespace private writable dirs."""
    sandbox.mount("", "/", "", sandbox.MS_REC | sandbox.MS_PRIVATE, "")
    sandbox.mount("tmpfs", "/tmp", "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NODEV, f"size={tmp_mb}m,mode=0755")
    for d in ("/dev/shm", "/var/tmp", "/run/lock"):
        if os.path.isdir(d):
            sandbox.mount("tmpfs", d, "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NODEV, f"size={tmp_mb}m,mode=1777")


# ------------------------------------------------------------------------------------------------------
# memory and process limits of a generation: one cgroup per zygote, which the zygote itself joins so that
# each generation child is born in it (a per-generation move into a v1 cgroup takes the kernel's
# cgroup_threadgroup_rwsem, whose writer may wait for an RCU grace period: milliseconds); children raise
# their oom_score_adj to 1000 so the OOM killer picks them, never the zygote, and the zygote's own usage is
# added to the limit


def _own_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class CgroupSetup:
    """The zygote's generation cgroup (memory limit counting memfds, tmpfs and shared memory; pids
    limit), made under the caller's own cgroup so its limits nest. The zygote moves itself into it; each
    generation child sets its oom_score_adj to ``child_oom_adj`` (1000, before dropping privileges), so
    the cgroup's OOM killer, which ranks by RSS + oom_score_adj x limit / 1000, picks a generation
    process over the zygote whenever the zygote's RSS is below the limit (``finish`` checks). Lowering
    the zygote's own value to -1000 would need CAP_SYS_RESOURCE, which containers often lack. ``finish``
    raises the limits by what the zygote holds after start-up. Holds the descriptors needed after
    pivot_root (the paths vanish from view). ``describe`` is None if no cgroup could be made (not root,
    no writable memory controller): RLIMIT_AS is then the only memory limit."""

    def __init__(self) -> None:
        self.reset: list[int] = []  # counters zeroed before each generation
        self.oom = -1  # "oom_kill N" source
        self.peak = -1  # peak usage source
        self.child_oom_adj = ""  # what each generation child writes to its oom_score_adj ("": nothing)
        self.dirs: list[str] = []  # created directories (host paths), removed at exit
        self._parents: list[tuple[int, str]] = []  # (parent dir fd, name) to rmdir after pivot_root
        self._joined: list[int] = []  # parent dir fds of the cgroups the zygote is in (to leave them)
        self._finish: list[tuple[int, int, list[int], int]] = []  # (usage fd, base limit, limit fds, is pids)
        self.memory_bytes = 0
        self.zygote_bytes = 0  # the zygote's own charge after start-up, added to the memory limit
        self.describe: str | None = None
        self.error: str | None = None

    @staticmethod
    def _own_paths() -> dict[str, str]:
        paths = {}
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for c in controllers.split(",") if controllers else [""]:
                    paths[c] = path
        return paths

    def _mkdir(self, parent: str, name: str) -> str:
        d = os.path.join(parent, name)
        try:
            os.rmdir(d)  # a leftover of a zygote that had this pid and was killed
        except OSError:
            pass
        os.mkdir(d)
        self.dirs.append(d)
        self._parents.append((os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), name))
        return d

    @staticmethod
    def _write(path: str, value: str, must: bool = True) -> None:
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError:
            if must:
                raise

    @staticmethod
    def _open(path: str, flags: int) -> int:
        return os.open(path, flags | os.O_CLOEXEC)

    @staticmethod
    def _move_self(dir_fd: int, procs: str) -> None:
        """Move this process into the cgroup whose cgroup.procs is ``procs`` (relative to ``dir_fd``)."""
        fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    def _join(self) -> None:
        """Move the zygote into every created cgroup (its children are born there)."""
        for parent_fd, name in self._parents:
            self._move_self(parent_fd, f"{name}/cgroup.procs")
            self._joined.append(parent_fd)

    def _leave(self) -> None:
        for parent_fd in self._joined:
            try:
                self._move_self(parent_fd, "cgroup.procs")
            except OSError:
                pass
        self._joined.clear()

    def setup(self, name: str, memory_bytes: int, pids: int) -> None:
        try:
            self.memory_bytes = memory_bytes
            if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                self._setup_v2(name, memory_bytes, pids)
            else:
                self._setup_v1(name, memory_bytes, pids)
            self._join()
            self.child_oom_adj = "1000"
        except OSError as e:
            self.abandon(str(e))

    def abandon(self, error: str) -> None:
        """No cgroup layer after all: leave and remove what was made (RLIMIT_AS remains)."""
        self.error = error
        self.close()
        self.describe, self.child_oom_adj = None, ""

    def _setup_v1(self, name: str, memory_bytes: int, pids: int) -> None:
        own = self._own_paths()
        mem = self._mkdir("/sys/fs/cgroup/memory" + own["memory"], name)
        self._write(f"{mem}/memory.limit_in_bytes", str(memory_bytes))
        self._write(f"{mem}/memory.memsw.limit_in_bytes", str(memory_bytes), must=False)  # no swap either
        self.reset += [self._open(f"{mem}/memory.max_usage_in_bytes", os.O_WRONLY)]
        self.oom = self._open(f"{mem}/memory.oom_control", os.O_RDONLY)
        self.peak = self._open(f"{mem}/memory.max_usage_in_bytes", os.O_RDONLY)
        limits = [self._open(f"{mem}/memory.limit_in_bytes", os.O_WRONLY)]
        try:  # raised before memory.limit_in_bytes (it may never be below it)
            limits.insert(0, self._open(f"{mem}/memory.memsw.limit_in_bytes", os.O_WRONLY))
        except OSError:
            pass
        self._finish.append((self._open(f"{mem}/memory.usage_in_bytes", os.O_RDONLY), memory_bytes, limits, 0))
        what = f"cgroup v1 memory.limit_in_bytes={memory_bytes}"
        if "pids" in own:
            pid_dir = self._mkdir("/sys/fs/cgroup/pids" + own["pids"], name)
            self._write(f"{pid_dir}/pids.max", str(pids + 1))
            self._finish.append((self._open(f"{pid_dir}/pids.current", os.O_RDONLY), pids,
                                 [self._open(f"{pid_dir}/pids.max", os.O_WRONLY)], 1))
            what += f", pids.max={pids}"
        self.describe = what

    def _setup_v2(self, name: str, memory_bytes: int, pids: int) -> None:
        own = self._own_paths()
        parent = "/sys/fs/cgroup" + own[""]
        # the controllers must be enabled for children of the caller's cgroup (fails if the caller's
        # cgroup holds processes and is not the root: then there is no cgroup layer)
        self._write(f"{parent}/cgroup.subtree_control", "+memory +pids")
        d = self._mkdir(parent, name)
        self._write(f"{d}/memory.max", str(memory_bytes))
        self._write(f"{d}/memory.swap.max", "0", must=False)
        self._write(f"{d}/pids.max", str(pids + 1))
        self.oom = self._open(f"{d}/memory.events", os.O_RDONLY)
        self._finish += [(self._open(f"{d}/memory.current", os.O_RDONLY), memory_bytes,
                          [self._open(f"{d}/memory.max", os.O_WRONLY)], 0),
                         (self._open(f"{d}/pids.current", os.O_RDONLY), pids,
                          [self._open(f"{d}/pids.max", os.O_WRONLY)], 1)]
        self.describe = f"cgroup v2 memory.max={memory_bytes}, pids.max={pids}"

    def finish(self) -> None:
        """Once the zygote is fully started (before serving): each limit becomes the generation's limit
        plus what the zygote itself holds (memory charged since it joined; its own process count)."""
        while self._finish:
            usage_fd, base, limit_fds, is_pids = self._finish[0]
            held = int(os.pread(usage_fd, 64, 0).split()[0])
            if not is_pids:
                self.zygote_bytes = held
            for fd in limit_fds:
                os.pwrite(fd, str(base + held).encode(), 0)
            self._finish.pop(0)
            for fd in (usage_fd, *limit_fds):
                os.close(fd)
        rss = _own_rss_bytes()
        if self.describe and rss >= self.memory_bytes + self.zygote_bytes:
            raise OSError(f"the zygote's RSS ({rss} bytes) is not below the generation memory limit: the OOM "
                          "killer could pick the zygote; raise memory_limit_mb")
        if self.describe:
            self.describe += f" (each plus the zygote's own: {self.zygote_bytes} bytes, its processes)"

    def close(self) -> None:
        """Leave and remove the directories (the zygote's generations are gone)."""
        for fd in [*self.reset, self.oom, self.peak]:
            if fd >= 0:
                os.close(fd)
        self.reset, self.oom, self.peak = [], -1, -1
        for usage_fd, _, limit_fds, _ in self._finish:
            for fd in (usage_fd, *limit_fds):
                os.close(fd)
        self._finish.clear()
        self._leave()
        for parent_fd, name in reversed(self._parents):
            try:
                os.rmdir(name, dir_fd=parent_fd)
            except OSError:
                pass
            os.close(parent_fd)
        self._parents.clear()


class Zygote:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        # fd 3 stays a bare descriptor: the socket module and shutil (needed only when there is no tmpfs)
        # would map five more extension modules (_socket, select, zlib, _bz2, _lzma) and three libraries
        # into the zygote, and every fork copies its mappings (186 -> 150 of them without: bare fork + exit
        # 583 -> 515 us here)
        self.sock = 3
        os.set_blocking(self.sock, True)
        self.layers: dict = {}
        self.pid1 = False
        self.uid = -1
        self.gid = -1

    # --- startup ---------------------------------------------------------------------------------------
    def preimport(self) -> None:
        import importlib

        for name in PREIMPORT:
            try:
                importlib.import_module(name)
            except Exception:
                pass
        self.layers["numpy_preimported"] = False
        if self.cfg.get("preimport_numpy", True):
            try:
                import numpy  # noqa: F401

                self.layers["numpy_preimported"] = True
            except Exception:
                self.layers["numpy_preimported"] = False
        from microcoder_fast import _C  # noqa: F401
        from microcoder_fast.executor import _child

        from microcoder_fast.executor.compare import encode_value

        self.child = _child
        self.encode_value = encode_value
        self.prelude: dict = {"_LazyModule": _LazyModule}
        exec(compile(PRELUDE_SOURCE, "<prelude>", "exec"), self.prelude)
        self.prelude.pop("_LazyModule", None)
        self.prelude.pop("__builtins__", None)
        import builtins

        self.builtins_snapshot = dict(builtins.__dict__)
        # Call mode reads the prelude's names through the module's __builtins__ (a dict: the builtins with
        # the prelude on top, as LeetCode's star imports shadow e.g. pow with math.pow), so a test's fresh
        # module starts empty: copying ~400 names into it would touch (copy-on-write) every page that
        # holds one of those objects, in every generation child.
        self.call_builtins = dict(self.builtins_snapshot)
        self.call_builtins.update(self.prelude)
        self.call_builtins_snapshot = dict(self.call_builtins)

    def setup_isolation(self) -> None:
        from microcoder_fast._C import sandbox

        self.sandbox = sandbox
        cfg = self.cfg
        is_root = os.geteuid() == 0
        self.layers["root"] = is_root
        outer_pid = os.getpid()
        if is_root and cfg.get("drop_privileges", True):
            self.uid = self.gid = int(cfg.get("uid_base", 1_000_000)) + outer_pid
        self.layers["uid"] = self.uid if self.uid >= 0 else None
        ns_ok = False
        if is_root and cfg.get("namespaces", True):
            flags = (sandbox.CLONE_NEWNS | sandbox.CLONE_NEWPID | sandbox.CLONE_NEWNET | sandbox.CLONE_NEWIPC
                     | sandbox.CLONE_NEWUTS)
            try:
                sandbox.unshare(flags)
                ns_ok = True
            except OSError as e:
                self.layers["namespaces_error"] = str(e)
        self.layers["namespaces"] = ["mnt", "pid", "net", "ipc", "uts"] if ns_ok else []
        if ns_ok:
            # become PID 1 of the new PID namespace: fork once; the outer process only waits
            pid = os.fork()
            if pid:
                os.close(self.sock)
                while True:
                    try:
                        _, st = os.waitpid(pid, 0)
                        break
                    except ChildProcessError:
                        st = 0
                        break
                    except InterruptedError:
                        continue
                os._exit(os.waitstatus_to_exitcode(st) & 0xFF if os.WIFEXITED(st) else 1)
            sandbox.set_pdeathsig(signal.SIGKILL)
            if os.getppid() not in (0, outer_pid):  # 0: the parent lives outside the new PID namespace
                os._exit(1)
            self.pid1 = os.getpid() == 1
            self.setup_cgroup(outer_pid)
            try:
                build_minimal_root(sandbox, int(cfg.get("tmp_mb", 256)))
                self.layers["filesystem"] = "minimal read-only root (pivot_root), private /tmp"
            except OSError as e:
                self.layers["filesystem_error"] = str(e)
                try:
                    private_tmp_only(sandbox, int(cfg.get("tmp_mb", 256)))
                    self.layers["filesystem"] = "host tree, private /tmp /dev/shm /var/tmp"
                except OSError as e2:
                    self.layers["filesystem"] = f"host tree (mount failed: {e2})"
        else:
            self.layers["filesystem"] = "host tree (no mount namespace)"
            sandbox.set_child_subreaper()
            self.setup_cgroup(outer_pid)
        self.layers["kill_descendants"] = (
            "pid namespace (kill -1 as its init)" if self.pid1 else
            "child subreaper: every orphan of the generation is killed"
        )
        self.layers["seccomp"] = bool(cfg.get("seccomp", True)) and sandbox.seccomp_supported()
        # with a mount namespace every writable mount point is a fresh tmpfs per generation (mounts: path,
        # root mode, root owned by the generation's uid, subdirectories); without one the work dir is
        # removed (at any depth) and made anew
        self.mounts: list = []
        if ns_ok and os.path.islink("/dev/shm") and os.readlink("/dev/shm") == GEN_DIR + "/shm":
            self.workdir = GEN_DIR + "/work"
            os.mkdir(GEN_DIR, 0o755)
            self.mounts = [(GEN_DIR, "0755", False, [("work", 0o700, True), ("shm", 0o1777, False)])]
            what = "one fresh tmpfs per generation: the work dir and /dev/shm"
        else:
            self.workdir = os.path.join("/tmp", f"mcf-work-{os.getpid()}-{outer_pid}")
            self.make_workdir()
            if ns_ok:
                shared = [d for d in ("/dev/shm", "/var/tmp", "/run/lock") if os.path.isdir(d)]
                self.mounts = [(self.workdir, "0700", True, []), *((d, "1777", False, []) for d in shared)]
                what = "fresh tmpfs per generation: " + ", ".join(["work dir", *shared])
            else:
                what = "work dir removed and recreated per generation (host /dev/shm is shared: no mount namespace)"
        self.tmpfs_mb = int(cfg.get("tmp_mb", 256)) if self.mounts else 0
        self.layers["writable_dirs"] = what
        # SysV IPC and POSIX message queues are all an IPC namespace holds: with seccomp they are refused
        # (generations share the zygote's own, empty, IPC namespace); without it each generation gets a
        # fresh IPC namespace
        self.new_ipc = ns_ok and not self.layers["seccomp"]
        # PIDs (and thread ids) come from a counter of the zygote's PID namespace: reset before every
        # fork, or a generation could tell how many processes the one before it made
        self.last_pid_fd = -1
        if self.pid1 and self.layers.get("filesystem", "").startswith("minimal"):
            try:
                if os.readlink("/proc/self") == "1":  # the /proc of our own PID namespace
                    self.last_pid_fd = os.open("/proc/sys/kernel/ns_last_pid", os.O_WRONLY | os.O_CLOEXEC)
            except OSError as e:
                self.layers["pids_error"] = str(e)
        self.layers["pids"] = ("the same PIDs every generation (ns_last_pid reset before each fork)"
                               if self.last_pid_fd >= 0 else "PIDs continue from the generation before")
        self.layers["ipc"] = (
            "SysV IPC and POSIX message queues refused (seccomp)" + (", private IPC namespace" if ns_ok else "")
            if self.layers["seccomp"] else
            "fresh IPC namespace per generation" if ns_ok else "host IPC namespace"
        )

    def setup_cgroup(self, outer_pid: int) -> None:
        self.cgroup = CgroupSetup()
        if os.geteuid() == 0 and self.cfg.get("cgroup", True) and "memory_bytes" in self.cfg:
            self.cgroup.setup(f"mcf-zygote-{outer_pid}", int(self.cfg["memory_bytes"]), int(self.cfg.get("pids", 64)))
        if self.cgroup.describe:
            self.layers["cgroup_dirs"] = list(self.cgroup.dirs)

    def finish_cgroup(self) -> None:
        """The limits get the zygote's own start-up charge on top; ``layers["memory"]`` says so."""
        try:
            self.cgroup.finish()
        except OSError as e:
            self.cgroup.abandon(str(e))
            self.layers.pop("cgroup_dirs", None)
        if self.cgroup.describe:
            self.layers["memory"] = self.cgroup.describe + " per generation, and RLIMIT_AS per process"
            self.layers["cgroup_zygote_bytes"] = self.cgroup.zygote_bytes
        else:
            self.layers["memory"] = "RLIMIT_AS per process (no cgroup" + (
                f": {self.cgroup.error})" if self.cgroup.error else ")")

    # --- serving -----------------------------------------------------------------------------------------
    def prepare_children(self) -> None:
        """State every generation child starts from (set once here, inherited by fork)."""
        os.environ.clear()
        os.environ.update(SCRUBBED_ENV)
        os.environ["HOME"] = self.workdir
        os.environ["TMPDIR"] = self.workdir
        os.chdir("/")
        self.child.prepare_zygote_state()

    def make_workdir(self) -> None:
        _rmtree(self.workdir)
        os.mkdir(self.workdir, 0o700)
        if self.uid >= 0:
            os.chown(self.workdir, self.uid, self.gid)

    def serve(self) -> None:
        from microcoder_fast._C import frame

        frame.send(self.sock, frame.READY, 0, json.dumps(self.layers).encode())
        cg = self.cgroup
        got = self.sandbox.zygote_loop(self.sock, self.workdir, self.uid, self.gid, self.pid1,
                                       bool(self.layers.get("seccomp")), self.tmpfs_mb, self.mounts,
                                       self.new_ipc, cg.child_oom_adj, cg.reset, cg.oom, cg.peak,
                                       self.last_pid_fd)
        if got is None:
            return
        # a generation child, sandbox entered: run the harness, never come back
        fn_name, source = got
        self.child.child_main(fn_name, source, self.builtins_snapshot, self.call_builtins,
                              self.call_builtins_snapshot, self.encode_value)


def _rmtree(path: str) -> None:
    if os.path.lexists(path):
        import shutil  # only here: see Zygote.__init__

        shutil.rmtree(path, ignore_errors=True)


STACK_BYTES = 1 << 30


def _raise_stack_limit() -> None:
    """Give the main thread of every generation a deep stack, as real judges do (deep recursion through C
    functions such as functools.lru_cache overflows 8 MB). The stack's room in the address-space layout
    is fixed at exec time, so the zygote raises RLIMIT_STACK and re-executes itself once."""
    import resource

    if "--stack-raised" in sys.argv:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    want = STACK_BYTES if hard == resource.RLIM_INFINITY else min(STACK_BYTES, hard)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_STACK, (want, hard))
        os.execv(sys.executable, [*sys.orig_argv, "--stack-raised"])
    except OSError:
        pass  # keep the default stack


def main() -> None:
    _raise_stack_limit()
    os.closerange(4, 1 << 16)
    from microcoder_fast._C import sandbox

    sandbox.set_default_thread_stack(8 << 20)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].startswith("{") else {}
    z = Zygote(cfg)
    z.preimport()
    z.setup_isolation()
    z.prepare_children()
    import resource

    z.layers["main_thread_stack_bytes"] = resource.getrlimit(resource.RLIMIT_STACK)[0]
    z.layers["fork_hook_modules"] = sorted(m for m in ("threading", "random", "logging") if m in sys.modules)
    gc.collect()
    gc.freeze()
    try:
        z.finish_cgroup()
        z.serve()
    except BaseException:
        pass
    z.cgroup.close()
    if not z.tmpfs_mb:
        _rmtree(z.workdir)
    os._exit(0)


if __name__ == "__main__":
    main()
