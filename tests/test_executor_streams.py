"""The standard streams a judged program sees behave as CPython's own at start-up (issue 11, class 9): the
I/O templates people paste (a FastIO-style wrapper over os.read/os.write, sys.stdin.buffer, open(0),
io.open with closefd=False, fileinput, os.fdopen) are accepted on every test of a generation, and the
streams' types and attributes match a direct ``python`` run with stdin and stdout redirected to files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from microcoder_fast.executor import Executor, Problem, TestCase, Verdict

SUM = Problem(tests=[TestCase(f"3\n{i} {i + 1} {i + 2}\n", f"{3 * i + 3}\n") for i in range(5)])

# The buffered fast-I/O idiom of competitive Python (our own writing of it): wrap the standard streams,
# read the whole input with os.read on fileno(), decide writability from file.mode, write with os.write.
FAST_IO = r'''
import os, sys
from io import BytesIO, IOBase

CHUNK = 1 << 13

class RawFast(IOBase):
    def __init__(self, stream):
        self._fd = stream.fileno()
        self._buf = BytesIO()
        self.writable = "x" in stream.mode or "r" not in stream.mode
        self.write = self._buf.write if self.writable else None

    def read(self):
        while True:
            got = os.read(self._fd, max(os.fstat(self._fd).st_size, CHUNK))
            if not got:
                break
            pos = self._buf.tell()
            self._buf.seek(0, 2)
            self._buf.write(got)
            self._buf.seek(pos)
        return self._buf.read()

    def readline(self):
        while self._buf.tell() == self._buf.seek(0, 2) or b"\n" not in self._buf.getvalue()[self._pos:]:
            got = os.read(self._fd, max(os.fstat(self._fd).st_size, CHUNK))
            if not got:
                break
            self._buf.write(got)
        self._buf.seek(self._pos)
        line = self._buf.readline()
        self._pos = self._buf.tell()
        return line

    _pos = 0

    def flush(self):
        if self.writable:
            os.write(self._fd, self._buf.getvalue())
            self._buf.truncate(0)
            self._buf.seek(0)

class TextFast(IOBase):
    def __init__(self, stream):
        self.buffer = RawFast(stream)
        self.flush = self.buffer.flush
        self.writable = self.buffer.writable
        self.write = lambda s: self.buffer.write(s.encode("ascii"))
        self.read = lambda: self.buffer.read().decode("ascii")
        self.readline = lambda: self.buffer.readline().decode("ascii")

sys.stdin, sys.stdout = TextFast(sys.stdin), TextFast(sys.stdout)
input = lambda: sys.stdin.readline().rstrip("\r\n")

n = int(input())
print(sum(map(int, input().split()[:n])))
'''

TEMPLATES = {
    "fastio": FAST_IO,
    "stdin.buffer": "import sys\nd = sys.stdin.buffer.read().split()\nsys.stdout.buffer.write(b'%d\\n' % sum(map(int, d[1:])))",
    "open(0)": "d = open(0).read().split()\nprint(sum(map(int, d[1:])))",
    "io.open closefd=False": (
        "import io\nd = io.open(0, 'rb', closefd=False).read().split()\n"
        "out = io.open(1, 'w', closefd=False)\nout.write(str(sum(map(int, d[1:]))) + '\\n')\nout.flush()"
    ),
    "fileinput": "import fileinput\nlines = list(fileinput.input())\nprint(sum(map(int, lines[1].split())))",
    "os.fdopen": "import os\nf = os.fdopen(0)\nd = f.read().split()\nprint(sum(map(int, d[1:])))",
    "sys.stdin lines": "import sys\nn = int(sys.stdin.readline())\nprint(sum(map(int, next(iter(sys.stdin)).split())))",
}

INSPECT = r'''
import sys
for s in (sys.stdin, sys.stdout, sys.stderr):
    b = s.buffer
    print(type(s).__name__, s.mode, s.name, s.encoding, s.errors, s.line_buffering, s.write_through, repr(s.newlines),
          type(b).__name__, b.mode, b.name, type(b.raw).__name__, b.raw.mode, b.raw.closefd, s.fileno(), s.isatty(),
          s.readable(), s.writable(), s.seekable(), s.closed, sep="|")
print(repr(sys.stdin.readline()))
print(sys.stdin is sys.__stdin__, sys.stdout is sys.__stdout__, sys.stderr is sys.__stderr__)
'''


@pytest.fixture(scope="module")
def ex():
    with Executor(workers=1, time_limit_s=5.0) as e:
        yield e


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_pasted_io_templates_are_accepted_on_every_test(ex, name):
    (r,) = ex.judge([(TEMPLATES[name], SUM)])
    assert r.verdict == Verdict.AC, (r.message, r.tests[-1].stderr_tail if r.tests else "")


def test_streams_look_like_cpythons_own(ex, tmp_path):
    data = "1 2\r\n3\n"
    (tmp_path / "in.txt").write_text(data, newline="")
    with open(tmp_path / "in.txt") as fin, open(tmp_path / "out.txt", "w") as fout:
        subprocess.run([sys.executable, "-I", "-c", INSPECT], stdin=fin, stdout=fout, check=True,
                       env={"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"})
    direct = (tmp_path / "out.txt").read_text()
    # the same inspection on every test of one generation (the streams are rebuilt or kept between tests)
    (r,) = ex.judge([(INSPECT, Problem(tests=[TestCase(data, direct)] * 3))])
    assert r.verdict == Verdict.AC, r.message
