"""Token ids to padded tensors and micro-batches: `Batch` (prompt left-padded to one width, response
right-padded), `make_batch`, `Batch.select` (some rows, trimmed to their own padding) and `micro_batches`
(rows grouped under a token budget, or by a fixed count).

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

    def select(self, idx: slice | torch.Tensor | list[int]) -> Batch:
        """Rows ``idx``, with the columns no selected row uses cut off (left of the longest prompt, right of
        the longest response): the same tokens at the same positions, less padding to run."""
        if isinstance(idx, slice) and idx == slice(None):
            return self
        am = self.attention_mask[idx]
        rm = self.response_mask[idx]
        w = self.prompt_width
        plen = int(am[:, :w].sum(-1).max()) if am.shape[0] else 0
        rlen = max(1, int(rm.sum(-1).max())) if rm.shape[0] else 1
        cols = slice(w - plen, w + rlen)
        return Batch(self.input_ids[idx][:, cols], am[:, cols], self.position_ids[idx][:, cols],
                     self.responses[idx][:, :rlen], rm[:, :rlen], plen)

    def lengths(self) -> torch.Tensor:
        """Tokens (prompt + response) of each row."""
        return self.attention_mask.sum(-1)


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


def micro_batches(b: Batch, start: int, stop: int, max_seqs: int, max_tokens: int = 0) -> list[torch.Tensor]:
    """Rows ``start:stop`` of ``b`` grouped into micro-batches (each a LongTensor of row indices).

    ``max_tokens`` = 0: consecutive groups of ``max_seqs`` rows. ``max_tokens`` > 0 (verl's dynamic batch
    size): rows sorted by length, longest first, then packed greedily so that each micro-batch's padded size
    (rows × (longest prompt + longest response) of its rows) stays within ``max_tokens``; a row longer than
    the budget runs alone. Deterministic. Every row lands in exactly one micro-batch."""
    rows = torch.arange(start, stop)
    if max_tokens <= 0:
        return [rows[i : i + max_seqs] for i in range(0, len(rows), max_seqs)]
    w = b.prompt_width
    plen = b.attention_mask[start:stop, :w].sum(-1)
    rlen = b.response_mask[start:stop].sum(-1).long().clamp(min=1)
    order = sorted(range(len(rows)), key=lambda i: (-int(plen[i] + rlen[i]), i))
    out: list[list[int]] = []
    cur: list[int] = []
    pmax = rmax = 0
    for i in order:
        p, r = max(pmax, int(plen[i])), max(rmax, int(rlen[i]))
        if cur and (len(cur) + 1) * (p + r) > max_tokens:
            out.append(cur)
            cur, p, r = [], int(plen[i]), int(rlen[i])
        cur.append(i)
        pmax, rmax = p, r
    if cur:
        out.append(cur)
    return [rows[torch.tensor(sorted(m))] for m in out]
