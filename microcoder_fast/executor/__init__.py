"""The sandboxed judge: ``Executor``, ``Problem``, ``TestCase``, ``Verdict``, ``Result`` and ``compare``.

Processes. The caller (a trainer that may hold CUDA state and threads) never forks. The C++ extension
starts one *zygote* per worker with ``posix_spawn`` (``python -I``, scrubbed environment, fds 0-2 and one
control socket only). The zygote pre-imports the standard modules, sets up the isolation layers below once,
and forks one *generation child* per program from a serve loop written in C++ (so the zygote runs no
Python, and copies no pages, while a child lives). Programs that mention ``numpy`` go to a second zygote
per worker, started on first use, that has NumPy pre-imported with one BLAS thread (NumPy's libraries
roughly double the cost of every fork, so the others do not pay for it; ``preimport_numpy=True/False``
forces one zygote kind). The child compiles the
program once and runs the tests one after another in the same process, up to ``pipeline`` tests handed
over ahead: per test, fresh globals (a fresh ``__main__`` in stdin mode; a fresh module with the LeetCode
prelude and a fresh ``Solution()`` in call mode), and fds 0/1/2 re-pointed at one of a few memfd sets
(input, stdout, stderr) made for this generation: the supervisor writes the test's input and empties the
outputs before the test, reads the outputs back itself and empties all three after. The standard streams
are built as CPython's start-up builds them. The supervisor compares each
output (expected outputs never enter a process untrusted code can read) and stops the child at the first
failure when asked. If a program leaves the process in a state a fresh process would not have
(``os._exit``, a fatal signal, daemon threads or children still running, a timeout), the child is
discarded and a fresh one is forked for the remaining tests; every generation starts from a fresh fork
of a clean zygote. Modules: ``types`` (public types), ``worker`` (a worker's zygotes and the generation
driver), ``verdicts`` (pure classification), ``api`` (the Executor's thread pool); the wire protocol is
``csrc/frame.h``.

Time. The zygote reports when it forked the generation (after cleaning up the previous one, which is
never charged), the child reports when its first test began; a test is killed at its start + the limit +
0.1 s, and a start-up slack of 0.5 s (fork, sandbox entry, compiling a short source) is spent once per
generation; sources over 64 KiB get a compilation budget of ``max(time_limit_s, 10)`` s instead. Each
test's ``wall_s`` is measured inside the child around the program; a child that dies without reporting is
timed from its test's start to its reaping, so ``os._exit(0)`` after a late answer is TLE too.

Isolation layers (``Executor.layers`` reports which are active on this host):

* time: a wall-clock deadline per test enforced by the supervisor (SIGKILL), ``RLIMIT_CPU`` as a backstop
  (SIGXCPU = TLE);
* memory: as root, a cgroup per zygote (v1 ``memory.limit_in_bytes`` + ``pids.max``, or v2 ``memory.max``
  + ``pids.max`` where the caller's cgroup allows child controllers), made under the caller's own cgroup,
  that the zygote joins, so every generation child is born in it (no per-generation migration):
  ``memory_limit_mb`` plus the zygote's own charge after start-up (a few MB, ``layers["cgroup_zygote_bytes"]``)
  then bounds everything the generation holds (all its processes, memfds, tmpfs files, SysV shared memory);
  each child sets its ``oom_score_adj`` to 1000, so the cgroup's OOM killer picks a generation process, never
  the zygote (refused with a message in ``layers`` if the zygote's RSS is not below the limit); a cgroup OOM
  kill is MLE. Its peak counter is reset per generation and nothing stays charged after one (a generation's
  tmpfs is unmounted before the next fork whenever it holds anything). ``RLIMIT_AS`` = ``memory_limit_mb`` applies to
  each process as well (MemoryError or a fatal signal near the limit = MLE); it counts the interpreter's
  own mappings: about 30 MB for the plain zygote, about 110 MB for the NumPy one (one BLAS thread,
  ``MALLOC_ARENA_MAX=2``). ``layers["memory"]`` says which limits are active;
* output: ``RLIMIT_FSIZE`` = the output cap + 1 byte applies to the stdout memfd (and every file), and the
  supervisor checks the size it reads back (OLE); a call-mode return value larger than the cap is OLE;
  ``RLIMIT_NPROC`` (per private uid), ``RLIMIT_NOFILE`` 256, ``RLIMIT_CORE`` = 0, ``RLIMIT_MSGQUEUE`` = 0;
* stack: the main thread may grow to 1 GiB (the zygote re-executes itself once with ``RLIMIT_STACK``
  raised, since the stack's room is fixed at exec), so deep recursion through C functions such as
  ``functools.lru_cache`` works as on real judges; other threads keep 8 MiB unless the program sets
  ``threading.stack_size``;
* namespaces (root only): the zygote unshares mount, PID, network, IPC and UTS namespaces and becomes PID 1
  of its PID namespace. Network: an empty namespace (loopback down), so no connection leaves or reaches
  the host. Filesystem: ``pivot_root`` into a fresh read-only root holding only read-only binds of the
  system and Python directories, a minimal ``/dev``, the namespace's own ``/proc`` and a private tmpfs
  ``/tmp``; the program's only writable places are its private working directory ``/tmp/gen/work`` (also
  ``$HOME`` and ``$TMPDIR``) and ``/dev/shm`` (a link to ``/tmp/gen/shm``, so ``shm_open`` and
  ``sem_open`` work), both on one tmpfs that is fresh for every generation: made ahead while the previous
  generation runs, moved into place (``MS_MOVE``) once it is reaped, the used one unmounted (before the
  next fork if it holds anything, else while the next generation starts). PIDs: the zygote resets its
  namespace's ``ns_last_pid`` before each fork, so every generation gets the same PIDs whatever the one
  before it forked. SysV IPC and POSIX message queues are refused by seccomp, so the zygote's private IPC
  namespace stays empty (without seccomp each generation child gets a fresh IPC namespace instead). The
  caller's files and processes are not visible. If ``pivot_root`` fails the host tree stays visible but
  ``/tmp``, ``/dev/shm``, ``/var/tmp`` become private tmpfs, each fresh per generation; without namespaces
  the host tree, network, ``/dev/shm`` are shared (only the uid drop and seccomp still limit them) and the
  work dir is removed, at any depth, and made anew per generation;
* privileges: the child drops to a private uid/gid (1,000,000 + the zygote's pid, no groups), sets
  no_new_privs and is non-dumpable, so it cannot signal, ptrace or read the memory or ``/proc`` files of
  the zygote, the supervisor or the caller (all root). Without root the child keeps the caller's uid
  (documented degradation: seccomp still blocks ptrace and process_vm_readv);
* seccomp (x86-64 and aarch64): ptrace, process_vm_readv/writev, mount, unshare/setns, namespace flags of
  clone (clone3 answers ENOSYS), bpf, perf_event_open, keyctl, io_uring, kexec and module loading, SysV
  IPC and POSIX message queues fail with EPERM; ``socket`` only creates AF_UNIX sockets. The filter is
  installed once in the zygote (installing costs ~2 us per BPF instruction) and inherited by every child;
  mount and umount2, which the zygote itself uses, are refused to a child by its dropped privileges, or by
  a short filter of its own where it keeps the caller's uid;
* descendants: everything a generation starts (``setsid``, double fork, daemons) is killed as soon as the
  generation's child exits, before the worker starts its next generation (the Result may be delivered a
  few milliseconds earlier): with the PID namespace the zygote, as its init, kills every other process;
  without it the zygote is a child subreaper and kills every orphan it adopts;
* environment: the zygote starts from a fixed minimal environment; nothing of the caller's leaks in;
* host hygiene: ``close()`` / ``__exit__`` / ``atexit`` end the zygotes (EOF on their socket, then
  SIGKILL) and reap them. A judge fault (a zygote that died or did not start, a failed system call) is
  retried on a fresh zygote, IE only after 4 failures in a row; nothing a program sends or names is IE:
  a malformed, out-of-sequence or unexpected frame kills and reaps its generation and is RE.

Fork cost: the zygote deliberately does not import ``threading`` or ``random`` (their at-fork hooks would
run in every child: about 170 page faults per fork); programs that import them get fresh modules.

Known limits: a program shares its generation child with the harness that reports its per-test status,
so it could forge the status and timing of its own tests (for example hide a nonzero exit after printing
the right answer), never another generation's and never past the wall-clock kill; it can never see
expected outputs. State a program leaves inside imported modules carries over
between the tests of one generation (never between generations).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Executor", "ModeVerdict", "Problem", "Result", "TestCase", "TestResult", "Verdict", "compare"]

_TYPES = {"ModeVerdict", "Problem", "Result", "TestCase", "TestResult", "Verdict"}


def __getattr__(name: str) -> Any:
    # Lazy, so that the zygote (which imports this package's _zygote/_child/compare) never imports api.py
    # and with it threading: threading's at-fork hook alone costs every fork ~125 page faults. The types
    # come from types.py, which starts no thread and imports no threading.
    if name in _TYPES:
        return getattr(importlib.import_module("microcoder_fast.executor.types"), name)
    if name == "Executor":
        return importlib.import_module("microcoder_fast.executor.api").Executor
    if name == "compare":
        return importlib.import_module("microcoder_fast.executor.compare")
    raise AttributeError(f"module 'microcoder_fast.executor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
