"""The diversity metrics (rl/diversity.py) on hand-made groups, and the metric registry."""

from __future__ import annotations

import pytest

from microcoder_fast.rl.diversity import (
    batch_diversity,
    distinct_ngram_diversity,
    pairwise_ngram_diversity,
    register_diversity_metric,
)


def test_pairwise_ngram_on_hand_made_groups():
    same = [[1, 2, 3, 4]] * 4
    assert pairwise_ngram_diversity(same) == 0.0
    disjoint = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert pairwise_ngram_diversity(disjoint) == 1.0
    # [1,2,3] vs [1,2,4]: 1-grams J = 2/4 -> 0.5 distance; 2-grams {12,23} vs {12,24}: 1 - 1/3; 3-grams: 1
    d = pairwise_ngram_diversity([[1, 2, 3], [1, 2, 4]], max_n=3)
    assert d == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    # order matters beyond unigrams: same bag of tokens, different order
    assert 0.0 < pairwise_ngram_diversity([[1, 2, 3], [3, 2, 1]], max_n=2) < 1.0
    assert pairwise_ngram_diversity([[1, 2, 3]]) == 0.0  # a single response has no pair


def test_more_varied_group_scores_higher():
    low = [[1, 2, 3, 4, 5], [1, 2, 3, 4, 6], [1, 2, 3, 4, 5]]
    high = [[1, 2, 3, 4, 5], [9, 8, 3, 4, 6], [7, 2, 8, 1, 5]]
    assert pairwise_ngram_diversity(high) > pairwise_ngram_diversity(low)
    assert distinct_ngram_diversity(high) > distinct_ngram_diversity(low)


def test_distinct_ngram():
    assert distinct_ngram_diversity([[1, 1, 1, 1]], max_n=1) == 0.25
    assert distinct_ngram_diversity([[1, 2], [3, 4]], max_n=2) == 1.0


def test_batch_diversity_and_plugins():
    groups = [[[1, 2], [1, 2]], [[1, 2], [3, 4]]]
    assert batch_diversity(groups, "pairwise_ngram", 2) == pytest.approx(0.5)
    register_diversity_metric("always_half", lambda g, n: 0.5)
    assert batch_diversity(groups, "always_half") == 0.5
    with pytest.raises(ValueError, match="unknown diversity metric"):
        batch_diversity(groups, "nope")
