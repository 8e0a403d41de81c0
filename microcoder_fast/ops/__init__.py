"""The public tensor API: torch.library custom ops with autograd; Triton on CUDA, torch reference on CPU.

``from microcoder_fast import ops`` then ``ops.token_logprobs(...)``, ``ops.grpo_loss(...)`` and so on. Each op
lives in its own module (same stem as its kernel, reference, test and bench). The functions are bound here
eagerly so that the op name always means the op, never the submodule of the same name (Triton itself is only
loaded on the first CUDA launch).
"""

from __future__ import annotations

from microcoder_fast.ops.fused_grpo_loss import fused_grpo_loss
from microcoder_fast.ops.group_advantages import group_advantages
from microcoder_fast.ops.grpo_loss import grpo_loss
from microcoder_fast.ops.linear_grpo_loss import linear_grpo_loss
from microcoder_fast.ops.linear_token_logprobs import linear_token_logprobs
from microcoder_fast.ops.token_logprobs import token_logprobs

__all__ = [
    "fused_grpo_loss",
    "group_advantages",
    "grpo_loss",
    "linear_grpo_loss",
    "linear_token_logprobs",
    "token_logprobs",
]
