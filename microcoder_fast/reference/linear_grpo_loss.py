"""The GRPO loss from hidden states in plain PyTorch: the oracle of ``ops.linear_grpo_loss``.

``linear_grpo_loss_reference`` materialises the fp32 logits ``hidden @ weight.T`` and hands them to
``fused_grpo_loss_reference`` (full log-softmax, verl-style loss); autograd gives d hidden and d weight.
Memory: the [N, V] fp32 logits and their softmax. Imports torch and the other references only.
"""

from __future__ import annotations

import torch

from microcoder_fast.reference.fused_grpo_loss import fused_grpo_loss_reference


def linear_grpo_loss_reference(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, *args: object, **kwargs: object
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``fused_grpo_loss_reference(hidden.float() @ weight.float().T, target, *args, **kwargs)``."""
    logits = hidden.to(torch.float32) @ weight.to(torch.float32).T
    return fused_grpo_loss_reference(logits, target, *args, **kwargs)
