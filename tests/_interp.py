"""Run a test file's Triton-kernel tests on CPU under ``TRITON_INTERPRET=1`` in a child pytest process.

Triton decorates its own library when it is first imported, so interpreter mode must be in the environment
before ``import triton``: a fresh process gets it, and the variable never leaks into the parent's other tests.
The child sees ``IN_CHILD`` true; test files use it to pick which of their tests run on which side.
``kdev`` (imported into a test file) is the device fixture of the ``ops._dispatch``-style kernel tests: CPU
under the interpreter in the child, CUDA (``gpu``-marked) otherwise.

Imported by the op test files as ``from _interp import ...``: pytest's default (prepend) import mode puts
``tests/`` on ``sys.path`` for the test files it collects there (``tests/`` has no ``__init__.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

CHILD_ENV = "MCF_INTERP_CHILD"
IN_CHILD = os.environ.get(CHILD_ENV) == "1"
KERNEL_DEVICES = (
    [pytest.param("interp", id="interp")]
    if IN_CHILD
    else [pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]
)


@pytest.fixture(params=KERNEL_DEVICES)
def kdev(request: pytest.FixtureRequest):
    """Yields the device whose tensors take the Triton path."""
    if request.param == "interp":
        from microcoder_fast.ops import _dispatch

        with _dispatch.triton_interpreter():
            yield torch.device("cpu")
    else:
        yield torch.device("cuda")


def run_under_interpreter(test_file: str, select: str, timeout: float = 900) -> None:
    """Run the tests of ``test_file`` that ``-k select`` picks in a ``TRITON_INTERPRET=1`` child pytest and
    fail with the child's output unless it ran some and all of them passed (none skipped)."""
    if IN_CHILD:
        pytest.skip("already inside the interpreter child")
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", **{CHILD_ENV: "1"})
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test_file, "-k", select]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    summary = proc.stdout.splitlines()[-1] if proc.stdout.strip() else ""
    assert " passed" in proc.stdout and "skipped" not in summary, tail
