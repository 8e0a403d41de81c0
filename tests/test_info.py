"""The foundation: the compiled core imports and reports itself; the info command and packaging are sound."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import microcoder_fast
from microcoder_fast import _C
from microcoder_fast.info import collect, format_info

ROOT = Path(__file__).resolve().parents[1]


def test_extension_version_matches_package():
    assert _C.version() == microcoder_fast.__version__
    assert _C.__version__ == microcoder_fast.__version__


def test_extension_capabilities_describe_host():
    caps = _C.capabilities()
    assert caps["cplusplus"] >= 201703  # built as C++17 or newer
    assert caps["cpu_count"] == os.cpu_count()
    assert caps["is_root"] == (os.geteuid() == 0)
    assert caps["platform"] == ("linux" if sys.platform.startswith("linux") else "other")


def test_kernels_importable_as_subpackage():
    import microcoder_fast.kernels as k

    assert Path(k.__file__).parent.name == "kernels"


def test_lazy_submodules_and_unknown_attribute():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        microcoder_fast.nope  # noqa: B018


def test_executor_import_does_not_pull_torch():
    code = "import sys, microcoder_fast.executor; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_info_cli_text_and_json():
    out = subprocess.run([sys.executable, "-m", "microcoder_fast"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "C++ extension : built, version " + microcoder_fast.__version__ in out.stdout
    assert "torch" in out.stdout and "triton" in out.stdout and "CPUs" in out.stdout
    js = subprocess.run([sys.executable, "-m", "microcoder_fast", "--json"], capture_output=True, text=True)
    data = json.loads(js.stdout)
    assert data["extension"]["built"] is True
    assert data["cpu_count"] == os.cpu_count()


def test_info_reports_interpreter_mode(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    info = collect()
    if info["triton"]["version"]:
        assert "interpreter" in info["triton"]["kernels"]
    assert "microcoder_fast" in format_info(info)


def test_readme_shows_the_ci_test_command():
    """CI must run exactly the test command the README shows."""
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"^TEST_CMD='(.*)'$", ci, re.M)
    assert m, ".ci/run must define TEST_CMD"
    assert m.group(1) in readme


def test_torch_requirement_admits_2_13():
    text = (ROOT / "pyproject.toml").read_text()
    m = re.search(r'"torch>=([\d.]+),<([\d.]+)"', text)
    assert m
    lo = tuple(int(x) for x in m.group(1).split("."))
    hi = tuple(int(x) for x in m.group(2).split("."))
    assert lo <= (2, 13, 0) < hi
