"""microcoder_fast: fast log-prob / GRPO kernels, a sound sandboxed judge, and a thin MicroCoder-GRPO trainer.

Submodules are imported lazily so that ``import microcoder_fast`` stays cheap and the executor never pulls in
torch: ``from microcoder_fast import ops`` (needs torch), ``from microcoder_fast.executor import Executor``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {"ops", "reference", "executor", "data", "rl", "cli", "kernels", "info", "integrations"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'microcoder_fast' has no attribute {name!r}")


__all__ = ["__version__", *sorted(_SUBMODULES)]
