"""pass@k: the unbiased estimator against hand-computed values and the binomial formula; the sampling s.e. of pass@1."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from microcoder_fast.data import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 0, 1, Fraction(0)),
        (1, 1, 1, Fraction(1)),
        (10, 3, 1, Fraction(3, 10)),  # pass@1 is the fraction correct
        (10, 3, 5, 1 - Fraction(21, 252)),  # 1 - C(7,5)/C(10,5)
        (5, 1, 2, Fraction(2, 5)),  # 1 - C(4,2)/C(5,2) = 1 - 6/10
        (4, 2, 2, Fraction(5, 6)),  # 1 - C(2,2)/C(4,2) = 1 - 1/6
        (10, 0, 10, Fraction(0)),
        (10, 6, 5, Fraction(1)),  # n - c < k: every draw of 5 holds a correct one
        (16, 1, 8, Fraction(1, 2)),
    ],
)
def test_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(float(expected), abs=1e-12)


def test_matches_binomial_formula_everywhere_small():
    for n in range(1, 21):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)


def test_large_n_is_stable():
    v = pass_at_k(1000, 1, 500)
    assert v == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k", "msg"), [(0, 0, 1, "n"), (3, 4, 1, "c"), (3, 1, 4, "k"), (3, 1, 0, "k")])
def test_bad_arguments(n, c, k, msg):
    with pytest.raises(ValueError, match=f"{msg} "):
        pass_at_k(n, c, k)


def test_mean_leaves_out_problems_with_too_few_samples():
    mean, used = mean_pass_at_k([(10, 3, ), (1, 1)], 5)  # type: ignore[list-item]
    assert used == 1 and mean == pytest.approx(1 - 21 / 252)
    assert mean_pass_at_k([(2, 1)], 5) == (None, 0)
    mean, used = mean_pass_at_k([(4, 1), (4, 3)], 1)
    assert used == 2 and mean == pytest.approx(0.5)


def test_agrees_with_livecodebench_estimator():
    pk = pytest.importorskip("livecodebench.evaluation.pass_k_utils")
    ns = [5, 10, 10, 20, 3]
    cs = [0, 3, 10, 7, 1]
    for k in (1, 2, 3):
        theirs = pk.estimate_pass_at_k(ns, cs, k)
        ours = [pass_at_k(n, c, k) for n, c in zip(ns, cs)]
        assert ours == pytest.approx(list(theirs), abs=1e-12)


def test_pass_at_1_se_matches_the_sampling_spread():
    """The logged standard error equals the spread of mean pass@1 over repeated evaluations of fixed problems."""
    import numpy as np

    from microcoder_fast.data.passk import pass_at_1_se

    assert pass_at_1_se([(4, 2), (4, 0)]) == pytest.approx((0.5 * 0.5 / 3) ** 0.5 / 2)
    assert pass_at_1_se([(4, 4), (4, 0)]) == 0.0
    assert pass_at_1_se([(1, 1), (4, 0)]) is None and pass_at_1_se([]) is None
    rng = np.random.default_rng(0)
    p = np.array([0.0, 0.05, 0.1, 0.3, 0.6, 0.9, 0.02, 0.5])
    n = 16
    draws = rng.binomial(n, p, size=(4000, len(p)))
    spread = draws.mean(axis=1).std() / n
    estimates = [pass_at_1_se([(n, int(c)) for c in row]) for row in draws[:400]]
    assert np.mean(estimates) == pytest.approx(spread, rel=0.1)
