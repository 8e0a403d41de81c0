"""bench/gpu_check.py: the one-shot GPU check runs its whole logic on CPU under Triton's interpreter (--dry), so
it cannot rot while no GPU is lent; without a GPU and without --dry it fails loudly (exit 1)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
LINE = re.compile(r"^CHECK [\w.]+: (PASS|FAIL|INFO)( .*)?$")
MUST_PASS = {
    "token_logprobs.vs_fp64",
    "token_logprobs.inplace_equals_fresh",
    "token_logprobs.deterministic",
    "large_offsets",
    "fused_grpo_loss.vs_unfused_autograd",
    "fused_grpo_loss.loss_scale",
    "grpo_loss.vs_reference",
    "group_advantages.vs_reference",
    "linear_token_logprobs.frozen_weight",
    "linear_grpo_loss.vs_materialised",
}


@pytest.mark.slow
def test_dry_run_passes_every_check():
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry"], capture_output=True, text=True, timeout=900, env=env)
    checks = [line for line in proc.stdout.splitlines() if line.startswith("CHECK ")]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert all(LINE.match(line) for line in checks), checks
    status = {line.split(":")[0][len("CHECK "):]: line.split(": ")[1].split()[0] for line in checks}
    assert not [n for n, s in status.items() if s == "FAIL"]
    missing = MUST_PASS - {n for n, s in status.items() if s == "PASS"}
    assert not missing, (missing, checks)
    for name in ("env.copy_bandwidth", "token_logprobs.forward_bandwidth", "fused_grpo_loss.time_vs_floor",
                 "linear_token_logprobs.N12.time",
                 "linear_grpo_loss.time_vs_3_gemms", "recompiles", "peers", "total"):  # fmt: skip
        assert name in status, (name, checks)


def test_without_gpu_and_without_dry_it_fails(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the full run is the GPU test")
    out = tmp_path / "lines.txt"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 1
    assert out.read_text().splitlines() == ["CHECK env.device: FAIL no CUDA device; run with --dry for the CPU dry run"]
