"""Conditional truncation masking (MicroCoder-GRPO) and the repetition-loop test.

A response's advantage is zeroed (it still counts in its group's mean and std) when all of these hold:

1. it hit ``max_response_length`` (truncated);
2. it is not judged wrong: ``correct_only`` — it passed; ``not_failed`` (default) — it passed, or it has no
   gradable code (a cut-off answer is usually no code at all, which is not evidence that it was wrong);
3. it is not a repetition loop: its last ``window`` tokens are not identical to the ``window`` before them
   (a response shorter than 2 × window cannot be shown to loop and counts as not a loop);
4. a uniform draw u ~ U[0, 1) is below ρ.

Mode ``all`` masks every truncated response (DeepCoder's overlong filtering); mode ``none`` masks nothing.
One draw is taken per response in every mode, so the random stream (and therefore resume) does not depend
on which responses were truncated.

Imports only torch; never the executor, ``cli`` or ``integrations``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

OUTCOMES = ("pass", "fail", "no_code")


def is_repetition_loop(tokens: Sequence[int], window: int) -> bool:
    """True iff the last ``window`` tokens equal the ``window`` tokens before them."""
    if window < 1:
        raise ValueError(f"repetition window must be >= 1, got {window}")
    if len(tokens) < 2 * window:
        return False
    tail = list(tokens[-window:])
    return tail == list(tokens[-2 * window : -window])


@dataclass
class MaskResult:
    mask: torch.Tensor  # bool [N]: True = advantage zeroed
    truncated: torch.Tensor  # bool [N]
    loop: torch.Tensor  # bool [N]
    eligible: torch.Tensor  # bool [N]: satisfies conditions 1-3 (before the draw)
    draws: torch.Tensor  # float [N]

    def rates(self) -> dict[str, float]:
        n = max(1, self.mask.numel())
        return {
            "truncation_rate": float(self.truncated.sum()) / n,
            "mask_rate": float(self.mask.sum()) / n,
            "repetition_rate": float(self.loop.sum()) / n,
            "mask_eligible_rate": float(self.eligible.sum()) / n,
        }


def truncation_mask(
    responses: Sequence[Sequence[int]],
    truncated: Sequence[bool],
    outcomes: Sequence[str],
    *,
    mode: str = "conditional",
    predicate: str = "not_failed",
    rho: float = 0.1,
    window: int = 128,
    generator: torch.Generator | None = None,
) -> MaskResult:
    """Decide which responses get their advantage zeroed (see the module docstring for the rule)."""
    n = len(responses)
    if not (len(truncated) == len(outcomes) == n):
        raise ValueError(
            f"truncation_mask: got {n} responses, {len(truncated)} truncation flags and {len(outcomes)} outcomes; "
            "they must align one per response"
        )
    bad = [o for o in outcomes if o not in OUTCOMES]
    if bad:
        raise ValueError(f"truncation_mask: unknown outcome {bad[0]!r}; outcomes are {OUTCOMES}")
    if mode not in ("conditional", "none", "all"):
        raise ValueError(f"truncation_mask: mode {mode!r} is not one of 'conditional', 'none', 'all'")
    if predicate not in ("not_failed", "correct_only"):
        raise ValueError(f"truncation_mask: predicate {predicate!r} is not 'not_failed' or 'correct_only'")
    draws = torch.rand(n, generator=generator, dtype=torch.float64)
    trunc = torch.tensor([bool(t) for t in truncated], dtype=torch.bool)
    loop = torch.tensor([bool(t) and is_repetition_loop(r, window) for r, t in zip(responses, truncated)],
                        dtype=torch.bool)
    if predicate == "correct_only":
        not_wrong = torch.tensor([o == "pass" for o in outcomes], dtype=torch.bool)
    else:
        not_wrong = torch.tensor([o in ("pass", "no_code") for o in outcomes], dtype=torch.bool)
    eligible = trunc & not_wrong & ~loop
    if mode == "none":
        mask = torch.zeros(n, dtype=torch.bool)
    elif mode == "all":
        mask = trunc.clone()
    else:
        mask = eligible & (draws < rho)
    return MaskResult(mask=mask, truncated=trunc, loop=loop, eligible=eligible, draws=draws)
