"""Token ids to padded tensors: `Batch` (prompt left-padded to one width, response right-padded) and
`make_batch`.

Lists of token ids in, tensors out. Must not import a model, an optimiser or any other ``rl`` module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class Batch:
    input_ids: torch.Tensor  # [N, W + R] left-padded prompt, then response, right-padded
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    responses: torch.Tensor  # [N, R]
    response_mask: torch.Tensor  # [N, R] float
    prompt_width: int


def make_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad: int) -> Batch:
    """Left-pad prompts to one width W so every response starts at column W; right-pad responses."""
    n = len(prompts)
    w = max(len(p) for p in prompts)
    r = max(1, max(len(x) for x in responses))
    ids = torch.full((n, w + r), pad, dtype=torch.long)
    attn = torch.zeros((n, w + r), dtype=torch.long)
    resp = torch.full((n, r), pad, dtype=torch.long)
    rmask = torch.zeros((n, r), dtype=torch.float32)
    for i, (p, x) in enumerate(zip(prompts, responses)):
        ids[i, w - len(p) : w] = torch.tensor(list(p), dtype=torch.long)
        attn[i, w - len(p) : w] = 1
        if len(x):
            ids[i, w : w + len(x)] = torch.tensor(list(x), dtype=torch.long)
            attn[i, w : w + len(x)] = 1
            resp[i, : len(x)] = torch.tensor(list(x), dtype=torch.long)
            rmask[i, : len(x)] = 1.0
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    return Batch(ids, attn, pos, resp, rmask, w)
