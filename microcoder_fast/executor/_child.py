"""The harness that runs inside a forked generation child (already sandboxed by ``_C.sandbox.enter_child``).

Descriptors: 3 = control socket to the supervisor; per test, ``_C.sandbox.child_next`` re-points 0/1/2 at
one of the worker's reused I/O sets (input written there for this test, stdout and stderr emptied), which
the supervisor reads back itself.

The program is compiled once; every test then runs from that code object with fresh globals (stdin mode:
a fresh ``__main__`` module; call mode: a fresh module whose ``__builtins__`` carries the LeetCode-style prelude, and a
fresh ``Solution()``). After each test the harness emulates interpreter shutdown (join non-daemon threads, run
atexit handlers, flush the standard streams) and reports the exit status. If the program left the process
in a state a fresh process would not have (daemon threads or child processes still running, the harness'
descriptors closed or fds 0-3 replaced), the harness reports the test and exits; the supervisor forks a fresh child for the
remaining tests. Expected outputs never come here: the supervisor compares.
"""

from __future__ import annotations

import _signal
import _thread
import atexit
import builtins
import gc
import io
import json
import linecache
import os
import signal
import sys
import time
import traceback
import types

from microcoder_fast._C import sandbox as _sandbox

T_TEST, T_END, T_RESULT, T_COMPILED, T_CE = 10, 11, 12, 13, 14

SOURCE_NAME = "solution.py"
_RESET_SIGNALS = (signal.SIGALRM, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)
COMPILED_REPORT_BYTES = 65536  # must match api.COMPILED_REPORT_BYTES


def _send(fd: int, ftype: int, payload: bytes) -> None:
    if not _sandbox.child_send(fd, ftype, payload):
        raise OSError("the control socket is gone")


def _exit_code(e: SystemExit) -> int:
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(f"{code}\n")
    except Exception:
        pass
    return 1


class Harness:
    """Runs the tests of one generation in this (sandboxed) process."""

    def __init__(
        self,
        sock: int,
        fn_name: str | None,
        source: bytes,
        builtins_snapshot: dict,
        call_builtins: dict,
        call_builtins_snapshot: dict,
        encode_value,  # noqa: ANN001
    ) -> None:
        self.sock = sock
        self.source = source
        self.builtins_snapshot = builtins_snapshot
        self.call_builtins = call_builtins
        self.call_builtins_snapshot = call_builtins_snapshot
        self.encode_value = encode_value
        self.fn_name = fn_name
        self.code: types.CodeType | None = None
        self.base_depth = 0
        self.tests_run = 0
        self.workdir = os.getcwd()

    # ---------------------------------------------------------------------------------------------------
    def compile(self) -> bool:
        try:
            self.code = compile(self.source, SOURCE_NAME, "exec", dont_inherit=True)
        except BaseException as e:  # SyntaxError, ValueError (NUL bytes), RecursionError, MemoryError
            msg = "".join(traceback.format_exception_only(type(e), e)).strip()
            _send(self.sock, T_CE, msg.encode("utf-8", "backslashreplace")[:8192])
            return False
        if len(self.source) > COMPILED_REPORT_BYTES:
            # only long sources take long enough to compile for the supervisor to time it apart
            _send(self.sock, T_COMPILED, b"")
        return True

    def serve(self) -> None:
        frame = sys._getframe()
        depth = 0
        while frame is not None:
            depth += 1
            frame = frame.f_back
        self.base_depth = depth + 3
        while True:
            ftype, payload = _sandbox.child_next(self.sock)  # a TEST's stdin/stdout/stderr are now fds 0, 1, 2
            if ftype == 0:
                os._exit(114)  # EOF, or the test's descriptors could not be set up
            if ftype != T_TEST:
                return
            index, last = payload.split()
            self.run_test(int(index))
            if last == b"1":
                return

    # ---------------------------------------------------------------------------------------------------
    def _reset_process_state(self) -> None:
        """Undo what an earlier test of this child changed; the first test starts from the zygote's state
        (prepare_zygote_state), which is already what a fresh interpreter would have."""
        sys.setrecursionlimit(1000 + self.base_depth)
        if self.tests_run == 0:
            return
        # identity checks in C (borrowed references): iterating in Python would incref, and so
        # copy-on-write, every page holding a builtin
        pairs = [(builtins.__dict__, self.builtins_snapshot)]
        if self.fn_name is not None:  # only call mode reads the prelude's builtins
            pairs.append((self.call_builtins, self.call_builtins_snapshot))
        for live, snap in pairs:
            if not _sandbox.dict_is_snapshot(live, snap):
                live.clear()
                live.update(snap)
        if signal.getitimer(signal.ITIMER_REAL)[0]:  # alarm() uses the same timer
            signal.setitimer(signal.ITIMER_REAL, 0)
        # _signal.getsignal: the raw handler table (signal.getsignal builds an enum per call)
        for sig in _RESET_SIGNALS:
            if _signal.getsignal(sig) != _signal.SIG_DFL:
                signal.signal(sig, signal.SIG_DFL)
        if _signal.getsignal(signal.SIGINT) is not _signal.default_int_handler:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.set_int_max_str_digits(0)
        _thread.stack_size(0)
        gc.enable()
        sys.argv = [SOURCE_NAME]
        try:
            os.chdir(self.workdir)
        except OSError:
            pass
        _refresh_stdio()

    def _print_exception(self, e: BaseException) -> None:
        try:
            if SOURCE_NAME not in linecache.cache:
                text = self.source.decode("utf-8", "replace")
                lines = text.splitlines(keepends=True)
                linecache.cache[SOURCE_NAME] = (len(text), None, lines, SOURCE_NAME)
            tb = e.__traceback__
            # hide the harness frame
            if tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            sys.stderr.write("".join(traceback.format_exception(type(e), e, tb)))
        except BaseException:
            pass

    def _shutdown_like_python(self) -> int | None:
        """What the interpreter does at exit: join non-daemon threads, run atexit handlers, flush.
        Returns an exit status if a handler raised SystemExit."""
        status = None
        threading = sys.modules.get("threading")
        if threading is None:  # never imported: no thread can have come from it
            threading_pending = False
        else:
            threading_pending = True
        me = threading.current_thread() if threading_pending else None
        for _ in range(10000 if threading_pending else 0):
            pending = [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]
            if not pending:
                break
            for t in pending:
                try:
                    t.join()
                except BaseException:
                    pass
        if atexit._ncallbacks():
            try:
                atexit._run_exitfuncs()
            except SystemExit as e:
                status = _exit_code(e)
            except BaseException:
                pass
            atexit._clear()
        for stream in (sys.stdout, sys.__stdout__, sys.stderr, sys.__stderr__):
            try:
                if stream is not None and not getattr(stream, "closed", False):
                    stream.flush()
            except BaseException:
                pass
        return status

    def _dirty(self) -> bool:
        threading = sys.modules.get("threading")
        if (threading is not None and threading.active_count() > 1) or _thread._count() > 0:
            return True
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            except OSError:
                return True
            if pid == 0:
                return True
        return not _sandbox.child_fds_ok()

    # ---------------------------------------------------------------------------------------------------
    def run_test(self, index: int) -> None:
        self._reset_process_state()
        cpu_self0, cpu_children0, _ = _sandbox.usage()
        w0 = time.perf_counter()
        value = b""
        exc_name = None
        message = ""
        if self.fn_name is None:
            status = self._run_stdin()
            if isinstance(status, tuple):
                status, exc_name = status
        else:
            status, exc_name, message, value = self._run_call()
        after = self._shutdown_like_python()
        if after is not None and status == 0:
            status = after
        wall = time.perf_counter() - w0
        cpu_self1, cpu_children1, maxrss = _sandbox.usage()
        cpu = (cpu_self1 - cpu_self0) + (cpu_children1 - cpu_children0)
        dirty = self._dirty()
        self.tests_run += 1
        # "index status dirty cpu_s maxrss_kb exc wall_s\n" + message (JSON string) + "\n" + value
        head = b"%d %d %d %.6f %d %s %.6f\n" % (
            index, status, dirty, cpu, maxrss,
            (exc_name or "-").encode("ascii", "replace"), wall,
        )
        msg = json.dumps(message).encode() if message else b'""'
        try:
            _send(self.sock, T_RESULT, head + msg + b"\n" + value)
        except BaseException:
            os._exit(status if isinstance(status, int) else 1)
        if dirty:
            os._exit(0)

    def _fresh_module(self, name: str, builtins_ns: object) -> dict:
        mod = types.ModuleType(name)
        g = mod.__dict__
        g["__name__"] = name
        g["__builtins__"] = builtins_ns
        g["__file__"] = SOURCE_NAME
        g["__cached__"] = None
        sys.modules[name] = mod
        return g

    def _run_stdin(self) -> int | tuple[int, str]:
        g = self._fresh_module("__main__", builtins)
        try:
            exec(self.code, g)
        except SystemExit as e:
            return _exit_code(e)
        except BaseException as e:
            self._print_exception(e)
            return 1, type(e).__name__
        return 0

    def _run_call(self) -> tuple[int, str | None, str, bytes]:
        with os.fdopen(os.dup(0), "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
            lines = text.split("\n")
            while lines and not lines[-1].strip():
                lines.pop()
            args = [json.loads(line) for line in lines]
        except Exception as e:  # validated by the supervisor; this is a belt-and-braces guard
            return 1, "InputError", f"test input is not one JSON value per line: {e}", b""
        g = self._fresh_module("solution", self.call_builtins)
        fn_name = self.fn_name
        try:
            exec(self.code, g)
            cls = g.get("Solution")
            fn = None
            if isinstance(cls, type) and hasattr(cls, fn_name):
                fn = getattr(cls(), fn_name)
            elif fn_name in g:
                fn = g[fn_name]
            if fn is None or not callable(fn):
                where = "class Solution" if isinstance(cls, type) else "the program"
                msg = f"{where} defines no callable {fn_name!r}"
                sys.stderr.write(msg + "\n")
                return 1, "NameError", msg, b""
            result = fn(*args)
        except SystemExit as e:
            code = _exit_code(e)
            return (code or 1), "SystemExit", f"the program exited (status {code}) instead of returning", b""
        except BaseException as e:
            self._print_exception(e)
            return 1, type(e).__name__, "", b""
        try:
            value = self.encode_value(result).encode("utf-8", "surrogatepass")
        except BaseException as e:
            return 1, type(e).__name__, "the return value could not be encoded", b""
        return 0, None, "", value


_STREAMS: tuple = ()  # the three streams _install_stdio made, and their configuration
_STREAM_CONFIG: tuple = ()


def _stream_config(streams: tuple) -> tuple:
    return tuple((s.encoding, s.errors, s.line_buffering, s.write_through) for s in streams)


def _install_stdio() -> None:
    global _STREAMS, _STREAM_CONFIG
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8", errors="surrogateescape"
    )
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8", errors="surrogateescape"
    )
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    _STREAMS = (sys.stdin, sys.stdout, sys.stderr)
    _STREAM_CONFIG = _stream_config(_STREAMS)


def _refresh_stdio() -> None:
    """Streams for the next test of this child. If the program left the three standard streams as the
    harness made them (same objects, open, same configuration), keep them: stdout and stderr were flushed
    when the last test ended and fds 1/2 now point at emptied, rewound files; stdin only has to drop its
    read-ahead (seek(0): fd 0 holds the new input, rewound). Otherwise build fresh ones."""
    si, so, se = _STREAMS
    try:
        keep = (
            sys.stdin is si and sys.__stdin__ is si and sys.stdout is so and sys.__stdout__ is so
            and sys.stderr is se and sys.__stderr__ is se
            and not (si.closed or so.closed or se.closed)
            and _stream_config(_STREAMS) == _STREAM_CONFIG
        )
        if keep:
            si.seek(0)
            return
    except (ValueError, OSError):  # a detached or broken stream
        pass
    _install_stdio()


def prepare_zygote_state() -> None:
    """Run once in the zygote: the interpreter state every generation child (and its first test) starts
    from, so the first test needs no reset: fresh standard streams on fds 0/1/2 (never used by the
    zygote), no atexit handlers, no int/str digit limit, argv of a script."""
    import atexit as _atexit

    _atexit._clear()
    sys.set_int_max_str_digits(0)
    sys.argv = [SOURCE_NAME]
    _thread.stack_size(0)
    _install_stdio()


def child_main(fn_name: str | None, source: bytes, builtins_snapshot: dict, call_builtins: dict,
               call_builtins_snapshot: dict, encode_value) -> None:  # noqa: ANN001
    """Entry point in the forked child, sandbox already entered (fd 3 = control socket). Never returns."""
    status = 0
    try:
        h = Harness(3, fn_name, source, builtins_snapshot, call_builtins, call_builtins_snapshot, encode_value)
        if h.compile():
            h.serve()
    except BaseException:
        status = 113
    os._exit(status)
