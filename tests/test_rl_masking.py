"""Conditional truncation masking: every branch of the rule, with seeded draws, and its interaction with
group advantages (masked responses still count in the group statistics)."""

from __future__ import annotations

import pytest
import torch

from microcoder_fast.ops.group_advantages import group_advantages
from microcoder_fast.rl.masking import is_repetition_loop, truncation_mask

W = 4
PLAIN = list(range(20))  # no loop: last 4 != previous 4
LOOP = list(range(12)) + [7, 8, 9, 1] * 2  # last 4 == previous 4


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_repetition_loop_detection():
    assert is_repetition_loop(LOOP, W)
    assert not is_repetition_loop(PLAIN, W)
    assert not is_repetition_loop([1, 1, 1], W)  # shorter than 2 windows cannot be shown to loop
    assert is_repetition_loop([5] * 8, W)
    assert not is_repetition_loop([5] * 7 + [6], W)
    with pytest.raises(ValueError, match="window"):
        is_repetition_loop(PLAIN, 0)


@pytest.mark.parametrize(
    "truncated,outcome,tokens,predicate,eligible",
    [
        (False, "pass", PLAIN, "not_failed", False),  # not truncated: never masked
        (True, "pass", PLAIN, "not_failed", True),
        (True, "no_code", PLAIN, "not_failed", True),  # no gradable code is not "judged wrong"
        (True, "fail", PLAIN, "not_failed", False),  # judged wrong
        (True, "pass", LOOP, "not_failed", False),  # repetition loop
        (True, "pass", PLAIN, "correct_only", True),
        (True, "no_code", PLAIN, "correct_only", False),  # correct_only needs a pass
        (True, "fail", PLAIN, "correct_only", False),
    ],
)
def test_each_condition(truncated, outcome, tokens, predicate, eligible):
    # rho = 1: the draw always passes, so the mask equals eligibility; rho = 0: nothing is masked
    r1 = truncation_mask([tokens], [truncated], [outcome], predicate=predicate, rho=1.0, window=W, generator=_gen())
    assert bool(r1.eligible[0]) is eligible
    assert bool(r1.mask[0]) is eligible
    r0 = truncation_mask([tokens], [truncated], [outcome], predicate=predicate, rho=0.0, window=W, generator=_gen())
    assert not bool(r0.mask[0])


def test_seeded_draws_decide_with_rho():
    n = 2000
    toks = [PLAIN] * n
    res = truncation_mask(toks, [True] * n, ["pass"] * n, rho=0.1, window=W, generator=_gen(123))
    # the mask is exactly "draw < rho" for eligible responses
    assert torch.equal(res.mask, res.draws < 0.1)
    assert 0.07 < float(res.mask.float().mean()) < 0.13
    again = truncation_mask(toks, [True] * n, ["pass"] * n, rho=0.1, window=W, generator=_gen(123))
    assert torch.equal(res.mask, again.mask)  # seeded: reproducible
    other = truncation_mask(toks, [True] * n, ["pass"] * n, rho=0.1, window=W, generator=_gen(124))
    assert not torch.equal(res.mask, other.mask)


def test_draw_stream_independent_of_truncation():
    g1, g2 = _gen(5), _gen(5)
    a = truncation_mask([PLAIN] * 6, [True] * 6, ["pass"] * 6, rho=0.5, window=W, generator=g1)
    b = truncation_mask([PLAIN] * 6, [False] * 6, ["fail"] * 6, rho=0.5, window=W, generator=g2)
    assert torch.equal(a.draws, b.draws)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


def test_modes_none_and_all():
    toks = [PLAIN, LOOP, PLAIN, PLAIN]
    trunc = [True, True, True, False]
    outs = ["fail", "pass", "pass", "pass"]
    none = truncation_mask(toks, trunc, outs, mode="none", rho=1.0, window=W, generator=_gen())
    assert not none.mask.any()
    allm = truncation_mask(toks, trunc, outs, mode="all", rho=0.0, window=W, generator=_gen())
    assert allm.mask.tolist() == [True, True, True, False]  # every truncated response, wrong or looping too
    cond = truncation_mask(toks, trunc, outs, mode="conditional", rho=1.0, window=W, generator=_gen())
    assert cond.mask.tolist() == [False, False, True, False]


def test_rates():
    res = truncation_mask([PLAIN, LOOP, PLAIN, PLAIN], [True, True, False, False], ["pass"] * 4, rho=1.0,
                          window=W, generator=_gen())
    r = res.rates()
    assert r["truncation_rate"] == 0.5 and r["repetition_rate"] == 0.25 and r["mask_rate"] == 0.25


def test_bad_inputs():
    with pytest.raises(ValueError, match="align"):
        truncation_mask([PLAIN], [True, False], ["pass"], generator=_gen())
    with pytest.raises(ValueError, match="outcome"):
        truncation_mask([PLAIN], [True], ["maybe"], generator=_gen())
    with pytest.raises(ValueError, match="mode"):
        truncation_mask([PLAIN], [True], ["pass"], mode="some", generator=_gen())


def test_masked_response_counts_in_group_statistics():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    keep = torch.ones(8)
    keep[0] = 0.0  # the truncated-but-correct response 0 is masked
    full = group_advantages(rewards, group_size=4)
    masked = group_advantages(rewards, group_size=4, mask=keep)
    assert masked[0] == 0.0
    # the other responses' advantages are unchanged: response 0 still counts in the mean and std
    assert torch.allclose(masked[1:], full[1:])
    # had it been dropped from the group instead, the rest of the group would have had zero advantage
    dropped = group_advantages(rewards[1:4], group_size=3)
    assert torch.all(dropped == 0) and torch.all(masked[1:4] != 0)
    # Dr. GRPO (no std) keeps the same interaction
    dr = group_advantages(rewards, group_size=4, std="none", mask=keep)
    assert dr[0] == 0.0 and torch.allclose(dr[1:4], torch.full((3,), -0.25))
