"""The public tensor API: torch.library custom ops with autograd; Triton on CUDA, torch reference on CPU.

``from microcoder_fast import ops`` then ``ops.token_logprobs(...)``, ``ops.grpo_loss(...)`` and so on. Each op
lives in its own module (same stem as its kernel, reference, test and bench); they are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_OPS = {
    "token_logprobs": "token_logprobs",
    "linear_token_logprobs": "linear_token_logprobs",
    "group_advantages": "group_advantages",
    "grpo_loss": "grpo_loss",
    "fused_grpo_loss": "fused_grpo_loss",
}


def __getattr__(name: str) -> Any:
    module = _OPS.get(name)
    if module is None:
        raise AttributeError(f"microcoder_fast.ops has no op {name!r}; available: {sorted(_OPS)}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(_OPS)


__all__ = sorted(_OPS)
