"""The harness that runs inside a forked generation child, after the zygote's serve loop entered the
sandbox (``csrc/sandbox.cpp``'s ``enter_child_core``) and returned to Python with the program.

Descriptors: 3 = control socket to the supervisor; per test, ``_C.child.next`` re-points 0/1/2 at one of
the generation's I/O sets (the supervisor wrote the input there and emptied the outputs; it reads the
outputs back itself). Reports go out through ``_C.child`` (the frame codec lives in csrc/frame.cpp): BEGIN
before this child's first test, one RESULT per test, COMPILE_ERROR instead if the program does not
compile. Imports only the standard library and ``_C``: it runs in every child, forked from the zygote.

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

from microcoder_fast._C import child as _cc
from microcoder_fast._C import frame as _frame

SOURCE_NAME = "solution.py"
_RESET_SIGNALS = (signal.SIGALRM, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)


def _text(s: str) -> bytes:
    return s.encode("utf-8", "backslashreplace")


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.__stdout__, sys.stderr, sys.__stderr__):
        try:
            if stream is not None and not getattr(stream, "closed", False):
                stream.flush()
        except BaseException:
            pass


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
        fn_name: str | None,
        source: bytes,
        builtins_snapshot: dict,
        call_builtins: dict,
        call_builtins_snapshot: dict,
        encode_value,  # noqa: ANN001
    ) -> None:
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
            _cc.send_text(_frame.COMPILE_ERROR, _text(msg)[:8192])
            return False
        return True

    def serve(self) -> None:
        frame = sys._getframe()
        depth = 0
        while frame is not None:
            depth += 1
            frame = frame.f_back
        self.base_depth = depth + 3
        while True:
            ftype, index, last = _cc.next()  # a TEST's stdin/stdout/stderr are now fds 0, 1, 2
            if ftype == 0:
                os._exit(114)  # EOF, a malformed frame, or the test's descriptors could not be set up
            if ftype != _frame.TEST:
                return
            self.run_test(index)
            if last:
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
            if not _cc.dict_is_snapshot(live, snap):
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
        _flush_std_streams()
        # then the program's module goes (as at interpreter shutdown, after the flush its objects may
        # still need); what its finalizers print is flushed too
        self._drop_program_module()
        _flush_std_streams()
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
        return not _cc.fds_ok()

    # ---------------------------------------------------------------------------------------------------
    def run_test(self, index: int) -> None:
        self._reset_process_state()
        if self.tests_run == 0 and not _cc.send_begin(index):  # the wall clock of this child starts here
            os._exit(1)
        cpu_self0, cpu_children0, _ = _cc.usage()
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
        cpu_self1, cpu_children1, maxrss = _cc.usage()
        cpu = (cpu_self1 - cpu_self0) + (cpu_children1 - cpu_children0)
        dirty = self._dirty()
        self.tests_run += 1
        try:
            sent = _cc.send_result(index, status, dirty, cpu, wall, maxrss, _text(exc_name or ""), _text(message),
                                   value)
        except BaseException:
            sent = False
        if not sent:
            os._exit(status if isinstance(status, int) else 1)
        if dirty:
            os._exit(0)

    def _drop_program_module(self) -> None:
        """What interpreter shutdown does to __main__: its globals go, and with them the program's objects
        (a file it opened on fd 0 is closed now, inside this test, where _dirty() sees it, not under the
        next test's descriptors)."""
        g, self._globals = self._globals, None
        if g is not None:
            sys.modules.pop(g.get("__name__"), None)
            try:
                g.clear()
            except BaseException:
                pass

    _globals: dict | None = None

    def _fresh_module(self, name: str, builtins_ns: object) -> dict:
        mod = types.ModuleType(name)
        g = mod.__dict__
        g["__name__"] = name
        g["__builtins__"] = builtins_ns
        g["__file__"] = SOURCE_NAME
        g["__cached__"] = None
        sys.modules[name] = mod
        self._globals = g
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
        except Exception as e:  # Problem() validated it: only a program that rewrote fd 0 gets here
            return 1, type(e).__name__, f"test input is not one JSON value per line: {e}", b""
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


def _std_stream(fd: int, mode: str, name: str, errors: str, line_buffering: bool) -> io.TextIOWrapper:
    """A standard stream as CPython's start-up builds it for a non-interactive fd (Python/pylifecycle.c
    create_stdio): a buffered binary file over FileIO(fd, closefd=False) whose raw name is "<stdin>" and
    the like, a TextIOWrapper with newline="\n" (no newline translation on POSIX), and ``mode`` set on
    the text stream. Programs that inspect or wrap the streams (``file.mode``, ``fileno()``, ``buffer``,
    ``os.read`` on the descriptor) see what they see when run directly."""
    buf = io.open(fd, mode + "b", -1, closefd=False)
    buf.raw.name = name
    text = io.TextIOWrapper(buf, encoding="utf-8", errors=errors, newline="\n", line_buffering=line_buffering,
                            write_through=False)
    text.mode = mode
    return text


def _install_stdio() -> None:
    global _STREAMS, _STREAM_CONFIG
    sys.stdin = sys.__stdin__ = _std_stream(0, "r", "<stdin>", "surrogateescape", False)
    sys.stdout = sys.__stdout__ = _std_stream(1, "w", "<stdout>", "surrogateescape", False)
    sys.stderr = sys.__stderr__ = _std_stream(2, "w", "<stderr>", "backslashreplace", True)
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
        h = Harness(fn_name, source, builtins_snapshot, call_builtins, call_builtins_snapshot, encode_value)
        if h.compile():
            h.serve()
    except BaseException:
        status = 113
    os._exit(status)
